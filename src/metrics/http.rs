//! The `/metrics` endpoint: just enough HTTP/1.x for a scraper, on a thread
//! and a listening socket of its own.
//!
//! Why its own thread: the workers never see the metrics socket, so a scrape
//! (or a hostile client of the metrics port) cannot delay a JAM client, and
//! the control loop, which sleeps until a signal arrives, stays free for
//! signals and reloads. The thread is one small event loop (mio), so a slow
//! scraper does not hold up another one either; it sleeps when nothing is
//! going on.
//!
//! Bounds: a request head of at most [`MAX_HEAD`] bytes, complete within
//! [`HEAD_TIMEOUT`]; at most [`MAX_CLIENTS`] connections at once; one
//! request per connection, then close. A new connection always gets in:
//! when every place is taken, the connection that has waited longest is
//! closed for it, so clients that connect and say little (or nothing)
//! cannot keep a scraper out, however many there are: a scraper sends its
//! request as it connects and is answered at once.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener as StdListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

/// The longest request head (request line and headers) read.
pub const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its whole request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections held at once; the one that has waited longest makes room
/// for a new one.
pub const MAX_CLIENTS: usize = 64;
/// How long a client has to take the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// After the response, how long the client may take to close its side, so
/// that our close ends with FIN rather than a reset that could destroy the
/// response before it is read.
const LINGER: Duration = Duration::from_secs(1);
/// The most unread input drained after the response.
const LINGER_BYTES: usize = 64 * 1024;
/// How long accepting pauses after running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);

/// Where a complete request head ends (just past its empty line), if it is
/// complete. Empty lines before the request line are skipped, as RFC 9112
/// asks; a bare LF ends a line as well as CR LF.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    let mut seen_request_line = false;
    while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        start += nl + 1;
        if !line.is_empty() {
            seen_request_line = true;
        } else if seen_request_line {
            return Some(start);
        }
    }
    None
}

/// What a request asks for, as far as this endpoint cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `GET /metrics` (or `HEAD`): 200 and the metrics.
    Metrics,
    /// Another path: 404.
    NotFound,
    /// Another method on `/metrics`: 405.
    MethodNotAllowed,
    /// An HTTP version other than 1.0 and 1.1: 505.
    VersionNotSupported,
    /// Not an HTTP/1.x request line: 400.
    BadRequest,
}

impl Answer {
    fn status(self) -> &'static str {
        match self {
            Answer::Metrics => "200 OK",
            Answer::NotFound => "404 Not Found",
            Answer::MethodNotAllowed => "405 Method Not Allowed",
            Answer::VersionNotSupported => "505 HTTP Version Not Supported",
            Answer::BadRequest => "400 Bad Request",
        }
    }
}

/// A parsed request line: what to answer and the minor HTTP version to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// What to answer.
    pub answer: Answer,
    /// 0 for HTTP/1.0, 1 otherwise: the response speaks the client's version.
    pub minor: u8,
    /// `HEAD`: the response's head only, as a `GET` would have it.
    pub head: bool,
}

/// Reads the request line of a complete head. Header fields are not needed
/// to answer and are not looked at.
pub fn parse_request(head: &[u8]) -> Request {
    let bad = Request {
        answer: Answer::BadRequest,
        minor: 1,
        head: false,
    };
    let Some(line) = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .find(|l| !l.is_empty())
    else {
        return bad;
    };
    let Ok(line) = std::str::from_utf8(line) else {
        return bad;
    };
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return bad;
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if !token(method) || !token(target) {
        return bad;
    }
    let minor = match version {
        "HTTP/1.0" => 0,
        "HTTP/1.1" => 1,
        v if v.starts_with("HTTP/") => {
            return Request {
                answer: Answer::VersionNotSupported,
                minor: 1,
                head: method == "HEAD",
            }
        }
        _ => return bad,
    };
    let head = method == "HEAD";
    let answer = if path(target) != Some("/metrics") {
        Answer::NotFound
    } else if method != "GET" && !head {
        Answer::MethodNotAllowed
    } else {
        Answer::Metrics
    };
    Request {
        answer,
        minor,
        head,
    }
}

/// The path of a request target: origin form (`/metrics?x=1`) or absolute
/// form (`http://host:9645/metrics`), query left off.
fn path(target: &str) -> Option<&str> {
    let target = match target.split_once("://") {
        Some((_scheme, rest)) => &rest[rest.find('/')?..],
        None => target,
    };
    let path = target.split(['?', '#']).next().unwrap_or(target);
    path.starts_with('/').then_some(path)
}

/// The whole response for `request`; `body` writes the metrics when asked
/// (also for `HEAD`, whose response says how long the body would be).
pub fn response(request: Request, body: &mut dyn FnMut(&mut String)) -> Vec<u8> {
    let mut text = String::new();
    let content_type = match request.answer {
        Answer::Metrics => {
            body(&mut text);
            CONTENT_TYPE
        }
        other => {
            text.push_str(match other {
                Answer::NotFound => "Not found: metrics are at /metrics.\n",
                Answer::MethodNotAllowed => "Only GET and HEAD are allowed here.\n",
                Answer::VersionNotSupported => "Only HTTP/1.0 and HTTP/1.1 are spoken here.\n",
                _ => "Bad request.\n",
            });
            "text/plain; charset=utf-8"
        }
    };
    let allow = if request.answer == Answer::MethodNotAllowed {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.{} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        request.minor,
        request.answer.status(),
        text.len()
    )
    .into_bytes();
    if !request.head {
        out.extend_from_slice(text.as_bytes());
    }
    out
}

/// Where a scrape connection is.
enum Step {
    /// Reading the request head.
    Head(Vec<u8>),
    /// Writing the response.
    Write { out: Vec<u8>, done: usize },
    /// Response written and our side shut: waiting for the client's FIN.
    Linger { drained: usize },
}

struct Client {
    stream: TcpStream,
    phase: Step,
    deadline: Instant,
    /// When it was accepted: the oldest makes room when every place is taken.
    since: Instant,
}

/// Writes the metrics text of one scrape.
pub type Body = Box<dyn FnMut(&mut String) + Send>;
/// Reports a problem worth a log line (the thread has no logger of its own).
pub type Warn = Box<dyn Fn(String) + Send>;

/// The running endpoint. Dropping it stops the thread.
pub struct Endpoint {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// Serves `/metrics` on `listener` from a new thread.
    pub fn start(listener: StdListener, body: Body, warn: Warn) -> io::Result<Endpoint> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = Arc::new(AtomicBool::new(false));
        let server = Server {
            poll,
            listener,
            clients: Slab::with_capacity(MAX_CLIENTS),
            body,
            warn,
            stop: Arc::clone(&stop),
            accept_paused_until: None,
        };
        let thread = thread::Builder::new()
            .name("jamd-metrics".into())
            .spawn(move || server.run())?;
        Ok(Endpoint {
            stop,
            waker,
            thread: Some(thread),
        })
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Server {
    poll: Poll,
    listener: TcpListener,
    clients: Slab<Client>,
    body: Body,
    warn: Warn,
    stop: Arc<AtomicBool>,
    accept_paused_until: Option<Instant>,
}

impl Server {
    fn run(mut self) {
        let mut events = Events::with_capacity(64);
        while !self.stop.load(Ordering::SeqCst) {
            let timeout = self.timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    (self.warn)(format!("metrics: poll failed: {e}"));
                    thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    LISTENER => self.accept(now),
                    Token(key) => self.drive(key, now),
                }
            }
            self.expire(now);
        }
    }

    /// Asleep until the nearest deadline; for ever when nobody is connected.
    fn timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut next = self.accept_paused_until;
        for (_, c) in self.clients.iter() {
            next = Some(next.map_or(c.deadline, |n| n.min(c.deadline)));
        }
        next.map(|t| t.saturating_duration_since(now))
    }

    fn expire(&mut self, now: Instant) {
        if self.accept_paused_until.is_some_and(|t| now >= t) {
            self.accept_paused_until = None;
            // Edge-triggered: connections that waited meanwhile bring no event.
            self.accept(now);
        }
        let late: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| now >= c.deadline)
            .map(|(k, _)| k)
            .collect();
        for key in late {
            self.clients.remove(key);
        }
    }

    /// Every place is taken: the connection that has waited longest gives
    /// its place to a new one.
    fn make_room(&mut self) {
        let oldest = self
            .clients
            .iter()
            .min_by_key(|(_, c)| c.since)
            .map(|(k, _)| k);
        if let Some(key) = oldest {
            self.clients.remove(key);
        }
    }

    fn accept(&mut self, now: Instant) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.clients.len() >= MAX_CLIENTS {
                        self.make_room();
                    }
                    self.admit(stream, now)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // Out of descriptors or worse: let the backlog wait.
                    (self.warn)(format!("metrics: cannot accept a connection: {e}"));
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, now: Instant) {
        let entry = self.clients.vacant_entry();
        let key = entry.key();
        if self
            .poll
            .registry()
            .register(
                &mut stream,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            return;
        }
        entry.insert(Client {
            stream,
            phase: Step::Head(Vec::new()),
            deadline: now + HEAD_TIMEOUT,
            since: now,
        });
        // A scraper's request usually came with its connection: answered
        // now, it cannot be pushed out by connections that come after it.
        self.drive(key, now);
    }

    fn drive(&mut self, key: usize, now: Instant) {
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        if !client.advance(&mut self.body, now) {
            self.clients.remove(key);
        }
    }
}

impl Client {
    /// Moves the connection on as far as the socket allows; false when it is
    /// finished (or broken) and is to be closed.
    fn advance(&mut self, body: &mut Body, now: Instant) -> bool {
        loop {
            match &mut self.phase {
                Step::Head(head) => {
                    let mut buf = [0u8; 1024];
                    match self.stream.read(&mut buf) {
                        Ok(0) => return false,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => return false,
                    }
                    match head_end(head) {
                        Some(end) if end <= MAX_HEAD => {
                            let out = response(parse_request(&head[..end]), body);
                            self.phase = Step::Write { out, done: 0 };
                            self.deadline = now + WRITE_TIMEOUT;
                        }
                        // Too long: closed without a word (jamd.toml(5)).
                        Some(_) => return false,
                        None if head.len() >= MAX_HEAD => return false,
                        None => {}
                    }
                }
                Step::Write { out, done } => match self.stream.write(&out[*done..]) {
                    Ok(0) => return false,
                    Ok(n) => {
                        *done += n;
                        if *done == out.len() {
                            let _ = self.stream.shutdown(Shutdown::Write);
                            self.phase = Step::Linger { drained: 0 };
                            self.deadline = now + LINGER;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                },
                Step::Linger { drained } => {
                    let mut sink = [0u8; 4096];
                    match self.stream.read(&mut sink) {
                        Ok(0) => return false,
                        Ok(n) => {
                            *drained += n;
                            if *drained > LINGER_BYTES {
                                return false;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return false,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn answer(head: &str) -> Answer {
        parse_request(head.as_bytes()).answer
    }

    #[test]
    fn a_head_ends_at_its_first_empty_line() {
        let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(head_end(head), Some(head.len()));
        assert_eq!(head_end(b"GET /metrics HTTP/1.0\n\n"), Some(23));
        assert_eq!(head_end(b"GET /metrics HTTP/1.0\r\n\r\nrest"), Some(25));
        // Empty lines before the request line do not end it.
        assert_eq!(head_end(b"\r\n\r\nGET / HTTP/1.0\r\n\r\n"), Some(22));
        assert_eq!(head_end(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_end(b"GET /metrics HTTP/1.1\r\n\r"), None);
        assert_eq!(head_end(b""), None);
        assert_eq!(head_end(b"\r\n\r\n"), None);
    }

    #[test]
    fn get_metrics_in_http_1_0_and_1_1() {
        let r = parse_request(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!(
            r,
            Request {
                answer: Answer::Metrics,
                minor: 1,
                head: false,
            }
        );
        let r = parse_request(b"GET /metrics HTTP/1.0\r\n\r\n");
        assert_eq!(
            r,
            Request {
                answer: Answer::Metrics,
                minor: 0,
                head: false,
            }
        );
        assert_eq!(answer("GET /metrics?x=1 HTTP/1.1\r\n\r\n"), Answer::Metrics);
        assert_eq!(
            answer("GET http://127.0.0.1:9645/metrics HTTP/1.1\r\n\r\n"),
            Answer::Metrics
        );
        assert_eq!(answer("\r\nGET /metrics HTTP/1.1\n\n"), Answer::Metrics);
    }

    #[test]
    fn other_paths_methods_and_versions() {
        assert_eq!(answer("GET / HTTP/1.1\r\n\r\n"), Answer::NotFound);
        assert_eq!(answer("GET /metrics/ HTTP/1.1\r\n\r\n"), Answer::NotFound);
        assert_eq!(answer("GET /metricsx HTTP/1.1\r\n\r\n"), Answer::NotFound);
        assert_eq!(answer("POST /other HTTP/1.1\r\n\r\n"), Answer::NotFound);
        assert_eq!(
            answer("POST /metrics HTTP/1.1\r\n\r\n"),
            Answer::MethodNotAllowed
        );
        let head = parse_request(b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert_eq!((head.answer, head.head), (Answer::Metrics, true));
        // Methods are case-sensitive.
        assert_eq!(
            answer("get /metrics HTTP/1.1\r\n\r\n"),
            Answer::MethodNotAllowed
        );
        assert_eq!(
            answer("GET /metrics HTTP/2.0\r\n\r\n"),
            Answer::VersionNotSupported
        );
        assert_eq!(
            answer("GET /metrics HTTP/0.9\r\n\r\n"),
            Answer::VersionNotSupported
        );
    }

    #[test]
    fn what_is_not_a_request_line_is_a_bad_request() {
        for head in [
            "GET /metrics\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1 extra\r\n\r\n",
            "GET /metrics FTP/1.1\r\n\r\n",
            "TIME\r\n\r\n",
            "\r\n\r\n",
        ] {
            assert_eq!(answer(head), Answer::BadRequest, "{head:?}");
        }
        assert_eq!(
            parse_request(b"GET /m\xffetrics HTTP/1.1\r\n\r\n").answer,
            Answer::BadRequest
        );
    }

    #[test]
    fn responses_carry_status_type_length_and_close() {
        let ok = response(
            Request {
                answer: Answer::Metrics,
                minor: 0,
                head: false,
            },
            &mut |s| s.push_str("m 1\n"),
        );
        assert_eq!(
            String::from_utf8(ok).unwrap(),
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: 4\r\nConnection: close\r\n\r\nm 1\n"
        );
        let mut called = false;
        let nf = response(
            Request {
                answer: Answer::NotFound,
                minor: 1,
                head: false,
            },
            &mut |_| called = true,
        );
        let nf = String::from_utf8(nf).unwrap();
        assert!(!called, "a 404 does not render the metrics");
        assert!(nf.starts_with("HTTP/1.1 404 Not Found\r\n"));
        let (head, body) = nf.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let na = response(
            Request {
                answer: Answer::MethodNotAllowed,
                minor: 1,
                head: false,
            },
            &mut |_| {},
        );
        let na = String::from_utf8(na).unwrap();
        assert!(na.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(na.contains("\r\nAllow: GET, HEAD\r\n"));
        let head = response(
            Request {
                answer: Answer::Metrics,
                minor: 1,
                head: true,
            },
            &mut |s| s.push_str("m 1\n"),
        );
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: 4\r\nConnection: close\r\n\r\n",
            "HEAD: the head a GET gets, no body"
        );
    }

    /// A running endpoint and the address it listens on.
    fn endpoint() -> (Endpoint, SocketAddr) {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let e = Endpoint::start(
            listener,
            Box::new(|s: &mut String| s.push_str("up 1\n")),
            Box::new(|_| {}),
        )
        .unwrap();
        (e, addr)
    }

    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    }

    #[test]
    fn the_endpoint_answers_and_closes() {
        let (_e, addr) = endpoint();
        let reply = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.ends_with("\r\n\r\nup 1\n"), "{reply}");
        let reply = exchange(addr, b"GET /nope HTTP/1.0\r\n\r\n");
        assert!(reply.starts_with("HTTP/1.0 404 "), "{reply}");
    }

    #[test]
    fn an_oversized_head_is_closed_without_a_reply() {
        let (_e, addr) = endpoint();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = b"GET /metrics HTTP/1.1\r\n".to_vec();
        while head.len() <= MAX_HEAD {
            head.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        // The server may close (and reset) before it all arrives.
        let _ = s.write_all(&head);
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
    }

    #[test]
    fn a_crowd_that_says_nothing_does_not_keep_a_scrape_out() {
        let (_e, addr) = endpoint();
        let crowd: Vec<_> = (0..MAX_CLIENTS * 2)
            .map(|_| {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x").unwrap();
                c
            })
            .collect();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        // Well within the crowd's HEAD_TIMEOUT: nobody had to time out.
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        drop(crowd);
    }
}
