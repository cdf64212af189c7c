//! The server: a few event-loop workers over many connections, and the
//! control loop on the main thread that handles signals, reloads, shutdown
//! and service-manager notification.
//!
//! Workers share the listening sockets (each polls its own duplicate) and a
//! handful of atomics; the configuration is an `Arc` swapped whole on reload,
//! which each worker picks up by comparing a generation counter once per turn
//! of its loop. Nothing is locked on the path of a request.

mod admission;
mod conn;
mod refusals;
mod worker;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::access::AccessList;
use crate::clock::Clock;
use crate::config::{self, Config, Overrides, DEFAULT_PATH};
use crate::control::{Notifier, Signals};
use crate::listen::{show_addr, Sockets};
use crate::log::Logger;

/// The configuration as the workers see it: swapped whole on reload.
#[derive(Debug)]
pub struct Runtime {
    /// The effective configuration.
    pub config: Config,
    /// The clock built from `config.time`.
    pub clock: Arc<Clock>,
    /// `[access]`, ready to decide.
    pub access: AccessList,
    /// Whether any per-source rule (a rate or a count) is set.
    pub per_source: bool,
}

impl Runtime {
    /// Builds the runtime view of a configuration.
    pub fn new(config: Config) -> Arc<Runtime> {
        let clock = config.time.clock();
        let access = config.access.list();
        let s = &config.server;
        let per_source = s.connection_rate_per_source > 0 || s.max_connections_per_source > 0;
        Arc::new(Runtime {
            config,
            clock,
            access,
            per_source,
        })
    }
}

/// State shared by the workers and the control loop.
pub(crate) struct Shared {
    current: Mutex<Arc<Runtime>>,
    generation: AtomicU64,
    /// Who is served: the open count and the per-source table.
    admission: Arc<admission::Admission>,
    /// SIGTERM arrived: stop accepting, drain.
    stopping: AtomicBool,
    /// The grace period is over: tell the remaining clients and close.
    grace_over: AtomicBool,
    log: Logger,
    /// Refusal log lines: one a second at most, the rest summed up.
    refusals: Mutex<refusals::RefusalLog>,
    /// Some refusals are waiting for their summary line: the workers wake
    /// for it (without taking the lock when there are none).
    refusals_pending: AtomicBool,
    /// Wakes the control loop when a worker ends, so that it need not look.
    worker_ended: Waker,
    /// Worker threads that have ended (or are ending: counted on the way out).
    workers_ended: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked while holding a lock must not take the others down.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn runtime(&self) -> (u64, Arc<Runtime>) {
        let guard = lock(&self.current);
        (self.generation.load(Ordering::Acquire), Arc::clone(&guard))
    }

    /// Logs `refused ADDR: WHY`, at most one refusal line a second over
    /// all workers and reasons; the others are counted for a summary.
    fn log_refused(&self, peer: &SocketAddr, why: admission::Refusal) {
        let say = lock(&self.refusals).refused(Instant::now());
        match say {
            refusals::Say::This => {
                self.log
                    .warn(format!("refused {}: {}", show_addr(peer), why.words()))
            }
            refusals::Say::More(n) => self.log_refused_more(n),
            refusals::Say::Nothing => self.refusals_pending.store(true, Ordering::Release),
        }
    }

    fn log_refused_more(&self, n: u64) {
        self.log.warn(format!("refused {n} more connection(s)"));
    }

    /// When a summary of refusals is due, if any is waiting.
    fn refusals_deadline(&self) -> Option<Instant> {
        if !self.refusals_pending.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.refusals).deadline()
    }

    /// Logs the summary of refusals left out, when it is due (or `now_all`:
    /// whatever is left, at the end).
    fn refusals_tick(&self, now_all: bool) {
        if !self.refusals_pending.load(Ordering::Acquire) {
            return;
        }
        let mut log = lock(&self.refusals);
        let n = if now_all {
            log.take()
        } else {
            log.tick(Instant::now())
        };
        self.refusals_pending
            .store(log.deadline().is_some(), Ordering::Release);
        drop(log);
        if let Some(n) = n {
            self.log_refused_more(n);
        }
    }
}

/// How jamd was started, for reloads and for where output may go.
pub struct Options {
    /// The configuration file to re-read on SIGHUP; `None` when the default
    /// file was missing at start (then it is looked for again on reload).
    pub config_path: Option<PathBuf>,
    /// Command-line settings that win over the file, also on reload.
    pub overrides: Overrides,
    /// Standard I/O is a client connection: never write to it.
    pub stdio_is_client: bool,
}

/// Why the server could not run.
#[derive(Debug)]
pub enum ServerError {
    /// Setting up the event loops or signal handlers failed.
    Setup(io::Error),
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::Setup(e) => write!(f, "cannot start the server: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}

const SIGNAL_TOKEN: Token = Token(0);
const WORKER_ENDED: Token = Token(1);
/// How often the control loop looks at the connection count, to pass it on
/// as `STATUS=`; only when a service manager listens.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// How often the control loop looks around while draining, as a safety net.
const DRAIN_TICK: Duration = Duration::from_millis(250);

/// Serves until a signal stops it (or, with one inherited connection, until
/// that connection ends). Returns when every worker has finished.
///
/// `signals` must be installed before the first `listening on` line, so that
/// a SIGHUP or SIGTERM sent as soon as jamd listens is never lost (or fatal).
pub fn run(
    config: Config,
    sockets: Sockets,
    log: Logger,
    signals: Signals,
    notifier: Notifier,
    options: Options,
) -> Result<(), ServerError> {
    let mut poll = Poll::new().map_err(ServerError::Setup)?;
    poll.registry()
        .register(
            &mut SourceFd(&signals.fd()),
            SIGNAL_TOKEN,
            Interest::READABLE,
        )
        .map_err(ServerError::Setup)?;

    let workers = match &sockets {
        Sockets::Listeners(_) => config.server.worker_count(),
        Sockets::Connection(_) => 1,
    };
    let runtime = Runtime::new(config);
    let shared = Arc::new(Shared {
        admission: admission::Admission::new(&runtime),
        current: Mutex::new(runtime),
        generation: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
        grace_over: AtomicBool::new(false),
        log: log.clone(),
        refusals: Mutex::new(refusals::RefusalLog::new()),
        refusals_pending: AtomicBool::new(false),
        worker_ended: Waker::new(poll.registry(), WORKER_ENDED).map_err(ServerError::Setup)?,
        workers_ended: AtomicUsize::new(0),
    });
    let pool = spawn_workers(&shared, sockets, workers).map_err(ServerError::Setup)?;

    notifier.ready("serving");
    let mut control = Control {
        shared,
        pool,
        notifier,
        options,
        log,
        deadline: None,
        last_status: (0, Instant::now()),
        next_watchdog: Instant::now(),
    };
    control.notifier.watchdog();
    let mut events = Events::with_capacity(8);
    loop {
        // Asleep until a signal, a worker ending, or a timer that is due:
        // an idle jamd makes no wake-ups of its own.
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
        if control.tick() {
            break;
        }
    }
    for handle in control.pool.handles.drain(..) {
        let _ = handle.join();
    }
    // No refusal count is ever lost, also at the end.
    control.shared.refusals_tick(true);
    control.log.info("stopped");
    Ok(())
}

/// Tells the control loop that a worker thread ended, also by a panic.
struct WakeOnEnd(Arc<Shared>);

impl Drop for WakeOnEnd {
    fn drop(&mut self) {
        self.0.workers_ended.fetch_add(1, Ordering::SeqCst);
        let _ = self.0.worker_ended.wake();
    }
}

struct Pool {
    handles: Vec<JoinHandle<()>>,
    wakers: Vec<Arc<Waker>>,
}

impl Pool {
    fn wake_all(&self) {
        for w in &self.wakers {
            let _ = w.wake();
        }
    }
}

fn spawn_workers(shared: &Arc<Shared>, sockets: Sockets, count: usize) -> io::Result<Pool> {
    let mut pool = Pool {
        handles: Vec::new(),
        wakers: Vec::new(),
    };
    let (listeners, mut connection): (Vec<TcpListener>, Option<TcpStream>) = match sockets {
        Sockets::Listeners(l) => (l, None),
        Sockets::Connection(c) => (Vec::new(), Some(c)),
    };
    for id in 0..count {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), worker::WAKER)?);
        let mine = listeners
            .iter()
            .map(|l| l.try_clone())
            .collect::<io::Result<Vec<_>>>()?;
        let w = worker::Worker::new(id, poll, Arc::clone(shared), mine, connection.take())?;
        let ended = WakeOnEnd(Arc::clone(shared));
        let handle = thread::Builder::new()
            .name(format!("jamd-worker-{id}"))
            .spawn(move || {
                let _ended = ended;
                w.run()
            })?;
        pool.handles.push(handle);
        pool.wakers.push(waker);
    }
    // The workers hold duplicates; the originals are closed here so that a
    // listener really closes once every worker has dropped its copy.
    drop(listeners);
    Ok(pool)
}

struct Control {
    shared: Arc<Shared>,
    pool: Pool,
    notifier: Notifier,
    options: Options,
    log: Logger,
    deadline: Option<Instant>,
    last_status: (usize, Instant),
    next_watchdog: Instant,
}

impl Control {
    /// How long the control loop may sleep: for ever when idle and no
    /// service manager listens.
    fn next_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut t: Option<Duration> = None;
        let mut at_most = |d: Duration| t = Some(t.map_or(d, |t| t.min(d)));
        if let Some(deadline) = self.deadline {
            if !self.shared.grace_over.load(Ordering::Relaxed) {
                at_most(deadline.saturating_duration_since(now));
            }
            at_most(DRAIN_TICK);
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
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            self.shared.grace_over.store(true, Ordering::SeqCst);
        } else {
            let open = self.shared.admission.open();
            self.notifier.stopping();
            self.log
                .info(format!("shutting down: {open} connection(s) open"));
            let grace = self.shared.runtime().1.config.server.shutdown_timeout;
            self.deadline = Some(Instant::now() + Duration::from_secs(grace));
        }
        self.pool.wake_all();
    }

    /// SIGHUP: re-read the file; keep the old configuration if it is broken.
    fn reload(&mut self) {
        if self.shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        self.notifier.reloading();
        match self.load() {
            Ok(mut new) => {
                let (_, old) = self.shared.runtime();
                let old = &old.config.server;
                let mut needs_restart = Vec::new();
                if new.server.port != old.port && self.options.overrides.port.is_none() {
                    needs_restart.push("port");
                }
                if new.server.bind != old.bind {
                    needs_restart.push("bind");
                }
                if new.server.backlog != old.backlog {
                    needs_restart.push("backlog");
                }
                if new.server.reuse_address != old.reuse_address {
                    needs_restart.push("reuse_address");
                }
                if new.server.workers != old.workers {
                    needs_restart.push("workers");
                }
                // What is running stays described truthfully.
                new.server.port = old.port;
                new.server.bind = old.bind.clone();
                new.server.backlog = old.backlog;
                new.server.reuse_address = old.reuse_address;
                new.server.workers = old.workers;
                for warning in new.warnings() {
                    self.log.warn(warning);
                }
                self.log.reconfigure(&new.log, self.options.stdio_is_client);
                {
                    let mut current = lock(&self.shared.current);
                    *current = Runtime::new(new);
                    self.shared.generation.fetch_add(1, Ordering::AcqRel);
                }
                self.pool.wake_all();
                self.log.info("configuration reloaded");
                for key in needs_restart {
                    self.log.warn(format!(
                        "server.{key} changed: restart jamd for it to take effect"
                    ));
                }
            }
            Err(why) => {
                self.log.error(format!(
                    "reload failed: {why}; keeping the previous configuration"
                ));
            }
        }
        self.notifier.ready("serving");
    }

    fn load(&self) -> Result<Config, String> {
        let path = self
            .options
            .config_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
        let explicit = self.options.config_path.is_some();
        config::load(&path, explicit, &self.options.overrides)
            .map(|loaded| loaded.config)
            .map_err(|e| e.to_string())
    }

    /// Periodic work; returns true when it is time to exit.
    fn tick(&mut self) -> bool {
        let now = Instant::now();
        if let Some(deadline) = self.deadline {
            if now >= deadline && !self.shared.grace_over.swap(true, Ordering::SeqCst) {
                self.pool.wake_all();
            }
        }
        let open = self.shared.admission.open();
        if open != self.last_status.0
            && now.duration_since(self.last_status.1) >= Duration::from_secs(1)
        {
            self.notifier.status_connections(open);
            self.last_status = (open, now);
        }
        if let Some(every) = self.notifier.watchdog_every() {
            if now >= self.next_watchdog {
                self.notifier.watchdog();
                self.next_watchdog = now + every;
            }
        }
        // Counted by the workers on their way out (see WakeOnEnd): a thread
        // that has woken us may not have quite finished yet.
        self.shared.workers_ended.load(Ordering::SeqCst) >= self.pool.handles.len()
    }
}
