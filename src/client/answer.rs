//! What a server's reply means, one parser per protocol jamc speaks:
//!
//! - JAM (jamd's own, see jamd(8)): a line `JAM <time>` or `ERROR <reason>`;
//! - Daytime (RFC 867): one line of text; its time is read when it holds
//!   `hh:mm:ss`, with the date when the line is in ctime(3)'s form
//!   (`Fri Dec  4 04:12:30 2026`, what inetd sends), RFC 2822's
//!   (`Fri, 04 Dec 2026 04:12:30 +0000`), ISO 8601's
//!   (`2026-12-04T04:12:30Z`) or xinetd's (`04 DEC 2026 04:12:30 UTC`);
//! - Time (RFC 868): four bytes, seconds since 1900-01-01 00:00 UTC modulo
//!   2^32, read in the era nearest this machine's clock, so readings across
//!   2036-02-07 06:28:16 UTC (where the count wraps) are right.

use std::fmt;

use chrono::{DateTime, Duration, FixedOffset, NaiveDateTime, NaiveTime, Utc};

use super::reading::{fraction_digits, Reading, ServerTime};

/// The JAM port, unless told otherwise.
pub(crate) const DEFAULT_PORT: u16 = 45000;

/// Which protocol jamc speaks (`--protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// JAM: `TIME` requests on one connection.
    Jam,
    /// Daytime (RFC 867): the server sends one line and closes.
    Daytime,
    /// Time (RFC 868): the server sends four bytes and closes.
    Rfc868,
}

impl Protocol {
    /// The name used wherever a protocol is named: `jam`, `daytime`, `rfc868`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Jam => "jam",
            Protocol::Daytime => "daytime",
            Protocol::Rfc868 => "rfc868",
        }
    }

    /// The port a server of this protocol listens on unless told otherwise.
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Jam => DEFAULT_PORT,
            Protocol::Daytime => 13,
            Protocol::Rfc868 => 37,
        }
    }

    /// Reads a `--protocol` value.
    pub fn parse(text: &str) -> Result<Protocol, String> {
        match text.trim() {
            "jam" => Ok(Protocol::Jam),
            "daytime" => Ok(Protocol::Daytime),
            "rfc868" | "time" => Ok(Protocol::Rfc868),
            other => Err(format!(
                "{other:?} is not a protocol jamc speaks (jam, daytime or rfc868)"
            )),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The transport of a daytime or rfc868 reading (`--udp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One TCP connection a reading.
    Tcp,
    /// One datagram a reading, from a socket of its own.
    Udp,
}

/// A JAM reply line (without its line end), as the protocol reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JamReply<'a> {
    /// `JAM <time>`: the time part.
    Time(&'a str),
    /// `ERROR`, or `ERROR <reason>`: the whole line.
    Error,
    /// Anything else: not the protocol's.
    Other,
}

/// Reads a JAM reply line (its line end already cut).
pub fn jam_reply(line: &[u8]) -> JamReply<'_> {
    if let Some(rest) = line.strip_prefix(b"ERROR") {
        if rest.is_empty() || rest.starts_with(b" ") {
            return JamReply::Error;
        }
    }
    match std::str::from_utf8(line)
        .ok()
        .and_then(|l| l.strip_prefix("JAM "))
    {
        Some(time) if !time.trim().is_empty() => JamReply::Time(time),
        _ => JamReply::Other,
    }
}

/// A line without its line end (LF or CR LF).
pub fn without_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Seconds from 1900-01-01 to 1970-01-01 (RFC 868's epoch to Unix's).
const RFC868_TO_UNIX: i64 = 2_208_988_800;
/// RFC 868's count wraps every 2^32 seconds.
const RFC868_ERA: i64 = 1 << 32;

/// The instant an RFC 868 value shows, in the era nearest `near`.
pub fn rfc868_instant(value: u32, near: DateTime<Utc>) -> DateTime<Utc> {
    let near_1900 = near.timestamp() + RFC868_TO_UNIX;
    let value = i64::from(value);
    // The era that puts the value within half an era of `near`.
    let era = (near_1900 - value + RFC868_ERA / 2).div_euclid(RFC868_ERA);
    let unix = value + era * RFC868_ERA - RFC868_TO_UNIX;
    DateTime::from_timestamp(unix, 0).unwrap_or(near)
}

/// The RFC 868 value of the four bytes a server sent.
pub fn rfc868_value(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// `2026-12-04T04:12:30Z`: how jamc prints an RFC 868 reading.
pub fn rfc868_text(instant: DateTime<Utc>) -> String {
    instant.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// An RFC 868 reading: the instant shown, to the second.
pub fn rfc868_reading(value: u32, near: DateTime<Utc>) -> Reading {
    Reading {
        time: ServerTime::Instant(rfc868_instant(value, near)),
        unit: Duration::seconds(1),
    }
}

/// The unit a time with `text`'s fraction is truncated to (1 s without one).
fn unit_of(text: &str) -> Duration {
    match fraction_digits(text) {
        0 => Duration::seconds(1),
        digits => Duration::nanoseconds(10_i64.pow(9 - digits.min(9))),
    }
}

/// Zone names that mean UTC.
fn is_utc_name(name: &str) -> bool {
    matches!(
        name.to_ascii_uppercase().as_str(),
        "UTC" | "GMT" | "UT" | "Z" | "ZULU"
    )
}

/// Reads the time in a daytime line (its line end cut or not): `None` when
/// the line holds no `hh:mm:ss`. A date is read with it when the line has one
/// of the forms in the module docs; a zone when the line names one (an
/// offset, or UTC/GMT), else the time is in the zone `--timezone` gives.
pub fn daytime_reading(line: &str) -> Option<Reading> {
    let text = line.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    let unit = unit_of(text);
    let instant = |t: DateTime<FixedOffset>| Reading {
        time: ServerTime::Instant(t.with_timezone(&Utc)),
        unit,
    };
    let wall = |wall: NaiveDateTime, offset: Option<i32>| Reading {
        time: ServerTime::DateTime { wall, offset },
        unit,
    };
    // ISO 8601 / RFC 3339, with a zone.
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(instant(t));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f %z"] {
        if let Ok(t) = DateTime::parse_from_str(text, f) {
            return Some(instant(t));
        }
    }
    // RFC 2822 (it also takes GMT and UT).
    if let Ok(t) = DateTime::parse_from_rfc2822(text) {
        return Some(instant(t));
    }
    // Forms whose last word may be a zone name: xinetd's, ctime(3) with a
    // zone, ISO 8601 with a space.
    let (body, zone) = match text.rsplit_once(char::is_whitespace) {
        Some((body, last)) if last.chars().all(|c| c.is_ascii_alphabetic()) && !last.is_empty() => {
            (body.trim_end(), Some(last))
        }
        _ => (text, None),
    };
    let offset = zone.filter(|z| is_utc_name(z)).map(|_| 0);
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%d %b %Y %H:%M:%S%.f",
        "%a %b %e %H:%M:%S%.f %Y",
        "%a, %d %b %Y %H:%M:%S%.f",
        "%a %d %b %Y %H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(body, f) {
            return Some(wall(t, offset));
        }
    }
    // ctime(3) with the zone between the time and the year (date(1)'s form).
    if let Some((before, year)) = text.rsplit_once(char::is_whitespace) {
        if let Some((head, zone)) = before.rsplit_once(char::is_whitespace) {
            let joined = format!("{head} {year}");
            if let Ok(t) = NaiveDateTime::parse_from_str(&joined, "%a %b %e %H:%M:%S%.f %Y") {
                return Some(wall(t, is_utc_name(zone).then_some(0)));
            }
        }
    }
    // Any other line: the first hh:mm:ss in it (a fraction read when present).
    let time = find_time_of_day(text)?;
    Some(Reading {
        time: ServerTime::TimeOfDay {
            since_midnight: time.0.signed_duration_since(NaiveTime::MIN),
            offset,
        },
        unit: time.1,
    })
}

/// The first `hh:mm:ss` (or `h:mm:ss`, with an optional fraction) in `text`.
fn find_time_of_day(text: &str) -> Option<(NaiveTime, Duration)> {
    let bytes = text.as_bytes();
    for start in 0..bytes.len() {
        if !bytes[start].is_ascii_digit() || (start > 0 && bytes[start - 1].is_ascii_digit()) {
            continue;
        }
        let digits = |from: usize| {
            bytes[from..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
        };
        let h = digits(start);
        if !(1..=2).contains(&h) {
            continue;
        }
        let m_at = start + h;
        if bytes.get(m_at) != Some(&b':') || digits(m_at + 1) != 2 {
            continue;
        }
        let s_at = m_at + 3;
        if bytes.get(s_at) != Some(&b':') || digits(s_at + 1) != 2 {
            continue;
        }
        let mut end = s_at + 3;
        if matches!(bytes.get(end), Some(b'.' | b',')) && digits(end + 1) > 0 {
            end += 1 + digits(end + 1);
        }
        let piece = text[start..end].replace(',', ".");
        if let Ok(t) = NaiveTime::parse_from_str(&piece, "%H:%M:%S%.f") {
            return Some((t, unit_of(&piece)));
        }
    }
    None
}

/// Longest JAM reply line jamc accepts, terminator not counted.
pub const MAX_REPLY_BYTES: usize = 1024;

/// How long a reply over this transport may be: a daytime line, as RFC 867
/// suggests lines of up to 512 characters, is allowed more than JAM's.
pub const MAX_DAYTIME_BYTES: usize = 512;

/// The biggest datagram a UDP reading reads.
pub const MAX_DATAGRAM_BYTES: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn naive(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
        utc(y, mo, d, h, mi, s).naive_utc()
    }

    #[test]
    fn jam_lines_errors_and_other_lines() {
        assert_eq!(jam_reply(b"JAM 04:50:54"), JamReply::Time("04:50:54"));
        assert_eq!(jam_reply(b"ERROR server busy"), JamReply::Error);
        assert_eq!(jam_reply(b"ERROR"), JamReply::Error);
        for other in [
            &b"JAM "[..],
            b"JAM",
            b"ERRORS",
            b"SSH-2.0-OpenSSH",
            b"JAM \xff",
        ] {
            assert_eq!(jam_reply(other), JamReply::Other, "{other:?}");
        }
        assert_eq!(without_line_end(b"JAM 1\r\n"), b"JAM 1");
        assert_eq!(without_line_end(b"JAM 1\n"), b"JAM 1");
        assert_eq!(without_line_end(b"JAM 1"), b"JAM 1");
    }

    #[test]
    fn rfc868_values_are_read_in_the_era_nearest_the_local_clock() {
        // 2026-12-04 04:12:30 UTC.
        let t = utc(2026, 12, 4, 4, 12, 30);
        let v = u32::try_from(t.timestamp() + RFC868_TO_UNIX).unwrap();
        assert_eq!(rfc868_instant(v, t), t);
        assert_eq!(rfc868_instant(v - 3, t), t - Duration::seconds(3));
        assert_eq!(rfc868_text(t), "2026-12-04T04:12:30Z");
        assert_eq!(rfc868_value(&v.to_be_bytes()), Some(v));
        assert_eq!(rfc868_value(b"\x01\x02\x03"), None);
        // Across the wrap, 2036-02-07 06:28:16 UTC: value 0.
        let wrap = utc(2036, 2, 7, 6, 28, 16);
        assert_eq!(rfc868_instant(0, wrap), wrap);
        assert_eq!(
            rfc868_instant(5, wrap - Duration::seconds(2)),
            wrap + Duration::seconds(5)
        );
        assert_eq!(
            rfc868_instant(u32::MAX, wrap + Duration::seconds(2)),
            wrap - Duration::seconds(1)
        );
        // A server 30 years behind is read as 30 years behind, not in the next era.
        let old = utc(1996, 1, 1, 0, 0, 0);
        let v = u32::try_from(old.timestamp() + RFC868_TO_UNIX).unwrap();
        assert_eq!(rfc868_instant(v, t), old);
    }

    #[test]
    fn daytime_lines_are_read_with_their_dates() {
        let t = naive(2026, 12, 4, 4, 12, 30);
        let cases: [(&str, ServerTime); 9] = [
            // ctime(3), as inetd's built-in and jamd's default send.
            (
                "Fri Dec  4 04:12:30 2026\r\n",
                ServerTime::DateTime {
                    wall: t,
                    offset: None,
                },
            ),
            (
                "Mon Dec 14 04:12:30 2026",
                ServerTime::DateTime {
                    wall: naive(2026, 12, 14, 4, 12, 30),
                    offset: None,
                },
            ),
            // xinetd's built-in.
            (
                "04 DEC 2026 04:12:30 UTC\r\n",
                ServerTime::DateTime {
                    wall: t,
                    offset: Some(0),
                },
            ),
            (
                "04 DEC 2026 05:12:30 CET\r\n",
                ServerTime::DateTime {
                    wall: naive(2026, 12, 4, 5, 12, 30),
                    offset: None,
                },
            ),
            // RFC 2822.
            (
                "Fri, 04 Dec 2026 06:12:30 +0200",
                ServerTime::Instant(utc(2026, 12, 4, 4, 12, 30)),
            ),
            // ISO 8601.
            (
                "2026-12-04T04:12:30Z",
                ServerTime::Instant(utc(2026, 12, 4, 4, 12, 30)),
            ),
            (
                "2026-12-04T11:12:30+07:00",
                ServerTime::Instant(utc(2026, 12, 4, 4, 12, 30)),
            ),
            (
                "2026-12-04 04:12:30",
                ServerTime::DateTime {
                    wall: t,
                    offset: None,
                },
            ),
            // date(1)'s default: the zone between the time and the year.
            (
                "Fri Dec  4 04:12:30 UTC 2026",
                ServerTime::DateTime {
                    wall: t,
                    offset: Some(0),
                },
            ),
        ];
        for (line, want) in cases {
            let r = daytime_reading(line).unwrap_or_else(|| panic!("{line:?}"));
            assert_eq!(r.time, want, "{line:?}");
            assert_eq!(r.unit, Duration::seconds(1), "{line:?}");
        }
    }

    #[test]
    fn any_line_with_a_time_of_day_is_read_and_fractions_count() {
        let r = daytime_reading("it is 4:12:30.250 here\r\n").unwrap();
        assert_eq!(
            r.time,
            ServerTime::TimeOfDay {
                since_midnight: Duration::milliseconds(15_150_250),
                offset: None
            }
        );
        assert_eq!(r.unit, Duration::milliseconds(1));
        let r = daytime_reading("2026-12-04T04:12:30.123456Z").unwrap();
        assert_eq!(r.unit, Duration::microseconds(1));
        assert_eq!(
            r.time,
            ServerTime::Instant(utc(2026, 12, 4, 4, 12, 30) + Duration::microseconds(123_456))
        );
        for none in ["", "hello", "12:30", "123:45:67", "25:00:00"] {
            assert!(daytime_reading(none).is_none(), "{none:?}");
        }
    }

    #[test]
    fn protocols_are_named_and_have_their_ports() {
        for (p, name, port) in [
            (Protocol::Jam, "jam", super::DEFAULT_PORT),
            (Protocol::Daytime, "daytime", 13),
            (Protocol::Rfc868, "rfc868", 37),
        ] {
            assert_eq!(p.name(), name);
            assert_eq!(p.to_string(), name);
            assert_eq!(p.default_port(), port);
            assert_eq!(Protocol::parse(name), Ok(p));
        }
        assert_eq!(Protocol::parse(" time\n"), Ok(Protocol::Rfc868));
        let err = Protocol::parse("ntp").unwrap_err();
        assert!(
            err.contains("\"ntp\"") && err.contains("jam, daytime or rfc868"),
            "{err}"
        );
    }

    #[test]
    fn the_padding_around_a_daytime_line_is_not_read() {
        let r = daytime_reading("\0  Fri Dec  4 04:12:30 2026 \0\r\n\0").unwrap();
        assert_eq!(
            r.time,
            ServerTime::DateTime {
                wall: naive(2026, 12, 4, 4, 12, 30),
                offset: None,
            }
        );
    }

    #[test]
    fn a_time_of_day_is_whole_and_ends_where_its_digits_end() {
        let of_day = |h: i64, m: i64, s: i64| ServerTime::TimeOfDay {
            since_midnight: Duration::seconds(h * 3600 + m * 60 + s),
            offset: None,
        };
        for (line, want, unit) in [
            // Two digits of hour, not the last of them.
            (
                "it is 12:34:56 now",
                of_day(12, 34, 56),
                Duration::seconds(1),
            ),
            // A full stop after the seconds is no fraction.
            ("it was 4:12:30.", of_day(4, 12, 30), Duration::seconds(1)),
            // A number after a space is not a fraction either.
            (
                "4:12:30 5 seconds late",
                of_day(4, 12, 30),
                Duration::seconds(1),
            ),
            // A comma is a decimal sign too.
            (
                "4:12:30,5",
                ServerTime::TimeOfDay {
                    since_midnight: Duration::milliseconds(15_150_500),
                    offset: None,
                },
                Duration::milliseconds(100),
            ),
            // After a number that is no hour, the next time is found.
            (
                "123:45:56 then 7:08:09",
                of_day(7, 8, 9),
                Duration::seconds(1),
            ),
            // A zone name that means UTC is the offset 0.
            (
                "time 23:59:59 UTC",
                ServerTime::TimeOfDay {
                    since_midnight: Duration::seconds(86_399),
                    offset: Some(0),
                },
                Duration::seconds(1),
            ),
        ] {
            let r = daytime_reading(line).unwrap_or_else(|| panic!("{line:?}"));
            assert_eq!(r.time, want, "{line:?}");
            assert_eq!(r.unit, unit, "{line:?}");
        }
        assert!(daytime_reading("123:45:56").is_none());
    }

    #[test]
    fn an_rfc868_reading_is_the_second_shown() {
        let t = utc(2026, 12, 4, 4, 12, 30);
        let v = u32::try_from(t.timestamp() + RFC868_TO_UNIX).unwrap();
        let r = rfc868_reading(v, t + Duration::days(9000));
        assert_eq!(r.time, ServerTime::Instant(t));
        assert_eq!(r.unit, Duration::seconds(1));
        assert_eq!(rfc868_value(b"\x01\x02\x03\x04\x05"), None);
        assert_eq!(rfc868_value(b"\x00\x00\x01\x02"), Some(258));
        // Half an era away in either direction is still this era's reading.
        let half = Duration::seconds(1 << 31) - Duration::seconds(1);
        assert_eq!(rfc868_instant(v, t + half), t);
        assert_eq!(rfc868_instant(v, t - half), t);
    }
}
