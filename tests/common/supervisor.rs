//! A supervisor under test (openbsd-inetd, xinetd, systemd-socket-activate):
//! found where .ci/run puts it, and stopped by its pid together with the jamd
//! processes it started, however the test ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::process::children_of;
use super::skip::require_unpacked;

/// A running supervisor; dropping it kills the jamd processes it started
/// that still run, then itself.
pub struct Supervisor(Child);

impl Supervisor {
    /// Starts `cmd` with stdin and stdout on /dev/null (stderr as the caller
    /// set it); panics if it cannot start.
    pub fn spawn(cmd: &mut Command) -> Supervisor {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()));
        Supervisor(child)
    }

    /// The supervisor's pid.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// The processes it started that still run (the jamds).
    pub fn children(&self) -> Vec<u32> {
        children_of(self.0.id())
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for kid in self.children() {
            let _ = Command::new("kill").arg(kid.to_string()).status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A daemon from a Debian package: unpacked by .ci/run into
/// target/tools/root (openbsd-inetd and xinetd conflict as packages, and
/// installing one would start a system inetd), or installed in /usr/sbin.
/// None, recorded as a skip (a failure under `CI=true`), when neither.
pub fn packaged_daemon(name: &str) -> Option<PathBuf> {
    require_unpacked(name)
}

/// The user the tests run as (`id -un`), for the user field of an inetd
/// line: root could not exec a binary under a private home as nobody.
pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
