//! One client connection: its socket, its protocol session and the reply bytes
//! the socket has not taken yet.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::admission::Ticket;
use crate::clock::{Clock, ClockCache};
pub use crate::protocol::CloseReason;
use crate::protocol::{write_time_reply, ErrorReply, Reply, Session};

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

/// Where a connection is in its life.
///
/// SPEC 10: a connection from a trusted balancer starts in a state of its
/// own, awaiting its PROXY header (with the time it started, for
/// `header_timeout`), and moves to `Serving` once the header is read and
/// the client it names is admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Answering requests.
    Serving,
    /// To end for `reason` once the pending replies are written; since
    /// `since` (a connection that takes too long is closed anyway).
    Closing {
        /// Why it ends.
        reason: CloseReason,
        /// When it began to end.
        since: Instant,
    },
}

/// A client connection. The worker drives it; it reads, asks the protocol
/// session what to do, and writes.
pub struct Conn {
    stream: TcpStream,
    /// The client's address.
    peer: SocketAddr,
    /// The client's admission: its slots come back when the connection is
    /// dropped, however that happens.
    ticket: Ticket,
    session: Session,
    state: State,
    /// Reply bytes the socket did not take yet (usually empty: no allocation).
    pending: Vec<u8>,
    /// Lines answered (TIME and unknown commands).
    requests: u64,
    /// When it was accepted.
    opened: Instant,
    /// When the last complete line arrived (or the connection opened).
    last_line: Instant,
    /// Input followed QUIT/too-long: close gently so the client sees replies.
    unread_input: bool,
    /// Whether WRITABLE interest is registered.
    wants_write: bool,
    /// The poller reported the peer's FIN (or an error) already: a short
    /// read no longer proves that nothing more is coming, so read on to EOF.
    peer_closed: bool,
}

impl Conn {
    /// A freshly accepted, admitted connection.
    pub(crate) fn new(
        stream: TcpStream,
        peer: SocketAddr,
        ticket: Ticket,
        max_line_bytes: usize,
    ) -> Conn {
        let now = Instant::now();
        Conn {
            stream,
            peer,
            ticket,
            session: Session::new(max_line_bytes),
            state: State::Serving,
            pending: Vec::new(),
            requests: 0,
            opened: now,
            last_line: now,
            unread_input: false,
            wants_write: false,
            peer_closed: false,
        }
    }

    /// Starts watching the socket for input.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.stream, token, Interest::READABLE)
    }

    /// Watches for the socket to take more bytes, if replies are waiting for
    /// it and that is not watched already.
    pub fn watch_writable(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        if self.pending.is_empty() || self.wants_write {
            return Ok(());
        }
        self.wants_write = true;
        registry.reregister(
            &mut self.stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    /// The poller reported the peer's FIN or an error.
    pub fn peer_closed(&mut self) {
        self.peer_closed = true;
    }

    /// The client's address.
    pub fn peer(&self) -> &SocketAddr {
        &self.peer
    }

    /// The client's admission ticket.
    pub(crate) fn ticket_mut(&mut self) -> &mut Ticket {
        &mut self.ticket
    }

    /// Lines answered so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// When it was accepted.
    pub fn opened(&self) -> Instant {
        self.opened
    }

    /// When the last complete line arrived (or the connection opened).
    pub fn last_line(&self) -> Instant {
        self.last_line
    }

    /// Why and since when the connection is ending, if it is.
    pub fn closing(&self) -> Option<(CloseReason, Instant)> {
        match self.state {
            State::Closing { reason, since } => Some((reason, since)),
            State::Serving => None,
        }
    }

    fn closing_reason(&self) -> Option<CloseReason> {
        self.closing().map(|(reason, _)| reason)
    }

    /// Applies a reloaded line limit.
    pub fn set_max_line_bytes(&mut self, n: usize) {
        self.session.set_max_line_bytes(n);
    }

    /// Ends the connection for `reason` (idle, shutdown) on the server's
    /// own initiative; the client is told first when the protocol says so.
    pub fn end(&mut self, reason: CloseReason, s: &mut Scratch<'_>) -> Next {
        if self.state == State::Serving {
            if let Some(reply) = reason.farewell() {
                self.pending.extend_from_slice(reply.line());
            }
            self.mark_closing(reason);
        }
        self.drive(s)
    }

    fn mark_closing(&mut self, reason: CloseReason) {
        self.state = State::Closing {
            reason,
            since: Instant::now(),
        };
    }

    /// Writes what is pending, then reads and answers requests until the
    /// socket has no more input, the connection ends, or its turn is over.
    pub fn drive(&mut self, s: &mut Scratch<'_>) -> Next {
        if !self.flush_pending() {
            return self.blocked_or_error();
        }
        for _ in 0..READS_PER_TURN {
            if let Some(reason) = self.closing_reason() {
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
            if n < s.read.len() && self.state == State::Serving && !self.peer_closed {
                // A short read drained the socket; with edge-triggered polling
                // any later byte (or FIN) brings a new event, so a second read
                // would only return EAGAIN: one syscall per request saved.
                // Not so for a FIN that came with the data: its event is the
                // one being handled, so no other follows (`peer_closed`).
                return Next::Wait;
            }
        }
        match self.closing_reason() {
            Some(reason) => Next::Close(reason),
            None => Next::Again,
        }
    }

    /// Runs the protocol over `s.read[..n]`, appending the replies it
    /// decides on to `s.out`.
    fn answer(&mut self, n: usize, s: &mut Scratch<'_>) {
        let mut input = &s.read[..n];
        let mut saw_line = false;
        while let Some(action) = self.session.next_action(&mut input) {
            saw_line = true;
            match action.reply() {
                Some(Reply::Time) => write_time_reply(s.out, s.cache.now(s.clock)),
                Some(Reply::Error(e)) => s.out.extend_from_slice(e.line()),
                None => {}
            }
            if let Some(reason) = action.close() {
                self.mark_closing(reason);
            }
            if action.is_answered() {
                // SPEC 9: the `requests{command}` counter goes here (the
                // worker's metrics shard lent through `Scratch`).
                self.requests += 1;
            }
        }
        if saw_line {
            self.last_line = Instant::now();
        }
        if self.state != State::Serving && !input.is_empty() {
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
        match self.closing_reason() {
            Some(CloseReason::Error) => Next::Close(CloseReason::Error),
            _ => Next::Wait,
        }
    }

    /// Closes the socket. When the client may still be sending (it did not
    /// just QUIT at the end of its input), the write side is shut first and
    /// unread input is drained, so that the kernel ends with FIN rather than
    /// a reset that could destroy replies the client has not read yet.
    ///
    /// The ticket goes with the connection: its slots come back here.
    pub fn close(self, reason: CloseReason) {
        let Conn {
            mut stream,
            ticket,
            unread_input,
            ..
        } = self;
        drop(ticket);
        let gentle = reason != CloseReason::Quit || unread_input;
        if gentle && !matches!(reason, CloseReason::Error | CloseReason::Eof) {
            close_gently(&mut stream);
        }
    }
}

/// Tells a client it is not served (when there is something to tell) and
/// closes its socket gently. One try at writing: a client that does not
/// take a line this short is not waited for.
pub fn refuse(mut stream: TcpStream, reply: Option<ErrorReply>) {
    if let Some(reply) = reply {
        let _ = stream.write(reply.line());
    }
    close_gently(&mut stream);
}

/// Shuts the write side and drains what the client sent, so that the kernel
/// ends with FIN rather than a reset that could destroy replies the client
/// has not read yet.
fn close_gently(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 1024];
    for _ in 0..64 {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}
