//! Sharper edges of the second release, each against a real jamd: what a
//! reply shows, how refusals are logged and counted, reloads, signals, the
//! metrics and the configuration checks (see jamd(8) and jamd.toml(5)).

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant, SystemTime};

use common::{Client, Jamd, SyslogSink};

/// How long a test waits for a line or a reply that should come at once.
const T: Duration = Duration::from_secs(10);

/// `%+` shows nanoseconds, so each reply is the instant it was asked at: no
/// reply shows an instant that had passed when its request was sent.
#[test]
fn an_rfc3339_format_shows_the_instant_of_each_request() {
    let jamd = Jamd::start("[time]\nformat = \"%+\"\ntimezone = \"UTC\"\n");
    let mut client = jamd.connect();
    let mut shown = Vec::new();
    for _ in 0..6 {
        let asked = SystemTime::now();
        let reply = client.ask("TIME");
        let text = reply
            .strip_prefix("JAM ")
            .unwrap_or_else(|| panic!("{reply}"));
        let at =
            chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let at = SystemTime::from(at);
        assert!(at >= asked, "{text} is before the request was sent");
        shown.push(text.to_owned());
        std::thread::sleep(Duration::from_millis(120));
    }
    shown.dedup();
    assert_eq!(shown.len(), 6, "{shown:?}");
}

/// A source over `max_connections_per_source` is told `ERROR server busy`
/// and logged as `source busy`; the summary of the lines left out names its
/// reasons.
#[test]
fn a_source_over_its_limit_is_logged_as_source_busy() {
    let jamd = Jamd::start("[server]\nmax_connections_per_source = 2\n");
    let _held = common::slots::hold(&jamd, 2);
    let mut refused = jamd.connect();
    refused.told_and_closed("ERROR server busy");
    let line = jamd
        .stderr
        .wait_for(": source busy", T)
        .expect("a `refused ADDR: source busy` line");
    assert!(line.contains("refused 127.0.0.1:"), "{line}");
    // More within the second: left out of the log, then summed up by reason.
    for _ in 0..3 {
        jamd.connect().told_and_closed("ERROR server busy");
    }
    let summary = jamd
        .stderr
        .wait_for("more connection(s)", T)
        .expect("a summary line");
    assert!(
        summary.ends_with("refused 3 more connection(s): 3 source busy"),
        "{summary}"
    );
    assert_eq!(jamd.stderr.count("server busy"), 0, "{:#?}", jamd.log());
}

/// How many refusals for `why` a syslog line counts: one for `refused
/// ADDR: WHY`, the reason's count in a `refused N more connection(s)` line.
fn refusals_in(line: &str, why: &str) -> u64 {
    let Some((_, rest)) = line.split_once("]: refused ") else {
        return 0;
    };
    match rest.split_once(" more connection(s): ") {
        Some((_, reasons)) => reasons
            .split(", ")
            .filter_map(|r| r.strip_suffix(why)?.trim().parse::<u64>().ok())
            .sum(),
        None => u64::from(rest.ends_with(&format!(": {why}"))),
    }
}

/// Fills the receive queue of the syslog socket at `path` with datagrams
/// of the test's own, so that jamd's lines cannot get in (a reader that
/// stalled). Returns the senders, which must live while it stays full.
fn stall(path: &std::path::Path) -> Vec<UnixDatagram> {
    let mut senders = Vec::new();
    // Each sender can have only so much in flight; a few fill any queue.
    for _ in 0..16 {
        let s = UnixDatagram::unbound().unwrap();
        s.connect(path).unwrap();
        s.set_nonblocking(true).unwrap();
        let mut sent = 0;
        while sent < 100_000 && s.send(b"<30>filler").is_ok() {
            sent += 1;
        }
        senders.push(s);
        if sent == 0 {
            return senders;
        }
    }
    panic!("the syslog socket's queue did not fill");
}

/// Refusals whose lines the log target did not take (a syslog reader that
/// stalled) are counted in a later line once it reads again: none is lost.
#[test]
fn refusals_are_counted_in_the_log_also_when_syslog_stalls() {
    const REFUSED: u64 = 300;
    let sink = SyslogSink::bind("stall");
    let jamd = Jamd::start_syslog_only(&sink, "[access]\ndeny = [\"127.0.0.2\"]\n");
    let _senders = stall(&sink.path);
    for _ in 0..REFUSED {
        let mut c = Client::connect_from("127.0.0.2", jamd.addr);
        c.told_and_closed("ERROR access denied");
    }
    // Long enough for the single line and the summary to have been tried
    // (a summary comes a second after the refusals stop).
    std::thread::sleep(Duration::from_secs(3));
    // The reader is back.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut counted = 0;
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline && counted < REFUSED {
        if let Ok(n) = sink.sock.recv(&mut buf) {
            counted += refusals_in(&String::from_utf8_lossy(&buf[..n]), "access denied");
        }
    }
    for line in sink.drain(Duration::from_secs(2)) {
        counted += refusals_in(&line, "access denied");
    }
    assert_eq!(counted, REFUSED);
}

/// A reload that cuts sources wider (`source_prefix_v4`) counts the clients
/// already connected under their new source: the source is full at once.
#[test]
fn a_reload_of_the_source_prefix_recounts_connected_clients() {
    let config = "[server]\nmax_connections_per_source = 2\n";
    let jamd = Jamd::start(config);
    let held: Vec<Client> = (2..14)
        .map(|host| {
            let mut c = Client::connect_from(&format!("127.0.0.{host}"), jamd.addr);
            assert!(common::jam_time(&c.ask("TIME")).is_some());
            c
        })
        .collect();
    jamd.reload(&format!("{config}source_prefix_v4 = 24\n"));
    let mut late = Client::connect_from("127.0.0.50", jamd.addr);
    late.told_and_closed("ERROR server busy");
    assert!(jamd.stderr.wait_for("refused 127.0.0.50:", T).is_some());
    // The clients already served are not dropped.
    for mut c in held {
        assert!(common::jam_time(&c.ask("TIME")).is_some());
    }
}

/// `jamd_tracked_sources` from the metrics endpoint at `addr`.
fn tracked_sources(addr: &str) -> f64 {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix("jamd_tracked_sources "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no jamd_tracked_sources in {body}"))
}

/// Sources whose bucket is full again and that have no client need no
/// state: they leave the table within 10 s, also when no client comes.
#[test]
fn idle_sources_leave_the_table_without_new_clients() {
    let jamd = Jamd::start(
        "[server]\nconnection_rate_per_source = 1\nconnection_burst_per_source = 5\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n",
    );
    let line = jamd.stderr.wait_for("metrics at http://", T).unwrap();
    let metrics = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned();
    for host in 2..102 {
        let mut c = Client::connect_from(&format!("127.0.0.{host}"), jamd.addr);
        assert!(common::jam_time(&c.ask("TIME")).is_some());
    }
    // Each source took a token: it is kept until its bucket is full again
    // (all 100 unless this machine is slow enough for some to be full by
    // the time the later clients come).
    assert!(tracked_sources(&metrics) > 0.0);
    // Every bucket is full again after a second; only time passes now.
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut tracked = tracked_sources(&metrics);
    while tracked > 0.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        tracked = tracked_sources(&metrics);
    }
    assert_eq!(tracked, 0.0);
}

/// SIGQUIT (Ctrl-\, nginx's graceful stop) stops jamd like SIGTERM: the
/// client being served is answered, `stopped` is logged, the exit is 0.
#[test]
fn sigquit_stops_gracefully() {
    let mut jamd = Jamd::start("");
    let mut client = jamd.served_client();
    jamd.signal("QUIT");
    assert!(jamd.stderr.wait_for("shutting down:", T).is_some());
    assert!(common::jam_time(&client.ask("TIME")).is_some());
    client.send(b"QUIT\r\n");
    jamd.exits_0(T);
    assert!(jamd.stderr.wait_for("stopped", T).is_some());
}

/// Signals whose default action would end jamd, sent by timers, UPSes,
/// profilers and terminals, are ignored.
#[test]
fn stray_signals_are_ignored() {
    let mut jamd = Jamd::start("");
    for sig in [
        libc::SIGALRM,
        libc::SIGPWR,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGURG,
        libc::SIGWINCH,
        libc::SIGUSR2,
    ] {
        jamd.child.signal(sig);
        let mut c = jamd.connect();
        assert!(
            common::jam_time(&c.ask("TIME")).is_some(),
            "jamd died of signal {sig}: {:#?}",
            jamd.log()
        );
    }
    assert_eq!(jamd.stop(), Some(0));
    assert!(jamd.stderr.wait_for("stopped", T).is_some());
}

/// syslog lines carry RFC 3164's timestamp: `Mmm dd hh:mm:ss` with the day
/// of month padded with a space (`Dec  4`), in UTC.
#[test]
fn syslog_timestamps_pad_the_day_with_a_space() {
    let sink = SyslogSink::bind("rfc3164");
    let jamd = Jamd::start_syslog_only(&sink, "");
    let before = chrono::Utc::now();
    let _client = jamd.served_client();
    let line = sink.wait_for("connection from", T).expect("a syslog line");
    let after = chrono::Utc::now();
    let stamp = &line[line.find('>').unwrap() + 1..];
    let stamp = &stamp[..15];
    let day = |t: chrono::DateTime<chrono::Utc>| t.format("%b %e").to_string();
    assert!(
        stamp.starts_with(&day(before)) || stamp.starts_with(&day(after)),
        "{line}"
    );
    assert!(
        chrono::NaiveTime::parse_from_str(&stamp[7..], "%H:%M:%S").is_ok(),
        "{line}"
    );
}

/// `jamd -t`: an unknown key's error suggests the nearest known key, and
/// `log.level = "warning"` (syslog's name) means warn.
#[test]
fn a_mistyped_key_gets_a_suggestion_and_warning_is_a_level() {
    let checked = common::check_config("[server]\nmax_line_byte = 100\n", &[]);
    assert_eq!(checked.code, Some(78), "{}", checked.err);
    // The list of keys between the two grows with every new key: the test
    // pins what the operator reads first and last.
    let err = checked.err.trim_end();
    assert!(
        err.contains("server.max_line_byte: unknown key; [server] takes port, bind, "),
        "{err}"
    );
    assert!(err.ends_with("; did you mean max_line_bytes?"), "{err}");
    let checked = common::check_config("[log]\nlevel = \"warning\"\n", &[]);
    assert_eq!(checked.code, Some(0), "{}", checked.err);
    assert!(
        checked.out.contains("\nlevel = \"warn\"\n"),
        "{}",
        checked.out
    );
}

/// A metrics address that cannot be bound says what to do, as the JAM
/// listener's error does.
#[test]
fn a_taken_metrics_address_says_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (_child, stderr, _dir) = common::spawn_jamd(
        &format!("[metrics]\nlisten = \"{addr}\"\n"),
        &common::LOOPBACK_ARGS,
    );
    let line = stderr
        .wait_for("cannot serve metrics on", T)
        .expect("a start-up error");
    assert!(
        line.ends_with(&format!(
            "cannot serve metrics on {addr}: Address already in use (os error 98); another program \
             (or another jamd) holds this port: stop it, or choose another port (metrics.listen)"
        )),
        "{line}"
    );
}

/// Each shipped alert has a promtool test where it fires and one where it
/// keeps quiet, and the rules speak to an operator: no references to
/// documents the operator does not have.
#[test]
fn every_shipped_alert_has_a_test_that_fires_it_and_one_that_keeps_it_quiet() {
    let rules = common::repo_file("packaging/prometheus/jamd.rules.yml");
    let tests = common::repo_file("packaging/prometheus/jamd.rules.test.yml");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 6, "{alerts:?}");
    // (alert, fires) for each alert_rule_test: its exp_alerts is `[]` or not.
    let mut cases: Vec<(&str, bool)> = Vec::new();
    let mut lines = tests.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if let Some(name) = line.strip_prefix("alertname: ") {
            let expected = lines.next().unwrap_or_default();
            assert!(expected.starts_with("exp_alerts:"), "{name}: {expected}");
            cases.push((name, expected != "exp_alerts: []"));
        }
    }
    for alert in &alerts {
        assert!(cases.contains(&(*alert, true)), "no test fires {alert}");
        assert!(
            cases.contains(&(*alert, false)),
            "no test keeps {alert} quiet"
        );
    }
    for (name, text) in [("rules", &rules), ("tests", &tests)] {
        assert!(
            !text.contains("SPEC"),
            "the {name} cite a document operators lack"
        );
    }
    // The reload alert reads the state of the running configuration.
    assert!(rules.contains("jamd_config_last_reload_successful{job=\"jamd\"} == 0"));
}

/// The reload gauges and `jamd_build_info{revision}`: 1 at start, 0 after a
/// refused reload, 1 again after a good one, with the success's time.
#[test]
fn the_metrics_show_whether_the_last_reload_was_applied() {
    let config = "[metrics]\nlisten = \"127.0.0.1:0\"\n";
    let jamd = Jamd::start(config);
    let line = jamd.stderr.wait_for("metrics at http://", T).unwrap();
    let metrics = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned();
    let sample = |name: &str| -> f64 {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(&metrics).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {body}"))
    };
    let now = || {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let started = sample("jamd_config_last_reload_success_timestamp_seconds");
    assert_eq!(sample("jamd_config_last_reload_successful"), 1.0);
    assert!((started - now()).abs() < 60.0, "{started}");
    jamd.reload_failing("[server]\nport = \"many\"\n");
    assert_eq!(sample("jamd_config_last_reload_successful"), 0.0);
    assert_eq!(
        sample("jamd_config_last_reload_success_timestamp_seconds"),
        started
    );
    std::thread::sleep(Duration::from_millis(20));
    jamd.reload(config);
    assert_eq!(sample("jamd_config_last_reload_successful"), 1.0);
    assert!(sample("jamd_config_last_reload_success_timestamp_seconds") > started);
    // The commit the binary was built from, as jamd -V shows it.
    let (_, version, _) = common::run_jamd(&["-V"], T);
    let revision = version
        .split(['(', ' '])
        .find(|w| w.len() == 10 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or("unknown");
    assert_eq!(
        sample(&format!(
            "jamd_build_info{{version=\"{}\",revision=\"{revision}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
}

/// `systemctl reload` checks the file first (as HAProxy's unit does): the
/// first ExecReload= command of each service fails with the error on a bad
/// file and prints nothing on a good one; the signal comes after it.
#[test]
fn the_units_check_the_file_before_they_signal_a_reload() {
    let dir = common::temp_dir("execreload");
    let bad = common::write_file(&dir, "bad.toml", "[server]\nprot = 1\n");
    let good = common::write_file(&dir, "good.toml", "[server]\nport = 45001\n");
    for unit in ["jamd.service", "jamd@.service"] {
        let text = common::repo_file(&format!("packaging/systemd/{unit}"));
        let reloads: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("ExecReload="))
            .collect();
        assert_eq!(reloads.len(), 2, "{unit}: {reloads:?}");
        assert_eq!(reloads[1], "/bin/kill -HUP $MAINPID", "{unit}");
        let script = reloads[0]
            .strip_prefix("/bin/sh -c '")
            .and_then(|s| s.strip_suffix('\''))
            .unwrap_or_else(|| panic!("{unit}: {}", reloads[0]));
        for (file, code) in [(&bad, 78), (&good, 0)] {
            // The unit's command, with the jamd cargo built and a test file.
            let script = if script.contains("%i") {
                script.replace("/etc/jamd/%i.toml", file)
            } else {
                script.replace("/usr/bin/jamd", &format!("/usr/bin/jamd -c {file}"))
            }
            .replace("/usr/bin/jamd", common::JAMD);
            let (got, out, err) = common::run_within(
                std::process::Command::new("/bin/sh").args(["-c", &script]),
                T,
            );
            assert_eq!(got, Some(code), "{unit} with {file}: {err}");
            assert_eq!(out, "", "{unit}: nothing for the journal");
            if code != 0 {
                assert!(err.contains("server.prot: unknown key"), "{unit}: {err}");
            }
        }
    }
}

/// Where an operator edits (the shipped jamd.toml, jamd.toml(5), README),
/// the socket unit's override names every key it makes unused.
#[test]
fn the_socket_unit_override_names_every_key_it_makes_unused() {
    let conffile = common::repo_file("config/jamd.toml");
    let comment: String = conffile
        .lines()
        .take_while(|l| l.starts_with('#') || l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        comment.contains("port, bind, backlog and reuse_address below are NOT used"),
        "{comment}"
    );
    let man = common::repo_file("man/jamd.toml.5");
    assert!(man.contains(".Ic backlog\nand\n.Ic reuse_address\nare not used"));
    let readme = common::repo_file("README.md").replace("\n  ", " ");
    assert!(
        readme.contains(
            "`port`, `bind`, `backlog` and `reuse_address` in `/etc/jamd/jamd.toml` are not used"
        ),
        "README"
    );
}

/// `--check-access` on a trusted balancer's address says what happens to
/// its connections (served; [access] decides on the clients it names), not
/// "denied"; other addresses are decided by [access] as before.
#[test]
fn check_access_on_a_trusted_balancer_says_it_is_one() {
    let dir = common::temp_dir("check-balancer");
    let file = common::write_file(
        &dir,
        "jamd.toml",
        "[access]\nallow = [\"10.0.0.0/8\"]\n[proxy]\ntrusted = [\"192.0.2.0/24\"]\n",
    );
    let (code, out, err) = common::run_jamd(&["-c", &file, "--check-access", "192.0.2.7"], T);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.trim_end(),
        "192.0.2.7: a trusted balancer (by proxy.trusted 192.0.2.0/24): its connections are \
         served, and [access] decides on each client its PROXY header names"
    );
    let (code, out, _) = common::run_jamd(&["-c", &file, "--check-access", "198.51.100.1"], T);
    assert_eq!(code, Some(1));
    assert_eq!(
        out.trim_end(),
        "198.51.100.1: denied (no allow entry contains it)"
    );
    let (code, out, _) = common::run_jamd(&["-c", &file, "--check-access", "10.1.2.3"], T);
    assert_eq!(code, Some(0));
    assert_eq!(out.trim_end(), "10.1.2.3: allowed");
}

/// `metrics.listen` on the JAM listener's own address and port is refused by
/// `jamd -t` and by a real start alike (78), naming the key, before jamd
/// binds anything.
#[test]
fn metrics_on_the_jam_listeners_address_is_refused_by_check_and_start() {
    let config = "[server]\nport = 45999\nbind = [\"127.0.0.1\"]\n\
                  [metrics]\nlisten = \"127.0.0.1:45999\"\n";
    let checked = common::check_config(config, &[]);
    assert_eq!(checked.code, Some(78), "{checked:?}");
    let why =
        "metrics.listen: 127.0.0.1:45999 (tcp) is taken by server.bind and server.port already";
    assert!(checked.err.contains(why), "{checked:?}");
    let dir = common::temp_dir("metrics-taken");
    let file = common::write_file(&dir, "jamd.toml", config);
    let (code, _out, err) =
        common::run_jamd(&["-c", &file, "--log", "stderr"], Duration::from_secs(10));
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains(why), "{err}");
    assert!(!err.contains("listening on"), "{err}");
}
