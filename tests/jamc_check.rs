//! jamc's check against fake servers (common::fake) whose clocks are known (an
//! offset, a frozen or backward clock, a slow link, a hostile reply), and
//! against the real jamd: jamc(1), CHECK MODE, and check_jam(1).
//!
//! Loopback only; every wait is bounded; every process is stopped by its handle.

mod common;

use common::relay::Relay;
use common::{first_line, jamc, perf, repo, run_bounded, FakeServer, Run, TempDir, JAMC_BOUND};

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A `JAM` line of the UTC clock moved by `offset_ms`, in `format`.
fn clock_line(now: DateTime<Utc>, offset_ms: i64, format: &str) -> Vec<u8> {
    let t = now + chrono::Duration::milliseconds(offset_ms);
    format!("JAM {}\r\n", t.format(format)).into_bytes()
}

/// A server whose UTC clock is `offset_ms` off, answering in whole seconds.
fn offset_server(offset_ms: i64) -> FakeServer {
    FakeServer::answering(move |now| clock_line(now, offset_ms, "%H:%M:%S"))
}

// ---------------------------------------- jamc(1), SECURITY: server text escaped

#[test]
fn a_server_cannot_forge_perfdata_in_the_check_line() {
    let server = FakeServer::answering(|_| b"ERROR x | offset=0.000s;2;10\r\n".to_vec());
    let run = jamc(&["--check", &server.target()]);
    assert_eq!(run.code, 2, "{run:?}");
    let line = first_line(&run);
    assert!(line.starts_with("JAM CRITICAL - "), "{run:?}");
    assert_eq!(line.matches('|').count(), 1, "{line:?}");
    assert!(line.contains("ERROR x \\| offset=0.000s;2;10"), "{line:?}");
}

#[test]
fn a_server_cannot_put_a_carriage_return_in_the_status_line() {
    let server = FakeServer::answering(|_| b"ERROR a\rJAM OK - offset +0.000 s\r\n".to_vec());
    let run = jamc(&["--check", &server.target()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(!run.stdout.contains('\r'), "{run:?}");
    assert!(run.stdout.contains("ERROR a\\x0dJAM OK"), "{run:?}");
}

#[test]
fn escape_sequences_do_not_reach_the_terminal_in_plain_mode() {
    let server = FakeServer::answering(|_| b"JAM \x1b[2J\x1b]0;owned\x0714:03:27\r\n".to_vec());
    let run = jamc(&[&server.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains('\x1b'), "{run:?}");
    assert!(!run.stdout.contains('\x07'), "{run:?}");
    assert_eq!(
        run.stdout.trim_end(),
        "\\x1b[2J\\x1b]0;owned\\x0714:03:27",
        "{run:?}"
    );
    // And in the words on stderr about a reply that is not a JAM line.
    let server = FakeServer::answering(|_| b"HELLO \x1b[31mred\r\n".to_vec());
    let run = jamc(&[&server.target()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(!run.stderr.contains('\x1b'), "{run:?}");
    assert!(run.stderr.contains("HELLO \\x1b[31mred"), "{run:?}");
}

// ------------------------------ jamc(1): every fractional format jamd renders

#[test]
fn check_reads_every_fractional_format_jamd_renders() {
    for format in ["%H:%M:%S.%3f", "%T.%f", "%H:%M:%S%.3f"] {
        let jamd = common::Jamd::start(&format!(
            "[time]\nformat = \"{format}\"\ntimezone = \"UTC\"\n"
        ));
        let run = jamc(&[
            "--check",
            "--format",
            format,
            "--timezone",
            "UTC",
            &jamd.addr.to_string(),
        ]);
        assert_eq!(run.code, 0, "{format}: {run:?}");
        let line = first_line(&run);
        assert!(line.starts_with("JAM OK - offset "), "{format}: {line}");
        assert!(perf(line, "offset").abs() < 0.1, "{format}: {line}");
    }
}

// -------------------------------------- jamc(1): a reading across a DST change

/// A TZif version 2 file: `before` seconds east of UTC until `at`, then
/// `after` (a whole number of hours west of UTC, as the footer says it).
fn tzif_with_one_change(at: i64, before: i32, after: i32) -> Vec<u8> {
    let block = |f: &mut Vec<u8>, wide: bool| {
        f.extend_from_slice(b"TZif2");
        f.extend_from_slice(&[0; 15]);
        // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
        for count in [0u32, 0, 0, 1, 2, 8] {
            f.extend_from_slice(&count.to_be_bytes());
        }
        if wide {
            f.extend_from_slice(&at.to_be_bytes());
        } else {
            f.extend_from_slice(&i32::try_from(at).expect("fits").to_be_bytes());
        }
        f.push(1);
        for (offset, dst, name_at) in [(before, 1u8, 0u8), (after, 0, 4)] {
            f.extend_from_slice(&offset.to_be_bytes());
            f.push(dst);
            f.push(name_at);
        }
        f.extend_from_slice(b"XDT\0XST\0");
    };
    let mut f = Vec::new();
    block(&mut f, false);
    block(&mut f, true);
    // After the last transition: the POSIX TZ footer (XST, `after` west of UTC).
    f.extend_from_slice(format!("\nXST{}\n", -after / 3600).as_bytes());
    f
}

#[test]
fn a_reading_across_a_dst_change_is_taken_on_the_side_nearest_local_time() {
    // A zone that leaves "summer time" (UTC-4 -> UTC-5) 4.5 s from now (a
    // check takes up to 3 s), and a server 5 s ahead: jamc asks before the
    // change, the server reads its clock after it. The truth is +5 s, not 5 s - 1 h. A run that ends after the
    // change (a loaded machine) did not straddle it: try again, at most 3 times.
    let dir = TempDir::new("tzdir");
    std::fs::create_dir_all(dir.join("Test")).expect("mkdir");
    let mut straddled = 0;
    for _ in 0..3 {
        let change = Utc::now() + chrono::Duration::milliseconds(4500);
        std::fs::write(
            dir.join("Test/Shift"),
            tzif_with_one_change(change.timestamp(), -4 * 3600, -5 * 3600),
        )
        .expect("write zone");
        let server = FakeServer::answering(move |now| {
            let server_now = now + chrono::Duration::milliseconds(5000);
            let zone_offset = if server_now >= change { -5 } else { -4 };
            let wall = server_now + chrono::Duration::hours(zone_offset);
            format!("JAM {}\r\n", wall.format("%H:%M:%S")).into_bytes()
        });
        let run = run_bounded(
            Command::new(env!("CARGO_BIN_EXE_jamc"))
                .env("TZDIR", &dir)
                .args(["--check", "--timezone", "Test/Shift"])
                .args(["--warning", "20", "--critical", "30", &server.target()]),
            JAMC_BOUND,
        );
        let line = first_line(&run);
        assert_eq!(run.code, 0, "{run:?}");
        let offset = perf(line, "offset");
        assert!((4.4..=5.6).contains(&offset), "{line}");
        if Utc::now() < change {
            straddled += 1;
            break;
        }
    }
    assert!(
        straddled > 0,
        "no run straddled the change: machine too busy"
    );
}

// ---------------------------------- jamc(1), Thresholds: thresholds, digits

#[test]
fn inverted_thresholds_are_a_usage_error() {
    let server = offset_server(0);
    let run = jamc(&[
        "--check",
        "--warning",
        "5",
        "--critical",
        "2",
        &server.target(),
    ]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(first_line(&run).starts_with("JAM UNKNOWN - "), "{run:?}");
    assert!(first_line(&run).contains("--warning"), "{run:?}");
    assert_eq!(server.requests(), 0, "a usage error asks nobody: {run:?}");
    // Equal thresholds are fine: there is simply no WARNING band.
    let run = jamc(&[
        "--check",
        "--warning",
        "2",
        "--critical",
        "2",
        &server.target(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn no_negative_zero_and_round_trip_with_microseconds() {
    // A server 0.2 ms behind, with microseconds: on loopback the offset rounds
    // to zero, and a negative zero must not be printed.
    let server = FakeServer::answering(|now| clock_line(now, 0, "%H:%M:%S%.6f"));
    let behind = FakeServer::answering(|now| {
        let t = now - chrono::Duration::microseconds(200);
        format!("JAM {}\r\n", t.format("%H:%M:%S%.6f")).into_bytes()
    });
    for server in [&server, &behind] {
        for _ in 0..3 {
            let run = jamc(&["--check", &server.target()]);
            assert_eq!(run.code, 0, "{run:?}");
            let line = first_line(&run);
            assert!(!line.contains("-0.0 "), "{line}");
            assert!(!line.contains("-0.000 "), "{line}");
            assert!(!line.contains("=-0.000s"), "{line}");
            // check_tcp's precision: microseconds, so loopback is not "0.000s".
            let time = line
                .split("time=")
                .nth(1)
                .and_then(|t| t.split('s').next())
                .unwrap_or_else(|| panic!("no time= in {line}"));
            let decimals = time.split('.').nth(1).map_or(0, str::len);
            assert_eq!(decimals, 6, "{line}");
        }
    }
}

#[test]
fn jamc_1_names_where_check_tcp_is_installed() {
    let page = std::fs::read_to_string(repo().join("man/jamc.1")).expect("read jamc.1");
    let path = "/usr/lib/nagios/plugins/check_tcp";
    assert!(page.contains(path), "jamc.1 does not name {path}");
    if Path::new("/usr/lib/nagios/plugins").is_dir() {
        assert!(
            Path::new(path).exists(),
            "monitoring-plugins are installed but not at {path}"
        );
    }
}

// ---------------- jamc(1), How the offset is measured: sub-second offsets

/// The offset, uncertainty and round trip of a one-server --check line.
fn reading(run: &Run) -> (f64, f64) {
    let line = first_line(run);
    (perf(line, "offset"), perf(line, "uncertainty"))
}

/// Checks that a measured offset holds the truth.
fn assert_holds(run: &Run, truth: f64) {
    let (offset, uncertainty) = reading(run);
    // 1 ms for the rounding of the printed figures.
    assert!(
        (offset - truth).abs() <= uncertainty + 0.001,
        "truth {truth} not within {offset} ± {uncertainty}: {run:?}"
    );
}

/// Runs `attempt` up to 3 times until `close_enough` holds for its result:
/// how close a measurement comes depends on how promptly a loaded machine
/// schedules jamc (the gap between two requests), while what every attempt
/// must get right (the truth within the uncertainty) is asserted inside it.
fn within_three_tries<T: std::fmt::Debug>(
    mut attempt: impl FnMut() -> T,
    close_enough: impl Fn(&T) -> bool,
) {
    let mut tries = Vec::new();
    for _ in 0..3 {
        let result = attempt();
        if close_enough(&result) {
            return;
        }
        tries.push(result);
    }
    panic!("not close enough in 3 tries: {tries:#?}");
}

#[test]
fn whole_second_servers_are_read_to_well_under_a_second() {
    for truth_ms in [300, -700, 3450] {
        let truth = truth_ms as f64 / 1000.0;
        let attempt = || {
            let server = offset_server(truth_ms);
            let run = jamc(&["--check", "--warning", "5", &server.target()]);
            assert_eq!(run.code, 0, "{run:?}");
            let line = first_line(&run);
            assert!(line.starts_with("JAM OK - offset "), "{line}");
            // Three decimals in the text, as in the perfdata.
            let shown = line.split("offset ").nth(1).unwrap_or("");
            let number = shown.split(' ').next().unwrap_or("");
            assert_eq!(number.split('.').nth(1).map(str::len), Some(3), "{line}");
            assert_holds(&run, truth);
            // It watched the tick: more than one request, on one connection.
            assert!(server.requests() > 1, "{line}");
            assert!(server.requests() <= 125, "{} requests", server.requests());
            assert_eq!(server.connections(), 1);
            reading(&run)
        };
        within_three_tries(attempt, |(offset, uncertainty)| {
            (offset - truth).abs() <= 0.05 && *uncertainty <= 0.05
        });
    }
}

#[test]
fn against_jamd_the_offset_is_near_zero_and_tightly_known() {
    let jamd = common::Jamd::start("");
    let attempt = || {
        let run = jamc(&["--check", &jamd.addr.to_string()]);
        assert_eq!(run.code, 0, "{run:?}");
        assert_holds(&run, 0.0);
        reading(&run)
    };
    within_three_tries(attempt, |(offset, uncertainty)| {
        offset.abs() < 0.05 && *uncertainty < 0.05
    });
}

#[test]
fn quick_takes_one_reply_good_to_half_a_second() {
    let server = offset_server(300);
    let run = jamc(&["--check", "--quick", &server.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    let (_, uncertainty) = reading(&run);
    assert!((0.5..0.6).contains(&uncertainty), "{run:?}");
    assert_holds(&run, 0.3);
    assert_eq!(server.requests(), 1);
}

#[test]
fn fractional_replies_need_no_watching() {
    let server = FakeServer::answering(|now| clock_line(now, -700, "%H:%M:%S%.3f"));
    let run = jamc(&["--check", &server.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(server.requests(), 1, "{run:?}");
    let (offset, uncertainty) = reading(&run);
    assert!((offset + 0.7).abs() <= 0.05, "{run:?}");
    assert!(uncertainty < 0.05, "{run:?}");
}

/// `jamc --check` with `extra` options against a server whose clock stands at
/// 12:00:00 (any offset is OK): the run, which must exit 0, and how many
/// requests the server got.
fn check_frozen_clock(extra: &[&str]) -> (Run, usize) {
    let server = FakeServer::answering(|_| b"JAM 12:00:00\r\n".to_vec());
    let target = server.target();
    let mut args = vec!["--check", "--warning", "43200", "--critical", "43200"];
    args.extend_from_slice(extra);
    args.push(&target);
    let run = jamc(&args);
    assert_eq!(run.code, 0, "{run:?}");
    (run, server.requests())
}

#[test]
fn a_frozen_clock_gives_the_half_second_answer_after_the_watch() {
    let (run, asked) = check_frozen_clock(&[]);
    let (_, uncertainty) = reading(&run);
    assert!((0.5..0.6).contains(&uncertainty), "{run:?}");
    // Asked again, but no faster than every 10 ms for at most 1.2 s.
    assert!((2..=121).contains(&asked), "{asked} requests");
}

#[test]
fn the_watch_never_goes_past_the_timeout() {
    let (_, asked) = check_frozen_clock(&["-w", "0.3"]);
    // 0.3 s at one request per 10 ms at most.
    assert!((1..=31).contains(&asked), "{asked} requests");
}

/// A server whose n-th reply (on any connection) is `JAM HH:MM:SS` of the
/// UTC clock moved by `step(n)` seconds.
fn stepping_server(step: fn(usize) -> i64) -> FakeServer {
    let n = AtomicUsize::new(0);
    FakeServer::answering(move |now| {
        let k = n.fetch_add(1, Ordering::SeqCst);
        clock_line(now, step(k) * 1000, "%H:%M:%S")
    })
}

#[test]
fn a_clock_running_backwards_or_jumping_is_not_trusted_beyond_one_reply() {
    for (what, step) in [
        (
            "backwards",
            (|k| -i64::try_from(k).unwrap()) as fn(usize) -> i64,
        ),
        ("jumping", |k| 2 * i64::try_from(k).unwrap()),
    ] {
        let server = stepping_server(step);
        let run = jamc(&[
            "--check",
            "--warning",
            "60",
            "--critical",
            "120",
            &server.target(),
        ]);
        assert_eq!(run.code, 0, "{what}: {run:?}");
        let (_, uncertainty) = reading(&run);
        assert!((0.5..0.6).contains(&uncertainty), "{what}: {run:?}");
        // The check ended at the first reply no offset explains with those
        // before it. Jumping: the second (two seconds on in well under
        // one). Backwards: the second, or the third when the server's own
        // second changed between the first two replies, so that the second
        // reply, a second back, showed the same second as the first.
        let most = if what == "jumping" { 2 } else { 3 };
        assert!(
            (2..=most).contains(&server.requests()),
            "{what}: {} requests, {run:?}",
            server.requests()
        );
    }
}

#[test]
fn on_a_slow_link_the_round_trip_widens_the_uncertainty() {
    let server = FakeServer::answering_after(Duration::from_millis(300), |now| {
        clock_line(now, 3450, "%H:%M:%S")
    });
    let run = jamc(&["--check", "--warning", "5", &server.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    let (_, uncertainty) = reading(&run);
    assert!(uncertainty >= 0.15, "{run:?}");
    assert_holds(&run, 3.45);
}

/// The gaps between the TIME requests `server` read, in seconds.
fn request_gaps(server: &FakeServer) -> Vec<f64> {
    server
        .time_arrivals()
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect()
}

#[test]
fn over_a_slow_link_time_requests_are_pipelined_at_least_20_ms_apart() {
    // A whole-second server 0.37 s ahead, 50 ms away each way: requests
    // that reach it less than a round trip apart were sent before the reply
    // to the one before could have come back (jamc(1), How the offset is
    // measured: several readings in flight at once).
    let server = offset_server(370);
    let relay = Relay::tcp(
        server.addr,
        Duration::from_millis(50),
        Duration::from_millis(50),
    );
    let run = jamc(&["--check", "--warning", "5", &relay.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_holds(&run, 0.37);
    let requests = server.requests();
    assert!((2..=10).contains(&requests), "{requests} requests: {run:?}");
    assert_eq!(server.connections(), 1, "one connection: {run:?}");
    let gaps = request_gaps(&server);
    assert!(
        gaps.iter().any(|&gap| gap < 0.09),
        "no request sent before the reply to the one before it: {gaps:?}"
    );
    // jamc keeps 20 ms between requests; the relay and the server, each
    // scheduled on a loaded machine, may take a little off what the server sees.
    assert!(
        gaps.iter().all(|&gap| gap >= 0.012),
        "requests closer than 20 ms: {gaps:?}"
    );
}

#[test]
fn without_a_round_trip_to_wait_for_requests_stay_20_ms_apart() {
    // On loopback one request is in flight at a time; the server reads
    // them at least 20 ms apart.
    let server = offset_server(-700);
    let run = jamc(&["--check", "--warning", "5", &server.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_holds(&run, -0.7);
    let gaps = request_gaps(&server);
    assert!(!gaps.is_empty() && gaps.len() < 10, "{gaps:?}");
    assert!(
        gaps.iter().all(|&gap| gap >= 0.015),
        "requests closer than 20 ms: {gaps:?}"
    );
}

// ---------------------------------------- jamc(1), CHECK MODE: several servers

/// Asserts that after its first line a fleet --check printed one line per
/// server, in the order given, each starting as `starts` says.
fn assert_server_lines(run: &Run, starts: &[String]) {
    let lines: Vec<&str> = run.stdout.lines().skip(1).collect();
    assert_eq!(lines.len(), starts.len(), "one line per server: {run:?}");
    for (line, start) in lines.iter().zip(starts) {
        assert!(line.starts_with(start.as_str()), "want {start:?}: {run:?}");
    }
}

#[test]
fn a_fleet_is_checked_at_once_worst_first_then_one_line_each() {
    let a = offset_server(300);
    let b = offset_server(12_300);
    let c = offset_server(-700);
    let run = jamc(&["--check", &a.target(), &b.target(), &c.target()]);
    assert_eq!(run.code, 2, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{run:?}");
    let head = format!(
        "JAM CRITICAL - 1 of 3 servers critical, worst {} offset +12.",
        b.target()
    );
    assert!(lines[0].starts_with(&head), "{}", lines[0]);
    for (server, truth) in [(&a, 0.3), (&b, 12.3), (&c, -0.7)] {
        let label = format!("'{}_offset'", server.target());
        let value = perf(lines[0], &label);
        let uncertainty = perf(lines[0], &format!("'{}_uncertainty'", server.target()));
        assert!(
            (value - truth).abs() <= uncertainty + 0.001 && uncertainty < 0.25,
            "{label}: {}",
            lines[0]
        );
        assert!(
            lines[0].contains(&format!("{label}={value:.3}s;2;10")),
            "{}",
            lines[0]
        );
    }
    assert_server_lines(
        &run,
        &[
            format!("{} OK - offset +0.", a.target()),
            format!("{} CRITICAL - offset +12.", b.target()),
            format!("{} OK - offset -0.", c.target()),
        ],
    );
}

#[test]
fn an_unreachable_server_in_a_fleet_is_critical_for_its_line() {
    let a = offset_server(0);
    let dead = TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_target = dead.local_addr().expect("addr").to_string();
    drop(dead);
    let run = jamc(&["--check", &a.target(), &dead_target]);
    assert_eq!(run.code, 2, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with("JAM CRITICAL - 1 of 2 servers critical, worst "),
        "{run:?}"
    );
    assert_server_lines(
        &run,
        &[
            format!("{} OK", a.target()),
            format!("{dead_target} CRITICAL - cannot connect"),
        ],
    );
}

#[test]
fn several_servers_are_asked_at_once_and_printed_in_the_order_given() {
    let a = offset_server(0);
    // The second answers slowly: it is still printed second.
    let b = FakeServer::answering_after(Duration::from_millis(400), |now| {
        clock_line(now, 0, "%H:%M:%S")
    });
    let c = offset_server(0);
    let run = jamc(&[&c.target(), &b.target(), &a.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    let servers: Vec<&str> = run
        .stdout
        .lines()
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(servers, [c.target(), b.target(), a.target()], "{run:?}");
    for line in run.stdout.lines() {
        let time = line.split(' ').nth(1).unwrap_or("");
        assert!(
            chrono::NaiveTime::parse_from_str(time, "%H:%M:%S").is_ok(),
            "{line}"
        );
    }
    assert_eq!(a.connections() + b.connections() + c.connections(), 3);
}

// -------------------------------------- jamc(1), OUTPUT: refusals in words

#[test]
fn access_denied_and_rate_limited_are_said_in_words() {
    for (line, words) in [
        ("ERROR access denied", "not allowed"),
        ("ERROR rate limited", "too many connections"),
    ] {
        let reply = format!("{line}\r\n").into_bytes();
        let server = FakeServer::answering(move |_| reply.clone());
        let run = jamc(&[&server.target()]);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(
            run.stderr.contains(&format!("server said {line} (")),
            "{run:?}"
        );
        assert!(run.stderr.contains(words), "{run:?}");
        let run = jamc(&["--check", &server.target()]);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(first_line(&run).starts_with("JAM CRITICAL - "), "{run:?}");
        assert!(first_line(&run).contains(words), "{run:?}");
    }
}

// ----------------------------- the state, the figure and the hint agree

/// A reply that is no JAM or ERROR line at all is another service on the
/// port: CRITICAL. A JAM line whose time does not fit --format is the
/// check's settings: UNKNOWN.
#[test]
fn another_protocol_on_the_port_is_critical_an_unreadable_jam_time_unknown() {
    for (service, behaviour) in [
        (
            "ssh",
            common::Behaviour::GreetAndClose(
                b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n".to_vec(),
            ),
        ),
        (
            "http",
            common::Behaviour::ReplyAndClose(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_vec(),
            ),
        ),
    ] {
        let server = FakeServer::start(behaviour);
        for run in [
            jamc(&["--check", &server.target()]),
            check_jam(&["-H", &server.target()]),
        ] {
            assert_eq!(run.code, 2, "{service}: {run:?}");
            let line = first_line(&run);
            assert!(line.starts_with("JAM CRITICAL - "), "{service}: {line}");
            assert!(
                line.contains("reply is not a JAM line"),
                "{service}: {line}"
            );
        }
    }
    for reply in [&b"JAM tea time\r\n"[..], b"JAM \r\n", b"JAM \xff\xfe\r\n"] {
        let server = FakeServer::start(common::Behaviour::Reply(reply.to_vec()));
        let run = jamc(&["--check", &server.target()]);
        assert_eq!(run.code, 3, "{reply:?}: {run:?}");
        assert!(first_line(&run).starts_with("JAM UNKNOWN - "), "{run:?}");
        assert!(first_line(&run).contains("cannot read"), "{run:?}");
    }
}

/// A server that keeps good time in another zone is off by whole hours:
/// the line says so.
#[test]
fn an_offset_of_whole_hours_asks_whether_the_zone_is_right() {
    let ahead = offset_server(7 * 3_600_000 + 12);
    let run = jamc(&["--check", "--timezone=UTC", &ahead.target()]);
    assert_eq!(run.code, 2, "{run:?}");
    let line = first_line(&run);
    // The reading is good to its uncertainty (tens of ms on a loaded
    // machine), so the hint must come for an offset a little either side.
    let shown: f64 = line
        .strip_prefix("JAM CRITICAL - offset +")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {line}"));
    assert!((shown - 25_200.012).abs() < 0.1, "{line}");
    assert!(
        line.contains(" s: exactly 7 h — is --timezone right? (from 127.0.0.1:"),
        "{line}"
    );
    let behind = offset_server(-3 * 3_600_000 + 1500);
    let run = check_jam(&["-H", &behind.target(), "--timezone=UTC"]);
    assert!(
        first_line(&run).contains(": exactly -3 h — is --timezone right?"),
        "{run:?}"
    );
    // 30 minutes, or hours and a minute off, are no zone mismatch.
    let half = offset_server(5 * 3_600_000 + 30 * 60_000);
    let run = jamc(&["--check", "--timezone=UTC", "--quick", &half.target()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(!run.stdout.contains("exactly"), "{run:?}");
}

/// At exactly the threshold the state and the printed offset agree: the
/// thresholds are compared with the value as shown.
#[test]
fn at_the_threshold_the_state_follows_the_printed_offset() {
    // 3.45025 s ahead, read to the microsecond: printed as +3.450, which is
    // not more than -c 3.45.
    let attempt = || {
        let server = FakeServer::answering(|now| {
            let t = now + chrono::Duration::microseconds(3_450_250);
            format!("JAM {}\r\n", t.format("%H:%M:%S%.6f")).into_bytes()
        });
        let run = jamc(&[
            "--check",
            "--timezone=UTC",
            "--format",
            "%H:%M:%S%.6f",
            "--warning",
            "2",
            "--critical",
            "3.45",
            // The first request races the fake server's accept loop; later
            // ones on the same connection are read to a fraction of a ms.
            "-n",
            "4",
            &server.target(),
        ]);
        let line = first_line(&run).to_string();
        let printed = perf(&line, "offset");
        let want = if printed > 3.45 { 2 } else { 1 };
        assert_eq!(
            run.code, want,
            "printed {printed}, exit {}: {line}",
            run.code
        );
        let word = if want == 2 { "CRITICAL" } else { "WARNING" };
        assert!(
            line.starts_with(&format!("JAM {word} - offset +{printed:.3} s ")),
            "{line}"
        );
        printed
    };
    // The machine may be slow enough to read 3.451 now and then; the printed
    // value and the state must agree every time, and 3.450 must come.
    within_three_tries(attempt, |printed| (*printed - 3.45).abs() < 1e-9);
}

// ------------------------------------------------- -s: from a chosen address

/// `-s ADDR` connects from that local address, as `nc -s` does: what an
/// operator needs to try an access list from 127.0.0.2.
#[test]
fn source_connects_from_the_address_given() {
    let jamd = common::Jamd::start("[access]\nallow = [\"127.0.0.2\"]\n");
    let server = jamd.addr.to_string();
    let port = jamd.addr.port().to_string();

    let run = jamc(&[&server]);
    assert_eq!(run.code, 1, "from 127.0.0.1: {run:?}");
    assert!(run.stderr.contains("ERROR access denied"), "{run:?}");
    for source in [&["-s", "127.0.0.2"][..], &["--source=127.0.0.2"]] {
        let run = jamc(&[source, &[server.as_str()]].concat());
        assert_eq!(run.code, 0, "{source:?}: {run:?}");
        assert!(
            common::jam_time(&format!("JAM {}", run.stdout.trim())).is_some(),
            "{run:?}"
        );
    }
    let run = jamc(&["--check", "-s", "127.0.0.2", &server]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(first_line(&run).starts_with("JAM OK - offset "), "{run:?}");
    let run = check_jam(&["-H", "127.0.0.1", "-p", &port, "-s", "127.0.0.2"]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = check_jam(&["-H", "127.0.0.1", "-p", &port]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(first_line(&run).contains("access denied"), "{run:?}");
    let run = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_jamc")).args([
            "--conformance",
            "-s",
            "127.0.0.2",
            &server,
        ]),
        Duration::from_secs(80),
    );
    assert_eq!(run.code, 0, "{run:?}");

    // An address that is not this machine's, another family, no address at all.
    let run = jamc(&["-s", "192.0.2.1", &server]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("cannot connect from 192.0.2.1: not an address of this machine"),
        "{run:?}"
    );
    let run = jamc(&["-s", "::1", &server]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("-s ::1 cannot reach 127.0.0.1"),
        "{run:?}"
    );
    let run = jamc(&["--check", "-s", "localhost", &server]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(first_line(&run).contains("--source"), "{run:?}");
}

// --------------------------------------------------------- check_jam(1)

fn check_jam(args: &[&str]) -> Run {
    run_bounded(
        Command::new(env!("CARGO_BIN_EXE_check_jam")).args(args),
        JAMC_BOUND,
    )
}

#[test]
fn check_jam_takes_the_flags_check_ntp_time_users_write() {
    let jamd = common::Jamd::start("");
    let port = jamd.addr.port().to_string();
    let run = check_jam(&[
        "-H",
        "127.0.0.1",
        "-p",
        &port,
        "-w",
        "0.5",
        "-c",
        "1",
        "-t",
        "5",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let line = first_line(&run);
    assert!(line.starts_with("JAM OK - offset "), "{line}");
    assert!(
        line.contains("offset=") && line.contains(";0.5;1 "),
        "{line}"
    );
    assert!(perf(line, "uncertainty") < 0.05, "{line}");

    // A server 3.45 s ahead: CRITICAL past -c 1, WARNING with a wider -c.
    let ahead = offset_server(3450);
    let (host, port) = (ahead.addr.ip().to_string(), ahead.addr.port().to_string());
    let run = check_jam(&["-H", &host, "-p", &port, "-w", "0.5", "-c", "1"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        first_line(&run).starts_with("JAM CRITICAL - offset +3.4"),
        "{run:?}"
    );
    let run = check_jam(&[
        "-H", &host, "-p", &port, "-w", "~:0.5", "-c", "~:10", "-4", "-v",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.lines().count() >= 2, "-v says more: {run:?}");

    // Usage errors are UNKNOWN; help and version are not errors.
    let run = check_jam(&["-H", &host, "-w", "5", "-c", "2"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(first_line(&run).starts_with("JAM UNKNOWN - "), "{run:?}");
    let run = check_jam(&["-p", &port]);
    assert_eq!(run.code, 3, "{run:?}");
    let run = check_jam(&["-h"]);
    assert_eq!(run.code, 0, "{run:?}");
    for flag in ["-H", "-p", "-w", "-c", "-t", "-4", "-6", "-v", "-V"] {
        assert!(run.stdout.contains(&format!("{flag}, ")), "{flag}: {run:?}");
    }
}

/// A monitoring system shows the first line of stdout: a bad or missing
/// option is one `JAM UNKNOWN` line there naming it, nothing on stderr.
#[test]
fn a_bad_or_missing_option_of_check_jam_is_one_line_naming_it() {
    for (args, names) in [
        (&[][..], "-H HOST"),
        (&["-w", "1", "-c", "2"], "-H HOST"),
        (&["-H", "127.0.0.1", "-w", "x"], "--warning"),
        (&["-H", "127.0.0.1", "-c"], "--critical"),
        (&["-H", "127.0.0.1", "--no-such-option"], "--no-such-option"),
        (&["-H", "127.0.0.1", "-t", "0"], "--timeout"),
        (&["-H", "127.0.0.1:x"], "-H"),
    ] {
        let run = check_jam(args);
        assert_eq!(run.code, 3, "{args:?}: {run:?}");
        assert_eq!(run.stdout.lines().count(), 1, "{args:?}: {run:?}");
        assert!(first_line(&run).starts_with("JAM UNKNOWN - "), "{run:?}");
        assert!(first_line(&run).contains(names), "{args:?}: {run:?}");
        assert_eq!(run.stderr, "", "{args:?}: {run:?}");
    }
    // Its usage asks for -H alone; the thresholds have defaults.
    let help = check_jam(&["--help"]);
    let usage = help
        .stdout
        .lines()
        .find(|l| l.starts_with("Usage: "))
        .unwrap_or_default();
    assert!(usage.starts_with("Usage: check_jam -H HOST ["), "{usage}");
    assert!(usage.contains("[-w RANGE] [-c RANGE]"), "{usage}");
}

/// `check_jam -V` names the build as `jamc -V` does.
#[test]
fn check_jam_version_names_the_commit_as_jamc_does() {
    let jamc_v = jamc(&["-V"]);
    let plugin_v = check_jam(&["-V"]);
    assert_eq!(plugin_v.code, 0, "{plugin_v:?}");
    let build = jamc_v.stdout.trim().strip_prefix("jamc ").unwrap_or("?");
    assert_eq!(plugin_v.stdout.trim(), format!("check_jam {build}"));
    if std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(build.contains(" ("), "no commit in {plugin_v:?}");
    }
}

#[test]
fn jamc_run_as_check_jam_is_the_plugin() {
    let dir = TempDir::new("plugin-link");
    let link = dir.join("check_jam");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_jamc"), &link).expect("symlink");
    let ahead = offset_server(3450);
    let port = ahead.addr.port().to_string();
    let run = run_bounded(
        Command::new(&link).args(["-H", "127.0.0.1", "-p", &port, "-w", "1", "-c", "5"]),
        JAMC_BOUND,
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        first_line(&run).starts_with("JAM WARNING - offset +3.4"),
        "{run:?}"
    );
}

#[test]
fn the_deb_installs_check_jam_in_the_plugin_directory() {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    let manifest: toml::Table = manifest.parse().expect("Cargo.toml is TOML");
    let assets = manifest["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .expect("deb assets");
    let installs = assets.iter().any(|a| {
        a.as_array().is_some_and(|a| {
            a.first().and_then(|v| v.as_str()) == Some("target/release/check_jam")
                && a.get(1).and_then(|v| v.as_str()) == Some("usr/lib/nagios/plugins/")
                && a.get(2).and_then(|v| v.as_str()) == Some("755")
        })
    });
    assert!(
        installs,
        "no check_jam asset for /usr/lib/nagios/plugins: {assets:?}"
    );
}

/// Flags at the start of `--help` option lines: `-H, --hostname <HOST>` → -H, --hostname.
fn help_flags(help: &str) -> std::collections::BTreeSet<String> {
    let mut flags = std::collections::BTreeSet::new();
    for line in help.lines() {
        for word in line.split_whitespace() {
            // `-v, --verbose...`: clap marks a flag that may be repeated.
            let word = word.trim_end_matches(',').trim_end_matches("...");
            if !word.starts_with('-') || word.len() < 2 {
                break;
            }
            flags.insert(word.split('=').next().unwrap_or(word).to_string());
        }
    }
    flags
}

/// Flags of the `.It` lines of a page: `.It Fl H Ar host , Fl -hostname` → -H, --hostname.
fn page_item_flags(page: &str) -> std::collections::BTreeSet<String> {
    let mut flags = std::collections::BTreeSet::new();
    for line in page.lines().filter(|l| l.starts_with(".It ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            if pair[0] == "Fl" {
                flags.insert(format!("-{}", pair[1]));
            }
        }
    }
    flags
}

#[test]
fn every_flag_of_check_jam_is_documented_in_check_jam_1() {
    let help = check_jam(&["--help"]);
    assert_eq!(help.code, 0, "{help:?}");
    let page = std::fs::read_to_string(repo().join("man/check_jam.1")).expect("check_jam.1");
    assert_eq!(help_flags(&help.stdout), page_item_flags(&page));
}

// ------------------------------------------- the fleet line of the cron example

#[test]
fn the_fleet_cron_example_is_silent_when_all_is_well_and_names_the_worst_otherwise() {
    let dir = TempDir::new("cron-fleet");
    let logged = dir.join("logged");
    let logger = dir.join("logger");
    std::fs::write(
        &logger,
        format!("#!/bin/sh\ncat >> '{}'\n", logged.display()),
    )
    .expect("write logger");
    std::fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let jamc_dir = Path::new(env!("CARGO_BIN_EXE_jamc"))
        .parent()
        .expect("bin dir");
    let path = format!("{}:{}:/usr/bin:/bin", dir.display(), jamc_dir.display());
    let run = |servers: [&FakeServer; 3]| {
        let command = common::cron_example_command("ntp1 ntp2 ntp3")
            .replace("ntp1 ntp2 ntp3", &servers.map(FakeServer::target).join(" "));
        run_bounded(
            Command::new("/bin/sh")
                .args(["-c", &command])
                .env("PATH", &path),
            JAMC_BOUND,
        )
    };
    let (a, b, c) = (offset_server(100), offset_server(-200), offset_server(0));
    let quiet = run([&a, &b, &c]);
    assert_eq!((quiet.code, quiet.stdout.as_str()), (0, ""), "{quiet:?}");
    assert!(!logged.exists(), "an OK fleet logs nothing");

    let far = offset_server(12_300);
    let loud = run([&a, &far, &c]);
    let head = format!(
        "JAM CRITICAL - 1 of 3 servers critical, worst {} offset +12.",
        far.target()
    );
    assert!(loud.stdout.starts_with(&head), "{loud:?}");
    let log = std::fs::read_to_string(&logged).expect("logged");
    assert!(log.starts_with(&head), "{log}");
    assert_eq!(log.lines().count(), 4, "{log}");
}

#[test]
fn several_servers_in_json_and_raw_say_which_server_answered() {
    let a = offset_server(0);
    let b = FakeServer::answering(|_| b"ERROR server busy\r\n".to_vec());
    let run = jamc(&["--json", &a.target(), &b.target()]);
    assert_eq!(run.code, 1, "{run:?}");
    let servers: Vec<String> = run
        .stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v["server"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(servers, [a.target(), b.target()], "{run:?}");
    let run = jamc(&["--raw", &a.target(), &b.target()]);
    assert_eq!(run.code, 1, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{run:?}");
    assert!(
        lines[0].starts_with(&format!("{} JAM ", a.target())),
        "{run:?}"
    );
    assert_eq!(
        lines[1],
        format!("{} ERROR server busy", b.target()),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("server said ERROR server busy"),
        "{run:?}"
    );
}
