//! Child processes: a guard that kills by pid on drop, and bounded runs.

use std::io::Read;
use std::ops::{Deref, DerefMut};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::daemon::{JAMC, JAMD};
use super::tmp::{temp_dir, write_file};
use super::wait::poll_until;

/// Longest a jamc run may take before the test kills it and fails.
pub const JAMC_BOUND: Duration = Duration::from_secs(20);

/// A child process killed (by its pid) and reaped when dropped, however the
/// test ends. Derefs to [`Child`].
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Spawns `cmd`; panics with the program's name if it cannot start.
    pub fn spawn(cmd: &mut Command) -> ChildGuard {
        match cmd.spawn() {
            Ok(child) => ChildGuard(child),
            Err(e) => panic!("cannot start {:?}: {e}", cmd.get_program()),
        }
    }

    /// Its pid, as the signal functions take it.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).expect("pid fits in i32")
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`) to it by pid.
    #[allow(unsafe_code)] // kill(2); Cargo.toml denies unsafe elsewhere
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with our own child's pid and a valid signal number.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// Waits (bounded) for it to exit; its exit code, None if it is still
    /// running (or was killed by a signal).
    pub fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        self.wait_timeout(timeout).and_then(|s| s.code())
    }

    /// Waits (bounded) for it to exit; None if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll_until(timeout, || self.0.try_wait().expect("try_wait").ok_or(())).ok()
    }
}

impl Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// What [`run_fed`], the one bounded run, saw.
#[derive(Debug)]
pub struct Finished {
    /// How it ended; None when it outlived its bound and was killed.
    pub status: Option<ExitStatus>,
    /// What it wrote to its standard output (until killed, if it was).
    pub stdout: String,
    /// What it wrote to its standard error.
    pub stderr: String,
    /// How long it ran.
    pub took: Duration,
}

impl Finished {
    /// Its exit code; None when it was killed (at the bound, or by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

/// The one bounded run: starts `cmd` with `stdin` (a pipe is closed at
/// once: it reads EOF; stdout and stderr are read on helper threads, so a
/// full pipe never blocks it), waits at most
/// `bound`, and kills it by its pid and reaps it if it still runs then.
/// The functions below are the shapes the tests take it in.
pub fn run_fed(cmd: &mut Command, stdin: Stdio, bound: Duration) -> Finished {
    let started = Instant::now();
    let (mut child, out, err) = spawn_piped(cmd.stdin(stdin));
    drop(child.stdin.take());
    let status = child.wait_timeout(bound);
    let took = started.elapsed();
    // Kills and reaps it if it is still running, which ends the pipes.
    drop(child);
    Finished {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        took,
    }
}

/// What a bounded run gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// The first line of a run's stdout (a `--check` status line).
pub fn first_line(run: &Run) -> &str {
    run.stdout.lines().next().unwrap_or("")
}

/// A perfdata value of a `--check` line: `name=1.234s;…` → 1.234 (the
/// first such label in `line`).
pub fn perf(line: &str, name: &str) -> f64 {
    let data = line.split_once(" | ").map_or("", |(_, d)| d);
    let value = data
        .split_whitespace()
        .find_map(|item| item.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"));
    let number: String = value
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+'))
        .collect();
    number
        .parse()
        .unwrap_or_else(|_| panic!("bad {name}= in {line:?}"))
}

/// Runs jamc with `args`, killing it (and failing) if it outlives [`JAMC_BOUND`].
pub fn jamc(args: &[&str]) -> Run {
    run_bounded(Command::new(JAMC).args(args), JAMC_BOUND)
}

/// Runs any command (stdin empty) with a bound: killed and a failure past
/// it; its exit code is -1 when a signal ended it.
pub fn run_bounded(cmd: &mut Command, bound: Duration) -> Run {
    let ran = run_fed(cmd, Stdio::null(), bound);
    let Some(status) = ran.status else {
        panic!(
            "{cmd:?} ran longer than {bound:?}; killed. Its stderr: {}",
            ran.stderr
        );
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: ran.stdout,
        stderr: ran.stderr,
        took: ran.took,
    }
}

/// Runs jamd with arguments to completion (bounded) and returns (exit code,
/// stdout, stderr); the code is None if it had to be killed.
pub fn run_jamd(args: &[&str], timeout: Duration) -> (Option<i32>, String, String) {
    run_within(Command::new(JAMD).args(args), timeout)
}

/// What `jamd -t` made of a configuration file.
#[derive(Debug)]
pub struct Checked {
    /// The file checked, as given to `-c`.
    pub file: String,
    /// The exit code (None if it had to be killed).
    pub code: Option<i32>,
    /// Its standard output (the effective configuration).
    pub out: String,
    /// Its standard error.
    pub err: String,
}

/// Runs `jamd -t -c FILE ARGS…` (bounded) on a fresh file holding `config`.
pub fn check_config(config: &str, args: &[&str]) -> Checked {
    let file = write_file(&temp_dir("check"), "jamd.toml", config);
    let (code, out, err) = run_jamd(&[&["-t", "-c", &file], args].concat(), CHECK_BOUND);
    Checked {
        file,
        code,
        out,
        err,
    }
}

/// Longest a `jamd -t` may take.
const CHECK_BOUND: Duration = Duration::from_secs(20);

/// Runs any command for at most `bound` (stdin empty): its exit code, None
/// when it had to be killed, and what it wrote until then.
pub fn run_within(cmd: &mut Command, bound: Duration) -> (Option<i32>, String, String) {
    let ran = run_fed(cmd, Stdio::null(), bound);
    (ran.code(), ran.stdout, ran.stderr)
}

/// The state of each thread of a process, from /proc (`R` running, `S`
/// sleeping, `T` stopped by a signal, …): a SIGSTOP has taken effect when
/// every one is `T`.
pub fn thread_states(pid: i32) -> Vec<char> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    let mut states: Vec<char> = tasks
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter_map(|stat| stat.rsplit(')').next()?.trim_start().chars().next())
        .collect();
    states.sort_unstable();
    states
}

/// Children of a process, from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) {
            let after = stat.rsplit(')').next().unwrap_or("");
            let ppid = after.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            if ppid == Some(pid) {
                out.push(child);
            }
        }
    }
    out
}

type Reader = thread::JoinHandle<String>;

/// Spawns `cmd` (its stdin as the caller set it) with stdout and stderr
/// piped, each read to its end on a thread of its own.
fn spawn_piped(cmd: &mut Command) -> (ChildGuard, Reader, Reader) {
    let mut child = ChildGuard::spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()));
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    (child, out, err)
}

fn drain(r: Option<Box<dyn Read + Send>>) -> Reader {
    thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).into_owned()
    })
}
