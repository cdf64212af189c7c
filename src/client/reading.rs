//! Reading a server's time from a reply and its offset from this machine's clock.
//!
//! The server's zone (`--timezone`) is a [`Zone`] as in the daemon's configuration.
//!
//! # How the offset is measured
//!
//! jamc notes this machine's clock when it sends `TIME` and again when the reply
//! line is complete, and takes the middle of that round trip as the instant the
//! server read its clock. The offset is *server time − local time* at that instant
//! (positive: the server is ahead).
//!
//! A reply that holds only a time of day is placed on the date nearest to the
//! local instant, i.e. the difference is wrapped into ±12 h, so `00:00:02`
//! against a local `23:59:58` reads as +4 s, not −23 h 59 min 56 s.
//!
//! A reply without fractions of a second (the default `%H:%M:%S`) was truncated
//! by the server anywhere inside its second, so it is read as the middle of
//! that second (+0.5 s); likewise `%H:%M` is read as the middle of its minute.
//!
//! # Precision
//!
//! For a whole-second format the offset is good to ±0.5 s plus half the round
//! trip (±(0.5 s + rtt/2)); with fractions of a second it is good to ±rtt/2
//! (plus the digits' own resolution). On a LAN rtt/2 is well under a
//! millisecond, so the default thresholds (2 s, 10 s) are far above the noise.

use std::fmt;

use chrono::format::{Fixed, Item, Numeric, Parsed, StrftimeItems};
use chrono::{DateTime, Duration, NaiveDateTime, Utc};

use super::escape::escape;
use crate::clock::Zone;

/// Nanoseconds in half a day: time-of-day offsets are wrapped into ±this.
const HALF_DAY_NANOS: i128 = 12 * 3600 * 1_000_000_000;
/// Nanoseconds in a day.
const DAY_NANOS: i128 = 2 * HALF_DAY_NANOS;

/// How a reply's time is read (`--format`): a strftime format, checked when built.
///
/// Not the daemon's `clock::TimeFormat`, which renders; this one parses, and
/// also accepts fractions of a second the format does not mention.
#[derive(Debug, Clone)]
pub struct ReplyFormat {
    text: String,
    /// The format's items, with an optional fraction (`%.f`) after each `%S`.
    items: Vec<Item<'static>>,
}

/// Why a `--format` was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid --format {:?}: not a valid strftime format",
            self.0
        )
    }
}

impl std::error::Error for FormatError {}

impl ReplyFormat {
    /// Parses a chrono strftime format; fractional seconds after `%S` are read when present.
    pub fn new(text: &str) -> Result<ReplyFormat, FormatError> {
        let parsed = StrftimeItems::new(text)
            .parse_to_owned()
            .map_err(|_| FormatError(text.to_string()))?;
        // A format that reads a fraction anywhere (`%S%.3f`, but also
        // `%S.%3f` and `%T.%f`, where a literal dot comes between) reads it
        // as written; otherwise an optional `%.f` after each `%S` reads the
        // fraction a server may add.
        let has_fraction = parsed.iter().any(is_fraction);
        let mut items = Vec::with_capacity(parsed.len() + 1);
        for item in parsed {
            let is_second = matches!(item, Item::Numeric(Numeric::Second, _));
            items.push(item);
            if is_second && !has_fraction {
                // `%.f` parses `.123` when it is there and nothing otherwise.
                items.push(Item::Fixed(Fixed::Nanosecond));
            }
        }
        Ok(ReplyFormat {
            text: text.to_string(),
            items,
        })
    }

    /// The format as given (the fuzz target `reply` names it in what it reports).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Reads the time part of a JAM reply: what it shows, and the unit it is truncated to.
    pub fn read(&self, text: &str) -> Result<Reading, TimeError> {
        let bad = || TimeError {
            text: text.to_string(),
            format: self.text.clone(),
        };
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, text.trim(), self.items.iter()).map_err(|_| bad())?;

        // The reading is truncated to its finest field: that field's unit.
        let unit = if parsed.nanosecond().is_some() {
            Duration::nanoseconds(10_i64.pow(9 - fraction_digits(text).clamp(1, 9)))
        } else if parsed.second().is_some() || parsed.timestamp().is_some() {
            Duration::seconds(1)
        } else {
            Duration::seconds(60)
        };

        let time = if let Some(ts) = parsed.timestamp() {
            let nanos = parsed.nanosecond().unwrap_or(0);
            ServerTime::Instant(DateTime::from_timestamp(ts, nanos).ok_or_else(bad)?)
        } else {
            let time = parsed.to_naive_time().map_err(|_| bad())?;
            let offset = parsed.offset();
            match parsed.to_naive_date() {
                Ok(date) => ServerTime::DateTime {
                    wall: NaiveDateTime::new(date, time),
                    offset,
                },
                Err(_) => ServerTime::TimeOfDay {
                    since_midnight: time.signed_duration_since(chrono::NaiveTime::MIN),
                    offset,
                },
            }
        };
        Ok(Reading { time, unit })
    }
}

/// Digits of the last fraction in a reply (`14:03:27.250` → 3): its resolution.
pub(crate) fn fraction_digits(text: &str) -> u32 {
    let bytes = text.as_bytes();
    let mut digits = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if matches!(b, b'.' | b',') {
            let run = bytes[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if run > 0 {
                digits = run;
            }
        }
    }
    u32::try_from(digits).unwrap_or(9)
}

/// What one reply shows: the start of the unit it shows, and that unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The time shown (the start of its unit: the server truncates).
    pub time: ServerTime,
    /// 1 s for `%H:%M:%S`, 1 ms for `%.3f`, 1 min for `%H:%M`.
    pub unit: Duration,
}

/// True for an item that reads fractions of a second.
fn is_fraction(item: &Item<'_>) -> bool {
    matches!(
        item,
        Item::Fixed(
            Fixed::Nanosecond
                | Fixed::Nanosecond3
                | Fixed::Nanosecond6
                | Fixed::Nanosecond9
                | Fixed::Internal(_)
        ) | Item::Numeric(Numeric::Nanosecond, _)
    )
}

/// A reply's time that could not be read with the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeError {
    text: String,
    format: String,
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot read \"{}\" as a time with format \"{}\"",
            escape(self.text.as_bytes()),
            escape(self.format.as_bytes())
        )
    }
}

impl std::error::Error for TimeError {}

/// What a reply says the server's clock read (the start of its unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTime {
    /// A time of day only (the usual case): placed on the nearest date.
    TimeOfDay {
        /// Time since midnight (may exceed 24 h by a leap second or the half-unit).
        since_midnight: Duration,
        /// UTC offset written in the reply (`%z`), if any; else the zone given.
        offset: Option<i32>,
    },
    /// A full date and time on the wall clock.
    DateTime {
        /// The wall-clock reading.
        wall: NaiveDateTime,
        /// UTC offset written in the reply (`%z`), if any; else the zone given.
        offset: Option<i32>,
    },
    /// An absolute instant (`%s`).
    Instant(DateTime<Utc>),
}

impl ServerTime {
    /// The time shown minus local at `local` (the middle of the round
    /// trip), read in `zone`.
    ///
    /// A reading taken near a change of the zone's UTC offset (DST) may come
    /// from the other side of the change than `local`: each offset the zone
    /// has within half a day is tried, those that agree with the instant they
    /// imply are kept, and of these the reading nearest local time wins (on
    /// a tie, the one taken at the offset in force at `local`).
    pub fn offset_from(&self, local: DateTime<Utc>, zone: &Zone) -> Duration {
        let written = match *self {
            ServerTime::Instant(instant) => return instant.signed_duration_since(local),
            ServerTime::DateTime { offset, .. } | ServerTime::TimeOfDay { offset, .. } => offset,
        };
        if let Some(secs) = written {
            return self.offset_with(local, secs);
        }
        let mut best: Option<(bool, Duration)> = None;
        for secs in offsets_near(zone, local) {
            let diff = self.offset_with(local, secs);
            let implied = local + diff;
            let agrees = zone.offset_at(implied.timestamp()) == secs;
            let better = match best {
                None => true,
                Some((best_agrees, best_diff)) => {
                    (agrees, std::cmp::Reverse(diff.abs()))
                        > (best_agrees, std::cmp::Reverse(best_diff.abs()))
                }
            };
            if better {
                best = Some((agrees, diff));
            }
        }
        best.map_or_else(
            || self.offset_with(local, zone.offset_at(local.timestamp())),
            |(_, diff)| diff,
        )
    }

    /// Server minus local, the reading taken at UTC offset `secs`.
    fn offset_with(&self, local: DateTime<Utc>, secs: i32) -> Duration {
        // The wall clock the server would show at `local` if it were exact.
        let local_wall = local.naive_utc() + Duration::seconds(i64::from(secs));
        match *self {
            ServerTime::Instant(instant) => instant.signed_duration_since(local),
            ServerTime::DateTime { wall, .. } => wall.signed_duration_since(local_wall),
            ServerTime::TimeOfDay { since_midnight, .. } => {
                let midnight = local_wall.date().and_time(chrono::NaiveTime::MIN);
                let diff = (midnight + since_midnight).signed_duration_since(local_wall);
                // Less than a day either way (a time of day, plus a leap
                // second at most): far inside an i64 of nanoseconds.
                let diff = diff
                    .num_nanoseconds()
                    .expect("a day of nanoseconds fits an i64");
                let wrapped = wrap_half_day(i128::from(diff));
                Duration::nanoseconds(
                    i64::try_from(wrapped).expect("half a day of nanoseconds fits an i64"),
                )
            }
        }
    }
}

/// The distinct UTC offsets `zone` has within half a day of `local`.
///
/// Sampled every half hour: no zone keeps an offset for less than that.
/// The offset in force at `local` comes first (it wins a tie, see
/// [`ServerTime::offset_from`]); the order of the rest decides nothing, as
/// there is at most one: no zone in tzdata changes its offset twice within
/// a day.
fn offsets_near(zone: &Zone, local: DateTime<Utc>) -> Vec<i32> {
    let mut offsets = vec![zone.offset_at(local.timestamp())];
    for step in -24..=24_i64 {
        let secs = zone.offset_at(local.timestamp() + step * 1800);
        if !offsets.contains(&secs) {
            offsets.push(secs);
        }
    }
    offsets
}

/// Wraps a time-of-day difference into [−12 h, +12 h).
///
/// (`diff - HALF_DAY_NANOS` in place of `diff + HALF_DAY_NANOS` would give
/// the same: the two differ by a whole day, which `rem_euclid` removes.)
fn wrap_half_day(diff: i128) -> i128 {
    (diff + HALF_DAY_NANOS).rem_euclid(DAY_NANOS) - HALF_DAY_NANOS
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn at(h: u32, m: u32, s: u32, ms: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, h, m, s).unwrap() + Duration::milliseconds(ms.into())
    }

    fn offset_ms(format: &str, reply: &str, local: DateTime<Utc>, zone: &str) -> i64 {
        // As the one-reply estimate has it: the middle of the unit shown.
        let r = ReplyFormat::new(format).unwrap().read(reply).unwrap();
        (r.time.offset_from(local, &Zone::parse(zone).unwrap()) + r.unit / 2).num_milliseconds()
    }

    /// Asserts the offset read from `reply`, naming the case when it is wrong.
    fn check(format: &str, reply: &str, local: DateTime<Utc>, zone: &str, want: i64) {
        let got = offset_ms(format, reply, local, zone);
        assert_eq!(got, want, "{format:?} reading {reply:?} in {zone}");
    }

    #[test]
    fn offsets_are_read_from_replies() {
        // (format, reply, our time, zone, the offset in ms to read)
        let cases = [
            // A whole-second reply is read as the middle of its second.
            ("%H:%M:%S", "14:03:27", at(14, 3, 27, 0), "UTC", 500),
            ("%H:%M:%S", "14:03:32", at(14, 3, 27, 0), "UTC", 5500),
            ("%H:%M:%S", "14:02:27", at(14, 3, 27, 500), "UTC", -60_000),
            // Fractions are read when present, even if the format lacks them.
            ("%H:%M:%S", "14:03:32.250", at(14, 3, 27, 0), "UTC", 5250),
            ("%H:%M:%S%.3f", "14:03:27.100", at(14, 3, 27, 0), "UTC", 100),
            // An explicit %.f with no fraction in the reply still means whole seconds.
            ("%H:%M:%S%.f", "14:03:27", at(14, 3, 27, 0), "UTC", 500),
            // Midnight wraps: the server already past it, we just before (server
            // ahead); the server still before it, we just past (server behind).
            ("%H:%M:%S", "00:00:02", at(23, 59, 58, 0), "UTC", 4500),
            ("%H:%M:%S", "23:59:58", at(0, 0, 2, 0), "UTC", -3500),
            // Offsets stay within half a day.
            ("%H:%M:%S", "02:00:00", at(14, 0, 0, 0), "UTC", -43_199_500),
            ("%H:%M:%S", "01:59:59", at(14, 0, 0, 0), "UTC", 43_199_500),
            // A fixed zone is applied before comparing: 23:59:58 UTC is
            // 06:59:58 at +07:00; 22:00:00 at -02:00.
            ("%H:%M:%S", "07:00:03", at(23, 59, 58, 0), "+07:00", 5500),
            ("%H:%M:%S", "21:59:00", at(23, 59, 58, 0), "-02:00", -57_500),
            // Other formats are understood.
            ("%I:%M:%S %p", "02:03:30 PM", at(14, 3, 27, 0), "UTC", 3500),
            ("%H:%M", "14:03", at(14, 3, 0, 0), "UTC", 30_000),
            // A date a day behind: minus a day, plus the middle of the second.
            (
                "%Y-%m-%d %H:%M:%S",
                "2026-11-24 14:03:27",
                at(14, 3, 27, 0),
                "UTC",
                -86_399_500,
            ),
            // 1795615410 is 14:03:30 UTC on the day at() gives.
            ("%s", "1795615412", at(14, 3, 30, 0), "UTC", 2500),
            (
                "%H:%M:%S %z",
                "16:03:27 +0200",
                at(14, 3, 27, 0),
                "-05:00",
                500,
            ),
        ];
        for (format, reply, local, zone, want) in cases {
            check(format, reply, local, zone, want);
        }
    }

    #[test]
    fn unreadable_times_are_errors() {
        let f = ReplyFormat::new("%H:%M:%S").unwrap();
        for bad in ["", "noon", "25:00:00", "14:03", "14:03:27 extra"] {
            assert!(f.read(bad).is_err(), "{bad}");
        }
        assert!(ReplyFormat::new("%H:%Q").is_err());
    }

    #[test]
    fn a_format_is_kept_as_written() {
        // As written, not as the items it is read with (`%T` gets an
        // optional fraction after its seconds).
        assert_eq!(ReplyFormat::new("%T").unwrap().as_str(), "%T");
    }

    #[test]
    fn errors_say_what_was_not_read_and_with_what() {
        // What jamc prints: the format, the reply, and a reply's control
        // characters escaped (a server's bytes never drive the terminal).
        assert_eq!(
            ReplyFormat::new("%H:%Q").unwrap_err().to_string(),
            r#"invalid --format "%H:%Q": not a valid strftime format"#
        );
        let f = ReplyFormat::new("%H:%M:%S").unwrap();
        assert_eq!(
            f.read("noon\x1b[2J").unwrap_err().to_string(),
            r#"cannot read "noon\x1b[2J" as a time with format "%H:%M:%S""#
        );
    }

    #[test]
    fn a_reading_is_as_fine_as_its_last_fraction() {
        // The unit a reply is truncated to: 10^-n s for n digits, whatever
        // the format says; a second or a minute without them.
        let f = ReplyFormat::new("%H:%M:%S").unwrap();
        for digits in 1..=9 {
            let reply = format!("14:03:27.{}", "7".repeat(digits));
            let want = Duration::nanoseconds(10_i64.pow(9 - u32::try_from(digits).unwrap()));
            assert_eq!(f.read(&reply).unwrap().unit, want, "{reply}");
        }
        assert_eq!(f.read("14:03:27").unwrap().unit, Duration::seconds(1));
        let unit =
            |format: &str, reply: &str| ReplyFormat::new(format).unwrap().read(reply).unwrap().unit;
        assert_eq!(unit("%H:%M", "14:03"), Duration::seconds(60));
        assert_eq!(unit("%s", "1795615412"), Duration::seconds(1));
        // A comma or full stop later in the reply, with no digits after it,
        // is no fraction: the milliseconds are still the finest field.
        assert_eq!(
            unit("%H:%M:%S%.3f %a, %d %b %Y", "14:03:27.250 Wed, 25 Nov 2026"),
            Duration::milliseconds(1)
        );
    }

    #[test]
    fn fractions_after_a_literal_dot_are_read_as_written() {
        for (format, reply) in [
            ("%H:%M:%S.%3f", "14:03:27.250"),
            ("%T.%f", "14:03:27.250000000"),
            ("%H:%M:%S%.3f", "14:03:27.250"),
            ("%T%.6f", "14:03:27.250000"),
        ] {
            check(format, reply, at(14, 3, 27, 0), "UTC", 250);
        }
    }

    #[test]
    fn a_reading_across_a_dst_change_is_taken_on_the_side_nearest_local_time() {
        // New York leaves DST at 06:00 UTC on 1 November 2026 (02:00 EDT -> 01:00 EST).
        let local = Utc.with_ymd_and_hms(2026, 11, 1, 5, 59, 59).unwrap();
        check("%H:%M:%S", "01:00:01", local, "America/New_York", 2500);
        // The other way: the server still shows EDT, we are already past the change.
        let local = Utc.with_ymd_and_hms(2026, 11, 1, 6, 0, 1).unwrap();
        check("%H:%M:%S", "01:59:59", local, "America/New_York", -1500);
        // Entering DST (8 March 2026, 07:00 UTC: 02:00 EST -> 03:00 EDT).
        let local = Utc.with_ymd_and_hms(2026, 3, 8, 6, 59, 59).unwrap();
        check("%H:%M:%S", "03:00:01", local, "America/New_York", 2500);
        // A server an hour wrong on the evening before the change stays an hour wrong.
        let local = Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap();
        check(
            "%H:%M:%S",
            "22:00:00",
            local,
            "America/New_York",
            -3_599_500,
        );
        // Half an hour before the change (01:30 EDT), a server showing
        // 00:30 is an hour behind: read as EST it would be exact, but 00:30
        // EST is 05:30 UTC, when New York is on EDT, so that reading does
        // not agree with the zone and is not taken.
        let local = Utc.with_ymd_and_hms(2026, 11, 1, 5, 30, 0).unwrap();
        check(
            "%H:%M:%S",
            "00:30:00",
            local,
            "America/New_York",
            -3_599_500,
        );
    }

    #[test]
    fn a_reading_across_a_zone_s_last_change_is_read_on_its_side() {
        // Mexico City left DST for good at 07:00 UTC on 30 October 2022
        // (01:59:59 CDT, then 01:00 CST): a server still on CDT, two seconds
        // after it, is two seconds behind, not an hour ahead, though CDT is
        // neither the zone's offset now nor in any rule it has since.
        let local = Utc.with_ymd_and_hms(2022, 10, 30, 7, 0, 1).unwrap();
        check("%H:%M:%S", "01:59:59", local, "America/Mexico_City", -1500);
    }

    #[test]
    fn of_two_readings_equally_near_the_one_at_the_offset_in_force_wins() {
        // 05:40 UTC is 01:40 EDT, twenty minutes before New York leaves DST;
        // a server showing 01:10 is half an hour behind on EDT, or half an
        // hour ahead on EST (01:10 EST is 06:10 UTC, after the change): both
        // agree with the zone and are as near. The offset in force here
        // (EDT) decides, the same on every run.
        let local = Utc.with_ymd_and_hms(2026, 11, 1, 5, 40, 0).unwrap();
        check(
            "%H:%M:%S",
            "01:10:00",
            local,
            "America/New_York",
            -1_799_500,
        );
    }
}
