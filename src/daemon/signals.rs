//! The signals jamd acts on (signal-hook): SIGTERM, SIGINT and SIGQUIT stop
//! (gracefully: SIGQUIT is nginx's graceful stop and a terminal's Ctrl-\),
//! SIGHUP reloads, SIGUSR1 logs a status line; SIGUSR2, SIGALRM, SIGPWR,
//! SIGVTALRM, SIGPROF, SIGURG and SIGWINCH are ignored. No signal an operator
//! or a tool sends by habit kills jamd without a `stopped` line (jamd(8),
//! SIGNALS).
//!
//! Signal handlers only set a flag and write a byte to a self-pipe; the
//! control loop polls the pipe and does the real work outside the handler.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use libc::SIGPWR;
use signal_hook::consts::{
    SIGALRM, SIGHUP, SIGINT, SIGPROF, SIGQUIT, SIGTERM, SIGURG, SIGUSR1, SIGUSR2, SIGVTALRM,
    SIGWINCH,
};

/// Signals whose default action would end jamd (or that a terminal sends)
/// and that mean nothing to it.
const IGNORED: [i32; 7] = [
    SIGUSR2, SIGALRM, SIGPWR, SIGVTALRM, SIGPROF, SIGURG, SIGWINCH,
];

/// The signals jamd acts on, as flags set by their handlers.
pub struct Signals {
    wake: UnixStream,
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    status: Arc<AtomicBool>,
}

/// What arrived since the last look.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Arrived {
    /// SIGTERM, SIGINT or SIGQUIT.
    pub stop: bool,
    /// SIGHUP.
    pub reload: bool,
    /// SIGUSR1.
    pub status: bool,
}

impl Signals {
    /// Installs the handlers: SIGTERM, SIGINT and SIGQUIT, SIGHUP, SIGUSR1,
    /// and do-nothing ones for the signals in [`IGNORED`].
    pub fn install() -> io::Result<Signals> {
        let (read_end, write_end) = UnixStream::pair()?;
        read_end.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let reload = Arc::new(AtomicBool::new(false));
        let status = Arc::new(AtomicBool::new(false));
        for sig in [SIGTERM, SIGINT, SIGQUIT] {
            signal_hook::flag::register(sig, Arc::clone(&stop))?;
            signal_hook::low_level::pipe::register(sig, write_end.try_clone()?)?;
        }
        signal_hook::flag::register(SIGHUP, Arc::clone(&reload))?;
        signal_hook::low_level::pipe::register(SIGHUP, write_end.try_clone()?)?;
        signal_hook::flag::register(SIGUSR1, Arc::clone(&status))?;
        signal_hook::low_level::pipe::register(SIGUSR1, write_end)?;
        // A handler that does nothing: the default action would kill jamd.
        let nothing = Arc::new(AtomicBool::new(false));
        for sig in IGNORED {
            signal_hook::flag::register(sig, Arc::clone(&nothing))?;
        }
        Ok(Signals {
            wake: read_end,
            stop,
            reload,
            status,
        })
    }

    /// The descriptor that becomes readable when a signal arrives.
    pub fn fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Takes the signals that arrived (each reported once).
    pub fn take(&self) -> Arrived {
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        Arrived {
            stop: self.stop.swap(false, Ordering::SeqCst),
            reload: self.reload.swap(false, Ordering::SeqCst),
            status: self.status.swap(false, Ordering::SeqCst),
        }
    }
}
