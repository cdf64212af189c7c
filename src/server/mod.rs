//! The server: a few event-loop workers over many connections, started and
//! steered through a [`Server`] handle (the daemon's control loop on the main
//! thread holds it: it drains, ends the grace period and swaps the
//! configuration; signals and the service manager are its business, not ours).
//!
//! Workers share the listening sockets (each polls its own duplicate) and a
//! handful of atomics; the configuration is an `Arc` swapped whole on reload,
//! which each worker picks up by comparing a generation counter once per turn
//! of its loop. Nothing is locked on the path of a request.

pub(crate) mod admission;
pub(crate) mod conn;
pub(crate) mod refusals;
pub(crate) mod session;
mod udp;
mod worker;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use mio::{Poll, Waker};

use crate::access::AccessList;
use crate::clock::Clock;
use crate::config::Config;
use crate::labels::labels;
use crate::listen::Sockets;
use crate::listener::{show_addr, Protocol};
use crate::log::Logger;
use crate::metrics::{self, Metrics, Reload};
use crate::outcome::Refusal;

labels! {
    /// Where the server is on its way from serving to stopped: one atomic
    /// value that only moves forward, so that "the grace period is over
    /// but jamd is not stopping" cannot be.
    #[repr(u8)]
    pub enum Phase {
        /// Accepting and serving.
        Serving = "serving",
        /// Stopping: no new connections; the open ones are served until
        /// they end or the grace period does.
        Draining = "draining",
        /// The grace period is over: the remaining clients are told and
        /// closed.
        GraceOver = "grace_over",
    }
}

/// The line that says jamd stops, and how many clients it still serves.
pub(crate) fn shutting_down_line(open: usize) -> String {
    format!("shutting down: {open} connection(s) open")
}

/// The configuration as the workers see it: swapped whole on reload.
#[derive(Debug)]
pub struct Runtime {
    /// The effective configuration.
    pub config: Config,
    /// The clock built from `config.time`.
    pub clock: Arc<Clock>,
    /// The clock of Daytime replies: `[daytime] format` in `[time] timezone`.
    pub daytime_clock: Arc<Clock>,
    /// `[access]`, ready to decide.
    pub access: AccessList,
    /// Whether any per-source rule (a rate or a count) is set.
    pub per_source: bool,
}

impl Runtime {
    /// Builds the runtime view of a configuration.
    pub fn new(config: Config) -> Arc<Runtime> {
        let clock = config.time.clock();
        let daytime_clock = config.daytime_clock();
        let access = config.access.list();
        let s = &config.server;
        let per_source =
            s.connection_rate_per_source.is_some() || s.max_connections_per_source.is_some();
        Arc::new(Runtime {
            config,
            clock,
            daytime_clock,
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
    /// The counters behind `/metrics` and SIGUSR1's status line: created
    /// once, so they survive reloads.
    metrics: Metrics,
    /// The [`Phase`], as a number: it only grows.
    phase: AtomicU8,
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
    /// A worker thread ended by a panic: jamd must stop (jamd(8), EXIT STATUS).
    worker_died: AtomicBool,
    /// The watchdog's question to the workers: each answers by copying it
    /// into its slot of `alive` once its event loop turns.
    ping: AtomicU64,
    /// Each worker's last answer to `ping`.
    alive: Vec<AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked while holding a lock must not take the others down.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// Where the server is on its way to stopped.
    fn phase(&self) -> Phase {
        let n = self.phase.load(Ordering::Acquire);
        Phase::ALL[usize::from(n).min(Phase::COUNT - 1)]
    }

    /// Moves on to `phase`, unless the server is there or past it already.
    fn advance(&self, phase: Phase) {
        self.phase.fetch_max(phase as u8, Ordering::AcqRel);
    }

    fn runtime(&self) -> (u64, Arc<Runtime>) {
        let guard = lock(&self.current);
        (self.generation.load(Ordering::Acquire), Arc::clone(&guard))
    }

    /// Everything a scrape shows, now.
    fn sample(&self) -> metrics::Sample {
        metrics::Sample {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            revision: env!("JAMD_REVISION").to_owned(),
            counters: self.metrics.counters(),
            open: self.admission.open() as u64,
            tracked_sources: self.admission.tracked_sources() as u64,
            evicted_sources: self.admission.evicted_sources(),
            log_lines_dropped: self.log.dropped_total(),
            last_reload_successful: self.metrics.last_reload().0,
            last_reload_success_timestamp: self.metrics.last_reload().1,
            process: metrics::process::Process::read(),
        }
    }

    /// Logs `refused ADDR: WHY` (with `(DETAIL)` when given: the reason a
    /// PROXY header was bad), at most one refusal line a second over all
    /// workers and reasons; the others are counted for a summary.
    fn log_refused(&self, peer: &SocketAddr, why: Refusal, detail: Option<&dyn std::fmt::Display>) {
        let say = lock(&self.refusals).refused(why, Instant::now());
        match say {
            refusals::Say::This => {
                let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
                self.log.refused(
                    why,
                    format!("refused {}: {}{detail}", show_addr(peer), why.words()),
                )
            }
            refusals::Say::More(tally) => self.log.refused_more(tally),
            refusals::Say::Nothing => self.refusals_pending.store(true, Ordering::Release),
        }
    }

    /// Logs a datagram that got no answer like a refused connection (the
    /// same one line a second for all, the rest counted):
    /// `refused ADDR: rate limited (rfc868 over udp)`. A datagram from a bad
    /// source has a line within that limit and is otherwise left to
    /// `jamd_datagrams_refused_total`; a full send buffer is only counted:
    /// logging under that load would add to it.
    fn log_refused_datagram(
        &self,
        from: &SocketAddr,
        why: metrics::DatagramRefused,
        protocol: Protocol,
    ) {
        let line = || {
            format!(
                "refused {}: {} ({protocol} over udp)",
                show_addr(from),
                why.words()
            )
        };
        let refusal = match why {
            metrics::DatagramRefused::AccessDenied => Refusal::AccessDenied,
            metrics::DatagramRefused::RateLimited => Refusal::RateLimited,
            metrics::DatagramRefused::BadSource => {
                if lock(&self.refusals).line_allowed(Instant::now()) {
                    self.log.warn(line());
                }
                return;
            }
            metrics::DatagramRefused::SendFailed => return,
        };
        let say = lock(&self.refusals).refused(refusal, Instant::now());
        match say {
            refusals::Say::This => self.log.refused(refusal, line()),
            refusals::Say::More(tally) => self.log.refused_more(tally),
            refusals::Say::Nothing => self.refusals_pending.store(true, Ordering::Release),
        }
    }

    /// A worker's answer to the watchdog's ping (see [`Server::workers_alive`]).
    fn answer_ping(&self, id: usize) {
        if let Some(slot) = self.alive.get(id) {
            slot.store(self.ping.load(Ordering::Acquire), Ordering::Release);
        }
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
        let tally = if now_all {
            log.take()
        } else {
            log.tick(Instant::now())
        };
        self.refusals_pending
            .store(log.deadline().is_some(), Ordering::Release);
        drop(log);
        if let Some(tally) = tally {
            self.log.refused_more(tally);
        }
    }
}

/// Why the server could not run.
#[derive(Debug)]
pub enum ServerError {
    /// Setting up the event loops or signal handlers failed.
    Setup(io::Error),
    /// A worker thread died (a panic): jamd stops rather than serve with
    /// less capacity than configured.
    WorkerDied(String),
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::Setup(e) => {
                write!(f, "cannot start the server: {e}")?;
                // What to do about the usual causes.
                match e.raw_os_error() {
                    Some(libc::EMFILE) | Some(libc::ENFILE) => f.write_str(
                        "; raise the open-file limit (ulimit -n, or LimitNOFILE= in the unit)",
                    ),
                    Some(libc::EAGAIN) | Some(libc::ENOMEM) => f.write_str(
                        "; the system refused a thread or memory: lower server.workers, or raise the process limits (ulimit -u, TasksMax=, MemoryMax=)",
                    ),
                    _ => f.write_str("; see the system log for what else failed at that moment"),
                }
            }
            ServerError::WorkerDied(why) => write!(
                f,
                "a worker thread died ({why}); stopping rather than serving with less capacity"
            ),
        }
    }
}

impl std::error::Error for ServerError {}

/// The running workers, as the control loop steers them.
pub struct Server {
    shared: Arc<Shared>,
    pool: Pool,
    /// The `/metrics` endpoint, when `[metrics] listen` is set; stopped
    /// (its thread joined) when the server is.
    endpoint: Option<metrics::http::Endpoint>,
}

impl Server {
    /// Starts the workers on `sockets` (one worker for a single inherited
    /// connection, `server.workers` otherwise). `worker_ended` is woken each
    /// time a worker thread ends, also by a panic.
    pub fn start(
        config: Config,
        sockets: Sockets,
        log: Logger,
        worker_ended: Waker,
    ) -> Result<Server, ServerError> {
        let workers = match &sockets {
            Sockets::Listeners(_) => config.server.worker_count(),
            Sockets::Connection(..) | Sockets::Datagrams(_) => 1,
        };
        let runtime = Runtime::new(config);
        let shared = Arc::new(Shared {
            admission: admission::Admission::new(&runtime),
            current: Mutex::new(runtime),
            generation: AtomicU64::new(0),
            metrics: Metrics::new(workers),
            phase: AtomicU8::new(Phase::Serving as u8),
            log,
            refusals: Mutex::new(refusals::RefusalLog::new()),
            refusals_pending: AtomicBool::new(false),
            worker_ended,
            workers_ended: AtomicUsize::new(0),
            worker_died: AtomicBool::new(false),
            ping: AtomicU64::new(0),
            alive: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        });
        let pool = spawn_workers(&shared, sockets, workers).map_err(ServerError::Setup)?;
        Ok(Server {
            shared,
            pool,
            endpoint: None,
        })
    }

    /// Serves `/metrics` on `listener` (bound from `[metrics] listen`), on
    /// a thread of its own, and logs where.
    pub fn serve_metrics(&mut self, listener: TcpListener) -> Result<(), ServerError> {
        let addr = listener.local_addr().map_err(ServerError::Setup)?;
        let scrape = Arc::clone(&self.shared);
        let log = self.shared.log.clone();
        let endpoint = metrics::http::Endpoint::start(
            listener,
            Box::new(move |out: &mut String| metrics::render(&scrape.sample(), out)),
            Box::new(move |why: String| log.warn(why)),
        )
        .map_err(ServerError::Setup)?;
        self.shared
            .log
            .info(format!("metrics at http://{}/metrics", show_addr(&addr)));
        self.endpoint = Some(endpoint);
        Ok(())
    }

    /// Counts a SIGHUP, put in effect or not (`jamd_reloads_total`).
    pub fn count_reload(&self, result: Reload) {
        self.shared.metrics.reloaded(result);
    }

    /// SIGUSR1's `status:` line, from the counters a scrape shows.
    pub fn status_line(&self) -> String {
        self.shared
            .metrics
            .counters()
            .status_line(self.shared.admission.open() as u64)
    }

    /// The configuration in effect.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.shared.runtime().1
    }

    /// Puts a new configuration in effect; each worker picks it up on its
    /// next turn (they are woken for it). Returns the new generation number.
    pub fn swap(&self, config: Config) -> u64 {
        let generation = {
            let mut current = lock(&self.shared.current);
            *current = Runtime::new(config);
            self.shared.generation.fetch_add(1, Ordering::AcqRel) + 1
        };
        self.pool.wake_all();
        generation
    }

    /// Connections open right now, over all workers.
    pub fn open_connections(&self) -> usize {
        self.shared.admission.open()
    }

    /// Where the server is on its way to stopped.
    pub fn phase(&self) -> Phase {
        self.shared.phase()
    }

    /// Stops accepting; open connections are served until they end.
    pub fn drain(&self) {
        self.shared.advance(Phase::Draining);
        self.pool.wake_all();
    }

    /// Ends the grace period: the remaining clients are told and closed.
    pub fn end_grace(&self) {
        self.shared.advance(Phase::GraceOver);
        self.pool.wake_all();
    }

    /// How many worker threads were started.
    pub fn workers(&self) -> usize {
        self.pool.handles.len()
    }

    /// Whether every worker thread has ended (or is on its way out).
    pub fn all_ended(&self) -> bool {
        // Counted by the workers on their way out (see WakeOnEnd): a thread
        // that has woken the control loop may not have quite finished yet.
        self.shared.workers_ended.load(Ordering::SeqCst) >= self.pool.handles.len()
    }

    /// Whether a worker thread has died (panicked).
    pub fn worker_died(&self) -> bool {
        self.shared.worker_died.load(Ordering::SeqCst)
    }

    /// For the watchdog: whether every worker answered the previous ping
    /// (its event loop turned since), and a new ping that wakes them all.
    /// An idle worker sleeps until woken, so only a worker that is stuck
    /// (or dead) fails to answer.
    pub fn workers_alive(&self) -> bool {
        let asked = self.shared.ping.load(Ordering::Acquire);
        let answered = self
            .shared
            .alive
            .iter()
            .all(|a| a.load(Ordering::Acquire) == asked);
        if answered {
            self.shared.ping.fetch_add(1, Ordering::AcqRel);
            self.pool.wake_all();
        }
        answered && !self.worker_died()
    }

    /// Waits for every worker thread to finish; stops the metrics endpoint.
    /// Returns the panic message of each worker that died.
    pub fn join(self) -> Vec<String> {
        let mut died = Vec::new();
        for handle in self.pool.handles {
            let name = handle.thread().name().unwrap_or("worker").to_owned();
            if let Err(payload) = handle.join() {
                let why = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                died.push(format!("{name}: {why}"));
            }
        }
        drop(self.endpoint);
        // No refusal count is ever lost, also at the end.
        self.shared.refusals_tick(true);
        died
    }
}

/// Tells the control loop that a worker thread ended, also by a panic.
struct WakeOnEnd(Arc<Shared>);

impl Drop for WakeOnEnd {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.worker_died.store(true, Ordering::SeqCst);
        }
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
    let (listeners, mut connection, until_idle) = match sockets {
        Sockets::Listeners(l) => (l, None, false),
        Sockets::Connection(c, protocol) => (Vec::new(), Some((c, protocol)), false),
        Sockets::Datagrams(l) => (vec![l], None, true),
    };
    for id in 0..count {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), worker::WAKER)?);
        let mine = listeners
            .iter()
            .map(|l| l.try_clone())
            .collect::<io::Result<Vec<_>>>()?;
        let w = worker::Worker::new(
            id,
            poll,
            Arc::clone(shared),
            mine,
            connection.take(),
            until_idle,
        )?;
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
