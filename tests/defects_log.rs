//! Logging (jamd(8), LOGGING; jamd.toml(5), The [log] table):
//! a syslog outage after start sends lines to stderr, a restarted receiver
//! gets the very next line, signals during a slow receiver's waits are no
//! outage, the journal gets `<N>` priorities, and UDP lines carry the host
//! name even where /proc/sys is hidden.

mod common;

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    recv_until, require_namespaces, syslog_config, temp_dir, wait_file, write_file, ChildGuard,
    Jamd, SyslogSink, JAMD,
};

const T: Duration = Duration::from_secs(10);

/// Connects and says QUIT; returns the client's own address.
fn visit(addr: SocketAddr) -> SocketAddr {
    use std::io::Write as _;
    let mut c = TcpStream::connect(addr).unwrap();
    let local = c.local_addr().unwrap();
    c.write_all(b"QUIT\r\n").unwrap();
    local
}

#[test]
fn a_syslog_outage_after_start_sends_lines_to_stderr() {
    let sink = SyslogSink::bind("outage");
    let jamd = Jamd::start_syslog_only(&sink, "");
    let (addr, stderr) = (jamd.addr, &jamd.stderr);
    // The receiver goes away for good: the very next line is refused, and
    // goes to stderr with the notice. (A line sent just before, into a
    // socket still open, cannot be known lost: see SyslogSink::close.)
    sink.close();
    let client = visit(addr);
    let seen = stderr.wait_for(&format!("connection from {client}"), T);
    assert!(seen.is_some(), "{:?}", stderr.all());
    assert!(
        stderr.wait_for("cannot reach syslog", T).is_some(),
        "{:?}",
        stderr.all()
    );
}

#[test]
fn after_a_receiver_restart_the_next_line_is_not_lost() {
    let sink = SyslogSink::bind("restart");
    let jamd = Jamd::start_syslog_only(&sink, "");
    let addr = jamd.addr;
    // The receiver restarts: a new socket at the same path.
    let path = sink.close();
    let again = UnixDatagram::bind(&path).unwrap();
    again
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let client = visit(addr);
    let needle = format!("connection from {client}");
    let got = recv_until(|buf| again.recv(buf), T, |msg| msg.contains(&needle));
    assert!(got.is_some(), "the first line after the restart was lost");
    drop(jamd);
}

/// Starts jamd with stderr going to a file, whose device and inode are put
/// in `JOURNAL_STREAM` when `journal` is true (as systemd does for the journal).
fn start_with_stderr_file(journal: bool) -> (ChildGuard, PathBuf) {
    let dir = temp_dir("journal");
    let out = dir.join("stderr");
    let file = std::fs::File::create(&out).unwrap();
    let meta = file.metadata().unwrap();
    let mut cmd = Command::new(JAMD);
    cmd.args(["-c"])
        .arg(dir.join("none.toml"))
        .args(["-p", "0", "-b", "127.0.0.1", "--log", "stderr"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file);
    std::fs::write(
        dir.join("none.toml"),
        "[server]\nmax_connections = 1\nmax_connections_per_source = 2\n",
    )
    .unwrap();
    if journal {
        cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    } else {
        cmd.env("JOURNAL_STREAM", "1:1");
    }
    (ChildGuard::spawn(&mut cmd), out)
}

/// Starts jamd with its stderr on a file (a journal stream or not) and
/// checks its first lines: the listening line and a warning start with
/// `listening` and `warning` (their prefixes), and `absent` is nowhere.
fn assert_stderr_lines(journal: bool, listening: &str, warning: &str, absent: &str) {
    let (_jamd, out) = start_with_stderr_file(journal);
    let text = wait_file(&out, "listening on", T);
    for prefix in [listening, warning] {
        assert!(
            text.lines().any(|l| l.starts_with(prefix)),
            "journal={journal}: no line starts with {prefix:?}: {text}"
        );
    }
    assert!(
        !text.contains(absent),
        "journal={journal}: {absent:?} in {text}"
    );
}

#[test]
fn stderr_lines_to_the_journal_carry_the_priority_prefix() {
    assert_stderr_lines(
        true,
        "<6>listening on 127.0.0.1:",
        "<4>server.max_connections_per_source (2) is above",
        "jamd: ",
    );
}

#[test]
fn stderr_lines_elsewhere_carry_the_level_in_words() {
    assert_stderr_lines(
        false,
        "jamd: listening on 127.0.0.1:",
        "jamd: warning: server.max_connections_per_source",
        "<6>",
    );
}

/// Remote syslog lines name the host from gethostname(2), also where
/// /proc/sys is hidden (the shipped unit's ProcSubset=pid): run jamd in
/// private mount and UTS namespaces with its own host name.
#[test]
fn udp_syslog_lines_carry_the_host_name_without_proc_sys() {
    if !require_namespaces("-mu") {
        return;
    }
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let config = write_file(
        &temp_dir("udplog"),
        "jamd.toml",
        &syslog_config(format!("udp://{}", collector.local_addr().unwrap()), ""),
    );
    let script = format!(
        "hostname jamd-test-host && mount -t tmpfs none /proc/sys && exec {JAMD} -c {config} -p 0 -b 127.0.0.1",
    );
    let _jamd = ChildGuard::spawn(
        Command::new("unshare")
            .args(["-mu", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let line = recv_until(|buf| collector.recv(buf), T, |m| m.contains("listening on"));
    let line = line.expect("a listening line over UDP");
    assert!(line.contains(" jamd-test-host jamd["), "{line}");
}

#[test]
fn signals_while_syslog_is_slow_give_no_false_outage_notice() {
    // A receiver that reads nothing: once its queue is full, each line
    // waits out the write timeout and is dropped (and counted). A signal
    // landing on the logging thread meanwhile cuts that wait short (a send
    // with a timeout is never restarted): the receiver is still there, and
    // jamd must not say it cannot reach syslog. A burst of SIGHUPs makes
    // some land on threads other than the main one.
    let sink = SyslogSink::bind("slow");
    let jamd = Jamd::start_syslog_only(&sink, "");
    for _ in 0..30 {
        visit(jamd.addr);
    }
    for _ in 0..100 {
        for sig in ["HUP", "USR1", "HUP", "USR1"] {
            jamd.signal(sig);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // jamd still serves; the logging thread works through what it was
    // given (each line at most the write timeout) meanwhile.
    visit(jamd.addr);
    std::thread::sleep(Duration::from_secs(2));
    let notices = jamd.stderr.count("cannot reach syslog");
    assert_eq!(notices, 0, "{:?}", jamd.stderr.all());
    // The receiver was there all along: it goes only now.
    drop(sink);
}
