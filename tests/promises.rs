//! Promises of the man pages that no other test exercised: each
//! test names the page and what it says, and checks it against the real
//! jamd on loopback, with real signals and real tools (`date`, `unshare`,
//! `systemd-socket-activate`).
//!
//! Time bounds are generous (a loaded 2-core machine): where a promise is
//! "at once", the bound is set against a grace period or timeout many times
//! longer, so that "at once" and "at the end" cannot be confused.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    free_port, jam_time, require_namespaces, slots, tcp_queues, temp_dir, wait_until, ChildGuard,
    Client, Jamd, Lines, SyslogSink, JAMD, LOOPBACK_ARGS,
};

const T: Duration = Duration::from_secs(15);

/// Reloads `text` once more and waits for that reload's line: the control
/// thread handles signals in turn, so every line an earlier reload logged
/// (its restart warnings come after its `configuration reloaded`) is then
/// in `jamd.stderr`.
fn sync_log(jamd: &Jamd, text: &str) {
    jamd.reload(text);
}

/// What `date` shows for `format` with this environment.
fn date(format: &str, env: &[(&str, &str)], unset_tz: bool) -> String {
    let mut cmd = Command::new("date");
    cmd.arg(format!("+{format}"));
    if unset_tz {
        cmd.env_remove("TZ");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run date");
    assert!(out.status.success(), "date failed: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

// ------------------------------------------------------------------------
// jamd.8, SIGNALS: SIGTERM and SIGINT.

/// Sends `signal` and checks that the open client `c` is told `ERROR
/// server shutting down` and closed, and that jamd exits 0, all far short
/// (under 60 s from `since`) of the 120 s grace period or idle timeout the
/// test configured.
fn ends_at_once(jamd: &mut Jamd, c: &mut Client, signal: &str, since: Instant) {
    jamd.signal(signal);
    c.told_and_closed("ERROR server shutting down");
    jamd.exits_0(T);
    let took = since.elapsed();
    assert!(took < Duration::from_secs(60), "not at once: {took:?}");
}

/// "A second SIGTERM or SIGINT ends the grace period at once."
fn second_signal_ends_the_grace_period(first: &str, second: &str) {
    let mut jamd = Jamd::start("[server]\nshutdown_timeout = 120\n");
    let mut c = jamd.served_client();
    let start = Instant::now();
    jamd.signal(first);
    assert!(jamd
        .stderr
        .wait_for("shutting down: 1 connection(s) open", T)
        .is_some());
    // Still in the grace period: served as usual.
    c.time();
    ends_at_once(&mut jamd, &mut c, second, start);
    assert!(jamd.stderr.wait_for("stopped", T).is_some());
}

#[test]
fn a_second_sigterm_ends_the_grace_period_at_once() {
    second_signal_ends_the_grace_period("TERM", "TERM");
}

#[test]
fn a_sigint_after_sigterm_ends_the_grace_period_at_once() {
    second_signal_ends_the_grace_period("TERM", "INT");
}

#[test]
fn a_second_sigint_ends_the_grace_period_at_once() {
    second_signal_ends_the_grace_period("INT", "INT");
}

/// jamd.toml.5: `shutdown_timeout = 0` gives no grace period: open
/// connections are told and closed at once.
#[test]
fn shutdown_timeout_0_closes_open_connections_at_once() {
    let mut jamd = Jamd::start("[server]\nshutdown_timeout = 0\nidle_timeout = 120\n");
    let mut c = jamd.served_client();
    ends_at_once(&mut jamd, &mut c, "TERM", Instant::now());
}

/// jamd.8: "A request already received is answered in full." With no
/// grace period at all, only a request that arrived before SIGTERM can be
/// answered: jamd is frozen (SIGSTOP) while the requests arrive and the
/// signal is sent, so both are there when it runs again.
#[test]
fn a_request_received_before_sigterm_is_answered_even_with_no_grace_period() {
    let mut jamd = Jamd::start("[server]\nshutdown_timeout = 0\n");
    let mut c = jamd.served_client();
    jamd.freeze();
    c.send(b"TIME\r\nTIME\r\n");
    // Both requests wait in jamd's receive queue before the signal.
    let (client, server) = (c.stream.local_addr().unwrap(), jamd.addr);
    wait_until(
        "the requests in frozen jamd's queue",
        T,
        || match tcp_queues(client, server) {
            Some((0, 12)) => Ok(()),
            other => Err(other),
        },
    );
    jamd.signal("TERM");
    jamd.signal("CONT");
    for _ in 0..2 {
        let reply = c.line();
        assert!(jam_time(&reply).is_some(), "{reply:?}");
    }
    c.told_and_closed("ERROR server shutting down");
    jamd.exits_0(T);
}

// ------------------------------------------------------------------------
// jamd.8, SIGNALS: SIGHUP.

/// jamd.toml.5: a reload changes `idle_timeout` "for the connections
/// already open as well as new ones" — shortened…
#[test]
fn a_reload_shortens_idle_timeout_for_connections_already_open() {
    let (_jamd, mut c) = Jamd::reloaded_under(
        "[server]\nidle_timeout = 300\n",
        "[server]\nidle_timeout = 1\n",
    );
    c.told_and_closed("ERROR idle timeout");
}

/// …and turned off (0).
#[test]
fn a_reload_turns_idle_timeout_off_for_connections_already_open() {
    let (_jamd, mut c) = Jamd::reloaded_under(
        "[server]\nidle_timeout = 3\n",
        "[server]\nidle_timeout = 0\n",
    );
    // Twice the old timeout: still open, still served.
    assert!(c.still_open_after(Duration::from_secs(6)));
    c.time();
}

/// The same for `shutdown_timeout`: the reloaded value is the grace
/// period the open connection gets.
#[test]
fn a_reload_changes_shutdown_timeout_for_connections_already_open() {
    let (mut jamd, mut c) = Jamd::reloaded_under(
        "[server]\nshutdown_timeout = 120\n",
        "[server]\nshutdown_timeout = 1\n",
    );
    ends_at_once(&mut jamd, &mut c, "TERM", Instant::now());
}

/// jamd.8: "Options given on the command line keep overriding the file
/// across reloads" — and a reload does not mistake them for changes.
#[test]
fn command_line_options_survive_a_reload_without_a_changed_warning() {
    let port = free_port();
    let file = format!(
        "[server]\nport = {port}\nbind = [\"127.0.0.2\"]\n\
         [log]\ntarget = \"syslog\"\nsyslog_socket = \"/nonexistent/log.sock\"\n"
    );
    // Jamd::start gives -p 0 -b 127.0.0.1 --log stderr.
    let jamd = Jamd::start(&file);
    let addr = jamd.addr;
    let changed = file.replace("[log]", "[time]\nformat = \"%H:%M\"\n[log]");
    jamd.reload(&changed);
    sync_log(&jamd, &changed);
    let log = jamd.stderr.all();
    assert!(
        !log.iter().any(|l| l.contains("changed: restart")),
        "a false restart warning: {log:#?}"
    );
    // --log stderr still wins (the reload line came on stderr), and so do
    // -p and -b: the same address serves, with the new format.
    let reply = Client::connect(addr).ask("TIME");
    assert!(
        reply.len() == "JAM 12:34".len() && jam_time(&format!("{reply}:00")).is_some(),
        "{reply}"
    );
    assert!(
        !log.iter().any(|l| l.contains("cannot reach syslog")),
        "{log:#?}"
    );
}

/// jamd.8: a changed port, bind or workers "is logged as needing a restart
/// and does not take effect until then".
#[test]
fn a_changed_port_bind_or_workers_is_logged_as_needing_a_restart() {
    let port = free_port();
    let file = |port: u16, bind: &str, workers: u32| {
        format!("[server]\nport = {port}\nbind = [{bind}]\nworkers = {workers}\n")
    };
    let jamd = Jamd::start_file(&file(port, "\"127.0.0.1\"", 1), &["--log", "stderr"], &[]);
    assert_eq!(jamd.addr, SocketAddr::from(([127, 0, 0, 1], port)));
    let other = free_port();
    jamd.reload(&file(other, "\"127.0.0.1\", \"127.0.0.2\"", 2));
    for key in ["port", "bind", "workers"] {
        let warning = format!("warning: server.{key} changed: restart jamd for it to take effect");
        assert!(
            jamd.stderr.wait_for(&warning, T).is_some(),
            "no `{warning}`: {:#?}",
            jamd.stderr.all()
        );
    }
    // Not in effect: the old address serves, the new ones do not.
    assert!(jam_time(&Client::connect(jamd.addr).ask("TIME")).is_some());
    assert!(TcpStream::connect(("127.0.0.1", other)).is_err());
    assert!(TcpStream::connect(("127.0.0.2", port)).is_err());
}

// ------------------------------------------------------------------------
// jamd.toml.5, [server]: every limit with two workers (the per-source
// table and the open count are shared between them).

const TWO: &str = "[server]\nworkers = 2\n";

/// Starts two workers with the limit `key = n`, holds its `n` slots from
/// 127.0.0.1, and checks that newcomers from there are refused, whichever
/// worker takes them.
fn full_on_two_workers(key: &str, n: usize) -> (Jamd, Vec<Client>) {
    let jamd = Jamd::start(&format!("{TWO}{key} = {n}\n"));
    let held = slots::hold(&jamd, n);
    for _ in 0..6 {
        slots::assert_refused(jamd.connect());
    }
    (jamd, held)
}

#[test]
fn max_connections_holds_across_two_workers() {
    let (jamd, mut held) = full_on_two_workers("max_connections", 3);
    // A freed place goes to the next client.
    slots::assert_slot_comes_back(&jamd, held.pop().unwrap());
}

#[test]
fn max_connections_per_source_holds_across_two_workers() {
    let (jamd, mut held) = full_on_two_workers("max_connections_per_source", 2);
    // Another source still gets in, on either worker.
    for _ in 0..2 {
        let mut other = Client::connect_from("127.0.0.2", jamd.addr);
        other.time();
        held.push(other);
    }
    let mut third = Client::connect_from("127.0.0.2", jamd.addr);
    assert_eq!(third.line(), "ERROR server busy");
}

#[test]
fn idle_timeout_and_max_line_bytes_hold_on_both_workers() {
    let jamd = Jamd::start(&format!("{TWO}idle_timeout = 2\nmax_line_bytes = 8\n"));
    // Enough clients that both workers get some.
    let mut idle: Vec<Client> = (0..6).map(|_| jamd.connect()).collect();
    let mut long: Vec<Client> = (0..6).map(|_| jamd.connect()).collect();
    for c in &mut long {
        c.send(b"TIME     \r\n");
        c.told_and_closed("ERROR line too long");
    }
    for c in &mut idle {
        c.told_and_closed("ERROR idle timeout");
    }
}

#[test]
fn connection_rate_per_source_holds_across_two_workers() {
    let jamd = Jamd::start(&format!(
        "{TWO}connection_rate_per_source = 1\nconnection_burst_per_source = 3\n"
    ));
    // A burst of 3, then refusals (1 a second refills far slower than we
    // connect); each connection is closed before the next.
    let mut answers = Vec::new();
    for _ in 0..8 {
        let mut c = jamd.connect();
        c.send(b"TIME\r\n");
        answers.push(c.line());
    }
    let served = answers.iter().filter(|a| jam_time(a).is_some()).count();
    let limited = answers
        .iter()
        .filter(|a| *a == "ERROR rate limited")
        .count();
    assert_eq!(served + limited, answers.len(), "{answers:?}");
    // The burst, plus what refilled while we connected (a slow machine).
    assert!((3..=5).contains(&served), "{answers:?}");
    // Another source has its own bucket.
    Client::connect_from("127.0.0.2", jamd.addr).time();
}

/// jamd.8, LOGGING: "At most one refusal line is logged a second, for all
/// reasons together", the rest counted in `refused N more connection(s)`,
/// logged before `stopped` — with two workers refusing at once.
#[test]
fn refusal_lines_are_rate_limited_and_counted_across_two_workers() {
    let mut jamd = Jamd::start(&format!("{TWO}max_connections = 1\n"));
    let mut holder = jamd.served_client();
    let start = Instant::now();
    let refused = 30;
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..refused / 3 {
                    let mut c = jamd.connect();
                    assert_eq!(c.line(), "ERROR server busy");
                }
            });
        }
    });
    let took = start.elapsed();
    jamd.signal("TERM");
    holder.send(b"QUIT\r\n");
    jamd.exits_0(T);
    assert!(jamd.stderr.wait_for("stopped", T).is_some());
    let log = jamd.stderr.all();
    let lines = log
        .iter()
        .filter(|l| l.contains("refused 127.0.0.1:"))
        .count();
    let more: usize = log
        .iter()
        .filter_map(|l| {
            let rest = l.split("refused ").nth(1)?;
            // `refused N more connection(s): N server busy`
            Some(rest.split_once(" more connection(s)")?.0)
        })
        .map(|n| n.parse::<usize>().unwrap())
        .sum();
    assert_eq!(lines + more, refused, "{log:#?}");
    let seconds = usize::try_from(took.as_secs()).unwrap() + 2;
    assert!(
        lines <= seconds,
        "{lines} refusal lines in {took:?}: {log:#?}"
    );
    let stopped = log.iter().position(|l| l.ends_with("stopped")).unwrap();
    assert!(
        log.iter()
            .rposition(|l| l.contains(" more connection(s)"))
            .is_none_or(|i| i < stopped),
        "{log:#?}"
    );
}

// ------------------------------------------------------------------------
// jamd.8, LOGGING.

/// `log.target = "both"`: every line to syslog and to standard error.
#[test]
fn log_target_both_writes_each_line_to_syslog_and_stderr() {
    let sink = SyslogSink::bind("both");
    let jamd = Jamd::start_file(
        &format!(
            "[server]\nport = 0\nbind = [\"127.0.0.1\"]\n[log]\ntarget = \"both\"\n\
             connections = true\nsyslog_socket = \"{}\"\n",
            sink.path.display()
        ),
        &[],
        &[],
    );
    assert!(sink.wait_for("listening on 127.0.0.1:", T).is_some());
    let mut c = jamd.connect();
    let me = c.stream.local_addr().unwrap();
    c.time();
    let line = format!("connection from {me}");
    assert!(
        jamd.stderr.wait_for(&line, T).is_some(),
        "{:#?}",
        jamd.stderr.all()
    );
    assert!(sink.wait_for(&line, T).is_some(), "not on syslog: {line}");
}

/// `log.level = "warn"`: lines below the level are not logged; a warning
/// is, with its `warning:` prefix on stderr.
#[test]
fn log_level_warn_leaves_out_information() {
    let port = free_port();
    let file = |port: u16| {
        format!(
            "[server]\nport = {port}\nbind = [\"127.0.0.1\"]\n\
             [log]\nlevel = \"warn\"\nconnections = true\n"
        )
    };
    let dir = temp_dir("level");
    let path = dir.join("jamd.toml");
    std::fs::write(&path, file(port)).unwrap();
    let mut child = ChildGuard::spawn(
        Command::new(JAMD)
            .arg("-c")
            .arg(&path)
            .args(["--log", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let stderr = Lines::collect(child.stderr.take().unwrap());
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = wait_until(&format!("jamd to listen on {addr}"), T, || {
        TcpStream::connect(addr).map_err(|e| (e, stderr.all()))
    });
    let mut c = Client::from_stream(stream);
    c.time();
    c.send(b"QUIT\r\n");
    assert!(c.closed());
    // A warning (a restart-only change) comes after the connection's lines
    // would have: once it is there, they would be too.
    std::fs::write(&path, file(free_port())).unwrap();
    child.signal(libc::SIGHUP);
    let warning = stderr
        .wait_for("server.port changed", T)
        .unwrap_or_else(|| panic!("no warning: {:#?}", stderr.all()));
    assert!(warning.starts_with("jamd: warning: "), "{warning}");
    let all = stderr.all();
    for info in [
        "listening on",
        "connection from",
        "closed ",
        "configuration reloaded",
    ] {
        assert!(
            !all.iter().any(|l| l.contains(info)),
            "{info:?} at level warning: {all:#?}"
        );
    }
}

/// `log.level = "debug"` shows what info does not, marked `debug:`.
#[test]
fn log_level_debug_adds_debug_lines() {
    let jamd = Jamd::start("[log]\nlevel = \"debug\"\n");
    jamd.reload("[log]\nlevel = \"debug\"\n[time]\nformat = \"%H:%M\"\n");
    let line = jamd
        .stderr
        .wait_for("jamd: debug: ", T)
        .unwrap_or_else(|| panic!("no debug line: {:#?}", jamd.stderr.all()));
    assert!(line.starts_with("jamd: debug: "), "{line}");
    // And at the default level, none.
    let quiet = Jamd::start("");
    quiet.reload("[time]\nformat = \"%H:%M\"\n");
    assert_eq!(quiet.stderr.count("debug:"), 0, "{:#?}", quiet.stderr.all());
}

/// Errors carry `error:` on stderr (a failed reload is one).
#[test]
fn errors_on_stderr_carry_the_error_prefix() {
    let line = Jamd::start("").reload_failing("[server\n");
    assert!(line.starts_with("jamd: error: reload failed: "), "{line}");
}

// ------------------------------------------------------------------------
// jamd.toml.5, time.timezone, and jamd.8, ENVIRONMENT.

fn zone_offset(jamd: &Jamd) -> String {
    let reply = jamd.connect().ask("TIME");
    reply
        .strip_prefix("JAM ")
        .unwrap_or_else(|| panic!("{reply}"))
        .to_owned()
}

/// `TZDIR`: IANA names are read from there instead of /usr/share/zoneinfo.
#[test]
fn tzdir_is_where_zone_names_are_looked_up() {
    let kathmandu = Path::new("/usr/share/zoneinfo/Asia/Kathmandu");
    if !kathmandu.exists() {
        skip!(
            "no tzdata: {} is missing (apt-get install tzdata)",
            kathmandu.display()
        );
    }
    let zones = temp_dir("tzdir");
    std::fs::create_dir_all(zones.join("Test")).unwrap();
    std::fs::copy(kathmandu, zones.join("Test/Here")).unwrap();
    let jamd = Jamd::start_file(
        "[time]\ntimezone = \"Test/Here\"\nformat = \"%z\"\n",
        &LOOPBACK_ARGS,
        &[("TZDIR", zones.to_str().unwrap())],
    );
    assert_eq!(zone_offset(&jamd), "+0545");
}

/// A POSIX `TZ` with its daylight-saving rules, as date(1) reads it.
#[test]
fn a_posix_tz_with_rules_is_read_as_date_reads_it() {
    // The US rule and a southern one, so one of them is in DST today.
    for tz in ["EST5EDT,M3.2.0,M11.1.0", "<-03>3<-02>,M10.1.0,M2.3.0"] {
        let jamd = Jamd::start_file(
            "[time]\ntimezone = \"local\"\nformat = \"%z\"\n",
            &LOOPBACK_ARGS,
            &[("TZ", tz)],
        );
        let shown = zone_offset(&jamd);
        assert_eq!(shown, date("%z", &[("TZ", tz)], false), "TZ={tz}");
    }
}

/// Without `TZ`, "local" is the zone of /etc/localtime. A private mount
/// namespace puts a known zone there (needs root for unshare).
#[test]
fn without_tz_local_time_is_that_of_etc_localtime() {
    let kolkata = "/usr/share/zoneinfo/Asia/Kolkata";
    if !Path::new(kolkata).exists() {
        skip!("no tzdata: {kolkata} is missing (apt-get install tzdata)");
    }
    if !require_namespaces("-m") {
        return;
    }
    let dir = temp_dir("localtime");
    let cfg = dir.join("jamd.toml");
    std::fs::write(&cfg, "[time]\ntimezone = \"local\"\nformat = \"%z\"\n").unwrap();
    // /etc/localtime may be a symlink: bind over what it points to.
    let script = format!(
        "target=$(readlink -f /etc/localtime 2>/dev/null || echo /etc/localtime); \
         [ -e \"$target\" ] || {{ touch /etc/localtime; target=/etc/localtime; }}; \
         mount --bind {kolkata} \"$target\" && exec {JAMD} -c {} -p 0 -b 127.0.0.1 --log stderr",
        cfg.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", &script]).env_remove("TZ");
    let jamd = Jamd::spawn(cmd, dir, cfg);
    assert_eq!(zone_offset(&jamd), "+0530");
}

// ------------------------------------------------------------------------
// jamd.8, socket activation.

/// Runs jamd with `fds` as descriptors 3, 4, … and LISTEN_FDS/LISTEN_PID
/// naming them (through `sh`, whose pid jamd keeps by exec).
#[allow(unsafe_code)] // pre_exec(2) to place the passed descriptors
fn start_activated(fds: Vec<std::os::fd::OwnedFd>, config: &str) -> (ChildGuard, Lines) {
    use std::os::fd::AsRawFd;
    let dir = temp_dir("activated");
    let cfg = dir.join("jamd.toml");
    std::fs::write(&cfg, config).unwrap();
    let n = fds.len();
    let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        &format!(
            "LISTEN_PID=$$ LISTEN_FDS={n} exec {JAMD} -c {} --log stderr",
            cfg.display()
        ),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    // SAFETY: between fork and exec only dup2/fcntl, which are
    // async-signal-safe; the raw descriptors stay open in the parent (`fds`)
    // until spawn returns. Sources are first moved above the targets so that
    // no dup2 overwrites a source still to be copied.
    unsafe {
        cmd.pre_exec(move || {
            let mut moved = Vec::with_capacity(raw.len());
            for &fd in &raw {
                let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100);
                if high < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                moved.push(high);
            }
            for (target, &fd) in (3..).zip(&moved) {
                if libc::dup2(fd, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = ChildGuard::spawn(&mut cmd);
    drop(fds);
    let lines = Lines::collect(child.stderr.take().unwrap());
    (child, lines)
}

fn listener() -> (std::os::fd::OwnedFd, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    (l.into(), addr)
}

/// Good and bad descriptors mixed: jamd serves the good ones and names
/// each bad one in a warning.
#[test]
fn socket_activation_with_good_and_bad_descriptors_mixed() {
    let (good1, addr1) = listener();
    let (good2, addr2) = listener();
    let udp: std::os::fd::OwnedFd = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().into();
    let file: std::os::fd::OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    // fd 3 good, 4 a UDP socket, 5 good, 6 not a socket.
    let (_jamd, stderr) = start_activated(vec![good1, udp, good2, file], "");
    // N counts the sockets used, not the 4 LISTEN_FDS passed: the warnings
    // below name the ones left out.
    assert!(
        stderr
            .wait_for("using 2 socket(s) from the service manager", T)
            .is_some(),
        "{:#?}",
        stderr.all()
    );
    for fd in [4, 6] {
        let needle = format!("passed descriptor {fd} ");
        let line = stderr
            .wait_for(&needle, T)
            .unwrap_or_else(|| panic!("descriptor {fd} not named: {:#?}", stderr.all()));
        assert!(
            line.contains("warning: ") && line.ends_with("skipping it"),
            "{line}"
        );
    }
    for addr in [addr1, addr2] {
        assert!(jam_time(&Client::connect(addr).ask("TIME")).is_some());
    }
}

/// Under socket activation, SIGHUP reloads and SIGTERM drains as usual.
#[test]
fn reload_and_drain_under_socket_activation() {
    let (fd, addr) = listener();
    let (mut jamd, stderr) = start_activated(vec![fd], "[server]\nshutdown_timeout = 2\n");
    assert!(stderr.wait_for("from the service manager", T).is_some());
    let mut c = Client::connect(addr);
    c.time();
    // The config path is in the command line: find it from /proc.
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", jamd.pid())).unwrap();
    let cfg = cmdline
        .split('\0')
        .skip_while(|a| *a != "-c")
        .nth(1)
        .expect("-c FILE")
        .to_owned();
    let mark = stderr.mark();
    std::fs::write(
        &cfg,
        "[server]\nshutdown_timeout = 2\n[time]\nformat = \"%H:%M\"\n",
    )
    .unwrap();
    jamd.signal(libc::SIGHUP);
    assert!(stderr
        .wait_for_after(mark, "configuration reloaded", T)
        .is_some());
    let reply = c.ask("TIME");
    assert_eq!(reply.len(), "JAM 12:34".len(), "{reply}");
    assert!(jam_time(&format!("{reply}:00")).is_some(), "{reply}");
    // Drain: the open client is served during the grace period, then told.
    jamd.signal(libc::SIGTERM);
    assert!(stderr
        .wait_for("shutting down: 1 connection(s) open", T)
        .is_some());
    assert!(c.ask("TIME").starts_with("JAM "));
    c.told_and_closed("ERROR server shutting down");
    let status = jamd.wait_timeout(T).expect("jamd did not exit");
    assert_eq!(status.code(), Some(0));
    // The passed listener is closed: nothing serves there any more.
    assert!(TcpStream::connect(addr).is_err());
}
