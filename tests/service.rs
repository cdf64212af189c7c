//! jamd under a service manager, against the real tools: systemd's
//! socket activation (`systemd-socket-activate`, both modes), openbsd-inetd
//! (nowait and wait), and sd_notify readiness on a unix datagram socket.

mod common;

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::supervisor::{current_user, packaged_daemon, Supervisor};
use common::{
    free_port, jam_time, recv_until, require_tool, run_jamd, run_within, temp_dir, wait_file,
    wait_file_holds, wait_until, ChildGuard, Client, Jamd, SyslogSink, TempDir, Verbatim, JAMD,
};

const T: Duration = Duration::from_secs(10);

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("jamd.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// systemd-socket-activate listening on 127.0.0.1 at each of `ports` with
/// `flags` (such as `--accept`), set to run `jamd -c cfg` and `jamd_args`;
/// the tool's stderr (and so a jamd it execs itself) goes to `log`. None
/// when the tool is missing.
fn socket_activate(
    ports: &[u16],
    flags: &[&str],
    cfg: &Path,
    jamd_args: &[&str],
    log: &Path,
) -> Option<Command> {
    let mut cmd = Command::new(require_tool("systemd-socket-activate")?);
    for port in ports {
        cmd.args(["-l", &format!("127.0.0.1:{port}")]);
    }
    cmd.args(flags)
        .arg(JAMD)
        .arg("-c")
        .arg(cfg)
        .args(jamd_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    Some(cmd)
}

fn syslog_log(sink: &SyslogSink) -> String {
    format!(
        "[log]\ntarget = \"stderr\"\nsyslog_socket = \"{}\"\n",
        sink.path.display()
    )
}

#[test]
fn socket_activation_serves_the_passed_listeners() {
    let (p1, p2) = (free_port(), free_port());
    let dir = temp_dir("activate");
    let cfg = write_config(&dir, "");
    let log = dir.join("stderr.log");
    let Some(mut activate) = socket_activate(&[p1, p2], &[], &cfg, &["--log", "stderr"], &log)
    else {
        return;
    };
    // systemd-socket-activate execs jamd when the first client connects, so
    // jamd's pid is the tool's pid and its stderr goes to the file.
    let mut child = ChildGuard::spawn(&mut activate);
    for port in [p1, p2] {
        let mut c = Client::connect_retry(SocketAddr::from(([127, 0, 0, 1], port)));
        assert!(jam_time(&c.ask("TIME")).is_some());
    }
    // jamd writes its log from a thread of its own: wait (bounded) for it.
    let text = wait_file_holds(
        &log,
        &[
            "jamd: using 2 socket(s) from the service manager",
            &format!("listening on 127.0.0.1:{p1} (from the service manager)"),
            &format!("listening on 127.0.0.1:{p2} (from the service manager)"),
        ],
        T,
    );
    // It did not bind anything of its own (the configured port is 45000).
    assert!(!text.contains("(backlog "), "{text}");
    child.signal(libc::SIGTERM);
    let status = child.wait_timeout(T).expect("jamd did not stop on SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn socket_activation_with_accept_serves_one_connection_per_process() {
    let port = free_port();
    let sink = SyslogSink::bind("accept");
    let dir = temp_dir("accept");
    // log.target is stderr, but with Accept=yes stdio may be the client:
    // jamd must log to syslog only.
    let cfg = write_config(&dir, &syslog_log(&sink));
    // The tool says on its stderr how each per-connection jamd exited.
    let tool_log = dir.join("activate.log");
    let Some(mut activate) = socket_activate(&[port], &["--accept"], &cfg, &[], &tool_log) else {
        return;
    };
    let child = Supervisor::spawn(&mut activate);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..2 {
        Client::connect_retry(addr).assert_one_session();
    }
    assert!(sink
        .wait_for("using 1 socket(s) from the service manager", T)
        .is_some());
    let closed = sink
        .wait_for("reason=quit", T)
        .expect("closed line on syslog");
    assert!(
        closed.contains("closed 127.0.0.1:") && closed.contains("requests=2"),
        "{closed}"
    );
    // Each per-connection jamd has exited.
    wait_until("the per-connection jamds to exit", T, || {
        let left = child.children();
        left.is_empty().then_some(()).ok_or(left)
    });
    // …and each exited 0 (`Child PID died with code N`; connect_retry's
    // probe connections started one each too).
    let text = wait_until("every exit reported", T, || {
        let text = std::fs::read_to_string(&tool_log).unwrap_or_default();
        let spawned = text.matches("Spawned ").count();
        if spawned >= 2 && text.matches("died with code").count() == spawned {
            Ok(text)
        } else {
            Err(Verbatim(text))
        }
    });
    let codes: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split("died with code ").nth(1))
        .collect();
    assert!(codes.iter().all(|&c| c == "0"), "{text}");
}

/// Runs jamd under systemd-socket-activate on 127.0.0.1:PORT with `config`,
/// makes one request, stops it, and returns what it logged.
fn activated_log(config: &str, port: u16) -> Option<String> {
    let dir = TempDir::new("activated");
    let cfg = write_config(&dir, config);
    let log = dir.join("stderr.log");
    let mut activate = socket_activate(&[port], &[], &cfg, &["--log", "stderr"], &log)?;
    let mut child = ChildGuard::spawn(&mut activate);
    let mut c = Client::connect_retry(SocketAddr::from(([127, 0, 0, 1], port)));
    let reply = c.ask("TIME");
    assert!(jam_time(&reply).is_some(), "{reply:?}");
    c.send(b"QUIT\r\n");
    assert_eq!(c.line_raw(), "", "closed after QUIT, nothing else sent");
    wait_file(&log, "(from the service manager)", T);
    child.signal(libc::SIGTERM);
    let _ = child.wait_timeout(T);
    Some(std::fs::read_to_string(&log).unwrap())
}

#[test]
fn socket_activation_says_when_the_file_asks_for_other_sockets() {
    let port = free_port();
    let Some(text) = activated_log("", port) else {
        return;
    };
    assert!(
        text.contains(&format!(
            "the service manager's sockets (127.0.0.1:{port}) are used, not server.port and server.bind (0.0.0.0:45000, [::]:45000)"
        )),
        "{text}"
    );
    let port = free_port();
    let same = format!("[server]\nport = {port}\nbind = [\"127.0.0.1\"]\n");
    let Some(text) = activated_log(&same, port) else {
        return;
    };
    assert!(!text.contains("service manager's sockets"), "{text}");
}

#[test]
fn listen_fds_for_another_process_are_ignored_with_a_warning() {
    let mut cmd = Command::new(JAMD);
    let dir = temp_dir("otherpid");
    let cfg = write_config(&dir, "");
    cmd.arg("-c")
        .arg(&cfg)
        .args(["-p", "0", "-b", "127.0.0.1", "--log", "stderr"])
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let jamd = Jamd::spawn(cmd, dir, cfg);
    assert!(jamd
        .stderr
        .wait_for(
            "ignoring LISTEN_FDS: LISTEN_PID=\"1\" is not this process",
            T
        )
        .is_some());
    assert!(jam_time(&jamd.connect().ask("TIME")).is_some());
}

/// Runs jamd through `sh` so that `LISTEN_PID=$$` names jamd itself (the
/// shell's pid survives the exec); returns its exit code and stderr.
fn run_activated(env: &str, redirect: &str) -> (Option<i32>, String) {
    let dir = temp_dir("activated");
    let cfg = write_config(&dir, "");
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(format!(
        "LISTEN_PID=$$ {env} exec {JAMD} -c {} --log stderr {redirect}",
        cfg.display()
    ));
    let (code, _, err) = run_within(&mut sh, T);
    (code, err)
}

#[test]
fn a_passed_descriptor_that_is_not_a_socket_is_refused_clearly() {
    // fd 3 is a file, not a socket.
    let (code, err) = run_activated("LISTEN_FDS=1", "3</dev/null");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("descriptor 3 is not a socket"), "{err}");
    assert!(
        err.lines().last().unwrap().contains("is a TCP socket"),
        "{err}"
    );
}

#[test]
fn garbage_listen_fds_is_an_error_not_a_crash() {
    let (code, err) = run_activated("LISTEN_FDS=lots", "");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("LISTEN_FDS=\"lots\""), "{err}");
}

fn run_inetd(mode: &str, sink: &SyslogSink) -> Option<(Supervisor, SocketAddr, TempDir)> {
    let inetd = packaged_daemon("inetd")?;
    let port = free_port();
    let dir = TempDir::new(&format!("inetd-{mode}"));
    let cfg = write_config(&dir, &syslog_log(sink));
    let conf = dir.join("inetd.conf");
    std::fs::write(
        &conf,
        format!(
            "127.0.0.1:{port} stream tcp {mode} {} {JAMD} jamd --inetd -c {}\n",
            current_user(),
            cfg.display()
        ),
    )
    .unwrap();
    let inetd = Supervisor::spawn(
        Command::new(inetd)
            .arg("-i")
            .arg(&conf)
            .stderr(Stdio::null()),
    );
    Some((inetd, SocketAddr::from(([127, 0, 0, 1], port)), dir))
}

#[test]
fn inetd_nowait_runs_jamd_per_connection_and_nothing_but_replies_reach_the_client() {
    let sink = SyslogSink::bind("inetd-nowait");
    let Some((inetd, addr, _dir)) = run_inetd("nowait", &sink) else {
        return;
    };
    for _ in 0..2 {
        // Only replies: no log line leaks onto the connection (stderr is the socket).
        Client::connect_retry(addr).assert_one_session();
    }
    assert!(sink.wait_for("connection from 127.0.0.1:", T).is_some());
    assert!(sink.wait_for("reason=quit", T).is_some());
    // Each jamd exits once its connection is over, also when TIME and QUIT
    // arrive together and the connection ends before jamd ever waits.
    let mut c = Client::connect_retry(addr);
    c.send(b"TIME\r\nQUIT\r\n");
    assert!(jam_time(&c.line()).is_some());
    assert_eq!(c.line_raw(), "");
    wait_until("jamd to exit after its connection", T, || {
        let left = inetd.children();
        left.is_empty().then_some(()).ok_or(left)
    });
    drop(inetd);
}

#[test]
fn inetd_wait_hands_jamd_the_listening_socket() {
    let sink = SyslogSink::bind("inetd-wait");
    let Some((inetd, addr, _dir)) = run_inetd("wait", &sink) else {
        return;
    };
    let mut a = Client::connect_retry(addr);
    assert!(jam_time(&a.ask("TIME")).is_some());
    // One jamd accepts every later client itself.
    let mut b = Client::connect(addr);
    assert!(jam_time(&b.ask("TIME")).is_some());
    let kids = inetd.children();
    assert_eq!(kids.len(), 1, "one jamd serves them all: {kids:?}");
    let _ = Command::new("kill").arg(kids[0].to_string()).status();
    assert!(sink.wait_for("stopped", T).is_some());
    drop(inetd);
}

#[test]
fn inetd_flag_without_a_socket_on_stdin_exits_1() {
    let (code, _, err) = run_jamd(&["--inetd", "--log", "stderr"], T);
    assert_eq!(code, Some(1), "{err}");
}

/// Receives notify datagrams (bounded) until one satisfies `pred`.
fn notify_wait(
    sock: &UnixDatagram,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> Option<String> {
    recv_until(|buf| sock.recv(buf), timeout, pred)
}

fn notify_socket(name: &str) -> (UnixDatagram, PathBuf, TempDir) {
    let dir = TempDir::new(name);
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    (sock, path, dir)
}

fn start_notified(notify: &str, extra_env: &[(&str, &str)]) -> Jamd {
    let dir = temp_dir("notified");
    let cfg = write_config(&dir, "");
    let mut cmd = Command::new(JAMD);
    cmd.arg("-c")
        .arg(&cfg)
        .args(["-p", "0", "-b", "127.0.0.1", "--log", "stderr"])
        .env("NOTIFY_SOCKET", notify)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    Jamd::spawn(cmd, dir, cfg)
}

#[test]
fn readiness_reload_status_and_stopping_are_notified() {
    let (sock, path, _dir) = notify_socket("notify");
    let mut jamd = start_notified(path.to_str().unwrap(), &[]);
    let ready = notify_wait(&sock, T, |m| m.contains("READY=1")).expect("READY=1");
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    // Listening by then.
    let mut c = jamd.connect();
    assert!(jam_time(&c.ask("TIME")).is_some());
    let status = notify_wait(&sock, T, |m| m.starts_with("STATUS=1 connection(s) open"));
    assert!(status.is_some());
    jamd.signal("HUP");
    let reloading = notify_wait(&sock, T, |m| m.contains("RELOADING=1")).expect("RELOADING=1");
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC")
        .parse()
        .unwrap();
    assert!(usec > 0);
    assert!(
        notify_wait(&sock, T, |m| m.contains("READY=1")).is_some(),
        "READY=1 after reload"
    );
    c.send(b"QUIT\r\n");
    assert!(notify_wait(&sock, T, |m| m.starts_with("STATUS=0 connection(s) open")).is_some());
    jamd.signal("TERM");
    assert!(notify_wait(&sock, T, |m| m == "STOPPING=1").is_some());
    assert_eq!(jamd.wait_exit(T), Some(0));
}

#[test]
fn watchdog_pings_come_at_half_the_interval() {
    let (sock, path, _dir) = notify_socket("watchdog");
    let jamd = start_notified(path.to_str().unwrap(), &[("WATCHDOG_USEC", "600000")]);
    assert!(notify_wait(&sock, T, |m| m.contains("READY=1")).is_some());
    let start = Instant::now();
    let mut pings = Vec::new();
    let mut buf = [0u8; 256];
    while start.elapsed() < Duration::from_secs(3) {
        if let Ok(n) = sock.recv(&mut buf) {
            if &buf[..n] == b"WATCHDOG=1" {
                pings.push(start.elapsed());
            }
        }
    }
    // Every 300 ms: about 10 in 3 s. A loaded machine delays pings, so the
    // lower bound is loose (a watchdog that stopped sends none); delays
    // never add pings, so the upper bound catches a flood.
    assert!((3..=20).contains(&pings.len()), "{pings:?}");
    drop(jamd);
}

#[test]
fn abstract_notify_sockets_work() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("jamd-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let _jamd = start_notified(&format!("@{name}"), &[]);
    assert!(notify_wait(&sock, T, |m| m.contains("READY=1")).is_some());
}

#[test]
fn a_garbage_notify_socket_is_logged_and_jamd_serves_anyway() {
    let jamd = start_notified("not a socket path", &[]);
    assert!(jamd
        .stderr
        .wait_for("NOTIFY_SOCKET=\"not a socket path\" cannot be used", T)
        .is_some());
    assert!(jam_time(&jamd.connect().ask("TIME")).is_some());
}
