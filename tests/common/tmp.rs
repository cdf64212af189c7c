//! Private temporary directories. All live under one directory per test
//! process, `$TMPDIR/jamd-it-PID`, which is removed when the process exits
//! (and, should a run be killed, by the next run: directories of dead pids
//! are swept). A [`TempDir`] goes sooner, when its last handle is dropped.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

const PREFIX: &str = "jamd-it-";

/// This process's root of temporary directories, made on first use.
#[allow(unsafe_code)] // atexit(3); Cargo.toml denies unsafe elsewhere
fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        sweep_dead_runs();
        let root = std::env::temp_dir().join(format!("{PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create the temp root");
        // The test harness ends with exit(3), which runs atexit handlers
        // (after every test, passed or failed).
        // SAFETY: registers a plain extern "C" function with no arguments.
        unsafe { libc::atexit(remove_root) };
        root
    })
}

extern "C" fn remove_root() {
    let root = std::env::temp_dir().join(format!("{PREFIX}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(root);
}

/// Removes the roots left by test processes that no longer run (killed
/// before they could clean up).
fn sweep_dead_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A fresh, empty private directory for one test: `jamd-it-PID/TAG-N`.
/// It is removed when the test process exits; use [`TempDir`] to have it
/// removed as soon as the test is done with it.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = root().join(format!("{tag}-{n}"));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Writes `text` to `dir/name`; returns the path as a string, as jamd's
/// `-c` and other arguments take it.
pub fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.to_string_lossy().into_owned()
}

/// A directory removed (with everything in it) when the last clone of this
/// handle is dropped. Derefs to [`Path`], so `dir.join("x")` works as on a
/// `PathBuf`.
#[derive(Clone, Debug)]
pub struct TempDir(Arc<Removed>);

#[derive(Debug)]
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TempDir {
    /// A fresh directory, as [`temp_dir`] makes.
    pub fn new(tag: &str) -> TempDir {
        TempDir::from(temp_dir(tag))
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.0 .0
    }
}

/// Takes ownership of a directory: it is removed when the handle goes.
impl From<PathBuf> for TempDir {
    fn from(dir: PathBuf) -> TempDir {
        TempDir(Arc::new(Removed(dir)))
    }
}

impl Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.path()
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path().as_os_str()
    }
}
