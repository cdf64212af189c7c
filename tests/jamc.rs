//! jamc against an independent JAM server written here (which can lie about the
//! time, answer garbage, stall, close early, or say it is busy), against the
//! real jamd, and the monitoring-plugins `check_tcp` against the real jamd.
//!
//! Loopback only; every wait is bounded; every process is stopped by its handle.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn clock(shift_ms: i64) -> Behaviour {
    Behaviour::Clock {
        shift_ms,
        utc_offset_secs: 0,
        format: "%H:%M:%S",
    }
}

fn is_hms(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 8
        && b[2] == b':'
        && b[5] == b':'
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| b[i].is_ascii_digit())
}

/// A plain jamc run (the case `what`) that must fail: exit 1, nothing on
/// stdout, `says` on stderr.
fn fails_saying(what: &str, args: &[&str], says: &str) -> Run {
    let run = jamc(args);
    assert_eq!(run.code, 1, "{what}: {run:?}");
    assert!(run.stdout.is_empty(), "{what}: {run:?}");
    assert!(run.stderr.contains(says), "{what}: want {says:?}: {run:?}");
    run
}

/// A --check run (the case `what`; `args` hold `--check`) that must exit
/// `code` with one status line starting `starts`.
fn check_says(what: &str, args: &[&str], code: i32, starts: &str) -> Run {
    let run = jamc(args);
    assert_eq!(run.code, code, "{what}: {run:?}");
    let line = check_line(what, &run);
    assert!(line.starts_with(starts), "{what}: want {starts:?}: {run:?}");
    run
}

// ---------------------------------------------------------------- plain use

#[test]
fn plain_query_prints_the_servers_time_and_says_quit() {
    let server = FakeServer::start(clock(0));
    let run = jamc(&[&server.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(is_hms(run.stdout.trim_end()), "{run:?}");
    assert_eq!(run.stdout.lines().count(), 1);
    assert_eq!(server.wait_for_lines(2), ["TIME", "QUIT"]);
}

#[test]
fn port_flag_and_host_port_both_work() {
    let server = FakeServer::start(clock(0));
    let port = server.addr.port().to_string();
    let run = jamc(&["-p", &port, "127.0.0.1"]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = jamc(&["--port", &port, &format!("127.0.0.1:{port}")]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn count_sends_n_time_requests_on_one_connection_then_quit() {
    let server = FakeServer::start(clock(0));
    let run = jamc(&["-n", "3", &server.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout.lines().count(), 3);
    assert!(run.stdout.lines().all(is_hms), "{run:?}");
    assert_eq!(server.wait_for_lines(4), ["TIME", "TIME", "TIME", "QUIT"]);
    assert_eq!(server.connections(), 1);
}

#[test]
fn parallel_prefixes_each_line_with_its_client_and_summarises_on_stderr() {
    let server = FakeServer::start(clock(0));
    let run = jamc(&["-P", "9", "-n", "2", &server.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    let mut clients: Vec<u32> = run
        .stdout
        .lines()
        .map(|l| {
            let (k, time) = l.split_once("] ").expect("[k] prefix");
            assert!(is_hms(time), "{l:?}");
            k.trim_start_matches('[').parse().expect("client number")
        })
        .collect();
    clients.sort_unstable();
    let expected: Vec<u32> = (1..=9).flat_map(|k| [k, k]).collect();
    assert_eq!(clients, expected);
    assert!(run.stderr.contains("9/9 clients ok in "), "{run:?}");
    assert!(run.stderr.trim_end().ends_with(" s"), "{run:?}");
    assert_eq!(server.connections(), 9);
}

#[test]
fn parallel_counts_failed_clients_and_exits_1() {
    let server = FakeServer::start(Behaviour::Reply(b"HELLO\r\n".to_vec()));
    let run = jamc(&["-P", "3", &server.target()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("0/3 clients ok in "), "{run:?}");
    assert!(run.stderr.contains("jamc: [2] "), "{run:?}");
}

#[test]
fn raw_prints_whole_reply_lines_with_control_characters_escaped() {
    let server = FakeServer::start(Behaviour::Reply(b"JAM 12:34:56 and more\r\n".to_vec()));
    let run = jamc(&["--raw", "-n", "2", &server.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "JAM 12:34:56 and more\nJAM 12:34:56 and more\n");

    // jamc(1), SECURITY: not even --raw lets a server drive the terminal.
    let garbage = FakeServer::start(Behaviour::Reply(b"HELLO\tthere \x1b[2J | x\r\n".to_vec()));
    let run = jamc(&["--raw", &garbage.target()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stdout, "HELLO\\x09there \\x1b[2J \\| x\n");
}

#[test]
fn json_prints_one_object_per_reply_in_the_documented_shape() {
    let server = FakeServer::start(clock(0));
    let run = jamc(&["--json", "-n", "2", &server.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2);
    let prefix = format!(
        "{{\"client\":1,\"server\":\"{}\",\"reply\":\"JAM ",
        server.target()
    );
    for line in lines {
        assert!(line.starts_with(&prefix), "{line}");
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
        let time = v["time"].as_str().expect("time");
        assert!(is_hms(time));
        assert_eq!(v["reply"].as_str(), Some(format!("JAM {time}").as_str()));
        let rtt = v["rtt_ms"].as_f64().expect("rtt_ms");
        assert!((0.0..5000.0).contains(&rtt), "{rtt}");
        let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
        assert_eq!(keys.len(), 5);
    }
}

#[test]
fn json_shows_a_reply_that_is_not_a_jam_line_with_a_null_time() {
    let server = FakeServer::start(Behaviour::Reply(b"ERROR unknown command\r\n".to_vec()));
    let run = jamc(&["--json", &server.target()]);
    assert_eq!(run.code, 1, "{run:?}");
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("JSON");
    assert_eq!(v["reply"], "ERROR unknown command");
    assert!(v["time"].is_null());
}

// ---------------------------------------------------------------- failures

/// Servers jamc cannot use: what a plain run says on stderr (exit 1), and how
/// a --check run ends (exit code, start of its one line, which says the same).
#[test]
fn a_server_jamc_cannot_use_is_reported_in_words() {
    let mut long = b"JAM ".to_vec();
    long.extend_from_slice(&[b'9'; 2000]);
    long.extend_from_slice(b"\r\n");
    for (what, behaviour, says, check_code, check_starts) in [
        (
            "garbage",
            Behaviour::Reply(b"HELLO WORLD\r\n".to_vec()),
            "reply is not a JAM line: \"HELLO WORLD\"",
            2,
            "JAM CRITICAL - ",
        ),
        (
            "busy",
            Behaviour::GreetAndClose(b"ERROR server busy\r\n".to_vec()),
            "server said ERROR server busy",
            2,
            "JAM CRITICAL - ",
        ),
        (
            "closing before replying",
            Behaviour::ReplyAndClose(Vec::new()),
            "server closed the connection before replying",
            2,
            "JAM CRITICAL - ",
        ),
        (
            "unterminated",
            Behaviour::ReplyAndClose(b"JAM 12:00:00".to_vec()),
            "reply not terminated",
            2,
            "JAM CRITICAL - ",
        ),
        // Reported without reading it all, endless or terminated.
        (
            "endless",
            Behaviour::Reply(vec![b'x'; 100_000]),
            "reply longer than 1024 bytes",
            2,
            "JAM CRITICAL - ",
        ),
        (
            "over-long line",
            Behaviour::Reply(long),
            "reply longer than 1024 bytes",
            2,
            "JAM CRITICAL - ",
        ),
    ] {
        let server = FakeServer::start(behaviour);
        fails_saying(what, &[&server.target()], says);
        let run = check_says(
            what,
            &["--check", &server.target()],
            check_code,
            check_starts,
        );
        // The check line names the failure in the same words.
        assert!(run.stdout.contains(says), "{what}: want {says:?}: {run:?}");
    }
}

#[test]
fn stalled_server_times_out_within_the_timeout() {
    let server = FakeServer::start(Behaviour::Stall);
    let run = fails_saying(
        "stalled server",
        &["-w", "1", &server.target()],
        "timed out waiting for a reply",
    );
    assert!(run.took < Duration::from_secs(4), "{run:?}");
    let run = check_says(
        "stalled server",
        &["--check", "--timeout", "0.5", &server.target()],
        2,
        "JAM CRITICAL - timed out waiting",
    );
    assert!(run.took < Duration::from_secs(3), "{run:?}");
}

#[test]
fn stalled_connect_times_out_within_the_timeout() {
    // A listener that never accepts, with its backlog filled: Linux drops further
    // SYNs, so a new connect hangs until the client gives up.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    socket.bind(&addr.into()).expect("bind");
    socket.listen(0).expect("listen");
    let addr = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("local addr");
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(s);
        }
    }
    if TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok() {
        skip!("this kernel does not drop SYNs to a full backlog (an environment gap)");
    }
    let run = fails_saying(
        "stalled connect",
        &["-w", "1", &addr.to_string()],
        "timed out connecting to",
    );
    assert!(run.took < Duration::from_secs(4), "{run:?}");
    check_says(
        "stalled connect",
        &["--check", "-w", "1", &addr.to_string()],
        2,
        "JAM CRITICAL - timed out connecting",
    );
}

#[test]
fn refused_connection_is_reported() {
    let (port, _reserved) = closed_port();
    let target = format!("127.0.0.1:{port}");
    let run = fails_saying("refused", &[&target], "connection refused");
    assert_eq!(
        run.stderr.trim(),
        format!("jamc: cannot connect to {target}: connection refused")
    );
    let run = check_says("refused", &["--check", &target], 2, "JAM CRITICAL - ");
    assert_eq!(
        run.stdout.trim(),
        format!("JAM CRITICAL - cannot connect to {target}: connection refused")
    );
}

#[test]
fn bad_command_line_exits_2_or_3_with_check() {
    for args in [
        &["--count", "0"][..],
        &["-w", "-1"],
        &["--timeout", "soon"],
        &["-P", "0"],
        &["--warning", "3"],
        &["127.0.0.1:99999"],
        &["-6", "127.0.0.1"],
        &["--raw", "--json"],
        &["--no-such-flag"],
    ] {
        let run = jamc(args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
        assert!(run.stderr.starts_with("error: "), "{args:?}: {run:?}");
    }
    for args in [
        &["--check", "--warning", "x"][..],
        &["--check", "--critical", "-5"],
        &["--check", "--timezone", "Nowhere/Land"],
        &["--check", "--timezone=+25:00"],
        &["--check", "--format", "%H:%Q"],
        &["--check", "-P", "2"],
        &["--check", "--json"],
        &["--check", "--no-such-flag"],
    ] {
        let run = jamc(args);
        assert_eq!(run.code, 3, "{args:?}: {run:?}");
        assert!(
            run.stdout.starts_with("JAM UNKNOWN - "),
            "{args:?}: {run:?}"
        );
        assert_eq!(run.stdout.lines().count(), 1, "{args:?}: {run:?}");
    }
    let run = jamc(&["--help"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("--timezone"));
}

// ---------------------------------------------------------------- addresses

#[test]
fn addresses_are_tried_one_by_one_until_one_answers() {
    let server = FakeServer::start(clock(0));
    let (dead_port, _reserved) = closed_port();
    let dead: SocketAddr = format!("127.0.0.1:{dead_port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(5);
    let stream = jamd::client::connect(
        "test",
        &[dead, server.addr],
        deadline,
        Duration::from_secs(5),
    )
    .expect("second address answers");
    assert_eq!(stream.peer_addr().ok(), Some(server.addr));
    let err = jamd::client::connect("test", &[dead, dead], deadline, Duration::from_secs(5))
        .expect_err("nothing answers");
    assert_eq!(
        err.to_string(),
        format!("cannot connect to test: {dead} connection refused; {dead} connection refused")
    );
}

fn localhost_addrs(port: u16) -> Vec<SocketAddr> {
    ("localhost", port)
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default()
}

#[test]
fn localhost_works_whichever_family_the_server_listens_on() {
    let v4 = FakeServer::start(clock(0));
    let port = v4.addr.port().to_string();
    let run = jamc(&[&format!("localhost:{port}")]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = jamc(&["-4", "-p", &port, "localhost"]);
    assert_eq!(run.code, 0, "{run:?}");

    let Some(v6) = FakeServer::start_on("[::1]:0", clock(0)) else {
        skip!("no IPv6 on this host: cannot bind [::1] (an environment gap; the IPv4 half passed)");
    };
    let target = format!("[::1]:{}", v6.addr.port());
    let run = jamc(&[&target]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = jamc(&["-6", &target]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = jamc(&["::1", "-p", &v6.addr.port().to_string()]);
    assert_eq!(run.code, 0, "{run:?}");

    let localhost = localhost_addrs(v6.addr.port());
    if localhost.iter().any(SocketAddr::is_ipv6) && localhost.iter().any(SocketAddr::is_ipv4) {
        // Only [::1] listens: jamc must get past a refused 127.0.0.1 (or start with ::1).
        let run = jamc(&[&format!("localhost:{}", v6.addr.port())]);
        assert_eq!(run.code, 0, "{run:?}");
    } else if localhost.iter().any(SocketAddr::is_ipv6) {
        // localhost is ::1 only here: -6 reaches the server.
        let run = jamc(&["-6", &format!("localhost:{}", v6.addr.port())]);
        assert_eq!(run.code, 0, "{run:?}");
    } else {
        // localhost has no IPv6 address here: -6 says so.
        let run = jamc(&["-6", &format!("localhost:{}", v6.addr.port())]);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.stderr.contains("has no IPv6 address"), "{run:?}");
    }
}

// ---------------------------------------------------------------- --check

/// How far a reading of a server that shows whole seconds can be off.
const WHOLE_SECONDS: f64 = 0.5;
/// The same for a server that shows milliseconds.
const MILLISECONDS: f64 = 0.001;

/// The offset jamc reports must be `expected` within what one reading can
/// know: the server's resolution plus half the round trip (`time=`, which
/// grows on a loaded machine), plus 50 ms for the fake server's own latency.
fn assert_offset_near(line: &str, expected: f64, resolution: f64) {
    let offset = perf_offset(line);
    let rtt = perf_value(line, "time=");
    let bound = resolution + rtt / 2.0 + 0.05;
    assert!(
        (offset - expected).abs() <= bound,
        "offset {offset} is not within {bound:.3} s of {expected}: {line}"
    );
}

/// The one status line of a --check run (the case `what`).
fn check_line<'a>(what: &str, run: &'a Run) -> &'a str {
    assert_eq!(
        run.stdout.lines().count(),
        1,
        "{what}: one status line: {run:?}"
    );
    run.stdout.trim_end()
}

/// A --check run (the case `what`) that must exit `code` with one line
/// starting `starts` and an offset `expected` within what one reading at
/// `resolution` can know; the line, also shown on stderr.
fn check_reads(
    what: &str,
    args: &[&str],
    (code, starts): (i32, &str),
    expected: f64,
    resolution: f64,
) -> String {
    let run = jamc(args);
    let line = check_line(what, &run).to_owned();
    eprintln!("{what}: {line}");
    assert_eq!(run.code, code, "{what}: {run:?}");
    assert!(line.starts_with(starts), "{what}: want {starts:?}: {line}");
    assert_offset_near(&line, expected, resolution);
    line
}

#[test]
fn check_is_ok_for_an_honest_server() {
    let server = FakeServer::start(clock(0));
    let line = check_reads(
        "honest server",
        &["--check", "--timezone=+00:00", &server.target()],
        (0, "JAM OK - offset "),
        0.0,
        WHOLE_SECONDS,
    );
    assert!(
        line.contains(&format!(" s from {} | offset=", server.target())),
        "{line}"
    );
    assert!(line.contains("s;2;10 time="), "{line}");
}

#[test]
fn check_warns_for_a_server_5_s_ahead() {
    let server = FakeServer::start(clock(5_000));
    check_reads(
        "5 s ahead",
        &["--check", "--timezone=+00:00", &server.target()],
        (1, "JAM WARNING - offset +"),
        5.0,
        WHOLE_SECONDS,
    );
}

#[test]
fn check_is_critical_for_a_server_60_s_behind() {
    let server = FakeServer::start(clock(-60_000));
    check_reads(
        "60 s behind",
        &["--check", "--timezone=+00:00", &server.target()],
        (2, "JAM CRITICAL - offset -"),
        -60.0,
        WHOLE_SECONDS,
    );
}

#[test]
fn check_thresholds_are_taken_from_the_command_line() {
    let server = FakeServer::start(clock(60_000));
    let args = [
        "--check",
        "--timezone=UTC",
        "--warning",
        "30",
        "--critical=90",
        &server.target(),
    ];
    let line = check_reads(
        "60 s ahead, 30/90",
        &args,
        (1, "JAM WARNING - offset +"),
        60.0,
        WHOLE_SECONDS,
    );
    assert!(line.contains("s;30;90 time="), "{line}");
}

#[test]
fn check_reads_fractional_seconds_when_present() {
    let server = FakeServer::start(Behaviour::Clock {
        shift_ms: 5_000,
        utc_offset_secs: 0,
        format: "%H:%M:%S%.3f",
    });
    // The default --format has no fraction: it is read anyway, for a tighter offset.
    check_reads(
        "5 s ahead, with milliseconds",
        &["--check", "--timezone=+00:00", "-n", "3", &server.target()],
        (1, "JAM WARNING - offset +"),
        5.0,
        MILLISECONDS,
    );
}

#[test]
fn check_understands_a_zone_and_another_format() {
    // The server shows 12-hour time at +07:00.
    let server = FakeServer::start(Behaviour::Clock {
        shift_ms: 0,
        utc_offset_secs: 7 * 3600,
        format: "%I:%M:%S %p",
    });
    let format = ["--format", "%I:%M:%S %p"];
    let args = [
        &["--check", "--timezone", "+07:00"][..],
        &format,
        &[&server.target()],
    ];
    check_reads(
        "12-hour time at +07:00",
        &args.concat(),
        (0, "JAM OK - offset "),
        0.0,
        WHOLE_SECONDS,
    );
    // Read as UTC instead, the same replies are 7 h ahead.
    let args = [
        &["--check", "--timezone=UTC"][..],
        &format,
        &[&server.target()],
    ];
    check_reads(
        "12-hour time at +07:00 read as UTC",
        &args.concat(),
        (2, "JAM CRITICAL - offset +"),
        25_200.0,
        WHOLE_SECONDS,
    );
}

#[test]
fn check_says_unknown_for_a_time_it_cannot_read() {
    let server = FakeServer::start(Behaviour::Reply(b"JAM tea time\r\n".to_vec()));
    let run = jamc(&["--check", &server.target()]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        check_line("tea time", &run).starts_with("JAM UNKNOWN - "),
        "{run:?}"
    );
    assert!(run.stdout.contains("cannot read \"tea time\""), "{run:?}");
    // Plain use only wants a JAM line.
    let run = jamc(&[&server.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "tea time\n");
}

/// Puts the wall clock at `wall_secs` after midnight with a fixed
/// --timezone, runs a server `shift_ms` away, and checks that the offset
/// read is that shift (OK at thresholds of 200/300 s).
fn check_across_midnight(wall_secs: i64, shift_ms: i64, what: &str) {
    let (offset, zone) = zone_putting_wall_clock_at(wall_secs);
    let server = FakeServer::start(Behaviour::Clock {
        shift_ms,
        utc_offset_secs: offset,
        format: "%H:%M:%S",
    });
    check_reads(
        &format!("across midnight, {what} (zone {zone})"),
        &[
            "--check",
            &format!("--timezone={zone}"),
            "--warning=200",
            "--critical=300",
            &server.target(),
        ],
        (0, "JAM OK - offset "),
        shift_ms as f64 / 1000.0,
        WHOLE_SECONDS,
    );
}

/// The wall clock is put just before midnight; the server, 150 s ahead, is
/// already in the next day.
#[test]
fn check_wraps_forward_across_midnight() {
    check_across_midnight(23 * 3600 + 58 * 60, 150_000, "ahead");
}

/// The wall clock is put just after midnight; the server, 150 s behind, is
/// still in the previous day.
#[test]
fn check_wraps_backward_across_midnight() {
    check_across_midnight(60, -150_000, "behind");
}

// ---------------------------------------------------------------- real jamd

const JAMD_CONFIG: &str = "[log]\nlevel = \"info\"\n";

#[test]
fn real_jamd_answers_plain_count_and_parallel_queries() {
    let jamd = Jamd::start(JAMD_CONFIG);
    let run = jamc(&[&jamd.target()]);
    assert_eq!(run.code, 0, "{run:?} {:?}", jamd.log());
    assert!(is_hms(run.stdout.trim_end()), "{run:?}");

    let run = jamc(&["-n", "3", &jamd.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout.lines().filter(|l| is_hms(l)).count(),
        3,
        "{run:?}"
    );

    let run = jamc(&["-P", "9", "-n", "2", &jamd.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout.lines().count(), 18, "{run:?}");
    assert!(run.stderr.contains("9/9 clients ok in "), "{run:?}");

    let run = jamc(&["-p", &jamd.port.to_string(), "localhost"]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn real_jamd_json_and_raw() {
    let jamd = Jamd::start(JAMD_CONFIG);
    let run = jamc(&["--json", &jamd.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("JSON");
    assert_eq!(v["client"], 1);
    assert_eq!(v["server"], jamd.target());
    assert!(
        v["reply"].as_str().is_some_and(|r| r.starts_with("JAM ")),
        "{v}"
    );
    let run = jamc(&["--raw", &jamd.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("JAM "), "{run:?}");
}

#[test]
fn real_jamd_check_is_ok() {
    let jamd = Jamd::start(JAMD_CONFIG);
    check_reads(
        "real jamd",
        &["--check", &jamd.target()],
        (0, "JAM OK - offset "),
        0.0,
        WHOLE_SECONDS,
    );
}

#[test]
fn real_jamd_check_with_milliseconds_and_a_named_zone() {
    if !std::path::Path::new("/usr/share/zoneinfo/Asia/Jakarta").exists() {
        skip!("no tzdata: /usr/share/zoneinfo/Asia/Jakarta is missing (apt-get install tzdata)");
    }
    let jamd = Jamd::start("[time]\nformat = \"%H:%M:%S%.3f\"\ntimezone = \"Asia/Jakarta\"\n");
    check_reads(
        "real jamd, ms, Asia/Jakarta",
        &[
            "--check",
            "--timezone",
            "Asia/Jakarta",
            "-n",
            "3",
            &jamd.target(),
        ],
        (0, "JAM OK - offset "),
        0.0,
        MILLISECONDS,
    );
}

#[test]
fn real_jamd_busy_is_said_in_words() {
    let jamd = Jamd::start("[server]\nmax_connections = 1\n");
    // Hold the one slot, and make sure jamd has really taken this connection.
    let mut holder = TcpStream::connect(jamd.target()).expect("connect");
    holder
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    holder.write_all(b"TIME\r\n").expect("write");
    let mut line = String::new();
    BufReader::new(&holder).read_line(&mut line).expect("reply");
    assert!(line.starts_with("JAM "), "{line:?}");

    fails_saying("busy", &[&jamd.target()], "server said ERROR server busy");
    check_says("busy", &["--check", &jamd.target()], 2, "JAM CRITICAL - ");
    drop(holder);
}

// ---------------------------------------------------------------- check_tcp

const CHECK_TCP: &str = "/usr/lib/nagios/plugins/check_tcp";

/// Probes 127.0.0.1:`port` the way the README shows: TIME, expect "JAM ", QUIT.
fn check_tcp(port: &str) -> Run {
    run_bounded(
        Command::new(CHECK_TCP).args([
            "-H",
            "127.0.0.1",
            "-p",
            port,
            "-E",
            "-s",
            "TIME\\r\\n",
            "-e",
            "JAM ",
            "-q",
            "QUIT\\r\\n",
            "-t",
            "10",
        ]),
        Duration::from_secs(20),
    )
}

#[test]
fn monitoring_plugins_check_tcp_probes_real_jamd() {
    if !std::path::Path::new(CHECK_TCP).exists() {
        skip!("{CHECK_TCP} is not installed (apt-get install monitoring-plugins-basic)");
    }
    let jamd = Jamd::start(JAMD_CONFIG);
    let port = jamd.port.to_string();
    let run = check_tcp(&port);
    eprintln!("check_tcp: {}", run.stdout.trim());
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("TCP OK"), "{run:?}");

    // And it notices a server that does not speak JAM.
    let liar = FakeServer::start(Behaviour::Reply(b"HELLO\r\n".to_vec()));
    let run = check_tcp(&liar.addr.port().to_string());
    assert_ne!(run.code, 0, "{run:?}");
}

/// Parses `offset=5.123s` out of a --check line.
fn perf_offset(line: &str) -> f64 {
    perf_value(line, "offset=")
}

/// Parses the seconds of a `KEY=5.123s` performance datum of a --check line.
fn perf_value(line: &str, key: &str) -> f64 {
    let v = line
        .split(key)
        .nth(1)
        .and_then(|r| r.split('s').next())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"));
    v.parse()
        .unwrap_or_else(|_| panic!("bad {key} in {line:?}"))
}

/// A fixed UTC offset (whole minutes, within ±12 h) that puts the wall clock `now` into
/// `[target_secs, target_secs + 60)` after midnight, and the `--timezone` spelling of it.
fn zone_putting_wall_clock_at(target_secs: i64) -> (i32, String) {
    let sod = chrono::Utc::now().timestamp().rem_euclid(86_400);
    // Smallest whole-minute offset with sod + offset >= target (mod a day).
    let mut offset = (target_secs - sod).rem_euclid(86_400);
    offset = (offset + 59) / 60 * 60;
    if offset > 43_200 {
        offset -= 86_400;
    }
    let offset = i32::try_from(offset).expect("offset fits");
    let abs = offset.unsigned_abs();
    let sign = if offset < 0 { '-' } else { '+' };
    (
        offset,
        format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60),
    )
}
