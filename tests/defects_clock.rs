//! The local zone as the C library reads it, and a clock before 1970
//! (jamd.toml(5), Time zones).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{run_jamd, temp_dir, Jamd, JAMD, LOOPBACK_ARGS};

/// Starts jamd with `config`, `TZ` set to `tz`, and more environment.
fn start_in(config: &str, tz: &str, env: &[(&str, &str)]) -> Jamd {
    Jamd::start_file(config, &LOOPBACK_ARGS, &[&[("TZ", tz)], env].concat())
}

/// What date(1) prints for `format` in zone `tz` (the C library's answer).
fn date(tz: &str, format: &str) -> String {
    let out = Command::new("date")
        .arg(format!("+{format}"))
        .env("TZ", tz)
        .output()
        .expect("date");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn a_posix_tz_without_rules_is_read_as_glibc_reads_it() {
    for tz in ["CET-1CEST", "EST5EDT", "JST-9", "<+0545>-5:45"] {
        // With timezone = "local" given, and with no [time] section at all
        // (which used to fall back to UTC in silence).
        for config in ["[time]\ntimezone = \"local\"\nformat = \"%z\"\n", ""] {
            let config = if config.is_empty() {
                "[server]\nidle_timeout = 5\n[time]\nformat = \"%z\"\n"
            } else {
                config
            };
            let mut jamd = start_in(config, tz, &[]);
            let reply = jamd.connect().ask("TIME");
            assert_eq!(reply, format!("JAM {}", date(tz, "%z")), "TZ={tz}");
            jamd.signal("TERM");
            assert_eq!(jamd.wait_exit(Duration::from_secs(10)), Some(0));
        }
    }
}

#[test]
fn a_local_zone_that_cannot_be_read_is_an_error_not_utc() {
    let dir = temp_dir("badtz");
    let path = dir.join("jamd.toml");
    std::fs::write(&path, "").unwrap();
    for tz in ["Nowhere/Atlantis", "not a zone"] {
        let out = Command::new(JAMD)
            .arg("-c")
            .arg(&path)
            .args(LOOPBACK_ARGS)
            .env("TZ", tz)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "TZ={tz}: {err}");
        assert!(
            err.contains("time.timezone (default \"local\"): cannot read the local time zone"),
            "{err}"
        );
    }
    // -t too: the zone in effect is part of the checked configuration.
    let (code, _, err) = run_jamd(
        &["-t", "-c", path.to_str().unwrap()],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(0), "the test's own TZ is readable: {err}");
}

/// A clock set before 1970 is shown as it reads, not as the epoch.
#[test]
fn a_clock_before_1970_is_served_as_it_reads() {
    let Some(lib) = common::libfaketime() else {
        return;
    };
    // Preloaded into jamd itself (the faketime wrapper would stand between
    // the test and jamd's pid); the monotonic clock stays real.
    let mut jamd = start_in(
        "[time]\nformat = \"%Y-%m-%d %H:%M\"\ntimezone = \"UTC\"\n",
        "UTC",
        &[
            ("LD_PRELOAD", &lib),
            ("FAKETIME", "@1960-01-02 03:04:05"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let reply = jamd.connect().ask("TIME");
    assert!(
        reply == "JAM 1960-01-02 03:04" || reply == "JAM 1960-01-02 03:05",
        "{reply}"
    );
    jamd.signal("TERM");
    assert_eq!(jamd.wait_exit(Duration::from_secs(10)), Some(0));
    // libfaketime removes its shared memory at exit, which jamd's
    // system-call filter (server.sandbox) does not allow: tidy up after it.
    for name in ["faketime_shm_", "sem.faketime_sem_"] {
        let _ = std::fs::remove_file(format!("/dev/shm/{name}{}", jamd.pid()));
    }
}
