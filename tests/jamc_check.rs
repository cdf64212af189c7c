//! jamc's check against servers written here whose clocks are known (an
//! offset, a frozen or backward clock, a slow link, a hostile reply), and
//! against the real jamd: SPEC 11 and the jamc parts of SPEC 12.
//!
//! Loopback only; every wait is bounded; every process is stopped by its handle.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// Longest a jamc run may take before the test kills it and fails.
const JAMC_BOUND: Duration = Duration::from_secs(30);
/// Longest a test server lives.
const SERVER_LIFETIME: Duration = Duration::from_secs(90);

/// One TIME request as a test server sees it.
struct Request {
    /// This machine's clock when the request was read.
    now: DateTime<Utc>,
}

type Answer = dyn Fn(&Request) -> Vec<u8> + Send + Sync;

/// An independent JAM server on its own thread: each TIME is answered with
/// what `answer` makes of it (bytes sent as they are), after `delay`.
struct TestServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start(answer: impl Fn(&Request) -> Vec<u8> + Send + Sync + 'static) -> TestServer {
        TestServer::with_delay(Duration::ZERO, answer)
    }

    /// Like `start`, the reply held back `delay` (a slow link, half each way).
    fn with_delay(
        delay: Duration,
        answer: impl Fn(&Request) -> Vec<u8> + Send + Sync + 'static,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let answer: Arc<Answer> = Arc::new(answer);
        let (s, r) = (stop.clone(), requests.clone());
        let thread = thread::spawn(move || {
            let end = Instant::now() + SERVER_LIFETIME;
            let mut conns = Vec::new();
            while !s.load(Ordering::SeqCst) && Instant::now() < end {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (s, r, a) = (s.clone(), r.clone(), answer.clone());
                        conns.push(thread::spawn(move || {
                            serve(stream, delay, &*a, &s, &r, end)
                        }));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
            s.store(true, Ordering::SeqCst);
            for c in conns {
                let _ = c.join();
            }
        });
        TestServer {
            addr,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    fn target(&self) -> String {
        self.addr.to_string()
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut stream: TcpStream,
    delay: Duration,
    answer: &Answer,
    stop: &AtomicBool,
    requests: &AtomicUsize,
    end: Instant,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
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
            let line = String::from_utf8_lossy(&line).trim().to_ascii_uppercase();
            match line.as_str() {
                "QUIT" => return,
                "TIME" => {
                    requests.fetch_add(1, Ordering::SeqCst);
                    // Half the delay on the way in, half on the way out.
                    thread::sleep(delay / 2);
                    let reply = answer(&Request { now: Utc::now() });
                    thread::sleep(delay / 2);
                    if stream.write_all(&reply).is_err() {
                        return;
                    }
                }
                _ => {
                    let _ = stream.write_all(b"ERROR unknown command\r\n");
                }
            }
        }
    }
}

/// A `JAM` line of the UTC clock moved by `offset_ms`, in `format`.
fn clock_line(now: DateTime<Utc>, offset_ms: i64, format: &str) -> Vec<u8> {
    let t = now + chrono::Duration::milliseconds(offset_ms);
    format!("JAM {}\r\n", t.format(format)).into_bytes()
}

/// A server whose UTC clock is `offset_ms` off, answering in whole seconds.
fn offset_server(offset_ms: i64) -> TestServer {
    TestServer::start(move |r| clock_line(r.now, offset_ms, "%H:%M:%S"))
}

/// What a jamc run gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs a command with a bound; it is killed (by its pid) and the test fails past it.
fn run_bounded(cmd: &mut Command) -> Run {
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
    let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if started.elapsed() > JAMC_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} ran longer than {JAMC_BOUND:?}; killed");
        }
        thread::sleep(Duration::from_millis(5));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn jamc(args: &[&str]) -> Run {
    run_bounded(Command::new(env!("CARGO_BIN_EXE_jamc")).args(args))
}

/// The first line of stdout of a --check run.
fn first_line(run: &Run) -> &str {
    run.stdout.lines().next().unwrap_or("")
}

/// A perfdata value: `name=1.234s;…` → 1.234 (the first such label in `line`).
fn perf(line: &str, name: &str) -> f64 {
    let data = line.split_once(" | ").map_or("", |(_, d)| d);
    let value = data
        .split_whitespace()
        .find_map(|item| item.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"));
    let number: String = value
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+'))
        .collect();
    number
        .parse()
        .unwrap_or_else(|_| panic!("bad {name}= in {line:?}"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ------------------------------------------------ SPEC 12: server text escaped

#[test]
fn a_server_cannot_forge_perfdata_in_the_check_line() {
    let server = TestServer::start(|_| b"ERROR x | offset=0.000s;2;10\r\n".to_vec());
    let run = jamc(&["--check", &server.target()]);
    assert_eq!(run.code, 2, "{run:?}");
    let line = first_line(&run);
    assert!(line.starts_with("JAM CRITICAL - "), "{run:?}");
    assert_eq!(line.matches('|').count(), 1, "{line:?}");
    assert!(line.contains("ERROR x \\| offset=0.000s;2;10"), "{line:?}");
}

#[test]
fn a_server_cannot_put_a_carriage_return_in_the_status_line() {
    let server = TestServer::start(|_| b"ERROR a\rJAM OK - offset +0.000 s\r\n".to_vec());
    let run = jamc(&["--check", &server.target()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(!run.stdout.contains('\r'), "{run:?}");
    assert!(run.stdout.contains("ERROR a\\x0dJAM OK"), "{run:?}");
}

#[test]
fn escape_sequences_do_not_reach_the_terminal_in_plain_mode() {
    let server = TestServer::start(|_| b"JAM \x1b[2J\x1b]0;owned\x0714:03:27\r\n".to_vec());
    let run = jamc(&[&server.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains('\x1b'), "{run:?}");
    assert!(!run.stdout.contains('\x07'), "{run:?}");
    assert_eq!(
        run.stdout.trim_end(),
        "\\x1b[2J\\x1b]0;owned\\x0714:03:27",
        "{run:?}"
    );
    // And in the words on stderr about a reply that is not a JAM line.
    let server = TestServer::start(|_| b"HELLO \x1b[31mred\r\n".to_vec());
    let run = jamc(&[&server.target()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(!run.stderr.contains('\x1b'), "{run:?}");
    assert!(run.stderr.contains("HELLO \\x1b[31mred"), "{run:?}");
}

// ---------------------------------- SPEC 12: every fractional format jamd renders

#[test]
fn check_reads_every_fractional_format_jamd_renders() {
    for format in ["%H:%M:%S.%3f", "%T.%f", "%H:%M:%S%.3f"] {
        let jamd = common::Jamd::start(&format!(
            "[time]\nformat = \"{format}\"\ntimezone = \"UTC\"\n"
        ));
        let run = jamc(&[
            "--check",
            "--format",
            format,
            "--timezone",
            "UTC",
            &jamd.addr.to_string(),
        ]);
        assert_eq!(run.code, 0, "{format}: {run:?}");
        let line = first_line(&run);
        assert!(line.starts_with("JAM OK - offset "), "{format}: {line}");
        assert!(perf(line, "offset").abs() < 0.1, "{format}: {line}");
    }
}

// ------------------------------------------ SPEC 12: a reading across a DST change

/// A TZif version 2 file: `before` seconds east of UTC until `at`, then
/// `after` (a whole number of hours west of UTC, as the footer says it).
fn tzif_with_one_change(at: i64, before: i32, after: i32) -> Vec<u8> {
    let block = |f: &mut Vec<u8>, wide: bool| {
        f.extend_from_slice(b"TZif2");
        f.extend_from_slice(&[0; 15]);
        // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
        for count in [0u32, 0, 0, 1, 2, 8] {
            f.extend_from_slice(&count.to_be_bytes());
        }
        if wide {
            f.extend_from_slice(&at.to_be_bytes());
        } else {
            f.extend_from_slice(&i32::try_from(at).expect("fits").to_be_bytes());
        }
        f.push(1);
        for (offset, dst, name_at) in [(before, 1u8, 0u8), (after, 0, 4)] {
            f.extend_from_slice(&offset.to_be_bytes());
            f.push(dst);
            f.push(name_at);
        }
        f.extend_from_slice(b"XDT\0XST\0");
    };
    let mut f = Vec::new();
    block(&mut f, false);
    block(&mut f, true);
    // After the last transition: the POSIX TZ footer (XST, `after` west of UTC).
    f.extend_from_slice(format!("\nXST{}\n", -after / 3600).as_bytes());
    f
}

#[test]
fn a_reading_across_a_dst_change_is_taken_on_the_side_nearest_local_time() {
    // A zone that leaves "summer time" (UTC-4 -> UTC-5) 2.5 s from now, and a
    // server 5 s ahead: jamc asks before the change, the server reads its clock
    // after it. The truth is +5 s, not 5 s - 1 h. A run that ends after the
    // change (a loaded machine) did not straddle it: try again, at most 3 times.
    let dir = common::temp_dir("tzdir");
    std::fs::create_dir_all(dir.join("Test")).expect("mkdir");
    let mut straddled = 0;
    for _ in 0..3 {
        let change = Utc::now() + chrono::Duration::milliseconds(2500);
        std::fs::write(
            dir.join("Test/Shift"),
            tzif_with_one_change(change.timestamp(), -4 * 3600, -5 * 3600),
        )
        .expect("write zone");
        let server = TestServer::start(move |r| {
            let server_now = r.now + chrono::Duration::milliseconds(5000);
            let zone_offset = if server_now >= change { -5 } else { -4 };
            let wall = server_now + chrono::Duration::hours(zone_offset);
            format!("JAM {}\r\n", wall.format("%H:%M:%S")).into_bytes()
        });
        let run = run_bounded(
            Command::new(env!("CARGO_BIN_EXE_jamc"))
                .env("TZDIR", &dir)
                .args(["--check", "--timezone", "Test/Shift"])
                .args(["--warning", "20", "--critical", "30", &server.target()]),
        );
        let line = first_line(&run);
        assert_eq!(run.code, 0, "{run:?}");
        let offset = perf(line, "offset");
        assert!((4.4..=5.6).contains(&offset), "{line}");
        if Utc::now() < change {
            straddled += 1;
            break;
        }
    }
    assert!(
        straddled > 0,
        "no run straddled the change: machine too busy"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ----------------------------------------- SPEC 12 / issue 12: thresholds, digits

#[test]
fn inverted_thresholds_are_a_usage_error() {
    let server = offset_server(0);
    let run = jamc(&[
        "--check",
        "--warning",
        "5",
        "--critical",
        "2",
        &server.target(),
    ]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(first_line(&run).starts_with("JAM UNKNOWN - "), "{run:?}");
    assert!(first_line(&run).contains("--warning"), "{run:?}");
    assert_eq!(server.requests(), 0, "a usage error asks nobody: {run:?}");
    // Equal thresholds are fine: there is simply no WARNING band.
    let run = jamc(&[
        "--check",
        "--warning",
        "2",
        "--critical",
        "2",
        &server.target(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn no_negative_zero_and_round_trip_with_microseconds() {
    // A server 0.2 ms behind, with microseconds: on loopback the offset rounds
    // to zero, and a negative zero must not be printed.
    let server = TestServer::start(|r| clock_line(r.now, 0, "%H:%M:%S%.6f"));
    let behind = TestServer::start(|r| {
        let t = r.now - chrono::Duration::microseconds(200);
        format!("JAM {}\r\n", t.format("%H:%M:%S%.6f")).into_bytes()
    });
    for server in [&server, &behind] {
        for _ in 0..3 {
            let run = jamc(&["--check", &server.target()]);
            assert_eq!(run.code, 0, "{run:?}");
            let line = first_line(&run);
            assert!(!line.contains("-0.0 "), "{line}");
            assert!(!line.contains("-0.000 "), "{line}");
            assert!(!line.contains("=-0.000s"), "{line}");
            // check_tcp's precision: microseconds, so loopback is not "0.000s".
            let time = line
                .split("time=")
                .nth(1)
                .and_then(|t| t.split('s').next())
                .unwrap_or_else(|| panic!("no time= in {line}"));
            let decimals = time.split('.').nth(1).map_or(0, str::len);
            assert_eq!(decimals, 6, "{line}");
        }
    }
}

#[test]
fn jamc_1_names_where_check_tcp_is_installed() {
    let page = std::fs::read_to_string(repo().join("man/jamc.1")).expect("read jamc.1");
    let path = "/usr/lib/nagios/plugins/check_tcp";
    assert!(page.contains(path), "jamc.1 does not name {path}");
    if Path::new("/usr/lib/nagios/plugins").is_dir() {
        assert!(
            Path::new(path).exists(),
            "monitoring-plugins are installed but not at {path}"
        );
    }
}
