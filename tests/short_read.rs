//! jamd stops reading after a short read (edge-triggered polling brings an
//! event for later input), except when the peer's FIN came with the data:
//! that event is the last one, so jamd must read on and see the EOF.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::Jamd;

#[test]
fn request_and_fin_in_one_burst_get_the_reply_then_close() {
    // No idle timeout: only noticing the FIN can end these connections.
    let jamd = Jamd::start("[server]\nidle_timeout = 0\n[log]\nconnections = true\n");
    let clients = 40;
    for i in 0..clients {
        let mut s = TcpStream::connect(jamd.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The request and the FIN leave together, before jamd wakes up.
        s.write_all(b"TIME\r\n").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("client {i}: jamd did not close after the client's FIN")
                }
                Err(e) => panic!("client {i}: {e}"),
            }
        }
        let reply = String::from_utf8_lossy(&got);
        assert!(
            reply.starts_with("JAM ") && reply.ends_with("\r\n"),
            "client {i}: {reply:?}"
        );
    }
    let closed = jamd
        .stderr
        .wait_for_count("reason=eof", clients, Duration::from_secs(10));
    assert_eq!(closed, clients, "{:?}", jamd.stderr.all());
}
