//! Messages to the service manager (`NOTIFY_SOCKET`, sd_notify(3)): readiness,
//! reloading, stopping, status and watchdog pings.

use std::io;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::time::Duration;

/// Messages to the service manager (`NOTIFY_SOCKET`), see sd_notify(3).
pub struct Notifier {
    target: Option<(UnixDatagram, UnixAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC`; problems go to `warnings`.
    pub fn from_env(warnings: &mut Vec<String>) -> Notifier {
        let target = match std::env::var("NOTIFY_SOCKET") {
            Ok(path) if !path.is_empty() => match notify_target(&path) {
                Ok(t) => Some(t),
                Err(e) => {
                    warnings.push(format!(
                        "NOTIFY_SOCKET={path:?} cannot be used ({e}); not notifying the service manager"
                    ));
                    None
                }
            },
            _ => None,
        };
        let watchdog = watchdog_interval(warnings);
        Notifier { target, watchdog }
    }

    /// Whether a service manager listens.
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// How often to send `WATCHDOG=1` (half of `WATCHDOG_USEC`).
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.target.as_ref().and(self.watchdog)
    }

    /// Sends a raw message such as `READY=1`; failures are ignored (the
    /// service manager may be gone, which must not stop the service).
    pub fn send(&self, msg: &str) {
        if let Some((sock, addr)) = &self.target {
            let _ = sock.send_to_addr(msg.as_bytes(), addr);
        }
    }

    /// `READY=1`, with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=`.
    pub fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            crate::sys::monotonic_usec()
        ));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// `STATUS=N connection(s) open`.
    pub fn status_connections(&self, open: usize) {
        self.send(&format!("STATUS={open} connection(s) open"));
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}

fn notify_target(path: &str) -> io::Result<(UnixDatagram, UnixAddr)> {
    let addr = if let Some(name) = path.strip_prefix('@') {
        abstract_addr(name.as_bytes())?
    } else if path.starts_with('/') {
        UnixAddr::from_pathname(path)?
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an absolute path or an @abstract name",
        ));
    };
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    Ok((sock, addr))
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> io::Result<UnixAddr> {
    use std::os::linux::net::SocketAddrExt;
    UnixAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_name: &[u8]) -> io::Result<UnixAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets are Linux-only",
    ))
}

fn watchdog_interval(warnings: &mut Vec<String>) -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    match usec.trim().parse::<u64>() {
        Ok(n) if n > 0 => Some(Duration::from_micros(n / 2)),
        _ => {
            warnings.push(format!(
                "WATCHDOG_USEC={usec:?} is not a positive number; no watchdog pings"
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private directory, removed when the test ends (also by a panic).
    struct Dir(std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn messages_reach_a_path_socket() {
        let dir = Dir(std::env::temp_dir().join(format!("jamd-notify-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier {
            target: Some(notify_target(path.to_str().unwrap()).unwrap()),
            watchdog: None,
        };
        n.ready("serving");
        n.status_connections(3);
        n.reloading();
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving");
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=3 connection(s) open");
        let len = rx.recv(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
        let usec: u64 = text.rsplit('=').next().unwrap().parse().unwrap();
        assert!(usec > 0);
        // Nothing is left in the temporary directory.
        let at = dir.0.clone();
        drop(dir);
        assert!(!at.exists(), "{} is left behind", at.display());
    }

    #[test]
    fn garbage_notify_socket_values_are_refused() {
        assert!(notify_target("relative/path").is_err());
        assert!(notify_target("").is_err());
    }
}
