//! jamd.toml(5) and jamd(8) checked from outside: configuration errors and
//! exit codes, overrides, -t, signals (drain and reload), and log lines as
//! syslog gets them.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    check_config, jam_time, run_jamd, syslog_config, temp_dir, wait_until, write_file, Jamd,
    SyslogSink, JAMD, LOOPBACK_ARGS, LOOPBACK_FILE_LOG,
};

const T: Duration = Duration::from_secs(10);

#[test]
fn check_config_prints_the_effective_settings_and_exits_0() {
    let checked = check_config("[server]\nport = 4511\n[time]\ntimezone = \"UTC\"\n", &[]);
    let out = &checked.out;
    assert_eq!(checked.code, Some(0), "{}", checked.err);
    assert!(out.contains("port = 4511"), "{out}");
    assert!(
        out.contains("[time]") && out.contains("timezone = \"UTC\""),
        "{out}"
    );
    assert!(
        out.contains("max_line_bytes = 256"),
        "defaults shown too: {out}"
    );
    // The output is itself a valid configuration.
    let again = check_config(out, &[]);
    assert_eq!(again.code, Some(0), "{out} gives {}", again.err);
}

#[test]
fn check_config_binds_nothing() {
    // A port that is in use does not matter to -t.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let checked = check_config("", &["-p", &port, "-b", "127.0.0.1"]);
    let out = &checked.out;
    assert_eq!(checked.code, Some(0), "{}", checked.err);
    assert!(
        out.contains(&format!("port = {port}")),
        "overrides shown: {out}"
    );
    assert!(out.contains("bind = [\"127.0.0.1\"]"), "{out}");
}

#[test]
fn overrides_win_over_the_file_in_check_output() {
    let checked = check_config(
        "[server]\nport = 4512\n[log]\ntarget = \"syslog\"\n",
        &[
            "-p",
            "4600",
            "-b",
            "::1",
            "-b",
            "127.0.0.1",
            "--log",
            "both",
        ],
    );
    let out = &checked.out;
    assert_eq!(checked.code, Some(0), "{}", checked.err);
    assert!(out.contains("port = 4600"), "{out}");
    assert!(out.contains("bind = [\"::1\", \"127.0.0.1\"]"), "{out}");
    assert!(out.contains("target = \"both\""), "{out}");
}

#[test]
fn config_errors_name_file_line_column_and_exit_78() {
    let dir = temp_dir("errors");
    let cases = [
        (
            "[server]\nport = 1\nbogus = 2\n",
            ":3:1: ",
            "server.bogus: unknown key",
        ),
        ("[server]\nport = \"x\"\n", ":2:8: ", "expected"),
        ("[time]\nformat = \"%H:%\"\n", ":2:10: ", "strftime"),
        (
            "[time]\ntimezone = \"Mars/Base\"\n",
            ":2:12: ",
            "unknown time zone",
        ),
        ("[server]\nbind = [\"nonsense\"]\n", ":2:9: ", "IP address"),
        (
            "[log]\ntarget = \"printer\"\n",
            ":2:10: ",
            "expected one of",
        ),
        ("[server\n", ":1:", ""),
    ];
    for (i, (text, place, what)) in cases.iter().enumerate() {
        let cfg = write_file(&dir, &format!("bad{i}.toml"), text);
        for args in [
            vec!["-t", "-c", &cfg],
            vec!["-c", &cfg, "-p", "0", "-b", "127.0.0.1"],
        ] {
            let (code, out, err) = run_jamd(&args, T);
            assert_eq!(code, Some(78), "{text:?} {args:?}: {err}");
            assert!(out.is_empty(), "nothing on stdout: {out}");
            let line = err.trim();
            assert_eq!(line.lines().count(), 1, "one line: {err}");
            assert!(
                line.starts_with(&format!("jamd: {cfg}{place}")),
                "{text:?}: {line}"
            );
            assert!(line.contains(what), "{text:?}: {line}");
        }
    }
}

#[test]
fn a_missing_file_given_with_c_is_a_config_error() {
    let (code, _, err) = run_jamd(&["-c", "/nonexistent/jamd.toml", "-t"], T);
    assert_eq!(code, Some(78));
    assert!(err.contains("/nonexistent/jamd.toml"), "{err}");
}

#[test]
fn a_missing_default_file_means_built_in_defaults_with_a_notice() {
    if std::path::Path::new("/etc/jamd/jamd.toml").exists() {
        skip!("/etc/jamd/jamd.toml exists on this machine; the test needs it absent");
    }
    let (code, out, _) = run_jamd(&["-t"], T);
    assert_eq!(code, Some(0));
    assert!(out.contains("port = 45000"));
    let mut cmd = Command::new(JAMD);
    cmd.args(LOOPBACK_ARGS)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let dir = temp_dir("nodefault");
    let jamd = Jamd::spawn(cmd, dir.clone(), dir.join("none.toml"));
    assert!(jamd
        .stderr
        .wait_for("using built-in defaults", T)
        .is_some_and(|l| l.contains("/etc/jamd/jamd.toml")));
}

#[test]
fn bad_command_lines_exit_2() {
    for args in [
        vec!["--no-such-flag"],
        vec!["-p", "notaport"],
        vec!["-p", "70000"],
        vec!["-b", "not-an-address"],
        vec!["--log", "printer"],
    ] {
        let (code, _, err) = run_jamd(&args, T);
        assert_eq!(code, Some(2), "{args:?}: {err}");
    }
}

#[test]
fn help_and_version_exit_0() {
    let (code, out, _) = run_jamd(&["--help"], T);
    assert_eq!(code, Some(0));
    for flag in [
        "--config",
        "--port",
        "--bind",
        "--log",
        "--inetd",
        "--check-config",
        "--version",
    ] {
        assert!(out.contains(flag), "{flag} in --help");
    }
    let (code, out, _) = run_jamd(&["-V"], T);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("jamd "), "{out}");
}

/// Runs jamd (bounded) on a file holding `config`, with `args` after
/// `-c FILE`, for a start that must fail: its exit code and stderr.
fn failed_start(config: &str, args: &[&str]) -> (Option<i32>, String) {
    let cfg = write_file(&temp_dir("nostart"), "jamd.toml", config);
    let (code, out, err) = run_jamd(&[&["-c", cfg.as_str()], args].concat(), T);
    assert!(out.is_empty(), "nothing on stdout: {out}");
    (code, err)
}

/// (Also what defects_listen's `a_port_in_use_says_what_to_do` asserted:
/// the kernel's words and the hint.)
#[test]
fn an_address_in_use_exits_1_with_one_clear_line_and_a_hint() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let (code, err) = failed_start(
        "[server]\nreuse_address = false\n",
        &["-p", &port, "-b", "127.0.0.1", "--log", "stderr"],
    );
    assert_eq!(code, Some(1), "{err}");
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with(&format!("jamd: cannot listen on 127.0.0.1:{port}: ")),
        "{err}"
    );
    assert!(last.contains("Address already in use"), "{err}");
    assert!(
        last.contains("stop it, or choose another port (server.port, -p)"),
        "{err}"
    );
}

#[test]
fn an_explicit_address_that_cannot_be_bound_is_fatal() {
    // 192.0.2.1 (TEST-NET-1) is not an address of this machine; nothing is sent.
    let (code, err) = failed_start("", &["-p", "0", "-b", "192.0.2.1", "--log", "stderr"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot listen on 192.0.2.1:0"), "{err}");
}

#[test]
fn each_listener_is_logged_with_its_backlog() {
    let jamd = Jamd::start("[server]\nbacklog = 77\n");
    let line = jamd.stderr.wait_for("listening on", T).unwrap();
    assert!(
        line.ends_with(&format!("listening on {} (backlog 77)", jamd.addr)),
        "{line}"
    );
}

#[test]
fn sigterm_with_no_clients_exits_0_at_once() {
    // "At once": well before the 30 s grace period, however loaded the machine.
    let mut jamd = Jamd::start("[server]\nshutdown_timeout = 30\n");
    let start = Instant::now();
    jamd.signal("TERM");
    jamd.exits_0(T);
    assert!(start.elapsed() < T, "{:?}", start.elapsed());
    assert!(jamd
        .stderr
        .wait_for("shutting down: 0 connection(s) open", T)
        .is_some());
    assert!(jamd.stderr.wait_for("stopped", T).is_some());
}

#[test]
fn sigint_stops_like_sigterm() {
    let mut jamd = Jamd::start("");
    jamd.signal("INT");
    jamd.exits_0(T);
}

#[test]
fn sigterm_drains_open_connections_then_tells_them_and_exits_0() {
    let mut jamd = Jamd::start("[server]\nshutdown_timeout = 2\n");
    let mut c = jamd.served_client();
    let start = Instant::now();
    jamd.signal("TERM");
    assert!(jamd
        .stderr
        .wait_for("shutting down: 1 connection(s) open", T)
        .is_some());
    // New clients are no longer accepted…
    wait_until(
        "the listener to close",
        T,
        || match std::net::TcpStream::connect(jamd.addr) {
            Ok(still) => Err(still),
            Err(_) => Ok(()),
        },
    );
    // …but the open one is served as usual during the grace period.
    c.time();
    c.told_and_closed("ERROR server shutting down");
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(1800), "{waited:?}");
    jamd.exits_0(T);
    assert!(jamd.stderr.wait_for("reason=shutdown", T).is_some());
}

#[test]
fn sigterm_exits_as_soon_as_the_last_client_leaves() {
    let mut jamd = Jamd::start("[server]\nshutdown_timeout = 30\n");
    let mut c = jamd.served_client();
    jamd.signal("TERM");
    assert!(jamd.stderr.wait_for("shutting down", T).is_some());
    let start = Instant::now();
    c.send(b"QUIT\r\n");
    jamd.exits_0(T);
    // Well before the 30 s grace period ends.
    assert!(start.elapsed() < T, "{:?}", start.elapsed());
}

#[test]
fn a_request_received_before_sigterm_is_answered_in_full() {
    let mut jamd = Jamd::start("[server]\nshutdown_timeout = 1\n");
    // Accepted first: a connection still in the listen queue at SIGTERM is
    // another promise (lifecycle.rs), not this one.
    let mut c = jamd.served_client();
    c.send(b"TIME\r\nTIME\r\nTIME\r\n");
    jamd.signal("TERM");
    for _ in 0..3 {
        assert!(jam_time(&c.line()).is_some());
    }
    assert_eq!(c.line(), "ERROR server shutting down");
    jamd.exits_0(T);
}

#[test]
fn sighup_applies_a_new_time_format_to_open_connections() {
    let (_jamd, mut c) = Jamd::reloaded_under(
        "[time]\nformat = \"%H:%M:%S\"\ntimezone = \"UTC\"\n",
        "[time]\nformat = \"day %j\"\ntimezone = \"UTC\"\n",
    );
    let reply = c.ask("TIME");
    assert!(reply.starts_with("JAM day "), "{reply}");
}

#[test]
fn sighup_applies_new_limits_without_dropping_anyone() {
    let (jamd, mut c) = Jamd::reloaded_under(
        "[server]\nmax_line_bytes = 100\n",
        "[server]\nmax_line_bytes = 8\nmax_connections = 1\n",
    );
    // The open connection stays, with the new line limit.
    c.time();
    let mut other = jamd.connect();
    assert_eq!(other.line(), "ERROR server busy");
    c.send(b"TIME TIME TIME\r\n");
    assert_eq!(c.line(), "ERROR line too long");
}

#[test]
fn sighup_setting_a_per_source_limit_counts_the_clients_already_connected() {
    let jamd = Jamd::start("[server]\nmax_connections_per_source = 0\n");
    let mut held: Vec<_> = (0..3).map(|_| jamd.connect()).collect();
    for c in &mut held {
        c.time();
    }
    jamd.reload("[server]\nmax_connections_per_source = 2\n");
    // Three clients of 127.0.0.1 were there before the limit of two: they
    // stay, and a fourth is refused.
    assert_eq!(jamd.connect().line(), "ERROR server busy");
    for c in &mut held {
        c.time();
    }
    // Two leave; with one left there is room for exactly one more.
    for mut c in held.drain(..2) {
        c.send(b"QUIT\r\n");
        assert!(c.closed());
    }
    let _again = jamd.served_client();
    assert_eq!(jamd.connect().line(), "ERROR server busy");
}

#[test]
fn sighup_with_a_broken_file_keeps_the_old_configuration() {
    let jamd = Jamd::start("[time]\nformat = \"%H:%M:%S\"\n");
    let mut c = jamd.connect();
    let line = jamd.reload_failing("[time]\nformat = \"%H:%\"\n");
    assert!(line.contains(":2:10: "), "names the place: {line}");
    assert!(
        line.ends_with("; keeping the previous configuration"),
        "{line}"
    );
    assert!(jam_time(&c.ask("TIME")).is_some(), "old format still used");
    // Still reloadable once fixed.
    jamd.reload("[time]\nformat = \"%H.%M\"\ntimezone = \"UTC\"\n");
    let reply = c.ask("TIME");
    let shown = reply
        .strip_prefix("JAM ")
        .and_then(|t| t.split_once('.'))
        .and_then(|(h, m)| Some((h.parse::<i64>().ok()?, m.parse::<i64>().ok()?)))
        .filter(|&(h, m)| h < 24 && m < 60 && reply.len() == "JAM 12.34".len())
        .unwrap_or_else(|| panic!("not the new %H.%M format: {reply}"));
    // The new file's zone (UTC) is in effect: within a minute of UTC now.
    let now = chrono::Utc::now().timestamp().rem_euclid(86_400) / 60;
    let diff = (shown.0 * 60 + shown.1 - now).rem_euclid(1440);
    assert!(diff <= 1 || diff == 1439, "{reply} is not UTC now");
}

#[test]
fn sighup_logs_that_a_port_change_needs_a_restart() {
    let jamd = Jamd::start("[server]\nbacklog = 10\n");
    jamd.reload("[server]\nbacklog = 20\nreuse_address = false\n");
    assert!(jamd
        .stderr
        .wait_for("server.backlog changed: restart", T)
        .is_some());
    assert!(jamd
        .stderr
        .wait_for("server.reuse_address changed: restart", T)
        .is_some());
    // Still listening where it was.
    jamd.connect().time();
}

#[test]
fn log_lines_reach_syslog_with_ident_facility_and_spec_text() {
    let sink = SyslogSink::bind("syslog-lines");
    let mut jamd = Jamd::start_syslog_only(&sink, "facility = \"local3\"\n");
    let pid = jamd.child.id();
    let mut c = jamd.connect();
    c.time();
    assert_eq!(c.ask("HUH"), "ERROR unknown command");
    c.send(b"\r\nQUIT\r\n");
    assert!(c.closed());
    let connected = sink
        .wait_for("connection from 127.0.0.1:", T)
        .expect("connect line");
    // local3 (19) * 8 + info (6) = 158
    assert!(connected.starts_with("<158>"), "{connected}");
    assert!(
        connected.contains(&format!("jamd[{pid}]: connection from 127.0.0.1:")),
        "{connected}"
    );
    let closed = sink.wait_for("closed 127.0.0.1:", T).expect("closed line");
    assert!(closed.contains(" requests=2 duration_ms="), "{closed}");
    assert!(closed.ends_with(" reason=quit"), "{closed}");
    kill_pid(pid, "HUP");
    assert!(sink.wait_for("configuration reloaded", T).is_some());
    kill_pid(pid, "TERM");
    assert!(sink
        .wait_for("shutting down: 0 connection(s) open", T)
        .is_some());
    assert!(sink.wait_for("stopped", T).is_some());
    assert!(jamd.wait_exit(T).is_some(), "jamd did not exit");
}

#[test]
fn connection_lines_can_be_turned_off() {
    let sink = SyslogSink::bind("syslog-quiet");
    let jamd = Jamd::start_syslog_only(&sink, "facility = \"local3\"\nconnections = false\n");
    let mut c = jamd.connect();
    c.time();
    c.send(b"QUIT\r\n");
    assert!(c.closed());
    // A line logged after the connection ended proves the sink got all that
    // came before it: none of it is a connection line.
    jamd.signal("HUP");
    let later = sink.collect_until("configuration reloaded", T);
    assert!(
        later
            .last()
            .is_some_and(|l| l.contains("configuration reloaded")),
        "no reload line: {later:?}"
    );
    assert!(
        later
            .iter()
            .all(|l| !l.contains("connection from") && !l.contains("closed ")),
        "{later:?}"
    );
}

#[test]
fn an_unreachable_syslog_is_said_once_on_stderr_then_stderr_is_used() {
    let missing = temp_dir("nosyslog").join("missing.sock");
    let jamd = Jamd::start_file(
        &syslog_config(missing.display(), ""),
        &LOOPBACK_FILE_LOG,
        &[],
    );
    let notice = jamd.stderr.wait_for("cannot reach syslog", T).unwrap();
    assert!(notice.contains("logging to stderr"), "{notice}");
    let _client = jamd.served_client();
    assert!(jamd
        .stderr
        .wait_for("connection from 127.0.0.1:", T)
        .is_some());
    assert_eq!(jamd.stderr.count("cannot reach syslog"), 1);
}

fn kill_pid(pid: u32, sig: &str) {
    assert!(Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

#[test]
fn sighup_moves_logging_to_a_new_target() {
    let sink = SyslogSink::bind("syslog-reload");
    let stderr_cfg = format!(
        "[log]\ntarget = \"stderr\"\nsyslog_socket = \"{}\"\n",
        sink.path.display()
    );
    let jamd = Jamd::start_file(&stderr_cfg, &LOOPBACK_FILE_LOG, &[]);
    jamd.write_config(&stderr_cfg.replace("\"stderr\"", "\"syslog\""));
    jamd.signal("HUP");
    assert!(sink.wait_for("configuration reloaded", T).is_some());
    let _client = jamd.served_client();
    assert!(sink.wait_for("connection from 127.0.0.1:", T).is_some());
    assert_eq!(
        jamd.stderr.count("connection from"),
        0,
        "{:?}",
        jamd.stderr.all()
    );
}
