//! The Daytime protocol (RFC 867): the time as one line of text, sent as
//! soon as a client connects (TCP) or for every datagram (UDP).
//!
//! RFC 867 leaves the syntax free; the default is ctime(3)'s
//! (`Fri Dec  4 05:44:53 2026`), which inetd's built-in daytime service
//! sends, so clients written against inetd read jamd's line the same way.
//! The line is rendered by [`crate::clock`] (the `[daytime] format` in the
//! `[time] timezone`), so the formats, the zones and the rule that a reply
//! never shows a second already past are those of JAM replies.

use std::sync::Arc;

use crate::clock::{Clock, ClockCache, TimeFormat};

/// The default `[daytime] format`: ctime(3)'s, without its line end.
pub const DEFAULT_FORMAT: &str = "%a %b %e %H:%M:%S %Y";

/// The default format, parsed.
pub fn default_format() -> TimeFormat {
    TimeFormat::parse(DEFAULT_FORMAT).expect("the default daytime format is valid")
}

/// Appends the reply for the instant `secs`.`nanos` (Unix time) to `out`:
/// the time rendered by `clock`, then CR LF.
pub fn write_reply_at(
    out: &mut Vec<u8>,
    cache: &mut ClockCache,
    clock: &Arc<Clock>,
    secs: i64,
    nanos: u32,
) {
    out.extend_from_slice(cache.at(clock, secs, nanos).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends the reply for now to `out`.
pub fn write_reply(out: &mut Vec<u8>, cache: &mut ClockCache, clock: &Arc<Clock>) {
    let (secs, nanos) = crate::clock::unix_now();
    write_reply_at(out, cache, clock, secs, nanos);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Zone;

    fn clock(format: &str, zone: &str) -> Arc<Clock> {
        Arc::new(Clock {
            format: TimeFormat::parse(format).unwrap(),
            zone: Zone::parse(zone).unwrap(),
        })
    }

    fn reply(clock: &Arc<Clock>, secs: i64) -> Vec<u8> {
        let mut out = Vec::new();
        write_reply_at(&mut out, &mut ClockCache::new(), clock, secs, 999_999_999);
        out
    }

    #[test]
    fn the_default_is_ctimes_line_with_cr_lf() {
        let utc = Arc::new(Clock {
            format: default_format(),
            zone: Zone::utc(),
        });
        // 2026-12-04 05:44:53 UTC: a day of month below 10 is space-padded,
        // as ctime(3) pads it.
        assert_eq!(reply(&utc, 1_796_363_093), b"Fri Dec  4 05:44:53 2026\r\n");
        // 2026-11-25 14:03:27 UTC.
        assert_eq!(reply(&utc, 1_795_615_407), b"Wed Nov 25 14:03:27 2026\r\n");
    }

    #[test]
    fn the_line_is_in_the_configured_zone_and_format() {
        assert_eq!(
            reply(&clock(DEFAULT_FORMAT, "+07:00"), 1_796_363_093),
            b"Fri Dec  4 12:44:53 2026\r\n"
        );
        assert_eq!(
            reply(&clock("%Y-%m-%dT%H:%M:%S%z", "-03:00"), 1_796_363_093),
            b"2026-12-04T02:44:53-0300\r\n"
        );
    }

    #[test]
    fn a_reply_never_shows_the_next_second() {
        let c = clock("%T", "UTC");
        let mut cache = ClockCache::new();
        let mut out = Vec::new();
        write_reply_at(&mut out, &mut cache, &c, 1_796_363_093, 999_999_999);
        write_reply_at(&mut out, &mut cache, &c, 1_796_363_094, 0);
        assert_eq!(out, b"05:44:53\r\n05:44:54\r\n");
    }
}
