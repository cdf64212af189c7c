//! Admission as an operator sees it: who is refused, why it is logged, and
//! that a slot comes back when its client leaves.

mod common;

use std::time::{Duration, Instant};

use common::{jam_time, Jamd};

/// Waits (bounded) until `n` stderr lines contain `needle`.
fn wait_count(jamd: &Jamd, needle: &str, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = jamd.stderr.count(needle);
        if seen >= n || Instant::now() >= deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn at_debug_level_every_refused_connection_is_logged_with_its_reason() {
    let jamd = Jamd::start("[server]\nmax_connections = 1\n[log]\nlevel = \"debug\"\n");
    let mut held = jamd.connect();
    assert!(jam_time(&held.ask("TIME")).is_some());
    // Three refusals within a second: the warning says one of them, the
    // debug lines say each.
    for _ in 0..3 {
        assert_eq!(jamd.connect().line(), "ERROR server busy");
    }
    assert_eq!(
        wait_count(&jamd, "reason=busy", 3),
        3,
        "{:?}",
        jamd.stderr.all()
    );
    let line = jamd.stderr.wait_for("reason=busy", Duration::ZERO).unwrap();
    assert!(line.contains("refused 127.0.0.1:"), "{line}");
    // The slot comes back when its client leaves.
    held.send(b"QUIT\r\n");
    assert!(held.closed());
    let deadline = Instant::now() + Duration::from_secs(10);
    let served = loop {
        let mut c = jamd.connect();
        let reply = c.ask("TIME");
        if jam_time(&reply).is_some() || Instant::now() >= deadline {
            break reply;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(jam_time(&served).is_some(), "{served}");
}

#[test]
fn a_refusal_by_source_is_logged_as_source_busy() {
    let jamd = Jamd::start("[server]\nmax_connections_per_source = 1\n[log]\nlevel = \"debug\"\n");
    let mut held = jamd.connect();
    assert!(jam_time(&held.ask("TIME")).is_some());
    assert_eq!(jamd.connect().line(), "ERROR server busy");
    assert_eq!(
        wait_count(&jamd, "reason=source_busy", 1),
        1,
        "{:?}",
        jamd.stderr.all()
    );
}

#[test]
fn at_info_level_refusals_are_not_logged_one_by_one() {
    let jamd = Jamd::start("[server]\nmax_connections = 1\n");
    let mut held = jamd.connect();
    assert!(jam_time(&held.ask("TIME")).is_some());
    assert_eq!(jamd.connect().line(), "ERROR server busy");
    // The rate-limited warning still comes.
    assert!(jamd
        .stderr
        .wait_for("refused 127.0.0.1:", Duration::from_secs(10))
        .is_some());
    assert_eq!(
        jamd.stderr.count("reason=busy"),
        0,
        "{:?}",
        jamd.stderr.all()
    );
}
