//! A unix datagram socket standing in for /dev/log.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::tmp::temp_dir;

/// A `[log]` section sending every line to the syslog socket at `socket`
/// (a path, or `udp://HOST:PORT`), with more `[log]` keys after.
pub fn syslog_config(socket: impl std::fmt::Display, log_keys: &str) -> String {
    format!("[log]\ntarget = \"syslog\"\nsyslog_socket = \"{socket}\"\n{log_keys}")
}

/// A syslog socket in a private directory. Dropping it closes the socket
/// but leaves its file (a test may remove it, or bind the path again, to
/// play a restarted receiver); the directory goes when the process exits.
pub struct SyslogSink {
    pub path: PathBuf,
    pub sock: UnixDatagram,
}

impl SyslogSink {
    /// Binds `log.sock` in a fresh directory.
    pub fn bind(name: &str) -> SyslogSink {
        let dir = temp_dir(name);
        let path = dir.join("log.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        SyslogSink { path, sock }
    }

    /// Receives datagrams until one contains `needle` (bounded); returns it.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        recv_until(
            |buf| self.sock.recv(buf),
            timeout,
            |msg| msg.contains(needle),
        )
    }

    /// Every datagram up to and including the first that contains `needle`
    /// (bounded: returns what came if it never does).
    pub fn collect_until(&self, needle: &str, timeout: Duration) -> Vec<String> {
        let mut out = Vec::new();
        recv_until(
            |buf| self.sock.recv(buf),
            timeout,
            |msg| {
                out.push(msg.to_owned());
                msg.contains(needle)
            },
        );
        out
    }

    /// Every datagram that arrives within `window`.
    pub fn drain(&self, window: Duration) -> Vec<String> {
        recv_within(|buf| self.sock.recv(buf), window)
    }
}

/// Receives datagrams with `recv` (a socket's `recv`, whose read timeout
/// bounds each call) until one satisfies `wanted`, for at most `within`:
/// that one, or None. Those before it are dropped.
pub fn recv_until(
    mut recv: impl FnMut(&mut [u8]) -> io::Result<usize>,
    within: Duration,
    mut wanted: impl FnMut(&str) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if wanted(&msg) {
                return Some(msg);
            }
        }
    }
    None
}

/// Every datagram `recv` gets within `window` (which must pass: to show
/// that something does not come).
pub fn recv_within(
    mut recv: impl FnMut(&mut [u8]) -> io::Result<usize>,
    window: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + window;
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::new();
    while Instant::now() < deadline {
        if let Ok(n) = recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    out
}
