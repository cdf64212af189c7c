//! Waiting for something to happen: the one polling loop the tests share,
//! bounded in time and in tries, that says on failure what it waited for
//! and what it saw last.
//!
//! A probe returns `Ok(value)` once the awaited thing happened, or
//! `Err(state)`: what it sees now (a log, a reply, a count), shown if the
//! wait runs out. For a plain condition: `cond.then_some(()).ok_or(state)`.

use std::fmt::Debug;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// The first pause between two tries; it doubles up to [`LONGEST_PAUSE`],
/// so a quick event is seen at once and a slow one costs few tries.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause between two tries.
const LONGEST_PAUSE: Duration = Duration::from_millis(100);
/// Most tries, whatever the time bound (a probe that returns at once on a
/// clock that does not move still ends).
const MOST_TRIES: u32 = 100_000;

/// Tries `probe` until it gives `Ok`, for at most `within` (the last try
/// starts before then) and at most [`MOST_TRIES`] tries: its value, or the
/// state it gave on the last try.
pub fn poll_until<T, S>(within: Duration, probe: impl FnMut() -> Result<T, S>) -> Result<T, S> {
    poll_until_woken(within, probe, thread::sleep)
}

/// Like [`poll_until`], pausing between tries with `pause(longest)`, which
/// may return sooner: when something the probe looks at changed (a
/// condition variable), so that the next try comes at once.
pub fn poll_until_woken<T, S>(
    within: Duration,
    mut probe: impl FnMut() -> Result<T, S>,
    mut pause: impl FnMut(Duration),
) -> Result<T, S> {
    let deadline = Instant::now() + within;
    let mut longest = FIRST_PAUSE;
    for _ in 1..MOST_TRIES {
        let state = match probe() {
            Ok(value) => return Ok(value),
            Err(state) => state,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(state);
        }
        pause(longest.min(deadline - now));
        longest = (longest * 2).min(LONGEST_PAUSE);
    }
    probe()
}

/// Tries `probe` until it gives `Ok` (see [`poll_until`]) and returns its
/// value; when `within` runs out, panics naming `what` was awaited and
/// showing the state of the last try.
#[track_caller]
pub fn wait_until<T, S: Debug>(
    what: &str,
    within: Duration,
    probe: impl FnMut() -> Result<T, S>,
) -> T {
    let started = Instant::now();
    match poll_until(within, probe) {
        Ok(value) => value,
        Err(last) => panic!(
            "waited {:.1?} (at most {within:?}) for {what}; last seen: {last:#?}",
            started.elapsed()
        ),
    }
}

/// Waits (bounded) until the file at `path` holds `needle` (a log a child
/// writes, say); its text then. Panics naming the file and showing its
/// text when `within` runs out.
#[track_caller]
pub fn wait_file(path: &Path, needle: &str, within: Duration) -> String {
    wait_file_holds(path, &[needle], within)
}

/// Like [`wait_file`], until the file holds every one of `needles`.
#[track_caller]
pub fn wait_file_holds(path: &Path, needles: &[&str], within: Duration) -> String {
    let what = format!("{} to hold all of {needles:?}", path.display());
    wait_until(&what, within, || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if needles.iter().all(|n| text.contains(n)) {
            Ok(text)
        } else {
            Err(Verbatim(text))
        }
    })
}

/// A state shown as it is, lines and quotes unescaped, when a wait runs
/// out: for a log's text.
pub struct Verbatim(pub String);

impl Debug for Verbatim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\n{}", self.0)
    }
}
