//! SPEC 2 checked from outside, against a real jamd on a loopback port.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{jam_time, Jamd};

const BASE: &str = "[time]\ntimezone = \"UTC\"\n";

#[test]
fn time_gets_a_jam_line_with_the_current_utc_time() {
    let jamd = Jamd::start(BASE);
    let mut c = jamd.connect();
    let before = chrono_like_now();
    let reply = c.ask("TIME");
    let after = chrono_like_now();
    let (h, m, s) = jam_time(&reply).unwrap_or_else(|| panic!("not a JAM line: {reply:?}"));
    let shown = h * 3600 + m * 60 + s;
    assert!(
        (before..=after).contains(&shown) || after < before,
        "{reply} not between {before} and {after}"
    );
}

/// Seconds since midnight UTC, from the system clock.
fn chrono_like_now() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (secs % 86_400) as u32
}

#[test]
fn commands_are_case_insensitive_and_blanks_around_them_ignored() {
    let jamd = Jamd::start(BASE);
    let mut c = jamd.connect();
    for req in ["time", "TiMe", "  TIME\t", "\tTIME "] {
        let reply = c.ask(req);
        assert!(jam_time(&reply).is_some(), "{req:?} gave {reply:?}");
    }
}

#[test]
fn a_bare_lf_ends_a_line_too() {
    let jamd = Jamd::start(BASE);
    let mut c = jamd.connect();
    c.send(b"TIME\n");
    assert!(jam_time(&c.line()).is_some());
}

#[test]
fn unknown_commands_get_an_error_and_the_connection_stays() {
    let jamd = Jamd::start(BASE);
    let mut c = jamd.connect();
    assert_eq!(c.ask("HELLO"), "ERROR unknown command");
    assert_eq!(c.ask("TIME NOW"), "ERROR unknown command");
    assert!(jam_time(&c.ask("TIME")).is_some());
}

#[test]
fn invalid_utf8_is_an_unknown_command() {
    let jamd = Jamd::start(BASE);
    let mut c = jamd.connect();
    c.send(b"\xff\xfe\xfd\r\n");
    assert_eq!(c.line(), "ERROR unknown command");
    assert!(jam_time(&c.ask("TIME")).is_some());
}

#[test]
fn empty_lines_get_no_reply() {
    let jamd = Jamd::start(BASE);
    let mut c = jamd.connect();
    c.send(b"\r\n\n \t \r\nTIME\r\n");
    // The first reply is the one to TIME: nothing came for the empty lines.
    assert!(jam_time(&c.line()).is_some());
}

#[test]
fn quit_closes_without_a_reply() {
    let jamd = Jamd::start(BASE);
    let mut c = jamd.connect();
    c.send(b"QUIT\r\n");
    assert_eq!(c.line_raw(), "", "no reply to QUIT, then EOF");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let jamd = Jamd::start(BASE);
    let mut c = jamd.connect();
    c.send(b"TIME\r\nNOPE\r\ntime\nQUIT\r\n");
    assert!(jam_time(&c.line()).is_some());
    assert_eq!(c.line(), "ERROR unknown command");
    assert!(jam_time(&c.line()).is_some());
    assert_eq!(c.line_raw(), "");
}

#[test]
fn a_request_split_over_packets_is_reassembled() {
    let jamd = Jamd::start(BASE);
    let mut c = jamd.connect();
    c.stream.set_nodelay(true).unwrap();
    for piece in [&b"T"[..], b"I", b"M", b"E", b"\r", b"\n"] {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(jam_time(&c.line()).is_some());
}

#[test]
fn a_too_long_line_gets_an_error_and_a_close() {
    let jamd = Jamd::start("[server]\nmax_line_bytes = 16\n");
    let mut c = jamd.connect();
    c.send(&[b'A'; 40]);
    assert_eq!(c.line(), "ERROR line too long");
    assert!(c.closed());
    assert!(jamd
        .stderr
        .wait_for("reason=too_long", Duration::from_secs(5))
        .is_some());
}

#[test]
fn a_line_of_exactly_max_line_bytes_is_accepted() {
    let jamd = Jamd::start("[server]\nmax_line_bytes = 16\n");
    let mut c = jamd.connect();
    let line = format!("{:<16}\r\n", "TIME");
    c.send(line.as_bytes());
    assert!(jam_time(&c.line()).is_some());
    let line = format!("{:<17}\r\n", "TIME");
    c.send(line.as_bytes());
    assert_eq!(c.line(), "ERROR line too long");
}

#[test]
fn too_long_is_detected_without_any_line_end() {
    let jamd = Jamd::start("[server]\nmax_line_bytes = 16\n");
    let mut c = jamd.connect();
    // 17 bytes and no terminator: the server must not wait for one.
    c.send(b"TIMETIMETIMETIMET");
    assert_eq!(c.line(), "ERROR line too long");
    assert!(c.closed());
}

#[test]
fn an_idle_client_gets_an_error_then_close() {
    let jamd = Jamd::start("[server]\nidle_timeout = 1\n");
    let mut c = jamd.connect();
    let start = std::time::Instant::now();
    assert_eq!(c.line(), "ERROR idle timeout");
    assert!(c.closed());
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert!(jamd
        .stderr
        .wait_for("reason=idle", Duration::from_secs(5))
        .is_some());
}

#[test]
fn a_partial_line_does_not_reset_the_idle_timer() {
    let jamd = Jamd::start("[server]\nidle_timeout = 2\n");
    let mut c = jamd.connect();
    // Bytes keep trickling in (for up to 15 s), but no line is ever
    // completed: were the timer reset by them, no timeout would come while
    // they trickle.
    let trickle_for = Duration::from_secs(15);
    let mut w = c.stream.try_clone().unwrap();
    let trickler = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        while start.elapsed() < trickle_for && w.write_all(b"x").is_ok() {
            std::thread::sleep(Duration::from_millis(200));
        }
        start.elapsed()
    });
    assert_eq!(c.line(), "ERROR idle timeout");
    let trickled = trickler.join().unwrap();
    assert!(
        trickled < trickle_for,
        "the timeout came only after the bytes stopped ({trickled:?})"
    );
}

#[test]
fn complete_lines_reset_the_idle_timer() {
    // Four gaps of 1.5 s: 6 s in all, past the 4 s timeout, with 2.5 s of
    // slack in each gap for a loaded machine.
    let jamd = Jamd::start("[server]\nidle_timeout = 4\n");
    let mut c = jamd.connect();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(1500));
        assert!(jam_time(&c.ask("TIME")).is_some());
    }
}

#[test]
fn clients_over_max_connections_are_told_busy_and_closed() {
    let jamd = Jamd::start("[server]\nmax_connections = 2\n");
    let mut a = jamd.connect();
    let mut b = jamd.connect();
    assert!(jam_time(&a.ask("TIME")).is_some());
    assert!(jam_time(&b.ask("TIME")).is_some());
    let mut c = jamd.connect();
    assert_eq!(c.line(), "ERROR server busy");
    assert!(c.closed());
    // Those already connected are still served.
    assert!(jam_time(&a.ask("TIME")).is_some());
    assert!(jamd
        .stderr
        .wait_for("refused 127.0.0.1:", Duration::from_secs(5))
        .is_some_and(|l| l.contains("server busy")));
    // A freed place is given to the next client.
    a.send(b"QUIT\r\n");
    assert!(a.closed());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = jamd.connect();
        let reply = d.ask("TIME");
        if jam_time(&reply).is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "place never freed: {reply}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn max_connections_per_source_limits_one_address() {
    let jamd = Jamd::start("[server]\nmax_connections_per_source = 1\n");
    let mut a = jamd.connect();
    assert!(jam_time(&a.ask("TIME")).is_some());
    let mut b = jamd.connect();
    assert_eq!(b.line(), "ERROR server busy");
    assert!(jam_time(&a.ask("TIME")).is_some());
}

#[test]
fn the_client_closing_without_quit_is_logged_as_eof() {
    let jamd = Jamd::start(BASE);
    {
        let mut c = jamd.connect();
        assert!(jam_time(&c.ask("TIME")).is_some());
        assert_eq!(c.ask("X"), "ERROR unknown command");
    }
    let line = jamd
        .stderr
        .wait_for("reason=eof", Duration::from_secs(5))
        .expect("closed line");
    assert!(line.contains("closed 127.0.0.1:"), "{line}");
    assert!(line.contains("requests=2"), "{line}");
    assert!(line.contains("duration_ms="), "{line}");
}

#[test]
fn sub_second_formats_show_milliseconds() {
    let jamd = Jamd::start("[time]\nformat = \"%H:%M:%S%.3f\"\n");
    let mut c = jamd.connect();
    let a = c.ask("TIME");
    std::thread::sleep(Duration::from_millis(20));
    let b = c.ask("TIME");
    for reply in [&a, &b] {
        let (hms, ms) = reply
            .split_once('.')
            .unwrap_or_else(|| panic!("no milliseconds: {reply}"));
        assert!(jam_time(hms).is_some(), "{reply}");
        assert!(
            ms.len() == 3 && ms.bytes().all(|b| b.is_ascii_digit()),
            "{reply}"
        );
    }
    assert_ne!(a, b, "20 ms apart must differ with millisecond format");
}

#[test]
fn ipv6_loopback_is_served_when_bound() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        skip!("no IPv6 on this host: cannot bind [::1] (an environment gap)");
    }
    let jamd = Jamd::start_with(BASE, &["-b", "::1"]);
    let line = jamd
        .stderr
        .wait_for("listening on [::1]:", Duration::from_secs(5))
        .expect("IPv6 listening line");
    let addr = common::parse_listening(&line).unwrap();
    let mut c = common::Client::connect(addr);
    assert!(jam_time(&c.ask("TIME")).is_some());
    c.send(b"QUIT\r\n");
    assert!(jamd
        .stderr
        .wait_for("connection from [::1]:", Duration::from_secs(5))
        .is_some());
}

/// Seconds since midnight in a zone `offset` seconds east of UTC.
fn now_in(offset: i64) -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (secs + offset).rem_euclid(86_400) as u32
}

fn assert_shows_zone(reply: &str, offset: i64) {
    let (h, m, s) = jam_time(reply).unwrap_or_else(|| panic!("not a JAM line: {reply:?}"));
    let shown = (h * 3600 + m * 60 + s) as i64;
    let expected = now_in(offset) as i64;
    let diff = (shown - expected).rem_euclid(86_400);
    assert!(
        diff <= 2 || diff >= 86_398,
        "{reply} vs {expected} (offset {offset})"
    );
}

#[test]
fn fixed_offset_zones_shift_the_reply() {
    let jamd = Jamd::start("[time]\ntimezone = \"+07:00\"\n");
    assert_shows_zone(&jamd.connect().ask("TIME"), 7 * 3600);
    let jamd = Jamd::start("[time]\ntimezone = \"-03:30\"\n");
    assert_shows_zone(&jamd.connect().ask("TIME"), -(3 * 3600 + 1800));
}

#[test]
fn iana_zone_names_are_honoured() {
    if !std::path::Path::new("/usr/share/zoneinfo/Asia/Jakarta").exists() {
        skip!("no tzdata in /usr/share/zoneinfo (apt-get install tzdata)");
    }
    // Jakarta has had no daylight saving time since 1964: always UTC+7.
    let jamd = Jamd::start("[time]\ntimezone = \"Asia/Jakarta\"\n");
    assert_shows_zone(&jamd.connect().ask("TIME"), 7 * 3600);
}

#[test]
fn local_time_follows_the_tz_variable() {
    if !std::path::Path::new("/usr/share/zoneinfo/Asia/Kolkata").exists() {
        skip!("no tzdata in /usr/share/zoneinfo (apt-get install tzdata)");
    }
    let dir = common::temp_dir("tz");
    let cfg = dir.join("jamd.toml");
    std::fs::write(&cfg, "[time]\ntimezone = \"local\"\n").unwrap();
    let mut cmd = std::process::Command::new(common::JAMD);
    cmd.arg("-c")
        .arg(&cfg)
        .args(["-p", "0", "-b", "127.0.0.1", "--log", "stderr"])
        .env("TZ", "Asia/Kolkata")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let jamd = Jamd::spawn(cmd, dir.clone(), cfg);
    assert_shows_zone(&jamd.connect().ask("TIME"), 5 * 3600 + 1800);
}
