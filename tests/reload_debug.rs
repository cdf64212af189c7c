//! What `level = "debug"` shows of a reload, as an operator reads it on a
//! real jamd: the file read, each key changed with its old and new value, and
//! the configuration put in effect; and that `info` shows none of it.

mod common;

use std::time::Duration;

use common::Jamd;

#[test]
fn at_debug_level_a_reload_names_the_file_and_each_changed_key() {
    let jamd = Jamd::start("[server]\nmax_connections = 50\n[log]\nlevel = \"debug\"\n");
    let mark =
        jamd.reload("[server]\nmax_connections = 70\nidle_timeout = 9\n[log]\nlevel = \"debug\"\n");
    let after = |needle: &str| {
        jamd.stderr
            .wait_for_after(mark, needle, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no {needle:?} line: {:#?}", jamd.stderr.all()))
    };
    let read = after("reload: reading ");
    assert!(
        read.contains(&jamd.config.display().to_string()),
        "the line names the file: {read}"
    );
    after("reload: server.max_connections: 50 -> 70");
    after("reload: server.idle_timeout: 30 -> 9");
    after("reload: configuration generation 1 in effect");
    // Only what changed is listed.
    assert_eq!(
        jamd.stderr
            .count_after(mark, "reload: server.max_line_bytes"),
        0
    );
    // A second reload is the next generation.
    let mark = jamd.reload("[server]\nmax_connections = 70\n[log]\nlevel = \"debug\"\n");
    assert!(jamd
        .stderr
        .wait_for_after(
            mark,
            "reload: server.idle_timeout: 9 -> 30",
            Duration::from_secs(5)
        )
        .is_some());
    assert!(jamd
        .stderr
        .wait_for_after(
            mark,
            "reload: configuration generation 2 in effect",
            Duration::from_secs(5)
        )
        .is_some());
}

#[test]
fn at_info_level_a_reload_logs_no_debug_lines() {
    let jamd = Jamd::start("[server]\nmax_connections = 50\n");
    jamd.reload("[server]\nmax_connections = 70\n");
    assert_eq!(jamd.stderr.count("reload: "), 0, "{:#?}", jamd.stderr.all());
}

#[test]
fn turning_debug_on_by_reload_shows_that_reloads_changes() {
    let jamd = Jamd::start("[server]\nmax_connections = 50\n");
    let mark = jamd.reload("[server]\nmax_connections = 60\n[log]\nlevel = \"debug\"\n");
    assert!(
        jamd.stderr
            .wait_for_after(
                mark,
                "reload: server.max_connections: 50 -> 60",
                Duration::from_secs(5)
            )
            .is_some(),
        "{:#?}",
        jamd.stderr.all()
    );
}
