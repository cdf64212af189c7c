//! The JAM protocol (jamd(8), The JAM protocol) checked from outside, against
//! a real jamd on a loopback port (who is refused and when a slot comes back:
//! tests/admission.rs).

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use common::{jam_time, tcp_queues, wait_until, Jamd};

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

/// The first line jamd logs (within 5 s) that contains `needle`; a failure
/// shows all it logged.
fn logged(jamd: &Jamd, needle: &str) -> String {
    jamd.stderr
        .wait_for(needle, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no log line with {needle:?}: {:?}", jamd.stderr.all()))
}

/// What must come back on a connection, in order.
#[derive(Clone, Copy, Debug)]
enum Back {
    /// A `JAM hh:mm:ss` line.
    Jam,
    /// This line exactly (and CR LF after it).
    Line(&'static str),
    /// End of stream with nothing before it (no reply, then a clean close).
    Eof,
    /// Closed, by EOF or reset, with nothing more sent.
    Closed,
}

/// One step of a conversation: bytes sent, then the replies they must get.
type Step = (&'static [u8], &'static [Back]);

const UNKNOWN: Back = Back::Line("ERROR unknown command");
const TOO_LONG: Back = Back::Line("ERROR line too long");

/// Holds each named conversation with `jamd`, each on a fresh connection,
/// step by step; a failure names the conversation and the reply. Returns
/// each conversation's client address, in order (jamd's `closed ADDR` line
/// for it names that address).
fn converse(jamd: &Jamd, conversations: &[(&str, &[Step])]) -> Vec<SocketAddr> {
    let mut clients = Vec::new();
    for (what, steps) in conversations {
        let mut c = jamd.connect();
        clients.push(c.stream.local_addr().unwrap());
        for (sent, replies) in *steps {
            c.send(sent);
            for want in *replies {
                let why = format!("{what}: after {sent:?}, want {want:?}");
                match want {
                    Back::Jam => {
                        let line = c.line();
                        assert!(jam_time(&line).is_some(), "{why}, got {line:?}");
                    }
                    Back::Line(text) => assert_eq!(c.line(), *text, "{why}"),
                    Back::Eof => assert_eq!(c.line_raw(), "", "{why}"),
                    Back::Closed => assert!(c.closed(), "{why}"),
                }
            }
        }
    }
    clients
}

#[test]
fn requests_get_their_replies_line_by_line() {
    use Back::{Eof, Jam};
    let jamd = Jamd::start(BASE);
    converse(
        &jamd,
        &[
            (
                "commands are case-insensitive and blanks around them ignored",
                &[
                    (b"time\r\n", &[Jam]),
                    (b"TiMe\r\n", &[Jam]),
                    (b"  TIME\t\r\n", &[Jam]),
                    (b"\tTIME \r\n", &[Jam]),
                ],
            ),
            ("a bare LF ends a line too", &[(b"TIME\n", &[Jam])]),
            (
                "unknown commands get an error and the connection stays",
                &[
                    (b"HELLO\r\n", &[UNKNOWN]),
                    (b"TIME NOW\r\n", &[UNKNOWN]),
                    (b"TIME\r\n", &[Jam]),
                ],
            ),
            (
                "invalid UTF-8 is an unknown command",
                &[(b"\xff\xfe\xfd\r\n", &[UNKNOWN]), (b"TIME\r\n", &[Jam])],
            ),
            // The first reply is the one to TIME: nothing came for the empty lines.
            (
                "empty lines get no reply",
                &[(b"\r\n\n \t \r\nTIME\r\n", &[Jam])],
            ),
            ("QUIT closes without a reply", &[(b"QUIT\r\n", &[Eof])]),
            (
                "pipelined requests are answered in order",
                &[(b"TIME\r\nNOPE\r\ntime\nQUIT\r\n", &[Jam, UNKNOWN, Jam, Eof])],
            ),
        ],
    );
}

#[test]
fn a_request_split_over_packets_is_reassembled() {
    let jamd = Jamd::start(BASE);
    let mut c = jamd.connect();
    c.stream.set_nodelay(true).unwrap();
    let (client, server) = (c.stream.local_addr().unwrap(), jamd.addr);
    for piece in [&b"T"[..], b"I", b"M", b"E", b"\r", b"\n"] {
        c.send(piece);
        // jamd reads each piece before the next is sent: a read of its own.
        let what = format!("jamd to read {piece:?}");
        wait_until(&what, Duration::from_secs(10), || {
            match tcp_queues(client, server) {
                Some((0, 0)) => Ok(()),
                other => Err(other),
            }
        });
    }
    assert!(jam_time(&c.line()).is_some());
}

#[test]
fn lines_longer_than_max_line_bytes_get_an_error_and_a_close() {
    use Back::{Closed, Jam};
    let jamd = Jamd::start("[server]\nmax_line_bytes = 16\n");
    let conversations: &[(&str, &[Step])] = &[
        ("a too long line", &[(&[b'A'; 40], &[TOO_LONG, Closed])]),
        (
            "a line of exactly max_line_bytes is accepted, one more is not",
            &[
                (b"TIME            \r\n", &[Jam]),
                (b"TIME             \r\n", &[TOO_LONG, Closed]),
            ],
        ),
        // 17 bytes and no terminator: the server must not wait for one.
        (
            "too long is detected without any line end",
            &[(b"TIMETIMETIMETIMET", &[TOO_LONG, Closed])],
        ),
    ];
    let clients = converse(&jamd, conversations);
    // Each of these connections is logged as closed for its too-long line.
    for ((what, _), client) in conversations.iter().zip(clients) {
        let needle = format!("closed {client} ");
        let line = jamd
            .stderr
            .wait_for(&needle, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{what}: no {needle:?} line: {:?}", jamd.stderr.all()));
        assert!(line.ends_with(" reason=too_long"), "{what}: {line}");
    }
}

#[test]
fn an_idle_client_gets_an_error_then_close() {
    let jamd = Jamd::start("[server]\nidle_timeout = 1\n");
    let mut c = jamd.connect();
    let start = std::time::Instant::now();
    assert_eq!(c.line(), "ERROR idle timeout");
    assert!(c.closed());
    assert!(start.elapsed() >= Duration::from_millis(900));
    logged(&jamd, "reason=idle");
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
        // Time has to pass: the test shows a timeout that does not come.
        std::thread::sleep(Duration::from_millis(1500));
        assert!(jam_time(&c.ask("TIME")).is_some());
    }
}

#[test]
fn the_client_closing_without_quit_is_logged_as_eof() {
    let jamd = Jamd::start(BASE);
    {
        let mut c = jamd.connect();
        assert!(jam_time(&c.ask("TIME")).is_some());
        assert_eq!(c.ask("X"), "ERROR unknown command");
    }
    let line = logged(&jamd, "reason=eof");
    assert!(line.contains("closed 127.0.0.1:"), "{line}");
    assert!(line.contains("requests=2"), "{line}");
    assert!(line.contains("duration_ms="), "{line}");
}

#[test]
fn sub_second_formats_show_milliseconds() {
    let jamd = Jamd::start("[time]\nformat = \"%H:%M:%S%.3f\"\n");
    let mut c = jamd.connect();
    let a = c.ask("TIME");
    // The clock has to move for the two replies to differ: no event shows it.
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
    let line = logged(&jamd, "listening on [::1]:");
    let addr = common::parse_listening(&line).unwrap();
    let mut c = common::Client::connect(addr);
    assert!(jam_time(&c.ask("TIME")).is_some());
    c.send(b"QUIT\r\n");
    logged(&jamd, "connection from [::1]:");
}

/// Seconds since midnight in a zone `offset` seconds east of UTC.
fn now_in(offset: i64) -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let secs = i64::try_from(secs).unwrap();
    u32::try_from((secs + offset).rem_euclid(86_400)).unwrap()
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
