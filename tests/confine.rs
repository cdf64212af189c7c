//! What jamd gives up once it runs (jamd.8, CONFINEMENT), read from the
//! outside on a real jamd: the system-call filter in /proc on every thread
//! (and its absence with `sandbox = false`), a call outside the list failing
//! with EPERM while jamd goes on, root given up for `server.user`, the
//! configuration errors and warnings around it, and the open-file limit.
//!
//! The tests run as root, as CI does; those that need root say so when not.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    check_config, require_tool, run_within, temp_dir, write_file, ChildGuard, Jamd, JAMD,
    LOOPBACK_ARGS,
};

const T: Duration = Duration::from_secs(10);

/// The value of `field` in /proc/PID/status (or a task's), trimmed.
fn status_field(status_path: &str, field: &str) -> String {
    let text = std::fs::read_to_string(status_path)
        .unwrap_or_else(|e| panic!("cannot read {status_path}: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status_path}:\n{text}"))
        .trim()
        .to_owned()
}

/// `field` of /proc/PID/status.
fn status(pid: i32, field: &str) -> String {
    status_field(&format!("/proc/{pid}/status"), field)
}

/// Each thread's name and `field` of its status.
fn every_thread(pid: i32, field: &str) -> Vec<(String, String)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .flatten()
        .map(|t| {
            let path = format!("{}/status", t.path().display());
            (status_field(&path, "Name"), status_field(&path, field))
        })
        .collect()
}

/// Waits until start-up is over: the control loop answers SIGUSR1 only
/// once every thread runs and the filter (if any) is installed.
fn wait_until_started(jamd: &Jamd) {
    let mark = jamd.stderr.mark();
    jamd.signal("USR1");
    jamd.stderr
        .wait_for_after(mark, "status: ", T)
        .unwrap_or_else(|| panic!("no status line: {:#?}", jamd.log()));
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
        .unwrap_or(false)
}

/// Tests that need root: recorded as skipped elsewhere (a failure under
/// CI, which runs as root).
fn require_root() -> bool {
    if !is_root() {
        common::skip::record_skip("not root: the user change needs root");
        return false;
    }
    true
}

/// The numeric id `id -u NAME` / `id -g NAME` gives.
fn id_of(flag: &str, name: &str) -> String {
    let out = Command::new("id").args([flag, name]).output().unwrap();
    assert!(out.status.success(), "id {flag} {name}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn by_default_every_thread_runs_under_the_filter_with_no_new_privs() {
    let mut jamd = Jamd::start("[metrics]\nlisten = \"127.0.0.1:0\"\n");
    jamd.stderr
        .wait_for("metrics at ", T)
        .expect("metrics thread started");
    wait_until_started(&jamd);
    assert_eq!(status(jamd.pid(), "Seccomp"), "2");
    assert_eq!(status(jamd.pid(), "NoNewPrivs"), "1");
    // Served under the filter.
    assert!(jamd.connect().ask("TIME").starts_with("JAM "));
    let threads = every_thread(jamd.pid(), "Seccomp");
    // main, the log, one worker and the metrics thread.
    assert!(threads.len() >= 4, "{threads:?}");
    for (name, mode) in &threads {
        assert_eq!(mode, "2", "thread {name} is not filtered: {threads:?}");
    }
    assert_eq!(jamd.stop(), Some(0), "{:#?}", jamd.log());
}

#[test]
fn sandbox_false_leaves_jamd_unfiltered() {
    let mut jamd = Jamd::start("[server]\nsandbox = false\n");
    wait_until_started(&jamd);
    assert!(jamd.connect().ask("TIME").starts_with("JAM "));
    assert_eq!(status(jamd.pid(), "Seccomp"), "0");
    assert_eq!(status(jamd.pid(), "NoNewPrivs"), "0");
    assert_eq!(jamd.stop(), Some(0));
}

#[test]
fn the_inetd_stream_path_is_filtered_too() {
    let cfg = write_file(
        &temp_dir("confine"),
        "jamd.toml",
        "[time]\nformat = \"%Y\"\n",
    );
    let (mine, theirs) = UnixStream::pair().unwrap();
    let theirs_out = theirs.try_clone().unwrap();
    let mut jamd = ChildGuard::spawn(
        Command::new(JAMD)
            .args(["--inetd", "-c", &cfg, "--log", "stderr"])
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs_out)))
            .stderr(Stdio::null()),
    );
    mine.set_read_timeout(Some(T)).unwrap();
    let mut reader = BufReader::new(mine.try_clone().unwrap());
    let mut w = mine;
    w.write_all(b"TIME\r\n").unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("JAM "), "{line:?}");
    assert_eq!(status(jamd.pid(), "Seccomp"), "2");
    assert_eq!(status(jamd.pid(), "NoNewPrivs"), "1");
    w.write_all(b"QUIT\r\n").unwrap();
    assert_eq!(jamd.exit_code(T), Some(0));
}

/// Debug builds answer `JAMD_TEST_PROBE` on each reload by trying to
/// create a file and run a program, neither of which jamd needs.
#[cfg(debug_assertions)]
#[test]
fn a_call_outside_the_list_fails_with_eperm_and_jamd_serves_on() {
    for sandbox in [true, false] {
        let dir = temp_dir("probe");
        let probe = dir.join("created-by-jamd");
        let probe_env = probe.to_string_lossy().into_owned();
        let config = format!("[server]\nsandbox = {sandbox}\n");
        let mut jamd =
            Jamd::start_file(&config, &LOOPBACK_ARGS, &[("JAMD_TEST_PROBE", &probe_env)]);
        let mark = jamd.reload(&format!("{config}[time]\nformat = \"%Y\"\n"));
        let log = jamd.log()[mark..].join("\n");
        if sandbox {
            assert!(
                log.contains(&format!(
                    "warning: debug probe: cannot create {probe_env}: Operation not permitted"
                )),
                "{log}"
            );
            assert!(
                log.contains("warning: debug probe: cannot run /bin/true: Operation not permitted"),
                "{log}"
            );
            assert!(!probe.exists(), "the filter let jamd create {probe_env}");
        } else {
            // The same probe without the filter: the test can fail.
            assert!(log.contains("debug probe: created"), "{log}");
            assert!(log.contains("debug probe: ran /bin/true"), "{log}");
            assert!(probe.exists());
        }
        // jamd goes on, with the reloaded configuration.
        let reply = jamd.connect().ask("TIME");
        assert_eq!(reply.len(), "JAM 2026".len(), "{reply}");
        jamd.signal("USR1");
        jamd.stderr.wait_for("status: ", T).expect("a status line");
        assert_eq!(jamd.stop(), Some(0), "{:#?}", jamd.log());
    }
}

/// A free TCP port below 1024 on 127.0.0.1, as root finds one now.
fn free_privileged_port() -> u16 {
    let start = 600 + (std::process::id() % 300) as u16;
    (start..1024)
        .chain(600..start)
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port below 1024")
}

#[test]
fn started_as_root_with_user_nobody_it_binds_a_low_port_then_gives_up_root() {
    if !require_root() {
        return;
    }
    let port = free_privileged_port();
    let config = "[server]\nuser = \"nobody\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n";
    let mut jamd = Jamd::start_file(
        config,
        &[
            "-p",
            &port.to_string(),
            "-b",
            "127.0.0.1",
            "--log",
            "stderr",
        ],
        &[],
    );
    assert_eq!(jamd.port, port);
    let uid = id_of("-u", "nobody");
    let gid = id_of("-g", "nobody");
    let group = id_of("-gn", "nobody");
    let line = jamd
        .stderr
        .wait_for("running as ", T)
        .unwrap_or_else(|| panic!("no `running as` line: {:#?}", jamd.log()));
    assert!(
        line.ends_with(&format!("running as nobody:{group}")),
        "{line}"
    );
    let pid = jamd.pid();
    let ids = |field| {
        status(pid, field)
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids("Uid"),
        [uid.clone(), uid.clone(), uid.clone(), uid.clone()]
    );
    assert_eq!(ids("Gid"), [gid.clone(), gid.clone(), gid.clone(), gid]);
    assert_eq!(status(pid, "Groups"), "");
    wait_until_started(&jamd);
    assert_eq!(status(pid, "Seccomp"), "2");
    // Every thread, the log thread started before the change included.
    let threads = every_thread(pid, "Uid");
    assert!(threads.len() >= 4, "{threads:?}");
    for (name, uids) in &threads {
        let want = format!("{uid}\t{uid}\t{uid}\t{uid}");
        assert_eq!(uids, &want, "thread {name}: {threads:?}");
    }
    // Serving, reloading (the file is readable by nobody: no warning) and
    // stopping as nobody.
    assert!(jamd.connect().ask("TIME").starts_with("JAM "));
    jamd.reload(config);
    let log = jamd.log();
    assert!(!log.iter().any(|l| l.contains("cannot read")), "{log:#?}");
    assert!(
        !log.iter().any(|l| l.contains("running as root")),
        "{log:#?}"
    );
    assert_eq!(jamd.stop(), Some(0), "{:#?}", jamd.log());
}

#[test]
fn a_configuration_file_the_user_cannot_read_is_warned_about_at_start() {
    if !require_root() {
        return;
    }
    let dir = temp_dir("unreadable");
    let path = write_file(&dir, "jamd.toml", "[server]\nuser = \"nobody\"\n");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut cmd = Command::new(JAMD);
    cmd.arg("-c").arg(&path).args(LOOPBACK_ARGS);
    let mut jamd = Jamd::spawn(cmd, dir, path.clone().into());
    let warning = jamd
        .stderr
        .wait_for("cannot read", T)
        .unwrap_or_else(|| panic!("no warning: {:#?}", jamd.log()));
    assert!(
        warning.starts_with("jamd: warning: nobody cannot read ")
            && warning.contains(&path)
            && warning.contains("a reload (SIGHUP) would fail"),
        "{warning}"
    );
    assert_eq!(jamd.stop(), Some(0));
}

#[test]
fn started_as_root_without_user_it_warns_that_it_runs_as_root() {
    if !require_root() {
        return;
    }
    let mut jamd = Jamd::start("");
    let log = jamd.log();
    let warning = log
        .iter()
        .find(|l| l.contains("running as root"))
        .unwrap_or_else(|| panic!("no warning: {log:#?}"));
    assert!(
        warning.starts_with("jamd: warning: running as root: set server.user"),
        "{warning}"
    );
    assert_eq!(jamd.stop(), Some(0));
}

#[test]
fn an_unknown_user_or_group_is_a_configuration_error_naming_the_key() {
    for (config, key, name) in [
        (
            "user = \"no-such-jamd-user\"\n",
            "server.user",
            "no-such-jamd-user",
        ),
        (
            "user = \"nobody\"\ngroup = \"no-such-jamd-group\"\n",
            "server.group",
            "no-such-jamd-group",
        ),
    ] {
        let config = format!("[server]\n{config}");
        let dir = temp_dir("unknown");
        let path = write_file(&dir, "jamd.toml", &config);
        let (code, _, err) = run_within(
            Command::new(JAMD).arg("-c").arg(&path).args(LOOPBACK_ARGS),
            T,
        );
        assert_eq!(code, Some(78), "{err}");
        assert!(
            err.starts_with(&format!("jamd: {key}: no ")) && err.contains(&format!("{name:?}")),
            "{err}"
        );
        // Nothing was bound or served first.
        assert!(!err.contains("listening on"), "{err}");
        // jamd -t finds it too.
        let checked = check_config(&config, &[]);
        assert_eq!(checked.code, Some(78), "{checked:?}");
        assert!(checked.err.contains(key), "{checked:?}");
    }
}

#[test]
fn started_as_another_user_it_cannot_become_a_different_one() {
    if !require_root() {
        return;
    }
    let nobody: u32 = id_of("-u", "nobody").parse().unwrap();
    let nogroup: u32 = id_of("-g", "nobody").parse().unwrap();
    let dir = temp_dir("other");
    let path = write_file(&dir, "jamd.toml", "[server]\nuser = \"daemon\"\n");
    let (code, _, err) = run_within(
        Command::new(JAMD)
            .arg("-c")
            .arg(&path)
            .args(LOOPBACK_ARGS)
            .uid(nobody)
            .gid(nogroup),
        T,
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.starts_with("jamd: server.user: jamd runs as nobody, not root"),
        "{err}"
    );
    // The user it already is: nothing to change, no error.
    let path = write_file(&dir, "same.toml", "[server]\nuser = \"nobody\"\n");
    let mut cmd = Command::new(JAMD);
    cmd.arg("-c")
        .arg(&path)
        .args(LOOPBACK_ARGS)
        .uid(nobody)
        .gid(nogroup);
    let mut jamd = Jamd::spawn(cmd, temp_dir("other-same"), path.into());
    assert!(jamd.connect().ask("TIME").starts_with("JAM "));
    assert_eq!(jamd.stop(), Some(0), "{:#?}", jamd.log());
}

/// `Max open files` of /proc/PID/limits: (soft, hard).
fn open_file_limits(pid: i32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    let mut words = line["Max open files".len()..].split_whitespace();
    (
        words.next().unwrap().to_owned(),
        words.next().unwrap().to_owned(),
    )
}

/// Starts jamd with `config` under `prlimit --nofile=256:4096`.
fn under_low_limit(config: &str) -> Option<Jamd> {
    let prlimit = require_tool("prlimit")?;
    let dir = temp_dir("nofile");
    let path = write_file(&dir, "jamd.toml", config);
    let mut cmd = Command::new(prlimit);
    cmd.args(["--nofile=256:4096", "--", JAMD, "-c", &path])
        .args(LOOPBACK_ARGS);
    Some(Jamd::spawn(cmd, dir, path.into()))
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let Some(mut jamd) = under_low_limit("") else {
        return;
    };
    assert_eq!(
        open_file_limits(jamd.pid()),
        ("4096".to_owned(), "4096".to_owned())
    );
    // 1024 clients fit under 4096: no warning.
    wait_until_started(&jamd);
    let log = jamd.log();
    assert!(
        !log.iter().any(|l| l.contains("open-file limit")),
        "{log:#?}"
    );
    assert_eq!(jamd.stop(), Some(0));
}

#[test]
fn max_connections_above_the_open_file_limit_is_warned_about_once() {
    let Some(mut jamd) = under_low_limit("[server]\nmax_connections = 5000\n") else {
        return;
    };
    jamd.reload("[server]\nmax_connections = 5000\n");
    let log = jamd.log();
    let warnings: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("open-file limit"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log:#?}");
    let w = warnings[0];
    assert!(
        w.starts_with("jamd: warning: server.max_connections (5000) plus jamd's own ")
            && w.contains("above the open-file limit (4096)")
            && w.contains("LimitNOFILE=")
            && w.contains("ulimit -n"),
        "{w}"
    );
    assert_eq!(jamd.stop(), Some(0));
}

#[test]
fn the_keys_are_shown_by_jamd_t_and_bad_values_name_the_key() {
    let checked = check_config("", &[]);
    assert_eq!(checked.code, Some(0), "{checked:?}");
    for line in ["user = \"\"", "group = \"\"", "sandbox = true"] {
        assert!(
            checked.out.lines().any(|l| l == line),
            "jamd -t does not show {line}: {}",
            checked.out
        );
    }
    for (config, key) in [
        ("[server]\nuser = \"two words\"\n", "server.user"),
        ("[server]\nuser = 0\n", "server.user"),
        ("[server]\ngroup = \"a:b\"\n", "server.group"),
        ("[server]\nsandbox = \"yes\"\n", "server.sandbox"),
        ("[server]\ngroup = \"nogroup\"\n", "server.group"),
    ] {
        let checked = check_config(config, &[]);
        assert_eq!(checked.code, Some(78), "{config}: {checked:?}");
        assert!(checked.err.contains(key), "{config}: {checked:?}");
    }
}

#[test]
fn server_group_chooses_the_group_instead_of_the_users_own() {
    if !require_root() {
        return;
    }
    let config = "[server]\nuser = \"nobody\"\ngroup = \"daemon\"\n";
    let mut jamd = Jamd::start(config);
    let gid = Command::new("getent")
        .args(["group", "daemon"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split(':')
                .nth(2)
                .unwrap_or("")
                .to_owned()
        })
        .unwrap();
    jamd.stderr
        .wait_for("running as nobody:daemon", T)
        .unwrap_or_else(|| panic!("no `running as` line: {:#?}", jamd.log()));
    let gids: Vec<String> = status(jamd.pid(), "Gid")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(gids, [gid.clone(), gid.clone(), gid.clone(), gid]);
    assert_eq!(status(jamd.pid(), "Groups"), "");
    assert_eq!(jamd.stop(), Some(0), "{:#?}", jamd.log());
}

#[test]
fn a_port_below_1024_without_root_says_what_works() {
    if !require_root() {
        return;
    }
    // The first port an unprivileged process may bind on this host.
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024);
    if start <= 1 {
        common::skip::record_skip("every port is unprivileged here (ip_unprivileged_port_start)");
        return;
    }
    let port = free_privileged_port().min(start - 1).to_string();
    let nobody: u32 = id_of("-u", "nobody").parse().unwrap();
    let nogroup: u32 = id_of("-g", "nobody").parse().unwrap();
    let path = write_file(&temp_dir("lowport"), "jamd.toml", "");
    let (code, _, err) = run_within(
        Command::new(JAMD)
            .args([
                "-c",
                &path,
                "-p",
                &port,
                "-b",
                "127.0.0.1",
                "--log",
                "stderr",
            ])
            .uid(nobody)
            .gid(nogroup),
        T,
    );
    assert_eq!(code, Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("cannot listen on"))
        .unwrap_or_else(|| panic!("{err}"));
    for what in [
        "Permission denied",
        "server.user",
        "socket activation",
        "CAP_NET_BIND_SERVICE",
    ] {
        assert!(line.contains(what), "{what} missing: {line}");
    }
    assert!(!line.contains("the shipped unit grants it"), "{line}");
}

#[test]
fn a_filter_that_cannot_be_installed_stops_jamd_saying_what_to_do() {
    // strace makes seccomp(2) fail as a unit without SystemCallFilter=seccomp
    // would; jamd must not serve unconfined then.
    let Some(strace) = require_tool("strace") else {
        return;
    };
    let path = write_file(&temp_dir("nofilter"), "jamd.toml", "");
    let (code, _, err) = run_within(
        Command::new(strace)
            .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=seccomp"])
            .args(["-e", "inject=seccomp:error=EPERM", "--", JAMD, "-c", &path])
            .args(LOOPBACK_ARGS),
        T,
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("cannot install the system-call filter (server.sandbox)")
            && err.contains("Operation not permitted")
            && err.contains("SystemCallFilter=seccomp")
            && err.contains("server.sandbox = false"),
        "{err}"
    );
    assert!(!err.contains("stopped"), "{err}");
}
