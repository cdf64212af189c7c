//! jamd's life from start to stop (jamd(8), SOCKET ACTIVATION and SIGNALS):
//! inherited descriptors, signals an operator sends by habit, a worker that
//! dies, a jamd frozen past its idle timeout, the listen queue at SIGTERM.

mod common;

use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    parse_listening, recv_until, recv_within, ChildGuard, Client, Jamd, Lines, TempDir, JAMD,
};

const T: Duration = Duration::from_secs(10);

/// `LISTEN_FDS=2` with only descriptor 3 passed: jamd must not take its own
/// signal pipe for the missing fourth socket (it used to, and then failed
/// with "Invalid argument" or ignored SIGTERM).
#[test]
fn an_overstated_listen_fds_takes_none_of_jamds_own_descriptors() {
    let dir = TempDir::new("overstated");
    let config = dir.join("jamd.toml");
    std::fs::write(&config, "").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // bash moves the listener from stdin to descriptor 3, then becomes jamd
    // (same pid, so LISTEN_PID=$$ names jamd).
    let script = format!(
        "exec 3<&0 0</dev/null; export LISTEN_PID=$$ LISTEN_FDS=2; exec {JAMD} -c {} --log stderr",
        config.display()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script])
        .stdin(Stdio::from(OwnedFd::from(listener)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = ChildGuard::spawn(&mut cmd);
    let stderr = Lines::collect(child.stderr.take().unwrap());
    let line = stderr
        .wait_for("listening on ", T)
        .unwrap_or_else(|| panic!("did not start: {:#?}", stderr.all()));
    assert_eq!(parse_listening(&line), Some(addr), "{line}");
    assert!(
        stderr.wait_for("descriptor 4 is not open", T).is_some(),
        "{:#?}",
        stderr.all()
    );
    let mut c = Client::connect(addr);
    assert!(c.ask("TIME").starts_with("JAM "));
    drop(c);
    child.signal(libc::SIGTERM);
    let status = child.wait_timeout(T).expect("SIGTERM must stop jamd");
    assert_eq!(status.code(), Some(0), "{:#?}", stderr.all());
    assert!(stderr.wait_for("stopped", T).is_some());
}

/// SIGUSR1 logs one status line; SIGUSR2 is ignored; neither kills jamd.
#[test]
fn sigusr1_logs_the_status_and_sigusr2_is_ignored() {
    let mut jamd = Jamd::start("");
    let mut c = jamd.connect();
    assert!(c.ask("TIME").starts_with("JAM "));
    jamd.signal("USR1");
    let line = jamd
        .stderr
        .wait_for("status: ", T)
        .unwrap_or_else(|| panic!("no status line: {:#?}", jamd.log()));
    assert!(
        line.ends_with("status: 1 connection(s) open, accepted=1 refused=0 requests=1"),
        "{line}"
    );
    jamd.signal("USR2");
    jamd.signal("USR1");
    assert!(
        c.ask("TIME").starts_with("JAM "),
        "still serving after SIGUSR2"
    );
    drop(c);
    assert_eq!(jamd.stop(), Some(0));
    assert!(jamd.stderr.wait_for("stopped", T).is_some());
    assert_eq!(jamd.stderr.count("status: "), 2, "{:#?}", jamd.log());
}

/// Frozen (SIGSTOP) past `idle_timeout` while clients sent TIME: on SIGCONT
/// the requests are answered first, not idled out. More clients than one
/// poll returns events for (256), so the idle sweep meets some of them
/// before their readiness is seen.
#[test]
fn requests_that_arrived_while_frozen_are_answered_first() {
    // The 400 connects come faster than a debug jamd accepts them: with the
    // default backlog (128) the kernel drops a SYN now and then, the client
    // retries a second later, and the first clients could idle out before
    // the last one is connected.
    let jamd = Jamd::start("[server]\nidle_timeout = 2\nbacklog = 1024\n");
    let mut clients: Vec<Client> = (0..400).map(|_| jamd.connect()).collect();
    // Every client is admitted before jamd freezes.
    for c in &mut clients {
        let reply = c.ask("TIME");
        assert!(
            reply.starts_with("JAM "),
            "before the freeze, got {reply:?}: {:#?}",
            jamd.log()
        );
    }
    jamd.freeze();
    for c in &mut clients {
        c.send(b"TIME\r\n");
    }
    // The freeze must outlast idle_timeout (2 s), so that the idle sweep
    // finds these clients due when jamd runs again: time has to pass, and
    // a frozen jamd shows no event to wait for.
    std::thread::sleep(Duration::from_secs(3));
    jamd.child.signal(libc::SIGCONT);
    for c in &mut clients {
        let reply = c.line();
        assert!(reply.starts_with("JAM "), "answered first, got {reply:?}");
    }
}

/// Connections whose handshake the kernel completed before SIGTERM (waiting
/// in the listen queue while jamd could not accept) are served, not reset.
#[test]
fn sigterm_serves_the_connections_waiting_in_the_listen_queue() {
    let mut jamd = Jamd::start("[server]\nshutdown_timeout = 5\n");
    jamd.freeze();
    let mut clients: Vec<Client> = (0..5).map(|_| jamd.connect()).collect();
    for c in &mut clients {
        c.send(b"TIME\r\n");
    }
    jamd.signal("TERM");
    jamd.child.signal(libc::SIGCONT);
    for c in &mut clients {
        let reply = c.line();
        assert!(reply.starts_with("JAM "), "served, got {reply:?}");
        c.send(b"QUIT\r\n");
    }
    drop(clients);
    assert_eq!(jamd.wait_exit(T), Some(0));
}

/// A worker that dies takes jamd down: exit 1, a log line that says so,
/// and no `stopped` (a clean stop after a crash would keep systemd's
/// `Restart=on-failure` from restarting it). The fault is injected through
/// `JAMD_TEST_FAULT`, which only debug builds read.
#[test]
fn a_dead_worker_stops_jamd_with_status_1() {
    for workers in ["1", "2"] {
        let dir = TempDir::new("dead");
        let config = dir.join("jamd.toml");
        std::fs::write(&config, format!("[server]\nworkers = {workers}\n")).unwrap();
        let mut cmd = Command::new(JAMD);
        cmd.arg("-c")
            .arg(&config)
            .args(["-p", "0", "-b", "127.0.0.1", "--log", "stderr"])
            .env("JAMD_TEST_FAULT", "panic");
        let mut jamd = Jamd::spawn(cmd, dir, config);
        let _ = std::net::TcpStream::connect(jamd.addr).unwrap();
        assert_eq!(jamd.wait_exit(T), Some(1), "{:#?}", jamd.log());
        assert!(
            jamd.stderr
                .wait_for("a worker thread died (jamd-worker-", T)
                .is_some(),
            "{:#?}",
            jamd.log()
        );
        assert_eq!(jamd.stderr.count("stopped"), 0, "{:#?}", jamd.log());
    }
}

/// The watchdog proves the workers alive: with one stuck, `WATCHDOG=1`
/// stops, so the service manager restarts jamd.
#[test]
fn the_watchdog_stops_when_a_worker_is_stuck() {
    use std::os::unix::net::UnixDatagram;
    let dir = TempDir::new("watchdog");
    let notify = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let config = dir.join("jamd.toml");
    std::fs::write(&config, "[server]\nworkers = 2\n").unwrap();
    let mut cmd = Command::new(JAMD);
    cmd.arg("-c")
        .arg(&config)
        .args(["-p", "0", "-b", "127.0.0.1", "--log", "stderr"])
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "200000")
        .env("JAMD_TEST_FAULT", "hang");
    let jamd = Jamd::spawn(cmd, dir, config);
    let pings = |msg: &str| msg.lines().filter(|l| *l == "WATCHDOG=1").count();
    // Three pings within a second (WATCHDOG_USEC is 0.2 s).
    let mut seen = 0;
    let third = recv_until(
        |buf| sock.recv(buf),
        Duration::from_secs(1),
        |msg| {
            seen += pings(msg);
            seen >= 3
        },
    );
    assert!(third.is_some(), "pings while healthy: {seen}");
    // One worker admits this client and hangs.
    let _c = std::net::TcpStream::connect(jamd.addr).unwrap();
    // The ping it answered just before it hung may still be sent: let it
    // go. Then no ping for two seconds: showing that none comes takes the
    // time.
    recv_within(|buf| sock.recv(buf), Duration::from_millis(500));
    let late = recv_within(|buf| sock.recv(buf), Duration::from_secs(2));
    assert_eq!(
        late.iter().map(|m| pings(m)).sum::<usize>(),
        0,
        "no ping with a stuck worker"
    );
}
