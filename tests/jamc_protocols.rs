//! jamc over every simple time protocol (jamc(1), OTHER PROTOCOLS and How
//! the offset is measured): Python servers with exactly known clocks
//! (tests/data/timeserver.py: daytime and RFC 868, TCP and UDP, whole
//! seconds and milliseconds, a clock that steps), a delaying relay for slow
//! and asymmetric links, the RFC 868 era wrap under faketime, xinetd's
//! built-in services, and node_exporter reading `--textfile`.
//!
//! Loopback only; every wait is bounded; every process is stopped by its pid.

mod common;

use common::relay::Relay;
use common::supervisor::{packaged_daemon, Supervisor};
use common::{
    first_line, free_port, jamc, perf, repo, require_tool, run_bounded, ChildGuard, FakeServer,
    Lines, Run, TempDir, JAMC_BOUND,
};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A timeserver.py: its port, and the readings it answered.
struct TimeServer {
    _child: ChildGuard,
    lines: Lines,
    port: u16,
}

impl TimeServer {
    /// Starts `timeserver.py PROTO TRANSPORT OFFSET FORM [STEP_AFTER STEP]`;
    /// None (a skip) without python3.
    fn start(
        proto: &str,
        transport: &str,
        offset: f64,
        form: &str,
        step: Option<(usize, f64)>,
    ) -> Option<TimeServer> {
        let python = require_tool("python3")?;
        let mut cmd = Command::new(python);
        cmd.arg(repo().join("tests/data/timeserver.py"))
            .args([proto, transport, &offset.to_string(), form])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some((after, by)) = step {
            cmd.args([after.to_string(), by.to_string()]);
        }
        let mut child = ChildGuard::spawn(&mut cmd);
        let lines = Lines::collect(child.0.stdout.take().expect("stdout"));
        let first = lines
            .wait_for("port ", Duration::from_secs(10))
            .expect("timeserver.py says its port");
        let port = first["port ".len()..].trim().parse().expect("a port");
        Some(TimeServer {
            _child: child,
            lines,
            port,
        })
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        self.target().parse().expect("addr")
    }

    /// Readings answered so far.
    fn readings(&self) -> usize {
        self.lines.count("reading ")
    }

    /// The gaps between the readings answered so far, in seconds.
    fn reading_gaps(&self) -> Vec<f64> {
        let times: Vec<f64> = self
            .lines
            .all()
            .iter()
            .filter(|l| l.starts_with("reading "))
            .filter_map(|l| l.rsplit(" at ").next()?.trim().parse().ok())
            .collect();
        times.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

/// `jamc --check` with `args` (the server last): exit 0, and (offset, uncertainty).
fn check(args: &[&str]) -> (f64, f64, Run) {
    let mut all = vec![
        "--check",
        "--warning",
        "50",
        "--critical",
        "100",
        "--timezone",
        "UTC",
    ];
    all.extend_from_slice(args);
    let run = jamc(&all);
    assert_eq!(run.code, 0, "{run:?}");
    let line = first_line(&run).to_string();
    (perf(&line, "offset"), perf(&line, "uncertainty"), run)
}

/// A delaying relay in front of `server`, over its transport (`tcp` or
/// `udp`), `up` on the way to it and `down` on the way back.
fn behind_relay(server: &TimeServer, transport: &str, up: Duration, down: Duration) -> Relay {
    if transport == "udp" {
        Relay::udp(server.addr(), up, down)
    } else {
        Relay::tcp(server.addr(), up, down)
    }
}

/// The arguments that read `proto` over `transport` at `target`.
fn reading_args<'a>(proto: &'a str, transport: &str, target: &'a str) -> Vec<&'a str> {
    let mut args = vec!["--protocol", proto];
    if transport == "udp" {
        args.push("--udp");
    }
    args.push(target);
    args
}

/// Asserts the truth lies within the reported uncertainty (1 ms for the printed rounding).
fn assert_holds(offset: f64, uncertainty: f64, truth: f64, run: &Run) {
    assert!(
        (offset - truth).abs() <= uncertainty + 0.001,
        "truth {truth} not within {offset} ± {uncertainty}: {run:?}"
    );
}

// ------------------------------------------------------------- plain mode

#[test]
fn plain_mode_prints_the_daytime_line_and_the_rfc868_time() {
    for transport in ["tcp", "udp"] {
        let Some(day) = TimeServer::start("daytime", transport, 0.0, "xinetd", None) else {
            return;
        };
        let target = day.target();
        let run = jamc(&reading_args("daytime", transport, &target));
        assert_eq!(run.code, 0, "{run:?}");
        let line = run.stdout.trim_end();
        assert!(
            line.ends_with(" UTC") && line.len() == "04 DEC 2026 04:12:30 UTC".len(),
            "{run:?}"
        );

        let Some(time) = TimeServer::start("rfc868", transport, 0.0, "whole", None) else {
            return;
        };
        let target = time.target();
        let mut args = vec!["--protocol", "rfc868", "-n", "2"];
        if transport == "udp" {
            args.push("--udp");
        }
        args.push(&target);
        let run = jamc(&args);
        assert_eq!(run.code, 0, "{run:?}");
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{run:?}");
        for line in lines {
            let shown =
                chrono::DateTime::parse_from_rfc3339(line).unwrap_or_else(|_| panic!("{line:?}"));
            assert!(line.ends_with('Z'), "{line:?}");
            let off = (shown.timestamp() - chrono::Utc::now().timestamp()).abs();
            assert!(off <= 2, "{line} is not now");
        }
        assert_eq!(time.readings(), 2, "one connection or datagram each");

        // --raw: the value; --json: the protocol, the value and the time.
        let udp: &[&str] = if transport == "udp" { &["--udp"] } else { &[] };
        let mut args = vec!["--protocol", "rfc868", "--raw"];
        args.extend_from_slice(udp);
        args.push(&target);
        let run = jamc(&args);
        let value: u64 = run
            .stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{run:?}"));
        assert!(value > 3_900_000_000, "{run:?}");
        args[2] = "--json";
        let run = jamc(&args);
        let json: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("json");
        assert_eq!(json["protocol"], "rfc868", "{run:?}");
        assert!(
            json["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{run:?}"
        );
    }
}

#[test]
fn a_daytime_line_is_escaped() {
    let server = FakeServer::start(common::Behaviour::GreetAndClose(
        b"\x1b[2J04:12:30 | offset=0s\r\n".to_vec(),
    ));
    let run = jamc(&["--protocol", "daytime", &server.target()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "\\x1b[2J04:12:30 \\| offset=0s\n");
}

#[test]
fn a_partial_reply_is_shown_when_the_wait_ends() {
    let server = FakeServer::start(common::Behaviour::Reply(b"JAM 04:50:54".to_vec()));
    for extra in [&[][..], &["--raw"], &["--json"], &["--check"]] {
        let mut args = vec!["-w", "0.5"];
        args.extend_from_slice(extra);
        let target = server.target();
        args.push(&target);
        let run = jamc(&args);
        assert_ne!(run.code, 0, "{run:?}");
        let said = format!("{}{}", run.stdout, run.stderr);
        assert!(
            said.contains("timed out waiting for a reply")
                && said.contains("only \"JAM 04:50:54\" arrived, without a line end"),
            "{extra:?}: {run:?}"
        );
    }
}

#[test]
fn udp_takes_daytime_or_rfc868_only() {
    let run = jamc(&["--udp", "127.0.0.1:1"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--udp"), "{run:?}");
    let run = jamc(&["--protocol", "ntp", "127.0.0.1:1"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("jam, daytime or rfc868"), "{run:?}");
}

// ---------------------------------------------------------------- --check

#[test]
fn known_offsets_are_read_over_every_protocol_and_transport() {
    let cases = [
        ("daytime", "tcp", "whole", 0.3),
        ("daytime", "udp", "whole", -0.7),
        ("daytime", "tcp", "ms", 1.234),
        ("daytime", "udp", "ctime", 2.45),
        ("daytime", "tcp", "xinetd", -0.45),
        ("daytime", "udp", "iso", 0.61),
        ("daytime", "tcp", "rfc2822", -1.9),
        ("rfc868", "tcp", "whole", 0.3),
        ("rfc868", "udp", "whole", -0.8),
    ];
    for (proto, transport, form, truth) in cases {
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let Some(server) = TimeServer::start(proto, transport, truth, form, None) else {
                return;
            };
            let target = server.target();
            let (offset, uncertainty, run) = check(&reading_args(proto, transport, &target));
            assert_holds(offset, uncertainty, truth, &run);
            let readings = server.readings();
            assert!(
                (1..=10).contains(&readings),
                "{proto}/{transport}: {readings} readings"
            );
            if form == "ms" {
                assert_eq!(readings, 1, "a fractional reply needs no more: {run:?}");
            }
            best = best.min(uncertainty);
            // How close depends on how promptly a loaded machine runs jamc:
            // three tries to come within 50 ms.
            if uncertainty <= 0.05 {
                break;
            }
        }
        assert!(
            best <= 0.05,
            "{proto}/{transport}/{form}: best uncertainty {best}"
        );
    }
}

#[test]
fn quick_reads_one_reply() {
    let Some(server) = TimeServer::start("rfc868", "udp", 0.3, "whole", None) else {
        return;
    };
    let (offset, uncertainty, run) =
        check(&["--quick", "--protocol", "rfc868", "--udp", &server.target()]);
    assert_holds(offset, uncertainty, 0.3, &run);
    assert!(uncertainty >= 0.5, "{run:?}");
    assert_eq!(server.readings(), 1);
}

#[test]
fn over_slow_and_asymmetric_links_the_truth_stays_inside() {
    let links = [(10, 10), (20, 80), (100, 100), (150, 50)];
    for (up_ms, down_ms) in links {
        let (up, down) = (Duration::from_millis(up_ms), Duration::from_millis(down_ms));
        let rtt = (up_ms + down_ms) as f64 / 1000.0;
        // JAM, through a TCP relay to a whole-second JAM server.
        let truth = 0.37;
        let jam = FakeServer::answering(move |now| {
            let t = now + chrono::Duration::milliseconds(370);
            format!("JAM {}\r\n", t.format("%H:%M:%S")).into_bytes()
        });
        let relay = Relay::tcp(jam.addr, up, down);
        let (offset, uncertainty, run) = check(&[&relay.target()]);
        assert_holds(offset, uncertainty, truth, &run);
        assert!(jam.requests() <= 10, "{} requests: {run:?}", jam.requests());
        assert!((offset - truth).abs() <= rtt + 0.05, "{run:?}");

        // daytime over TCP, rfc868 over UDP.
        for (proto, transport) in [("daytime", "tcp"), ("rfc868", "udp")] {
            let Some(server) = TimeServer::start(proto, transport, -0.62, "whole", None) else {
                return;
            };
            let relay = behind_relay(&server, transport, up, down);
            let target = relay.target();
            let (offset, uncertainty, run) = check(&reading_args(proto, transport, &target));
            assert_holds(offset, uncertainty, -0.62, &run);
            assert!(
                server.readings() <= 10,
                "{} readings: {run:?}",
                server.readings()
            );
            assert!(
                (offset + 0.62).abs() <= rtt + 0.05,
                "{proto}/{transport} {up_ms}/{down_ms}: {run:?}"
            );
        }
    }
}

#[test]
fn over_a_slow_link_readings_overlap_at_least_20_ms_apart() {
    // Each reading a connection or datagram of its own, 50 ms away each
    // way: readings that reach the server less than a round trip apart
    // overlapped (jamc(1), How the offset is measured); never more than 10,
    // never closer than the 20 ms that keeps a forking server unhurried.
    let link = Duration::from_millis(50);
    for (proto, transport) in [("daytime", "tcp"), ("rfc868", "udp")] {
        let Some(server) = TimeServer::start(proto, transport, 1.3, "whole", None) else {
            return;
        };
        let relay = behind_relay(&server, transport, link, link);
        let target = relay.target();
        let (offset, uncertainty, run) = check(&reading_args(proto, transport, &target));
        assert_holds(offset, uncertainty, 1.3, &run);
        let readings = server.readings();
        assert!(
            (2..=10).contains(&readings),
            "{proto}/{transport}: {readings} readings"
        );
        let gaps = server.reading_gaps();
        assert!(
            gaps.iter().any(|&gap| gap < 0.09),
            "{proto}/{transport}: no reading began before the one before it ended: {gaps:?}"
        );
        // jamc keeps 20 ms between readings; the relay and the server, each
        // scheduled on a loaded machine, may take a little off what the server sees.
        assert!(
            gaps.iter().all(|&gap| gap >= 0.012),
            "{proto}/{transport}: readings closer than 20 ms: {gaps:?}"
        );
    }
}

#[test]
fn a_clock_stepped_during_the_check_gives_no_tight_wrong_offset() {
    for (after, step) in [(3, 0.4), (5, -0.3), (6, 0.13), (2, -0.9)] {
        let Some(server) = TimeServer::start("daytime", "udp", 0.2, "whole", Some((after, step)))
        else {
            return;
        };
        let (offset, uncertainty, run) =
            check(&["--protocol", "daytime", "--udp", &server.target()]);
        let near = |truth: f64| (offset - truth).abs() <= uncertainty + 0.05;
        assert!(
            uncertainty >= 0.5 || near(0.2) || near(0.2 + step),
            "step {step} after {after}: {run:?}"
        );
    }
}

#[test]
fn rfc868_is_read_in_the_era_nearest_the_local_clock_across_2036() {
    let Some(faketime) = require_tool("faketime") else {
        return;
    };
    // The server shows 2036-02-07 06:28:17 UTC (1 s past the wrap: value 1)
    // while jamc's clock reads 06:28:14.
    let wrap = 2_085_978_496_i64;
    let now = chrono::Utc::now();
    let offset = (wrap + 1) as f64
        - (now.timestamp() as f64 + f64::from(now.timestamp_subsec_millis()) / 1000.0);
    let Some(server) = TimeServer::start("rfc868", "tcp", offset, "whole", None) else {
        return;
    };
    let target = server.target();
    let run = run_bounded(
        Command::new(&faketime)
            .args([
                "2036-02-07 06:28:14",
                common::JAMC,
                "--protocol",
                "rfc868",
                &target,
            ])
            .env("TZ", "UTC")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        JAMC_BOUND,
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("2036-02-07T06:28:1"), "{run:?}");
    let run = run_bounded(
        Command::new(&faketime)
            .args([
                "2036-02-07 06:28:14",
                common::JAMC,
                "--check",
                "--quick",
                "--protocol",
                "rfc868",
                &target,
            ])
            .env("TZ", "UTC")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        JAMC_BOUND,
    );
    assert_eq!(run.code, 1, "3 s ahead is a WARNING over 2 s: {run:?}");
    let offset = perf(first_line(&run), "offset");
    assert!((offset - 3.0).abs() < 1.0, "{run:?}");
}

// ------------------------------------------------------------------ xinetd

#[test]
fn xinetd_built_in_daytime_and_time_are_read_over_tcp_and_udp() {
    let Some(xinetd) = packaged_daemon("xinetd") else {
        return;
    };
    let dir = TempDir::new("jamc-xinetd");
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let service = |name: &str, id: &str, socket: &str, proto: &str, wait: &str, port: u16| {
        format!(
            "service {name}\n{{\n\ttype = INTERNAL UNLISTED\n\tid = {id}\n\tsocket_type = {socket}\n\
             \tprotocol = {proto}\n\twait = {wait}\n\tuser = root\n\tbind = 127.0.0.1\n\tport = {port}\n\
             \tflags = REUSE NOLIBWRAP\n\tdisable = no\n}}\n"
        )
    };
    let conf = format!(
        "defaults\n{{\n\tlog_type = FILE /dev/null\n}}\n{}{}{}{}",
        service("daytime", "daytime-stream", "stream", "tcp", "no", ports[0]),
        service("daytime", "daytime-dgram", "dgram", "udp", "yes", ports[1]),
        service("time", "time-stream", "stream", "tcp", "no", ports[2]),
        service("time", "time-dgram", "dgram", "udp", "yes", ports[3]),
    );
    let path = dir.join("xinetd.conf");
    std::fs::write(&path, conf).expect("write conf");
    let _xinetd = Supervisor::spawn(
        Command::new(xinetd)
            .args(["-dontfork", "-f"])
            .arg(&path)
            .arg("-pidfile")
            .arg(dir.join("pid"))
            .stderr(Stdio::null()),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", ports[2])).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (proto, udp, port) in [
        ("daytime", false, ports[0]),
        ("daytime", true, ports[1]),
        ("rfc868", false, ports[2]),
        ("rfc868", true, ports[3]),
    ] {
        let target = format!("127.0.0.1:{port}");
        let mut args = vec!["--protocol", proto];
        if udp {
            args.push("--udp");
        }
        args.push(&target);
        let plain = jamc(&args);
        assert_eq!(plain.code, 0, "{proto} udp={udp}: {plain:?}");
        // The same clock, read by xinetd with time(2), which on Linux is
        // the coarse clock: it lags the real one by up to a kernel tick (at
        // most 10 ms, HZ >= 100), so the truth lies in [-10 ms, 0].
        // xinetd writes its zone's name.
        let mut check_args = vec!["--timezone", "local"];
        check_args.extend_from_slice(&args);
        let mut all = vec!["--check"];
        all.extend_from_slice(&check_args);
        let run = jamc(&all);
        assert_eq!(run.code, 0, "{proto} udp={udp}: {run:?}");
        let line = first_line(&run);
        let (offset, uncertainty) = (perf(line, "offset"), perf(line, "uncertainty"));
        let truth = offset.clamp(-0.010, 0.0);
        assert_holds(offset, uncertainty, truth, &run);
    }
}

// ---------------------------------------------------------------- --textfile

/// Runs `promtool check metrics` on `text`; None when promtool is missing (a skip).
fn promtool_check(text: &str) -> Option<(bool, String)> {
    let promtool = repo().join("target/tools/root/usr/bin/promtool");
    let promtool = if promtool.is_file() {
        promtool
    } else {
        require_tool("promtool")?
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success() && said.trim().is_empty(), said))
}

#[test]
fn textfile_is_written_atomically_promtool_clean_and_on_failure_too() {
    let dir = TempDir::new("jamc-textfile");
    let file = dir.join("jam.prom");
    let file_arg = file.to_string_lossy().into_owned();
    let good = FakeServer::answering(|now| {
        let t = now + chrono::Duration::milliseconds(250);
        format!("JAM {}\r\n", t.format("%H:%M:%S%.3f")).into_bytes()
    });
    let (down, _hold) = common::closed_port();
    let down = format!("127.0.0.1:{down}");
    let run = jamc(&["--check", "--textfile", &file_arg, &good.target(), &down]);
    assert_eq!(run.code, 2, "{run:?}");
    let text = std::fs::read_to_string(&file).expect("the file");
    let g = good.target();
    for line in [
        format!("jam_check_up{{server=\"{g}\"}} 1"),
        format!("jam_check_up{{server=\"{down}\"}} 0"),
        format!("jam_check_status{{server=\"{g}\"}} 0"),
        format!("jam_check_status{{server=\"{down}\"}} 2"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    let offset: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("jam_check_offset_seconds{{server=\"{g}\"}} ")))
        .expect("an offset")
        .parse()
        .expect("a number");
    assert!((offset - 0.25).abs() < 0.05, "{text}");
    for name in [
        "jam_check_uncertainty_seconds",
        "jam_check_duration_seconds",
        "jam_check_last_run_timestamp_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} gauge")),
            "{name}: {text}"
        );
    }
    // Only the file itself is left: the temporary one was renamed.
    let names: Vec<_> = std::fs::read_dir(&*dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["jam.prom"], "{names:?}");
    if let Some((clean, said)) = promtool_check(&text) {
        assert!(clean, "promtool: {said}\n{text}");
    }
    // A check that cannot run writes the file too.
    let run = jamc(&["--check", "--textfile", &file_arg, &down]);
    assert_eq!(run.code, 2, "{run:?}");
    let text = std::fs::read_to_string(&file).expect("the file");
    assert!(
        text.contains(&format!("jam_check_up{{server=\"{down}\"}} 0")),
        "{text}"
    );
    assert!(!text.contains(&g), "replaced, not appended: {text}");
}

#[test]
fn node_exporter_reads_the_textfile() {
    let exporter = repo().join("target/tools/root/usr/bin/prometheus-node-exporter");
    let exporter = if exporter.is_file() {
        exporter
    } else {
        match require_tool("prometheus-node-exporter") {
            Some(p) => p,
            None => return,
        }
    };
    let dir = TempDir::new("jamc-node-exporter");
    let server =
        FakeServer::answering(|now| format!("JAM {}\r\n", now.format("%H:%M:%S%.3f")).into_bytes());
    let file = dir.join("jam.prom");
    let run = jamc(&[
        "--check",
        "--textfile",
        &file.to_string_lossy(),
        &server.target(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let port = free_port();
    let _exporter = ChildGuard::spawn(
        Command::new(exporter)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--collector.disable-defaults")
            .arg("--collector.textfile")
            .arg(format!("--collector.textfile.directory={}", dir.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut scraped = String::new();
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
            scraped.clear();
            let _ = s.read_to_string(&mut scraped);
            if scraped.contains("jam_check_") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = server.target();
    for want in [
        format!("jam_check_up{{server=\"{s}\"}} 1"),
        format!("jam_check_status{{server=\"{s}\"}} 0"),
        format!("jam_check_offset_seconds{{server=\"{s}\"}} "),
        "node_textfile_scrape_error 0".to_string(),
    ] {
        assert!(
            scraped.lines().any(|l| l.starts_with(&want)),
            "{want} in\n{scraped}"
        );
    }
}

#[test]
fn the_textfile_cron_example_writes_the_file_and_is_silent_when_all_is_well() {
    let dir = TempDir::new("jamc-cron-textfile");
    let file = dir.join("jamd.prom");
    let server =
        FakeServer::answering(|now| format!("JAM {}\r\n", now.format("%H:%M:%S")).into_bytes());
    let command = common::cron_example_command("--textfile")
        .replace(
            "/var/lib/prometheus/node-exporter/jamd.prom",
            &file.to_string_lossy(),
        )
        .replace(" localhost ", &format!(" {} ", server.target()));
    assert!(
        !command.contains("--quick"),
        "the cron example keeps the full check"
    );
    let jamc_dir = std::path::Path::new(common::JAMC)
        .parent()
        .expect("bin dir");
    let run = run_bounded(
        Command::new("/bin/sh")
            .args(["-c", &command])
            .env("PATH", format!("{}:/usr/bin:/bin", jamc_dir.display())),
        JAMC_BOUND,
    );
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{run:?}");
    let text = std::fs::read_to_string(&file).expect("the textfile");
    assert!(
        text.contains(&format!("jam_check_up{{server=\"{}\"}} 1", server.target())),
        "{text}"
    );
}

#[test]
fn daytime_and_rfc868_readings_come_from_the_source_address() {
    for (proto, transport) in [("daytime", "tcp"), ("rfc868", "udp")] {
        let Some(server) = TimeServer::start(proto, transport, 0.0, "whole", None) else {
            return;
        };
        let target = server.target();
        let mut args = vec!["-s", "127.0.0.2", "--protocol", proto];
        if transport == "udp" {
            args.push("--udp");
        }
        args.push(&target);
        let run = jamc(&args);
        assert_eq!(run.code, 0, "{run:?}");
        let seen = server
            .lines
            .wait_for("reading 1 ", Duration::from_secs(5))
            .expect("a reading");
        assert!(
            seen.contains(" from 127.0.0.2 at "),
            "{proto}/{transport}: {seen}"
        );
    }
}

#[test]
fn a_daytime_reply_without_a_time_is_critical() {
    let server = FakeServer::start(common::Behaviour::GreetAndClose(
        b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(),
    ));
    let run = jamc(&["--check", "--protocol", "daytime", &server.target()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        first_line(&run).starts_with("JAM CRITICAL - ")
            && first_line(&run).contains("reply is not a daytime time: \"SSH-2.0-OpenSSH_9.6\""),
        "{run:?}"
    );
}
