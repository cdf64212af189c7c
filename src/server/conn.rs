//! One client connection: its socket, its protocol session and the reply bytes
//! the socket has not taken yet.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;

use crate::clock::{Clock, ClockCache};
use crate::protocol::{write_time_reply, Action, ErrorReply, Session};

/// Why a connection ended, as the `closed` log line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent QUIT.
    Quit,
    /// The client closed its side.
    Eof,
    /// No complete line within the idle timeout.
    Idle,
    /// A line longer than max_line_bytes.
    TooLong,
    /// A socket error (reset, broken pipe, …).
    Error,
    /// The shutdown grace period ended.
    Shutdown,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::Quit => "quit",
            CloseReason::Eof => "eof",
            CloseReason::Idle => "idle",
            CloseReason::TooLong => "too_long",
            CloseReason::Error => "error",
            CloseReason::Shutdown => "shutdown",
        })
    }
}

/// Reads one connection may do per turn before others get theirs.
const READS_PER_TURN: usize = 8;

/// What the worker should do with a connection after driving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait for the socket to become readable or writable.
    Wait,
    /// There may be more input: drive it again after the others.
    Again,
    /// Close it.
    Close(CloseReason),
}

/// Buffers a worker lends to the connection it is driving.
pub struct Scratch<'a> {
    /// Where socket reads land.
    pub read: &'a mut [u8],
    /// Where replies are assembled before one write.
    pub out: &'a mut Vec<u8>,
    /// The worker's cached rendering of the time.
    pub cache: &'a mut ClockCache,
    /// The clock of the current configuration.
    pub clock: &'a Arc<Clock>,
}

/// A client connection.
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    session: Session,
    /// Reply bytes the socket did not take yet (usually empty: no allocation).
    pending: Vec<u8>,
    /// Lines answered (TIME and unknown commands).
    pub requests: u64,
    /// When it was accepted.
    pub opened: Instant,
    /// When the last complete line arrived (or the connection opened).
    pub last_line: Instant,
    /// Set once the connection is to end; it ends when `pending` is written.
    pub closing: Option<CloseReason>,
    /// When `closing` was set.
    pub closing_since: Option<Instant>,
    /// Input followed QUIT/too-long: close gently so the client sees replies.
    pub unread_input: bool,
    /// Whether WRITABLE interest is registered.
    pub wants_write: bool,
    /// Whether the per-source table counts this connection.
    pub source_counted: bool,
    /// The poller reported the client's FIN or an error. From then on a short
    /// read proves nothing: the EOF may be queued behind the data, and no
    /// further edge will announce it, so reads go on until EOF or EAGAIN.
    pub peer_closed: bool,
}

impl Conn {
    /// A freshly accepted connection.
    pub fn new(stream: TcpStream, peer: SocketAddr, max_line_bytes: usize) -> Conn {
        let now = Instant::now();
        Conn {
            stream,
            peer,
            session: Session::new(max_line_bytes),
            pending: Vec::new(),
            requests: 0,
            opened: now,
            last_line: now,
            closing: None,
            closing_since: None,
            unread_input: false,
            wants_write: false,
            source_counted: false,
            peer_closed: false,
        }
    }

    /// Applies a reloaded line limit.
    pub fn set_max_line_bytes(&mut self, n: usize) {
        self.session.set_max_line_bytes(n);
    }

    /// Whether reply bytes are waiting for the socket.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Ends the connection with an error line (idle, shutdown), written first.
    pub fn end_with(
        &mut self,
        reply: ErrorReply,
        reason: CloseReason,
        s: &mut Scratch<'_>,
    ) -> Next {
        if self.closing.is_none() {
            self.pending.extend_from_slice(reply.line());
            self.mark_closing(reason);
        }
        self.drive(s)
    }

    fn mark_closing(&mut self, reason: CloseReason) {
        self.closing = Some(reason);
        self.closing_since = Some(Instant::now());
    }

    /// Writes what is pending, then reads and answers requests until the
    /// socket has no more input, the connection ends, or its turn is over.
    pub fn drive(&mut self, s: &mut Scratch<'_>) -> Next {
        if !self.flush_pending() {
            return self.blocked_or_error();
        }
        for _ in 0..READS_PER_TURN {
            if let Some(reason) = self.closing {
                return Next::Close(reason);
            }
            let n = match self.stream.read(s.read) {
                Ok(0) => return Next::Close(CloseReason::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Next::Close(CloseReason::Error),
            };
            s.out.clear();
            self.answer(n, s);
            if !s.out.is_empty() && !self.write_out(s.out) {
                return self.blocked_or_error();
            }
            if n < s.read.len() && self.closing.is_none() && !self.peer_closed {
                // A short read drained the socket; with edge-triggered polling
                // any later byte (or FIN) brings a new event, so a second read
                // would only return EAGAIN: one syscall per request saved.
                // Not so when the event that woke us already carried the FIN
                // (data and FIN arrived together): see `peer_closed`.
                return Next::Wait;
            }
        }
        match self.closing {
            Some(reason) => Next::Close(reason),
            None => Next::Again,
        }
    }

    /// Runs the protocol over `s.read[..n]`, appending replies to `s.out`.
    fn answer(&mut self, n: usize, s: &mut Scratch<'_>) {
        let mut input = &s.read[..n];
        let mut saw_line = false;
        while let Some(action) = self.session.next_action(&mut input) {
            saw_line = true;
            match action {
                Action::Time => write_time_reply(s.out, s.cache.now(s.clock)),
                Action::Unknown => s.out.extend_from_slice(ErrorReply::UnknownCommand.line()),
                Action::Empty => {}
                Action::Quit => self.mark_closing(CloseReason::Quit),
                Action::TooLong => {
                    s.out.extend_from_slice(ErrorReply::LineTooLong.line());
                    self.mark_closing(CloseReason::TooLong);
                }
            }
            if action.is_answered() {
                self.requests += 1;
            }
        }
        if saw_line {
            self.last_line = Instant::now();
        }
        if self.closing.is_some() && !input.is_empty() {
            self.unread_input = true;
        }
    }

    /// Writes `out`; what the socket does not take is kept. False on error or
    /// when the socket is full.
    fn write_out(&mut self, out: &[u8]) -> bool {
        let mut done = 0;
        while done < out.len() {
            match self.stream.write(&out[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.mark_closing(CloseReason::Error);
                    self.pending.clear();
                    return false;
                }
            }
        }
        if done < out.len() {
            self.pending.extend_from_slice(&out[done..]);
            return false;
        }
        true
    }

    /// Writes pending bytes; true when none are left.
    fn flush_pending(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let pending = std::mem::take(&mut self.pending);
        let ok = self.write_out(&pending);
        if ok {
            // Give the memory back: idle connections should cost nothing.
            self.pending = Vec::new();
        }
        ok
    }

    fn blocked_or_error(&self) -> Next {
        match self.closing {
            Some(CloseReason::Error) => Next::Close(CloseReason::Error),
            _ => Next::Wait,
        }
    }

    /// Closes the socket. When the client may still be sending (it did not
    /// just QUIT at the end of its input), the write side is shut first and
    /// unread input is drained, so that the kernel ends with FIN rather than
    /// a reset that could destroy replies the client has not read yet.
    pub fn close(mut self, reason: CloseReason) {
        let gentle = reason != CloseReason::Quit || self.unread_input;
        if gentle && !matches!(reason, CloseReason::Error | CloseReason::Eof) {
            let _ = self.stream.shutdown(Shutdown::Write);
            let mut sink = [0u8; 1024];
            for _ in 0..64 {
                match self.stream.read(&mut sink) {
                    Ok(n) if n > 0 => continue,
                    _ => break,
                }
            }
        }
    }
}
