//! One client connection, the transport: its stream, its admission ticket,
//! the reply bytes the stream has not taken yet, and how it closes; for a
//! connection from a trusted load balancer, first the PROXY protocol header
//! that names the client.
//!
//! What to say is the [`Session`]'s (`session.rs`): the connection hands it
//! the bytes that arrive and writes the bytes it returns. The connection is
//! generic over its [`Stream`] so that its logic (a short read means wait,
//! the peer's FIN, the bytes after a PROXY header, the gentle close) is
//! unit-tested against a scripted stream, without sockets.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::admission::Ticket;
use super::session::{Cx, Protocol, Session, Then};
use super::Runtime;
use crate::clock::ClockCache;
use crate::listener::show_addr;
use crate::metrics::Shard;
use crate::outcome::{CloseReason, Refusal};
use crate::proxy::{self, Header, Parse};

/// Who is at the other end, as log lines name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A client at this address (the one a PROXY header named, once it did).
    Ip(SocketAddr),
    /// The one client of `--inetd` over a pipe, socketpair or terminal,
    /// which has no address: what standard input is (`a pipe`).
    Stdio(&'static str),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Ip(addr) => f.write_str(&show_addr(addr)),
            Peer::Stdio(what) => f.write_str(what),
        }
    }
}

/// How long a closing connection may take to take its last bytes.
pub(crate) const CLOSING_LIMIT: Duration = Duration::from_secs(5);

/// How long a connection that sent its whole reply waits for the client to
/// close, reading and discarding, before it closes anyway.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// A connection's byte stream: a TCP socket, or (in tests) a scripted one.
pub(crate) trait Stream: Read + Write {
    /// Shuts the sending side: the peer reads to the end of what was sent,
    /// then sees the end of the stream.
    fn shut_write(&mut self);
}

impl Stream for TcpStream {
    fn shut_write(&mut self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

/// Reads one connection may do per turn before others get theirs.
const READS_PER_TURN: usize = 8;

/// What the worker should do with a connection after driving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
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
    /// counted and logged (jamd.toml(5), `[proxy]`).
    BadHeader(BadHeader),
    /// A trusted balancer closed before sending a byte (a plain TCP health
    /// check): close it quietly, as neither a bad header nor a client.
    Vanished,
}

/// Why a trusted balancer's connection is not served: the `WHY` of
/// `refused BALANCER: bad proxy header (WHY)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadHeader {
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

/// What a worker (or inetd's loop) keeps to lend the connection it drives:
/// one set for all its connections.
pub(crate) struct Buffers {
    read: Box<[u8]>,
    out: Vec<u8>,
    cache: ClockCache,
    /// The daytime line's, kept apart so that JAM and daytime replies do
    /// not take turns re-rendering.
    daytime_cache: ClockCache,
}

impl Buffers {
    /// Buffers for reads of up to 4 KiB.
    pub(crate) fn new() -> Buffers {
        Buffers {
            read: vec![0u8; 4096].into_boxed_slice(),
            out: Vec::with_capacity(4096),
            cache: ClockCache::new(),
            daytime_cache: ClockCache::new(),
        }
    }

    /// Lends them for one connection's turn, with the configuration in
    /// effect and the counters to bump.
    pub(crate) fn lend<'a>(&'a mut self, rt: &'a Runtime, metrics: &'a Shard) -> Scratch<'a> {
        Scratch {
            read: &mut self.read,
            out: &mut self.out,
            cx: Cx {
                cache: &mut self.cache,
                clock: &rt.clock,
                daytime_cache: &mut self.daytime_cache,
                daytime_clock: &rt.daytime_clock,
                metrics,
                max_line_bytes: rt.config.server.max_line_bytes,
            },
        }
    }
}

/// What a worker lends to the connection it is driving.
pub(crate) struct Scratch<'a> {
    /// Where socket reads land.
    pub(crate) read: &'a mut [u8],
    /// Where replies are assembled before one write.
    pub(crate) out: &'a mut Vec<u8>,
    /// What the session needs to answer.
    pub(crate) cx: Cx<'a>,
}

/// Where a connection is in its life.
///
/// A connection from a trusted balancer starts in a state of its
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
    /// The reply is complete: once it is written, the sending side is shut
    /// (`shut`) and what the client still sends is discarded until it
    /// closes, at most [`LINGER`] from `since`.
    Lingering {
        /// Why it ends.
        reason: CloseReason,
        /// When the reply was complete.
        since: Instant,
        /// The sending side is shut.
        shut: bool,
    },
}

/// How a connection reached jamd.
#[derive(Debug)]
enum Route {
    /// Straight from the client.
    Direct,
    /// From a trusted balancer (`[proxy] trusted`). Boxed: what only such connections
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
pub(crate) struct Conn<S = TcpStream> {
    stream: S,
    /// The client: the one a PROXY header named, once it did.
    peer: Peer,
    /// Straight from the client, or through a trusted balancer.
    route: Route,
    /// The client's admission: its slots come back when the connection is
    /// dropped, however that happens.
    ticket: Ticket,
    session: Session,
    state: State,
    /// Reply bytes the socket did not take yet (usually empty: no allocation).
    pending: Vec<u8>,
    /// Requests answered (for JAM: TIME and unknown commands).
    requests: u64,
    /// When it was accepted.
    opened: Instant,
    /// When the last complete line arrived (or the connection opened).
    last_line: Instant,
    /// Input followed the session's last word (QUIT, a line too long):
    /// close gently so that the client sees the replies.
    unread_input: bool,
    /// Whether WRITABLE interest is registered.
    wants_write: bool,
    /// The poller reported the peer's FIN (or an error) already: a short
    /// read no longer proves that nothing more is coming, so read on to EOF.
    peer_closed: bool,
}

// Thousands of idle clients each hold one: what only some connections need
// goes in a box (as `Route::Balancer` does), and this check fails the build
// when a field makes every connection bigger. scripts/bench's idle phase
// shows the cost per client.
const _: () = assert!(std::mem::size_of::<Conn>() <= 224);

impl<S: Stream + mio::event::Source> Conn<S> {
    /// Starts watching the socket for input.
    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.stream, token, Interest::READABLE)
    }

    /// Watches for the socket to take more bytes, if replies are waiting for
    /// it and that is not watched already.
    pub(crate) fn watch_writable(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
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
}

impl<S: Stream> Conn<S> {
    /// A freshly accepted, admitted connection, to speak `protocol`.
    pub(crate) fn new(
        stream: S,
        peer: Peer,
        ticket: Ticket,
        protocol: Protocol,
        max_line_bytes: usize,
    ) -> Conn<S> {
        let now = Instant::now();
        Conn {
            stream,
            peer,
            route: Route::Direct,
            ticket,
            session: protocol.session(max_line_bytes),
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
    /// (jamd.toml(5), `[proxy]`).
    pub(crate) fn awaiting_header(
        stream: S,
        balancer: SocketAddr,
        ticket: Ticket,
        protocol: Protocol,
        max_line_bytes: usize,
    ) -> Conn<S> {
        let mut conn = Conn::new(stream, Peer::Ip(balancer), ticket, protocol, max_line_bytes);
        conn.route = Route::Balancer(Box::default());
        conn.state = State::AwaitingProxyHeader { since: conn.opened };
        conn
    }

    /// Since when the connection has been awaiting its PROXY header, if it
    /// still is.
    pub(crate) fn awaiting_since(&self) -> Option<Instant> {
        match self.state {
            State::AwaitingProxyHeader { since } => Some(since),
            _ => None,
        }
    }

    /// Whether it is a client (counted, and announced by a `connection
    /// from` line): not while it awaits its PROXY header, and not a
    /// balancer's health check.
    pub(crate) fn is_client(&self) -> bool {
        self.awaiting_since().is_none() && !self.is_health_check()
    }

    /// Whether it is a trusted balancer's health check: its header named no
    /// client (`LOCAL`, `PROXY UNKNOWN`), so it is served as the balancer.
    pub(crate) fn is_health_check(&self) -> bool {
        match &self.route {
            Route::Balancer(b) => b.via.is_none() && self.awaiting_since().is_none(),
            Route::Direct => false,
        }
    }

    /// The header is read and the client admitted: serve `client` (the
    /// balancer itself for a health check), who came `via` a balancer.
    pub(crate) fn serve_as(&mut self, client: SocketAddr, via: Option<SocketAddr>) {
        self.peer = Peer::Ip(client);
        if let Route::Balancer(b) = &mut self.route {
            b.via = via;
        }
        self.state = State::Serving;
        // The idle timer counts from when the client could first be served.
        self.last_line = Instant::now();
    }

    /// The poller reported the peer's FIN or an error.
    pub(crate) fn peer_closed(&mut self) {
        self.peer_closed = true;
    }

    /// The client.
    pub(crate) fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The line that announces a client: `connection from CLIENT`, with
    /// `via BALANCER` when a PROXY header named it.
    pub(crate) fn connection_line(&self) -> String {
        match self.via() {
            Some(balancer) => format!("connection from {} via {}", self.peer, show_addr(balancer)),
            None => format!("connection from {}", self.peer),
        }
    }

    /// The line that says a client's connection ended, and why.
    /// JAM's line as ever; the other protocols say which they are
    /// (`… reason=sent protocol=daytime`).
    pub(crate) fn closed_line(&self, reason: CloseReason) -> String {
        let protocol = match self.session.protocol() {
            Protocol::Jam => String::new(),
            other => format!(" protocol={other}"),
        };
        format!(
            "closed {} requests={} duration_ms={} reason={}{protocol}",
            self.peer,
            self.requests,
            self.opened.elapsed().as_millis(),
            reason
        )
    }

    /// Whether reply bytes wait for the stream to take them.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The balancer the client came through, if a PROXY header named it.
    pub(crate) fn via(&self) -> Option<&SocketAddr> {
        match &self.route {
            Route::Balancer(b) => b.via.as_ref(),
            Route::Direct => None,
        }
    }

    /// The client's admission ticket.
    pub(crate) fn ticket_mut(&mut self) -> &mut Ticket {
        &mut self.ticket
    }

    /// After a reload: counts the client against its source as `rt` cuts
    /// it ([`Ticket::count_source`]). Returns false if nothing changed.
    pub(crate) fn count_source(&mut self, rt: &Runtime) -> bool {
        match self.peer {
            Peer::Ip(client) => self.ticket.count_source(rt, client.ip()),
            Peer::Stdio(_) => false,
        }
    }

    /// When the last complete line arrived (or the connection opened).
    pub(crate) fn last_line(&self) -> Instant {
        self.last_line
    }

    /// Why the connection is ending, and by when it is to be closed at the
    /// latest: `limit` after it began to end (at most [`LINGER`] when it
    /// lingers after a complete reply).
    pub(crate) fn closing(&self, limit: Duration) -> Option<(CloseReason, Instant)> {
        match self.state {
            State::Closing { reason, since } => Some((reason, since + limit)),
            State::Lingering { reason, since, .. } => Some((reason, since + limit.min(LINGER))),
            State::Serving | State::AwaitingProxyHeader { .. } => None,
        }
    }

    /// Why the connection ends once its pending bytes are written (not
    /// while it lingers: then it ends when the client closes).
    fn closing_reason(&self) -> Option<CloseReason> {
        match self.state {
            State::Closing { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// The connection is open and its client admitted: the session speaks
    /// first if its protocol does. For a balancer's connection, the bytes
    /// that followed its PROXY header are answered next.
    pub(crate) fn open(&mut self, s: &mut Scratch<'_>) -> Next {
        s.out.clear();
        let heard = self.session.on_open(&mut s.cx, s.out);
        let then = heard.then;
        self.requests += heard.requests;
        self.apply(then);
        if !s.out.is_empty() && !self.write_out(s.out) {
            return self.blocked_or_error();
        }
        if then == Then::Serve && matches!(self.route, Route::Direct) {
            // Nothing said and nothing early to answer: wait for the client.
            return Next::Wait;
        }
        self.drive(s)
    }

    /// Carries out what the session decided.
    fn apply(&mut self, then: Then) {
        match then {
            Then::Serve => {}
            Then::Close(reason) => self.mark_closing(reason),
            // Lingering already: the reply was complete before.
            Then::Linger(_) if matches!(self.state, State::Lingering { .. }) => {}
            Then::Linger(reason) => {
                self.state = State::Lingering {
                    reason,
                    since: Instant::now(),
                    shut: false,
                }
            }
        }
    }

    /// Ends the connection for `reason` (idle, shutdown) on the server's
    /// own initiative; the client is told first when the protocol says so.
    pub(crate) fn end(&mut self, reason: CloseReason, s: &mut Scratch<'_>) -> Next {
        if self.awaiting_since().is_some() {
            // Not a client yet: there is no one to tell.
            return Next::Close(reason);
        }
        if self.state == State::Serving && reason == CloseReason::Shutdown {
            // A request already received is answered in full (jamd(8)), also
            // when the grace period ends before this worker has read it.
            match self.drive(s) {
                Next::Wait | Next::Again => {}
                other => return other,
            }
        }
        if self.state == State::Serving {
            if let Some(line) = self.session.farewell(reason) {
                self.pending.extend_from_slice(line);
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
    pub(crate) fn drive(&mut self, s: &mut Scratch<'_>) -> Next {
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
                self.answer(&early, s.out, &mut s.cx);
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
            if matches!(self.state, State::Lingering { .. }) {
                return self.linger(s.read);
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
            self.answer(&s.read[..n], s.out, &mut s.cx);
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

    /// The whole reply is written: shuts the sending side (once), then
    /// reads and discards until the client closes; the worker's sweep
    /// closes it when [`LINGER`] is over.
    fn linger(&mut self, sink: &mut [u8]) -> Next {
        let State::Lingering { reason, shut, .. } = &mut self.state else {
            return Next::Wait;
        };
        let reason = *reason;
        if !std::mem::replace(shut, true) {
            self.stream.shut_write();
        }
        for _ in 0..READS_PER_TURN {
            match self.stream.read(sink) {
                Ok(0) => return Next::Close(reason),
                Ok(n) if n < sink.len() && !self.peer_closed => return Next::Wait,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The reply was sent; whatever ends the connection now.
                Err(_) => return Next::Close(reason),
            }
        }
        Next::Again
    }

    /// Reads the PROXY header of a trusted balancer's connection,
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

    /// Hands `input` to the session, appending the replies it decides on
    /// to `out`.
    fn answer(&mut self, input: &[u8], out: &mut Vec<u8>, cx: &mut Cx<'_>) {
        let mut rest = input;
        let heard = self.session.on_input(&mut rest, cx, out);
        self.requests += heard.requests;
        if heard.active {
            self.last_line = Instant::now();
        }
        self.apply(heard.then);
        if heard.then != Then::Serve && !rest.is_empty() {
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

    /// Refuses the client a PROXY header named: tells it why (in its
    /// protocol's words, if it has any), through the balancer, and closes;
    /// its slots come back.
    pub(crate) fn refuse(self, why: Refusal) {
        let reply = self.session.protocol().refusal(why);
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
    pub(crate) fn close(self, reason: CloseReason) {
        let Conn {
            mut stream,
            ticket,
            unread_input,
            state,
            ..
        } = self;
        drop(ticket);
        if matches!(state, State::Lingering { shut: true, .. }) {
            // Shut and drained already.
            return;
        }
        let gentle = reason != CloseReason::Quit || unread_input;
        if gentle && !matches!(reason, CloseReason::Error | CloseReason::Eof) {
            close_gently(&mut stream);
        }
    }
}

/// Tells a client it is not served (when there is something to tell: the
/// protocol's `reply`) and closes its socket gently. One try at writing: a
/// client that does not take a line this short is not waited for.
pub(crate) fn refuse<S: Stream>(mut stream: S, reply: Option<&[u8]>) {
    if let Some(reply) = reply {
        let _ = stream.write(reply);
    }
    close_gently(&mut stream);
}

/// Shuts the write side and drains what the client sent, so that the kernel
/// ends with FIN rather than a reset that could destroy replies the client
/// has not read yet.
fn close_gently<S: Stream>(stream: &mut S) {
    stream.shut_write();
    let mut sink = [0u8; 1024];
    for _ in 0..64 {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The connection's logic against a scripted stream: what it reads, when
    //! it stops reading, what it writes and how it closes.

    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::server::admission::Admission;
    use crate::server::Runtime;

    /// What the peer does, and what the connection did to the stream.
    #[derive(Default)]
    struct Script {
        /// Each read's result, in order; `None` once used up: would block.
        reads: VecDeque<io::Result<Vec<u8>>>,
        /// Reads made, including those that would block.
        read_calls: usize,
        written: Vec<u8>,
        /// How many more bytes the stream takes before it is full.
        room: usize,
        /// Writes fail: the peer reset the connection.
        broken: bool,
        shut: bool,
    }

    #[derive(Clone, Default)]
    struct Scripted(Rc<RefCell<Script>>);

    impl Scripted {
        fn new(reads: Vec<io::Result<&[u8]>>) -> Scripted {
            let s = Scripted::default();
            {
                let mut script = s.0.borrow_mut();
                script.reads = reads.into_iter().map(|r| r.map(<[u8]>::to_vec)).collect();
                script.room = usize::MAX;
            }
            s
        }

        fn written(&self) -> String {
            String::from_utf8_lossy(&self.0.borrow().written).into_owned()
        }
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let mut s = self.0.borrow_mut();
            s.read_calls += 1;
            match s.reads.pop_front() {
                None => Err(io::ErrorKind::WouldBlock.into()),
                Some(Err(e)) => Err(e),
                Some(Ok(mut bytes)) => {
                    let n = bytes.len().min(buf.len());
                    buf[..n].copy_from_slice(&bytes[..n]);
                    if n < bytes.len() {
                        s.reads.push_front(Ok(bytes.split_off(n)));
                    }
                    Ok(n)
                }
            }
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut s = self.0.borrow_mut();
            if s.broken {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            let n = buf.len().min(s.room);
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            s.room -= n;
            s.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Stream for Scripted {
        fn shut_write(&mut self) {
            self.0.borrow_mut().shut = true;
        }
    }

    /// What a worker lends a connection.
    struct Worker {
        buffers: Buffers,
        metrics: Metrics,
        rt: Arc<Runtime>,
        admission: Arc<Admission>,
    }

    impl Worker {
        fn new() -> Worker {
            let mut config = Config::default();
            config.server.max_line_bytes = 32;
            let rt = Runtime::new(config);
            Worker {
                // Reads of 64 bytes: a full read is easy to make.
                buffers: Buffers {
                    read: vec![0; 64].into_boxed_slice(),
                    out: Vec::new(),
                    cache: ClockCache::new(),
                    daytime_cache: ClockCache::new(),
                },
                metrics: Metrics::new(1),
                admission: Admission::new(&rt),
                rt,
            }
        }

        fn scratch(&mut self) -> Scratch<'_> {
            self.buffers.lend(&self.rt, self.metrics.worker(0))
        }

        fn conn(&mut self, stream: &Scripted) -> Conn<Scripted> {
            let ticket = self.admission.admit(&self.rt, ip()).unwrap();
            Conn::new(stream.clone(), Peer::Ip(peer()), ticket, Protocol::Jam, 32)
        }
    }

    fn ip() -> std::net::IpAddr {
        "192.0.2.7".parse().unwrap()
    }

    fn peer() -> SocketAddr {
        SocketAddr::new(ip(), 40000)
    }

    fn jam_replies(written: &str) -> usize {
        written.matches("JAM ").count()
    }

    #[test]
    fn a_short_read_means_wait_without_another_read() {
        let mut w = Worker::new();
        let stream = Scripted::new(vec![Ok(b"TIME\r\n")]);
        let mut conn = w.conn(&stream);
        assert_eq!(conn.open(&mut w.scratch()), Next::Wait);
        assert_eq!(stream.0.borrow().read_calls, 0, "JAM waits for the client");
        assert_eq!(conn.drive(&mut w.scratch()), Next::Wait);
        assert_eq!(
            stream.0.borrow().read_calls,
            1,
            "a short read drained the socket"
        );
        assert_eq!(jam_replies(&stream.written()), 1);
        assert_eq!(conn.requests, 1);
    }

    #[test]
    fn a_full_read_reads_again_until_the_socket_is_empty() {
        let mut w = Worker::new();
        // 64 bytes fill the read buffer: there may be more.
        let stream = Scripted::new(vec![Ok(&b"TIME\r\n".repeat(16)[..])]);
        let mut conn = w.conn(&stream);
        assert_eq!(conn.drive(&mut w.scratch()), Next::Wait);
        assert_eq!(jam_replies(&stream.written()), 16);
        assert_eq!(stream.0.borrow().read_calls, 2, "one full read, one short");
    }

    #[test]
    fn after_the_peer_closed_a_short_read_is_not_the_end_of_the_turn() {
        let mut w = Worker::new();
        let stream = Scripted::new(vec![Ok(b"TIME\r\n"), Ok(b"")]);
        let mut conn = w.conn(&stream);
        conn.peer_closed();
        assert_eq!(conn.drive(&mut w.scratch()), Next::Close(CloseReason::Eof));
        assert_eq!(
            jam_replies(&stream.written()),
            1,
            "answered before the close"
        );
        conn.close(CloseReason::Eof);
        assert!(
            !stream.0.borrow().shut,
            "a closed peer needs no gentle close"
        );
    }

    #[test]
    fn the_bytes_after_a_proxy_header_are_answered_once_the_client_is_named() {
        let mut w = Worker::new();
        let mut input = b"PROXY TCP4 198.51.100.9 192.0.2.1 5555 37\r\n".to_vec();
        input.extend_from_slice(b"TIME\r\nTIME\r\n");
        let stream = Scripted::new(vec![Ok(&input[..])]);
        let ticket = w.admission.enter(&w.rt).unwrap();
        // The read buffer takes the whole header and requests in one read.
        w.buffers.read = vec![0; 4096].into_boxed_slice();
        let mut conn = Conn::awaiting_header(stream.clone(), peer(), ticket, Protocol::Jam, 32);
        assert!(!conn.is_client());
        let Next::Header(Header::Proxied { client, .. }) = conn.drive(&mut w.scratch()) else {
            panic!("no header")
        };
        assert_eq!(
            stream.written(),
            "",
            "nothing is said before the client is named"
        );
        conn.ticket_mut().name_client(&w.rt, client.ip()).unwrap();
        conn.serve_as(client, Some(peer()));
        assert!(conn.is_client());
        let reads = stream.0.borrow().read_calls;
        assert_eq!(conn.open(&mut w.scratch()), Next::Wait);
        assert_eq!(jam_replies(&stream.written()), 2);
        assert_eq!(
            stream.0.borrow().read_calls,
            reads,
            "the read that brought the header emptied the socket"
        );
        assert_eq!(conn.peer(), &Peer::Ip(client));
        assert_eq!(
            conn.connection_line(),
            "connection from 198.51.100.9:5555 via 192.0.2.7:40000"
        );
        assert_eq!(conn.via(), Some(&peer()));
    }

    #[test]
    fn a_header_split_over_reads_is_read_whole() {
        let mut w = Worker::new();
        let stream = Scripted::new(vec![
            Ok(b"PROXY TCP4 198.51.1"),
            Ok(b"00.9 192.0.2.1 5555 37\r\nTI"),
        ]);
        let ticket = w.admission.enter(&w.rt).unwrap();
        let mut conn = Conn::awaiting_header(stream.clone(), peer(), ticket, Protocol::Jam, 32);
        assert_eq!(conn.drive(&mut w.scratch()), Next::Wait);
        let Next::Header(Header::Proxied { client, .. }) = conn.drive(&mut w.scratch()) else {
            panic!("no header")
        };
        conn.serve_as(client, Some(peer()));
        assert_eq!(conn.open(&mut w.scratch()), Next::Wait);
        assert_eq!(stream.written(), "", "half a request after the header");
        // The rest comes with an event of its own.
        stream
            .0
            .borrow_mut()
            .reads
            .push_back(Ok(b"ME\r\n".to_vec()));
        assert_eq!(conn.drive(&mut w.scratch()), Next::Wait);
        assert_eq!(
            jam_replies(&stream.written()),
            1,
            "the request split by the header's read"
        );
    }

    #[test]
    fn quit_at_the_end_of_the_input_closes_at_once() {
        let mut w = Worker::new();
        let stream = Scripted::new(vec![Ok(b"TIME\r\nQUIT\r\n")]);
        let mut conn = w.conn(&stream);
        assert_eq!(conn.drive(&mut w.scratch()), Next::Close(CloseReason::Quit));
        conn.close(CloseReason::Quit);
        assert!(
            !stream.0.borrow().shut,
            "nothing unread: no need to shut first"
        );
        assert_eq!(jam_replies(&stream.written()), 1);
    }

    #[test]
    fn input_after_quit_gets_the_gentle_close() {
        let mut w = Worker::new();
        let stream = Scripted::new(vec![Ok(b"TIME\r\nQUIT\r\nTIME\r\n")]);
        let mut conn = w.conn(&stream);
        assert_eq!(conn.drive(&mut w.scratch()), Next::Close(CloseReason::Quit));
        stream
            .0
            .borrow_mut()
            .reads
            .push_back(Ok(b"TIME\r\n".to_vec()));
        conn.close(CloseReason::Quit);
        let s = stream.0.borrow();
        assert!(s.shut, "the sending side is shut before the close");
        assert!(s.reads.is_empty(), "what the client sent is drained");
        assert_eq!(jam_replies(&String::from_utf8_lossy(&s.written)), 1);
    }

    #[test]
    fn a_farewell_the_stream_cannot_take_waits_and_is_sent_whole() {
        let mut w = Worker::new();
        let stream = Scripted::new(vec![]);
        stream.0.borrow_mut().room = 6;
        let mut conn = w.conn(&stream);
        assert_eq!(conn.end(CloseReason::Idle, &mut w.scratch()), Next::Wait);
        assert_eq!(stream.written(), "ERROR ");
        assert!(conn.closing(CLOSING).is_some());
        stream.0.borrow_mut().room = 100;
        assert_eq!(conn.drive(&mut w.scratch()), Next::Close(CloseReason::Idle));
        assert_eq!(stream.written(), "ERROR idle timeout\r\n");
        conn.close(CloseReason::Idle);
        assert!(
            stream.0.borrow().shut,
            "a client told goodbye gets FIN, not a reset"
        );
    }

    const CLOSING: Duration = Duration::from_secs(5);

    #[test]
    fn a_lingering_connection_shuts_then_discards_until_the_client_closes() {
        let mut w = Worker::new();
        let stream = Scripted::new(vec![Ok(b"anything"), Ok(b"")]);
        let mut conn = w.conn(&stream);
        conn.pending.extend_from_slice(b"reply\r\n");
        conn.apply(Then::Linger(CloseReason::Eof));
        let (_, by) = conn.closing(CLOSING).unwrap();
        assert!(by <= Instant::now() + LINGER, "lingers at most {LINGER:?}");
        conn.peer_closed();
        assert_eq!(conn.drive(&mut w.scratch()), Next::Close(CloseReason::Eof));
        let s = stream.0.borrow();
        assert_eq!(s.written, b"reply\r\n", "the reply first, whole");
        assert!(s.shut);
        assert!(s.reads.is_empty());
        drop(s);
        conn.close(CloseReason::Eof);
    }

    #[test]
    fn a_lingering_connection_waits_while_the_client_says_nothing() {
        let mut w = Worker::new();
        let stream = Scripted::new(vec![]);
        let mut conn = w.conn(&stream);
        conn.apply(Then::Linger(CloseReason::Eof));
        assert_eq!(conn.drive(&mut w.scratch()), Next::Wait);
        assert!(stream.0.borrow().shut);
        assert_eq!(conn.drive(&mut w.scratch()), Next::Wait);
    }

    #[test]
    fn a_full_socket_keeps_the_reply_until_it_takes_it() {
        let mut w = Worker::new();
        let stream = Scripted::new(vec![Ok(b"TIME\r\n")]);
        stream.0.borrow_mut().room = 0;
        let mut conn = w.conn(&stream);
        assert_eq!(conn.drive(&mut w.scratch()), Next::Wait);
        assert!(!conn.pending.is_empty());
        stream.0.borrow_mut().room = usize::MAX;
        assert_eq!(conn.drive(&mut w.scratch()), Next::Wait);
        assert!(conn.pending.is_empty());
        assert_eq!(jam_replies(&stream.written()), 1);
    }

    #[test]
    fn a_write_error_closes_as_an_error() {
        let mut w = Worker::new();
        let stream = Scripted::new(vec![Ok(b"TIME\r\n")]);
        stream.0.borrow_mut().broken = true;
        let mut conn = w.conn(&stream);
        assert_eq!(
            conn.drive(&mut w.scratch()),
            Next::Close(CloseReason::Error)
        );
        assert!(conn.pending.is_empty(), "nothing kept for a broken socket");
        conn.close(CloseReason::Error);
        assert!(!stream.0.borrow().shut);
    }

    #[test]
    fn a_refused_client_named_by_a_header_hears_why_in_its_protocol() {
        let mut w = Worker::new();
        let stream = Scripted::new(vec![]);
        let conn = w.conn(&stream);
        conn.refuse(Refusal::RateLimited);
        assert_eq!(stream.written(), "ERROR rate limited\r\n");
        assert!(stream.0.borrow().shut);
        assert_eq!(w.admission.open(), 0, "the slot came back");
    }
}
