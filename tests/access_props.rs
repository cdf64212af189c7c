//! Property tests of the access rules (`jamd::access`): the decision for a
//! client depends on which prefixes are listed, never on the order they
//! are written in (jamd.toml(5): the longest matching prefix decides, a tie
//! denies).

use std::net::IpAddr;

use jamd::access::{AccessList, Prefix};
use proptest::prelude::*;

/// A prefix of either family, often short enough to overlap others.
fn any_prefix() -> impl Strategy<Value = Prefix> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Prefix::new(IpAddr::V4(a.into()), l).unwrap()),
        // Few distinct networks, so that entries nest and tie.
        (0u32..4, 0u8..=32).prop_map(|(a, l)| Prefix::new(
            IpAddr::V4((0x0a00_0000 | a << 22).into()),
            l
        )
        .unwrap()),
        (any::<u128>(), 0u8..=128).prop_map(|(a, l)| Prefix::new(IpAddr::V6(a.into()), l).unwrap()),
    ]
}

/// Clients inside and around the listed prefixes.
fn clients(entries: &[Prefix], noise: &[u32]) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = entries.iter().map(|p| p.addr()).collect();
    for (p, n) in entries.iter().zip(noise.iter().cycle()) {
        match p.addr() {
            IpAddr::V4(a) => ips.push(IpAddr::V4((u32::from(a) ^ (n & 0x00ff_ffff)).into())),
            IpAddr::V6(a) => ips.push(IpAddr::V6((u128::from(a) ^ u128::from(*n)).into())),
        }
    }
    ips.extend(noise.iter().map(|&n| IpAddr::V4(n.into())));
    ips
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn decisions_do_not_depend_on_the_order_of_the_lists(
        (allow, allow_shuffled) in prop::collection::vec(any_prefix(), 0..8)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
        (deny, deny_shuffled) in prop::collection::vec(any_prefix(), 0..8)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
        noise in prop::collection::vec(any::<u32>(), 1..8),
    ) {
        let written = AccessList::new(&allow, &deny);
        let reordered = AccessList::new(&allow_shuffled, &deny_shuffled);
        let mut reversed_allow = allow.clone();
        reversed_allow.reverse();
        let mut reversed_deny = deny.clone();
        reversed_deny.reverse();
        let reversed = AccessList::new(&reversed_allow, &reversed_deny);
        let entries: Vec<Prefix> = allow.iter().chain(&deny).copied().collect();
        for ip in clients(&entries, &noise) {
            let d = written.decide(ip);
            prop_assert_eq!(reordered.decide(ip), d, "{}", ip);
            prop_assert_eq!(reversed.decide(ip), d, "{}", ip);
        }
    }

    /// Listing an entry twice changes nothing either.
    #[test]
    fn a_repeated_entry_changes_no_decision(
        allow in prop::collection::vec(any_prefix(), 1..6),
        deny in prop::collection::vec(any_prefix(), 0..6),
        twice in any::<prop::sample::Index>(),
        noise in prop::collection::vec(any::<u32>(), 1..8),
    ) {
        let once = AccessList::new(&allow, &deny);
        let mut more = allow.clone();
        more.push(allow[twice.index(allow.len())]);
        let repeated = AccessList::new(&more, &deny);
        let entries: Vec<Prefix> = allow.iter().chain(&deny).copied().collect();
        for ip in clients(&entries, &noise) {
            prop_assert_eq!(repeated.decide(ip).is_allowed(), once.decide(ip).is_allowed(), "{}", ip);
        }
    }
}
