//! Property tests of the per-source limits (`jamd::sources`): however the
//! connections of several sources interleave, no source is admitted more
//! than its burst plus its rate times the time elapsed, as long as the
//! table remembers it (jamd.toml(5): connection_rate_per_source,
//! connection_burst_per_source, max_tracked_sources).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use jamd::sources::{Rate, SourceKey, SourceLimits, SourceTable};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_source_is_admitted_more_than_burst_plus_rate_times_t(
        per_second in 1u32..50,
        burst in 1u32..10,
        max_open in 0usize..4,
        // (source, milliseconds since the previous attempt, leave at once?)
        attempts in prop::collection::vec((0u8..6, 0u64..300, any::<bool>()), 1..300),
    ) {
        let limits = SourceLimits {
            rate: Rate { per_second, burst },
            max_open,
            // Room for every source: none is ever forgotten.
            max_tracked: 6,
        };
        let mut table = SourceTable::new(limits);
        let t0 = Instant::now();
        let mut elapsed_ms = 0u64;
        let mut admitted: HashMap<u8, u128> = HashMap::new();
        let mut open: HashMap<u8, Vec<_>> = HashMap::new();
        for (src, gap, leave) in attempts {
            elapsed_ms += gap;
            let now = t0 + Duration::from_millis(elapsed_ms);
            let key = SourceKey::new(IpAddr::V4(Ipv4Addr::new(127, 0, 1, src)), 32, 64);
            if let Ok(ticket) = table.admit(key, now) {
                *admitted.entry(src).or_default() += 1;
                if leave {
                    table.release(ticket, now);
                } else {
                    open.entry(src).or_default().push(ticket);
                }
            }
            let n = admitted.get(&src).copied().unwrap_or(0);
            // n ≤ burst + rate × t, in whole milliseconds.
            prop_assert!(
                n * 1000 <= u128::from(burst) * 1000 + u128::from(per_second) * u128::from(elapsed_ms),
                "source {} admitted {} times in {} ms", src, n, elapsed_ms
            );
            if max_open > 0 {
                prop_assert!(table.open(key) <= max_open);
            }
            prop_assert_eq!(table.open(key), open.get(&src).map_or(0, Vec::len));
        }
    }
}
