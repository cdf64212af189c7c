//! Listening and the smaller protocol edges (issue 12 items 8 and the
//! "smaller" list): `-p 0` gives every address one port, a port in use gets
//! a hint, and a CR inside a line is not a blank.

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{parse_listening, run_jamd, temp_dir, Jamd, JAMD};

#[test]
fn port_0_with_several_addresses_gives_them_one_port() {
    let dir = temp_dir("port0");
    let config = dir.join("jamd.toml");
    std::fs::write(&config, "").unwrap();
    let mut cmd = Command::new(JAMD);
    cmd.arg("-c")
        .arg(&config)
        .args([
            "-p",
            "0",
            "-b",
            "127.0.0.1",
            "-b",
            "127.0.0.2",
            "-b",
            "127.0.0.3",
        ])
        .args(["--log", "stderr"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut jamd = Jamd::spawn(cmd, dir, config);
    let mut ports = Vec::new();
    for host in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        let line = jamd
            .stderr
            .wait_for(&format!("listening on {host}:"), Duration::from_secs(10))
            .expect("a listening line per address");
        ports.push(parse_listening(&line).unwrap().port());
    }
    assert!(ports.iter().all(|p| *p == ports[0] && *p != 0), "{ports:?}");
    jamd.signal("TERM");
    assert_eq!(jamd.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_port_in_use_says_what_to_do() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let dir = temp_dir("inuse");
    let config = dir.join("jamd.toml");
    std::fs::write(&config, "[server]\nreuse_address = false\n").unwrap();
    let (code, _, err) = run_jamd(
        &[
            "-c",
            config.to_str().unwrap(),
            "-p",
            &port,
            "-b",
            "127.0.0.1",
            "--log",
            "stderr",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("Address already in use"), "{err}");
    assert!(
        err.contains("stop it, or choose another port (server.port, -p)"),
        "{err}"
    );
}

#[test]
fn a_cr_inside_a_line_is_not_a_blank() {
    let mut jamd = Jamd::start("");
    let mut c = jamd.connect();
    c.send(b"TIME\r\r\n");
    assert_eq!(c.line(), "ERROR unknown command");
    assert!(c.ask("TIME").starts_with("JAM "));
    drop(c);
    jamd.signal("TERM");
    assert_eq!(jamd.wait_exit(Duration::from_secs(10)), Some(0));
}
