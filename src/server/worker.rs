//! One event-loop worker: accepts from the shared listeners, drives its own
//! connections, sweeps idle ones, and drains them at shutdown.

use std::io;
use std::net::{SocketAddr, TcpStream as StdStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::conn::{self, BadHeader, Buffers, Conn, Next, Peer, Scratch, CLOSING_LIMIT};
use super::udp::{Batch, Datagrams, Served};
use super::{Phase, Runtime, Shared};
use crate::config::Level;
use crate::listen::{Listening, Socket};
use crate::listener::{show_addr, Protocol};
use crate::metrics::ProxyHeader;
use crate::outcome::{CloseReason, Refusal};
use crate::proxy::Header;

/// The token of the waker the control loop uses.
pub(crate) const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 1024;
/// UDP listeners' tokens: below the TCP listeners', above any connection's.
const DATAGRAM_BASE: usize = LISTENER_BASE - 1024;

/// Connections accepted per listener per turn before others get a turn.
const ACCEPT_BURST: usize = 64;
/// How often idle connections are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// How long accepting pauses after running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Whether an accepted socket inherits TCP_NODELAY from its listener, as on
/// Linux; elsewhere it is set on each connection.
const NODELAY_INHERITED: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Whether, and when, the worker takes new connections from its listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepting {
    /// When a listener reports one.
    Open,
    /// At the end of this turn too: a burst was cut short, so more may be
    /// waiting without a new event to say so.
    Again,
    /// Not before then (out of descriptors, or accept failed); then again.
    PausedUntil(Instant),
    /// Never again: the listeners are closed (shutdown).
    Closed,
}

pub(crate) struct Worker {
    id: usize,
    poll: Poll,
    shared: Arc<Shared>,
    /// The TCP listeners, each with the protocol it serves.
    listeners: Vec<(TcpListener, Protocol)>,
    /// The UDP listeners.
    datagrams: Vec<Datagrams>,
    /// Buffers for a batch of datagrams.
    batch: Batch,
    /// UDP listeners to serve again at the end of this turn.
    datagrams_again: Vec<usize>,
    /// inetd `dgram wait`: exit once no datagram came for `idle_timeout`;
    /// since when none has.
    until_idle: Option<Instant>,
    conns: Slab<Conn>,
    generation: u64,
    rt: Arc<Runtime>,
    buffers: Buffers,
    /// Connections to drive again at the end of this turn.
    again: Vec<usize>,
    accepting: Accepting,
    /// The phase this worker has acted on (the server's may be ahead).
    phase: Phase,
    /// Serving one inherited connection: exit when it is gone.
    single: bool,
    next_sweep: Instant,
    emfile_logged: Option<Instant>,
    /// TCP_NODELAY is set on every listener, so accepted sockets have it.
    nodelay_inherited: bool,
    /// The listeners were registered with `EPOLLEXCLUSIVE` (by hand, not by
    /// mio).
    listeners_exclusive: bool,
    /// Debug builds: the fault a test asked for.
    #[cfg(debug_assertions)]
    fault: Fault,
}

impl Worker {
    pub(crate) fn new(
        id: usize,
        poll: Poll,
        shared: Arc<Shared>,
        listeners: Vec<Listening>,
        connection: Option<(StdStream, Protocol)>,
        until_idle: bool,
    ) -> io::Result<Worker> {
        let (generation, rt) = shared.runtime();
        let mut w = Worker {
            id,
            poll,
            shared,
            listeners: Vec::new(),
            datagrams: Vec::new(),
            batch: Batch::new(),
            datagrams_again: Vec::new(),
            until_idle: until_idle.then(Instant::now),
            conns: Slab::new(),
            generation,
            rt,
            buffers: Buffers::new(),
            again: Vec::new(),
            accepting: Accepting::Open,
            phase: Phase::Serving,
            single: connection.is_some(),
            next_sweep: Instant::now() + SWEEP_EVERY,
            emfile_logged: None,
            nodelay_inherited: true,
            listeners_exclusive: cfg!(any(target_os = "linux", target_os = "android")),
            #[cfg(debug_assertions)]
            fault: Fault::from_env(),
        };
        for listening in listeners {
            let protocol = listening.protocol;
            let l = match listening.socket {
                Socket::Stream(l) => l,
                Socket::Datagram(u) => {
                    let mut d = Datagrams::new(u, protocol)?;
                    let token = Token(DATAGRAM_BASE + w.datagrams.len());
                    w.register_listener(d.socket_mut(), token)?;
                    w.datagrams.push(d);
                    continue;
                }
            };
            l.set_nonblocking(true)?;
            // Accepted sockets inherit it: no setsockopt per connection.
            w.nodelay_inherited &=
                NODELAY_INHERITED && socket2::SockRef::from(&l).set_tcp_nodelay(true).is_ok();
            let mut l = TcpListener::from_std(l);
            w.register_listener(&mut l, Token(LISTENER_BASE + w.listeners.len()))?;
            w.listeners.push((l, protocol));
        }
        if let Some((c, protocol)) = connection {
            c.set_nonblocking(true)?;
            let peer = c.peer_addr()?;
            w.admit(TcpStream::from_std(c), peer, protocol);
        }
        Ok(w)
    }

    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            // Before deciding it is finished: a stop takes the connections
            // waiting in the listen queue first (jamd(8), SIGTERM), or an empty
            // worker would return and its listener close and reset them.
            self.begin_draining();
            // Checked before waiting: an inherited connection may already be
            // finished (served and closed while the worker was set up).
            if self.finished() {
                return;
            }
            let timeout = self.timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.shared
                        .log
                        .error(format!("worker {}: poll failed: {e}", self.id));
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            self.refresh();
            // The watchdog's ping: this loop turns, so this worker is alive.
            self.shared.answer_ping(self.id);
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(t) if t >= LISTENER_BASE => self.accept(t - LISTENER_BASE),
                    Token(t) if t >= DATAGRAM_BASE => self.serve_datagrams(t - DATAGRAM_BASE),
                    Token(key) => {
                        if event.is_read_closed() || event.is_error() {
                            if let Some(conn) = self.conns.get_mut(key) {
                                conn.peer_closed();
                            }
                        }
                        self.drive(key)
                    }
                }
            }
            for key in std::mem::take(&mut self.again) {
                self.drive(key);
            }
            for i in std::mem::take(&mut self.datagrams_again) {
                self.serve_datagrams(i);
            }
            if self.accepting == Accepting::Again {
                self.accepting = Accepting::Open;
                for i in 0..self.listeners.len() {
                    self.accept(i);
                }
            }
            self.housekeeping();
        }
    }

    /// Nothing left to serve: draining and empty, or the one inherited
    /// connection is gone. Draining, not merely told to stop: only once
    /// housekeeping has closed the listeners are the connections that
    /// waited in their queue accepted (else they would be reset).
    fn finished(&self) -> bool {
        self.conns.is_empty()
            && (self.single || self.phase != Phase::Serving || self.idle_deadline_passed())
    }

    /// inetd `dgram wait`: when no datagram has come for `idle_timeout`
    /// (0: never), the worker is done.
    fn idle_deadline(&self) -> Option<Instant> {
        self.until_idle
            .zip(self.rt.config.server.idle_timeout)
            .map(|(since, idle)| since + idle)
    }

    fn idle_deadline_passed(&self) -> bool {
        self.idle_deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// Answers the datagrams queued on UDP listener `i`, for one turn.
    fn serve_datagrams(&mut self, i: usize) {
        // As for an accepted client: a reload in this turn applies now.
        self.refresh();
        let Some(d) = self.datagrams.get_mut(i) else {
            return;
        };
        if self.until_idle.is_some() {
            self.until_idle = Some(Instant::now());
        }
        let served = d.serve(&mut self.batch, &self.shared, &self.rt, self.id);
        if served == Served::More && !self.datagrams_again.contains(&i) {
            self.datagrams_again.push(i);
        }
    }

    fn timeout(&self) -> Duration {
        if !self.again.is_empty()
            || !self.datagrams_again.is_empty()
            || self.accepting == Accepting::Again
        {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let mut t = if self.conns.is_empty() {
            Duration::from_secs(3600)
        } else {
            self.next_sweep.saturating_duration_since(now)
        };
        if let Some(due) = self.idle_deadline() {
            t = t.min(due.saturating_duration_since(now));
        }
        if let Accepting::PausedUntil(until) = self.accepting {
            t = t.min(until.saturating_duration_since(now));
        }
        if let Some(due) = self.shared.refusals_deadline() {
            t = t.min(due.saturating_duration_since(now));
        }
        if let Some(due) = self.shared.admission.sweep_due() {
            t = t.min(due.saturating_duration_since(now));
        }
        t
    }

    /// Picks up a reloaded configuration.
    fn refresh(&mut self) {
        if self.shared.generation.load(Ordering::Acquire) == self.generation {
            return;
        }
        let (generation, rt) = self.shared.runtime();
        self.generation = generation;
        self.rt = rt;
        // Sources are counted only while a per-source rule is set; when a
        // reload sets one, the clients already connected count against it.
        if self.rt.per_source {
            for (_, conn) in self.conns.iter_mut() {
                conn.count_source(&self.rt);
            }
        }
    }

    fn scratch(&mut self) -> (&mut Slab<Conn>, Scratch<'_>) {
        let metrics = self.shared.metrics.worker(self.id);
        (&mut self.conns, self.buffers.lend(&self.rt, metrics))
    }

    fn drive(&mut self, key: usize) {
        let (conns, mut s) = self.scratch();
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        let next = conn.drive(&mut s);
        self.after(key, next);
    }

    /// The connection's client is admitted: its session may speak first.
    fn open(&mut self, key: usize) {
        let (conns, mut s) = self.scratch();
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        let next = conn.open(&mut s);
        self.after(key, next);
    }

    /// Carries out what driving a connection decided.
    fn after(&mut self, key: usize, next: Next) {
        match next {
            Next::Close(reason) => self.close(key, reason),
            Next::Again => self.again.push(key),
            Next::Wait => {
                let Some(conn) = self.conns.get_mut(key) else {
                    return;
                };
                if conn
                    .watch_writable(self.poll.registry(), Token(key))
                    .is_err()
                {
                    self.close(key, CloseReason::Error);
                }
            }
            Next::Header(header) => self.named(key, header),
            Next::BadHeader(why) => self.bad_header(key, why),
            // A plain TCP health check: no client, so no count.
            Next::Vanished => self.vanished(key),
        }
    }

    fn accept(&mut self, i: usize) {
        if matches!(
            self.accepting,
            Accepting::PausedUntil(_) | Accepting::Closed
        ) {
            return;
        }
        for _ in 0..ACCEPT_BURST {
            let Some((listener, protocol)) = self.listeners.get(i) else {
                return;
            };
            let protocol = *protocol;
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, protocol),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if out_of_descriptors(&e) => {
                    // Back off instead of spinning: the pending connections
                    // wait in the backlog until descriptors free up.
                    let now = Instant::now();
                    self.accepting = Accepting::PausedUntil(now + ACCEPT_BACKOFF);
                    if self
                        .emfile_logged
                        .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
                    {
                        self.emfile_logged = Some(now);
                        self.shared
                            .log
                            .warn(format!("cannot accept connections: {e}; pausing accepts"));
                    }
                    return;
                }
                Err(e) if transient_accept_error(&e) => continue,
                Err(e) => {
                    self.shared.log.error(format!("accept failed: {e}"));
                    self.accepting = Accepting::PausedUntil(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
        // More may be waiting: come back after the connections had a turn.
        self.accepting = Accepting::Again;
    }

    /// Serves a new connection if admission lets it in, or refuses it.
    ///
    /// A connection from a trusted balancer takes only its global
    /// slot here (the balancer is no source, and `[access]` is not asked
    /// about it) and enters the slab awaiting its PROXY header; the client
    /// the header names is admitted in [`Worker::named`].
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, protocol: Protocol) {
        // A reload put in effect while this turn ran (a burst of accepts
        // can outlast one) applies to the client accepted now: one atomic
        // load when nothing changed.
        self.refresh();
        #[cfg(debug_assertions)]
        self.fault.strike();
        let max_line = self.rt.config.server.max_line_bytes;
        let ticket = match self.shared.admission.arrive(&self.rt, peer.ip()) {
            Ok(ticket) => ticket,
            Err(refusal) => return self.refuse(stream, peer, protocol, refusal),
        };
        let trusted = ticket.awaits_client();
        // Replies are whole lines written at once: never hold them back.
        // Sockets accepted from our listeners have it already (Linux).
        if self.single || !self.nodelay_inherited {
            let _ = stream.set_nodelay(true);
        }
        let mut conn = if trusted {
            Conn::awaiting_header(stream, peer, ticket, protocol, max_line)
        } else {
            Conn::new(stream, Peer::Ip(peer), ticket, protocol, max_line)
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if conn.register(self.poll.registry(), Token(key)).is_err() {
            // Dropping it closes the socket and gives its slots back.
            return;
        }
        entry.insert(conn);
        if !trusted {
            self.announce(&self.conns[key]);
            self.open(key);
        }
        if self.single {
            // An inherited connection may have input waiting already.
            self.drive(key);
        }
    }

    /// A client is served from now on: `connection from CLIENT`, with
    /// `via BALANCER` when a PROXY header named it. A balancer's health
    /// check is no client: not counted, and logged only when asked for.
    fn announce(&self, conn: &Conn) {
        if conn.is_client() {
            self.shared.metrics.worker(self.id).accepted();
        }
        if self.logs(conn) {
            self.shared.log.info(conn.connection_line());
        }
    }

    /// Whether the `connection from` and `closed` lines are logged for
    /// this connection.
    fn logs(&self, conn: &Conn) -> bool {
        self.shared.log.connections() && (conn.is_client() || self.rt.config.log.health_checks)
    }

    /// A trusted balancer's header is complete: the client it names is
    /// admitted as if it had connected itself (`[access]`, its source's
    /// count and rate); a health check (`LOCAL`, `PROXY UNKNOWN`, a family
    /// other than TCP) is served as the balancer itself. Then the bytes
    /// that followed the header are answered.
    fn named(&mut self, key: usize, header: Header) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Peer::Ip(balancer) = *conn.peer() else {
            return;
        };
        match header {
            Header::Proxied { client, .. } => {
                self.shared
                    .metrics
                    .worker(self.id)
                    .proxy_header(ProxyHeader::Proxy);
                if let Err(refusal) = conn.ticket_mut().name_client(&self.rt, client.ip()) {
                    let conn = self.conns.remove(key);
                    conn.refuse(refusal);
                    self.refused(&client, refusal, None);
                    return;
                }
                conn.serve_as(client, Some(balancer));
            }
            Header::Local { .. } => {
                self.shared
                    .metrics
                    .worker(self.id)
                    .proxy_header(ProxyHeader::Local);
                conn.serve_as(balancer, None);
            }
        }
        self.announce(&self.conns[key]);
        self.open(key);
    }

    /// A trusted balancer's header is malformed, oversized or late: closed
    /// without a reply, and logged as a refusal of the balancer.
    fn bad_header(&mut self, key: usize, why: BadHeader) {
        let Some(conn) = self.conns.try_remove(key) else {
            return;
        };
        let result = match why {
            BadHeader::Late(_) => ProxyHeader::Timeout,
            BadHeader::Invalid(_) | BadHeader::Truncated => ProxyHeader::Invalid,
        };
        self.shared.metrics.worker(self.id).proxy_header(result);
        let peer = *conn.peer();
        conn.close(CloseReason::Error);
        if let Peer::Ip(balancer) = peer {
            self.refused(&balancer, Refusal::BadProxyHeader, Some(&why));
        }
    }

    fn refuse(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        protocol: Protocol,
        refusal: Refusal,
    ) {
        conn::refuse(stream, protocol.refusal(refusal));
        self.refused(&peer, refusal, None);
    }

    /// Logs a refusal: a debug line for each, and the rate-limited
    /// `refused ADDR: WHY` line (jamd(8)), with `detail` in parentheses.
    fn refused(&self, peer: &SocketAddr, refusal: Refusal, detail: Option<&BadHeader>) {
        self.shared.metrics.worker(self.id).refused(refusal);
        if self.shared.log.enabled(Level::Debug) {
            let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
            self.shared.log.debug(format!(
                "refused {}: {}{detail} (reason={}, open={})",
                show_addr(peer),
                refusal.words(),
                refusal.as_str(),
                self.shared.admission.open()
            ));
        }
        self.shared
            .log_refused(peer, refusal, detail.map(|d| d as &dyn std::fmt::Display));
    }

    /// A trusted balancer's connection closed before it sent a byte: a
    /// plain TCP health check, closed quietly (logged only when health
    /// checks are).
    fn vanished(&mut self, key: usize) {
        let Some(conn) = self.conns.try_remove(key) else {
            return;
        };
        if self.shared.log.connections() && self.rt.config.log.health_checks {
            self.shared.log.info(conn.connection_line());
            self.shared.log.info(conn.closed_line(CloseReason::Eof));
        }
        conn.close(CloseReason::Eof);
    }

    fn close(&mut self, key: usize, reason: CloseReason) {
        let Some(conn) = self.conns.try_remove(key) else {
            return;
        };
        // Closing the descriptor removes it from the poll set: connections
        // are never duplicated, so no deregister call is needed.
        // A connection still awaiting its PROXY header was never announced:
        // it leaves no line (and is no `closed` count).
        if conn.awaiting_since().is_some() {
            return conn.close(reason);
        }
        // Counted before the socket closes: when the client sees the close,
        // a scrape already shows it. A health check is no client.
        if conn.is_client() {
            self.shared.metrics.worker(self.id).closed(reason);
        }
        if self.logs(&conn) {
            self.shared.log.info(conn.closed_line(reason));
        }
        conn.close(reason);
    }

    /// Idle sweep, accept back-off, and shutdown.
    fn housekeeping(&mut self) {
        self.shared.refusals_tick(false);
        let now = Instant::now();
        self.shared.admission.sweep(now);
        if let Accepting::PausedUntil(until) = self.accepting {
            if now >= until {
                self.accepting = Accepting::Again;
            }
        }
        self.begin_draining();
        if self.phase == Phase::Draining && self.shared.phase() == Phase::GraceOver {
            self.phase = Phase::GraceOver;
            self.end_all(CloseReason::Shutdown);
        }
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_EVERY;
            self.sweep(now);
        }
    }

    /// SIGTERM arrived: accept what is queued, then close the listeners.
    fn begin_draining(&mut self) {
        if self.phase == Phase::Serving && self.shared.phase() != Phase::Serving {
            self.phase = Phase::Draining;
            self.close_listeners();
        }
    }

    fn close_listeners(&mut self) {
        // Connections the kernel has completed wait in the accept queue,
        // and closing the socket would reset them: a load balancer that
        // had connected counts them as served, so they would fail at the
        // client (the fleet of jamd(8)). Take them and serve them through the
        // grace period; later ones are refused, and a balancer retries
        // those elsewhere.
        if self.accepting != Accepting::Closed {
            self.accepting = Accepting::Open;
            for i in 0..self.listeners.len() {
                self.accept(i);
            }
        }
        self.accepting = Accepting::Closed;
        for (mut l, _) in std::mem::take(&mut self.listeners) {
            // The descriptor is shared with the other workers' duplicates, so
            // it must leave this poll set explicitly.
            self.deregister_listener(&mut l);
        }
        // The datagrams already queued are answered; later ones are not.
        for i in 0..self.datagrams.len() {
            self.serve_datagrams(i);
        }
        self.datagrams_again.clear();
        for mut d in std::mem::take(&mut self.datagrams) {
            self.deregister_listener(d.socket_mut());
        }
    }

    /// Watches a listener, as an exclusive waiter where the OS has them: the
    /// workers all watch the same listening sockets (duplicates of one), and
    /// without it every idle worker wakes for each new connection and all
    /// but one find nothing to accept.
    fn register_listener(
        &mut self,
        l: &mut (impl mio::event::Source + std::os::fd::AsRawFd),
        token: Token,
    ) -> io::Result<()> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if self.listeners_exclusive {
            match crate::sys::epoll_add_exclusive(&self.poll, l, token.0 as u64) {
                Ok(()) => return Ok(()),
                // Before Linux 4.5: the flag is unknown.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    self.listeners_exclusive = false
                }
                Err(e) => return Err(e),
            }
        }
        self.poll.registry().register(l, token, Interest::READABLE)
    }

    fn deregister_listener(&mut self, l: &mut (impl mio::event::Source + std::os::fd::AsRawFd)) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if self.listeners_exclusive {
            let _ = crate::sys::epoll_delete(&self.poll, l);
            return;
        }
        let _ = self.poll.registry().deregister(l);
    }

    fn end_all(&mut self, reason: CloseReason) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.end(key, reason);
        }
    }

    /// Ends a connection on the server's initiative.
    fn end(&mut self, key: usize, reason: CloseReason) {
        let (conns, mut s) = self.scratch();
        if let Some(conn) = conns.get_mut(key) {
            let next = conn.end(reason, &mut s);
            self.after(key, next);
        }
    }

    fn sweep(&mut self, now: Instant) {
        let idle = self.rt.config.server.idle_timeout;
        let limit = if self.phase == Phase::GraceOver {
            Duration::from_millis(500)
        } else {
            CLOSING_LIMIT
        };
        let header_timeout = self.rt.config.proxy.header_timeout;
        let mut idle_keys = Vec::new();
        let mut stuck = Vec::new();
        let mut late = Vec::new();
        for (key, conn) in self.conns.iter() {
            // A trusted balancer has `header_timeout` for its
            // header; the idle timer starts once a client is named.
            if let Some(since) = conn.awaiting_since() {
                if now.duration_since(since) >= header_timeout {
                    late.push(key);
                }
                continue;
            }
            match conn.closing(limit) {
                Some((reason, by)) if now >= by => stuck.push((key, reason)),
                Some(_) => {}
                None if idle.is_some_and(|idle| now.duration_since(conn.last_line()) >= idle) => {
                    idle_keys.push(key)
                }
                None => {}
            }
        }
        for (key, reason) in stuck {
            self.close(key, reason);
        }
        for key in late {
            self.bad_header(key, BadHeader::Late(header_timeout.as_secs()));
        }
        for key in idle_keys {
            // The socket first: requests that arrived while jamd could not
            // run (SIGSTOP, a paused container) are answered, not idled out
            // (jamd(8)). Driving reads them and resets the idle clock.
            self.drive(key);
            let still_idle = self.conns.get(key).is_some_and(|c| {
                c.closing(limit).is_none()
                    && idle.is_some_and(|idle| now.duration_since(c.last_line()) >= idle)
            });
            if still_idle {
                self.end(key, CloseReason::Idle);
            }
        }
    }
}

/// Debug builds only, never a release: `JAMD_TEST_FAULT=panic` (or `hang`)
/// makes a worker panic (or stop turning for good) when it admits a client,
/// so that tests/lifecycle.rs can show what jamd does about a dead or stuck
/// worker: nothing else can make one die on purpose. Read once, when the
/// worker starts, not on each admission.
#[cfg(debug_assertions)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Panic,
    Hang,
}

#[cfg(debug_assertions)]
impl Fault {
    fn from_env() -> Fault {
        match std::env::var("JAMD_TEST_FAULT").as_deref() {
            Ok("panic") => Fault::Panic,
            Ok("hang") => Fault::Hang,
            _ => Fault::None,
        }
    }

    fn strike(self) {
        match self {
            Fault::Panic => panic!("JAMD_TEST_FAULT=panic"),
            Fault::Hang => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            Fault::None => {}
        }
    }
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

fn transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED)
            | Some(libc::EINTR)
            | Some(libc::EPROTO)
            | Some(libc::EPERM)
            | Some(libc::ENETDOWN)
            | Some(libc::ENOPROTOOPT)
            | Some(libc::EHOSTDOWN)
            | Some(libc::ENONET)
            | Some(libc::EHOSTUNREACH)
            | Some(libc::EOPNOTSUPP)
            | Some(libc::ENETUNREACH)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener as StdListener;

    /// A loopback listener on a free port, non-blocking as the workers keep theirs.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn nonblocking_listener() -> (StdListener, SocketAddr) {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    #[test]
    fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        socket2::SockRef::from(&listener)
            .set_tcp_nodelay(true)
            .unwrap();
        let _client = StdStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        if NODELAY_INHERITED {
            assert!(accepted.nodelay().unwrap());
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn an_exclusive_listener_reports_mios_token_until_removed() {
        let (listener, addr) = nonblocking_listener();
        let mut poll = Poll::new().unwrap();
        let token = Token(LISTENER_BASE + 3);
        crate::sys::epoll_add_exclusive(&poll, &listener, token.0 as u64).unwrap();
        let mut events = Events::with_capacity(8);
        let _c1 = StdStream::connect(addr).unwrap();
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        let seen: Vec<_> = events
            .iter()
            .map(|e| (e.token(), e.is_readable()))
            .collect();
        assert_eq!(seen, vec![(token, true)]);
        listener.accept().unwrap();

        crate::sys::epoll_delete(&poll, &listener).unwrap();
        let _c2 = StdStream::connect(addr).unwrap();
        poll.poll(&mut events, Some(Duration::from_millis(200)))
            .unwrap();
        assert!(events.is_empty(), "a removed listener still reports events");
    }

    /// Two workers' poll sets wait on duplicates of one listener: a new
    /// connection wakes one of them, not both.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_new_connection_wakes_one_exclusive_waiter() {
        let (listener, addr) = nonblocking_listener();
        let mut woken = Vec::new();
        // A waiter that has not yet gone to sleep when the connection comes
        // also sees it; three tries make that all but impossible.
        for _ in 0..3 {
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let mut poll = Poll::new().unwrap();
                    let l = listener.try_clone().unwrap();
                    crate::sys::epoll_add_exclusive(&poll, &l, 7).unwrap();
                    std::thread::spawn(move || {
                        let mut events = Events::with_capacity(8);
                        poll.poll(&mut events, Some(Duration::from_secs(1)))
                            .unwrap();
                        drop(l);
                        !events.is_empty()
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(300));
            let _client = StdStream::connect(addr).unwrap();
            let n = waiters
                .into_iter()
                .map(|w| w.join().unwrap())
                .filter(|&w| w)
                .count();
            while listener.accept().is_ok() {}
            woken.push(n);
            if n == 1 {
                return;
            }
        }
        panic!("waiters woken per connection, three tries: {woken:?} (want 1)");
    }
}
