//! The real jamd: started on 127.0.0.1 and a port the kernel picks, its
//! stderr collected line by line, signalled and reloaded by its pid, killed
//! when dropped.
//!
//! (Named `daemon`, not `jamd`: a glob `use common::*` must not shadow the
//! `jamd` crate.)

use std::cell::Cell;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::client::Client;
use super::process::{thread_states, ChildGuard};
use super::syslog::{syslog_config, SyslogSink};
use super::tmp::TempDir;
use super::wait::{poll_until_woken, wait_until};

/// The jamd binary cargo built for these tests.
pub const JAMD: &str = env!("CARGO_BIN_EXE_jamd");
/// The jamc binary cargo built for these tests.
pub const JAMC: &str = env!("CARGO_BIN_EXE_jamc");

/// How long jamd may take to say it listens, on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a reload may take to be logged, on a loaded machine.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(15);

/// What [`Jamd::start`] puts after `-c FILE`: a port the kernel picks on
/// 127.0.0.1, and logging to stderr (where [`Jamd::stderr`] reads it).
pub const LOOPBACK_ARGS: [&str; 6] = ["-p", "0", "-b", "127.0.0.1", "--log", "stderr"];

/// [`LOOPBACK_ARGS`] without `--log`: the file's log target counts.
pub const LOOPBACK_FILE_LOG: [&str; 4] = ["-p", "0", "-b", "127.0.0.1"];

/// Lines a child process wrote (to stderr), collected by a reader thread.
#[derive(Clone, Default)]
pub struct Lines {
    inner: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Lines {
    /// Collects the lines `pipe` gives until it ends, on a thread of its own
    /// (so the writer never blocks on a full pipe).
    pub fn collect(pipe: impl std::io::Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let sink = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                sink.push(line);
            }
        });
        lines
    }

    /// Adds a line and wakes the waiters.
    pub fn push(&self, line: String) {
        let (m, c) = &*self.inner;
        m.lock().unwrap().push(line);
        c.notify_all();
    }

    /// Every line so far.
    pub fn all(&self) -> Vec<String> {
        self.inner.0.lock().unwrap().clone()
    }

    /// A mark for [`Lines::wait_for_after`]: the number of lines so far.
    pub fn mark(&self) -> usize {
        self.inner.0.lock().unwrap().len()
    }

    /// Waits (bounded) for a line containing `needle`, among all the lines
    /// since the start; returns the first such line.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_for_after(0, needle, timeout)
    }

    /// Waits (bounded) for a line containing `needle` written after `mark`
    /// (from [`Lines::mark`]); returns the first such line.
    pub fn wait_for_after(&self, mark: usize, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_lines(timeout, |lines| {
            let found = lines.iter().skip(mark).find(|l| l.contains(needle));
            found.cloned().ok_or(())
        })
        .ok()
    }

    /// Waits (bounded) for a line containing every one of `needles`;
    /// returns the first such line.
    pub fn wait_for_all(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        self.wait_lines(timeout, |lines| {
            let found = lines.iter().find(|l| needles.iter().all(|n| l.contains(n)));
            found.cloned().ok_or(())
        })
        .ok()
    }

    /// Waits (bounded) until `n` lines contain `needle`; returns how many
    /// do then (fewer than `n` when time ran out).
    pub fn wait_for_count(&self, needle: &str, n: usize, timeout: Duration) -> usize {
        let seen = self.wait_lines(timeout, |lines| {
            let seen = lines.iter().filter(|l| l.contains(needle)).count();
            if seen >= n {
                Ok(seen)
            } else {
                Err(seen)
            }
        });
        seen.unwrap_or_else(|seen| seen)
    }

    /// Tries `probe` on the lines so far, and again as soon as more come,
    /// until it gives `Ok` or `timeout` runs out: its value, or the state
    /// it gave last.
    fn wait_lines<T, S>(
        &self,
        timeout: Duration,
        mut probe: impl FnMut(&[String]) -> Result<T, S>,
    ) -> Result<T, S> {
        let (m, c) = &*self.inner;
        let seen = Cell::new(0);
        let try_lines = || {
            let lines = m.lock().unwrap();
            seen.set(lines.len());
            probe(&lines)
        };
        // Woken by a new line; asleep while none comes.
        let until_more = |longest| {
            let lines = m.lock().unwrap();
            if lines.len() == seen.get() {
                drop(c.wait_timeout(lines, longest).unwrap());
            }
        };
        poll_until_woken(timeout, try_lines, until_more)
    }

    /// How many lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.count_after(0, needle)
    }

    /// How many lines after `mark` contain `needle`.
    pub fn count_after(&self, mark: usize, needle: &str) -> usize {
        let lines = self.inner.0.lock().unwrap();
        lines
            .iter()
            .skip(mark)
            .filter(|l| l.contains(needle))
            .count()
    }
}

/// A running jamd, killed by its pid when dropped; its directory (with the
/// configuration file) is removed then too.
pub struct Jamd {
    /// The process (fields drop in order: the child dies before its dir goes).
    pub child: ChildGuard,
    /// The first address it said it listens on.
    pub addr: SocketAddr,
    /// `addr`'s port.
    pub port: u16,
    /// Its stderr, line by line.
    pub stderr: Lines,
    /// Its configuration file (rewritten by [`Jamd::reload`]).
    pub config: PathBuf,
    /// Its private directory.
    pub dir: TempDir,
}

impl Jamd {
    /// Starts jamd with this configuration text on 127.0.0.1 and a port the
    /// kernel picks, logging to stderr; waits until it listens.
    pub fn start(config: &str) -> Jamd {
        Jamd::start_with(config, &[])
    }

    /// Like `start`, with extra command-line arguments (after
    /// [`LOOPBACK_ARGS`]; a `-b` adds an address).
    pub fn start_with(config: &str, args: &[&str]) -> Jamd {
        Jamd::start_file(config, &[&LOOPBACK_ARGS, args].concat(), &[])
    }

    /// Starts jamd with this configuration text as its file and, after
    /// `-c FILE`, only `args` (so the file's port, bind and log settings
    /// count unless `args` override them), with `env` added to its
    /// environment; waits until it says it listens (on stderr).
    pub fn start_file(config: &str, args: &[&str], env: &[(&str, &str)]) -> Jamd {
        let dir = TempDir::new("jamd");
        let path = dir.join("jamd.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(JAMD);
        cmd.arg("-c")
            .arg(&path)
            .args(args)
            .envs(env.iter().copied());
        Jamd::spawn(cmd, dir, path)
    }

    /// Starts jamd on 127.0.0.1 (a port the kernel picks) logging to
    /// syslog only, at `sink`, with more `[log]` keys (`log_keys`); waits
    /// until `sink` gets its `listening on` line. Its stderr is collected
    /// all the same (it says there when syslog cannot be reached).
    pub fn start_syslog_only(sink: &SyslogSink, log_keys: &str) -> Jamd {
        let (child, stderr, dir) = spawn_jamd(
            &syslog_config(sink.path.display(), log_keys),
            &LOOPBACK_FILE_LOG,
        );
        let Some(line) = sink.wait_for("listening on ", START_TIMEOUT) else {
            panic!(
                "no `listening on` line reached syslog within {START_TIMEOUT:?}; \
                 jamd's stderr: {:#?}",
                stderr.all()
            );
        };
        let config = dir.join("jamd.toml");
        Jamd::listening(child, &line, stderr, config, dir)
    }

    /// Starts jamd on `old`, opens a client that is served once, then
    /// reloads `new`: the client was there before the reload.
    pub fn reloaded_under(old: &str, new: &str) -> (Jamd, Client) {
        let jamd = Jamd::start(old);
        let c = jamd.served_client();
        jamd.reload(new);
        (jamd, c)
    }

    /// Spawns a prepared jamd command (its stdio is set here: stderr piped)
    /// and waits for its first `listening on` line. `dir` (a [`TempDir`], or
    /// a path from `temp_dir`) is removed when the `Jamd` is dropped.
    pub fn spawn(mut cmd: Command, dir: impl Into<TempDir>, config: PathBuf) -> Jamd {
        let dir = dir.into();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = ChildGuard::spawn(&mut cmd);
        let stderr = Lines::collect(child.stderr.take().expect("stderr piped"));
        let Some(line) = stderr.wait_for("listening on ", START_TIMEOUT) else {
            let status = child.try_wait();
            panic!(
                "jamd did not say `listening on` within {START_TIMEOUT:?} \
                 (exit: {status:?}); its stderr: {:#?}",
                stderr.all()
            );
        };
        Jamd::listening(child, &line, stderr, config, dir)
    }

    /// The `Jamd` that `child` is, once it logged `line` (its first
    /// `listening on`).
    fn listening(
        child: ChildGuard,
        line: &str,
        stderr: Lines,
        config: PathBuf,
        dir: TempDir,
    ) -> Jamd {
        let addr = parse_listening(line)
            .unwrap_or_else(|| panic!("no address in the listening line {line:?}"));
        Jamd {
            child,
            addr,
            port: addr.port(),
            stderr,
            config,
            dir,
        }
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.child.pid()
    }

    /// `127.0.0.1:PORT`, as jamc takes it.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Its stderr so far.
    pub fn log(&self) -> Vec<String> {
        self.stderr.all()
    }

    /// Sends a signal by name (`"TERM"`, `"HUP"`, `"INT"`, …) to this jamd.
    pub fn signal(&self, sig: &str) {
        let num = match sig.trim_start_matches("SIG") {
            "TERM" => libc::SIGTERM,
            "INT" => libc::SIGINT,
            "HUP" => libc::SIGHUP,
            "KILL" => libc::SIGKILL,
            "QUIT" => libc::SIGQUIT,
            "USR1" => libc::SIGUSR1,
            "USR2" => libc::SIGUSR2,
            "STOP" => libc::SIGSTOP,
            "CONT" => libc::SIGCONT,
            other => panic!("no signal named {other}"),
        };
        self.child.signal(num);
    }

    /// Freezes jamd with SIGSTOP and waits (bounded) until every one of its
    /// threads has stopped (a signal takes effect as each thread next
    /// runs): from then on it reads and answers nothing until SIGCONT.
    pub fn freeze(&self) {
        self.signal("STOP");
        wait_until("every thread of jamd stopped", RELOAD_TIMEOUT, || {
            let states = thread_states(self.pid());
            let stopped = !states.is_empty() && states.iter().all(|&s| s == 'T');
            stopped.then_some(()).ok_or(states)
        });
    }

    /// Waits (bounded) for jamd to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        self.child.exit_code(timeout)
    }

    /// SIGTERM, then waits (bounded, generous) for the exit; its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        self.signal("TERM");
        self.wait_exit(Duration::from_secs(20))
    }

    /// A connected client.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// A connected client whose first TIME was answered with a time, so
    /// it is surely accepted and counted before the test goes on.
    pub fn served_client(&self) -> Client {
        let mut c = self.connect();
        c.time();
        c
    }

    /// Waits at most `within` for jamd to exit, and checks it exits 0.
    pub fn exits_0(&mut self, within: Duration) {
        let code = self.wait_exit(within);
        assert_eq!(code, Some(0), "jamd's exit; its stderr: {:#?}", self.log());
    }

    /// Replaces the configuration file (for reload tests).
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    /// Replaces the configuration file, sends SIGHUP and waits until jamd
    /// says on stderr, after the signal, that it took the new file. Works
    /// any number of times in one test. Returns the [`Lines::mark`] from
    /// before the signal, to look for what this reload logged.
    pub fn reload(&self, text: &str) -> usize {
        let mark = self.stderr.mark();
        self.reload_saying(text, "configuration reloaded");
        mark
    }

    /// Replaces the configuration file with `text`, which must not load,
    /// sends SIGHUP and returns the `reload failed` line jamd logs for it.
    pub fn reload_failing(&self, text: &str) -> String {
        self.reload_saying(text, "reload failed")
    }

    /// Writes `text`, sends SIGHUP, and waits for a line with `outcome`
    /// logged after the signal; returns it.
    fn reload_saying(&self, text: &str, outcome: &str) -> String {
        let mark = self.stderr.mark();
        self.write_config(text);
        self.signal("HUP");
        self.stderr
            .wait_for_after(mark, outcome, RELOAD_TIMEOUT)
            .unwrap_or_else(|| {
                panic!(
                    "no new {outcome:?} line after SIGHUP: {:#?}",
                    self.stderr.all()
                )
            })
    }
}

/// Starts jamd on a file holding `config`, with `args` after `-c FILE`,
/// without waiting for it to listen (it may log where stderr does not show
/// it): the process, its stderr line by line, and its directory (removed
/// when dropped, after the process).
pub fn spawn_jamd(config: &str, args: &[&str]) -> (ChildGuard, Lines, TempDir) {
    let dir = TempDir::new("jamd");
    let path = dir.join("jamd.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = ChildGuard::spawn(
        Command::new(JAMD)
            .arg("-c")
            .arg(&path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let stderr = Lines::collect(child.stderr.take().expect("stderr piped"));
    (child, stderr, dir)
}

/// `listening on 127.0.0.1:40123 (backlog 128)` → the address.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}
