//! Helpers shared by the integration tests: start the real `jamd` binary on a
//! loopback port, talk to it, read what it logs, stop it by its pid.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The jamd binary cargo built for these tests.
pub const JAMD: &str = env!("CARGO_BIN_EXE_jamd");

/// A fresh private directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("jamd-it-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Lines a child process wrote to stderr, collected by a reader thread.
#[derive(Clone, Default)]
pub struct Lines {
    inner: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Lines {
    fn push(&self, line: String) {
        let (m, c) = &*self.inner;
        m.lock().unwrap().push(line);
        c.notify_all();
    }

    /// Every line so far.
    pub fn all(&self) -> Vec<String> {
        self.inner.0.lock().unwrap().clone()
    }

    /// Waits (bounded) for a line containing `needle`; returns it.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (m, c) = &*self.inner;
        let mut lines = m.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| l.contains(needle)) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            lines = c.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    /// How many lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.all().iter().filter(|l| l.contains(needle)).count()
    }
}

/// A running jamd.
pub struct Jamd {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr: Lines,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl Jamd {
    /// Starts jamd with this configuration text on 127.0.0.1 and a port the
    /// kernel picks, logging to stderr; waits until it listens.
    pub fn start(config: &str) -> Jamd {
        Jamd::start_with(config, &[])
    }

    /// Like `start`, with extra command-line arguments.
    pub fn start_with(config: &str, args: &[&str]) -> Jamd {
        let dir = temp_dir("jamd");
        let path = dir.join("jamd.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(JAMD);
        cmd.arg("-c")
            .arg(&path)
            .args(["-p", "0", "-b", "127.0.0.1", "--log", "stderr"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Jamd::spawn(cmd, dir, path)
    }

    /// Spawns a prepared command whose stderr is piped, and waits for its
    /// first `listening on` line.
    pub fn spawn(mut cmd: Command, dir: PathBuf, config: PathBuf) -> Jamd {
        let mut child = cmd.spawn().expect("start jamd");
        let stderr = Lines::default();
        let pipe = child.stderr.take().expect("stderr piped");
        let sink = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                match line {
                    Ok(l) => sink.push(l),
                    Err(_) => break,
                }
            }
        });
        let line = stderr
            .wait_for("listening on ", Duration::from_secs(10))
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("jamd did not start: {:?}", stderr.all())
            });
        let addr = parse_listening(&line).expect("address in the listening line");
        Jamd {
            child,
            addr,
            stderr,
            dir,
            config,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal to this jamd (by its pid).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for jamd to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A connected client.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Replaces the configuration file (for reload tests).
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    /// Replaces the configuration file, sends SIGHUP and waits until jamd
    /// says on stderr that it took the new file.
    pub fn reload(&self, text: &str) {
        self.write_config(text);
        self.signal("HUP");
        assert!(
            self.stderr
                .wait_for("configuration reloaded", Duration::from_secs(10))
                .is_some(),
            "no \"configuration reloaded\" line: {:?}",
            self.stderr.all()
        );
    }
}

impl Drop for Jamd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `listening on 127.0.0.1:40123 (backlog 128)` → the address.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// A test client with a bounded read timeout.
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// One reply line, with its CR LF; empty string at EOF.
    pub fn line_raw(&mut self) -> String {
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(_) => String::from_utf8_lossy(&buf).into_owned(),
            Err(e) => panic!("no reply line: {e}"),
        }
    }

    /// One reply line without CR LF; panics unless it ended with CR LF.
    pub fn line(&mut self) -> String {
        let l = self.line_raw();
        assert!(l.ends_with("\r\n"), "reply {l:?} does not end with CR LF");
        l.trim_end_matches("\r\n").to_owned()
    }

    /// Sends a request line and returns the reply line.
    pub fn ask(&mut self, request: &str) -> String {
        self.send(format!("{request}\r\n").as_bytes());
        self.line()
    }

    /// True when the server closed the connection (EOF or reset) within the timeout.
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
            && !matches!(self.reader.read(&mut buf), Ok(n) if n > 0)
    }
}

/// A unix datagram socket standing in for /dev/log.
pub struct SyslogSink {
    pub path: PathBuf,
    pub sock: UnixDatagram,
    _dir: PathBuf,
}

impl SyslogSink {
    pub fn bind(name: &str) -> SyslogSink {
        let dir = temp_dir(name);
        let path = dir.join("log.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        SyslogSink {
            path,
            sock,
            _dir: dir,
        }
    }

    /// Receives datagrams until one contains `needle` (bounded); returns it.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.contains(needle) {
                    return Some(msg);
                }
            }
        }
        None
    }

    /// Every datagram that arrives within `window`.
    pub fn drain(&self, window: Duration) -> Vec<String> {
        let deadline = Instant::now() + window;
        let mut buf = vec![0u8; 4096];
        let mut out = Vec::new();
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        out
    }
}

/// Runs jamd with arguments to completion (bounded) and returns (code, stdout, stderr).
pub fn run_jamd(args: &[&str], timeout: Duration) -> (Option<i32>, String, String) {
    let mut child = Command::new(JAMD)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            let mut err = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), out, err);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (None, String::new(), "timed out".into());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Whether CI is running us: then a missing tool is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Finds a tool on PATH (or at an absolute path); in CI its absence fails the test.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let found = if Path::new(name).is_absolute() {
        Path::new(name).exists().then(|| PathBuf::from(name))
    } else {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|c| c.is_file())
        })
    };
    if found.is_none() {
        assert!(!in_ci(), "{name} is required in CI but is not installed");
        eprintln!("skipped: {name} is not installed");
    }
    found
}

/// Parses `hh:mm:ss` from a `JAM hh:mm:ss` reply.
pub fn jam_time(reply: &str) -> Option<(u32, u32, u32)> {
    let t = reply.strip_prefix("JAM ")?;
    let mut parts = t.split(':').map(|p| p.parse::<u32>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    (parts.next().is_none() && h < 24 && m < 60 && s < 61).then_some((h, m, s))
}
