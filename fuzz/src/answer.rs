//! Fuzz target for jamc's readers of the answers of the other protocols
//! (`jamd::client::answer`): daytime lines (RFC 867) in ctime(3)'s, RFC
//! 2822's, ISO 8601's and xinetd's forms or any line with an `hh:mm:ss`, the
//! four bytes of RFC 868, and JAM reply lines. It checks what `jamc -p
//! daytime`, `jamc -p rfc868` and `--check` rely on:
//!
//! - nothing panics, whatever the line or the local clock;
//! - a daytime line read has a unit from a nanosecond to a second;
//! - a daytime line jamc knows the form of is read as the time it shows: the
//!   instant for a line with a zone (an offset, `Z`, `UTC`), the wall-clock
//!   date and time for one without, the time of day for any other line;
//! - an RFC 868 value is read within 68 years (2^31 s) of the local clock,
//!   and as an instant whose RFC 868 value is the value sent: the era
//!   nearest the clock, also across 2036-02-07 where the count wraps;
//! - only four bytes are an RFC 868 value; only `JAM <time>` has a time.
//!
//! Input layout: byte 0 picks the check (its value modulo 3: 0 any line, 1
//! an RFC 868 value, 2 a daytime line rendered in a form), bytes 1..5 the
//! local time (Unix seconds, little-endian, so 1970 to 2106), then the
//! rest: the line; or four bytes of value; or a form byte, four bytes of
//! Unix seconds, four of nanoseconds and a byte for the UTC offset.

use chrono::{DateTime, Duration, FixedOffset, Timelike, Utc};
use jamd::client::answer::{
    daytime_reading, jam_reply, rfc868_instant, rfc868_reading, rfc868_value, JamReply,
};
use jamd::client::reading::ServerTime;
use jamd::clock::Zone;

/// Checks one fuzz input; panics (which the fuzzer records) on a violation.
pub fn check(data: &[u8]) {
    let [pick, t0, t1, t2, t3, rest @ ..] = data else {
        return;
    };
    let local = DateTime::from_timestamp(i64::from(u32::from_le_bytes([*t0, *t1, *t2, *t3])), 0)
        .expect("a date in range");
    match pick % 3 {
        0 => any_line(rest, local),
        1 => rfc868(rest, local),
        _ => daytime_form(rest),
    }
}

/// Whatever a server sent: read as every protocol reads it.
fn any_line(line: &[u8], local: DateTime<Utc>) {
    let text = String::from_utf8_lossy(line);
    if let Some(reading) = daytime_reading(&text) {
        assert!(
            reading.unit >= Duration::nanoseconds(1) && reading.unit <= Duration::seconds(1),
            "unit {:?} for {text:?}",
            reading.unit
        );
        let zone = Zone::parse("Europe/Berlin").expect("a valid zone");
        let offset = reading.time.offset_from(local, &zone);
        if let ServerTime::TimeOfDay { .. } = reading.time {
            assert!(
                offset >= Duration::hours(-13) && offset <= Duration::hours(13),
                "{text:?} at {local}: offset {offset:?}"
            );
        }
    }
    match jam_reply(line) {
        JamReply::Time(time) => {
            assert!(line.starts_with(b"JAM "));
            assert_eq!(time.as_bytes(), &line[4..]);
        }
        JamReply::Error => assert!(line.starts_with(b"ERROR")),
        JamReply::Other => {}
    }
    assert_eq!(rfc868_value(line).is_some(), line.len() == 4);
}

/// Four bytes of RFC 868, read near `local`.
fn rfc868(bytes: &[u8], local: DateTime<Utc>) {
    let Some(bytes) = bytes.get(..4) else {
        return;
    };
    let value = rfc868_value(bytes).expect("four bytes are a value");
    let instant = rfc868_instant(value, local);
    let off = instant.signed_duration_since(local);
    assert!(
        off.num_seconds().abs() <= 1 << 31,
        "{value} read at {local} as {instant}"
    );
    assert_eq!(
        jamd::rfc868::seconds(instant.timestamp()),
        value,
        "{instant} is not what {value} shows"
    );
    let reading = rfc868_reading(value, local);
    assert_eq!(reading.time, ServerTime::Instant(instant));
    assert_eq!(reading.unit, Duration::seconds(1));
}

/// What a daytime line is expected to read as.
enum Shows {
    /// The instant.
    Instant,
    /// The wall clock at the offset, and the offset written (`Some(0)` for UTC).
    Wall(Option<i32>),
    /// The time of day only.
    TimeOfDay,
}

/// The forms jamc knows: a chrono format, whether it is written in UTC, and
/// what it shows.
const FORMS: &[(&str, bool, Shows)] = &[
    // ctime(3), what inetd sends.
    ("%a %b %e %H:%M:%S %Y", false, Shows::Wall(None)),
    // date(1): the zone between the time and the year.
    ("%a %b %e %H:%M:%S UTC %Y", true, Shows::Wall(Some(0))),
    // ctime(3) followed by a zone name.
    ("%a %b %e %H:%M:%S %Y UTC", true, Shows::Wall(Some(0))),
    // RFC 2822.
    ("%a, %d %b %Y %H:%M:%S %z", false, Shows::Instant),
    ("%a, %d %b %Y %H:%M:%S GMT", true, Shows::Instant),
    // ISO 8601 / RFC 3339, with a zone and a fraction or not.
    ("%Y-%m-%dT%H:%M:%S%:z", false, Shows::Instant),
    ("%Y-%m-%dT%H:%M:%S%.9f%:z", false, Shows::Instant),
    ("%Y-%m-%dT%H:%M:%S%.3fZ", true, Shows::Instant),
    ("%Y-%m-%d %H:%M:%S%.6f %z", false, Shows::Instant),
    // ISO 8601 without a zone.
    ("%Y-%m-%d %H:%M:%S", false, Shows::Wall(None)),
    ("%Y-%m-%dT%H:%M:%S%.3f", false, Shows::Wall(None)),
    // xinetd's (its month in capitals).
    ("%d %b %Y %H:%M:%S UTC", true, Shows::Wall(Some(0))),
    // Anything else with a time of day.
    (
        "the time is %H:%M:%S, have a nice day",
        false,
        Shows::TimeOfDay,
    ),
    ("%H:%M:%S%.3f", false, Shows::TimeOfDay),
];

/// A daytime line rendered in one of the forms jamc knows, read back.
fn daytime_form(data: &[u8]) {
    let [form, s0, s1, s2, s3, n0, n1, n2, n3, offset, ..] = data else {
        return;
    };
    let (format, in_utc, shows) = &FORMS[usize::from(*form) % FORMS.len()];
    let secs = i64::from(u32::from_le_bytes([*s0, *s1, *s2, *s3]));
    let nanos = u32::from_le_bytes([*n0, *n1, *n2, *n3]) % 1_000_000_000;
    let utc = DateTime::from_timestamp(secs, nanos).expect("a date in range");
    // A whole quarter hour from -12:00 to +11:45.
    let offset_secs = if *in_utc {
        0
    } else {
        (i32::from(*offset) % 96 - 48) * 900
    };
    let zone = FixedOffset::east_opt(offset_secs).expect("a valid offset");
    let shown = utc.with_timezone(&zone);
    let mut line = shown.format(format).to_string();
    if format.starts_with("%d %b") {
        line = line.to_uppercase();
    }
    // The line end a server sends, or none; a form byte's high bits pick it.
    match form >> 6 {
        0 => {}
        1 => line.push_str("\r\n"),
        2 => line.push('\n'),
        _ => line = format!("  {line} \0"),
    }
    let reading = daytime_reading(&line).unwrap_or_else(|| panic!("{line:?} not read"));
    // The time shown: to the digits the line has.
    let digits = if format.contains("%.9f") {
        9
    } else if format.contains("%.6f") {
        6
    } else if format.contains("%.3f") {
        3
    } else {
        0
    };
    let unit = Duration::nanoseconds(10_i64.pow(9 - digits));
    assert_eq!(reading.unit, unit, "{line:?}");
    let kept = nanos - nanos % u32::try_from(unit.num_nanoseconds().unwrap_or(1)).unwrap_or(1);
    let shown = shown.with_nanosecond(kept).expect("a valid nanosecond");
    let want = match shows {
        Shows::Instant => ServerTime::Instant(shown.with_timezone(&Utc)),
        Shows::Wall(written) => ServerTime::DateTime {
            wall: shown.naive_local(),
            offset: *written,
        },
        Shows::TimeOfDay => ServerTime::TimeOfDay {
            since_midnight: shown
                .naive_local()
                .time()
                .signed_duration_since(chrono::NaiveTime::MIN),
            offset: None,
        },
    };
    assert_eq!(reading.time, want, "{line:?}");
}

jamd_fuzz::main!(check);
