//! Taking a server's readings for `--check`, in any protocol jamc speaks.
//!
//! The first reading (or the first `-n`) tells the server's time to its
//! unit. A reply with fractions of a second needs nothing more, and neither
//! does `--quick`. A whole-second reply leaves the offset unknown within a
//! second: where the server's second changes (its boundary) is then found by
//! passes over that boundary, k-ary bisection across the seconds: a pass
//! places a few readings across the window the boundary is known to lie in
//! (the first pass begins with a quick look right after the first reading),
//! the next time that window comes round; the reading that first shows the
//! new second ends the pass, and the window left is a fraction of the last.
//! The last pass is guarded: one reading just before the window and one just
//! after it, whose outcome is certain while the server's clock holds steady,
//! so a clock that steps during the check contradicts the readings before
//! and the check gives the wide one-reply answer instead of one wrong by the
//! step. (A step that falls between the guard before the last window and the
//! readings inside it moves the offset by up to that window, tens of
//! milliseconds: no reading of that pass can tell it from a boundary early
//! in the window.)
//!
//! Limits: at most [`MAX_READINGS`] readings a server, at least
//! [`READING_GAP`] apart, the whole check within [`CHECK_WITHIN`] and never
//! past `--timeout`. For JAM the readings are requests on one connection;
//! for daytime and rfc868 each is a connection or a datagram of its own, so
//! a server that forks a process a connection is never hammered.
//! [`super::estimate`] turns the readings into the offset and what they
//! prove of it: the truth lies within the reported uncertainty.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::answer::{daytime_reading, rfc868_reading, rfc868_value, Protocol, Transport};
use super::check::{Measurement, Outcome};
use super::cli::{CheckSettings, Settings, Target};
use super::error::{ClientError, ClientErrorKind};
use super::estimate::{estimate, Bisection, Sample, Timing};
use super::net::{connect_from, reading, resolve, Connection, Reply};
use super::query::{judge, judge_as, READING_GAP};
use super::reading::Reading;

/// Most readings taken of one server (the first `-n` beyond these still count).
pub const MAX_READINGS: usize = 10;
/// A check ends within this (and never past `--timeout`).
pub const CHECK_WITHIN: Duration = Duration::from_millis(2950);

/// Where readings come from: a JAM connection, or a new connection or
/// datagram each time.
enum Source<'a> {
    Jam(Connection),
    Each {
        protocol: Protocol,
        transport: Transport,
        addrs: &'a [SocketAddr],
    },
}

/// This machine's clock in seconds from a whole second, and the monotonic
/// clock it was read with, to turn planned times into instants.
struct Frame {
    epoch: i64,
    at: Instant,
    rel: f64,
}

impl Frame {
    fn now() -> Frame {
        let at = Instant::now();
        let wall = Utc::now();
        let epoch = wall.timestamp();
        Frame {
            epoch,
            at,
            rel: f64::from(wall.timestamp_subsec_nanos()) / 1e9,
        }
    }

    /// Seconds of `wall` from the frame's whole second.
    fn rel(&self, wall: DateTime<Utc>) -> f64 {
        (wall.timestamp() - self.epoch) as f64 + f64::from(wall.timestamp_subsec_nanos()) / 1e9
    }

    /// Seconds of `at` from the frame's whole second.
    fn rel_at(&self, at: Instant) -> f64 {
        if at >= self.at {
            self.rel + (at - self.at).as_secs_f64()
        } else {
            self.rel - (self.at - at).as_secs_f64()
        }
    }

    /// The instant of `rel`.
    fn instant(&self, rel: f64) -> Instant {
        let d = rel - self.rel;
        if d >= 0.0 {
            self.at + Duration::from_secs_f64(d)
        } else {
            self.at
                .checked_sub(Duration::from_secs_f64(-d))
                .unwrap_or(self.at)
        }
    }
}

/// The readings so far.
struct Taken {
    samples: Vec<Sample>,
    /// The second each showed (start of its unit), in the frame's seconds.
    shown: Vec<f64>,
    /// Round trip of the first.
    first_rtt: Duration,
    /// When the last began.
    last_began: Option<Instant>,
    /// From beginning the last reading to the middle of its window, and to its end.
    lead: f64,
    duration: f64,
    /// Half the narrowest window of any reading.
    half: f64,
    /// The unit of the first.
    unit: f64,
}

/// Checks every server at once: the outcomes in the order given, each with
/// how long its check took.
pub fn measure_all(settings: &Settings, check: &CheckSettings) -> Vec<(Outcome, Duration)> {
    thread::scope(|scope| {
        let handles: Vec<_> = settings
            .targets
            .iter()
            .map(|target| {
                let handle = thread::Builder::new()
                    .name("jamc-check".into())
                    .spawn_scoped(scope, move || {
                        let started = Instant::now();
                        (measure(settings, target, check), started.elapsed())
                    });
                (target, handle)
            })
            .collect();
        handles
            .into_iter()
            .map(|(target, handle)| {
                let server = target.to_string();
                let failed = |doing, why| {
                    Err(ClientError::new(
                        &server,
                        ClientErrorKind::Io { doing, why },
                    ))
                };
                let (result, took) = match handle {
                    Ok(h) => h.join().unwrap_or_else(|_| {
                        (
                            failed("checking", "the check thread failed".into()),
                            Duration::ZERO,
                        )
                    }),
                    Err(e) => (failed("starting a thread", e.to_string()), Duration::ZERO),
                };
                (Outcome { server, result }, took)
            })
            .collect()
    })
}

/// Measures one server's offset (see the module docs).
pub fn measure(
    settings: &Settings,
    target: &Target,
    check: &CheckSettings,
) -> Result<Measurement, ClientError> {
    let server = target.to_string();
    let started = Instant::now();
    let deadline = started + settings.timeout;
    let addrs = resolve(target, settings.family, deadline)?;
    let mut source = match settings.protocol {
        Protocol::Jam => {
            let stream =
                connect_from(&server, &addrs, deadline, settings.timeout, settings.source)?;
            Source::Jam(Connection::new(stream, &server, settings.timeout))
        }
        protocol => Source::Each {
            protocol,
            transport: settings.transport,
            addrs: &addrs,
        },
    };
    let frame = Frame::now();
    let mut taken = Taken {
        samples: Vec::new(),
        shown: Vec::new(),
        first_rtt: Duration::ZERO,
        last_began: None,
        lead: 0.0,
        duration: 0.0,
        half: f64::INFINITY,
        unit: 1.0,
    };
    let take = |source: &mut Source<'_>, reply_deadline: Instant| -> Result<Reply, ClientError> {
        match source {
            Source::Jam(conn) => conn.ask(reply_deadline),
            Source::Each {
                protocol,
                transport,
                addrs,
            } => reading(
                (*protocol, *transport),
                &server,
                addrs,
                (reply_deadline, settings.timeout),
                settings.source,
            ),
        }
    };
    let read = |reply: &Reply| -> Result<Reading, ClientError> {
        read_reply(settings.protocol, &server, check, reply)
    };

    // -n N: N readings, each within its own timeout after the first.
    for i in 0..settings.count {
        let reply_deadline = if i == 0 {
            deadline
        } else {
            Instant::now() + settings.timeout
        };
        pace(&taken, Instant::now());
        let reply = take(&mut source, reply_deadline)?;
        let reading = read(&reply)?;
        if i == 0 {
            taken.first_rtt = reply.rtt;
            taken.unit = seconds(reading.unit);
        }
        record(&mut taken, &frame, &reply, &reading, check);
    }

    if !check.quick && (taken.unit - 1.0).abs() < 1e-9 {
        let end = deadline.min(started + CHECK_WITHIN);
        bisect(
            &mut taken,
            &frame,
            end,
            |source_deadline| {
                let reply = take(&mut source, source_deadline)?;
                let reading = read(&reply)?;
                Ok((reply, reading))
            },
            settings.protocol,
            check,
        );
    }
    if let Source::Jam(conn) = source {
        conn.quit();
    }

    let estimate = estimate(&taken.samples)
        .ok_or_else(|| ClientError::new(&server, ClientErrorKind::ClosedEarly))?;
    Ok(Measurement {
        estimate,
        rtt: taken.first_rtt,
        replies: taken.samples.len(),
    })
}

/// Waits until [`READING_GAP`] after the last reading began.
fn pace(taken: &Taken, at: Instant) {
    if let Some(last) = taken.last_began {
        let earliest = (last + READING_GAP).max(at);
        thread::sleep(earliest.saturating_duration_since(Instant::now()));
    } else {
        thread::sleep(at.saturating_duration_since(Instant::now()));
    }
}

/// Adds a reading to those taken.
fn record(
    taken: &mut Taken,
    frame: &Frame,
    reply: &Reply,
    reading: &Reading,
    check: &CheckSettings,
) {
    let d = seconds(reading.time.offset_from(reply.mid, &check.zone));
    let rtt = reply.rtt.as_secs_f64();
    let mid = frame.rel(reply.mid);
    taken.samples.push(Sample {
        shown_minus_mid: d,
        rtt,
        unit: seconds(reading.unit),
    });
    taken.shown.push(d + mid);
    taken.last_began = Some(reply.began);
    let began = frame.rel_at(reply.began);
    let mid_at = frame.rel_at(reply.mid_at);
    taken.lead = (mid_at - began).max(0.0);
    taken.duration = (mid_at + rtt / 2.0 - began).max(0.0);
    taken.half = taken.half.min(rtt / 2.0);
}

/// The passes over the boundary (see the module docs and
/// [`Bisection`]), until the boundary is pinned, the readings contradict
/// each other, or the budget of readings or time is spent.
fn bisect(
    taken: &mut Taken,
    frame: &Frame,
    end: Instant,
    mut next: impl FnMut(Instant) -> Result<(Reply, Reading), ClientError>,
    protocol: Protocol,
    check: &CheckSettings,
) {
    let mut bisection = Bisection::new(MAX_READINGS);
    loop {
        let timing = Timing {
            now: frame.rel_at(Instant::now()),
            end: frame.rel_at(end),
            lead: taken.lead,
            duration: taken.duration,
            gap: READING_GAP.as_secs_f64(),
        };
        let half = if taken.half.is_finite() {
            taken.half
        } else {
            0.0
        };
        let Some(planned) = bisection.next(&taken.samples, &taken.shown, half, &timing) else {
            break;
        };
        pace(taken, frame.instant(planned.at - taken.lead));
        // A reading that takes far longer than the last is given up (a lost
        // datagram: the next one is another socket's); on a JAM connection
        // that ends the check.
        let patience = Duration::from_secs_f64((4.0 * taken.duration).max(0.5));
        let reply_deadline = (Instant::now() + patience).min(end);
        if reply_deadline <= Instant::now() {
            break;
        }
        match next(reply_deadline) {
            Ok((reply, reading)) => record(taken, frame, &reply, &reading, check),
            Err(_) if protocol != Protocol::Jam => {}
            Err(_) => break,
        }
    }
}

/// What a reply in `protocol` shows.
fn read_reply(
    protocol: Protocol,
    server: &str,
    check: &CheckSettings,
    reply: &Reply,
) -> Result<Reading, ClientError> {
    match protocol {
        Protocol::Jam => {
            // A JAM line is read with --format even when its time is blank or
            // not UTF-8: what cannot be read is UNKNOWN, as the settings may
            // not fit; any other line is an error of the server (judge says which).
            let Some(time) = reply.line.strip_prefix(b"JAM ") else {
                judge(server, reply)?;
                let line = String::from_utf8_lossy(&reply.line).into_owned();
                return Err(ClientError::new(server, ClientErrorKind::NotJam { line }));
            };
            check
                .format
                .read(&String::from_utf8_lossy(time))
                .map_err(|e| ClientError::new(server, ClientErrorKind::Time { why: e.to_string() }))
        }
        Protocol::Daytime => {
            judge_as(protocol, server, reply)?;
            daytime_reading(&String::from_utf8_lossy(&reply.line)).ok_or_else(|| {
                ClientError::new(
                    server,
                    ClientErrorKind::NotTime {
                        protocol: protocol.name(),
                        line: String::from_utf8_lossy(&reply.line).into_owned(),
                    },
                )
            })
        }
        Protocol::Rfc868 => {
            judge_as(protocol, server, reply)?;
            let value = rfc868_value(&reply.line).unwrap_or_default();
            Ok(rfc868_reading(value, reply.mid))
        }
    }
}

/// Seconds in a chrono duration, as a float.
fn seconds(d: chrono::Duration) -> f64 {
    d.num_nanoseconds()
        .map_or_else(|| d.num_seconds() as f64, |n| n as f64 / 1e9)
}
