//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`), versions 1
//! and 2 on the same stream, without any I/O (jamd(8), BEHIND A LOAD
//! BALANCER).
//!
//! A load balancer that speaks it begins each connection with a header that
//! names the real client. [`parse`] is given everything received so far on
//! the connection and answers [`Parse::Incomplete`] (read more and call
//! again with the grown buffer), [`Parse::Done`] with the header and how many
//! bytes it took (the rest is the client's first request), or
//! [`Parse::Invalid`] with the reason. The caller owns the buffer, the
//! timeout and the decision of who is trusted to send a header at all.
//!
//! The answer never depends on how the bytes were split: a header cut at any
//! point is `Incomplete` until its last byte arrives (nginx once refused v2
//! headers split across segments as "too large"), and a verdict given on a
//! prefix of a stream is the verdict on the whole stream. Nothing past the
//! header's own length is looked at. Bytes needed at most: 107 for v1, and
//! 16 + 4096 for v2 ([`MAX_V1`], [`MAX_V2`]); more is refused, not buffered.
//!
//! Hand-written (about 150 lines) rather than the `ppp` or `proxy-header`
//! crates: the rules we must enforce anyway (the 4096-byte cap, LOCAL,
//! UNKNOWN and other families as "the balancer itself", reasons in words for
//! the refusal log line) are most of the work, and the format is small and
//! frozen.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest version 1 header, CR LF included.
pub const MAX_V1: usize = 107;
/// The longest version 2 header we accept: 16 fixed bytes and at most 4096
/// of addresses and TLVs.
pub const MAX_V2: usize = 16 + MAX_V2_PAYLOAD;
/// The most bytes of addresses and TLVs a version 2 header may declare.
pub(crate) const MAX_V2_PAYLOAD: usize = 4096;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Which version of the protocol a header used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text form: `PROXY TCP4 …\r\n`.
    V1,
    /// The binary form, with the 12-byte signature.
    V2,
}

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The balancer relays a TCP client: `client` replaces the peer address
    /// for logs, access and limits; `server` is the address it connected to.
    Proxied {
        /// v1 or v2.
        version: Version,
        /// The real client.
        client: SocketAddr,
        /// Where the client connected (the balancer's frontend).
        server: SocketAddr,
    },
    /// v2 `LOCAL` (a health check), v1 `PROXY UNKNOWN`, or a family other
    /// than TCP over IPv4/IPv6: serve the connection as the balancer itself.
    Local {
        /// v1 or v2.
        version: Version,
    },
}

/// Why the bytes are not a header we accept. `Display` gives the reason for
/// `refused BALANCER: bad proxy header (WHY)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Neither `PROXY ` nor the version 2 signature.
    NotProxy,
    /// A version 1 line with no CR LF within 107 bytes.
    V1TooLong,
    /// A version 1 line ended by a bare LF.
    V1BareLf,
    /// A version 1 protocol other than TCP4, TCP6 or UNKNOWN.
    V1Protocol,
    /// A version 1 line without its four fields, or with extra spaces.
    V1Fields,
    /// A version 1 address that is not an address of the named family.
    V1Address,
    /// A version 1 port that is not 0-65535.
    V1Port,
    /// A version 2 version nibble other than 2.
    V2Version,
    /// A version 2 command other than LOCAL or PROXY.
    V2Command,
    /// A version 2 header declaring more than 4096 bytes after the fixed 16.
    V2TooLong,
    /// A version 2 address block shorter than its family needs.
    V2Short,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invalid::NotProxy => "not a PROXY protocol header",
            Invalid::V1TooLong => "v1 header longer than 107 bytes",
            Invalid::V1BareLf => "v1 header ends without CR LF",
            Invalid::V1Protocol => "v1 protocol is not TCP4, TCP6 or UNKNOWN",
            Invalid::V1Fields => "v1 header does not have its four address fields",
            Invalid::V1Address => "v1 address is not an address of its family",
            Invalid::V1Port => "v1 port is not a number from 0 to 65535",
            Invalid::V2Version => "v2 header with an unknown version",
            Invalid::V2Command => "v2 command is neither LOCAL nor PROXY",
            Invalid::V2TooLong => "v2 header declares more than 4096 bytes of addresses",
            Invalid::V2Short => "v2 address block too short for its family",
        })
    }
}

impl std::error::Error for Invalid {}

/// The answer for the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// Not enough bytes yet to decide: read more, then call again.
    Incomplete,
    /// A whole header: the first `consumed` bytes; what follows belongs to
    /// the session.
    Done {
        /// What the header says.
        header: Header,
        /// How many bytes the header took.
        consumed: usize,
    },
    /// Not a header we accept: close without a reply.
    Invalid(Invalid),
}

/// Reads a PROXY header from the start of `buf`, everything received so far.
pub fn parse(buf: &[u8]) -> Parse {
    match buf.first() {
        None => Parse::Incomplete,
        Some(b'P') => starts_with(buf, V1_PREFIX).map_or_else(|p| p, |()| parse_v1(buf)),
        Some(b'\r') => starts_with(buf, V2_SIGNATURE).map_or_else(|p| p, |()| parse_v2(buf)),
        Some(_) => Parse::Invalid(Invalid::NotProxy),
    }
}

/// `Ok` when `buf` begins with all of `want`; `Incomplete` when it is a
/// shorter piece of it; `Invalid` otherwise.
fn starts_with(buf: &[u8], want: &[u8]) -> Result<(), Parse> {
    let n = buf.len().min(want.len());
    if buf[..n] != want[..n] {
        Err(Parse::Invalid(Invalid::NotProxy))
    } else if n < want.len() {
        Err(Parse::Incomplete)
    } else {
        Ok(())
    }
}

fn parse_v1(buf: &[u8]) -> Parse {
    let window = &buf[..buf.len().min(MAX_V1)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= MAX_V1 {
            Parse::Invalid(Invalid::V1TooLong)
        } else {
            Parse::Incomplete
        };
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Parse::Invalid(Invalid::V1BareLf);
    }
    let consumed = lf + 1;
    let line = &window[V1_PREFIX.len()..lf - 1];
    let version = Version::V1;
    // "PROXY UNKNOWN" may be followed by anything up to the CR LF.
    if line == b"UNKNOWN" || line.starts_with(b"UNKNOWN ") {
        return Parse::Done {
            header: Header::Local { version },
            consumed,
        };
    }
    match v1_addresses(line) {
        Ok((client, server)) => Parse::Done {
            header: Header::Proxied {
                version,
                client,
                server,
            },
            consumed,
        },
        Err(why) => Parse::Invalid(why),
    }
}

/// `TCP4 SRC DST SPORT DPORT`, single spaces, nothing else.
fn v1_addresses(line: &[u8]) -> Result<(SocketAddr, SocketAddr), Invalid> {
    let line = std::str::from_utf8(line).map_err(|_| Invalid::V1Fields)?;
    let mut fields = line.split(' ');
    let proto = fields.next().unwrap_or("");
    let v6 = match proto {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(Invalid::V1Protocol),
    };
    let rest: Vec<&str> = fields.collect();
    let [src, dst, sport, dport] = rest[..] else {
        return Err(Invalid::V1Fields);
    };
    let addr = |s: &str| -> Result<IpAddr, Invalid> {
        if v6 {
            s.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            s.parse::<Ipv4Addr>().map(IpAddr::V4)
        }
        .map_err(|_| Invalid::V1Address)
    };
    let port = |s: &str| -> Result<u16, Invalid> {
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid::V1Port);
        }
        s.parse().map_err(|_| Invalid::V1Port)
    };
    Ok((
        SocketAddr::new(addr(src)?, port(sport)?),
        SocketAddr::new(addr(dst)?, port(dport)?),
    ))
}

fn parse_v2(buf: &[u8]) -> Parse {
    // Each byte of the fixed part is judged as soon as it is here, so a
    // verdict on a prefix is the verdict on the whole.
    let Some(&ver_cmd) = buf.get(12) else {
        return Parse::Incomplete;
    };
    if ver_cmd >> 4 != 2 {
        return Parse::Invalid(Invalid::V2Version);
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Parse::Invalid(Invalid::V2Command),
    };
    let (Some(&fam), Some(&hi), Some(&lo)) = (buf.get(13), buf.get(14), buf.get(15)) else {
        return Parse::Incomplete;
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > MAX_V2_PAYLOAD {
        return Parse::Invalid(Invalid::V2TooLong);
    }
    let consumed = 16 + len;
    let Some(block) = buf.get(16..consumed) else {
        return Parse::Incomplete;
    };
    let version = Version::V2;
    if local {
        // Health checks: the address block, if any, is ignored.
        return Parse::Done {
            header: Header::Local { version },
            consumed,
        };
    }
    let stream = fam & 0x0f == 1;
    let addresses = match (fam >> 4, stream) {
        (1, true) => block.get(..12).map(|a| {
            let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]));
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            (
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            )
        }),
        (2, true) => block.get(..36).map(|a| {
            let ip = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&a[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            (
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            )
        }),
        // UNSPEC, UNIX, datagrams: nothing we can use; the balancer itself.
        _ => {
            return Parse::Done {
                header: Header::Local { version },
                consumed,
            }
        }
    };
    // TLVs after the addresses are skipped: `consumed` covers them.
    match addresses {
        Some((client, server)) => Parse::Done {
            header: Header::Proxied {
                version,
                client,
                server,
            },
            consumed,
        },
        None => Parse::Invalid(Invalid::V2Short),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(buf: &[u8]) -> (Header, usize) {
        match parse(buf) {
            Parse::Done { header, consumed } => (header, consumed),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A version 2 header: command, family byte, address block.
    pub(super) fn v2(cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(fam);
        h.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    fn v2_inet(client: [u8; 4], server: [u8; 4], cport: u16, sport: u16) -> Vec<u8> {
        let mut b = client.to_vec();
        b.extend_from_slice(&server);
        b.extend_from_slice(&cport.to_be_bytes());
        b.extend_from_slice(&sport.to_be_bytes());
        b
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let (h, n) = done(b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 45000\r\nTIME\r\n");
        assert_eq!(n, 47);
        assert_eq!(
            h,
            Header::Proxied {
                version: Version::V1,
                client: sa("192.0.2.7:56324"),
                server: sa("198.51.100.1:45000"),
            }
        );
        let (h, _) = done(b"PROXY TCP6 2001:db8::7 ::1 65535 0\r\n");
        assert_eq!(
            h,
            Header::Proxied {
                version: Version::V1,
                client: sa("[2001:db8::7]:65535"),
                server: sa("[::1]:0"),
            }
        );
    }

    #[test]
    fn v1_unknown_is_the_balancer_itself() {
        for line in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
        ] {
            let (h, n) = done(line);
            assert_eq!(
                h,
                Header::Local {
                    version: Version::V1
                }
            );
            assert_eq!(n, line.len());
        }
    }

    #[test]
    fn v1_malformed_lines_say_why() {
        let cases: &[(&[u8], Invalid)] = &[
            (b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", Invalid::V1Protocol),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", Invalid::V1Fields),
            (b"PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n", Invalid::V1Fields),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", Invalid::V1Fields),
            (b"PROXY TCP4 ::1 1.2.3.4 1 2\r\n", Invalid::V1Address),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", Invalid::V1Address),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", Invalid::V1Port),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n", Invalid::V1Port),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", Invalid::V1BareLf),
            (b"PROXY TCP4 1.2.3.4 \xff 1 2\r\n", Invalid::V1Fields),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                parse(bytes),
                Parse::Invalid(*want),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert_eq!(
            Invalid::V1TooLong.to_string(),
            "v1 header longer than 107 bytes"
        );
    }

    #[test]
    fn v1_ports_are_one_to_five_digits_and_nothing_else() {
        // Rust's u16 parser takes a leading '+' and any number of leading
        // zeros: a balancer's header gets neither.
        for port in [
            "000080", "+80", "+0", "-0", "", " 80", "80 ", "8_0", "0x50", "１",
        ] {
            let line = format!("PROXY TCP4 1.2.3.4 5.6.7.8 {port} 2\r\n");
            assert_eq!(
                parse(line.as_bytes()),
                Parse::Invalid(if port.contains(' ') {
                    Invalid::V1Fields
                } else {
                    Invalid::V1Port
                }),
                "source port {port:?}"
            );
            let line = format!("PROXY TCP6 ::1 ::2 1 {port}\r\n");
            assert!(
                matches!(parse(line.as_bytes()), Parse::Invalid(_)),
                "destination port {port:?}"
            );
        }
        // Five digits, leading zeros included, are a port.
        for (port, want) in [("00080", 80), ("65535", 65535), ("0", 0), ("00000", 0)] {
            let line = format!("PROXY TCP4 1.2.3.4 5.6.7.8 {port} {port}\r\n");
            let (h, _) = done(line.as_bytes());
            let Header::Proxied { client, server, .. } = h else {
                panic!("{port}: {h:?}");
            };
            assert_eq!((client.port(), server.port()), (want, want), "{port}");
        }
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n"),
            Parse::Invalid(Invalid::V1Port)
        );
        assert_eq!(
            Invalid::V1Port.to_string(),
            "v1 port is not a number from 0 to 65535"
        );
    }

    #[test]
    fn v1_is_refused_past_107_bytes_not_buffered() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(MAX_V1 - 2, b'x');
        line.extend_from_slice(b"\r\n");
        assert_eq!(line.len(), MAX_V1);
        assert_eq!(done(&line).1, MAX_V1);
        let mut long = line[..MAX_V1 - 2].to_vec();
        long.extend_from_slice(b"x\r\n");
        assert_eq!(parse(&long[..MAX_V1 - 1]), Parse::Incomplete);
        assert_eq!(parse(&long), Parse::Invalid(Invalid::V1TooLong));
        assert_eq!(parse(&long[..MAX_V1]), Parse::Invalid(Invalid::V1TooLong));
    }

    #[test]
    fn v2_proxy_inet_and_inet6_with_tlvs_skipped() {
        let mut block = v2_inet([192, 0, 2, 7], [198, 51, 100, 1], 56324, 45000);
        block.extend_from_slice(&[0x04, 0x00, 0x02, 0xab, 0xcd]); // a NOOP TLV
        let mut h = v2(1, 0x11, &block);
        let header_len = h.len();
        h.extend_from_slice(b"TIME\r\n");
        let (hd, n) = done(&h);
        assert_eq!(n, header_len);
        assert_eq!(&h[n..], b"TIME\r\n");
        assert_eq!(
            hd,
            Header::Proxied {
                version: Version::V2,
                client: sa("192.0.2.7:56324"),
                server: sa("198.51.100.1:45000"),
            }
        );
        let mut b6 = Vec::new();
        b6.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        b6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        b6.extend_from_slice(&443u16.to_be_bytes());
        b6.extend_from_slice(&45000u16.to_be_bytes());
        let (hd, _) = done(&v2(1, 0x21, &b6));
        assert_eq!(
            hd,
            Header::Proxied {
                version: Version::V2,
                client: sa("[2001:db8::7]:443"),
                server: sa("[::1]:45000"),
            }
        );
    }

    #[test]
    fn v2_local_and_other_families_are_the_balancer_itself() {
        let local = Header::Local {
            version: Version::V2,
        };
        assert_eq!(done(&v2(0, 0x00, &[])), (local, 16));
        // LOCAL with an address block: ignored, but consumed.
        let b = v2_inet([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
        assert_eq!(done(&v2(0, 0x11, &b)), (local, 28));
        assert_eq!(done(&v2(1, 0x00, &[])).0, local, "UNSPEC");
        assert_eq!(done(&v2(1, 0x12, &b)).0, local, "UDP over IPv4");
        assert_eq!(done(&v2(1, 0x31, &[0; 216])).0, local, "unix stream");
    }

    #[test]
    fn v2_bad_headers_say_why() {
        let mut h = v2(1, 0x11, &[0; 12]);
        h[12] = 0x11;
        assert_eq!(parse(&h[..13]), Parse::Invalid(Invalid::V2Version));
        h[12] = 0x22;
        assert_eq!(parse(&h[..13]), Parse::Invalid(Invalid::V2Command));
        assert_eq!(
            parse(&v2(1, 0x11, &[0; 11])),
            Parse::Invalid(Invalid::V2Short)
        );
        assert_eq!(
            parse(&v2(1, 0x21, &[0; 35])),
            Parse::Invalid(Invalid::V2Short)
        );
    }

    #[test]
    fn v2_declaring_more_than_4096_bytes_is_refused_at_once() {
        let ok = v2(1, 0x11, &[0; MAX_V2_PAYLOAD]);
        assert_eq!(done(&ok).1, MAX_V2);
        let mut big = v2(1, 0x11, &[]);
        big[14..16].copy_from_slice(&4097u16.to_be_bytes());
        assert_eq!(big.len(), 16);
        assert_eq!(parse(&big), Parse::Invalid(Invalid::V2TooLong));
        // Only the fixed part so far of an acceptable one: wait.
        assert_eq!(parse(&ok[..16]), Parse::Incomplete);
    }

    #[test]
    fn empty_and_partial_signatures_wait() {
        assert_eq!(parse(b""), Parse::Incomplete);
        assert_eq!(parse(b"PRO"), Parse::Incomplete);
        assert_eq!(parse(b"\r\n\r\n\0"), Parse::Incomplete);
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Parse::Incomplete);
    }

    #[test]
    fn a_wrong_signature_is_not_proxy() {
        // The v1 prefix misspelt, a plain request, the v2 signature gone wrong.
        for bytes in [&b"PROXX TCP4"[..], b"TIME\r\n", b"\r\n\r\n\0\r\nQUIT!"] {
            assert_eq!(
                parse(bytes),
                Parse::Invalid(Invalid::NotProxy),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Valid headers of every kind, then some trailing bytes.
        fn stream() -> impl Strategy<Value = Vec<u8>> {
            let v1 = (
                any::<[u8; 4]>(),
                any::<[u8; 4]>(),
                any::<u16>(),
                any::<u16>(),
            )
                .prop_map(|(c, s, cp, sp)| {
                    format!(
                        "PROXY TCP4 {} {} {cp} {sp}\r\n",
                        Ipv4Addr::from(c),
                        Ipv4Addr::from(s)
                    )
                    .into_bytes()
                });
            let v1_6 = (any::<u128>(), any::<u128>(), any::<u16>()).prop_map(|(c, s, p)| {
                format!(
                    "PROXY TCP6 {} {} {p} {p}\r\n",
                    Ipv6Addr::from(c),
                    Ipv6Addr::from(s)
                )
                .into_bytes()
            });
            let v2s = (
                0u8..2,
                prop_oneof![Just(0x11u8), Just(0x21), Just(0x00), Just(0x12), Just(0x31)],
                proptest::collection::vec(any::<u8>(), 0..300),
            )
                .prop_map(|(cmd, fam, mut block)| {
                    let need = match fam {
                        0x11 => 12,
                        0x21 => 36,
                        0x31 => 216,
                        _ => 0,
                    };
                    if block.len() < need {
                        block.resize(need, 7);
                    }
                    v2(cmd, fam, &block)
                });
            let junk = proptest::collection::vec(any::<u8>(), 0..200);
            (prop_oneof![v1, v1_6, v2s, junk.clone()], junk).prop_map(|(mut h, tail)| {
                h.extend_from_slice(&tail);
                h
            })
        }

        /// What a server does: parse the grown buffer after each piece,
        /// stop at the first answer that is not Incomplete.
        fn incremental(bytes: &[u8], cuts: &[usize]) -> Parse {
            let mut ends: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            ends.push(bytes.len());
            ends.sort_unstable();
            for end in ends {
                let p = parse(&bytes[..end]);
                if p != Parse::Incomplete {
                    return p;
                }
            }
            Parse::Incomplete
        }

        proptest! {
            #[test]
            fn splitting_never_changes_the_answer(
                bytes in stream(),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                let whole = parse(&bytes);
                prop_assert_eq!(incremental(&bytes, &cuts), whole);
                // Every split point at once: one byte at a time.
                let all: Vec<usize> = (0..bytes.len()).collect();
                prop_assert_eq!(incremental(&bytes, &all), whole);
            }

            #[test]
            fn never_reads_past_the_header(bytes in stream(), extra in proptest::collection::vec(any::<u8>(), 0..50)) {
                if let Parse::Done { header, consumed } = parse(&bytes) {
                    prop_assert!(consumed <= bytes.len());
                    prop_assert!(consumed <= MAX_V2);
                    // The bytes after the header change nothing.
                    prop_assert_eq!(parse(&bytes[..consumed]), Parse::Done { header, consumed });
                    let mut other = bytes[..consumed].to_vec();
                    other.extend_from_slice(&extra);
                    prop_assert_eq!(parse(&other), Parse::Done { header, consumed });
                    if bytes[0] == b'P' {
                        prop_assert!(consumed <= MAX_V1);
                    }
                }
            }

            #[test]
            fn any_bytes_get_an_answer_within_the_limits(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                match parse(&bytes) {
                    Parse::Incomplete => prop_assert!(bytes.len() < MAX_V2),
                    Parse::Done { consumed, .. } => prop_assert!(consumed <= bytes.len()),
                    Parse::Invalid(_) => {}
                }
            }
        }
    }
}
