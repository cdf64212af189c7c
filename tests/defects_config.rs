//! Configuration errors in a user's words (jamd(8), DIAGNOSTICS): every
//! message names the file, line, column and key and says what
//! the key takes; `bind` lists that cannot work fail `-t` and start-up with
//! 78; a FIFO never blocks jamd.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{require_namespaces, run_within, temp_dir, Jamd, JAMD, LOOPBACK_ARGS};

/// How long a jamd run may take (each here ends at once, or should).
const T: Duration = Duration::from_secs(10);

/// Writes `text` to DIR/jamd.toml and returns the path.
fn config_file(name: &str, text: &str) -> PathBuf {
    let path = temp_dir(name).join("jamd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `jamd -t -c FILE`: (exit code, stdout, stderr).
fn check(path: &Path) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(JAMD);
    cmd.arg("-t").arg("-c").arg(path).env("TZ", "UTC");
    run_within(&mut cmd, T)
}

/// The error `jamd -t` prints for a file with this text, checked to be a
/// configuration error (78) in one line `jamd: FILE:…`.
fn error_for(text: &str) -> String {
    let path = config_file("err", text);
    let (code, _, err) = check(&path);
    assert_eq!(code, Some(78), "{text:?}: {err}");
    let err = err.trim_end();
    assert!(!err.contains('\n'), "one line: {err}");
    let prefix = format!("jamd: {}:", path.display());
    err.strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{err:?} does not start with {prefix:?}"))
        .to_owned()
}

/// The error for a file with `text`, as [`error_for`], checked to start
/// with `want`.
fn error_starting(text: &str, want: &str) -> String {
    let e = error_for(text);
    assert!(
        e.starts_with(want),
        "{text:?}: {e:?} does not start with {want:?}"
    );
    e
}

/// Words of Rust and of serde that a user should never read.
fn assert_no_rust_words(message: &str) {
    for word in [
        "u16",
        "u32",
        "u64",
        "i64",
        "usize",
        "struct",
        "invalid type",
        "map,",
        "sequence",
        "os error",
    ] {
        assert!(!message.contains(word), "{word:?} in {message:?}");
    }
}

#[test]
fn a_port_that_is_not_a_number_is_named_and_explained() {
    let e = error_for("[server]\n# the port\n\nport = \"forty-five thousand\"\n");
    assert_eq!(
        e,
        "4:8: server.port: expected a port number (0-65535), found the string \"forty-five thousand\""
    );
}

#[test]
fn every_wrong_type_names_the_key_and_what_it_takes_without_rust_words() {
    let cases = [
        ("[server]\nport = 70000\n", "2:8: server.port: expected a port number (0-65535), found 70000"),
        ("[server]\nmax_connections = \"x\"\n", "2:19: server.max_connections: expected a number of connections (1-10000000), found the string \"x\""),
        ("[server]\nmax_line_bytes = 1.5\n", "2:18: server.max_line_bytes: expected a number of bytes (4-65536), found the number 1.5"),
        ("[server]\nworkers = true\n", "2:11: server.workers: expected a number of threads (0: one per CPU) (0-1024), found true"),
        ("[server]\nbacklog = [1]\n", "2:11: server.backlog: expected a listen backlog (1-2147483647), found a list"),
        ("[server]\nreuse_address = \"yes\"\n", "2:17: server.reuse_address: expected true or false, found the string \"yes\""),
        ("server = 5\n", "1:10: server: expected one [server] section, found 5"),
        ("[[server]]\nport = 1\n", "1:1: server: expected one [server] section, found a list of tables ([[server]])"),
        ("[log]\ntarget = \"file\"\n", "2:10: log.target: expected one of \"syslog\", \"stderr\", \"both\", found the string \"file\""),
        ("[time]\nformat = 5\n", "2:10: time.format: expected a strftime format such as \"%H:%M:%S\", found 5"),
    ];
    for (text, want) in cases {
        let e = error_for(text);
        assert!(e.ends_with(want), "{text:?}: {e}");
        assert_no_rust_words(&e);
    }
}

#[test]
fn a_negative_idle_timeout_names_the_key() {
    let e = error_for("[server]\nidle_timeout = -5\n");
    assert_eq!(
        e,
        "2:16: server.idle_timeout: expected a number of seconds (0-31536000), found -5"
    );
}

#[test]
fn a_duplicate_key_is_named() {
    let e = error_for("[server]\nport = 1\nport = 2\n");
    assert!(e.starts_with("3:1: "), "{e}");
    assert!(e.contains("server.port is given twice"), "{e}");
    let e = error_for("[server]\n[time]\n[server]\n");
    assert!(e.contains("[server] is given twice"), "{e}");
}

#[test]
fn a_file_that_is_not_utf8_gets_a_line_and_column() {
    let path = temp_dir("utf8").join("jamd.toml");
    std::fs::write(&path, b"[server]\nport = 1\n# caf\xe9\n").unwrap();
    let (code, _, err) = check(&path);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains(&format!(
            "{}:3:6: the file is not UTF-8 text",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn a_host_name_in_bind_is_refused_as_a_host_name() {
    error_starting(
        "[server]\nbind = [\"127.0.0.1\", \"localhost\"]\n",
        "2:22: server.bind: \"localhost\" is a host name; host names are not allowed",
    );
}

#[test]
fn an_unknown_zone_is_said_without_paths_or_errno() {
    let e = error_starting(
        "[time]\ntimezone = \"Nowhere/Atlantis\"\n",
        "2:12: time.timezone: unknown time zone \"Nowhere/Atlantis\"",
    );
    assert!(!e.contains("zoneinfo"), "{e}");
    assert_no_rust_words(&e);
}

#[test]
fn an_unknown_key_lists_the_keys_the_section_takes() {
    error_starting(
        "[server]\nprot = 1\n",
        "2:1: server.prot: unknown key; [server] takes port, bind, backlog",
    );
}

/// `bind` lists that cannot work: errors of `-t` and of start-up, 78, with a place.
#[test]
fn bind_lists_that_cannot_work_fail_check_and_start_with_78() {
    let many: Vec<String> = (0..1025)
        .map(|i| format!("\"127.0.{}.{}\"", i / 250, i % 250 + 1))
        .collect();
    let cases = [
        (
            "[server]\nbind = []\n".to_owned(),
            "2:8: server.bind: the list is empty",
        ),
        (
            "[server]\nbind = [\"127.0.0.1\", \"127.0.0.1\"]\n".to_owned(),
            "2:22: server.bind: 127.0.0.1 is listed twice",
        ),
        (
            "[server]\nbind = [\"0.0.0.0\", \"127.0.0.1\"]\n".to_owned(),
            "2:20: server.bind: 0.0.0.0 and 127.0.0.1 cannot both listen on one port",
        ),
        (
            "[server]\nbind = [\"::1\", \"::\"]\n".to_owned(),
            "2:16: server.bind: :: and ::1 cannot both listen on one port",
        ),
        (
            format!("[server]\nbind = [{}]\n", many.join(", ")),
            "server.bind: 1025 addresses; jamd listens on at most 1024",
        ),
    ];
    for (text, want) in &cases {
        let e = error_for(text);
        assert!(e.contains(want), "{e}");
        assert!(
            e.split(':').take(2).all(|n| n.parse::<usize>().is_ok()),
            "LINE:COL: {e}"
        );
        // Start-up: the same error, 78, before binding anything.
        let path = config_file("bindstart", text);
        let mut cmd = Command::new(JAMD);
        cmd.arg("-c")
            .arg(&path)
            .args(["-p", "0", "--log", "stderr"]);
        let (code, _, err) = run_within(&mut cmd, T);
        assert_eq!(code, Some(78), "{err}");
        assert!(err.contains(want), "{err}");
    }
    // The same lists given with -b are refused too (not a bind failure, 1).
    let empty = config_file("empty", "");
    let mut cmd = Command::new(JAMD);
    cmd.arg("-t").arg("-c").arg(&empty);
    cmd.args(["-b", "127.0.0.1", "-b", "127.0.0.1"]);
    let (code, _, err) = run_within(&mut cmd, T);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("-b/--bind: 127.0.0.1 is listed twice"),
        "{err}"
    );
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success());
}

#[test]
fn a_fifo_as_the_configuration_is_an_error_and_never_blocks() {
    let fifo = temp_dir("fifo").join("jamd.toml");
    mkfifo(&fifo);
    let (code, _, err) = check(&fifo);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("it is a FIFO, not a regular file"), "{err}");
    let mut cmd = Command::new(JAMD);
    cmd.arg("-c").arg(&fifo).args(LOOPBACK_ARGS);
    let (code, _, err) = run_within(&mut cmd, T);
    assert_eq!(code, Some(78), "{err}");
    let mut cmd = Command::new(JAMD);
    cmd.args(["-t", "-c", "/dev/zero"]);
    let (code, _, err) = run_within(&mut cmd, T);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("it is a device, not a regular file"), "{err}");
}

#[test]
fn a_config_swapped_to_a_fifo_fails_the_reload_and_jamd_still_stops() {
    let mut jamd = Jamd::start("[server]\nidle_timeout = 5\n");
    let real = jamd.dir.join("real.toml");
    std::fs::rename(&jamd.config, &real).unwrap();
    let fifo = jamd.dir.join("pipe");
    mkfifo(&fifo);
    std::os::unix::fs::symlink(&fifo, &jamd.config).unwrap();
    jamd.signal("HUP");
    let line = jamd
        .stderr
        .wait_for("reload failed", T)
        .expect("reload failed line");
    assert!(line.contains("FIFO"), "{line}");
    // Still serving, and SIGTERM still works.
    assert!(jamd.connect().ask("TIME").starts_with("JAM "));
    jamd.signal("TERM");
    jamd.exits_0(T);
}

#[test]
fn a_fifo_zone_file_is_an_error_and_never_blocks() {
    let dir = temp_dir("tzfifo");
    mkfifo(&dir.join("Fifo"));
    let path = config_file("tzfifo", "[time]\ntimezone = \"Fifo\"\n");
    let mut cmd = Command::new(JAMD);
    cmd.arg("-t").arg("-c").arg(&path).env("TZDIR", &dir);
    let (code, _, err) = run_within(&mut cmd, T);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("time.timezone") && err.contains("not a regular file"),
        "{err}"
    );
    let empty = config_file("empty", "");
    let mut cmd = Command::new(JAMD);
    cmd.arg("-t")
        .arg("-c")
        .arg(&empty)
        .env("TZ", dir.join("Fifo"));
    let (code, _, err) = run_within(&mut cmd, T);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("cannot read the local time zone"), "{err}");
}

/// `/etc/jamd` that jamd may not search is not "no file": run jamd as
/// nobody in a private mount namespace where /etc/jamd is mode 0700.
#[test]
fn an_unsearchable_config_directory_is_not_a_missing_file() {
    let root = temp_dir("etc");
    let etc = root.join("etc");
    std::fs::create_dir_all(etc.join("jamd")).unwrap();
    std::fs::write(etc.join("jamd/jamd.toml"), "").unwrap();
    let script = format!(
        "chmod 700 {etc}/jamd && mount --bind {etc} /etc && exec setpriv --reuid=65534 --regid=65534 --clear-groups {JAMD} -t",
        etc = etc.display()
    );
    if !require_namespaces("-m") {
        return;
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", &script]).env("TZ", "UTC");
    let (code, out, err) = run_within(&mut cmd, T);
    assert_eq!(code, Some(78), "{out}{err}");
    assert!(
        err.contains("/etc/jamd/jamd.toml: cannot read the configuration: Permission denied"),
        "{err}"
    );
    assert!(!err.contains("using built-in defaults"), "{err}");
}

/// `-t` says what start-up would warn about, and which zone "local" is.
#[test]
fn check_prints_the_warnings_and_the_zone_in_effect() {
    let path = config_file(
        "warn",
        "[server]\nmax_connections = 2\nmax_connections_per_source = 5\n",
    );
    let mut cmd = Command::new(JAMD);
    cmd.arg("-t").arg("-c").arg(&path).env("TZ", "Asia/Jakarta");
    let (code, out, err) = run_within(&mut cmd, T);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(
            "warning: server.max_connections_per_source (5) is above server.max_connections (2)"
        ),
        "{err}"
    );
    assert!(
        out.contains("timezone = \"local\"  # Asia/Jakarta, from TZ\n"),
        "{out}"
    );
}
