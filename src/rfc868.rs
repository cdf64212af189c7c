//! The Time protocol (RFC 868): the time as a 32-bit unsigned big-endian
//! count of seconds since 1900-01-01 00:00:00 UTC, sent as soon as a client
//! connects (TCP) or for every datagram (UDP).
//!
//! The count is taken modulo 2^32: it wraps on 2036-02-07 06:28:16 UTC, and
//! the clients of the protocol (rdate, check_time) read a small count after
//! that date as the next era. Sending the count modulo 2^32 is the protocol,
//! not an overflow to avoid.

/// Seconds from 1900-01-01 00:00:00 UTC (RFC 868's epoch) to the Unix epoch.
pub const EPOCH_OFFSET: i64 = 2_208_988_800;

/// The count RFC 868 sends for the Unix time `unix_secs` (whole seconds,
/// rounded down): seconds since 1900 modulo 2^32.
pub fn seconds(unix_secs: i64) -> u32 {
    let since_1900 = i128::from(unix_secs) + i128::from(EPOCH_OFFSET);
    // rem_euclid by 2^32 is always in 0..2^32: the conversion cannot fail.
    u32::try_from(since_1900.rem_euclid(1 << 32)).unwrap_or(0)
}

/// The four bytes of the reply for the Unix time `unix_secs`.
pub fn reply_at(unix_secs: i64) -> [u8; 4] {
    seconds(unix_secs).to_be_bytes()
}

/// The four bytes of the reply for now.
pub fn reply() -> [u8; 4] {
    reply_at(crate::clock::unix_now().0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2036-02-07 06:28:16 UTC: 2^32 seconds after 1900.
    const WRAP: i64 = (1 << 32) - EPOCH_OFFSET;

    #[test]
    fn the_unix_epoch_is_2208988800() {
        assert_eq!(seconds(0), 2_208_988_800);
        assert_eq!(reply_at(0), [0x83, 0xaa, 0x7e, 0x80]);
    }

    #[test]
    fn a_known_date_is_counted_from_1900() {
        // 2026-12-04 05:44:53 UTC.
        assert_eq!(seconds(1_796_363_093), 4_005_351_893);
        assert_eq!(reply_at(1_796_363_093), 4_005_351_893u32.to_be_bytes());
    }

    #[test]
    fn the_count_wraps_on_2036_02_07_06_28_16_utc() {
        assert_eq!(WRAP, 2_085_978_496);
        assert_eq!(reply_at(WRAP - 1), [0xff, 0xff, 0xff, 0xff]);
        assert_eq!(reply_at(WRAP), [0, 0, 0, 0]);
        assert_eq!(reply_at(WRAP + 1), [0, 0, 0, 1]);
        // A whole era later, the same count again.
        assert_eq!(seconds(WRAP + (1 << 32) + 7), 7);
    }

    #[test]
    fn a_clock_set_before_1900_still_gets_a_count() {
        // 1899-12-31 23:59:59 UTC is the last second of the era before.
        assert_eq!(seconds(-EPOCH_OFFSET - 1), u32::MAX);
        // The furthest past a clock can read: no overflow, the count of its era.
        assert_eq!(seconds(i64::MIN), 2_208_988_800);
    }
}
