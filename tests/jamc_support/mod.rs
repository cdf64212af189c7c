//! Helpers for tests/jamc.rs: an independent JAM server that can misbehave,
//! the real jamd started on a kernel-chosen port, and running jamc with a bound.
//!
//! Everything listens on loopback only; every loop has a deadline; every
//! process started here is killed by its handle (its pid) when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Longest any fake server or helper thread lives.
const SERVER_LIFETIME: Duration = Duration::from_secs(60);
/// Longest a jamc run may take before the test kills it and fails.
pub const JAMC_BOUND: Duration = Duration::from_secs(20);

/// How the fake server answers.
#[derive(Clone, Debug)]
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
}

/// An independent JAM server on a std TcpListener thread, for one test.
pub struct FakeServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<String>>>,
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

    /// `127.0.0.1:PORT` / `[::1]:PORT`, as jamc takes it.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Every request line received so far, on all connections.
    pub fn received(&self) -> Vec<String> {
        self.received.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `n` lines have been received; jamc's QUIT may land after it exits.
    pub fn wait_for_lines(&self, n: usize) -> Vec<String> {
        let end = Instant::now() + Duration::from_secs(5);
        while self.received().len() < n && Instant::now() < end {
            thread::sleep(Duration::from_millis(10));
        }
        self.received()
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
    received: Arc<Mutex<Vec<String>>>,
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
    received: Arc<Mutex<Vec<String>>>,
    end: Instant,
) {
    let _ = stream.set_nonblocking(false);
    if let Behaviour::GreetAndClose(bytes) = &behaviour {
        let _ = stream.write_all(bytes);
        return;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line).trim().to_string();
            if let Ok(mut r) = received.lock() {
                r.push(line.clone());
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
                Behaviour::Stall => {}
                Behaviour::GreetAndClose(_) => return,
            }
        }
    }
}

/// What a jamc run gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Runs jamc with `args`, killing it (and failing) if it outlives [`JAMC_BOUND`].
pub fn jamc(args: &[&str]) -> Run {
    run_bounded(
        Command::new(env!("CARGO_BIN_EXE_jamc")).args(args),
        JAMC_BOUND,
    )
}

/// Runs any command with a bound; stdout and stderr are read on helper threads.
pub fn run_bounded(cmd: &mut Command, bound: Duration) -> Run {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let drain = |r: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut s);
            }
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} ran longer than {bound:?}; killed");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let took = started.elapsed();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        took,
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("jamc-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The real jamd, started as `jamd -c CFG -p 0 -b 127.0.0.1 --log stderr`; killed on drop.
pub struct Jamd {
    child: Child,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl Jamd {
    /// Starts jamd with `config` as its file and waits (bounded) for its `listening on` line.
    pub fn start(config: &str) -> Jamd {
        let dir = TempDir::new("jamd");
        let cfg = dir.0.join("jamd.toml");
        std::fs::write(&cfg, config).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_jamd"))
            .arg("-c")
            .arg(&cfg)
            .args(["-p", "0", "-b", "127.0.0.1", "--log", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn jamd");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            // Keeps draining stderr for jamd's whole life so it never blocks on a full pipe.
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = tx.send(line.clone());
                    if let Ok(mut l) = log.lock() {
                        l.push(line);
                    }
                }
            });
        }
        let end = Instant::now() + Duration::from_secs(15);
        let mut seen = Vec::new();
        let port = loop {
            let left = end.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(port) = listening_port(&line) {
                        break port;
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!(
                        "jamd did not say `listening on 127.0.0.1:PORT` within 15 s \
                         (exit: {status:?}); its stderr: {seen:#?}"
                    );
                }
            }
        };
        Jamd {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// jamd's stderr so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// The port in `jamd: listening on 127.0.0.1:PORT (backlog N)`.
fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split("listening on 127.0.0.1:").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl Drop for Jamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// Parses `offset=5.123s` out of a --check line.
pub fn perf_offset(line: &str) -> f64 {
    let v = line
        .split("offset=")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .unwrap_or_else(|| panic!("no offset= in {line:?}"));
    v.parse()
        .unwrap_or_else(|_| panic!("bad offset in {line:?}"))
}

/// A fixed UTC offset (whole minutes, within ±12 h) that puts the wall clock `now` into
/// `[target_secs, target_secs + 60)` after midnight, and the `--timezone` spelling of it.
pub fn zone_putting_wall_clock_at(target_secs: i64) -> (i32, String) {
    let sod = chrono::Utc::now().timestamp().rem_euclid(86_400);
    // Smallest whole-minute offset with sod + offset >= target (mod a day).
    let mut offset = (target_secs - sod).rem_euclid(86_400);
    offset = (offset + 59) / 60 * 60;
    if offset > 43_200 {
        offset -= 86_400;
    }
    let offset = i32::try_from(offset).expect("offset fits");
    let abs = offset.unsigned_abs();
    let sign = if offset < 0 { '-' } else { '+' };
    (
        offset,
        format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60),
    )
}
