//! One event-loop worker: accepts from the shared listeners, drives its own
//! connections, sweeps idle ones, and drains them at shutdown.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::conn::{CloseReason, Conn, Next, Scratch};
use super::{lock, Runtime, Shared};
use crate::clock::ClockCache;
use crate::listen::{show_addr, source_ip};
use crate::protocol::ErrorReply;

/// The token of the waker the control loop uses.
pub(crate) const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 1024;

/// Connections accepted per listener per turn before others get a turn.
const ACCEPT_BURST: usize = 64;
/// How often idle connections are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// How long accepting pauses after running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a closing connection may take to take its last bytes.
const CLOSING_LIMIT: Duration = Duration::from_secs(5);
/// Whether an accepted socket inherits TCP_NODELAY from its listener, as on
/// Linux; elsewhere it is set on each connection.
const NODELAY_INHERITED: bool = cfg!(any(target_os = "linux", target_os = "android"));

pub(crate) struct Worker {
    id: usize,
    poll: Poll,
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    conns: Slab<Conn>,
    generation: u64,
    rt: Arc<Runtime>,
    cache: ClockCache,
    read_buf: Box<[u8]>,
    out_buf: Vec<u8>,
    again: Vec<usize>,
    accept_again: bool,
    accept_paused_until: Option<Instant>,
    /// Serving one inherited connection: exit when it is gone.
    single: bool,
    next_sweep: Instant,
    listeners_closed: bool,
    grace_handled: bool,
    emfile_logged: Option<Instant>,
    /// TCP_NODELAY is set on every listener, so accepted sockets have it.
    nodelay_inherited: bool,
    /// The listeners were registered with `EPOLLEXCLUSIVE` (by hand, not by
    /// mio).
    listeners_exclusive: bool,
}

impl Worker {
    pub(crate) fn new(
        id: usize,
        poll: Poll,
        shared: Arc<Shared>,
        listeners: Vec<StdListener>,
        connection: Option<StdStream>,
    ) -> io::Result<Worker> {
        let (generation, rt) = shared.runtime();
        let mut w = Worker {
            id,
            poll,
            shared,
            listeners: Vec::new(),
            conns: Slab::new(),
            generation,
            rt,
            cache: ClockCache::new(),
            read_buf: vec![0u8; 4096].into_boxed_slice(),
            out_buf: Vec::with_capacity(4096),
            again: Vec::new(),
            accept_again: false,
            accept_paused_until: None,
            single: connection.is_some(),
            next_sweep: Instant::now() + SWEEP_EVERY,
            listeners_closed: false,
            grace_handled: false,
            emfile_logged: None,
            nodelay_inherited: true,
            listeners_exclusive: cfg!(any(target_os = "linux", target_os = "android")),
        };
        for (i, l) in listeners.into_iter().enumerate() {
            l.set_nonblocking(true)?;
            // Accepted sockets inherit it: no setsockopt per connection.
            w.nodelay_inherited &=
                NODELAY_INHERITED && socket2::SockRef::from(&l).set_tcp_nodelay(true).is_ok();
            let mut l = TcpListener::from_std(l);
            w.register_listener(&mut l, Token(LISTENER_BASE + i))?;
            w.listeners.push(l);
        }
        if let Some(c) = connection {
            c.set_nonblocking(true)?;
            let peer = c.peer_addr()?;
            w.admit(TcpStream::from_std(c), peer);
        }
        Ok(w)
    }

    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
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
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(t) if t >= LISTENER_BASE => self.accept(t - LISTENER_BASE),
                    Token(key) => {
                        if event.is_read_closed() || event.is_error() {
                            if let Some(conn) = self.conns.get_mut(key) {
                                conn.peer_closed = true;
                            }
                        }
                        self.drive(key)
                    }
                }
            }
            for key in std::mem::take(&mut self.again) {
                self.drive(key);
            }
            if self.accept_again && self.accept_paused_until.is_none() {
                self.accept_again = false;
                for i in 0..self.listeners.len() {
                    self.accept(i);
                }
            }
            self.housekeeping();
        }
    }

    /// Nothing left to serve: draining and empty, or the one inherited
    /// connection is gone.
    fn finished(&self) -> bool {
        self.conns.is_empty() && (self.single || self.shared.stopping.load(Ordering::Acquire))
    }

    fn timeout(&self) -> Duration {
        if !self.again.is_empty() || (self.accept_again && self.accept_paused_until.is_none()) {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let mut t = if self.conns.is_empty() {
            Duration::from_secs(3600)
        } else {
            self.next_sweep.saturating_duration_since(now)
        };
        if let Some(until) = self.accept_paused_until {
            t = t.min(until.saturating_duration_since(now));
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
        let max_line = self.rt.config.server.max_line_bytes;
        for (_, conn) in self.conns.iter_mut() {
            conn.set_max_line_bytes(max_line);
        }
        // Sources are counted only while a per-source limit is set; when a
        // reload sets one, the clients already connected count against it.
        if self.rt.config.server.max_connections_per_source > 0
            && self.conns.iter().any(|(_, c)| !c.source_counted)
        {
            let mut table = lock(&self.shared.per_source);
            for (_, conn) in self.conns.iter_mut() {
                if !conn.source_counted {
                    *table.entry(source_ip(&conn.peer)).or_insert(0) += 1;
                    conn.source_counted = true;
                }
            }
        }
    }

    fn scratch(&mut self) -> (&mut Slab<Conn>, Scratch<'_>) {
        (
            &mut self.conns,
            Scratch {
                read: &mut self.read_buf,
                out: &mut self.out_buf,
                cache: &mut self.cache,
                clock: &self.rt.clock,
            },
        )
    }

    fn drive(&mut self, key: usize) {
        let (conns, mut s) = self.scratch();
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        let next = conn.drive(&mut s);
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
                if conn.has_pending() && !conn.wants_write {
                    conn.wants_write = true;
                    let r = self.poll.registry().reregister(
                        &mut conn.stream,
                        Token(key),
                        Interest::READABLE | Interest::WRITABLE,
                    );
                    if r.is_err() {
                        self.close(key, CloseReason::Error);
                    }
                }
            }
        }
    }

    fn accept(&mut self, i: usize) {
        if self.accept_paused_until.is_some() || self.listeners_closed {
            return;
        }
        for _ in 0..ACCEPT_BURST {
            let Some(listener) = self.listeners.get(i) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if out_of_descriptors(&e) => {
                    // Back off instead of spinning: the pending connections
                    // wait in the backlog until descriptors free up.
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    self.accept_again = true;
                    let now = Instant::now();
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
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    self.accept_again = true;
                    return;
                }
            }
        }
        // More may be waiting: come back after the connections had a turn.
        self.accept_again = true;
    }

    /// Admits a new connection, or refuses it when a limit is reached.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let limits = &self.rt.config.server;
        let open = self.shared.open.fetch_add(1, Ordering::AcqRel) + 1;
        if open > limits.max_connections {
            self.shared.open.fetch_sub(1, Ordering::AcqRel);
            return self.refuse(stream, peer);
        }
        let mut source_counted = false;
        if limits.max_connections_per_source > 0 {
            let mut table = lock(&self.shared.per_source);
            let count = table.entry(source_ip(&peer)).or_insert(0);
            if *count >= limits.max_connections_per_source {
                drop(table);
                self.shared.open.fetch_sub(1, Ordering::AcqRel);
                return self.refuse(stream, peer);
            }
            *count += 1;
            source_counted = true;
        }
        // Replies are whole lines written at once: never hold them back.
        // Sockets accepted from our listeners have it already (Linux).
        if self.single || !self.nodelay_inherited {
            let _ = stream.set_nodelay(true);
        }
        let mut conn = Conn::new(stream, peer, limits.max_line_bytes);
        conn.source_counted = source_counted;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if self
            .poll
            .registry()
            .register(&mut conn.stream, Token(key), Interest::READABLE)
            .is_err()
        {
            self.release(&conn);
            return;
        }
        if self.shared.log.connections() {
            self.shared
                .log
                .info(format!("connection from {}", show_addr(&peer)));
        }
        entry.insert(conn);
        if self.single {
            // An inherited connection may have input waiting already.
            self.drive(key);
        }
    }

    fn refuse(&mut self, stream: TcpStream, peer: SocketAddr) {
        let mut conn = Conn::new(stream, peer, 0);
        let (_, mut s) = self.scratch();
        let _ = conn.end_with(ErrorReply::ServerBusy, CloseReason::Error, &mut s);
        conn.close(CloseReason::Shutdown);
        self.shared.log_refused(&peer);
    }

    /// Undoes the counts a connection holds.
    fn release(&self, conn: &Conn) {
        self.shared.open.fetch_sub(1, Ordering::AcqRel);
        if conn.source_counted {
            let mut table = lock(&self.shared.per_source);
            let ip = source_ip(&conn.peer);
            if let Some(count) = table.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    table.remove(&ip);
                }
            }
        }
    }

    fn close(&mut self, key: usize, reason: CloseReason) {
        let Some(conn) = self.conns.try_remove(key) else {
            return;
        };
        // Closing the descriptor removes it from the poll set: connections
        // are never duplicated, so no deregister call is needed.
        self.release(&conn);
        if self.shared.log.connections() {
            self.shared.log.info(format!(
                "closed {} requests={} duration_ms={} reason={}",
                show_addr(&conn.peer),
                conn.requests,
                conn.opened.elapsed().as_millis(),
                reason
            ));
        }
        conn.close(reason);
    }

    /// Idle sweep, accept back-off, and shutdown.
    fn housekeeping(&mut self) {
        let now = Instant::now();
        if let Some(until) = self.accept_paused_until {
            if now >= until {
                self.accept_paused_until = None;
            }
        }
        if self.shared.stopping.load(Ordering::Acquire) && !self.listeners_closed {
            self.close_listeners();
        }
        if self.shared.grace_over.load(Ordering::Acquire) && !self.grace_handled {
            self.grace_handled = true;
            self.end_all(ErrorReply::ShuttingDown, CloseReason::Shutdown);
        }
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_EVERY;
            self.sweep(now);
        }
    }

    fn close_listeners(&mut self) {
        self.listeners_closed = true;
        self.accept_again = false;
        for mut l in std::mem::take(&mut self.listeners) {
            // The descriptor is shared with the other workers' duplicates, so
            // it must leave this poll set explicitly.
            self.deregister_listener(&mut l);
        }
    }

    /// Watches a listener, as an exclusive waiter where the OS has them: the
    /// workers all watch the same listening sockets (duplicates of one), and
    /// without it every idle worker wakes for each new connection and all
    /// but one find nothing to accept.
    fn register_listener(&mut self, l: &mut TcpListener, token: Token) -> io::Result<()> {
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

    fn deregister_listener(&mut self, l: &mut TcpListener) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if self.listeners_exclusive {
            let _ = crate::sys::epoll_delete(&self.poll, l);
            return;
        }
        let _ = self.poll.registry().deregister(l);
    }

    fn end_all(&mut self, reply: ErrorReply, reason: CloseReason) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let (conns, mut s) = self.scratch();
            if let Some(conn) = conns.get_mut(key) {
                let next = conn.end_with(reply, reason, &mut s);
                self.after(key, next);
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        let idle = Duration::from_secs(self.rt.config.server.idle_timeout);
        let grace_over = self.grace_handled;
        let mut idle_keys = Vec::new();
        let mut stuck = Vec::new();
        for (key, conn) in self.conns.iter() {
            match conn.closing_since {
                Some(since) => {
                    let limit = if grace_over {
                        Duration::from_millis(500)
                    } else {
                        CLOSING_LIMIT
                    };
                    if now.duration_since(since) >= limit {
                        stuck.push((key, conn.closing.unwrap_or(CloseReason::Error)));
                    }
                }
                None if !idle.is_zero() && now.duration_since(conn.last_line) >= idle => {
                    idle_keys.push(key)
                }
                None => {}
            }
        }
        for (key, reason) in stuck {
            self.close(key, reason);
        }
        for key in idle_keys {
            let (conns, mut s) = self.scratch();
            if let Some(conn) = conns.get_mut(key) {
                let next = conn.end_with(ErrorReply::IdleTimeout, CloseReason::Idle, &mut s);
                self.after(key, next);
            }
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
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
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
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
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
