//! The metrics endpoint (SPEC 9) against the real things: a real jamd with
//! `[metrics] listen` on loopback, real clients, `promtool`, and a real
//! Prometheus server scraping it. promtool and prometheus come from the
//! Debian package, unpacked by .ci/run into target/tools/root (no service
//! starts); outside CI a missing tool skips the test that needs it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// promtool or prometheus: unpacked by .ci/run, or installed.
fn prometheus_tool(name: &str) -> Option<PathBuf> {
    let unpacked = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/tools/root/usr/bin")
        .join(name);
    if unpacked.is_file() {
        return Some(unpacked);
    }
    common::require_tool(name)
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped alert rules are valid, and their own unit tests pass.
#[test]
fn the_shipped_alert_rules_pass_promtool() {
    let Some(promtool) = prometheus_tool("promtool") else {
        return;
    };
    let dir = repo().join("packaging/prometheus");
    for args in [
        ["check", "rules", "jamd.rules.yml"],
        ["test", "rules", "jamd.rules.test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
