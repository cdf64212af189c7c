//! `jamc --conformance` (jamc(1), CONFORMANCE) against the real jamd, against
//! the seed-style Python server of the course
//! (../shared/bench/seed_server.py), against servers written here and broken
//! on purpose, and read by prove(1).
//!
//! Loopback only. Every server here stops when its handle drops, every loop
//! has a deadline, and every jamc run is killed by its pid if it outlives
//! [`RUN_BOUND`].

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::process::run_within;
use common::{require_tool, Jamd};

const JAMC: &str = env!("CARGO_BIN_EXE_jamc");

/// jamc(1), CONFORMANCE: a whole run ends within about 60 s, whatever the
/// server does. The machine running the tests is shared and slow, so the
/// margin is wide; a run that hangs is killed here and fails the test.
const RUN_BOUND: Duration = Duration::from_secs(80);

/// Longest a server written here lives, whatever happens to the test.
const SERVER_LIFETIME: Duration = Duration::from_secs(180);

/// A finished jamc run.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    took: Duration,
}

impl Run {
    /// The TAP line of check `n` (`ok n - …` or `not ok n - …`).
    fn check(&self, n: usize) -> &str {
        self.stdout
            .lines()
            .find(|l| {
                l.strip_prefix("ok ")
                    .or_else(|| l.strip_prefix("not ok "))
                    .and_then(|rest| rest.split(' ').next())
                    == Some(n.to_string().as_str())
            })
            .unwrap_or_else(|| panic!("no line for check {n} in:\n{}", self.stdout))
    }

    fn passed(&self, n: usize) -> bool {
        self.check(n).starts_with("ok ")
    }

    /// Asserts the report contains `text`.
    fn assert_says(&self, text: &str) {
        assert!(self.stdout.contains(text), "{}", self.stdout);
    }

    fn assert_passed(&self, checks: &[usize]) {
        for &n in checks {
            assert!(self.passed(n), "check {n} failed:\n{}", self.stdout);
        }
    }

    /// Check `n` failed, and its line says `what` and, after `#`, `why`.
    fn assert_failed(&self, n: usize, what: &str, why: &str) {
        let line = self.check(n);
        assert!(
            line.starts_with(&format!("not ok {n} - {what}")),
            "{line}\n{}",
            self.stdout
        );
        let (_, reason) = line
            .split_once(" # ")
            .unwrap_or_else(|| panic!("no # why: {line}"));
        assert!(reason.contains(why), "{line:?} does not say {why:?}");
    }

    fn assert_bounded(&self) {
        // Not a speed test: only "it did not hang" (RUN_BOUND killed it otherwise).
        assert!(
            self.code.is_some(),
            "jamc did not finish within {RUN_BOUND:?}: {self:?}"
        );
    }
}

/// Runs `jamc --conformance` (with `--strict` when asked) against a broken
/// server with `fault`: the run must end within its bound and exit 1.
fn failing_run(fault: Fault, strict: bool) -> Run {
    let server = BrokenServer::start(fault);
    let addr = server.addr.to_string();
    let run = if strict {
        jamc(&["--conformance", "--strict", &addr])
    } else {
        jamc(&["--conformance", &addr])
    };
    run.assert_bounded();
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    run
}

/// Runs jamc with these arguments, killing it by its pid after [`RUN_BOUND`].
fn jamc(args: &[&str]) -> Run {
    let started = Instant::now();
    let (code, stdout, _) = run_within(Command::new(JAMC).args(args), RUN_BOUND);
    let took = started.elapsed();
    Run { code, stdout, took }
}

fn quiet_jamd() -> Jamd {
    Jamd::start("[log]\ntarget = \"stderr\"\nconnections = false\n")
}

// ------------------------------------------------------------------ jamd

#[test]
fn jamd_passes_every_check_with_strict() {
    let jamd = quiet_jamd();
    let run = jamc(&["--conformance", "--strict", &jamd.addr.to_string()]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(run.stdout.starts_with("1..18\n"), "{}", run.stdout);
    assert_eq!(
        run.stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        18
    );
    assert!(!run.stdout.contains("not ok"), "{}", run.stdout);
    run.assert_passed(&(1..=18).collect::<Vec<_>>());
}

#[test]
fn without_strict_only_the_seven_required_checks_run() {
    let jamd = quiet_jamd();
    let port = jamd.addr.port().to_string();
    let run = jamc(&["--conformance", "-p", &port, "127.0.0.1"]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(run.stdout.starts_with("1..7\n"), "{}", run.stdout);
    run.assert_passed(&[1, 2, 3, 4, 5, 6, 7]);
    run.assert_says("--strict adds 11 more");
}

#[test]
fn prove_reads_the_report() {
    let Some(prove) = require_tool("prove") else {
        return;
    };
    let script = common::repo().join("tests/conformance.t");
    let prove_against = |server: &str| {
        let mut cmd = Command::new(&prove);
        cmd.arg(&script)
            .env("JAMC", JAMC)
            .env("JAMC_SERVER", server);
        let (code, out, _) = run_within(&mut cmd, RUN_BOUND);
        (code, out)
    };

    let jamd = quiet_jamd();
    let (code, out) = prove_against(&jamd.addr.to_string());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("All tests successful"), "{out}");
    assert!(out.contains("Tests=18"), "{out}");

    let broken = BrokenServer::start(Fault::Replies("JAM 9:5:3\r\n"));
    let (code, out) = prove_against(&broken.addr.to_string());
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("Failed test:  2") || out.contains("Failed tests:  2"),
        "{out}"
    );
    assert!(out.contains("Result: FAIL"), "{out}");
}

// ------------------------------------------------------ the seed server

/// The course's seed-style server in Python, run by its pid.
struct SeedServer {
    child: Child,
    addr: SocketAddr,
}

impl SeedServer {
    fn start() -> Option<SeedServer> {
        let python = require_tool("python3")?;
        let script = seed_script()?;
        // A port the kernel just gave out and took back: free for the moment.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("pick a port")
            .port();
        let child = Command::new(python)
            .arg(script)
            .args([&port.to_string(), "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start seed_server.py");
        let server = SeedServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        common::wait_listening(server.addr, Duration::from_secs(20), None);
        Some(server)
    }
}

impl Drop for SeedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// ../shared/bench/seed_server.py beside the repository (CI), or beside the
/// directory of worktrees; `JAMD_BENCH_TOOLS` names another place, as for scripts/bench.
fn seed_script() -> Option<PathBuf> {
    let repo = common::repo();
    let mut places: Vec<PathBuf> = std::env::var_os("JAMD_BENCH_TOOLS")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    places.push(repo.join("../shared/bench"));
    places.push(repo.join("../../shared/bench"));
    let found = places
        .into_iter()
        .map(|d| d.join("seed_server.py"))
        .find(|p| p.is_file());
    if found.is_none() {
        common::skip::record_skip("../shared/bench/seed_server.py is not there");
    }
    found
}

#[test]
fn the_seed_server_passes_the_required_checks_and_fails_strict_ones() {
    let Some(seed) = SeedServer::start() else {
        return;
    };
    let target = seed.addr.to_string();

    let run = jamc(&["--conformance", &target]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    run.assert_passed(&[1, 2, 3, 4, 5, 6, 7]);

    // It matches TIME by prefix on recv(32): no lower case, no pipelining.
    let run = jamc(&["--conformance", "--strict", &target]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    run.assert_passed(&[1, 2, 3, 4, 5, 6, 7, 10, 12, 17, 18]);
    run.assert_failed(
        8,
        "command words are matched in any case",
        r#"sent "time\r\n", got "ERROR\r\n""#,
    );
    run.assert_failed(
        14,
        "three requests in one packet get three replies in order",
        "got 1 reply",
    );
    run.assert_says("every required check passed");
}

// ------------------------------------------------- servers broken on purpose

/// How a server written here is broken.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Serves one connection to its end before accepting the next.
    OneAtATime,
    /// Answers every TIME with these bytes.
    Replies(&'static str),
    /// Accepts and holds connections, and never sends a byte.
    NeverAnswers,
    /// Closes every connection as soon as it is accepted.
    ClosesAtOnce,
    /// Resets every connection as soon as it is accepted.
    Resets,
    /// Sends JAM lines without end, whatever the client says.
    AnswersForever,
    /// Answers every TIME with the time it read once, when it started.
    FrozenAtStart,
    /// Answers from a clock this many seconds ahead of UTC (a zone, or a
    /// zone and a clock that is off).
    AheadOfUtc(i64),
    /// Listens with a backlog of 1 and accepts one connection every 300 ms
    /// (serving each at once): a crowd overflows its listen queue.
    SlowAcceptSmallBacklog,
    /// Answers at once while few clients are connected, and takes 7 s (more
    /// than a step's 5 s) with more than 20.
    SlowUnderLoad,
}

/// How long [`Fault::SlowUnderLoad`] takes to answer a crowd.
const UNDER_LOAD: Duration = Duration::from_secs(7);

/// A server with a [`Fault`], on 127.0.0.1 and a port the kernel picks.
struct BrokenServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BrokenServer {
    fn start(fault: Fault) -> BrokenServer {
        let backlog = match fault {
            Fault::SlowAcceptSmallBacklog => 1,
            _ => 128,
        };
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        socket.bind(&any.into()).expect("bind 127.0.0.1:0");
        socket.listen(backlog).expect("listen");
        let listener: TcpListener = socket.into();
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local address");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || accept_loop(&listener, fault, &flag));
        BrokenServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for BrokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// True once the server is to stop: asked to, or past its lifetime.
fn stopping(stop: &AtomicBool, born: Instant) -> bool {
    stop.load(Ordering::Relaxed) || born.elapsed() > SERVER_LIFETIME
}

fn accept_loop(listener: &TcpListener, fault: Fault, stop: &Arc<AtomicBool>) {
    let born = Instant::now();
    let started = chrono::Local::now().format("JAM %H:%M:%S\r\n").to_string();
    let mut held = Vec::new();
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    while !stopping(stop, born) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) => {
                thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let _ = stream.set_nonblocking(false);
        match fault {
            Fault::OneAtATime => serve_lines(stream, &local_time, stop, born),
            Fault::Replies(reply) => {
                let stop = stop.clone();
                thread::spawn(move || serve_lines(stream, &|| reply.to_string(), &stop, born));
            }
            Fault::FrozenAtStart => {
                let (stop, started) = (stop.clone(), started.clone());
                thread::spawn(move || serve_lines(stream, &|| started.clone(), &stop, born));
            }
            Fault::AheadOfUtc(secs) => {
                let stop = stop.clone();
                let time = move || {
                    let t = chrono::Utc::now() + chrono::Duration::seconds(secs);
                    t.format("JAM %H:%M:%S\r\n").to_string()
                };
                thread::spawn(move || serve_lines(stream, &time, &stop, born));
            }
            Fault::NeverAnswers => held.push(stream),
            Fault::ClosesAtOnce => drop(stream),
            Fault::Resets => {
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                drop(stream);
            }
            Fault::AnswersForever => {
                let stop = stop.clone();
                thread::spawn(move || talk_forever(stream, &stop, born));
            }
            Fault::SlowAcceptSmallBacklog => {
                let stop = stop.clone();
                thread::spawn(move || serve_lines(stream, &local_time, &stop, born));
                thread::sleep(Duration::from_millis(300));
            }
            Fault::SlowUnderLoad => {
                let (stop, open) = (stop.clone(), open.clone());
                open.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || {
                    let answer = || {
                        if open.load(Ordering::SeqCst) > 20 {
                            thread::sleep(UNDER_LOAD);
                        }
                        local_time()
                    };
                    serve_lines(stream, &answer, &stop, born);
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        }
    }
}

/// This machine's local time as a JAM reply.
fn local_time() -> String {
    chrono::Local::now().format("JAM %H:%M:%S\r\n").to_string()
}

/// Reads request lines until the client leaves: TIME gets `reply()`, QUIT
/// closes, anything else gets an ERROR line.
fn serve_lines(stream: TcpStream, reply: &dyn Fn() -> String, stop: &AtomicBool, born: Instant) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    while !stopping(stop, born) {
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) if line.ends_with(b"\n") => {
                let answer = match line.trim_ascii() {
                    b"TIME" => reply(),
                    b"QUIT" => return,
                    _ => "ERROR unknown command\r\n".to_string(),
                };
                if writer.write_all(answer.as_bytes()).is_err() {
                    return;
                }
                line.clear();
            }
            // A partial line, or the read timed out: keep what came and look at the stop flag.
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(_) => return,
        }
    }
}

/// True when `e` only says a read or write timeout passed (the socket is fine).
fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn talk_forever(mut stream: TcpStream, stop: &AtomicBool, born: Instant) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let burst = "JAM 12:00:00\r\n".repeat(100);
    while !stopping(stop, born) {
        match stream.write_all(burst.as_bytes()) {
            Ok(()) => thread::sleep(Duration::from_millis(10)),
            Err(e) if timed_out(&e) => {}
            Err(_) => return,
        }
    }
}

#[test]
fn a_server_that_serves_one_connection_at_a_time_fails_the_nine_clients() {
    let run = failing_run(Fault::OneAtATime, false);
    run.assert_passed(&[1, 2, 3, 4]);
    run.assert_failed(5, "9 clients at once are all answered", "1 of 9 answered");
    run.assert_failed(
        6,
        "a client that sends nothing does not stop others being served",
        "no reply within 5 s",
    );
}

#[test]
fn a_server_that_answers_jam_9_5_3_fails_the_exact_reply() {
    let server = BrokenServer::start(Fault::Replies("JAM 9:5:3\r\n"));
    let run = jamc(&["--conformance", &server.addr.to_string()]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    run.assert_failed(
        2,
        "TIME is answered with exactly \"JAM hh:mm:ss\"",
        r#"sent "TIME\r\n", got "JAM 9:5:3\r\n": the time must be hh:mm:ss, two digits each"#,
    );
    // Only the checks that name the fault: the others take any JAM line.
    run.assert_passed(&[1, 3, 4, 5, 6]);
    run.assert_failed(7, "the reply is the server's current time", "both times");
}

#[test]
fn a_server_that_never_answers_fails_within_the_time_bound() {
    let run = failing_run(Fault::NeverAnswers, true);
    assert!(run.stdout.starts_with("1..18\n"), "{}", run.stdout);
    run.assert_passed(&[1]);
    run.assert_failed(
        2,
        "TIME is answered",
        r#"sent "TIME\r\n", no reply within 5 s"#,
    );
    run.assert_failed(4, "QUIT makes the server close", "still open after 5 s");
    for n in [3, 5, 6, 7, 8, 17, 18] {
        run.assert_failed(n, "", "not tried: TIME got no reply (check 2)");
    }
    eprintln!(
        "a whole --strict run against a server that never answers took {:?}",
        run.took
    );
}

#[test]
fn a_server_that_closes_at_once_fails_the_first_request() {
    let run = failing_run(Fault::ClosesAtOnce, true);
    run.assert_passed(&[1]);
    let line = run.check(2);
    assert!(
        line.contains("the server closed the connection")
            || line.contains("the server reset the connection"),
        "{line}"
    );
    run.assert_failed(5, "", "not tried");
}

#[test]
fn a_server_that_resets_fails_the_first_request() {
    let run = failing_run(Fault::Resets, true);
    // Whether the reset is seen by the connect or by the first read depends
    // on timing; either way the reason names it.
    run.assert_failed(2, "TIME is answered", "the server reset the connection");
}

#[test]
fn a_server_that_answers_forever_does_not_hold_the_run() {
    let run = failing_run(Fault::AnswersForever, true);
    run.assert_failed(2, "TIME is answered", "one line was expected");
    run.assert_failed(
        4,
        "QUIT makes the server close",
        "still open after 5 s (it sent \"JAM 12:00:00\\r\\n",
    );
    run.assert_failed(
        14,
        "three requests in one packet",
        "expected a JAM line, an ERROR line, a JAM line",
    );
}

#[test]
fn nothing_listening_is_a_clear_failure() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("pick a port");
    // The listener is gone: the port refuses.
    let run = jamc(&["--conformance", &addr.to_string()]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    run.assert_failed(
        1,
        "the server accepts a TCP connection",
        &format!("connecting to {addr}: connection refused"),
    );
    for n in 2..=7 {
        run.assert_failed(n, "", "not tried: no connection could be made (check 1)");
    }
    run.assert_says("this is not a JAM server yet");
}

#[test]
fn a_bad_command_line_exits_2() {
    for args in [
        &["--strict"][..],
        &["--conformance", "-P", "9"],
        &["--conformance", "-w", "1"],
    ] {
        let run = jamc(args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stdout);
    }
}

#[test]
fn a_server_frozen_at_its_start_fails_the_current_time_check() {
    let run = failing_run(Fault::FrozenAtStart, false);
    // Every other required check takes a frozen time.
    run.assert_passed(&[1, 2, 3, 4, 5, 6]);
    run.assert_failed(
        7,
        "the reply is the server's current time",
        "1.2 s apart, got \"JAM ",
    );
    run.assert_says("both times: the reply must show the server's clock when asked");
    run.assert_says("1 required check failed");
}

#[test]
fn the_strict_clock_check_takes_any_zone_but_not_a_clock_that_is_off() {
    // Kathmandu (+05:45) and Chatham (+12:45, +13:45 in summer) are whole
    // quarter hours from UTC; a clock two minutes off is in no zone.
    for (ahead, agrees) in [
        (5 * 3600 + 45 * 60, true),
        (-(9 * 3600 + 30 * 60), true),
        (13 * 3600 + 45 * 60, true),
        (120, false),
        (-3600 - 30, false),
    ] {
        let server = BrokenServer::start(Fault::AheadOfUtc(ahead));
        let run = jamc(&["--conformance", "--strict", &server.addr.to_string()]);
        run.assert_bounded();
        // Case, pipelining, etc. of this server are not the point here.
        run.assert_passed(&[1, 2, 3, 4, 5, 6, 7]);
        if agrees {
            run.assert_passed(&[18]);
        } else {
            run.assert_failed(
                18,
                "the time agrees with this machine's clock",
                &format!(
                    "{} this machine's clock whatever the server's time zone",
                    if ahead > 0 { "ahead of" } else { "behind" }
                ),
            );
        }
    }
}

/// 100 clients at once at a server whose listen queue overflows: the check
/// says so, rather than blaming the server for not answering.
#[test]
fn a_full_listen_queue_is_named_as_such() {
    let run = failing_run(Fault::SlowAcceptSmallBacklog, true);
    run.assert_failed(
        17,
        "100 clients at once are all answered",
        "never accepted within 20 s (the listen queue was full: listen backlog too small?)",
    );
    // Most of those not answered: the largest group is told first.
    let line = run.check(17);
    let first_group = line.split("answered; ").nth(1).unwrap_or_default();
    let (count, words) = first_group.split_once(' ').unwrap_or_default();
    assert!(count.parse::<u32>().is_ok(), "{line}");
    assert!(words.starts_with("never accepted within 20 s"), "{line}");
    eprintln!("a --strict run against a slow acceptor took {:?}", run.took);
}

/// A server that accepted every client but answers only one is not told
/// it has a small listen queue.
#[test]
fn a_server_that_does_not_answer_the_crowd_is_not_blamed_on_its_queue() {
    let run = failing_run(Fault::OneAtATime, true);
    let line = run.check(17);
    assert!(
        line.starts_with("not ok 17 - 100 clients at once"),
        "{line}"
    );
    assert!(line.contains("1 of 100 answered"), "{line}");
    assert!(line.contains("no reply within"), "{line}");
    assert!(!line.contains("listen queue"), "{line}");
}

/// The crowd may take up to 20 s (a dropped SYN is sent again after 1, 3, 7
/// and 15 s), more than one step's 5 s.
#[test]
fn the_crowd_is_allowed_twenty_seconds() {
    let server = BrokenServer::start(Fault::SlowUnderLoad);
    let run = jamc(&["--conformance", "--strict", &server.addr.to_string()]);
    run.assert_bounded();
    run.assert_passed(&[1, 2, 3, 4, 5, 6, 7, 17, 18]);
}
