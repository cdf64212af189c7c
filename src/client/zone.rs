//! The server's time zone for `jamc --check`: `local`, `UTC`, a fixed offset
//! like `+07:00`, or an IANA name like `Asia/Jakarta`.
//!
//! Zones come from the system zoneinfo through tz-rs, as in the daemon. Fixed
//! offsets are parsed here by hand because a POSIX `TZ` string reads the sign
//! the other way round (`TZ=UTC-7` is seven hours *ahead* of UTC).

use std::fmt;

use chrono::{DateTime, NaiveDateTime};

/// Largest fixed offset accepted, in seconds (tz-rs allows just under 26 h; real zones stay within ±14 h).
const MAX_FIXED_OFFSET_SECS: i32 = 24 * 3600;

/// A time zone in which the server's wall-clock time is read.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    kind: ZoneKind,
}

#[derive(Debug, Clone)]
enum ZoneKind {
    Fixed(i32),
    Rules(tz::TimeZone),
}

/// Why a `--timezone` value was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneError {
    given: String,
    why: String,
}

impl fmt::Display for ZoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid time zone {:?}: {} (use local, UTC, an offset like +07:00, or a name like Asia/Jakarta)",
            self.given, self.why
        )
    }
}

impl std::error::Error for ZoneError {}

impl Zone {
    /// Parses `local`, `UTC`, `±HH[:MM]` / `±HHMM`, or an IANA zone name.
    pub fn parse(text: &str) -> Result<Zone, ZoneError> {
        let given = text.trim();
        let err = |why: &str| ZoneError {
            given: text.to_string(),
            why: why.to_string(),
        };
        if given.is_empty() {
            return Err(err("empty"));
        }
        if given.eq_ignore_ascii_case("local") {
            return Zone::local().map_err(|why| err(&why));
        }
        if given.eq_ignore_ascii_case("utc") || given.eq_ignore_ascii_case("z") {
            return Ok(Zone::fixed_named("UTC", 0));
        }
        if given.starts_with(['+', '-']) {
            let secs = parse_fixed_offset(given).ok_or_else(|| err("not an offset like +07:00"))?;
            return Ok(Zone::fixed_named(given, secs));
        }
        if given.contains("..") || given.starts_with('/') {
            return Err(err("not a zone name"));
        }
        match tz::TimeZone::from_posix_tz(given) {
            Ok(tz) => Ok(Zone {
                name: given.to_string(),
                kind: ZoneKind::Rules(tz),
            }),
            Err(e) => Err(err(&format!("unknown zone ({e})"))),
        }
    }

    /// The machine's local zone: `TZ` when it is set, else /etc/localtime, else UTC (as the C library does).
    pub fn local() -> Result<Zone, String> {
        if let Ok(tz_env) = std::env::var("TZ") {
            let tz_env = tz_env.trim();
            if !tz_env.is_empty() {
                return tz::TimeZone::from_posix_tz(tz_env)
                    .map(|tz| Zone {
                        name: "local".to_string(),
                        kind: ZoneKind::Rules(tz),
                    })
                    .map_err(|e| format!("cannot read TZ={tz_env:?}: {e}"));
            }
        }
        match tz::TimeZone::local() {
            Ok(tz) => Ok(Zone {
                name: "local".to_string(),
                kind: ZoneKind::Rules(tz),
            }),
            // No /etc/localtime (minimal containers): the C library uses UTC then, so do we.
            Err(_) => Ok(Zone::fixed_named("local", 0)),
        }
    }

    /// A fixed offset east of UTC, in seconds.
    pub fn fixed(offset_secs: i32) -> Zone {
        Zone::fixed_named(&format_offset(offset_secs), offset_secs)
    }

    fn fixed_named(name: &str, secs: i32) -> Zone {
        Zone {
            name: name.to_string(),
            kind: ZoneKind::Fixed(secs),
        }
    }

    /// The name the zone was given by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Offset east of UTC, in seconds, in force at `unix_secs`.
    pub fn offset_at(&self, unix_secs: i64) -> i32 {
        match &self.kind {
            ZoneKind::Fixed(secs) => *secs,
            ZoneKind::Rules(tz) => tz
                .find_local_time_type(unix_secs)
                .map(|t| t.ut_offset())
                // Outside what the rules cover: fall back to UTC rather than fail a check.
                .unwrap_or(0),
        }
    }

    /// The wall-clock date and time in this zone at an instant.
    pub fn wall_clock(&self, instant: DateTime<chrono::Utc>) -> NaiveDateTime {
        let offset = self.offset_at(instant.timestamp());
        instant.naive_utc() + chrono::Duration::seconds(i64::from(offset))
    }
}

/// Reads `+07:00`, `-03:30`, `+0700`, `+07` as seconds east of UTC.
fn parse_fixed_offset(text: &str) -> Option<i32> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    let all_digits =
        |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(hours) || !all_digits(minutes) {
        return None;
    }
    let hours: i32 = hours.parse().ok()?;
    let minutes: i32 = minutes.parse().ok()?;
    if minutes >= 60 {
        return None;
    }
    let secs = hours * 3600 + minutes * 60;
    if secs > MAX_FIXED_OFFSET_SECS {
        return None;
    }
    Some(sign * secs)
}

/// Renders seconds east of UTC as `+07:00`.
fn format_offset(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let abs = secs.unsigned_abs();
    format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn fixed_offsets_keep_their_sign() {
        assert_eq!(parse_fixed_offset("+07:00"), Some(7 * 3600));
        assert_eq!(parse_fixed_offset("-03:00"), Some(-3 * 3600));
        assert_eq!(parse_fixed_offset("+0530"), Some(5 * 3600 + 30 * 60));
        assert_eq!(parse_fixed_offset("-09"), Some(-9 * 3600));
        assert_eq!(parse_fixed_offset("+00:00"), Some(0));
    }

    #[test]
    fn bad_fixed_offsets_are_refused() {
        for bad in [
            "+",
            "+7:60",
            "+25:00",
            "+ab:00",
            "+123",
            "07:00",
            "+07:00:00",
        ] {
            assert_eq!(parse_fixed_offset(bad), None, "{bad}");
        }
        assert!(Zone::parse("+99:00").is_err());
        assert!(Zone::parse("").is_err());
        assert!(Zone::parse("../etc/passwd").is_err());
        assert!(Zone::parse("No/Such_Zone_Here").is_err());
    }

    #[test]
    fn utc_and_fixed_zones_give_the_wall_clock() {
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 11, 25, 23, 30, 0)
            .unwrap();
        let z = Zone::parse("+07:00").unwrap();
        assert_eq!(z.wall_clock(t).to_string(), "2026-11-26 06:30:00");
        let z = Zone::parse("-03:00").unwrap();
        assert_eq!(z.wall_clock(t).to_string(), "2026-11-25 20:30:00");
        let z = Zone::parse("utc").unwrap();
        assert_eq!(z.wall_clock(t).to_string(), "2026-11-25 23:30:00");
    }

    #[test]
    fn iana_names_are_read_from_zoneinfo_when_present() {
        if !std::path::Path::new("/usr/share/zoneinfo/Asia/Jakarta").exists() {
            eprintln!("skipped: no system zoneinfo");
            return;
        }
        let t = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let z = Zone::parse("Asia/Jakarta").unwrap();
        assert_eq!(z.offset_at(t.timestamp()), 7 * 3600);
    }

    #[test]
    fn local_zone_always_resolves() {
        assert!(Zone::parse("local").is_ok());
    }
}
