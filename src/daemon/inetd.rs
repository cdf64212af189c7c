//! `--inetd` over a byte stream that is not a TCP socket (jamd(8)): a unix
//! socketpair (`socat … EXEC:"jamd --inetd"`), two pipes
//! (`printf 'TIME\r\n' | jamd --inetd`), a terminal.
//!
//! Such a stream is one client and has no address, so it does not go through
//! the server's workers (built around TCP sockets, admission by source
//! address, listeners): its loop is here, in the main thread, and the client
//! is a `server::conn::Conn` as a worker's are: the same session, replies,
//! farewells, close and log lines. A TCP or UDP socket on standard input
//! goes to the server's workers instead ([`from_stdin`] tells which).

use std::io;
use std::os::fd::{AsFd, AsRawFd as _, OwnedFd};
use std::os::unix::fs::MetadataExt as _;
use std::time::Instant;

use mio::unix::pipe::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use socket2::{Domain, SockRef, Type};

use super::signals::Signals;
use crate::config::Config;
use crate::listen::{classify, Inherited, ListenError, Listening, Socket, Sockets};
use crate::listener::Protocol;
use crate::log::Logger;
use crate::metrics::Metrics;
use crate::outcome::CloseReason;
use crate::server::admission::Admission;
use crate::server::conn::{Buffers, Conn, Next, Peer, Stream, CLOSING_LIMIT};
use crate::server::{shutting_down_line, Runtime};
use crate::sys::{self, FdKind};

/// What `--inetd` found on standard input.
pub enum Inetd {
    /// A TCP socket: a connection (`nowait`) or a listener (`wait`), served
    /// by the workers.
    Sockets(Sockets),
    /// Any other byte stream (a unix socketpair, pipes, a terminal), served
    /// by [`serve`].
    Stream(ByteStream),
}

/// `--inetd`: standard input is the connection (`nowait`), a listening socket
/// (`wait`), or any other byte stream with standard output as its other half
/// (jamd(8), INETD). For a TCP socket, standard I/O is pointed at /dev/null
/// afterwards so that nothing jamd prints can reach the client and closing
/// the connection really closes it.
///
/// `protocol` is what `--protocol` names: a UDP socket on standard input
/// (`dgram udp wait`) serves it in datagrams, which JAM has none of.
pub fn from_stdin(protocol: Protocol) -> Result<Inetd, ListenError> {
    let bad = |why: String| ListenError::Inherited(format!("--inetd: {why}"));
    if sys::kind(0) == FdKind::Closed {
        return Err(bad("standard input is closed: there is no client".into()));
    }
    if sys::kind(0) == FdKind::Socket && stdin_is_tcp() {
        let owned = sys::dup_stdin().map_err(|e| bad(format!("cannot use standard input: {e}")))?;
        let sockets = match classify(owned) {
            Ok(Inherited::Listener(l)) => Sockets::Listeners(vec![Listening {
                protocol,
                socket: Socket::Stream(l),
            }]),
            Ok(Inherited::Connection(c)) => Sockets::Connection(c, protocol),
            Ok(Inherited::Datagram(_)) if protocol == Protocol::Jam => {
                return Err(bad(
                    "standard input is a UDP socket, and JAM is served over TCP only: give --protocol daytime or rfc868 for a dgram entry".into(),
                ))
            }
            Ok(Inherited::Datagram(u)) => Sockets::Datagrams(Listening {
                protocol,
                socket: Socket::Datagram(u),
            }),
            Err(why) => return Err(bad(format!("standard input {why}"))),
        };
        sys::detach_stdio_sockets().map_err(|e| bad(format!("cannot detach stdio: {e}")))?;
        return Ok(Inetd::Sockets(sockets));
    }
    let what = match describe_stdin() {
        Ok(Some(what)) => what,
        Ok(None) => {
            return Err(bad(
                "standard input is a file, not a connection (run jamd from inetd, socat or a pipe, or without --inetd)".into(),
            ))
        }
        Err(e) => return Err(bad(format!("cannot use standard input: {e}"))),
    };
    if what == "a unix socket" && !stdin_is_stream_socket() {
        return Err(bad(
            "standard input is a datagram socket, not a byte stream".into(),
        ));
    }
    ByteStream::from_stdio(what)
        .map(Inetd::Stream)
        .map_err(|e| bad(format!("cannot use standard input and output: {e}")))
}

/// Whether standard input is a TCP/IP socket (the workers serve those).
fn stdin_is_tcp() -> bool {
    let stdin = std::io::stdin();
    let sock = SockRef::from(&stdin);
    matches!(sock.domain(), Ok(d) if d == Domain::IPV4 || d == Domain::IPV6)
}

/// Whether standard input is a stream socket (not datagrams).
fn stdin_is_stream_socket() -> bool {
    let stdin = std::io::stdin();
    let sock = SockRef::from(&stdin);
    matches!(sock.r#type(), Ok(t) if t == Type::STREAM)
}

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

/// Serves one client on `stream`, in `protocol` (`--protocol`), until it quits, closes, idles out, sends a
/// line too long, or SIGTERM's grace period ends. Returns when it is done;
/// an error only for a failure to set up the poller.
///
/// The client is a [`Conn`] as a worker's are (the same session, replies,
/// farewells, gentle close and log lines); only the loop around it is this
/// one's: two descriptors and the signals, on the main thread.
pub fn serve(
    mut stream: ByteStream,
    protocol: Protocol,
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
    let output_fd = stream.output.as_raw_fd();

    let rt = Runtime::new(config.clone());
    // The one client holds a slot as a worker's client does (there is no
    // address to check or count it by).
    let admission = Admission::new(&rt);
    let ticket = admission
        .enter(&rt)
        .map_err(|why| io::Error::other(why.words()))?;
    let idle = config.server.idle_timeout;
    let max_line = config.server.max_line_bytes;
    let what = stream.what;
    let mut conn = Conn::new(stream, Peer::Stdio(what), ticket, protocol, max_line);
    if log.connections() {
        log.info(conn.connection_line());
    }
    let mut buffers = Buffers::new();
    // Counted as a worker counts; nothing serves them (no endpoint).
    let metrics = Metrics::new(1);
    let mut shutdown_deadline: Option<Instant> = None;
    let mut watching_output = false;
    let mut events = Events::with_capacity(8);
    let mut next = conn.open(&mut buffers.lend(&rt, metrics.worker(0)));

    let reason = loop {
        match next {
            Next::Close(reason) => break reason,
            Next::Again => {
                next = conn.drive(&mut buffers.lend(&rt, metrics.worker(0)));
                continue;
            }
            Next::Wait => {}
            // Only a balancer's connection has a PROXY header.
            Next::Header(_) | Next::BadHeader(_) | Next::Vanished => break CloseReason::Error,
        }
        if conn.has_pending() && !watching_output {
            // The stream did not take every byte: watch for it to take more.
            poll.registry()
                .register(&mut SourceFd(&output_fd), OUTPUT, Interest::WRITABLE)?;
            watching_output = true;
        }
        let now = Instant::now();
        let closing = conn.closing(CLOSING_LIMIT);
        let mut deadline = shutdown_deadline.filter(|_| closing.is_none());
        if let Some((_, by)) = closing {
            deadline = Some(by);
        } else if let Some(idle) = idle {
            let at = conn.last_line() + idle;
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        poll.poll(
            &mut events,
            deadline.map(|d| d.saturating_duration_since(now)),
        )?;
        for event in events.iter() {
            match event.token() {
                INPUT if event.is_read_closed() || event.is_error() => conn.peer_closed(),
                SIGNALS => {
                    let arrived = signals.take();
                    if arrived.stop && shutdown_deadline.is_none() {
                        log.info(shutting_down_line(1));
                        shutdown_deadline = Some(Instant::now() + config.server.shutdown_timeout);
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
        next = conn.drive(&mut buffers.lend(&rt, metrics.worker(0)));
        if next != Next::Wait {
            continue;
        }
        let now = Instant::now();
        match conn.closing(CLOSING_LIMIT) {
            // It could not take its last bytes in time.
            Some((reason, by)) if now >= by => break reason,
            Some(_) => {}
            None if shutdown_deadline.is_some_and(|d| now >= d) => {
                next = conn.end(
                    CloseReason::Shutdown,
                    &mut buffers.lend(&rt, metrics.worker(0)),
                )
            }
            None if idle.is_some_and(|idle| now >= conn.last_line() + idle) => {
                next = conn.end(CloseReason::Idle, &mut buffers.lend(&rt, metrics.worker(0)))
            }
            None => {}
        }
    };
    if log.connections() {
        log.info(conn.closed_line(reason));
    }
    conn.close(reason);
    log.info("stopped");
    Ok(())
}

impl io::Read for ByteStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl io::Write for ByteStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.output.flush()
    }
}

impl Stream for ByteStream {
    fn shut_write(&mut self) {
        // Standard output is closed when jamd exits, right after: nothing
        // to shut before (a pipe cannot be shut, and a socketpair's peer
        // sees the end of the stream then).
    }
}
