//! Listening and the smaller protocol edges (jamd(8), DESCRIPTION and The
//! JAM protocol): `-p 0` gives every address one port, and a CR inside a
//! line is not a blank. (A port in use gets a hint: daemon.rs,
//! `an_address_in_use_exits_1_with_one_clear_line_and_a_hint`.)

mod common;

use std::time::Duration;

use common::{parse_listening, Jamd};

#[test]
fn port_0_with_several_addresses_gives_them_one_port() {
    // Jamd::start gives -p 0 -b 127.0.0.1; each -b adds an address.
    let mut jamd = Jamd::start_with("", &["-b", "127.0.0.2", "-b", "127.0.0.3"]);
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
