//! Admission as an operator sees it (jamd(8), Limits and LOGGING): who is
//! refused, that those already connected are still served, how a refusal is
//! logged, and that a slot comes back when its client leaves.

mod common;

use std::time::Duration;

use common::{jam_time, slots, Client, Jamd};

/// Starts jamd with `config`, holds `held` slots with served clients, and
/// checks that one more client is refused: the jamd and the held clients.
fn full(config: &str, held: usize) -> (Jamd, Vec<Client>) {
    let jamd = Jamd::start(config);
    let clients = slots::hold(&jamd, held);
    slots::assert_refused(jamd.connect());
    (jamd, clients)
}

#[test]
fn clients_over_max_connections_are_told_busy_and_closed() {
    let (jamd, mut held) = full("[server]\nmax_connections = 2\n", 2);
    // Those already connected are still served.
    for c in &mut held {
        assert!(jam_time(&c.ask("TIME")).is_some());
    }
    assert!(jamd
        .stderr
        .wait_for("refused 127.0.0.1:", Duration::from_secs(5))
        .is_some_and(|l| l.contains("server busy")));
    // A freed place is given to the next client.
    slots::assert_slot_comes_back(&jamd, held.remove(0));
}

#[test]
fn max_connections_per_source_limits_one_address() {
    let (_jamd, mut held) = full("[server]\nmax_connections_per_source = 1\n", 1);
    assert!(jam_time(&held[0].ask("TIME")).is_some());
}

#[test]
fn at_debug_level_every_refused_connection_is_logged_with_its_reason() {
    let (jamd, mut held) = full(
        "[server]\nmax_connections = 1\n[log]\nlevel = \"debug\"\n",
        1,
    );
    // Three refusals within a second (the one `full` made and two more): the
    // warning says one of them, the debug lines say each.
    for _ in 0..2 {
        assert_eq!(jamd.connect().line(), "ERROR server busy");
    }
    assert_eq!(
        jamd.stderr
            .wait_for_count("reason=busy", 3, Duration::from_secs(10)),
        3,
        "{:?}",
        jamd.stderr.all()
    );
    let line = jamd.stderr.wait_for("reason=busy", Duration::ZERO).unwrap();
    assert!(line.contains("refused 127.0.0.1:"), "{line}");
    // The slot comes back when its client leaves.
    slots::assert_slot_comes_back(&jamd, held.remove(0));
}

#[test]
fn a_refusal_by_source_is_logged_as_source_busy() {
    let (jamd, _held) = full(
        "[server]\nmax_connections_per_source = 1\n[log]\nlevel = \"debug\"\n",
        1,
    );
    assert_eq!(
        jamd.stderr
            .wait_for_count("reason=source_busy", 1, Duration::from_secs(10)),
        1,
        "{:?}",
        jamd.stderr.all()
    );
}

#[test]
fn at_info_level_refusals_are_not_logged_one_by_one() {
    let (jamd, _held) = full("[server]\nmax_connections = 1\n", 1);
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
