//! The one way a test skips. cargo hides a passing test's stderr, so a skip
//! is also appended to a list (`target/test-skips.txt`, or `$JAMD_SKIP_FILE`)
//! that `scripts/test` prints at the end. Under `CI=true` a skip is a
//! failure: CI installs every tool and must run every test.
//!
//! The library's unit tests include this file by path too (src/listen.rs,
//! for a host without IPv6): it uses std only.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Skips the rest of this test (returns from it) for the reason given, as
/// `format!` arguments; under `CI=true`, fails the test instead.
#[macro_export]
macro_rules! skip {
    ($($reason:tt)+) => {{
        $crate::common::skip::record_skip(&format!($($reason)+));
        return;
    }};
}

/// Whether CI is running us: then a skip is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// The list `scripts/test` prints.
fn skip_file() -> PathBuf {
    std::env::var_os("JAMD_SKIP_FILE").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-skips.txt"),
        PathBuf::from,
    )
}

/// Records that the running test skips for `reason`; panics under `CI=true`.
/// Use [`skip!`] in a test, which also returns.
pub fn record_skip(reason: &str) {
    let exe = std::env::current_exe().ok();
    let krate = exe
        .as_deref()
        .and_then(Path::file_stem)
        .and_then(|s| s.to_str())
        .and_then(|s| s.rsplit_once('-').map_or(Some(s), |(name, _)| Some(name)))
        .unwrap_or("?")
        .to_owned();
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    assert!(
        !in_ci(),
        "{krate}::{test} would skip ({reason}), and under CI=true nothing may skip"
    );
    let line = format!("{krate}::{test}: {reason}\n");
    eprint!("skipped: {line}");
    // One write with O_APPEND: lines from parallel tests do not interleave.
    let path = skip_file();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Finds a tool on PATH (or at an absolute path). When it is missing, the
/// test is recorded as skipped (a failure under `CI=true`) and None comes
/// back: the caller returns.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    require_tool_in(name, &[])
}

/// Like [`require_tool`], looking in the `extra` directories after PATH
/// (a plugin directory, say).
pub fn require_tool_in(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let found = find_tool(name, extra);
    if found.is_none() {
        record_skip(&format!("{name} is not installed"));
    }
    found
}

/// A program from a Debian package that .ci/run unpacks into
/// target/tools/root (one that would start a service if installed, or
/// conflicts with another: prometheus, inetd, xinetd), found there first,
/// then on PATH or in /usr/sbin. Missing, as [`require_tool`].
pub fn require_unpacked(name: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/root");
    let unpacked = ["usr/bin", "usr/sbin"]
        .iter()
        .map(|dir| root.join(dir).join(name))
        .find(|p| p.is_file());
    let found = unpacked.or_else(|| find_tool(name, &[PathBuf::from("/usr/sbin")]));
    if found.is_none() {
        record_skip(&format!(
            "{name} is neither in target/tools/root (.ci/run unpacks it there) nor installed"
        ));
    }
    found
}

/// Whether `unshare FLAGS true` works here (new namespaces need root).
/// When it does not, the test is recorded as skipped (a failure under
/// `CI=true`) and false comes back: the caller returns.
pub fn require_namespaces(flags: &str) -> bool {
    let works = std::process::Command::new("unshare")
        .args([flags, "true"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        record_skip(&format!(
            "`unshare {flags}` fails here: no such namespaces (they need root)"
        ));
    }
    works
}

/// Finds a tool on PATH, then in `extra` directories; no skip recorded.
pub fn find_tool(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    if Path::new(name).is_absolute() {
        return Path::new(name).exists().then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().cloned())
        .map(|d| d.join(name))
        .find(|c| c.is_file())
}
