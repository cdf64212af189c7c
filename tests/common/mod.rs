//! The one harness the integration tests share, split by job:
//!
//! - [`daemon`]: start the real `jamd` on a loopback port (`Jamd::start`,
//!   `start_with`, `start_file`, `start_syslog_only`, or `spawn_jamd` when
//!   it need not listen), signal it, reload it (`reload`, `reload_failing`,
//!   `reloaded_under`), read what it logs; it is killed by its pid when
//!   dropped.
//! - [`client`]: a JAM client with bounded reads (`time`, `told_and_closed`),
//!   and `wait_listening` for a server that is starting.
//! - [`fake`]: an independent JAM server that can misbehave (for jamc).
//! - [`process`]: a kill-on-drop guard for any child, and bounded runs of
//!   `jamd`/`jamc`/any tool to completion: one, `run_fed`, and the shapes
//!   the tests take it in (`run_bounded`, `run_within`, `run_jamd`, `jamc`,
//!   `check_config`: `jamd -t`).
//! - [`relay`]: a delaying relay on loopback (TCP or UDP), for slow and
//!   asymmetric links.
//! - [`supervisor`]: inetd, xinetd or systemd-socket-activate under test,
//!   stopped with the jamds it started.
//! - [`syslog`]: a unix datagram socket standing in for /dev/log, and
//!   `recv_until`/`recv_within` for any datagram socket (syslog over UDP,
//!   sd_notify).
//! - [`skip`]: the one way a test skips (a failure under `CI=true`), also
//!   for a missing tool or namespaces.
//! - [`slots`]: fill jamd's connection slots, see a newcomer refused and a
//!   slot come back.
//! - [`tmp`]: private temporary directories removed on drop, and
//!   `write_file`.
//! - [`wait`]: `wait_until`, the one bounded polling loop: it names what
//!   it awaited and shows the last state when time runs out (`poll_until`
//!   when the caller decides), and `wait_file` for a file a child writes.
//! - [`repo`] and [`repo_file`]: the repository's own files (docs, units,
//!   Cargo.toml) as the tests read them; [`cron_example_command`], an
//!   example job of packaging/cron/jamd-check.
//!
//! Each test file is its own crate and uses only part of this, hence
//! `allow(dead_code)`.
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod daemon;
pub mod fake;
pub mod process;
pub mod relay;
pub mod skip;
pub mod slots;
pub mod supervisor;
pub mod syslog;
pub mod tmp;
pub mod wait;

/// The repository's root (where Cargo.toml is).
pub fn repo() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the repository, by its path from the root; panics naming it
/// when it cannot be read.
pub fn repo_file(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The command of a commented example job in packaging/cron/jamd-check:
/// the `*/5` line that contains `marker`, without its five time fields and
/// its user (minute hour day month weekday user command).
pub fn cron_example_command(marker: &str) -> String {
    let text = repo_file("packaging/cron/jamd-check");
    let line = text
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .find(|l| l.starts_with("*/5") && l.contains(marker))
        .unwrap_or_else(|| panic!("an example with {marker} in packaging/cron/jamd-check"));
    let mut rest = line;
    for _ in 0..6 {
        rest = rest
            .split_once(char::is_whitespace)
            .expect("7 fields")
            .1
            .trim_start();
    }
    rest.to_string()
}

/// libfaketime's multi-threaded preload library (Debian package faketime),
/// for a jamd that runs in a faked time. Preloaded into jamd itself (not run
/// through the `faketime` command, which forks and waits): the pid a test
/// stops is jamd's own.
pub fn libfaketime() -> Option<String> {
    require_tool("faketime")?;
    let found = std::fs::read_dir("/usr/lib").ok().and_then(|dirs| {
        dirs.flatten()
            .map(|d| d.path().join("faketime/libfaketimeMT.so.1"))
            .find(|p| p.is_file())
    });
    assert!(found.is_some() || !in_ci(), "libfaketimeMT.so.1 not found");
    found.map(|p| p.to_string_lossy().into_owned())
}

pub use client::{jam_time, tcp_queues, wait_listening, Client};
pub use daemon::{
    parse_listening, spawn_jamd, Jamd, Lines, JAMC, JAMD, LOOPBACK_ARGS, LOOPBACK_FILE_LOG,
};
pub use fake::{closed_port, free_port, Behaviour, FakeServer};
pub use process::{
    check_config, first_line, jamc, perf, run_bounded, run_fed, run_jamd, run_within, Checked,
    ChildGuard, Finished, Run, JAMC_BOUND,
};
pub use skip::{in_ci, require_namespaces, require_tool, require_tool_in, require_unpacked};
pub use syslog::{recv_until, recv_within, syslog_config, SyslogSink};
pub use tmp::{temp_dir, write_file, TempDir};
pub use wait::{poll_until, poll_until_woken, wait_file, wait_file_holds, wait_until, Verbatim};
