//! `--inetd` over a byte stream that is not a TCP socket (SPEC 12): a unix
//! socketpair (`socat … EXEC:"jamd --inetd"`), two pipes
//! (`printf 'TIME\r\n' | jamd --inetd`), a terminal.
//!
//! Such a stream is one client and has no address, so it does not go through
//! the server's workers (built around TCP sockets, admission by source
//! address, listeners): it is served here, in the main thread, with the same
//! protocol session, clock, limits and log lines. A TCP socket on standard
//! input still goes to the server ([`crate::listen::from_inetd`]).

use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::pipe::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::clock::{Clock, ClockCache};
use crate::config::Config;
use crate::daemon::signals::Signals;
use crate::log::Logger;
use crate::protocol::{write_time_reply, Action, End, ErrorReply, Reply, Session};
use crate::server::CloseReason;

const INPUT: Token = Token(0);
const OUTPUT: Token = Token(1);
const SIGNALS: Token = Token(2);

/// Standard input and output as one client's byte stream.
pub struct ByteStream {
    input: Receiver,
    output: Sender,
    /// What it is, for the log: `a unix socket`, `a pipe`, ….
    what: &'static str,
}

impl ByteStream {
    /// Takes standard input and output (duplicated; the originals stay) as
    /// a non-blocking stream. `what` names standard input's kind for the log.
    pub fn from_stdio(what: &'static str) -> io::Result<ByteStream> {
        let input: OwnedFd = io::stdin().as_fd().try_clone_to_owned()?;
        let output: OwnedFd = io::stdout().as_fd().try_clone_to_owned()?;
        let input = Receiver::from(input);
        let output = Sender::from(output);
        input.set_nonblocking(true)?;
        output.set_nonblocking(true)?;
        Ok(ByteStream {
            input,
            output,
            what,
        })
    }

    /// What the stream is, as the log shows it.
    pub fn what(&self) -> &'static str {
        self.what
    }
}

impl Drop for ByteStream {
    fn drop(&mut self) {
        // The descriptions are shared with whoever started jamd (a shell's
        // terminal, socat): leave them blocking, as they were found.
        let _ = self.input.set_nonblocking(false);
        let _ = self.output.set_nonblocking(false);
    }
}

/// What standard input is, when it is not a TCP socket jamd could serve
/// through its workers; `None` for a file, which is no stream.
pub fn describe_stdin() -> io::Result<Option<&'static str>> {
    let kind = std::fs::File::from(io::stdin().as_fd().try_clone_to_owned()?)
        .metadata()?
        .file_type();
    use std::os::unix::fs::FileTypeExt as _;
    Ok(if kind.is_socket() {
        Some("a unix socket")
    } else if kind.is_fifo() {
        Some("a pipe")
    } else if kind.is_char_device() {
        Some("a terminal or device")
    } else {
        None
    })
}

/// Whether standard error is the same open file as standard input or
/// output (inetd hands the client socket to all three): then nothing may be
/// printed there.
pub fn stderr_is_client() -> bool {
    let id = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .and_then(|fd| std::fs::File::from(fd).metadata())
            .map(|m| (m.dev(), m.ino()))
            .ok()
    };
    let err = id(io::stderr().as_fd());
    err.is_some() && (err == id(io::stdin().as_fd()) || err == id(io::stdout().as_fd()))
}

/// Serves one client on `stream` until it quits, closes, idles out, sends a
/// line too long, or SIGTERM's grace period ends. Returns when it is done;
/// an error only for a failure to set up the poller.
pub fn serve(
    mut stream: ByteStream,
    config: &Config,
    log: &Logger,
    signals: &Signals,
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut stream.input, INPUT, Interest::READABLE)?;
    let signal_fd = signals.fd();
    poll.registry()
        .register(&mut SourceFd(&signal_fd), SIGNALS, Interest::READABLE)?;

    let clock = config.time.clock();
    let idle = Duration::from_secs(config.server.idle_timeout);
    let what = stream.what;
    if log.connections() {
        log.info(format!("connection from {what}"));
    }
    let opened = Instant::now();
    let mut c = Client {
        session: Session::new(config.server.max_line_bytes),
        cache: ClockCache::new(),
        pending: Vec::new(),
        requests: 0,
        last_line: opened,
        closing: None,
        input_done: false,
    };
    let mut shutdown_deadline: Option<Instant> = None;
    let mut watching_output = false;
    let mut events = Events::with_capacity(8);
    let mut buf = vec![0u8; 4096];

    let reason = loop {
        // Write what is waiting; a stream that does not take it is watched.
        match c.flush(&mut stream.output) {
            Ok(true) => {}
            Ok(false) if !watching_output => {
                poll.registry()
                    .register(&mut stream.output, OUTPUT, Interest::WRITABLE)?;
                watching_output = true;
            }
            Ok(false) => {}
            Err(_) => break CloseReason::Error,
        }
        if c.pending.is_empty() {
            if let Some(reason) = c.closing {
                break reason;
            }
        }
        let now = Instant::now();
        let mut deadline = shutdown_deadline;
        if !idle.is_zero() && c.closing.is_none() {
            let at = c.last_line + idle;
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        let timeout = deadline.map(|d| d.saturating_duration_since(now));
        poll.poll(&mut events, timeout)?;
        let mut readable = false;
        for event in events.iter() {
            match event.token() {
                INPUT => readable = true,
                SIGNALS => {
                    let arrived = signals.take();
                    if arrived.stop && shutdown_deadline.is_none() {
                        log.info("shutting down: 1 connection(s) open");
                        shutdown_deadline = Some(
                            Instant::now() + Duration::from_secs(config.server.shutdown_timeout),
                        );
                    }
                    if arrived.reload {
                        log.info("SIGHUP ignored: one --inetd connection keeps its configuration");
                    }
                }
                _ => {}
            }
        }
        // Requests that arrived are read before any timer is believed: a
        // jamd that was frozen answers them instead of idling them out.
        if readable || events.is_empty() {
            c.read_all(&mut stream.input, &mut buf, &clock);
        }
        if c.closing.is_some() {
            continue;
        }
        if c.input_done {
            c.closing = Some(CloseReason::Eof);
            continue;
        }
        let now = Instant::now();
        if shutdown_deadline.is_some_and(|d| now >= d) {
            c.farewell(CloseReason::Shutdown);
        } else if !idle.is_zero() && now >= c.last_line + idle {
            c.farewell(CloseReason::Idle);
        }
    };
    // A last try for a farewell line the stream would not take at once.
    let _ = c.flush(&mut stream.output);
    if log.connections() {
        log.info(format!(
            "closed {what} requests={} duration_ms={} reason={reason}",
            c.requests,
            opened.elapsed().as_millis()
        ));
    }
    drop(stream);
    log.info("stopped");
    Ok(())
}

/// One client's protocol state.
struct Client {
    session: Session,
    cache: ClockCache,
    pending: Vec<u8>,
    requests: u64,
    last_line: Instant,
    closing: Option<CloseReason>,
    input_done: bool,
}

impl Client {
    /// Reads until the stream has nothing more for now, answering each line.
    fn read_all(&mut self, input: &mut Receiver, buf: &mut [u8], clock: &Arc<Clock>) {
        while self.closing.is_none() && !self.input_done {
            match input.read(buf) {
                Ok(0) => self.input_done = true,
                Ok(n) => {
                    let mut bytes = &buf[..n];
                    while let Some(action) = self.session.next_action(&mut bytes) {
                        self.answer(action, clock);
                        if action.closes() {
                            break;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => self.closing = Some(CloseReason::Error),
            }
        }
    }

    fn answer(&mut self, action: Action, clock: &Arc<Clock>) {
        self.last_line = Instant::now();
        if action.is_answered() {
            self.requests += 1;
        }
        match action.reply() {
            Some(Reply::Time) => write_time_reply(&mut self.pending, self.cache.now(clock)),
            Some(Reply::Error(e)) => self.pending.extend_from_slice(e.line()),
            None => {}
        }
        if let Some(end) = action.close() {
            self.closing = Some(match end {
                End::Quit => CloseReason::Quit,
                End::TooLong => CloseReason::TooLong,
            });
        }
    }

    /// Ends the connection on jamd's side, telling the client why.
    fn farewell(&mut self, reason: CloseReason) {
        let line = match reason {
            CloseReason::Idle => ErrorReply::IdleTimeout,
            _ => ErrorReply::ShuttingDown,
        };
        self.pending.extend_from_slice(line.line());
        self.closing = Some(reason);
    }

    /// Writes pending bytes; true when none are left.
    fn flush(&mut self, output: &mut Sender) -> io::Result<bool> {
        while !self.pending.is_empty() {
            match output.write(&self.pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}
