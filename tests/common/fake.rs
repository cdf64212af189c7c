//! An independent JAM server on a thread, for client tests: it answers
//! from its own clock (shifted at will), from any function of the clock at
//! each request (frozen, backwards, across a DST change; over a slow link),
//! or misbehaves on purpose. Listens on loopback only; every loop has a
//! deadline; stopped when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::wait::poll_until;

/// Longest any fake server or helper thread lives (jamc's watch runs
/// several checks against one server).
const SERVER_LIFETIME: Duration = Duration::from_secs(90);
pub use super::process::JAMC_BOUND;

/// What an [`Behaviour::Answer`] server sends for one TIME, made from this
/// machine's clock when the request was read; the bytes go out as they are.
pub type Answer = dyn Fn(DateTime<Utc>) -> Vec<u8> + Send + Sync;

/// How the fake server answers.
#[derive(Clone)]
pub enum Behaviour {
    /// Answers each TIME with `JAM ` + (UTC now + `utc_offset_secs` + `shift_ms`) in `format`.
    Clock {
        shift_ms: i64,
        utc_offset_secs: i32,
        format: &'static str,
    },
    /// Answers each TIME with these bytes and keeps the connection open.
    Reply(Vec<u8>),
    /// Answers the first TIME with these bytes, then closes.
    ReplyAndClose(Vec<u8>),
    /// Sends these bytes as soon as a client connects, then closes (like `ERROR server busy`).
    GreetAndClose(Vec<u8>),
    /// Reads requests and never answers.
    Stall,
    /// Answers each TIME with `answer(now)`, `delay` after reading it (a
    /// slow link: half before the clock is read, half after).
    Answer {
        answer: Arc<Answer>,
        delay: Duration,
    },
}

/// An independent JAM server on a std TcpListener thread, for one test.
pub struct FakeServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<(Instant, String)>>>,
    connections: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Starts on 127.0.0.1 with a kernel-chosen port.
    pub fn start(behaviour: Behaviour) -> FakeServer {
        FakeServer::start_on("127.0.0.1:0", behaviour).expect("bind 127.0.0.1:0")
    }

    /// Starts on `bind` (e.g. `[::1]:0`); None when that address cannot be bound.
    pub fn start_on(bind: &str, behaviour: Behaviour) -> Option<FakeServer> {
        let listener = TcpListener::bind(bind).ok()?;
        listener.set_nonblocking(true).ok()?;
        let addr = listener.local_addr().ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (s, r, c) = (stop.clone(), received.clone(), connections.clone());
        let thread = thread::spawn(move || accept_loop(listener, behaviour, s, r, c));
        Some(FakeServer {
            addr,
            stop,
            received,
            connections,
            thread: Some(thread),
        })
    }

    /// Starts on 127.0.0.1, answering each TIME with `answer(now)`.
    pub fn answering(
        answer: impl Fn(DateTime<Utc>) -> Vec<u8> + Send + Sync + 'static,
    ) -> FakeServer {
        FakeServer::answering_after(Duration::ZERO, answer)
    }

    /// Like [`FakeServer::answering`], each reply held back `delay`.
    pub fn answering_after(
        delay: Duration,
        answer: impl Fn(DateTime<Utc>) -> Vec<u8> + Send + Sync + 'static,
    ) -> FakeServer {
        FakeServer::start(Behaviour::Answer {
            answer: Arc::new(answer),
            delay,
        })
    }

    /// `127.0.0.1:PORT` / `[::1]:PORT`, as jamc takes it.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Every request line received so far, on all connections.
    pub fn received(&self) -> Vec<String> {
        self.received
            .lock()
            .map(|v| v.iter().map(|(_, line)| line.clone()).collect())
            .unwrap_or_default()
    }

    /// When each TIME request was read (requests that came in one read
    /// share its instant), in order.
    pub fn time_arrivals(&self) -> Vec<Instant> {
        self.received
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|(_, line)| line.eq_ignore_ascii_case("TIME"))
                    .map(|(at, _)| *at)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// TIME requests received so far, on all connections.
    pub fn requests(&self) -> usize {
        self.received()
            .iter()
            .filter(|l| l.eq_ignore_ascii_case("TIME"))
            .count()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `n` lines have been received; jamc's QUIT may land after it exits.
    pub fn wait_for_lines(&self, n: usize) -> Vec<String> {
        poll_until(Duration::from_secs(5), || {
            let lines = self.received();
            if lines.len() >= n {
                Ok(lines)
            } else {
                Err(lines)
            }
        })
        .unwrap_or_else(|lines| lines)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    behaviour: Behaviour,
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<(Instant, String)>>>,
    connections: Arc<AtomicUsize>,
) {
    let end = Instant::now() + SERVER_LIFETIME;
    let mut workers = Vec::new();
    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
        match listener.accept() {
            Ok((stream, _)) => {
                connections.fetch_add(1, Ordering::SeqCst);
                let (b, s, r) = (behaviour.clone(), stop.clone(), received.clone());
                workers.push(thread::spawn(move || serve(stream, b, s, r, end)));
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = w.join();
    }
}

fn serve(
    mut stream: TcpStream,
    behaviour: Behaviour,
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<(Instant, String)>>>,
    end: Instant,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    if let Behaviour::GreetAndClose(bytes) = &behaviour {
        let _ = stream.write_all(bytes);
        return;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
        let read_at = match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                Instant::now()
            }
            Err(_) => continue,
        };
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line).trim().to_string();
            if let Ok(mut r) = received.lock() {
                r.push((read_at, line.clone()));
            }
            if line.eq_ignore_ascii_case("QUIT") {
                return;
            }
            if !line.eq_ignore_ascii_case("TIME") {
                let _ = stream.write_all(b"ERROR unknown command\r\n");
                continue;
            }
            match &behaviour {
                Behaviour::Clock {
                    shift_ms,
                    utc_offset_secs,
                    format,
                } => {
                    let t = chrono::Utc::now().naive_utc()
                        + chrono::Duration::seconds(i64::from(*utc_offset_secs))
                        + chrono::Duration::milliseconds(*shift_ms);
                    let _ = stream.write_all(format!("JAM {}\r\n", t.format(format)).as_bytes());
                }
                Behaviour::Reply(bytes) => {
                    let _ = stream.write_all(bytes);
                }
                Behaviour::ReplyAndClose(bytes) => {
                    let _ = stream.write_all(bytes);
                    return;
                }
                Behaviour::Answer { answer, delay } => {
                    thread::sleep(*delay / 2);
                    let reply = answer(Utc::now());
                    thread::sleep(*delay / 2);
                    if stream.write_all(&reply).is_err() {
                        return;
                    }
                }
                Behaviour::Stall => {}
                Behaviour::GreetAndClose(_) => return,
            }
        }
    }
}

/// A 127.0.0.1 port nobody listens on right now (it may be taken by the
/// time it is used: for servers that must bind it themselves).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A 127.0.0.1 port where connections are refused: a socket is bound to it
/// but never listens, and it stays bound (so no parallel test can take the
/// port) until the returned socket is dropped.
pub fn closed_port() -> (u16, socket2::Socket) {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    sock.bind(&any.into()).expect("bind");
    let port = sock
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .expect("bound port");
    (port, sock)
}
