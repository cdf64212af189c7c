//! The control loop: the main thread once start-up is done. It starts the
//! workers, then sleeps until a signal arrives, a worker ends, or a timer is
//! due (the end of the grace period, `STATUS=` and `WATCHDOG=` for the service
//! manager): an idle jamd makes no wake-ups of its own.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::log::Logger;
use crate::server::{Phase, Server, ServerError};

use super::config_file::ConfigFile;
use super::notify::Notifier;
use super::reload;
use super::startup::Started;

const SIGNALS: Token = Token(0);
const WORKER_ENDED: Token = Token(1);
/// How often the control loop looks at the connection count, to pass it on
/// as `STATUS=`; only when a service manager listens.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// How often the control loop looks around while draining, as a safety net.
const DRAIN_TICK: Duration = Duration::from_millis(250);

/// Serves until a signal stops it (or, with one inherited connection, until
/// that connection ends). Returns when every worker has finished.
pub fn serve(started: Started) -> Result<(), ServerError> {
    let Started {
        signals,
        sockets,
        metrics,
        config,
        config_file,
        log,
        notifier,
        stdio_is_client,
        .. // stream: taken by daemon::run before serve is called
    } = started;
    let mut poll = Poll::new().map_err(ServerError::Setup)?;
    poll.registry()
        .register(&mut SourceFd(&signals.fd()), SIGNALS, Interest::READABLE)
        .map_err(ServerError::Setup)?;
    let worker_ended = Waker::new(poll.registry(), WORKER_ENDED).map_err(ServerError::Setup)?;
    let sandbox = config.server.sandbox;
    let mut server = Server::start(config, sockets, log.clone(), worker_ended)?;
    if let Some(listener) = metrics {
        server.serve_metrics(listener)?;
    }
    // Every thread runs: from here on only the system calls jamd needs
    // (jamd.8, CONFINEMENT), on every thread.
    if sandbox {
        if let Err(why) = super::confine::sandbox() {
            server.drain();
            server.end_grace();
            server.join();
            return Err(ServerError::Setup(io::Error::other(why)));
        }
    }

    notifier.ready("serving");
    let mut control = Control {
        server,
        notifier,
        log,
        config_file,
        stdio_is_client,
        grace_ends: None,
        last_status: (0, Instant::now()),
        next_watchdog: Instant::now(),
    };
    control.notifier.watchdog();
    let mut events = Events::with_capacity(8);
    loop {
        let timeout = control.next_timeout();
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                control.log.error(format!("control loop: {e}"));
                thread::sleep(Duration::from_millis(100));
            }
        }
        let arrived = signals.take();
        if arrived.stop {
            control.stop();
        }
        if arrived.reload {
            control.reload();
        }
        if arrived.status {
            control.log.info(control.server.status_line());
        }
        if control.server.worker_died() {
            // Never serve on with less capacity, never report a
            // clean stop after a crash. The others stop at once.
            control.server.drain();
            control.server.end_grace();
            let died = control.server.join();
            return Err(ServerError::WorkerDied(died.join("; ")));
        }
        if control.tick() {
            break;
        }
    }
    let died = control.server.join();
    if !died.is_empty() {
        return Err(ServerError::WorkerDied(died.join("; ")));
    }
    control.log.info("stopped");
    Ok(())
}

/// The control loop's state.
struct Control {
    server: Server,
    notifier: Notifier,
    log: Logger,
    config_file: ConfigFile,
    stdio_is_client: bool,
    /// When the grace period ends, once a SIGTERM began it (the phase
    /// itself is the server's: [`Server::phase`]).
    grace_ends: Option<Instant>,
    /// The connection count last sent as `STATUS=`, and when.
    last_status: (usize, Instant),
    next_watchdog: Instant,
}

impl Control {
    /// How long the control loop may sleep: for ever when serving and no
    /// service manager listens.
    fn next_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut t: Option<Duration> = None;
        let mut at_most = |d: Duration| t = Some(t.map_or(d, |t| t.min(d)));
        match self.server.phase() {
            Phase::Serving => {}
            Phase::Draining => {
                if let Some(deadline) = self.grace_ends {
                    at_most(deadline.saturating_duration_since(now));
                }
                at_most(DRAIN_TICK);
            }
            Phase::GraceOver => at_most(DRAIN_TICK),
        }
        if self.notifier.is_active() {
            at_most(STATUS_EVERY);
        }
        if let Some(every) = self.notifier.watchdog_every() {
            at_most(
                self.next_watchdog
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1))
                    .min(every),
            );
        }
        t
    }

    /// SIGTERM/SIGINT: stop accepting and drain; a second one ends the grace period.
    fn stop(&mut self) {
        match self.server.phase() {
            Phase::Serving => {
                let open = self.server.open_connections();
                self.notifier.stopping();
                self.log.info(crate::server::shutting_down_line(open));
                let grace = self.server.runtime().config.server.shutdown_timeout;
                self.grace_ends = Some(Instant::now() + grace);
                self.server.drain();
            }
            Phase::Draining | Phase::GraceOver => self.server.end_grace(),
        }
    }

    /// SIGHUP: re-read the configuration, unless jamd is stopping.
    fn reload(&mut self) {
        if self.server.phase() != Phase::Serving {
            return;
        }
        self.notifier.reloading();
        reload::reload(
            &self.config_file,
            &self.server,
            &self.log,
            self.stdio_is_client,
        );
        self.notifier.ready("serving");
    }

    /// Timed work; returns true when every worker has ended.
    fn tick(&mut self) -> bool {
        let now = Instant::now();
        if self.server.phase() == Phase::Draining && self.grace_ends.is_some_and(|d| now >= d) {
            self.server.end_grace();
        }
        let open = self.server.open_connections();
        if open != self.last_status.0
            && now.duration_since(self.last_status.1) >= Duration::from_secs(1)
        {
            self.notifier.status_connections(open);
            self.last_status = (open, now);
        }
        if let Some(every) = self.notifier.watchdog_every() {
            if now >= self.next_watchdog {
                // Only when every worker proved it is alive: a stuck worker
                // lets the watchdog fire, and the service manager restarts
                // jamd.
                if self.server.workers_alive() {
                    self.notifier.watchdog();
                }
                self.next_watchdog = now + every;
            }
        }
        self.server.all_ended()
    }
}
