//! One client connection: its socket, its protocol session and the reply bytes
//! the socket has not taken yet; for a connection from a trusted load
//! balancer, first the PROXY protocol header that names the client.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::admission::Ticket;
use crate::clock::{Clock, ClockCache};
use crate::metrics::{Command, Shard};
pub use crate::protocol::CloseReason;
use crate::protocol::{write_time_reply, Action, ErrorReply, Reply, Session};
use crate::proxy::{self, Header, Parse};

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
    /// A trusted balancer's PROXY header is complete: admit the client it
    /// names (or serve the balancer itself), then drive the connection
    /// again for the bytes that followed the header.
    Header(Header),
    /// A trusted balancer's connection is to be closed without a reply,
    /// counted and logged (SPEC 10).
    BadHeader(BadHeader),
    /// A trusted balancer closed before sending a byte (a plain TCP health
    /// check): close it quietly, as neither a bad header nor a client.
    Vanished,
}

/// Why a trusted balancer's connection is not served: the `WHY` of
/// `refused BALANCER: bad proxy header (WHY)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHeader {
    /// The bytes are not a header we accept (malformed or oversized).
    Invalid(proxy::Invalid),
    /// The balancer closed the connection in the middle of its header.
    Truncated,
    /// No complete header within `header_timeout`, these many seconds.
    Late(u64),
}

impl fmt::Display for BadHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadHeader::Invalid(why) => why.fmt(f),
            BadHeader::Truncated => f.write_str("connection closed in the middle of the header"),
            BadHeader::Late(secs) => write!(f, "no complete header within {secs} s"),
        }
    }
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
    /// The worker's own metrics counters.
    pub metrics: &'a Shard,
}

/// Where a connection is in its life.
///
/// SPEC 10: a connection from a trusted balancer starts in a state of its
/// own, awaiting its PROXY header (with the time it started, for
/// `header_timeout`), and moves to `Serving` once the header is read and
/// the client it names is admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// From a trusted balancer, waiting for the PROXY header that names the
    /// client; since the connection was accepted (for `header_timeout`).
    /// Not a client yet: nothing is logged or answered for it.
    AwaitingProxyHeader {
        /// When it was accepted.
        since: Instant,
    },
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

/// How a connection reached jamd.
#[derive(Debug)]
enum Route {
    /// Straight from the client.
    Direct,
    /// From a trusted balancer (SPEC 10). Boxed: what only such connections
    /// need would otherwise make every idle client bigger.
    Balancer(Box<Balanced>),
}

/// What a connection from a trusted balancer carries beyond a direct one.
#[derive(Debug, Default)]
struct Balanced {
    /// The balancer's address once its header named a client who is someone
    /// else (`None` while awaiting the header, and for a health check, which
    /// is the balancer itself).
    via: Option<SocketAddr>,
    /// While awaiting the PROXY header: the bytes of it so far. Then: the
    /// bytes that followed it, the client's first requests. Usually empty
    /// (no allocation).
    early: Vec<u8>,
    /// The read that brought the header emptied the socket.
    drained: bool,
}

/// A client connection. The worker drives it; it reads, asks the protocol
/// session what to do, and writes.
pub struct Conn {
    stream: TcpStream,
    /// The client's address: the one a PROXY header named, once it did.
    peer: SocketAddr,
    /// Straight from the client, or through a trusted balancer.
    route: Route,
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
            route: Route::Direct,
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

    /// A freshly accepted connection from a trusted balancer: its `ticket`
    /// holds the global slot only, until the PROXY header names the client
    /// (SPEC 10).
    pub(crate) fn awaiting_header(
        stream: TcpStream,
        balancer: SocketAddr,
        ticket: Ticket,
        max_line_bytes: usize,
    ) -> Conn {
        let mut conn = Conn::new(stream, balancer, ticket, max_line_bytes);
        conn.route = Route::Balancer(Box::default());
        conn.state = State::AwaitingProxyHeader { since: conn.opened };
        conn
    }

    /// Since when the connection has been awaiting its PROXY header, if it
    /// still is.
    pub fn awaiting_since(&self) -> Option<Instant> {
        match self.state {
            State::AwaitingProxyHeader { since } => Some(since),
            _ => None,
        }
    }

    /// Whether it is a client (announced by a `connection from` line):
    /// not while it awaits its PROXY header.
    pub fn is_client(&self) -> bool {
        self.awaiting_since().is_none()
    }

    /// The header is read and the client admitted: serve `client` (the
    /// balancer itself for a health check), who came `via` a balancer.
    pub fn serve_as(&mut self, client: SocketAddr, via: Option<SocketAddr>) {
        self.peer = client;
        if let Route::Balancer(b) = &mut self.route {
            b.via = via;
        }
        self.state = State::Serving;
        // The idle timer counts from when the client could first be served.
        self.last_line = Instant::now();
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

    /// The balancer the client came through, if a PROXY header named it.
    pub fn via(&self) -> Option<&SocketAddr> {
        match &self.route {
            Route::Balancer(b) => b.via.as_ref(),
            Route::Direct => None,
        }
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
            State::Serving | State::AwaitingProxyHeader { .. } => None,
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
        if self.awaiting_since().is_some() {
            // Not a client yet: there is no one to tell.
            return Next::Close(reason);
        }
        if self.state == State::Serving && reason == CloseReason::Shutdown {
            // A request already received is answered in full (SPEC 2), also
            // when the grace period ends before this worker has read it.
            match self.drive(s) {
                Next::Wait | Next::Again => {}
                other => return other,
            }
        }
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
        if self.awaiting_since().is_some() {
            return self.read_header(s);
        }
        if !self.flush_pending() {
            return self.blocked_or_error();
        }
        if let Route::Balancer(b) = &mut self.route {
            // What followed the PROXY header: the client's first requests.
            let drained = std::mem::take(&mut b.drained);
            let early = std::mem::take(&mut b.early);
            if !early.is_empty() {
                s.out.clear();
                self.answer(&early, s.out, s.cache, s.clock, s.metrics);
                if !s.out.is_empty() && !self.write_out(s.out) {
                    return self.blocked_or_error();
                }
            }
            if drained && self.state == State::Serving && !self.peer_closed {
                // The read that brought the header emptied the socket: as
                // after a short read below, nothing more until an event.
                return Next::Wait;
            }
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
                // HAProxy ends its health checks (and aborted sessions) with
                // a reset, to leave no TIME_WAIT behind: from a balancer that
                // is how a connection ends, not a failure.
                Err(e)
                    if matches!(self.route, Route::Balancer(_))
                        && e.kind() == io::ErrorKind::ConnectionReset =>
                {
                    return Next::Close(CloseReason::Eof)
                }
                Err(_) => return Next::Close(CloseReason::Error),
            };
            s.out.clear();
            self.answer(&s.read[..n], s.out, s.cache, s.clock, s.metrics);
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

    /// Reads the PROXY header of a trusted balancer's connection (SPEC 10),
    /// parsing everything received so far after each read, so that a
    /// header split at any point is read whole. Most headers come in one
    /// read, parsed where they landed without a copy.
    fn read_header(&mut self, s: &mut Scratch<'_>) -> Next {
        let Route::Balancer(b) = &mut self.route else {
            // Only a balancer's connection awaits a header.
            return Next::BadHeader(BadHeader::Truncated);
        };
        for _ in 0..READS_PER_TURN {
            let n = match self.stream.read(s.read) {
                Ok(0) if b.early.is_empty() => return Next::Vanished,
                Ok(0) => return Next::BadHeader(BadHeader::Truncated),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A reset or another error: the balancer is gone.
                Err(_) if b.early.is_empty() => return Next::Vanished,
                Err(_) => return Next::BadHeader(BadHeader::Truncated),
            };
            let drained = n < s.read.len();
            let early = &mut b.early;
            let fresh = early.is_empty();
            let parsed = if fresh {
                proxy::parse(&s.read[..n])
            } else {
                early.extend_from_slice(&s.read[..n]);
                proxy::parse(early)
            };
            match parsed {
                Parse::Incomplete => {
                    if fresh {
                        early.extend_from_slice(&s.read[..n]);
                    }
                    if drained && !self.peer_closed {
                        return Next::Wait;
                    }
                }
                Parse::Done { header, consumed } => {
                    if fresh {
                        early.extend_from_slice(&s.read[consumed..n]);
                    } else {
                        early.drain(..consumed);
                    }
                    if early.is_empty() {
                        *early = Vec::new();
                    }
                    b.drained = drained;
                    return Next::Header(header);
                }
                Parse::Invalid(why) => return Next::BadHeader(BadHeader::Invalid(why)),
            }
        }
        Next::Again
    }

    /// Runs the protocol over `input`, appending the replies it decides on
    /// to `out` and counting the requests in `metrics`.
    fn answer(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        cache: &mut ClockCache,
        clock: &Arc<Clock>,
        metrics: &Shard,
    ) {
        let mut saw_line = false;
        // Counted here and added once per read: pipelined requests cost one
        // atomic add, not one each.
        let (mut times, mut unknown) = (0, 0);
        while let Some(action) = self.session.next_action(&mut input) {
            saw_line = true;
            match action.reply() {
                Some(Reply::Time) => write_time_reply(out, cache.now(clock)),
                Some(Reply::Error(e)) => out.extend_from_slice(e.line()),
                None => {}
            }
            if let Some(reason) = action.close() {
                self.mark_closing(reason);
            }
            if action.is_answered() {
                self.requests += 1;
            }
            match action {
                Action::Time => times += 1,
                Action::Unknown => unknown += 1,
                _ => {}
            }
        }
        metrics.requests(Command::Time, times);
        metrics.requests(Command::Unknown, unknown);
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

    /// Refuses the client a PROXY header named: tells it why, through the
    /// balancer, and closes; its slots come back.
    pub(crate) fn refuse(self, reply: Option<ErrorReply>) {
        let Conn { stream, ticket, .. } = self;
        drop(ticket);
        refuse(stream, reply);
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
