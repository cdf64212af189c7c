//! Fuzz target for what jamd's UDP listeners send (`src/server/udp.rs`):
//! every datagram that is answered gets the same reply bytes, an RFC 868
//! count (`jamd::rfc868::reply_at`) or a daytime line
//! (`jamd::daytime::write_reply_at`, rendered through the worker's
//! `ClockCache`), made for the instant the batch arrived. Whether a
//! datagram is answered at all is decided by `bad_source` (crate-private,
//! tested beside it), `[access]` (the `config` target) and the source's
//! token bucket (`jamd::sources`, property-tested): what is left to fuzz is
//! the reply, against the client that reads it. It checks what a user of
//! `rdate`, `jamc -p rfc868 -u` or `jamc -p daytime -u` relies on:
//!
//! - nothing panics, for any instant, format or zone;
//! - the four RFC 868 bytes are the seconds since 1900 modulo 2^32, and jamc
//!   reads them back as the very second sent whenever its clock is within
//!   68 years of it;
//! - a daytime reply is one line, ended by CR LF, appended to the buffer
//!   without touching what was there, and the line the cache gives is the
//!   one rendered afresh (never a second already past, whatever instant
//!   the cache held before);
//! - the default daytime line (ctime(3)'s) in UTC is read by jamc as the
//!   date and second it was made for.
//!
//! Input layout: byte 0 picks the protocol (even: RFC 868, odd: daytime).
//! RFC 868: eight bytes of Unix seconds, four of the client's clock's
//! distance from them (signed seconds). Daytime: a byte for the format (255:
//! the format is the input up to its first LF) and one for the zone, then
//! eight bytes for the instant the cache held and eight for the reply's
//! (each four of Unix seconds and four of nanoseconds).

use std::sync::Arc;

use chrono::{DateTime, Timelike};
use jamd::client::answer::{daytime_reading, rfc868_instant, rfc868_value};
use jamd::client::reading::ServerTime;
use jamd::clock::{Clock, ClockCache, TimeFormat, Zone};

const FORMATS: &[&str] = &[
    jamd::daytime::DEFAULT_FORMAT,
    "%H:%M:%S",
    "%Y-%m-%dT%H:%M:%S%.3f%z",
    "%s",
    "%a, %d %b %Y %H:%M:%S %z",
    "%T.%f",
    "%H:%M",
];

const ZONES: &[&str] = &[
    "UTC",
    "+07:00",
    "-03:30",
    "Europe/Berlin",
    "Australia/Lord_Howe",
];

/// Checks one fuzz input; panics (which the fuzzer records) on a violation.
pub fn check(data: &[u8]) {
    let Some((pick, rest)) = data.split_first() else {
        return;
    };
    if pick % 2 == 0 {
        rfc868(rest);
    } else {
        daytime(rest);
    }
}

fn rfc868(data: &[u8]) {
    let (Some(secs), Some(away)) = (data.get(..8), data.get(8..12)) else {
        return;
    };
    let secs = i64::from_le_bytes(secs.try_into().expect("eight bytes"));
    let away = i64::from(i32::from_le_bytes(away.try_into().expect("four bytes")));
    let reply = jamd::rfc868::reply_at(secs);
    let since_1900 = i128::from(secs) + i128::from(jamd::rfc868::EPOCH_OFFSET);
    assert_eq!(
        i128::from(u32::from_be_bytes(reply)),
        since_1900.rem_euclid(1 << 32),
        "{secs}"
    );
    // jamc, its clock `away` seconds from the second sent.
    let (Some(sent), Some(near)) = (
        DateTime::from_timestamp(secs, 0),
        secs.checked_add(away)
            .and_then(|t| DateTime::from_timestamp(t, 0)),
    ) else {
        return;
    };
    let value = rfc868_value(&reply).expect("four bytes");
    assert_eq!(
        rfc868_instant(value, near),
        sent,
        "{sent} read with the clock at {near}"
    );
}

fn daytime(data: &[u8]) {
    let [pick, zone, rest @ ..] = data else {
        return;
    };
    let Some((format, rest)) = jamd_fuzz::pick_format(*pick, rest, FORMATS, TimeFormat::parse)
    else {
        return;
    };
    let default = format.as_str() == jamd::daytime::DEFAULT_FORMAT;
    let zone_name = ZONES[usize::from(*zone) % ZONES.len()];
    let clock = Arc::new(Clock {
        format,
        zone: Zone::parse(zone_name).expect("a valid zone"),
    });
    let Some(instants) = rest.get(..16) else {
        return;
    };
    let instant = |b: &[u8]| {
        (
            i64::from(u32::from_le_bytes(b[..4].try_into().expect("four bytes"))),
            u32::from_le_bytes(b[4..8].try_into().expect("four bytes")) % 1_000_000_000,
        )
    };
    let (held_secs, held_nanos) = instant(&instants[..8]);
    let (secs, nanos) = instant(&instants[8..]);

    let mut cache = ClockCache::new();
    let mut out = b"earlier".to_vec();
    jamd::daytime::write_reply_at(&mut out, &mut cache, &clock, held_secs, held_nanos);
    out.truncate(b"earlier".len());
    jamd::daytime::write_reply_at(&mut out, &mut cache, &clock, secs, nanos);
    let line = out
        .strip_prefix(b"earlier")
        .expect("what was in the buffer is kept");
    let mut fresh = String::new();
    clock.render_at(secs, nanos, &mut fresh);
    assert_eq!(
        line,
        [fresh.as_bytes(), b"\r\n"].concat(),
        "the cache's line for {secs}.{nanos:09} (it held {held_secs}.{held_nanos:09})"
    );

    if default && zone_name == "UTC" {
        let text = String::from_utf8_lossy(line);
        let reading = daytime_reading(&text).unwrap_or_else(|| panic!("{text:?} not read"));
        let sent = DateTime::from_timestamp(secs, 0).expect("a date in range");
        assert_eq!(
            reading.time,
            ServerTime::DateTime {
                wall: sent.naive_utc().with_nanosecond(0).expect("zero"),
                offset: None,
            },
            "{text:?}"
        );
    }
}

jamd_fuzz::main!(check);
