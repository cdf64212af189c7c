//! Fuzz target for jamc's reply reader: a reply line to `TIME` (as
//! `jamd::client::net::Reply` holds it once read), its time read with a
//! `--format` (`jamd::client::reading`), and the offset from this machine's
//! clock. It checks what `jamc` and `jamc --check` rely on:
//!
//! - only a line that begins `JAM ` has a time, and that time is the rest of
//!   the line;
//! - a time read has a unit from a nanosecond to a minute;
//! - a time of day is placed on the nearest date: its offset is within half
//!   a day;
//! - nothing panics, whatever the line, the format or the local time.
//!
//! Input layout: byte 0 picks the `--format` (255: the format is the input
//! up to its first LF, the rest the line), byte 1 the server's zone, bytes
//! 2..6 the local time (seconds after 2026-01-01, little-endian), then the
//! reply line.

use chrono::{DateTime, Duration};
use jamd::client::net::Reply;
use jamd::client::reading::{ReplyFormat, ServerTime};
use jamd::clock::Zone;

const FORMATS: &[&str] = &[
    "%H:%M:%S",
    "%H:%M:%S%.3f",
    "%H:%M",
    "%s",
    "%Y-%m-%dT%H:%M:%S%z",
    "%T.%f",
    "%a %b %e %H:%M:%S %Y",
    "%H:%M:%S %Z",
];

const ZONES: &[&str] = &[
    "UTC",
    "+07:00",
    "-03:30",
    "Europe/Berlin",
    "Australia/Lord_Howe",
];

/// 2026-01-01T00:00:00Z.
const BASE: i64 = 1_767_225_600;

/// Checks one fuzz input; panics (which the fuzzer records) on a violation.
pub fn check(data: &[u8]) {
    let [pick, zone, t0, t1, t2, t3, rest @ ..] = data else {
        return;
    };
    let Some((format, line)) = jamd_fuzz::pick_format(*pick, rest, FORMATS, ReplyFormat::new)
    else {
        return;
    };
    let zone = Zone::parse(ZONES[usize::from(*zone) % ZONES.len()]).expect("a valid zone");
    let local = DateTime::from_timestamp(
        BASE + i64::from(u32::from_le_bytes([*t0, *t1, *t2, *t3])),
        0,
    )
    .expect("a date in range");
    let reply = Reply {
        line: line.to_vec(),
        rtt: std::time::Duration::from_millis(1),
        mid: local,
        began: std::time::Instant::now(),
        mid_at: std::time::Instant::now(),
    };
    let Some(time) = reply.jam_time() else {
        return;
    };
    assert!(line.starts_with(b"JAM "));
    assert_eq!(time.as_bytes(), &line[4..]);
    let Ok(reading) = format.read(time) else {
        return;
    };
    assert!(
        reading.unit > Duration::zero() && reading.unit <= Duration::seconds(60),
        "unit {:?} for {time:?} read with {:?}",
        reading.unit,
        format.as_str()
    );
    let offset = reading.time.offset_from(local, &zone);
    if let ServerTime::TimeOfDay { .. } = reading.time {
        assert!(
            offset >= Duration::hours(-12) && offset < Duration::hours(12),
            "{time:?} read with {:?} at {local}: offset {offset:?}",
            format.as_str()
        );
    }
}

jamd_fuzz::main!(check);
