//! Logging to syslog and/or standard error, without ever blocking a worker.
//!
//! Workers hand finished lines to a bounded queue and go on; one logging thread
//! writes them out. When the queue is full (syslog slow or gone) a line is
//! dropped and counted, and the count is logged as soon as lines get through
//! again: `dropped N log line(s)`. A refusal line is never lost that way:
//! what it counted is said later, in a `refused N more connection(s)` line.
//!
//! If syslog cannot be reached at start, jamd says so once on standard error
//! and logs there instead, trying syslog again now and then. When standard
//! input, output or error is a client connection (inetd, `Accept=yes`), no
//! line is ever written to standard error.

use std::io::Write as _;
use std::net::{ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use syslog::{LogFormat, LoggerBackend, Severity};

use crate::config::{Facility, Level, LogConfig, LogTarget, SyslogSocket};
use crate::outcome::{Refusal, Tally};

/// Lines waiting for the logging thread before new ones are dropped.
const QUEUE_LINES: usize = 4096;
/// How long one syslog write may wait for a slow reader.
const SYSLOG_WRITE_TIMEOUT: Duration = Duration::from_millis(200);
/// How many times a syslog write cut short by a signal is tried again
/// before the line is dropped (and counted) like one that timed out.
const SYSLOG_INTERRUPTED_TRIES: usize = 4;
/// How often an unreachable syslog is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Refusal lines come at most this often (the server paces its own; the
/// logging thread paces the ones it adds for refusals it could not log).
const REFUSALS_EVERY: Duration = Duration::from_secs(1);

/// A handle for logging; cheap to clone, shared by every thread.
#[derive(Clone)]
pub struct Logger {
    inner: Arc<Inner>,
}

struct Inner {
    tx: SyncSender<Msg>,
    level: AtomicU8,
    connections: AtomicBool,
    dropped: Arc<AtomicU64>,
    /// Every line ever lost, for `jamd_log_lines_dropped_total`.
    dropped_total: Arc<AtomicU64>,
    /// Refusals whose line was lost, to be said later.
    unsaid: Arc<Mutex<Tally>>,
    /// New sinks after a reload, picked up by the logging thread. A slot, not
    /// a queued message: a reload must not wait behind a full queue.
    reconfigure: Arc<Mutex<Option<Sinks>>>,
}

enum Msg {
    Line(Level, String),
    /// A refusal line (`None`: the summary `tally` reads as) and the
    /// refusals it counts.
    Refused(Option<String>, Box<Tally>),
    Flush(SyncSender<()>),
    /// New sinks are in the slot: wakes a logging thread that is waiting.
    Reconfigured,
}

/// Where lines go, as the logging thread needs to know it.
#[derive(Clone, Debug, PartialEq)]
struct Sinks {
    target: LogTarget,
    facility: Facility,
    socket: SyslogSocket,
    stdio_is_client: bool,
}

fn level_index(l: Level) -> u8 {
    match l {
        Level::Error => 0,
        Level::Warn => 1,
        Level::Info => 2,
        Level::Debug => 3,
    }
}

impl Logger {
    /// Starts the logging thread. `stdio_is_client` forbids writing to stderr.
    pub fn start(config: &LogConfig, stdio_is_client: bool) -> Logger {
        let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let dropped_total = Arc::new(AtomicU64::new(0));
        let sinks = Sinks {
            target: config.target,
            facility: config.facility,
            socket: config.syslog_socket.clone(),
            stdio_is_client,
        };
        let reconfigure = Arc::new(Mutex::new(None));
        let unsaid = Arc::new(Mutex::new(Tally::default()));
        let writer = Writer::new(
            sinks,
            Arc::clone(&dropped),
            Arc::clone(&dropped_total),
            Arc::clone(&reconfigure),
            Arc::clone(&unsaid),
        );
        // If the thread cannot start, lines are dropped and counted: logging
        // must never stop the service.
        let _ = thread::Builder::new()
            .name("jamd-log".into())
            .spawn(move || writer.run(rx));
        Logger {
            inner: Arc::new(Inner {
                tx,
                level: AtomicU8::new(level_index(config.level)),
                connections: AtomicBool::new(config.connections),
                dropped,
                dropped_total,
                unsaid,
                reconfigure,
            }),
        }
    }

    /// Applies new `[log]` settings (after a reload).
    pub fn reconfigure(&self, config: &LogConfig, stdio_is_client: bool) {
        self.inner
            .level
            .store(level_index(config.level), Ordering::Relaxed);
        self.inner
            .connections
            .store(config.connections, Ordering::Relaxed);
        let sinks = Sinks {
            target: config.target,
            facility: config.facility,
            socket: config.syslog_socket.clone(),
            stdio_is_client,
        };
        if let Ok(mut slot) = self.inner.reconfigure.lock() {
            *slot = Some(sinks);
        }
        // If the queue is full the thread is busy and sees the slot soon.
        let _ = self.inner.tx.try_send(Msg::Reconfigured);
    }

    /// Whether lines of this level are logged.
    pub fn enabled(&self, level: Level) -> bool {
        level_index(level) <= self.inner.level.load(Ordering::Relaxed)
    }

    /// Whether connection lines (`connection from`, `closed`) are logged.
    pub fn connections(&self) -> bool {
        self.inner.connections.load(Ordering::Relaxed) && self.enabled(Level::Info)
    }

    /// Logs a line at a level; never blocks.
    pub fn log(&self, level: Level, line: String) {
        if !self.enabled(level) {
            return;
        }
        match self.inner.tx.try_send(Msg::Line(level, line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                self.inner.dropped_total.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Logs `refused ADDR: WHY` (a warning) for one refused client. When
    /// the line cannot be logged (the queue is full, the target takes no
    /// lines), the refusal is counted in a later `refused N more
    /// connection(s)` line instead.
    pub(crate) fn refused(&self, why: Refusal, line: String) {
        self.send_refused(Some(line), Tally::of(why, 1));
    }

    /// Logs `refused N more connection(s): …` for `tally`, also later when
    /// it cannot be logged now, with whatever else could not be.
    pub(crate) fn refused_more(&self, tally: Tally) {
        self.send_refused(None, tally);
    }

    fn send_refused(&self, line: Option<String>, tally: Tally) {
        if !self.enabled(Level::Warn) {
            return;
        }
        if let Err(TrySendError::Full(msg) | TrySendError::Disconnected(msg)) =
            self.inner.tx.try_send(Msg::Refused(line, Box::new(tally)))
        {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            self.inner.dropped_total.fetch_add(1, Ordering::Relaxed);
            if let Msg::Refused(_, tally) = msg {
                lock(&self.inner.unsaid).merge(&tally);
            }
        }
    }

    /// Logs an error.
    pub fn error(&self, line: impl Into<String>) {
        self.log(Level::Error, line.into());
    }

    /// Logs a warning.
    pub fn warn(&self, line: impl Into<String>) {
        self.log(Level::Warn, line.into());
    }

    /// Logs a line of normal operation.
    pub fn info(&self, line: impl Into<String>) {
        self.log(Level::Info, line.into());
    }

    /// Logs a debugging detail.
    pub fn debug(&self, line: impl Into<String>) {
        self.log(Level::Debug, line.into());
    }

    /// Lines dropped so far and not yet reported (what the tests look at).
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Lines dropped since start, reported or not (a counter that only grows).
    pub fn dropped_total(&self) -> u64 {
        self.inner.dropped_total.load(Ordering::Relaxed)
    }

    /// Waits (at most `timeout`) until every line queued so far is written.
    pub fn flush(&self, timeout: Duration) {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let deadline = Instant::now() + timeout;
        // The queue may be full; keep trying until the deadline.
        let mut msg = Msg::Flush(ack_tx);
        loop {
            match self.inner.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let _ = ack_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A thread that panicked while holding it must not cost the counts.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

type Syslog = syslog::Logger<LoggerBackend, Rfc3164>;

/// The syslog line of RFC 3164: `<PRI>Mmm dd hh:mm:ss [HOST ]jamd[PID]: MSG`,
/// the day of month padded with a space (`Dec  4`), as the RFC and every
/// syslog daemon write it. The time is UTC (the syslog crate's formatter,
/// which this replaces, wrote UTC too, but padded the day with a zero).
struct Rfc3164 {
    facility: syslog::Facility,
    /// For a remote collector: which host the line is from.
    hostname: Option<String>,
    pid: u32,
}

impl<T: std::fmt::Display> LogFormat<T> for Rfc3164 {
    fn format<W: std::io::Write>(
        &self,
        w: &mut W,
        severity: Severity,
        message: T,
    ) -> syslog::Result<()> {
        let priority = self.facility as u8 | severity as u8;
        let stamp = rfc3164_stamp(chrono::Utc::now());
        let host = self
            .hostname
            .as_deref()
            .map(|h| format!("{h} "))
            .unwrap_or_default();
        write!(w, "<{priority}>{stamp} {host}jamd[{}]: {message}", self.pid)
            .map_err(syslog::Error::Write)
    }
}

/// `Dec  4 05:44:55`: RFC 3164's TIMESTAMP.
fn rfc3164_stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%b %e %H:%M:%S").to_string()
}

/// The logging thread's state.
struct Writer {
    sinks: Sinks,
    syslog: Option<Syslog>,
    /// syslog was unreachable at start: lines go to stderr until it is back.
    fallback_stderr: bool,
    next_retry: Instant,
    dropped: Arc<AtomicU64>,
    dropped_total: Arc<AtomicU64>,
    reconfigure: Arc<Mutex<Option<Sinks>>>,
    /// Refusals whose line was lost (here or by a full queue).
    unsaid: Arc<Mutex<Tally>>,
    /// When this thread last wrote a refusal line, and whether it was one of
    /// its own (a summary of `unsaid`): the server paces the others.
    last_refusal_line: Option<(Instant, bool)>,
}

impl Writer {
    fn new(
        sinks: Sinks,
        dropped: Arc<AtomicU64>,
        dropped_total: Arc<AtomicU64>,
        reconfigure: Arc<Mutex<Option<Sinks>>>,
        unsaid: Arc<Mutex<Tally>>,
    ) -> Writer {
        let mut w = Writer {
            sinks,
            syslog: None,
            fallback_stderr: false,
            next_retry: Instant::now(),
            dropped,
            dropped_total,
            reconfigure,
            unsaid,
            last_refusal_line: None,
        };
        w.open_syslog(true);
        w
    }

    fn wants_syslog(&self) -> bool {
        // With stdio being the client, syslog is the only place lines may go.
        self.sinks.stdio_is_client || self.sinks.target != LogTarget::Stderr
    }

    fn wants_stderr(&self) -> bool {
        !self.sinks.stdio_is_client
            && (self.sinks.target != LogTarget::Syslog || self.fallback_stderr)
    }

    /// Connects to syslog; at start, failure means falling back to stderr.
    fn open_syslog(&mut self, at_start: bool) {
        self.syslog = None;
        if !self.wants_syslog() {
            return;
        }
        match connect_syslog(&self.sinks) {
            Ok(logger) => {
                self.syslog = Some(logger);
                if self.fallback_stderr {
                    self.fallback_stderr = false;
                    self.write_syslog(Level::Info, "syslog is reachable again");
                }
            }
            Err(why) => {
                self.next_retry = Instant::now() + RETRY_EVERY;
                if at_start && !self.sinks.stdio_is_client {
                    self.fallback_stderr = true;
                    write_stderr(
                        Level::Warn,
                        &format!(
                            "cannot reach syslog at {} ({why}); logging to stderr",
                            self.sinks.socket
                        ),
                    );
                }
            }
        }
    }

    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            // Wait for ever unless there is something to do later: syslog to
            // try again, or drops to report. An idle jamd makes no wake-ups.
            let msg = if self.has_timer_work() {
                rx.recv_timeout(RETRY_EVERY)
            } else {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            };
            self.apply_reconfigure();
            match msg {
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Timeout) => {
                    self.retry_syslog();
                    self.report_drops();
                    self.report_unsaid(false);
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Line(level, line) => {
                self.retry_syslog();
                self.report_drops();
                self.report_unsaid(false);
                if !self.write(level, &line) {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    self.dropped_total.fetch_add(1, Ordering::Relaxed);
                }
            }
            Msg::Refused(line, tally) => {
                self.retry_syslog();
                self.report_drops();
                self.write_refused(line, *tally);
            }
            Msg::Flush(ack) => {
                self.report_drops();
                // Flushing is for the end (or a fatal error): a summary a
                // little early beats one never logged.
                self.report_unsaid(true);
                let _ = ack.send(());
            }
            Msg::Reconfigured => {}
        }
    }

    fn has_timer_work(&self) -> bool {
        (self.wants_syslog() && self.syslog.is_none())
            || self.dropped.load(Ordering::Relaxed) > 0
            || !lock(&self.unsaid).is_empty()
    }

    fn apply_reconfigure(&mut self) {
        let new = match self.reconfigure.lock() {
            Ok(mut slot) => slot.take(),
            Err(_) => None,
        };
        if let Some(sinks) = new {
            if sinks != self.sinks {
                self.sinks = sinks;
                self.fallback_stderr = false;
                self.open_syslog(true);
            }
        }
    }

    fn retry_syslog(&mut self) {
        if self.wants_syslog() && self.syslog.is_none() && Instant::now() >= self.next_retry {
            self.open_syslog(false);
        }
    }

    fn report_drops(&mut self) {
        let n = self.dropped.swap(0, Ordering::Relaxed);
        if n > 0 {
            let line = format!("dropped {n} log line(s)");
            if !self.write(Level::Warn, &line) {
                // Nowhere to say it yet: keep the count for later.
                self.dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Writes a refusal line from the server. With refusals still unsaid,
    /// it becomes a summary of them and its own, so that no more lines come
    /// than the server paced; and within a second of a summary this thread
    /// added, it waits for the next one.
    fn write_refused(&mut self, line: Option<String>, tally: Tally) {
        let now = Instant::now();
        let too_soon = matches!(self.last_refusal_line,
            Some((t, true)) if now.saturating_duration_since(t) < REFUSALS_EVERY);
        if too_soon {
            lock(&self.unsaid).merge(&tally);
            return;
        }
        // Merged back, never assigned: a worker may add to it meanwhile.
        let mut unsaid = std::mem::take(&mut *lock(&self.unsaid));
        let (line, tally) = match line {
            Some(line) if unsaid.is_empty() => (line, tally),
            _ => {
                unsaid.merge(&tally);
                (unsaid.to_string(), unsaid)
            }
        };
        if self.write(Level::Warn, &line) {
            self.last_refusal_line = Some((now, false));
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
            lock(&self.unsaid).merge(&tally);
        }
    }

    /// Says the refusals whose lines were lost, a second or more after the
    /// last refusal line (`now_all`: whenever).
    fn report_unsaid(&mut self, now_all: bool) {
        let now = Instant::now();
        if !now_all
            && self
                .last_refusal_line
                .is_some_and(|(t, _)| now.saturating_duration_since(t) < REFUSALS_EVERY)
        {
            return;
        }
        let unsaid = std::mem::take(&mut *lock(&self.unsaid));
        if unsaid.is_empty() {
            return;
        }
        if self.write(Level::Warn, &unsaid.to_string()) {
            self.last_refusal_line = Some((now, true));
        } else {
            lock(&self.unsaid).merge(&unsaid);
        }
    }

    /// Writes a line to every sink; false if it reached none.
    fn write(&mut self, level: Level, line: &str) -> bool {
        let mut written = false;
        let to_stderr = self.wants_stderr();
        if self.wants_syslog() && self.syslog.is_some() {
            written |= self.write_syslog(level, line);
        }
        if to_stderr {
            written |= write_stderr(level, line);
        }
        written
    }

    fn write_syslog(&mut self, level: Level, line: &str) -> bool {
        let Some(logger) = self.syslog.as_mut() else {
            return false;
        };
        // What a send on the unix datagram socket can say:
        // - it went into the receiver's queue: delivered as far as any
        //   sender can know. A receiver that then closes with it unread
        //   (or a socket another process still held open when the receiver
        //   quit) loses it with no word back: no sender can tell.
        // - EAGAIN after the write timeout (the receiver's queue is full):
        //   a slow reader, kept; the line is dropped and counted.
        // - EINTR: a signal reached this thread while the send waited for
        //   room (a send with a timeout is never restarted, signal(7)): the
        //   reader is still there; sent again, a few times, then dropped
        //   and counted like a timeout.
        // - ECONNREFUSED (the receiver closed; the socket is disconnected),
        //   then ENOTCONN, or anything else (ENOBUFS): reconnect and
        //   resend once; if that fails (ENOENT: the file is gone;
        //   ECONNREFUSED: nobody bound it), the line goes to stderr with the
        //   notice, as do those after it until syslog answers.
        let result = send_through_signals(logger, level, line);
        match result {
            Ok(()) => true,
            Err(e) if is_timeout(&e) || is_interrupted(&e) => false,
            Err(e) => {
                // The reader is gone (socket removed, receiver restarted):
                // a restarted receiver is already back at the same path, so
                // connect again at once and resend; only if that fails too
                // do lines go to stderr until syslog answers (jamd(8), LOGGING).
                self.syslog = None;
                if let Ok(again) = connect_syslog(&self.sinks) {
                    self.syslog = Some(again);
                    if self.resend(level, line) {
                        return true;
                    }
                    self.syslog = None;
                }
                self.next_retry = Instant::now() + RETRY_EVERY;
                if !self.sinks.stdio_is_client && !self.fallback_stderr {
                    self.fallback_stderr = true;
                    write_stderr(
                        Level::Warn,
                        &format!(
                            "cannot reach syslog at {} ({e}); logging to stderr",
                            self.sinks.socket
                        ),
                    );
                }
                // Not written to stderr here when the target includes it:
                // write() does that.
                self.sinks.target == LogTarget::Syslog
                    && !self.sinks.stdio_is_client
                    && write_stderr(level, line)
            }
        }
    }

    /// One more try on a freshly connected syslog.
    fn resend(&mut self, level: Level, line: &str) -> bool {
        let Some(logger) = self.syslog.as_mut() else {
            return false;
        };
        send_through_signals(logger, level, line).is_ok()
    }
}

/// [`send_at`], sent again when a signal cut the send short, at most
/// [`SYSLOG_INTERRUPTED_TRIES`] times in all.
fn send_through_signals(
    logger: &mut Syslog,
    level: Level,
    line: &str,
) -> Result<(), syslog::Error> {
    let mut result = send_at(logger, level, line);
    for _ in 1..SYSLOG_INTERRUPTED_TRIES {
        match &result {
            Err(e) if is_interrupted(e) => result = send_at(logger, level, line),
            _ => break,
        }
    }
    result
}

/// Sends one line to syslog at the severity of `level`.
fn send_at(logger: &mut Syslog, level: Level, line: &str) -> Result<(), syslog::Error> {
    match level {
        Level::Error => logger.err(line),
        Level::Warn => logger.warning(line),
        Level::Info => logger.info(line),
        Level::Debug => logger.debug(line),
    }
}

/// What kind of I/O error a syslog error is, if it is one.
fn io_kind(e: &syslog::Error) -> Option<std::io::ErrorKind> {
    match e {
        syslog::Error::Io(io) | syslog::Error::Write(io) => Some(io.kind()),
        syslog::Error::Initialization(_) => None,
    }
}

fn is_timeout(e: &syslog::Error) -> bool {
    matches!(
        io_kind(e),
        Some(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
    )
}

fn is_interrupted(e: &syslog::Error) -> bool {
    io_kind(e) == Some(std::io::ErrorKind::Interrupted)
}

/// Writes one line to standard error. When that is the journal
/// (`JOURNAL_STREAM` names it, sd-daemon(3)) the line starts with the `<N>`
/// syslog priority journald reads, so `journalctl -p warning` works;
/// otherwise with `jamd: ` and the level (info is the unmarked level).
fn write_stderr(level: Level, line: &str) -> bool {
    let mut err = std::io::stderr().lock();
    if stderr_is_journal() {
        let priority = match level {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug => 7,
        };
        return writeln!(err, "<{priority}>{line}").is_ok();
    }
    let prefix = match level {
        Level::Error => "jamd: error: ",
        Level::Warn => "jamd: warning: ",
        Level::Info => "jamd: ",
        Level::Debug => "jamd: debug: ",
    };
    writeln!(err, "{prefix}{line}").is_ok()
}

/// Whether standard error is the stream `JOURNAL_STREAM` (`DEVICE:INODE`)
/// names; decided once, as neither changes while jamd runs.
pub fn stderr_is_journal() -> bool {
    static IS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IS.get_or_init(|| {
        let Some(named) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let named = named.to_string_lossy().into_owned();
        let Some((dev, ino)) = named.split_once(':') else {
            return false;
        };
        use std::os::fd::AsFd as _;
        use std::os::unix::fs::MetadataExt as _;
        let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
            return false;
        };
        let Ok(meta) = std::fs::File::from(fd).metadata() else {
            return false;
        };
        dev.parse::<u64>().ok() == Some(meta.dev()) && ino.parse::<u64>().ok() == Some(meta.ino())
    })
}

fn facility(f: Facility) -> syslog::Facility {
    use syslog::Facility as S;
    match f {
        Facility::Daemon => S::LOG_DAEMON,
        Facility::User => S::LOG_USER,
        Facility::Local0 => S::LOG_LOCAL0,
        Facility::Local1 => S::LOG_LOCAL1,
        Facility::Local2 => S::LOG_LOCAL2,
        Facility::Local3 => S::LOG_LOCAL3,
        Facility::Local4 => S::LOG_LOCAL4,
        Facility::Local5 => S::LOG_LOCAL5,
        Facility::Local6 => S::LOG_LOCAL6,
        Facility::Local7 => S::LOG_LOCAL7,
    }
}

fn connect_syslog(sinks: &Sinks) -> Result<Syslog, String> {
    let mut formatter = Rfc3164 {
        facility: facility(sinks.facility),
        hostname: None,
        pid: std::process::id(),
    };
    match &sinks.socket {
        SyslogSocket::Unix(path) => {
            // Connect by hand: the syslog crate's helper would fall back to a
            // stream socket, which can block forever on a stuck reader.
            let sock = UnixDatagram::unbound().map_err(|e| e.to_string())?;
            sock.connect(path).map_err(|e| e.to_string())?;
            sock.set_write_timeout(Some(SYSLOG_WRITE_TIMEOUT))
                .map_err(|e| e.to_string())?;
            Ok(syslog::Logger::new(LoggerBackend::Unix(sock), formatter))
        }
        SyslogSocket::Udp(collector) => {
            // Remote collectors want to know which host the line is from.
            formatter.hostname = hostname();
            // Looked up at each connect, not once in the configuration.
            let server = (collector.host(), collector.port().get())
                .to_socket_addrs()
                .map_err(|e| e.to_string())?
                .next()
                .ok_or_else(|| format!("{collector} has no address"))?;
            let local = if server.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let sock = UdpSocket::bind(local).map_err(|e| e.to_string())?;
            Ok(syslog::Logger::new(
                LoggerBackend::Udp(sock, server),
                formatter,
            ))
        }
    }
}

/// The host name from gethostname(2) (the `hostname` crate, already used by
/// syslog): /proc/sys/kernel/hostname is hidden under the shipped unit's
/// `ProcSubset=pid`.
fn hostname() -> Option<String> {
    hostname::get()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn config(target: LogTarget, socket: PathBuf) -> LogConfig {
        LogConfig {
            target,
            syslog_socket: SyslogSocket::Unix(socket),
            ..LogConfig::default()
        }
    }

    /// A syslog socket in a private directory, removed with it when the
    /// test ends (also by a panic).
    struct Sink {
        dir: PathBuf,
        path: PathBuf,
        sock: UnixDatagram,
    }

    impl Drop for Sink {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn temp_socket(name: &str) -> Sink {
        let dir = std::env::temp_dir().join(format!("jamd-log-test-{}-{name}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("log.sock");
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Sink { dir, path, sock }
    }

    /// Reads what the logger still has queued, so that it does not go on
    /// writing it to stderr once the socket is gone.
    fn drain(sink: &Sink, logger: &Logger) {
        let sock = sink.sock.try_clone().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while sock.recv(&mut buf).is_ok() {}
        });
        logger.flush(Duration::from_secs(20));
        let _ = reader.join();
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 2048];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn a_test_sink_leaves_nothing_in_the_temporary_directory() {
        let sink = temp_socket("cleanup");
        let dir = sink.dir.clone();
        assert!(sink.path.exists());
        drop(sink);
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }

    #[test]
    fn lines_reach_the_syslog_socket_with_ident_and_facility() {
        let sink = temp_socket("basic");
        let sock = &sink.sock;
        let logger = Logger::start(&config(LogTarget::Syslog, sink.path.clone()), false);
        logger.info("hello there");
        let line = recv(sock);
        // daemon (3) * 8 + info (6) = 30
        assert!(line.starts_with("<30>"), "{line}");
        assert!(
            line.contains(&format!("jamd[{}]: hello there", std::process::id())),
            "{line}"
        );
    }

    #[test]
    fn lines_reach_a_udp_collector_named_by_a_bracketed_ipv6_address() {
        let collector = UdpSocket::bind("[::1]:0").unwrap();
        collector
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let at = format!("udp://[::1]:{}", collector.local_addr().unwrap().port());
        let c = LogConfig {
            target: LogTarget::Syslog,
            syslog_socket: SyslogSocket::parse(&at).unwrap(),
            ..LogConfig::default()
        };
        let logger = Logger::start(&c, false);
        logger.info("over udp");
        let mut buf = [0u8; 2048];
        let n = collector.recv(&mut buf).unwrap();
        let line = String::from_utf8_lossy(&buf[..n]);
        assert!(line.ends_with("]: over udp"), "{line}");
    }

    #[test]
    fn the_day_of_month_is_padded_with_a_space_as_rfc_3164_writes_it() {
        let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        assert_eq!(rfc3164_stamp(at("2026-12-04T05:44:55Z")), "Dec  4 05:44:55");
        assert_eq!(rfc3164_stamp(at("2026-01-31T23:59:59Z")), "Jan 31 23:59:59");
        let mut line = Vec::new();
        let f = Rfc3164 {
            facility: syslog::Facility::LOG_LOCAL3,
            hostname: Some("timehost".into()),
            pid: 42,
        };
        f.format(&mut line, Severity::LOG_WARNING, "hello").unwrap();
        let line = String::from_utf8(line).unwrap();
        // local3 (19) * 8 + warning (4) = 156
        assert!(line.starts_with("<156>"), "{line}");
        assert!(line.ends_with(" timehost jamd[42]: hello"), "{line}");
        assert_eq!(
            line.len(),
            "<156>Mmm dd hh:mm:ss timehost jamd[42]: hello".len()
        );
    }

    #[test]
    fn levels_below_the_configured_one_are_not_logged() {
        let sink = temp_socket("levels");
        let mut c = config(LogTarget::Syslog, sink.path.clone());
        c.level = Level::Warn;
        let logger = Logger::start(&c, false);
        logger.info("not this");
        logger.warn("this");
        assert!(recv(&sink.sock).ends_with("this"));
        assert!(!logger.connections());
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_reports_later() {
        let sink = temp_socket("drops");
        let sock = &sink.sock;
        let logger = Logger::start(&config(LogTarget::Syslog, sink.path.clone()), false);
        // Nobody reads: the socket buffer and then the queue fill up, and the
        // caller must never block.
        let start = Instant::now();
        for i in 0..(QUEUE_LINES * 4) {
            logger.info(format!("line {i} {}", "x".repeat(200)));
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(logger.dropped() > 0);
        // Read everything: the drop count must be reported.
        let deadline = Instant::now() + Duration::from_secs(20);
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let mut reported = None;
        while Instant::now() < deadline && reported.is_none() {
            if let Ok(n) = sock.recv(&mut buf) {
                let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                reported = line
                    .split("dropped ")
                    .nth(1)
                    .filter(|rest| rest.contains(" log line(s)"))
                    .and_then(|rest| rest.split(' ').next()?.parse::<u64>().ok());
            }
        }
        let reported = reported.expect("a dropped N log line(s) line");
        // The total keeps what was reported (for jamd_log_lines_dropped_total).
        assert!(logger.dropped_total() >= reported);
        drain(&sink, &logger);
    }

    /// The refusals a refusal line counts: 1 for `refused ADDR: WHY`, the
    /// reasons' counts for a summary.
    fn refusals_in(line: &str, why: &str) -> u64 {
        let Some((_, rest)) = line.split_once("]: refused ") else {
            return 0;
        };
        match rest.split_once(" more connection(s): ") {
            Some((_, reasons)) => reasons
                .split(", ")
                .filter_map(|r| r.strip_suffix(why)?.trim().parse::<u64>().ok())
                .sum(),
            None => u64::from(rest.ends_with(&format!(": {why}"))),
        }
    }

    #[test]
    fn refusals_whose_lines_are_lost_are_said_later() {
        let sink = temp_socket("unsaid");
        let logger = Logger::start(&config(LogTarget::Syslog, sink.path.clone()), false);
        // Nobody reads: the socket and then the queue fill up.
        for i in 0..(QUEUE_LINES * 2) {
            logger.info(format!("line {i} {}", "x".repeat(200)));
        }
        // Refusal lines now are dropped by the full queue or by the stalled
        // socket; what they count must still reach the log.
        for i in 0..5 {
            logger.refused(
                Refusal::AccessDenied,
                format!("refused 192.0.2.{i}:4000: access denied"),
            );
        }
        let mut more = Tally::of(Refusal::RateLimited, 7);
        more.add(Refusal::AccessDenied, 2);
        logger.refused_more(more);
        assert!(logger.dropped() > 0);
        // The reader comes back: everything counted arrives, and no more.
        sink.sock
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut denied, mut limited) = (0, 0);
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline && (denied, limited) != (7, 7) {
            if let Ok(n) = sink.sock.recv(&mut buf) {
                let line = String::from_utf8_lossy(&buf[..n]);
                denied += refusals_in(&line, "access denied");
                limited += refusals_in(&line, "rate limited");
            }
        }
        assert_eq!((denied, limited), (7, 7));
        // Nothing counted twice.
        for _ in 0..5 {
            if let Ok(n) = sink.sock.recv(&mut buf) {
                let line = String::from_utf8_lossy(&buf[..n]);
                assert_eq!(refusals_in(&line, "access denied"), 0, "{line}");
                assert_eq!(refusals_in(&line, "rate limited"), 0, "{line}");
            }
        }
        drain(&sink, &logger);
    }

    #[test]
    fn a_burst_of_lines_arrives_whole_and_in_order() {
        let sink = temp_socket("burst");
        let logger = Logger::start(&config(LogTarget::Syslog, sink.path.clone()), false);
        let sock = sink.sock.try_clone().unwrap();
        let reader = thread::spawn(move || (0..2000).map(|_| recv(&sock)).collect::<Vec<_>>());
        // Three bursts with pauses between them: lines queued faster than
        // they are written, and a logging thread that goes back to waiting.
        for burst in 0..3 {
            let lines = if burst == 2 { 1000 } else { 500 };
            for i in 0..lines {
                logger.info(format!("burst {burst} line {i}"));
            }
            thread::sleep(Duration::from_millis(20));
        }
        let got = reader.join().unwrap();
        let want = (0..3).flat_map(|b| (0..if b == 2 { 1000 } else { 500 }).map(move |i| (b, i)));
        for (line, (b, i)) in got.iter().zip(want) {
            assert!(line.ends_with(&format!(": burst {b} line {i}")), "{line}");
        }
        assert_eq!(logger.dropped(), 0);
        assert_eq!(logger.dropped_total(), 0);
    }
}
