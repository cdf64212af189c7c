//! Logging (SPEC 3 and 12; issue 12 items 7 and 20, and the hostname):
//! a syslog outage after start sends lines to stderr, a restarted receiver
//! gets the very next line, the journal gets `<N>` priorities, and UDP lines
//! carry the host name even where /proc/sys is hidden.

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{parse_listening, temp_dir, SyslogSink, JAMD};

const T: Duration = Duration::from_secs(10);

/// A jamd child stopped by its pid when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Collects a child's stderr lines.
fn collect(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let pipe = child.stderr.take().expect("stderr piped");
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

fn wait_line(lines: &Arc<Mutex<Vec<String>>>, needle: &str) -> Option<String> {
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        if let Some(l) = lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
            return Some(l.clone());
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Starts jamd logging to syslog only, at `socket`.
fn start_syslog_only(socket: &Path) -> Guard {
    let dir = temp_dir("logcfg");
    let config = dir.join("jamd.toml");
    std::fs::write(
        &config,
        format!(
            "[log]\ntarget = \"syslog\"\nsyslog_socket = \"{}\"\n",
            socket.display()
        ),
    )
    .unwrap();
    let child = Command::new(JAMD)
        .arg("-c")
        .arg(&config)
        .args(["-p", "0", "-b", "127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start jamd");
    Guard(child)
}

fn listening_addr(sink: &SyslogSink) -> SocketAddr {
    let line = sink
        .wait_for("listening on ", T)
        .expect("listening line in syslog");
    parse_listening(&line).expect("address")
}

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
    let mut jamd = start_syslog_only(&sink.path);
    let stderr = collect(&mut jamd.0);
    let addr = listening_addr(&sink);
    // The receiver goes away for good.
    let path = sink.path.clone();
    drop(sink);
    std::fs::remove_file(&path).unwrap();
    let client = visit(addr);
    let line = wait_line(&stderr, &format!("connection from {client}"));
    assert!(line.is_some(), "{:?}", stderr.lock().unwrap());
    assert!(
        wait_line(&stderr, "cannot reach syslog").is_some(),
        "{:?}",
        stderr.lock().unwrap()
    );
}

#[test]
fn after_a_receiver_restart_the_next_line_is_not_lost() {
    let sink = SyslogSink::bind("restart");
    let jamd = start_syslog_only(&sink.path);
    let addr = listening_addr(&sink);
    // The receiver restarts: a new socket at the same path.
    let path = sink.path.clone();
    drop(sink);
    std::fs::remove_file(&path).unwrap();
    let again = UnixDatagram::bind(&path).unwrap();
    again
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let client = visit(addr);
    let needle = format!("connection from {client}");
    let deadline = Instant::now() + T;
    let mut buf = vec![0u8; 4096];
    let mut got = false;
    while Instant::now() < deadline && !got {
        if let Ok(n) = again.recv(&mut buf) {
            got = String::from_utf8_lossy(&buf[..n]).contains(&needle);
        }
    }
    assert!(got, "the first line after the restart was lost");
    drop(jamd);
}

/// Starts jamd with stderr going to a file, whose device and inode are put
/// in `JOURNAL_STREAM` when `journal` is true (as systemd does for the journal).
fn start_with_stderr_file(journal: bool) -> (Guard, PathBuf) {
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
    (Guard(cmd.spawn().unwrap()), out)
}

fn wait_file(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + T;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) || Instant::now() >= deadline {
            return text;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn stderr_lines_to_the_journal_carry_the_priority_prefix() {
    let (_jamd, out) = start_with_stderr_file(true);
    let text = wait_file(&out, "listening on");
    assert!(
        text.lines()
            .any(|l| l.starts_with("<6>listening on 127.0.0.1:")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("<4>server.max_connections_per_source (2) is above")),
        "{text}"
    );
    assert!(!text.contains("jamd: "), "{text}");
}

#[test]
fn stderr_lines_elsewhere_carry_the_level_in_words() {
    let (_jamd, out) = start_with_stderr_file(false);
    let text = wait_file(&out, "listening on");
    assert!(
        text.lines()
            .any(|l| l.starts_with("jamd: listening on 127.0.0.1:")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("jamd: warning: server.max_connections_per_source")),
        "{text}"
    );
    assert!(!text.contains("<6>"), "{text}");
}

/// Remote syslog lines name the host from gethostname(2), also where
/// /proc/sys is hidden (the shipped unit's ProcSubset=pid): run jamd in
/// private mount and UTS namespaces with its own host name.
#[test]
fn udp_syslog_lines_carry_the_host_name_without_proc_sys() {
    let probe = Command::new("unshare")
        .args(["-mu", "true"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        skip!("no mount/UTS namespaces here (unshare needs root)");
    }
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let dir = temp_dir("udplog");
    let config = dir.join("jamd.toml");
    std::fs::write(
        &config,
        format!(
            "[log]\ntarget = \"syslog\"\nsyslog_socket = \"udp://{}\"\n",
            collector.local_addr().unwrap()
        ),
    )
    .unwrap();
    let script = format!(
        "hostname jamd-test-host && mount -t tmpfs none /proc/sys && exec {JAMD} -c {} -p 0 -b 127.0.0.1",
        config.display()
    );
    let _jamd = Guard(
        Command::new("unshare")
            .args(["-mu", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + T;
    let mut buf = vec![0u8; 4096];
    let mut line = None;
    while Instant::now() < deadline && line.is_none() {
        if let Ok(n) = collector.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.contains("listening on") {
                line = Some(text);
            }
        }
    }
    let line = line.expect("a listening line over UDP");
    assert!(line.contains(" jamd-test-host jamd["), "{line}");
}
