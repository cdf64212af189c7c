//! Who may connect (jamd.toml(5), The `[access]` table): an allow list and a
//! deny list of addresses and prefixes, decided by the longest prefix that
//! contains the client.
//!
//! The rule does not depend on the order of lines: the most specific entry
//! that contains the address decides, over both lists; an `allow` and a
//! `deny` of the same length that both contain it deny; when no entry
//! contains it, it is allowed only if the allow list is empty.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:192.0.2.7`, what a dual-stack `[::]`
//! socket reports for an IPv4 client) are the IPv4 address, both in the lists
//! and for clients: without that, IPv4 entries would never match anyone on a
//! dual-stack socket. No I/O here: the server asks [`AccessList::decide`] at
//! accept time and `jamd --check-access` prints the [`Decision`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// An address prefix: an IP address and how many leading bits count.
///
/// Always canonical: the bits past the length are zero, and an IPv4-mapped
/// IPv6 prefix of length 96 or more is stored as the IPv4 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

/// Why an entry is not a prefix; the text is written for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixError {
    /// Not an IP address at all (often a host name, which is not resolved).
    NotAnAddress(String),
    /// The part after `/` is not a number.
    BadLength(String),
    /// The length is longer than the address.
    LengthOutOfRange {
        /// The entry as written.
        entry: String,
        /// The longest length allowed for its family (32 or 128).
        max: u8,
    },
    /// Bits are set past the length, as in `10.1.2.3/8`.
    HostBitsSet {
        /// The entry as written.
        entry: String,
        /// What was probably meant: the same length, host bits cleared.
        meant: Prefix,
    },
}

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrefixError::NotAnAddress(e) => write!(
                f,
                "\"{e}\" is not an IP address or prefix: write an address like \
                 192.0.2.7 or 2001:db8::1, or a prefix like 10.0.0.0/8 \
                 (host names are not resolved)"
            ),
            PrefixError::BadLength(e) => write!(
                f,
                "\"{e}\": expected a prefix length after the \"/\" \
                 (0-32 for IPv4, 0-128 for IPv6)"
            ),
            PrefixError::LengthOutOfRange { entry, max } => write!(
                f,
                "\"{entry}\": the prefix length must be 0-{max} for an IPv{} address",
                if *max == 32 { 4 } else { 6 }
            ),
            PrefixError::HostBitsSet { entry, meant } => write!(
                f,
                "\"{entry}\" has bits set past its length: did you mean {meant}?"
            ),
        }
    }
}

impl std::error::Error for PrefixError {}

fn bits(addr: IpAddr) -> (u128, u8) {
    match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

/// The mask of the first `len` bits of a `width`-bit address, in the low bits.
fn mask(len: u8, width: u8) -> u128 {
    if len == 0 {
        return 0;
    }
    let all = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    (all << (width - len)) & all
}

fn from_bits(v: u128, width: u8) -> IpAddr {
    if width == 32 {
        // Only ever called with a value masked to 32 bits: the last four bytes.
        let [.., a, b, c, d] = v.to_be_bytes();
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

impl Prefix {
    /// A prefix from an address and a length; `None` when the length is
    /// longer than the address. Bits past the length are cleared.
    pub fn new(addr: IpAddr, len: u8) -> Option<Prefix> {
        let (v, width) = bits(addr);
        if len > width {
            return None;
        }
        let net = from_bits(v & mask(len, width), width);
        Some(Prefix::canonical(net, len))
    }

    /// The prefix that holds exactly one address.
    pub fn host(addr: IpAddr) -> Prefix {
        let len = bits(addr).1;
        Prefix::canonical(addr, len)
    }

    /// An IPv4-mapped IPv6 prefix of length ≥ 96 is the IPv4 prefix.
    fn canonical(addr: IpAddr, len: u8) -> Prefix {
        if let IpAddr::V6(a) = addr {
            if len >= 96 {
                if let Some(v4) = a.to_ipv4_mapped() {
                    return Prefix {
                        addr: IpAddr::V4(v4),
                        len: len - 96,
                    };
                }
            }
        }
        Prefix { addr, len }
    }

    /// The first address of the prefix.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Whether the prefix is a single address (/32 or /128).
    pub fn is_host(&self) -> bool {
        self.len == bits(self.addr).1
    }

    /// Whether `ip` (canonicalised: IPv4-mapped is IPv4) lies in the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let (v, width) = bits(ip);
        let (net, net_width) = bits(self.addr);
        width == net_width && v & mask(self.len, width) == net
    }
}

impl fmt::Display for Prefix {
    /// `192.0.2.7` for a single address, `10.0.0.0/8` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    /// Reads `ADDR` or `ADDR/LEN`; an entry with host bits set is refused
    /// with the prefix that was probably meant.
    fn from_str(s: &str) -> Result<Prefix, PrefixError> {
        let entry = s.trim();
        let (addr_part, len_part) = match entry.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (entry, None),
        };
        let addr: IpAddr = addr_part
            .parse()
            .map_err(|_| PrefixError::NotAnAddress(entry.to_string()))?;
        let width = bits(addr).1;
        let Some(len_part) = len_part else {
            return Ok(Prefix::host(addr));
        };
        if len_part.is_empty() || !len_part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PrefixError::BadLength(entry.to_string()));
        }
        let len = match len_part.parse::<u8>() {
            Ok(l) if l <= width => l,
            _ => {
                return Err(PrefixError::LengthOutOfRange {
                    entry: entry.to_string(),
                    max: width,
                })
            }
        };
        let (v, _) = bits(addr);
        if v & !mask(len, width) != 0 {
            let meant = Prefix {
                addr: from_bits(v & mask(len, width), width),
                len,
            };
            return Err(PrefixError::HostBitsSet {
                entry: entry.to_string(),
                meant,
            });
        }
        Ok(Prefix::canonical(addr, len))
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Which list an entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// `allow`: may connect.
    Allow,
    /// `deny`: may not connect.
    Deny,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Allow => "allow",
            Rule::Deny => "deny",
        })
    }
}

/// One line of the access list: `allow 10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Allow or deny.
    pub rule: Rule,
    /// The addresses it covers.
    pub prefix: Prefix,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.rule, self.prefix)
    }
}

/// The answer for one address, with the entry that gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// May connect; `by` is the deciding entry, `None` when no entry
    /// contains the address and the allow list is empty.
    Allowed {
        /// The entry that decided, if any.
        by: Option<Entry>,
    },
    /// May not connect; `by` is the deciding entry, `None` when no entry
    /// contains the address and the allow list is not empty.
    Denied {
        /// The entry that decided, if any.
        by: Option<Entry>,
    },
}

impl Decision {
    /// Whether the client may connect.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    /// The entry that decided, if one did (what the tests look at).
    #[cfg(test)]
    pub fn by(&self) -> Option<Entry> {
        match self {
            Decision::Allowed { by } | Decision::Denied { by } => *by,
        }
    }
}

impl fmt::Display for Decision {
    /// What `jamd --check-access` prints after `ADDR: `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allowed { .. } => f.write_str("allowed"),
            Decision::Denied { by: Some(e) } => write!(f, "denied (by {e})"),
            Decision::Denied { by: None } => f.write_str("denied (no allow entry contains it)"),
        }
    }
}

/// The allow and deny lists, ready to decide.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    /// Every entry, most specific first, and at equal length deny before
    /// allow: the first entry that contains an address decides.
    ordered: Vec<Entry>,
    allow_empty: bool,
}

impl AccessList {
    /// Builds the list from the two sets of prefixes, in any order.
    pub fn new(allow: &[Prefix], deny: &[Prefix]) -> AccessList {
        let mut ordered: Vec<Entry> = deny
            .iter()
            .map(|&prefix| Entry {
                rule: Rule::Deny,
                prefix,
            })
            .chain(allow.iter().map(|&prefix| Entry {
                rule: Rule::Allow,
                prefix,
            }))
            .collect();
        // Stable: deny entries came first, so they stay first at equal length.
        ordered.sort_by_key(|e| std::cmp::Reverse(e.prefix.len));
        AccessList {
            ordered,
            allow_empty: allow.is_empty(),
        }
    }

    /// Decides for one client address (IPv4-mapped is taken as IPv4).
    pub fn decide(&self, ip: IpAddr) -> Decision {
        let ip = ip.to_canonical();
        match self.ordered.iter().find(|e| e.prefix.contains(ip)) {
            Some(&e) if e.rule == Rule::Allow => Decision::Allowed { by: Some(e) },
            Some(&e) => Decision::Denied { by: Some(e) },
            None if self.allow_empty => Decision::Allowed { by: None },
            None => Decision::Denied { by: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn list(allow: &[&str], deny: &[&str]) -> AccessList {
        let a: Vec<Prefix> = allow.iter().map(|s| p(s)).collect();
        let d: Vec<Prefix> = deny.iter().map(|s| p(s)).collect();
        AccessList::new(&a, &d)
    }

    #[test]
    fn parses_addresses_and_prefixes() {
        assert_eq!(p("192.0.2.7").to_string(), "192.0.2.7");
        assert_eq!(p("192.0.2.7/32").to_string(), "192.0.2.7");
        assert_eq!(p("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(p("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(p("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(p("::/0").to_string(), "::/0");
        assert_eq!(p(" ::1 ").to_string(), "::1");
        assert_eq!(p("2001:db8::1/128").to_string(), "2001:db8::1");
    }

    #[test]
    fn host_bits_set_suggests_the_prefix_meant() {
        let e = "10.1.2.3/8".parse::<Prefix>().unwrap_err();
        assert!(e.to_string().ends_with("did you mean 10.0.0.0/8?"), "{e}");
        let e = "2001:db8::1/32".parse::<Prefix>().unwrap_err();
        assert!(e.to_string().contains("did you mean 2001:db8::/32?"), "{e}");
        let e = "192.168.1.1/24".parse::<Prefix>().unwrap_err();
        assert!(
            e.to_string().contains("did you mean 192.168.1.0/24?"),
            "{e}"
        );
    }

    #[test]
    fn host_names_and_bad_lengths_are_refused_in_words() {
        let e = "example.com".parse::<Prefix>().unwrap_err();
        assert!(e.to_string().contains("host names are not resolved"), "{e}");
        let e = "localhost/8".parse::<Prefix>().unwrap_err();
        assert!(matches!(e, PrefixError::NotAnAddress(_)));
        let e = "10.0.0.0/33".parse::<Prefix>().unwrap_err();
        assert!(e.to_string().contains("0-32 for an IPv4"), "{e}");
        let e = "::/129".parse::<Prefix>().unwrap_err();
        assert!(e.to_string().contains("0-128 for an IPv6"), "{e}");
        let e = "10.0.0.0/99999999999".parse::<Prefix>().unwrap_err();
        assert!(matches!(e, PrefixError::LengthOutOfRange { .. }));
        for bad in ["10.0.0.0/", "10.0.0.0/x", "10.0.0.0/-1", "10.0.0.0/+8"] {
            let e = bad.parse::<Prefix>().unwrap_err();
            assert!(matches!(e, PrefixError::BadLength(_)), "{bad}: {e:?}");
        }
        assert!(matches!(
            "".parse::<Prefix>().unwrap_err(),
            PrefixError::NotAnAddress(_)
        ));
    }

    #[test]
    fn mapped_entries_are_ipv4() {
        assert_eq!(p("::ffff:192.0.2.7"), p("192.0.2.7"));
        assert_eq!(p("::ffff:10.0.0.0/104"), p("10.0.0.0/8"));
        assert_eq!(p("::ffff:0.0.0.0/96"), p("0.0.0.0/0"));
        // Shorter than /96 it covers more than the mapped range: left as IPv6.
        assert_eq!(p("::fffe:0:0/95").addr, ip("::fffe:0:0"));
        assert!(!p("::fffe:0:0/95").contains(ip("10.0.0.1")));
    }

    #[test]
    fn contains_canonicalises_the_client() {
        let net = p("192.0.2.0/24");
        assert!(net.contains(ip("192.0.2.200")));
        assert!(net.contains(ip("::ffff:192.0.2.200")));
        assert!(!net.contains(ip("192.0.3.1")));
        assert!(!net.contains(ip("2001:db8::1")));
        assert!(!p("::/0").contains(ip("10.0.0.1")));
        assert!(p("::/0").contains(ip("::1")));
        assert!(p("0.0.0.0/0").contains(ip("::ffff:1.2.3.4")));
    }

    #[test]
    fn empty_list_allows_everyone() {
        let l = list(&[], &[]);
        assert!(l.ordered.is_empty());
        assert_eq!(l.decide(ip("1.2.3.4")), Decision::Allowed { by: None });
    }

    #[test]
    fn any_entry_closes_the_list() {
        for (allow, deny) in [
            (&["10.0.0.0/8"][..], &[][..]),
            (&[], &["10.0.0.0/8"]),
            (&["0.0.0.0/0"], &[]),
            (&["::/0"], &["0.0.0.0/0"]),
        ] {
            assert!(
                !list(allow, deny).ordered.is_empty(),
                "allow {allow:?} deny {deny:?}"
            );
        }
    }

    #[test]
    fn no_entry_means_allowed_only_when_allow_is_empty() {
        let l = list(&[], &["10.0.0.0/8"]);
        assert!(l.decide(ip("192.0.2.1")).is_allowed());
        assert!(!l.decide(ip("10.9.9.9")).is_allowed());
        let l = list(&["10.0.0.0/8"], &[]);
        assert!(l.decide(ip("10.9.9.9")).is_allowed());
        let d = l.decide(ip("192.0.2.1"));
        assert_eq!(d, Decision::Denied { by: None });
        assert_eq!(d.to_string(), "denied (no allow entry contains it)");
    }

    #[test]
    fn longest_prefix_decides_whatever_the_order() {
        let l = list(&["10.1.2.3", "10.0.0.0/8"], &["10.1.0.0/16"]);
        assert!(l.decide(ip("10.2.0.1")).is_allowed());
        let d = l.decide(ip("10.1.9.9"));
        assert_eq!(d.to_string(), "denied (by deny 10.1.0.0/16)");
        assert_eq!(
            l.decide(ip("10.1.2.3")).by().map(|e| e.to_string()),
            Some("allow 10.1.2.3".to_string())
        );
        let l2 = list(&["10.0.0.0/8", "10.1.2.3"], &["10.1.0.0/16"]);
        for a in ["10.2.0.1", "10.1.9.9", "10.1.2.3", "11.0.0.1"] {
            assert_eq!(l.decide(ip(a)), l2.decide(ip(a)), "{a}");
        }
    }

    #[test]
    fn a_tie_denies() {
        let l = list(&["10.1.2.0/24"], &["10.1.2.0/24"]);
        let d = l.decide(ip("10.1.2.3"));
        assert_eq!(d.to_string(), "denied (by deny 10.1.2.0/24)");
        let l = list(&["192.0.2.7"], &["::ffff:192.0.2.7"]);
        assert!(!l.decide(ip("192.0.2.7")).is_allowed());
    }

    #[test]
    fn ipv4_entries_match_dual_stack_clients() {
        let l = list(&["127.0.0.0/8"], &["127.0.0.3"]);
        assert!(l.decide(ip("::ffff:127.0.0.2")).is_allowed());
        assert!(!l.decide(ip("::ffff:127.0.0.3")).is_allowed());
        assert!(!l.decide(ip("::1")).is_allowed());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn any_prefix() -> impl Strategy<Value = Prefix> {
            prop_oneof![
                (any::<u32>(), 0u8..=32)
                    .prop_map(|(a, l)| Prefix::new(IpAddr::V4(a.into()), l).unwrap()),
                (any::<u128>(), 0u8..=128)
                    .prop_map(|(a, l)| Prefix::new(IpAddr::V6(a.into()), l).unwrap()),
            ]
        }

        /// The rule as jamd.toml(5) words it, computed the slow way.
        fn reference(allow: &[Prefix], deny: &[Prefix], ip: IpAddr) -> bool {
            let best = |l: &[Prefix]| l.iter().filter(|p| p.contains(ip)).map(|p| p.len).max();
            match (best(allow), best(deny)) {
                (None, None) => allow.is_empty(),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(a), Some(d)) => a > d,
            }
        }

        proptest! {
            #[test]
            fn display_parses_back(pre in any_prefix()) {
                prop_assert_eq!(pre.to_string().parse::<Prefix>().unwrap(), pre);
            }

            #[test]
            fn decide_follows_the_rule(
                allow in proptest::collection::vec(any_prefix(), 0..6),
                deny in proptest::collection::vec(any_prefix(), 0..6),
                v4 in any::<u32>(),
                near in any::<u8>(),
            ) {
                let l = AccessList::new(&allow, &deny);
                // Addresses near an entry, so that entries do match.
                let mut ips = vec![IpAddr::V4(v4.into())];
                for e in allow.iter().chain(&deny) {
                    let (v, w) = bits(e.addr);
                    ips.push(from_bits(v ^ (u128::from(near) & mask(w, w)), w));
                }
                for ip in ips {
                    let d = l.decide(ip);
                    prop_assert_eq!(d.is_allowed(), reference(&allow, &deny, ip));
                    if let Some(by) = d.by() {
                        prop_assert!(by.prefix.contains(ip));
                    }
                    if let IpAddr::V4(a) = ip {
                        prop_assert_eq!(l.decide(IpAddr::V6(a.to_ipv6_mapped())), d);
                    }
                }
            }
        }
    }
}
