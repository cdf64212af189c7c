//! Private temporary directories, removed when the last handle is dropped.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A fresh directory under the system temp dir. Clones share it; the
/// directory and everything in it is removed when the last clone is dropped.
/// Derefs to [`Path`], so `dir.join("x")` works as on a `PathBuf`.
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
    /// Creates `jamd-it-PID-TAG-N` (empty, even if a dead run left one behind).
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("jamd-it-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(Arc::new(Removed(dir)))
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.0 .0
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

/// A fresh private directory for one test, removed on drop.
pub fn temp_dir(tag: &str) -> TempDir {
    TempDir::new(tag)
}
