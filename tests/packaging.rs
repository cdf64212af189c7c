//! Checks of what ships besides the binaries (README.md, Layout): the systemd
//! units, the inetd/xinetd entries, the cron example and the Debian metadata.
//!
//! Tests that need an outside tool (systemd-analyze, sh, xinetd,
//! openbsd-inetd) skip with a message when it is missing, except under CI
//! (`CI=true`), where a missing tool is a failure: CI must prove the
//! packaging, not skip it. Building the .deb is left to `scripts/build-deb`
//! and lintian in `.ci/run`: it is too slow here.

mod common;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::supervisor::{current_user, packaged_daemon, Supervisor};
use common::{free_port, repo, repo_file, wait_listening, Client, SyslogSink, TempDir, JAMD};

/// How long a daemon under test may take to answer or to log.
const T: Duration = Duration::from_secs(10);

/// The highest `systemd-analyze security` exposure we accept for our services.
const MAX_EXPOSURE: f64 = 1.5;

/// Every unit file we ship, by its file name in packaging/systemd/.
const UNITS: [&str; 6] = [
    "jamd.service",
    "jamd.socket",
    "jamd-conn.socket",
    "jamd-conn@.service",
    "jamd-daytime.socket",
    "jamd-rfc868.socket",
];

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The `Key=value` assignments of a unit file, in order (comments skipped).
fn unit_settings(unit: &str) -> Vec<(String, String)> {
    repo_file(&format!("packaging/systemd/{unit}"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', ';', '[']))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn setting(settings: &[(String, String)], key: &str) -> Option<String> {
    // The last assignment wins, as in systemd.
    settings
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

fn assert_setting(unit: &str, key: &str, expected: &str) {
    let settings = unit_settings(unit);
    assert_eq!(
        setting(&settings, key).as_deref(),
        Some(expected),
        "{unit}: expected {key}={expected}"
    );
}

/// A number a unit sets (the last assignment of `key`), parsed.
fn number_setting(unit: &str, key: &str) -> u32 {
    let value = setting(&unit_settings(unit), key).unwrap_or_else(|| panic!("{unit}: no {key}="));
    value
        .parse()
        .unwrap_or_else(|e| panic!("{unit}: {key}={value}: {e}"))
}

/// Copies of our units whose ExecStart names the jamd binary cargo built, so
/// `systemd-analyze verify` finds an executable without /usr/bin/jamd.
fn units_with_built_binary(scratch: &TempDir) -> Vec<PathBuf> {
    let jamd = env!("CARGO_BIN_EXE_jamd");
    let jamd = if jamd.contains(char::is_whitespace) {
        format!("\"{jamd}\"")
    } else {
        jamd.to_string()
    };
    UNITS
        .iter()
        .map(|unit| {
            let copy = scratch.join(unit);
            let body =
                repo_file(&format!("packaging/systemd/{unit}")).replace("/usr/bin/jamd", &jamd);
            fs::write(&copy, body).expect("write unit copy");
            copy
        })
        .collect()
}

/// Runs `systemd-analyze verify` on `files` and returns the lines that are
/// about our units (other lines concern the host's own units, e.g. targets).
fn verify_complaints(files: &[PathBuf]) -> Vec<String> {
    let output = Command::new("systemd-analyze")
        .arg("verify")
        // Documentation= names our man pages, which are not installed here.
        .arg("--man=no")
        .args(files)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze verify");
    let all = text(&output);
    let ours: Vec<String> = all
        .lines()
        .filter(|l| l.contains("jamd"))
        .map(str::to_string)
        .collect();
    for other in all.lines().filter(|l| !l.contains("jamd")) {
        eprintln!("systemd-analyze verify (not about our units): {other}");
    }
    if !output.status.success() && ours.is_empty() {
        panic!("systemd-analyze verify failed ({}):\n{all}", output.status);
    }
    ours
}

/// `systemd-analyze verify` on copies of our units naming the built jamd,
/// with `edit` (text in jamd.service, its replacement) made first: what it
/// says about our units. None when systemd-analyze is missing.
fn verify_copies(edit: Option<(&str, &str)>) -> Option<Vec<String>> {
    common::require_tool("systemd-analyze")?;
    let scratch = TempDir::new("verify");
    let files = units_with_built_binary(&scratch);
    if let Some((from, to)) = edit {
        let service = scratch.join("jamd.service");
        let body = fs::read_to_string(&service).expect("read copy");
        fs::write(&service, body.replace(from, to)).expect("write edited copy");
    }
    Some(verify_complaints(&files))
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let Some(complaints) = verify_copies(None) else {
        return;
    };
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify complains:\n{}",
        complaints.join("\n")
    );
}

#[test]
fn systemd_analyze_verify_would_catch_a_broken_unit() {
    // Guards the test above against passing because verify saw nothing.
    let broken = ("Type=notify", "Type=notify\nNoSuchSetting=1");
    let Some(complaints) = verify_copies(Some(broken)) else {
        return;
    };
    assert!(
        complaints.iter().any(|l| l.contains("NoSuchSetting")),
        "verify did not report an unknown key: {complaints:?}"
    );
}

/// The overall exposure `systemd-analyze security --offline=true` gives a unit.
fn exposure(unit: &str) -> f64 {
    let path = repo().join("packaging/systemd").join(unit);
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze security");
    let all = text(&output);
    // "→ Overall exposure level for jamd.service: 1.1 OK 🙂"
    let line = all
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .unwrap_or_else(|| panic!("no exposure level in systemd-analyze output:\n{all}"));
    let after = line
        .rsplit_once(": ")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("cannot read exposure line: {line}"));
    let number = after.split_whitespace().next().unwrap_or_default();
    number
        .parse()
        .unwrap_or_else(|e| panic!("cannot read exposure {number:?} in {line:?}: {e}"))
}

#[test]
fn services_are_sandboxed_to_exposure_at_most_1_5() {
    if common::require_tool("systemd-analyze").is_none() {
        return;
    }
    for unit in ["jamd.service", "jamd-conn@.service"] {
        let level = exposure(unit);
        eprintln!("{unit}: exposure {level}");
        assert!(
            level <= MAX_EXPOSURE,
            "{unit}: systemd-analyze security exposure {level} > {MAX_EXPOSURE}"
        );
    }
}

#[test]
fn service_is_notify_type_reloads_by_sighup_and_stops_on_config_errors() {
    let unit = "jamd.service";
    assert_setting(unit, "Type", "notify");
    assert_setting(unit, "ExecStart", "/usr/bin/jamd");
    assert_setting(unit, "ExecReload", "/bin/kill -HUP $MAINPID");
    assert_setting(unit, "Restart", "on-failure");
    assert_setting(unit, "RestartPreventExitStatus", "78");
    let settings = unit_settings(unit);
    assert!(
        setting(&settings, "WatchdogSec").is_some(),
        "{unit}: WatchdogSec missing"
    );
}

#[test]
fn services_do_not_run_as_root() {
    for unit in ["jamd.service", "jamd-conn@.service"] {
        let settings = unit_settings(unit);
        let dynamic = setting(&settings, "DynamicUser").as_deref() == Some("yes");
        let user = setting(&settings, "User").filter(|u| u != "root" && u != "0");
        assert!(dynamic || user.is_some(), "{unit}: runs as root");
        assert_eq!(
            setting(&settings, "CapabilityBoundingSet").as_deref(),
            Some(""),
            "{unit}: should drop every capability"
        );
    }
}

#[test]
fn socket_listens_on_45000_with_backlog_128() {
    for unit in ["jamd.socket", "jamd-conn.socket"] {
        assert_setting(unit, "ListenStream", "45000");
        assert_setting(unit, "Backlog", "128");
        assert_setting(unit, "BindIPv6Only", "both");
    }
    let settings = unit_settings("jamd.socket");
    assert!(
        !matches!(setting(&settings, "Accept"), Some(v) if v != "no" && v != "false"),
        "jamd.socket must hand jamd the listening socket (Accept=no)"
    );
}

#[test]
fn per_connection_pair_accepts_and_starts_one_jamd_per_client() {
    assert_setting("jamd-conn.socket", "Accept", "yes");
    // Accept=yes sockets start NAME@.service: the template must exist.
    assert!(repo()
        .join("packaging/systemd/jamd-conn@.service")
        .is_file());
    assert_setting("jamd-conn@.service", "ExecStart", "/usr/bin/jamd");
    // Both listen on 45000: they must not run together.
    let conflicts = setting(&unit_settings("jamd-conn.socket"), "Conflicts").unwrap_or_default();
    assert!(
        conflicts.contains("jamd.socket") && conflicts.contains("jamd.service"),
        "jamd-conn.socket should conflict with jamd.socket and jamd.service"
    );
}

/// The non-comment lines of a config file, split on whitespace.
fn config_lines(rel: &str) -> Vec<Vec<String>> {
    repo_file(rel)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn inetd_entries_run_jamd_with_inetd_flag_over_ipv4_and_ipv6() {
    let lines = config_lines("packaging/inetd/jamd.inetd");
    let mut protocols = Vec::new();
    for fields in &lines {
        // service socket-type protocol wait user server argv0 args...
        assert!(fields.len() >= 8, "short inetd.conf line: {fields:?}");
        assert_eq!(fields[0], "jam");
        assert_eq!(fields[1], "stream");
        assert_eq!(fields[3], "nowait");
        assert_eq!(fields[4], "nobody");
        assert_eq!(fields[5], "/usr/bin/jamd");
        assert_eq!(fields[6..], ["jamd", "--inetd"]);
        protocols.push(fields[2].clone());
    }
    assert_eq!(protocols, ["tcp", "tcp6"]);
    assert!(
        repo_file("packaging/inetd/jamd.inetd").contains("45000/tcp"),
        "the inetd example should say which /etc/services line it needs"
    );
}

#[test]
fn xinetd_service_runs_jamd_with_inetd_flag_and_limits() {
    let lines = config_lines("packaging/xinetd/jamd");
    let attr = |name: &str| -> Option<String> {
        lines
            .iter()
            .find(|f| f.len() >= 3 && f[0] == name && (f[1] == "=" || f[1] == "+="))
            .map(|f| f[2..].join(" "))
    };
    assert_eq!(attr("server").as_deref(), Some("/usr/bin/jamd"));
    assert_eq!(attr("server_args").as_deref(), Some("--inetd"));
    assert_eq!(attr("port").as_deref(), Some("45000"));
    assert_eq!(attr("type").as_deref(), Some("UNLISTED"));
    assert_eq!(attr("socket_type").as_deref(), Some("stream"));
    assert_eq!(attr("wait").as_deref(), Some("no"));
    assert_eq!(attr("user").as_deref(), Some("nobody"));
    for limit in ["instances", "per_source"] {
        let value = attr(limit).unwrap_or_else(|| panic!("xinetd: {limit} missing"));
        let n: u32 = value
            .parse()
            .unwrap_or_else(|e| panic!("xinetd {limit}={value}: {e}"));
        assert!(n > 0, "xinetd {limit} should be a positive limit");
    }
    assert!(attr("cps").is_some(), "xinetd: cps missing");
}

/// The schedule and the command of the one job line of the cron example.
fn cron_job() -> (String, String) {
    let text = repo_file("packaging/cron/jamd-check");
    // Job lines start with the minute field; the others are comments or
    // VARIABLE=value lines.
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(|c: char| c == '*' || c.is_ascii_digit()))
        .expect("a job line in packaging/cron/jamd-check");
    // cron.d format: minute hour day month weekday user command
    let mut rest = line;
    let mut fields = Vec::new();
    for _ in 0..6 {
        let (field, tail) = rest
            .split_once(char::is_whitespace)
            .unwrap_or_else(|| panic!("cron.d line needs 7 fields: {line}"));
        fields.push(field);
        rest = tail.trim_start();
    }
    assert_eq!(fields[5], "nobody", "the check needs no privileges");
    (fields[..5].join(" "), rest.to_string())
}

#[test]
fn cron_example_runs_jamc_check_every_five_minutes() {
    let (schedule, command) = cron_job();
    assert_eq!(schedule, "*/5 * * * *");
    assert!(command.contains("jamc --check"), "cron job: {command}");
    // cron turns an unescaped % into a newline.
    assert!(
        !command.contains('%'),
        "cron job must not contain %: {command}"
    );
    assert!(repo_file("packaging/cron/jamd-check").contains("MAILTO="));
}

/// Runs the cron job's command with stand-ins for jamc (exiting with
/// `jamc_exit`) and logger; returns what it printed and what it logged.
fn run_cron_job(jamc_exit: i32) -> (String, String) {
    let scratch = TempDir::new(&format!("cron-{jamc_exit}"));
    let bin = scratch.join("bin");
    fs::create_dir_all(&bin).expect("create stub dir");
    let log = scratch.join("logged");
    let status = ["OK", "WARNING", "CRITICAL", "UNKNOWN"][usize::try_from(jamc_exit).unwrap()];
    write_script(
        &bin.join("jamc"),
        &format!("#!/bin/sh\necho \"JAM {status} - from $*\"\nexit {jamc_exit}\n"),
    );
    write_script(
        &bin.join("logger"),
        &format!(
            "#!/bin/sh\nwhile IFS= read -r l; do echo \"$*: $l\"; done >> '{}'\n",
            log.display()
        ),
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (_, command) = cron_job();
    let output = Command::new("/bin/sh")
        .args(["-c", &command])
        .env("PATH", path)
        .output()
        .expect("run the cron job");
    let logged = fs::read_to_string(&log).unwrap_or_default();
    (text(&output), logged)
}

fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, body).expect("write stub");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod stub");
}

#[test]
fn cron_example_is_silent_when_ok_and_speaks_on_trouble() {
    if common::require_tool("sh").is_none() {
        return;
    }
    let (printed, logged) = run_cron_job(0);
    assert_eq!(printed, "", "an OK check must not make cron send mail");
    assert_eq!(logged, "", "an OK check must not be logged");
    for exit in [1, 2, 3] {
        let (printed, logged) = run_cron_job(exit);
        assert!(
            printed.contains("JAM ") && printed.contains("--check localhost"),
            "exit {exit}: the status line should reach cron's mail, got {printed:?}"
        );
        assert!(
            logged.contains("-t jamc") && logged.contains("JAM "),
            "exit {exit}: the status line should go to syslog, got {logged:?}"
        );
    }
}

#[test]
fn deb_metadata_ships_binaries_man_pages_units_config_and_examples() {
    let manifest: toml::Table = repo_file("Cargo.toml").parse().expect("Cargo.toml is TOML");
    let deb = manifest["package"]["metadata"]["deb"]
        .as_table()
        .expect("[package.metadata.deb]");
    let assets: Vec<(String, String)> = deb["assets"]
        .as_array()
        .expect("assets list")
        .iter()
        .map(|a| {
            let a = a.as_array().expect("asset [source, dest, mode]");
            (
                a[0].as_str().expect("source").to_string(),
                a[1].as_str().expect("dest").to_string(),
            )
        })
        .collect();
    let ships = |source: &str, dest_prefix: &str| {
        assert!(
            assets
                .iter()
                .any(|(s, d)| s == source && d.starts_with(dest_prefix)),
            "the .deb should install {source} under /{dest_prefix}"
        );
    };
    ships("target/release/jamd", "usr/bin/");
    ships("target/release/jamc", "usr/bin/");
    ships("man/jamd.8", "usr/share/man/man8/");
    ships("man/jamc.1", "usr/share/man/man1/");
    ships("man/jamd.toml.5", "usr/share/man/man5/");
    ships("config/jamd.toml", "etc/jamd/jamd.toml");
    ships(
        "packaging/systemd/jamd-conn.socket",
        "usr/lib/systemd/system/",
    );
    ships(
        "packaging/systemd/jamd-conn@.service",
        "usr/lib/systemd/system/",
    );
    ships("README.md", "usr/share/doc/jamd/");
    ships("packaging/inetd/jamd.inetd", "usr/share/doc/jamd/examples/");
    ships("packaging/xinetd/jamd", "usr/share/doc/jamd/examples/");
    ships("packaging/cron/jamd-check", "usr/share/doc/jamd/examples/");
    ships(
        "packaging/prometheus/jamd.rules.yml",
        "usr/share/doc/jamd/examples/",
    );
    ships(
        "packaging/prometheus/jamd.rules.test.yml",
        "usr/share/doc/jamd/examples/",
    );
    for (file, dir) in [
        ("jamd.bash", "usr/share/bash-completion/completions/jamd"),
        ("jamc.bash", "usr/share/bash-completion/completions/jamc"),
        ("_jamd", "usr/share/zsh/vendor-completions/"),
        ("_jamc", "usr/share/zsh/vendor-completions/"),
        ("jamd.fish", "usr/share/fish/vendor_completions.d/"),
        ("jamc.fish", "usr/share/fish/vendor_completions.d/"),
    ] {
        ships(&format!("target/completions/{file}"), dir);
    }
    // Sources in the repository exist (man pages are checked by build-deb,
    // as they come from another branch).
    for (source, _) in &assets {
        if !source.starts_with("target/") && !source.starts_with("man/") {
            assert!(repo().join(source).is_file(), "asset {source} is missing");
        }
    }
    // jamd.service and jamd.socket come in through systemd-units.
    let units = deb["systemd-units"].as_array().expect("systemd-units list");
    let main = units
        .iter()
        .find(|u| u.get("unit-name").and_then(|n| n.as_str()) == Some("jamd"))
        .expect("a systemd-units entry for jamd");
    assert_eq!(
        main.get("unit-scripts").and_then(|d| d.as_str()),
        Some("packaging/systemd/")
    );
    for file in ["changelog", "copyright"] {
        assert!(repo().join("packaging/debian").join(file).is_file());
    }
}

/// A jamd configuration that logs to `sink` (under inetd jamd logs to
/// syslog only).
fn sink_config(scratch: &TempDir, sink: &SyslogSink) -> PathBuf {
    let path = scratch.join("jamd.toml");
    let body = format!("[log]\nsyslog_socket = \"{}\"\n", sink.path.display());
    fs::write(&path, body).expect("write jamd.toml");
    path
}

/// Two clients in turn, each served by the jamd the inetd starts for it.
fn assert_serves_jam(addr: SocketAddr, sink: &SyslogSink) {
    for _ in 0..2 {
        Client::connect(addr).assert_one_session();
    }
    assert!(
        sink.wait_for("reason=quit", T).is_some(),
        "jamd under inetd should log to syslog"
    );
}

/// Runs the packaged daemon `name` (xinetd or openbsd-inetd) with `args`
/// (given its configuration file, its log file and a scratch directory) on
/// the configuration `conf` writes (given a free loopback port and a jamd
/// configuration that logs to a test syslog), and checks it serves JAM
/// through jamd.
fn assert_packaged_daemon_serves_jam(
    name: &str,
    conf: impl Fn(u16, &Path) -> String,
    args: impl Fn(&mut Command, &Path, &Path, &Path),
) {
    let Some(daemon) = packaged_daemon(name) else {
        return;
    };
    let scratch = TempDir::new(name);
    let sink = SyslogSink::bind(&format!("pkg-{name}"));
    let config = sink_config(&scratch, &sink);
    let port = free_port();
    let conf_path = scratch.join(format!("{name}.conf"));
    fs::write(&conf_path, conf(port, &config)).expect("write the daemon's configuration");
    let log = scratch.join(format!("{name}.log"));
    let mut cmd = Command::new(daemon);
    args(&mut cmd, &conf_path, &log, &scratch);
    let _daemon = Supervisor::spawn(&mut cmd);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr, T, Some(&log));
    assert_serves_jam(addr, &sink);
}

#[test]
fn packaged_xinetd_service_serves_jam_through_jamd() {
    // The shipped file, with a free loopback port, the built jamd and the
    // current user (root could not exec a binary under a private home as
    // nobody); server_args keeps the shipped --inetd.
    let conf = |port: u16, config: &Path| {
        let mut conf = String::new();
        for line in repo_file("packaging/xinetd/jamd").lines() {
            match line.split_whitespace().next().unwrap_or("") {
                "port" => conf.push_str(&format!("\tport = {port}\n\tbind = 127.0.0.1\n")),
                "server" => conf.push_str(&format!("\tserver = {JAMD}\n")),
                "server_args" => conf.push_str(&format!("{line} -c {}\n", config.display())),
                "user" => conf.push_str(&format!("\tuser = {}\n", current_user())),
                "group" => {}
                _ => {
                    conf.push_str(line);
                    conf.push('\n');
                }
            }
        }
        conf
    };
    assert_packaged_daemon_serves_jam("xinetd", conf, |cmd, conf, log, scratch| {
        cmd.arg("-dontfork")
            .arg("-filelog")
            .arg(log)
            .arg("-pidfile")
            .arg(scratch.join("xinetd.pid"))
            .arg("-f")
            .arg(conf)
            .stderr(Stdio::null());
    });
}

#[test]
fn packaged_inetd_line_serves_jam_through_jamd() {
    // The shipped IPv4 line, on a free loopback port, with the built jamd
    // and the current user.
    let conf = |port: u16, config: &Path| {
        let mut fields = config_lines("packaging/inetd/jamd.inetd")
            .into_iter()
            .find(|f| f.get(2).map(String::as_str) == Some("tcp"))
            .expect("a tcp line in packaging/inetd/jamd.inetd");
        fields[0] = format!("127.0.0.1:{port}");
        fields[4] = current_user();
        fields[5] = JAMD.to_string();
        fields.push("-c".to_string());
        fields.push(config.display().to_string());
        fields.join("\t") + "\n"
    };
    assert_packaged_daemon_serves_jam("inetd", conf, |cmd, conf, log, _| {
        // -d: foreground, debug lines on stderr (kept for diagnosis).
        cmd.arg("-d")
            .arg(conf)
            .stderr(fs::File::create(log).expect("create inetd.log"));
    });
}

/// The per-connection socket sets a trigger limit a burst of clients does not
/// hit, and the docs give the same figure.
#[test]
fn the_per_connection_socket_sets_a_trigger_limit_the_docs_name() {
    let burst = number_setting("jamd-conn.socket", "TriggerLimitBurst");
    let max = number_setting("jamd-conn.socket", "MaxConnections");
    assert!(burst > 200 && burst >= max, "burst {burst}, max {max}");
    assert!(repo_file("man/jamd.8").contains(&format!("TriggerLimitBurst={burst}")));
    assert!(repo_file("README.md").contains("TriggerLimitBurst"));
}
