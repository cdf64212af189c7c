//! `jamc --conformance [--strict]`: is this a JAM server? (jamc(1), CONFORMANCE.)
//!
//! Checks any server, jamd or not, against the JAM protocol and prints the
//! verdicts as TAP, which prove(1) reads: a `1..N` plan, then one
//! `ok N - what` or `not ok N - what # why` line per check. The required
//! checks are the course assignment the protocol began as; `--strict` adds the
//! rest of the protocol (jamd(8), "The JAM protocol").
//!
//! Each check is a small function below, named after what it proves, and runs
//! on connections of its own, one check after another, so a fault shows in the
//! check that names it rather than in whichever check happened to run
//! alongside. Bounds, so that no server can hang the run:
//! - every connect and every reply may take [`STEP_TIMEOUT`] (5 s), and the
//!   100 clients together [`CROWD_TIMEOUT`] (20 s), as a kernel whose listen
//!   queue is full drops SYNs that the clients send again after 1, 3, 7 and
//!   15 s; a client still waiting then is reported as never accepted;
//! - no wait runs past [`RUN_LIMIT`] from the start, and a check that would
//!   start later is not run, so a whole run ends within about a minute;
//! - when `TIME` gets no reply at all, the checks that need one are not tried
//!   (each says so), so a server that never answers is judged in ~10 s;
//! - a reply line is read up to [`MAX_REPLY_LINE`] bytes, and waiting for a
//!   close drains at most until the deadline, so a server that talks forever
//!   cannot hold us;
//! - at most [`MAX_CROWD`] connections are open at once (the 100 clients).
//!
//! Whatever the server sent is shown escaped ([`escape`]): it cannot break a
//! TAP line or drive the terminal.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use super::cli::{Family, Target};
use super::wire::{self, Reader};

/// Time allowed for each connect and for each reply. Generous
/// because the assignment's own server listens with a backlog of 1, so some of
/// its clients wait for a SYN retransmission (1 s, then 3 s).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// No wait of the run goes past this, counted from the start; checks that
/// would start later are reported as not run. With the last check's clean-up
/// a run ends within about 60 s.
pub const RUN_LIMIT: Duration = Duration::from_secs(55);

/// Longest reply line read (its line end included); more is a failure.
pub const MAX_REPLY_LINE: usize = 1024;

/// What the 100 clients together may take: a kernel whose listen queue is
/// full drops a SYN, and the client sends it again after 1, 3, 7 and 15 s.
pub const CROWD_TIMEOUT: Duration = Duration::from_secs(20);

/// Most connections one check holds at once (the "100 clients" check); a run
/// never holds more than 200.
pub const MAX_CROWD: usize = 100;

/// Clients of the assignment's own test client, all at once.
const ASSIGNMENT_CLIENTS: usize = 9;

/// Stack of each crowd client thread: blocking socket I/O and a little formatting.
const CLIENT_STACK_BYTES: usize = 128 * 1024;

/// Pause between the pieces a check sends separately, so that they arrive as
/// separate packets even at a server that reads at once.
const PACKET_GAP: Duration = Duration::from_millis(200);

/// Between the reply to one `TIME` and the next request of the check that
/// the reply is the current time: more than a second, so that the two
/// replies of a live clock show different seconds.
const APART: Duration = Duration::from_millis(1200);

/// How far the time shown may be from this machine's clock, once whole
/// quarter hours (any time zone) are taken out.
const CLOCK_SLACK_SECS: f64 = 5.0;

/// What `jamc --conformance` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub target: Target,
    /// `-4` / `-6`.
    pub family: Family,
    /// `-s`: the local address every connection is made from.
    pub source: Option<IpAddr>,
    /// `--strict`: the checks of the rest of the protocol too.
    pub strict: bool,
}

/// Whether a check belongs to the assignment or to the rest of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// Always run; the exit status depends on it.
    Required,
    /// Run with `--strict` only.
    Strict,
}

/// What a check needs from the checks before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// A connection (every check needs one).
    Connection,
    /// A server that answers `TIME` at all.
    Answer,
}

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fault {
    /// The server said something wrong.
    Wrong(String),
    /// Nothing came back: no reply in time, a close or a reset. When
    /// [`Check::gate`] fails this way, the checks that need an answer are not tried.
    Silent(String),
}

impl Fault {
    fn why(&self) -> &str {
        match self {
            Fault::Wrong(why) | Fault::Silent(why) => why,
        }
    }
}

type Verdict = Result<(), Fault>;

/// One conformance check: what it proves, in words a student can read in the report.
struct Check {
    what: &'static str,
    level: Level,
    needs: Needs,
    /// When this check gets no reply at all, the checks that need an answer are not tried.
    gate: bool,
    run: fn(&Server) -> Verdict,
}

impl Check {
    /// The check whose silence stops the checks that need an answer.
    const fn gate(what: &'static str, run: fn(&Server) -> Verdict) -> Check {
        Check {
            what,
            level: Level::Required,
            needs: Needs::Connection,
            gate: true,
            run,
        }
    }

    const fn required(what: &'static str, needs: Needs, run: fn(&Server) -> Verdict) -> Check {
        Check {
            what,
            level: Level::Required,
            needs,
            gate: false,
            run,
        }
    }

    /// Every `--strict` check needs a server that answers.
    const fn strict(what: &'static str, run: fn(&Server) -> Verdict) -> Check {
        Check {
            what,
            level: Level::Strict,
            needs: Needs::Answer,
            gate: false,
            run,
        }
    }
}

/// Every check after the first ("accepts a TCP connection", which also picks
/// the address the others use), in the order they are reported.
const CHECKS: &[Check] = &[
    Check::gate(
        "TIME is answered with exactly \"JAM hh:mm:ss\" and CR LF",
        time_is_answered_exactly,
    ),
    Check::required(
        "a second TIME on the same connection is answered",
        Needs::Answer,
        second_time_is_answered,
    ),
    Check::required(
        "QUIT makes the server close the connection",
        Needs::Connection,
        quit_closes,
    ),
    Check::required(
        "9 clients at once are all answered",
        Needs::Answer,
        nine_clients_at_once,
    ),
    Check::required(
        "a client that sends nothing does not stop others being served",
        Needs::Answer,
        silent_client_does_not_block,
    ),
    Check::required(
        "the reply is the server's current time (two replies a second apart differ)",
        Needs::Answer,
        reply_is_the_current_time,
    ),
    Check::strict(
        "command words are matched in any case (time, Time, quit)",
        any_case,
    ),
    Check::strict(
        "spaces and tabs around the command are ignored",
        blanks_around,
    ),
    Check::strict("a request ending in a bare LF is answered", bare_lf),
    Check::strict("an empty line gets no reply", empty_line_no_reply),
    Check::strict(
        "an unknown command gets an ERROR line and the connection stays usable",
        unknown_command,
    ),
    Check::strict(
        "a line that is not UTF-8 gets an ERROR line and the connection stays usable",
        invalid_utf8,
    ),
    Check::strict(
        "three requests in one packet get three replies in order",
        pipelined_requests,
    ),
    Check::strict(
        "a request split over two packets is answered",
        split_request,
    ),
    Check::strict(
        "a 64 KiB line does not stop the server serving others",
        long_line_does_not_block,
    ),
    Check::strict(
        "100 clients at once are all answered",
        hundred_clients_at_once,
    ),
    Check::strict(
        "the time agrees with this machine's clock (within 5 s, in any time zone)",
        time_agrees_with_the_local_clock,
    ),
];

/// What the first check says.
const ACCEPTS: &str = "the server accepts a TCP connection";

/// Runs the checks, printing TAP to `out` as each ends; returns the exit
/// status: 0 when every required check passed (with `--strict`: every
/// check), 1 otherwise.
pub fn run(options: &Options, out: &mut dyn Write) -> u8 {
    let started = Instant::now();
    let run_deadline = started + RUN_LIMIT;
    let checks: Vec<&Check> = CHECKS
        .iter()
        .filter(|c| options.strict || c.level == Level::Required)
        .collect();
    let mut report = Report::new(out, checks.len() + 1);
    report.comment(&format!(
        "jamc --conformance{}: is {} a JAM server?",
        if options.strict { " --strict" } else { "" },
        options.target
    ));
    report.comment("required (the assignment)");

    let first = accepts_connection(options, run_deadline);
    let server = match &first {
        Ok(addr) => Some(Server {
            addr: *addr,
            source: options.source,
            run_deadline,
        }),
        Err(_) => None,
    };
    report.verdict(Level::Required, ACCEPTS, &first.map(|_| ()));

    // Why the checks that need an answer are not tried, once that is known.
    let mut no_answer: Option<String> = None;
    let mut strict_started = false;
    for (i, check) in checks.iter().enumerate() {
        if check.level == Level::Strict && !strict_started {
            strict_started = true;
            report.comment("further checks (--strict: the rest of the protocol)");
        }
        let verdict = match &server {
            None => Err(Fault::Silent(
                "not tried: no connection could be made (check 1)".to_string(),
            )),
            Some(_) if check.needs == Needs::Answer && no_answer.is_some() => {
                Err(Fault::Silent(no_answer.clone().unwrap_or_default()))
            }
            Some(_) if Instant::now() >= run_deadline => Err(Fault::Silent(format!(
                "not run: the run's limit of {} s was reached",
                RUN_LIMIT.as_secs()
            ))),
            Some(server) => (check.run)(server),
        };
        if check.gate && matches!(verdict, Err(Fault::Silent(_))) {
            no_answer = Some(format!("not tried: TIME got no reply (check {})", i + 2));
        }
        report.verdict(
            check.level,
            check.what,
            &verdict.map_err(|f| f.why().to_string()),
        );
    }
    report.finish(options.strict)
}

/// The TAP report and its tally.
struct Report<'a> {
    out: &'a mut dyn Write,
    number: usize,
    planned: usize,
    failed_required: usize,
    failed_strict: usize,
}

impl<'a> Report<'a> {
    fn new(out: &'a mut dyn Write, planned: usize) -> Report<'a> {
        let mut report = Report {
            out,
            number: 0,
            planned,
            failed_required: 0,
            failed_strict: 0,
        };
        report.line(&format!("1..{planned}"));
        report
    }

    fn line(&mut self, text: &str) {
        // A reader that went away (jamc ... | head) must not stop the checks' clean-up.
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    fn comment(&mut self, text: &str) {
        self.line(&format!("# {text}"));
    }

    fn verdict(&mut self, level: Level, what: &str, verdict: &Result<(), String>) {
        self.number += 1;
        let n = self.number;
        match verdict {
            Ok(()) => self.line(&format!("ok {n} - {what}")),
            Err(why) => {
                match level {
                    Level::Required => self.failed_required += 1,
                    Level::Strict => self.failed_strict += 1,
                }
                self.line(&format!("not ok {n} - {what} # {}", tap_reason(why)));
            }
        }
    }

    /// The closing comment; returns the exit status.
    fn finish(mut self, strict: bool) -> u8 {
        let failed = self.failed_required + self.failed_strict;
        let passed = self.planned - failed;
        let mut summary = format!("{passed} of {} checks passed", self.planned);
        if self.failed_required > 0 {
            summary.push_str(&format!(
                "; {} required check{} failed: this is not a JAM server yet",
                self.failed_required,
                if self.failed_required == 1 { "" } else { "s" }
            ));
        } else if failed > 0 {
            summary.push_str(&format!(
                "; every required check passed, {failed} further check{} failed",
                if failed == 1 { "" } else { "s" }
            ));
        }
        if !strict {
            summary.push_str(&format!(
                "; --strict adds {} more on the rest of the protocol",
                CHECKS.len() - CHECKS.iter().filter(|c| c.level == Level::Required).count()
            ));
        }
        self.comment(&summary);
        let ok = self.failed_required == 0 && (!strict || self.failed_strict == 0);
        u8::from(!ok)
    }
}

/// A failure's reason as the text after `#` on a TAP line: one line, and never
/// read as a directive (prove counts `not ok 3 - … # skip…` or `# TODO` as
/// passed, and a host may be called `skip.example.org`).
fn tap_reason(why: &str) -> String {
    let one_line = why.replace(['\r', '\n'], " ");
    let first = one_line.trim_start().get(..4).unwrap_or_default();
    if first.eq_ignore_ascii_case("skip") || first.eq_ignore_ascii_case("todo") {
        format!("failed: {one_line}")
    } else {
        one_line
    }
}

/// The server under test, once check 1 found an address that accepts.
struct Server {
    addr: SocketAddr,
    /// `-s`.
    source: Option<IpAddr>,
    run_deadline: Instant,
}

impl Server {
    /// [`STEP_TIMEOUT`] from now, but never past the run's limit.
    fn step_deadline(&self) -> Instant {
        (Instant::now() + STEP_TIMEOUT).min(self.run_deadline)
    }

    fn connect(&self) -> Result<Conn, Fault> {
        Conn::open(self.addr, self.source, self.step_deadline()).map_err(Fault::Silent)
    }
}

/// Check 1: resolves the host and connects to its addresses in turn; the first
/// that accepts is the one every other check uses.
fn accepts_connection(options: &Options, run_deadline: Instant) -> Result<SocketAddr, String> {
    let deadline = (Instant::now() + STEP_TIMEOUT).min(run_deadline);
    let addrs =
        super::resolve(&options.target, options.family, deadline).map_err(|e| e.to_string())?;
    let mut failures = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        // Each address gets an equal share of what is left, as plain jamc does.
        let left = deadline.saturating_duration_since(Instant::now());
        let share = left / u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
        match Conn::open(*addr, options.source, Instant::now() + share) {
            Ok(_) => return Ok(*addr),
            Err(why) => failures.push(why),
        }
    }
    Err(failures.join("; "))
}

/// How a wait for the server ended without what we wanted.
#[derive(Debug)]
enum End {
    TimedOut(Duration, Vec<u8>),
    Closed(Vec<u8>),
    Reset(Vec<u8>),
    TooLong(Vec<u8>),
    Failed(String),
}

impl End {
    /// How a read that began at `started` ended, waiting until `deadline`.
    fn of(end: wire::End, deadline: Instant, started: Instant) -> End {
        match end {
            wire::End::TimedOut(got) => {
                End::TimedOut(deadline.saturating_duration_since(started), got)
            }
            wire::End::Closed(got) => End::Closed(got),
            wire::End::Reset(got) => End::Reset(got),
            wire::End::TooLong(got) => End::TooLong(got),
            wire::End::Failed(e) => End::Failed(format!("reading failed: {e}")),
        }
    }

    /// In words, after "sent X, ": "no reply within 5 s", ….
    fn describe(&self) -> String {
        let partial = |bytes: &[u8]| {
            if bytes.is_empty() {
                String::new()
            } else {
                format!(" (only {} arrived, no line end)", escape(bytes))
            }
        };
        match self {
            End::TimedOut(waited, got) if got.is_empty() => {
                format!("no reply within {}", seconds(*waited))
            }
            End::TimedOut(waited, got) => {
                format!(
                    "no complete line within {}{}",
                    seconds(*waited),
                    partial(got)
                )
            }
            End::Closed(got) => format!("the server closed the connection{}", partial(got)),
            End::Reset(got) => format!("the server reset the connection{}", partial(got)),
            End::TooLong(got) => format!(
                "a reply longer than {MAX_REPLY_LINE} bytes without a line end: {}",
                escape(got)
            ),
            End::Failed(why) => why.clone(),
        }
    }

    /// A server that said something (even too much) is wrong; one that said nothing is silent.
    fn into_fault(self, before: &str) -> Fault {
        let why = format!("{before}{}", self.describe());
        match self {
            End::TooLong(_) => Fault::Wrong(why),
            End::TimedOut(_, ref got) | End::Closed(ref got) | End::Reset(ref got)
                if !got.is_empty() =>
            {
                Fault::Wrong(why)
            }
            _ => Fault::Silent(why),
        }
    }
}

/// `5 s`, or `0.3 s` when the run's limit cut a wait short.
fn seconds(waited: Duration) -> String {
    if waited + Duration::from_millis(50) >= STEP_TIMEOUT {
        format!("{} s", STEP_TIMEOUT.as_secs())
    } else {
        format!("{:.1} s (the run's time limit)", waited.as_secs_f64())
    }
}

/// One connection to the server under test, reading lines within deadlines
/// through jamc's one reader (a line may be [`MAX_REPLY_LINE`] bytes, its end
/// included).
struct Conn {
    reader: Reader,
}

impl Conn {
    fn open(addr: SocketAddr, source: Option<IpAddr>, deadline: Instant) -> Result<Conn, String> {
        if deadline <= Instant::now() {
            return Err(format!(
                "connecting to {addr}: the run's time limit was reached"
            ));
        }
        Conn::connect(addr, source, deadline)
            .map_err(|(e, waited)| format!("connecting to {addr}: {}", connect_error(&e, waited)))
    }

    /// Connects by the deadline; a failure comes with the time it was given.
    fn connect(
        addr: SocketAddr,
        source: Option<IpAddr>,
        deadline: Instant,
    ) -> Result<Conn, (io::Error, Duration)> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err((io::ErrorKind::TimedOut.into(), left));
        }
        match super::net::open(&addr, source, left) {
            Ok(stream) => {
                // Each piece a check sends must leave at once, as its own packet.
                let _ = stream.set_nodelay(true);
                Ok(Conn {
                    reader: Reader::counting_line_ends(stream, MAX_REPLY_LINE),
                })
            }
            Err(e) => Err((e, left)),
        }
    }

    /// Sends all of `bytes` by the deadline.
    fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), End> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(End::TimedOut(left, Vec::new()));
        }
        let stream = self.reader.stream();
        let _ = stream.set_write_timeout(Some(left));
        stream.write_all(bytes).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                End::Failed(format!("could not send within {}", seconds(left)))
            }
            io::ErrorKind::BrokenPipe => End::Closed(Vec::new()),
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                End::Reset(Vec::new())
            }
            _ => End::Failed(format!("sending failed: {e}")),
        })
    }

    /// The next reply line, its line end included, waiting no later than the deadline.
    fn line(&mut self, deadline: Instant) -> Result<Vec<u8>, End> {
        let started = Instant::now();
        self.reader
            .line(deadline)
            .map_err(|end| End::of(end, deadline, started))
    }

    /// Sends a request and reads the reply line; a failure says what was sent.
    fn ask(&mut self, request: &[u8], server: &Server) -> Result<Vec<u8>, Fault> {
        let deadline = server.step_deadline();
        let before = format!("sent {}, ", escape(request));
        self.send(request, deadline)
            .map_err(|e| e.into_fault(&before))?;
        self.line(deadline).map_err(|e| e.into_fault(&before))
    }

    /// Waits for the server to close (end of stream or reset) by the deadline,
    /// reading and keeping (up to a line's worth) whatever comes first.
    fn closes(&mut self, deadline: Instant) -> Result<(), End> {
        let started = Instant::now();
        // Only the first bytes are worth showing; a server talking forever
        // must not grow the buffer without end.
        self.reader
            .closes(MAX_REPLY_LINE, deadline)
            .map_err(|end| End::of(end, deadline, started))
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

fn connect_error(e: &io::Error, waited: Duration) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused (is the server running?)".into(),
        // The kernel may report a reset that came right after the handshake
        // as the outcome of the connect itself: the server accepted, then reset.
        io::ErrorKind::ConnectionReset => "the server reset the connection as it was made".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("no answer within {}", seconds(waited))
        }
        _ => e.to_string(),
    }
}

/// A `JAM …` line: the answer to `TIME`, whatever its time looks like (only
/// check 2 judges the format). Not [`super::answer::jam_reply`], which reads
/// a time for jamc to use: a line with no time (`JAM \r\n`) or one that is
/// not UTF-8 is no reading, but it is still an answer to `TIME`, and the
/// other checks are about answering, not about the time shown.
fn is_jam(line: &[u8]) -> bool {
    line.starts_with(b"JAM ") && line.ends_with(b"\n")
}

/// An `ERROR` line: `ERROR`, or `ERROR` and a reason. Judged on the line as
/// it came, its end included, so that a CR right after `ERROR` counts
/// whatever follows it; [`super::answer::jam_reply`] sees the line with its
/// end cut, and an `ERROR\r…` line with more after the CR is no error there.
/// The verdicts stay what they were.
fn is_error(line: &[u8]) -> bool {
    line.strip_prefix(b"ERROR")
        .is_some_and(|rest| matches!(rest.first(), Some(b' ' | b'\r' | b'\n')))
}

/// What is wrong with a reply to `TIME` that should be exactly `JAM hh:mm:ss\r\n`, if anything.
fn jam_line_fault(line: &[u8]) -> Option<&'static str> {
    let Some(rest) = line.strip_prefix(b"JAM ") else {
        return Some("expected a JAM line");
    };
    let Some(time) = rest.strip_suffix(b"\r\n") else {
        return Some("the line must end with CR LF");
    };
    let two_digits = |p: &[u8], max: u8| {
        p.len() == 2
            && p.iter().all(u8::is_ascii_digit)
            && (p[0] - b'0') * 10 + (p[1] - b'0') <= max
    };
    match time {
        [h0, h1, b':', m0, m1, b':', s0, s1]
            if [h0, h1, m0, m1, s0, s1].iter().all(|d| d.is_ascii_digit()) =>
        {
            // Second 60: a leap second, which a server may well show.
            if two_digits(&[*h0, *h1], 23)
                && two_digits(&[*m0, *m1], 59)
                && two_digits(&[*s0, *s1], 60)
            {
                None
            } else {
                Some("that is not a 24-hour time")
            }
        }
        _ => Some("the time must be hh:mm:ss, two digits each"),
    }
}

/// Check 2.
fn time_is_answered_exactly(server: &Server) -> Verdict {
    let mut conn = server.connect()?;
    let line = conn.ask(b"TIME\r\n", server)?;
    // "Exactly" includes nothing after the line: whatever came with it is there now.
    let extra = conn.reader.take_pending();
    match jam_line_fault(&line) {
        Some(why) => Err(Fault::Wrong(format!(
            "sent \"TIME\\r\\n\", got {}: {why}",
            escape(&line)
        ))),
        None if !extra.is_empty() => Err(Fault::Wrong(format!(
            "sent \"TIME\\r\\n\", got {} and then {}: one line was expected",
            escape(&line),
            escape(&extra)
        ))),
        None => Ok(()),
    }
}

/// Sends `request` and expects a JAM line back; the failure says what came instead.
fn expect_jam(conn: &mut Conn, request: &[u8], server: &Server, context: &str) -> Verdict {
    expect_reply(conn, request, server, context, is_jam, "a JAM line")
}

/// While a first client holds its connection, a second connects and asks for
/// the time; a failure to connect or to get a JAM line is told after
/// `connecting` or `asking`.
fn another_client_gets_jam(server: &Server, connecting: &str, asking: &str) -> Verdict {
    let mut other = server.connect().map_err(|f| prefix_fault(connecting, f))?;
    expect_jam(&mut other, b"TIME\r\n", server, asking)
}

/// Sends `request` and expects an ERROR line back.
fn expect_error(conn: &mut Conn, request: &[u8], server: &Server) -> Verdict {
    expect_reply(conn, request, server, "", is_error, "an ERROR line")
}

/// Sends `request` and expects a reply that `fits`, as `what` names it; the
/// failure, after `context`, says what came instead.
fn expect_reply(
    conn: &mut Conn,
    request: &[u8],
    server: &Server,
    context: &str,
    fits: fn(&[u8]) -> bool,
    what: &str,
) -> Verdict {
    let line = conn
        .ask(request, server)
        .map_err(|f| prefix_fault(context, f))?;
    if fits(&line) {
        Ok(())
    } else {
        Err(Fault::Wrong(format!(
            "{context}sent {}, got {} (expected {what})",
            escape(request),
            escape(&line)
        )))
    }
}

/// Sends `pieces` on one connection, `PACKET_GAP` apart, and expects the first
/// reply to be a JAM line; otherwise says `before`, then `wrong` with its `{}`
/// standing for the reply.
fn sent_apart_then_jam(server: &Server, pieces: &[&[u8]], before: &str, wrong: &str) -> Verdict {
    let mut conn = server.connect()?;
    let (last, first) = pieces.split_last().expect("at least one piece");
    for piece in first {
        conn.send(piece, server.step_deadline())
            .map_err(|e| e.into_fault(before))?;
        thread::sleep(PACKET_GAP);
    }
    let deadline = server.step_deadline();
    conn.send(last, deadline)
        .map_err(|e| e.into_fault(before))?;
    let line = conn.line(deadline).map_err(|e| e.into_fault(before))?;
    if is_jam(&line) {
        Ok(())
    } else {
        let wrong = wrong.replacen("{}", &escape(&line), 1);
        Err(Fault::Wrong(format!("{before}{wrong}")))
    }
}

fn prefix_fault(context: &str, fault: Fault) -> Fault {
    match fault {
        Fault::Wrong(why) => Fault::Wrong(format!("{context}{why}")),
        Fault::Silent(why) => Fault::Silent(format!("{context}{why}")),
    }
}

/// Sends `request` and expects the server to close the connection.
fn expect_close(conn: &mut Conn, request: &[u8], server: &Server) -> Verdict {
    let deadline = server.step_deadline();
    let before = format!("sent {}, ", escape(request));
    conn.send(request, deadline)
        .map_err(|e| e.into_fault(&before))?;
    conn.closes(deadline).map_err(|end| match end {
        End::TimedOut(waited, got) => {
            let also = if got.is_empty() {
                String::new()
            } else {
                format!(" (it sent {})", escape(&got))
            };
            Fault::Wrong(format!(
                "{before}the connection was still open after {}{also}",
                seconds(waited)
            ))
        }
        other => other.into_fault(&before),
    })
}

/// Check 3.
fn second_time_is_answered(server: &Server) -> Verdict {
    let mut conn = server.connect()?;
    expect_jam(&mut conn, b"TIME\r\n", server, "first request: ")?;
    expect_jam(&mut conn, b"TIME\r\n", server, "second request: ")
}

/// Check 4.
fn quit_closes(server: &Server) -> Verdict {
    let mut conn = server.connect()?;
    expect_close(&mut conn, b"QUIT\r\n", server)
}

/// Check 5: as the assignment's own test client does.
fn nine_clients_at_once(server: &Server) -> Verdict {
    crowd(server, ASSIGNMENT_CLIENTS, Allowance::EachStep)
}

/// Check 6: a silent client is connected (and, at a server that serves one
/// connection at a time, being served) while another asks.
fn silent_client_does_not_block(server: &Server) -> Verdict {
    let _silent = server.connect()?;
    another_client_gets_jam(
        server,
        "while a silent client was connected, another client: ",
        "while a silent client was connected, another client ",
    )
}

/// Check 7: a server that renders a time it read once (at its start, say)
/// passes every other required check. Two connections, so that a server
/// that answers one request per connection is judged by check 3 alone.
fn reply_is_the_current_time(server: &Server) -> Verdict {
    let ask = |context: &str| -> Result<Vec<u8>, Fault> {
        let mut conn = server.connect().map_err(|f| prefix_fault(context, f))?;
        let line = conn
            .ask(b"TIME\r\n", server)
            .map_err(|f| prefix_fault(context, f))?;
        if is_jam(&line) {
            Ok(line)
        } else {
            Err(Fault::Wrong(format!(
                "{context}sent \"TIME\\r\\n\", got {} (expected a JAM line)",
                escape(&line)
            )))
        }
    };
    let first = ask("first request: ")?;
    thread::sleep(APART);
    let second = ask(&format!(
        "second request, {:.1} s later: ",
        APART.as_secs_f64()
    ))?;
    if first == second {
        Err(Fault::Wrong(format!(
            "sent \"TIME\\r\\n\" twice, {:.1} s apart, got {} both times: \
             the reply must show the server's clock when asked",
            APART.as_secs_f64(),
            escape(&first)
        )))
    } else {
        Ok(())
    }
}

/// Check 18: the time shown is this machine's, give or take
/// [`CLOCK_SLACK_SECS`], in some time zone (every zone is a whole number of
/// quarter hours from UTC).
fn time_agrees_with_the_local_clock(server: &Server) -> Verdict {
    let mut conn = server.connect()?;
    let sent = chrono::Utc::now();
    let line = conn.ask(b"TIME\r\n", server)?;
    let mid = sent + (chrono::Utc::now() - sent) / 2;
    let Some(shown) = seconds_of_day(&line) else {
        return Err(Fault::Wrong(format!(
            "sent \"TIME\\r\\n\", got {}: no time hh:mm:ss to compare",
            escape(&line)
        )));
    };
    let here = f64::from(chrono::Timelike::num_seconds_from_midnight(&mid))
        + f64::from(chrono::Timelike::nanosecond(&mid).min(999_999_999)) / 1e9;
    let off = quarter_hour_remainder(shown, here);
    if off.abs() <= CLOCK_SLACK_SECS {
        Ok(())
    } else {
        Err(Fault::Wrong(format!(
            "sent \"TIME\\r\\n\" at {} UTC here, got {}: {:.0} s {} this machine's clock \
             whatever the server's time zone (more than {CLOCK_SLACK_SECS:.0} s)",
            mid.format("%H:%M:%S"),
            escape(&line),
            off.abs(),
            if off > 0.0 { "ahead of" } else { "behind" }
        )))
    }
}

/// The seconds since midnight of `JAM hh:mm:ss…`, the middle of the second
/// shown (a whole-second time is read as the middle of its second).
fn seconds_of_day(line: &[u8]) -> Option<f64> {
    let time = line.strip_prefix(b"JAM ")?.get(..8)?;
    let time = std::str::from_utf8(time).ok()?;
    let mut parts = time.split(':').map(|p| {
        (p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u32>().ok())
            .flatten()
    });
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    (h < 24 && m < 60 && s <= 60).then(|| f64::from(h * 3600 + m * 60 + s) + 0.5)
}

/// `shown - here` in seconds, less the nearest whole number of quarter
/// hours: what no time zone explains.
fn quarter_hour_remainder(shown: f64, here: f64) -> f64 {
    const QUARTER: f64 = 900.0;
    let d = shown - here;
    d - (d / QUARTER).round() * QUARTER
}

/// Check 8.
fn any_case(server: &Server) -> Verdict {
    let mut conn = server.connect()?;
    expect_jam(&mut conn, b"time\r\n", server, "")?;
    expect_jam(&mut conn, b"Time\r\n", server, "")?;
    expect_close(&mut conn, b"quit\r\n", server)
}

/// Check 9.
fn blanks_around(server: &Server) -> Verdict {
    let mut conn = server.connect()?;
    expect_jam(&mut conn, b" \tTIME \t\r\n", server, "")
}

/// Check 10.
fn bare_lf(server: &Server) -> Verdict {
    let mut conn = server.connect()?;
    expect_jam(&mut conn, b"TIME\n", server, "")
}

/// Check 11: no reply is shown by the next reply being the one to a TIME sent after.
fn empty_line_no_reply(server: &Server) -> Verdict {
    let before = "sent \"\\r\\n\" and \" \\t\\r\\n\" apart, then \"TIME\\r\\n\", ";
    let pieces: [&[u8]; 3] = [b"\r\n", b" \t\r\n", b"TIME\r\n"];
    let wrong = "the first reply was {} (an empty line must get no reply)";
    sent_apart_then_jam(server, &pieces, before, wrong)
}

/// Check 12.
fn unknown_command(server: &Server) -> Verdict {
    let mut conn = server.connect()?;
    expect_error(&mut conn, b"HELLO\r\n", server)?;
    expect_jam(&mut conn, b"TIME\r\n", server, "then ")
}

/// Check 13.
fn invalid_utf8(server: &Server) -> Verdict {
    let mut conn = server.connect()?;
    expect_error(&mut conn, b"\xff\xfe\r\n", server)?;
    expect_jam(&mut conn, b"TIME\r\n", server, "then ")
}

/// Check 14: three different requests, so that the order of replies shows.
fn pipelined_requests(server: &Server) -> Verdict {
    const REQUESTS: &[u8] = b"TIME\r\nHELLO\r\nTIME\r\n";
    let mut conn = server.connect()?;
    let before = format!("sent {} in one packet, ", escape(REQUESTS));
    conn.send(REQUESTS, server.step_deadline())
        .map_err(|e| e.into_fault(&before))?;
    let mut replies: Vec<Vec<u8>> = Vec::new();
    let mut ended = None;
    while replies.len() < 3 {
        match conn.line(server.step_deadline()) {
            Ok(line) => replies.push(line),
            Err(end) => {
                ended = Some(end);
                break;
            }
        }
    }
    let shown: Vec<String> = replies.iter().map(|r| escape(r)).collect();
    if let Some(end) = ended {
        let got = match replies.len() {
            0 => String::new(),
            1 => format!("got 1 reply ({}), then ", shown[0]),
            n => format!("got {n} replies ({}), then ", shown.join(", ")),
        };
        return Err(Fault::Wrong(format!("{before}{got}{}", end.describe())));
    }
    let in_order = is_jam(&replies[0]) && is_error(&replies[1]) && is_jam(&replies[2]);
    if in_order {
        Ok(())
    } else {
        Err(Fault::Wrong(format!(
            "{before}got {} (expected a JAM line, an ERROR line, a JAM line)",
            shown.join(", ")
        )))
    }
}

/// Check 15.
fn split_request(server: &Server) -> Verdict {
    let before = "sent \"TI\" and, 0.2 s later, \"ME\\r\\n\", ";
    let pieces: [&[u8]; 2] = [b"TI", b"ME\r\n"];
    sent_apart_then_jam(server, &pieces, before, "got {} (expected a JAM line)")
}

/// Check 16: the server may refuse the long line and close (jamd does:
/// `ERROR line too long`); what matters is that it goes on serving others.
fn long_line_does_not_block(server: &Server) -> Verdict {
    let mut long = server.connect()?;
    let mut line = vec![b'x'; 64 * 1024];
    line.extend_from_slice(b"\r\n");
    // Refused, closed, reset or stalled: all fine for this check.
    let _ = long.send(&line, server.step_deadline());
    another_client_gets_jam(
        server,
        "after one client sent a 64 KiB line, another client: ",
        "after one client sent a 64 KiB line (still connected), another client ",
    )
}

/// Check 17.
fn hundred_clients_at_once(server: &Server) -> Verdict {
    crowd(server, MAX_CROWD, Allowance::Whole(CROWD_TIMEOUT))
}

/// How one client of a crowd fared.
enum CrowdEnd {
    Answered,
    /// The server's kernel never took the connection off its listen queue
    /// in time: the SYN went unanswered, or the handshake seemed done but
    /// the request was never acknowledged (a full queue drops the client's
    /// last ACK and what comes with it).
    NotAccepted,
    /// Anything else, in words.
    Failed(String),
}

/// How long a crowd's clients may take.
#[derive(Clone, Copy)]
enum Allowance {
    /// [`STEP_TIMEOUT`] to connect, and again for the reply.
    EachStep,
    /// This long from the start of the crowd for everything.
    Whole(Duration),
}

/// `n` clients connect at once, each sends TIME, and each keeps its
/// connection open until all are done: a server that serves one connection at
/// a time answers only the first. A client the server's kernel never took
/// off its listen queue is told apart from one the server left unanswered.
fn crowd(server: &Server, n: usize, allowance: Allowance) -> Verdict {
    let n = n.min(MAX_CROWD);
    let (addr, source) = (server.addr, server.source);
    let run_deadline = server.run_deadline;
    let started = Instant::now();
    let by = move |from: Instant| match allowance {
        Allowance::EachStep => (from + STEP_TIMEOUT).min(run_deadline),
        Allowance::Whole(d) => (started + d).min(run_deadline),
    };
    // "5 s", "20 s", or what the run's limit left of it.
    let within = move |from: Instant| {
        let (allowed, end) = match allowance {
            Allowance::EachStep => (STEP_TIMEOUT, from + STEP_TIMEOUT),
            Allowance::Whole(d) => (d, started + d),
        };
        if run_deadline < end {
            let left = run_deadline.saturating_duration_since(from);
            format!("{:.1} s (the run's time limit)", left.as_secs_f64())
        } else {
            format!("{} s", allowed.as_secs())
        }
    };
    let client = move || -> (CrowdEnd, Option<Conn>) {
        let mut conn = match Conn::connect(addr, source, by(Instant::now())) {
            Ok(conn) => conn,
            Err((e, _)) if is_timeout(&e) => return (CrowdEnd::NotAccepted, None),
            Err((e, waited)) => {
                let why = format!("connecting to {addr}: {}", connect_error(&e, waited));
                return (CrowdEnd::Failed(format!("could not connect ({why})")), None);
            }
        };
        let sent = Instant::now();
        let deadline = by(sent);
        let end = match conn.send(b"TIME\r\n", deadline) {
            Err(end) => CrowdEnd::Failed(format!("sent \"TIME\\r\\n\", {}", end.describe())),
            Ok(()) => match conn.line(deadline) {
                Ok(line) if is_jam(&line) => CrowdEnd::Answered,
                Ok(line) => CrowdEnd::Failed(format!("sent \"TIME\\r\\n\", got {}", escape(&line))),
                Err(End::TimedOut(_, got)) if got.is_empty() => {
                    if crate::sys::tcp_unacknowledged_bytes(conn.reader.stream())
                        .is_ok_and(|n| n > 0)
                    {
                        CrowdEnd::NotAccepted
                    } else {
                        CrowdEnd::Failed(format!(
                            "sent \"TIME\\r\\n\", no reply within {}",
                            within(sent)
                        ))
                    }
                }
                Err(end) => CrowdEnd::Failed(format!("sent \"TIME\\r\\n\", {}", end.describe())),
            },
        };
        (end, Some(conn))
    };
    let results: Vec<CrowdEnd> = thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                thread::Builder::new()
                    .name("jamc-conformance".into())
                    .stack_size(CLIENT_STACK_BYTES)
                    .spawn_scoped(scope, client)
            })
            .collect();
        // Joined in full before any connection is dropped: they are held at once.
        let mut held = Vec::with_capacity(n);
        let results = handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => match h.join() {
                    Ok((result, conn)) => {
                        held.push(conn);
                        result
                    }
                    Err(_) => CrowdEnd::Failed("the client thread failed".to_string()),
                },
                Err(e) => CrowdEnd::Failed(format!("could not start a client thread ({e})")),
            })
            .collect();
        drop(held);
        results
    });
    let answered = results
        .iter()
        .filter(|r| matches!(r, CrowdEnd::Answered))
        .count();
    if answered == n {
        return Ok(());
    }
    // The same failure from many clients is told once, with its count.
    let queue_full = format!(
        "never accepted within {} (the listen queue was full: listen backlog too small?)",
        within(started)
    );
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for end in &results {
        let text = match end {
            CrowdEnd::Answered => continue,
            CrowdEnd::NotAccepted => queue_full.as_str(),
            CrowdEnd::Failed(why) => why.as_str(),
        };
        *kinds.entry(text).or_default() += 1;
    }
    let mut kinds: Vec<(&str, usize)> = kinds.into_iter().collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    let mut why = format!("{answered} of {n} answered");
    for (text, count) in kinds.iter().take(3) {
        why.push_str(&format!("; {count} {text}"));
    }
    if kinds.len() > 3 {
        why.push_str("; …");
    }
    Err(Fault::Wrong(why))
}

/// Bytes as a quoted string a terminal and a TAP reader can show safely: CR,
/// LF and tab as `\r`, `\n`, `\t`; other control characters, DEL and every
/// non-ASCII byte as `\xNN`; quotes and backslashes escaped; long texts cut
/// after 60 bytes with their full length said.
pub fn escape(bytes: &[u8]) -> String {
    const SHOWN: usize = 60;
    let mut text = String::from("\"");
    for &b in bytes.iter().take(SHOWN) {
        match b {
            b'\r' => text.push_str("\\r"),
            b'\n' => text.push_str("\\n"),
            b'\t' => text.push_str("\\t"),
            b'"' => text.push_str("\\\""),
            b'\\' => text.push_str("\\\\"),
            0x20..=0x7e => text.push(char::from(b)),
            _ => text.push_str(&format!("\\x{b:02x}")),
        }
    }
    text.push('"');
    if bytes.len() > SHOWN {
        text.push_str(&format!("… ({} bytes)", bytes.len()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    #[test]
    fn escape_shows_control_characters_and_cuts_long_text() {
        assert_eq!(escape(b"JAM 1:2\r\n"), r#""JAM 1:2\r\n""#);
        assert_eq!(escape(b"\x1b[2J\t\"\\\xff"), r#""\x1b[2J\t\"\\\xff""#);
        let long = escape(&[b'x'; 100]);
        assert!(long.ends_with("\"… (100 bytes)"), "{long}");
    }

    #[test]
    fn a_reason_is_never_a_tap_directive() {
        assert_eq!(tap_reason("sent \"TIME\""), "sent \"TIME\"");
        assert_eq!(
            tap_reason("skip.example.org: no address"),
            "failed: skip.example.org: no address"
        );
        assert_eq!(tap_reason("TODO\nx"), "failed: TODO x");
        assert_eq!(tap_reason("é"), "é");
    }

    #[test]
    fn only_two_digit_24_hour_times_with_crlf_are_exact() {
        assert_eq!(jam_line_fault(b"JAM 14:03:27\r\n"), None);
        assert_eq!(jam_line_fault(b"JAM 23:59:60\r\n"), None);
        for bad in [
            &b"JAM 9:5:3\r\n"[..],
            b"JAM 14:03:27\n",
            b"JAM 24:00:00\r\n",
            b"JAM 12:60:00\r\n",
            b"JAM 14:03:27.123\r\n",
            b"JAM  14:03:27\r\n",
            b"jam 14:03:27\r\n",
            b"ERROR unknown command\r\n",
        ] {
            assert!(jam_line_fault(bad).is_some(), "{}", escape(bad));
        }
    }

    #[test]
    fn any_time_zone_is_whole_quarter_hours_from_the_local_clock() {
        // 10:00:00 UTC here; the server shows its zone's time, mid-second.
        let here = 36_000.0;
        for (shown, off) in [
            ("JAM 10:00:02\r\n", 2.5),
            ("JAM 17:00:00\r\n", 0.5),
            ("JAM 15:45:00\r\n", 0.5),
            ("JAM 03:29:55\r\n", -4.5),
            ("JAM 10:02:27\r\n", 147.5),
            ("JAM 09:52:30\r\n", -449.5),
        ] {
            let s = seconds_of_day(shown.as_bytes()).unwrap();
            let got = quarter_hour_remainder(s, here);
            assert!((got - off).abs() < 1e-9, "{shown}: {got}");
        }
        // Across midnight: 23:59:59 shown at 00:00:01 here.
        let s = seconds_of_day(b"JAM 23:59:59\r\n").unwrap();
        assert!((quarter_hour_remainder(s, 1.0) + 1.5).abs() < 1e-9);
        for bad in [
            &b"JAM 9:5:3\r\n"[..],
            b"JAM 25:00:00\r\n",
            b"ERROR\r\n",
            b"JAM 1",
        ] {
            assert_eq!(seconds_of_day(bad), None, "{}", escape(bad));
        }
    }

    #[test]
    fn what_the_peer_has_not_acknowledged_is_seen() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut stream = TcpStream::connect(addr).expect("connect");
        // Taken by the peer's kernel: acknowledged at once.
        stream.write_all(b"TIME\r\n").expect("send");
        let end = Instant::now() + Duration::from_secs(5);
        while crate::sys::tcp_unacknowledged_bytes(&stream).expect("SIOCOUTQ") > 0 {
            assert!(
                Instant::now() < end,
                "a request on loopback was never acknowledged"
            );
            thread::sleep(Duration::from_millis(5));
        }
        // A peer that never reads: what does not fit its window stays ours.
        stream.set_nonblocking(true).expect("nonblocking");
        let chunk = [b'x'; 64 * 1024];
        for _ in 0..1024 {
            if stream.write(&chunk).is_err() {
                break;
            }
        }
        assert!(crate::sys::tcp_unacknowledged_bytes(&stream).expect("SIOCOUTQ") > 0);
        drop(listener);
    }

    #[test]
    fn error_lines_are_error_alone_or_with_a_reason() {
        assert!(is_error(b"ERROR\r\n"));
        assert!(is_error(b"ERROR unknown command\r\n"));
        assert!(!is_error(b"ERRORS\r\n"));
        assert!(!is_error(b"JAM 12:00:00\r\n"));
    }

    #[test]
    fn the_plan_stays_within_the_connection_bound() {
        const { assert!(MAX_CROWD + 2 <= 200) };
        assert_eq!(CHECKS.iter().filter(|c| c.gate).count(), 1);
        assert_eq!(CHECKS.len() + 1, 18);
        assert_eq!(
            CHECKS.iter().filter(|c| c.level == Level::Required).count() + 1,
            7
        );
    }
}
