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

    /// The receiver goes away: closes the socket, removes its file, and
    /// waits (bounded) until the kernel has released the socket, which is
    /// when a sender's next datagram is refused. Dropping it is not enough:
    /// a child another test thread is starting holds a copy of every open
    /// descriptor from fork(2) until it execs, and a datagram sent meanwhile
    /// is queued in the socket, accepted, and lost when the copy closes, as
    /// with a real receiver that closes with lines unread. No sender can
    /// know that; a test of what jamd does when it can know waits for this.
    pub fn close(self) -> PathBuf {
        let inode = self.sock_inode();
        let path = self.path.clone();
        drop(self);
        std::fs::remove_file(&path).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while unix_socket_exists(inode) {
            assert!(
                Instant::now() < deadline,
                "the closed syslog socket (inode {inode}) is still open somewhere"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        path
    }

    fn sock_inode(&self) -> u64 {
        use std::os::fd::AsFd as _;
        use std::os::unix::fs::MetadataExt as _;
        let fd = self.sock.as_fd().try_clone_to_owned().unwrap();
        std::fs::File::from(fd).metadata().unwrap().ino()
    }

    /// Every datagram that arrives within `window`.
    pub fn drain(&self, window: Duration) -> Vec<String> {
        recv_within(|buf| self.sock.recv(buf), window)
    }
}

/// Whether a unix socket with this inode is still open in this network
/// namespace (/proc/net/unix lists them until the last descriptor closes).
fn unix_socket_exists(inode: u64) -> bool {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    // Num RefCount Protocol Flags Type St Inode [Path]
    table
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(6) == Some(&inode.to_string()))
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
