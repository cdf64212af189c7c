//! Taking a server's readings for `--check`, in any protocol jamc speaks.
//!
//! The first reading (or the first `-n`) tells the server's time to its
//! unit. A reply with fractions of a second needs nothing more, and neither
//! does `--quick`. A whole-second reply leaves the offset unknown within a
//! second: where the server's second changes (its boundary) is then found by
//! passes over that boundary, k-ary bisection across the seconds: a pass
//! places a few readings across the window the boundary is known to lie in
//! (the first pass begins right after the first reading; over a slow link
//! with a quick look), the next time that window comes round; the reading
//! that first shows the new second ends the pass, and the window left is a
//! fraction of the last. The last pass is guarded: one reading just before
//! the window and one just after it (over a fast link, only when no reading
//! inside showed the new second), whose outcome is certain while the
//! server's clock holds steady, so a clock that steps during the check
//! contradicts the readings before and the check gives the wide one-reply
//! answer instead of one wrong by the step. (A step that falls between the
//! guard before the last window and the readings inside it moves the offset
//! by up to that window, tens of milliseconds: no reading of that pass can
//! tell it from a boundary early in the window.)
//!
//! Limits: at most [`MAX_READINGS`] readings a server, at least
//! [`READING_GAP`] apart, the whole check within [`CHECK_WITHIN`] and never
//! past `--timeout`. For JAM the readings are requests on one connection;
//! for daytime and rfc868 each is a connection or a datagram of its own, so
//! a server that forks a process a connection is never hammered.
//!
//! A reading does not wait for the reply before it: up to
//! [`PIPELINE_DEPTH`] are in flight at once, so that a pass over a slow
//! link holds several readings (see [`super::estimate`]). On a JAM
//! connection the `TIME` requests are pipelined and the replies, which the
//! server sends in order, are paired with the requests in order; a daytime
//! or rfc868 reading runs on a thread of its own, its outcome taken in the
//! order the readings began. Each reading's window is its own: from sending
//! its request (for TCP, from beginning to connect) to its own reply.
//! [`super::estimate`] turns the readings into the offset and what they
//! prove of it: the truth lies within the reported uncertainty.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::answer::{daytime_reading, rfc868_reading, rfc868_value, Protocol, Transport};
use super::check::{Measurement, Outcome};
use super::cli::{CheckSettings, Settings, Target};
use super::error::{ClientError, ClientErrorKind};
use super::estimate::{estimate, Bisection, Planned, Sample, Step, Timing, PIPELINE_DEPTH};
use super::net::{connect_from, reading, resolve, Connection, Reply, Sent};
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
        let server = server.as_str();
        let read = |reply: &Reply| read_reply(settings.protocol, server, check, reply);
        match &mut source {
            Source::Jam(conn) => {
                let mut pipe = JamPipe {
                    conn,
                    sent: VecDeque::new(),
                };
                bisect(&mut taken, &frame, end, &mut pipe, &read, check);
            }
            Source::Each {
                protocol,
                transport,
                addrs,
            } => {
                let (protocol, transport, addrs) = (*protocol, *transport, *addrs);
                let take = move |deadline: Instant| {
                    reading(
                        (protocol, transport),
                        server,
                        addrs,
                        (deadline, settings.timeout),
                        settings.source,
                    )
                };
                thread::scope(|scope| {
                    let (tx, rx) = mpsc::channel();
                    let mut pipe = EachPipe {
                        scope,
                        take: &take,
                        server,
                        tx,
                        rx,
                        sent: 0,
                        oldest: 0,
                        arrived: BTreeMap::new(),
                    };
                    bisect(&mut taken, &frame, end, &mut pipe, &read, check);
                });
            }
        }
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
    thread::sleep(earliest(taken, at).saturating_duration_since(Instant::now()));
}

/// `at`, or [`READING_GAP`] after the last reading began when that is later.
fn earliest(taken: &Taken, at: Instant) -> Instant {
    taken
        .last_began
        .map_or(at, |last| (last + READING_GAP).max(at))
}

/// Readings that may be in flight several at once: each sent, and the
/// replies taken oldest first.
trait Pipe {
    /// Whether a reading that failed ends the check (a JAM connection is
    /// out of step after one); else the check goes on without it.
    const ONE_CONNECTION: bool;
    /// Begins a reading whose reply is due by `deadline`.
    fn send(&mut self, deadline: Instant) -> Result<(), ClientError>;
    /// The reply to the oldest reading in flight, due by `deadline`, waiting
    /// no later than `until`: None when `until` came first, an error when
    /// the reading failed (it is then no longer in flight).
    fn oldest(&mut self, until: Instant, deadline: Instant) -> Result<Option<Reply>, ClientError>;
}

/// JAM: `TIME` requests pipelined on one connection, answered in order.
struct JamPipe<'c> {
    conn: &'c mut Connection,
    sent: VecDeque<Sent>,
}

impl Pipe for JamPipe<'_> {
    const ONE_CONNECTION: bool = true;

    fn send(&mut self, deadline: Instant) -> Result<(), ClientError> {
        let sent = self.conn.send_time(deadline)?;
        self.sent.push_back(sent);
        Ok(())
    }

    fn oldest(&mut self, until: Instant, deadline: Instant) -> Result<Option<Reply>, ClientError> {
        let Some(&sent) = self.sent.front() else {
            return Err(self.conn.timed_out());
        };
        match self.conn.reply_by(sent, until.min(deadline))? {
            Some(reply) => {
                self.sent.pop_front();
                Ok(Some(reply))
            }
            None if Instant::now() >= deadline => Err(self.conn.timed_out()),
            None => Ok(None),
        }
    }
}

/// A reply (or why none came) of reading number `.0`.
type Arrived = (usize, Result<Reply, ClientError>);

/// Daytime and RFC 868: each reading a connection or datagram of its own,
/// taken on a thread of its own so that several may overlap.
struct EachPipe<'scope, 'env, F> {
    scope: &'scope thread::Scope<'scope, 'env>,
    take: &'env F,
    server: &'env str,
    tx: mpsc::Sender<Arrived>,
    rx: mpsc::Receiver<Arrived>,
    /// Readings begun.
    sent: usize,
    /// The number of the oldest reading in flight.
    oldest: usize,
    /// Replies that came before an older reading's.
    arrived: BTreeMap<usize, Result<Reply, ClientError>>,
}

impl<'scope, 'env, F> Pipe for EachPipe<'scope, 'env, F>
where
    F: Fn(Instant) -> Result<Reply, ClientError> + Sync,
{
    const ONE_CONNECTION: bool = false;

    fn send(&mut self, deadline: Instant) -> Result<(), ClientError> {
        let (tx, take, number) = (self.tx.clone(), self.take, self.sent);
        let (began_tx, began) = mpsc::sync_channel(1);
        thread::Builder::new()
            .name("jamc-reading".into())
            .spawn_scoped(self.scope, move || {
                let _ = began_tx.send(());
                let _ = tx.send((number, take(deadline)));
            })
            .map_err(|e| {
                ClientError::new(
                    self.server,
                    ClientErrorKind::Io {
                        doing: "starting a thread",
                        why: e.to_string(),
                    },
                )
            })?;
        // The reading has begun when its thread runs: the next is paced from then.
        let _ = began.recv_timeout(THREAD_GRACE);
        self.sent += 1;
        Ok(())
    }

    fn oldest(&mut self, until: Instant, deadline: Instant) -> Result<Option<Reply>, ClientError> {
        // The reading's own wait ends at its deadline; a little more for its thread to say so.
        let given_up = deadline + THREAD_GRACE;
        loop {
            if let Some(result) = self.arrived.remove(&self.oldest) {
                self.oldest += 1;
                return result.map(Some);
            }
            let now = Instant::now();
            if now >= given_up {
                self.oldest += 1;
                return Err(ClientError::new(
                    self.server,
                    ClientErrorKind::Io {
                        doing: "reading",
                        why: "the reading's thread did not answer".into(),
                    },
                ));
            }
            if now >= until && now < deadline {
                return Ok(None);
            }
            let wait_until = if now < deadline {
                until.min(deadline)
            } else {
                given_up
            };
            if let Ok((number, result)) = self
                .rx
                .recv_timeout(wait_until.saturating_duration_since(now))
            {
                if number >= self.oldest {
                    self.arrived.insert(number, result);
                }
            }
        }
    }
}

/// How long past its deadline a reading's thread is waited for.
const THREAD_GRACE: Duration = Duration::from_millis(100);

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
    taken.last_began = Some(taken.last_began.map_or(reply.began, |l| l.max(reply.began)));
    let began = frame.rel_at(reply.began);
    let mid_at = frame.rel_at(reply.mid_at);
    taken.lead = (mid_at - began).max(0.0);
    taken.duration = (mid_at + rtt / 2.0 - began).max(0.0);
    taken.half = taken.half.min(rtt / 2.0);
}

/// The passes over the boundary (see the module docs and
/// [`Bisection`]), until the boundary is pinned, the readings contradict
/// each other, or the budget of readings or time is spent. Up to
/// [`PIPELINE_DEPTH`] readings are in flight at once, each begun at least
/// [`READING_GAP`] after the one before.
fn bisect<P: Pipe>(
    taken: &mut Taken,
    frame: &Frame,
    end: Instant,
    pipe: &mut P,
    read: &dyn Fn(&Reply) -> Result<Reading, ClientError>,
    check: &CheckSettings,
) {
    let mut bisection = Bisection::new(MAX_READINGS);
    // Each reading in flight: what it was planned for and when its reply is due.
    let mut flying: VecDeque<(Planned, Instant)> = VecDeque::new();
    // No more readings begin (the time is spent); those in flight are taken.
    let mut spent = false;
    loop {
        let timing = Timing {
            now: frame.rel_at(Instant::now()),
            end: frame.rel_at(end),
            lead: taken.lead,
            duration: taken.duration,
            gap: READING_GAP.as_secs_f64(),
            depth: PIPELINE_DEPTH,
        };
        let half = if taken.half.is_finite() {
            taken.half
        } else {
            0.0
        };
        let next = match bisection.next(&taken.samples, half, &timing, flying.len()) {
            Step::Done => break,
            Step::Take(_) if spent => None,
            Step::Wait => None,
            Step::Take(planned) => Some((
                planned,
                earliest(taken, frame.instant(planned.at - taken.lead)),
            )),
        };
        // The oldest reply, waited for until the next reading is due (as
        // long as it takes when none is, or no more may be in flight).
        if let Some(&(planned, deadline)) = flying.front() {
            let until = match next {
                Some((_, at)) if flying.len() < PIPELINE_DEPTH => at,
                _ => deadline,
            };
            match pipe.oldest(until, deadline) {
                Ok(Some(reply)) => {
                    flying.pop_front();
                    let shown = match read(&reply) {
                        Ok(reading) => {
                            record(taken, frame, &reply, &reading, check);
                            taken.shown.last().copied()
                        }
                        Err(_) if P::ONE_CONNECTION => break,
                        Err(_) => None,
                    };
                    bisection.outcome(&planned, shown);
                    continue;
                }
                Ok(None) => {}
                Err(_) if P::ONE_CONNECTION => break,
                Err(_) => {
                    // A lost datagram: the next reading is another socket's.
                    flying.pop_front();
                    bisection.outcome(&planned, None);
                    continue;
                }
            }
        }
        let Some((planned, at)) = next else {
            if flying.is_empty() {
                break;
            }
            continue;
        };
        thread::sleep(at.saturating_duration_since(Instant::now()));
        // A reading that takes far longer than the last is given up (a lost
        // datagram: the next one is another socket's); on a JAM connection
        // that ends the check.
        let patience = Duration::from_secs_f64((4.0 * taken.duration).max(0.5));
        let now = Instant::now();
        let reply_deadline = (now + patience).min(end);
        if reply_deadline <= now {
            spent = true;
            continue;
        }
        if pipe.send(reply_deadline).is_err() {
            if P::ONE_CONNECTION || flying.is_empty() {
                break;
            }
            spent = true;
            continue;
        }
        bisection.taken();
        // The next reading is paced from the end of this one's sending.
        taken.last_began = Some(Instant::now());
        flying.push_back((planned, reply_deadline));
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
