//! `--inetd` over any byte stream (jamd(8), INETD): two pipes, a
//! unix socketpair, socat's `EXEC:`; start-up errors on standard error when
//! standard error is not the client.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{require_tool, run_fed, temp_dir, wait_listening, write_file, ChildGuard, JAMD};

const T: Duration = Duration::from_secs(10);

fn config(text: &str) -> String {
    write_file(&temp_dir("inetd"), "jamd.toml", text)
}

/// Starts `jamd --inetd` on a file holding `config`, with `theirs` (one
/// end of a socketpair) as both its standard input and output: `mine`, the
/// other end, is the client. Stopped by its pid when dropped.
fn inetd_on_socketpair(config_text: &str) -> (ChildGuard, UnixStream) {
    let cfg = config(config_text);
    let (mine, theirs) = UnixStream::pair().unwrap();
    let theirs_out = theirs.try_clone().unwrap();
    let jamd = ChildGuard::spawn(
        Command::new(JAMD)
            .args(["--inetd", "-c", &cfg, "--log", "stderr"])
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs_out)))
            .stderr(Stdio::null()),
    );
    mine.set_read_timeout(Some(T)).unwrap();
    (jamd, mine)
}

#[test]
fn two_pipes_are_served() {
    let cfg = config("[time]\nformat = \"%Y\"\n");
    let mut jamd = ChildGuard::spawn(
        Command::new(JAMD)
            .args(["--inetd", "-c", &cfg, "--log", "stderr"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut input = jamd.stdin.take().unwrap();
    input.write_all(b"TIME\r\nBOGUS\r\n\r\ntime\n").unwrap();
    drop(input);
    let mut out = String::new();
    jamd.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    jamd.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(jamd.exit_code(T), Some(0), "{err}");
    let year = chrono_year();
    assert_eq!(
        out,
        format!("JAM {year}\r\nERROR unknown command\r\nJAM {year}\r\n"),
        "{err}"
    );
    assert!(err.contains("connection from a pipe"), "{err}");
    assert!(
        err.contains("requests=3") && err.contains("reason=eof"),
        "{err}"
    );
}

fn chrono_year() -> String {
    let out = Command::new("date").arg("+%Y").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn a_unix_socketpair_is_served_until_quit() {
    let (mut jamd, mine) = inetd_on_socketpair("[time]\nformat = \"%Y\"\n");
    let mut reader = BufReader::new(mine.try_clone().unwrap());
    let mut w = mine;
    for _ in 0..2 {
        w.write_all(b"TIME\r\n").unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, format!("JAM {}\r\n", chrono_year()));
    }
    w.write_all(b"QUIT\r\n").unwrap();
    assert_eq!(jamd.exit_code(T), Some(0));
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "nothing after QUIT");
}

#[test]
fn an_idle_stream_is_told_and_closed() {
    let (mut jamd, mine) = inetd_on_socketpair("[server]\nidle_timeout = 1\n");
    let mut all = String::new();
    (&mine).read_to_string(&mut all).unwrap();
    assert_eq!(all, "ERROR idle timeout\r\n");
    assert_eq!(jamd.exit_code(T), Some(0));
}

/// socat forks `jamd --inetd` per TCP client, joined by a unix socketpair.
#[test]
fn socat_exec_serves_each_client() {
    let Some(socat) = require_tool("socat") else {
        return;
    };
    // A free port for socat to listen on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = config("[log]\ntarget = \"stderr\"\n");
    let _socat = ChildGuard::spawn(
        Command::new(socat)
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"))
            .arg(format!("EXEC:{JAMD} --inetd -c {cfg}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let stream = wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), T, None);
    stream.set_read_timeout(Some(T)).unwrap();
    for _ in 0..2 {
        let mut s = stream.try_clone().unwrap();
        s.write_all(b"TIME\r\n").unwrap();
    }
    (&stream).write_all(b"QUIT\r\n").unwrap();
    let mut all = String::new();
    (&stream).read_to_string(&mut all).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 2, "{all:?}");
    assert!(lines.iter().all(|l| l.starts_with("JAM ")), "{all:?}");
}

/// Runs `jamd --inetd -c CFG` with `stdin` as its standard input (a pipe
/// is closed at once), to its end (bounded): its exit code, standard
/// output and standard error.
fn inetd_run(cfg: &str, stdin: Stdio) -> (Option<i32>, String, String) {
    let ran = run_fed(Command::new(JAMD).args(["--inetd", "-c", cfg]), stdin, T);
    let Some(status) = ran.status else {
        panic!("jamd --inetd -c {cfg} did not end within {T:?}");
    };
    (status.code(), ran.stdout, ran.stderr)
}

/// Standard error is not the client here: start-up errors are printed there.
#[test]
fn start_up_errors_reach_stderr_when_it_is_not_the_client() {
    let cfg = config("[server]\nport = \"x\"\n");
    let (code, out, err) = inetd_run(&cfg, Stdio::piped());
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("server.port: expected a port number"), "{err}");
    assert!(out.is_empty(), "nothing reaches the client: {out:?}");
    // A regular file is not a connection.
    let file = std::fs::File::open(&cfg).unwrap();
    let (code, _, err) = inetd_run(&cfg, Stdio::from(file));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--inetd: standard input is a file"), "{err}");
}
