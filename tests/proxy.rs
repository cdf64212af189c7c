//! Behind a load balancer (jamd(8), BEHIND A LOAD BALANCER), against a real
//! jamd on loopback: HAProxy (`send-proxy`, `send-proxy-v2`, health checks, a
//! fleet of two jamd with one stopped), headers written by the test byte by
//! byte (split, TLVs, IPv6, malformed, oversized, too slow), `[access]` and
//! the per-source limits applied to the clients that headers name, and a
//! restart under socket activation during which connections wait in the
//! kernel.
//!
//! Clients bind 127.0.0.5 and the like to play other hosts; jamd trusts
//! 127.0.0.1, where HAProxy (or the test playing it) connects from.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::tmp::TempDir;
use common::{jam_time, require_tool, temp_dir, ChildGuard, Jamd, JAMD};
use socket2::{Domain, Socket, Type};

const T: Duration = Duration::from_secs(10);

/// jamd trusting 127.0.0.1 as its balancer, with `extra` appended.
fn behind_balancer(extra: &str) -> Jamd {
    Jamd::start(&format!(
        "[proxy]\ntrusted = [\"127.0.0.1\"]\nheader_timeout = 1\n{extra}"
    ))
}

/// A TCP client from a chosen loopback address.
struct Peer {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Peer {
    fn connect(src: &str, to: SocketAddr) -> Peer {
        let stream = common::client::connect_from(src, to);
        stream.set_nodelay(true).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Peer { stream, reader }
    }

    fn port(&self) -> u16 {
        self.stream.local_addr().unwrap().port()
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends `bytes` one at a time, each in its own segment, until the
    /// server closes.
    fn trickle(&mut self, bytes: &[u8]) {
        for b in bytes {
            if self.stream.write_all(&[*b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// One reply line without its CR LF; "" at the end of the stream.
    fn line(&mut self) -> String {
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(_) => String::from_utf8_lossy(&buf)
                .trim_end_matches("\r\n")
                .to_owned(),
            Err(e) => panic!("no reply line: {e}"),
        }
    }

    fn ask(&mut self, request: &str) -> String {
        self.send(format!("{request}\r\n").as_bytes());
        self.line()
    }

    /// Everything until the server closes (bounded by the read timeout).
    fn rest(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.reader.read_to_end(&mut out);
        out
    }
}

fn v1(client: &str, cport: u16) -> Vec<u8> {
    let fam = if client.contains(':') { "TCP6" } else { "TCP4" };
    let server = if client.contains(':') {
        "::1"
    } else {
        "127.0.0.1"
    };
    format!("PROXY {fam} {client} {server} {cport} 45000\r\n").into_bytes()
}

/// A version 2 header: command (0 LOCAL, 1 PROXY), family byte, block.
fn v2(cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | cmd);
    h.push(fam);
    h.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
    h.extend_from_slice(block);
    h
}

fn v2_tcp(client: IpAddr, cport: u16, tlvs: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    let fam = match client {
        IpAddr::V4(a) => {
            block.extend_from_slice(&a.octets());
            block.extend_from_slice(&[127, 0, 0, 1]);
            0x11
        }
        IpAddr::V6(a) => {
            block.extend_from_slice(&a.octets());
            block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
            0x21
        }
    };
    block.extend_from_slice(&cport.to_be_bytes());
    block.extend_from_slice(&45000u16.to_be_bytes());
    block.extend_from_slice(tlvs);
    v2(1, fam, &block)
}

/// Waits (bounded) for a line with every one of `needles`.
fn wait_line(jamd: &Jamd, needles: &[&str]) -> String {
    jamd.stderr
        .wait_for_all(needles, T)
        .unwrap_or_else(|| panic!("no line with {needles:?}: {:#?}", jamd.stderr.all()))
}

#[test]
fn headers_split_byte_by_byte_name_the_client() {
    let jamd = behind_balancer("");
    let tlvs = [
        0x04, 0x00, 0x03, b'a', b'b', b'c', 0x01, 0x00, 0x02, b'h', b'2',
    ];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (v1("192.0.2.7", 56324), "192.0.2.7:56324"),
        (v1("2001:db8::7", 443), "[2001:db8::7]:443"),
        (
            v2_tcp("192.0.2.8".parse().unwrap(), 1000, &tlvs),
            "192.0.2.8:1000",
        ),
        (
            v2_tcp("2001:db8::8".parse().unwrap(), 1001, &tlvs),
            "[2001:db8::8]:1001",
        ),
    ];
    for (header, client) in cases {
        let mut c = Peer::connect("127.0.0.1", jamd.addr);
        c.trickle(&header);
        // The request split as well, and only after the header.
        c.trickle(b"TI");
        c.send(b"ME\r\n");
        let reply = c.line();
        assert!(jam_time(&reply).is_some(), "{client}: {reply:?}");
        assert_eq!(c.ask("QUIT"), "", "{client}");
        let via = format!("via 127.0.0.1:{}", c.port());
        wait_line(&jamd, &[&format!("connection from {client} {via}")]);
        wait_line(
            &jamd,
            &[&format!("closed {client} requests=1 "), "reason=quit"],
        );
    }
}

#[test]
fn bytes_after_the_header_in_the_same_packet_are_the_first_request() {
    let jamd = behind_balancer("");
    for header in [
        v1("192.0.2.9", 7),
        v2_tcp("192.0.2.9".parse().unwrap(), 7, &[]),
    ] {
        let mut c = Peer::connect("127.0.0.1", jamd.addr);
        let mut packet = header;
        packet.extend_from_slice(b"TIME\r\nHELLO\r\nQUIT\r\n");
        c.send(&packet);
        let reply = c.line();
        assert!(jam_time(&reply).is_some(), "{reply:?}");
        assert_eq!(c.line(), "ERROR unknown command");
        assert_eq!(c.line(), "", "closed after QUIT");
    }
    wait_line(&jamd, &["closed 192.0.2.9:7 requests=2 ", "reason=quit"]);
}

#[test]
fn health_checks_are_served_as_the_balancer_itself() {
    let jamd = behind_balancer("[log]\nhealth_checks = true\n");
    let unix = {
        // AF_UNIX, SOCK_STREAM: two 108-byte paths.
        let mut b = vec![0u8; 216];
        b[..5].copy_from_slice(b"/a/b\0");
        v2(1, 0x31, &b)
    };
    for header in [
        v2(0, 0x00, &[]),
        v2(0, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]),
        b"PROXY UNKNOWN\r\n".to_vec(),
        b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n".to_vec(),
        v2(1, 0x12, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]), // UDP
        unix,
    ] {
        let mut c = Peer::connect("127.0.0.1", jamd.addr);
        c.trickle(&header);
        let reply = c.ask("TIME");
        assert!(jam_time(&reply).is_some(), "{reply:?}");
        c.stream.shutdown(std::net::Shutdown::Both).unwrap();
        let me = format!("127.0.0.1:{}", c.port());
        let line = wait_line(&jamd, &[&format!("connection from {me}")]);
        assert!(!line.contains("via"), "{line}");
        wait_line(&jamd, &[&format!("closed {me} requests=1 ")]);
    }
}

#[test]
fn bad_late_or_oversized_headers_are_closed_without_a_reply() {
    let jamd = behind_balancer("[log]\nlevel = \"debug\"\n");
    let mut too_long_v2 = v2(1, 0x11, &[]);
    too_long_v2[14..16].copy_from_slice(&4097u16.to_be_bytes());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\nTIME\r\n".to_vec(),
            "v1 protocol is not TCP4, TCP6 or UNKNOWN",
        ),
        (b"TIME\r\n".to_vec(), "not a PROXY protocol header"),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 99999 2\r\n".to_vec(),
            "v1 port is not a number from 0 to 65535",
        ),
        (
            [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100]].concat(),
            "v1 header longer than 107 bytes",
        ),
        (
            too_long_v2,
            "v2 header declares more than 4096 bytes of addresses",
        ),
        (
            v2(1, 0x21, &[0; 20]),
            "v2 address block too short for its family",
        ),
    ];
    for (bytes, why) in cases {
        let mut c = Peer::connect("127.0.0.1", jamd.addr);
        c.trickle(&bytes);
        assert_eq!(c.rest(), b"", "{why}: no reply at all");
        wait_line(
            &jamd,
            &[
                &format!("refused 127.0.0.1:{}: bad proxy header ({why})", c.port()),
                "reason=bad_proxy_header",
            ],
        );
    }
    // Half a header, then nothing: closed after header_timeout (1 s).
    let mut slow = Peer::connect("127.0.0.1", jamd.addr);
    slow.trickle(b"PROXY TCP4 192.0.2.1 ");
    let t0 = Instant::now();
    assert_eq!(slow.rest(), b"");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(8),
        "closed after {waited:?}, header_timeout is 1 s"
    );
    wait_line(
        &jamd,
        &[&format!(
            "refused 127.0.0.1:{}: bad proxy header (no complete header within 1 s)",
            slow.port()
        )],
    );
    // Half a header, then the balancer closes.
    let mut cut = Peer::connect("127.0.0.1", jamd.addr);
    cut.send(&v2_tcp("192.0.2.1".parse().unwrap(), 1, &[])[..20]);
    cut.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(cut.rest(), b"");
    wait_line(
        &jamd,
        &[&format!(
            "refused 127.0.0.1:{}: bad proxy header (connection closed in the middle of the header)",
            cut.port()
        )],
    );
    // The first refusal is also a (rate-limited) warning line.
    wait_line(
        &jamd,
        &["warning: refused 127.0.0.1:", ": bad proxy header ("],
    );
    // No bad header became a client.
    let all = jamd.stderr.all();
    assert!(
        !all.iter().any(|l| l.contains("connection from")),
        "{all:#?}"
    );
}

#[test]
fn a_balancer_that_closes_before_a_byte_is_closed_quietly() {
    let jamd = behind_balancer("[log]\nlevel = \"debug\"\n");
    let mut ports = Vec::new();
    for _ in 0..3 {
        let c = Peer::connect("127.0.0.1", jamd.addr);
        ports.push(c.port());
        drop(c);
    }
    // Then a client, so that every earlier event has been handled.
    let mut c = Peer::connect("127.0.0.1", jamd.addr);
    c.send(&v1("192.0.2.3", 3));
    assert!(jam_time(&c.ask("TIME")).is_some());
    wait_line(&jamd, &["connection from 192.0.2.3:3 via"]);
    thread::sleep(Duration::from_millis(300));
    for line in jamd.stderr.all() {
        for p in &ports {
            assert!(
                !line.contains(&format!("127.0.0.1:{p}")),
                "a plain TCP check was logged: {line}"
            );
        }
    }
}

#[test]
fn access_and_per_source_limits_apply_to_the_clients_headers_name() {
    // The balancer (127.0.0.1) is in neither list: it is not checked.
    let jamd = behind_balancer(
        "[server]\nmax_connections_per_source = 1\n\
         [access]\nallow = [\"192.0.2.0/24\", \"127.0.0.2\"]\ndeny = [\"192.0.2.66\"]\n\
         [log]\nlevel = \"debug\"\n",
    );
    // The header and TIME in one packet: the first reply line is the
    // answer, or the refusal.
    let named = |client: &str, port: u16| {
        let mut c = Peer::connect("127.0.0.1", jamd.addr);
        c.send(&[v1(client, port), b"TIME\r\n".to_vec()].concat());
        let first = c.line();
        (c, first)
    };
    let (mut denied, reply) = named("192.0.2.66", 1);
    assert_eq!(reply, "ERROR access denied");
    assert_eq!(denied.line(), "");
    wait_line(&jamd, &["refused 192.0.2.66:1: access denied"]);

    let (mut first, reply) = named("192.0.2.7", 1);
    assert!(jam_time(&reply).is_some(), "{reply}");
    let (_second, reply) = named("192.0.2.7", 2);
    assert_eq!(reply, "ERROR server busy");
    // (Refusal warnings are one a second; each has its debug line.)
    wait_line(
        &jamd,
        &["debug: refused 192.0.2.7:2: source busy (reason=source_busy"],
    );
    // Another client through the same balancer: the balancer is no source.
    let (_other, reply) = named("192.0.2.8", 1);
    assert!(jam_time(&reply).is_some(), "{reply}");
    // The slot comes back when the client leaves.
    assert_eq!(first.ask("QUIT"), "");
    wait_line(&jamd, &["closed 192.0.2.7:1 "]);
    let (_again, reply) = named("192.0.2.7", 3);
    assert!(jam_time(&reply).is_some(), "{reply}");

    // Untrusted sources are served as usual; a header from them is an
    // unknown command.
    let mut plain = Peer::connect("127.0.0.2", jamd.addr);
    assert_eq!(
        plain.ask("PROXY TCP4 192.0.2.7 127.0.0.1 1 2"),
        "ERROR unknown command"
    );
    assert!(jam_time(&plain.ask("TIME")).is_some());
    wait_line(
        &jamd,
        &[&format!("connection from 127.0.0.2:{}", plain.port())],
    );
    assert_eq!(plain.ask("QUIT"), "");
    wait_line(&jamd, &[&format!("closed 127.0.0.2:{} ", plain.port())]);
    // A v2 signature holds "\0" (unknown) and QUIT on lines of their own,
    // so that a server without the protocol says so and closes.
    let mut v2_plain = Peer::connect("127.0.0.2", jamd.addr);
    v2_plain.send(&v2_tcp("192.0.2.7".parse().unwrap(), 1, &[]));
    assert_eq!(v2_plain.line(), "ERROR unknown command");
    assert_eq!(v2_plain.line(), "");
    // And a denied host stays denied when it talks to jamd directly.
    let mut direct = Peer::connect("127.0.0.3", jamd.addr);
    assert_eq!(direct.line(), "ERROR access denied");
}

#[test]
fn trusted_and_header_timeout_are_reloaded() {
    let mut jamd = Jamd::start("");
    let mut c = Peer::connect("127.0.0.1", jamd.addr);
    assert_eq!(
        c.ask("PROXY TCP4 192.0.2.7 127.0.0.1 1 2"),
        "ERROR unknown command"
    );
    jamd.reload("[proxy]\ntrusted = [\"127.0.0.0/8\"]\nheader_timeout = 2\n");
    // The client already connected stays as it was.
    assert!(jam_time(&c.ask("TIME")).is_some());
    let mut p = Peer::connect("127.0.0.4", jamd.addr);
    p.send(&v1("192.0.2.7", 9));
    assert!(jam_time(&p.ask("TIME")).is_some());
    wait_line(&jamd, &["connection from 192.0.2.7:9 via 127.0.0.4:"]);
    let mut slow = Peer::connect("127.0.0.4", jamd.addr);
    let t0 = Instant::now();
    assert_eq!(slow.rest(), b"");
    assert!(
        t0.elapsed() >= Duration::from_millis(1700),
        "{:?}",
        t0.elapsed()
    );
    wait_line(&jamd, &["bad proxy header (no complete header within 2 s)"]);
    let (code, out, _) = common::run_jamd(
        &["-t", "-c", jamd.config.to_str().unwrap()],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(0));
    assert!(
        out.contains("[proxy]\ntrusted = [\"127.0.0.0/8\"]\nheader_timeout = 2\n"),
        "{out}"
    );
    jamd.signal("TERM");
    assert_eq!(jamd.wait_exit(T), Some(0));
}

// ---- HAProxy -------------------------------------------------------------

/// HAProxy in the foreground on a configuration the test writes; stopped by
/// its pid however the test ends.
struct Haproxy {
    _child: ChildGuard,
    front: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

impl Haproxy {
    /// Starts HAProxy with a `jam` frontend on a free loopback port and a
    /// backend of `servers` (one `server` line each, after its address).
    fn start(haproxy: &Path, backend: &str, servers: &[(SocketAddr, &str)]) -> Haproxy {
        let dir = TempDir::new("haproxy");
        let front = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
        let mut cfg = format!(
            "global\n    maxconn 200\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 20s\n    timeout server 20s\n\
             frontend jam\n    bind {front}\n    default_backend jamd\n\
             backend jamd\n{backend}"
        );
        for (i, (addr, opts)) in servers.iter().enumerate() {
            cfg.push_str(&format!("    server jam{i} {addr} {opts}\n"));
        }
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, &cfg).unwrap();
        let log = dir.join("haproxy.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = ChildGuard::spawn(
            Command::new(haproxy)
                .arg("-db")
                .arg("-f")
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out),
        );
        let h = Haproxy {
            _child: child,
            front,
            log,
            _dir: dir,
        };
        common::wait_listening(front, T, Some(&h.log));
        h
    }
}

/// One session through the balancer from `src`: TIME, then QUIT; the reply
/// or why it failed.
fn session(src: &str, to: SocketAddr) -> Result<String, String> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| e.to_string())?;
    let src: IpAddr = src.parse().unwrap();
    sock.bind(&SocketAddr::new(src, 0).into())
        .map_err(|e| format!("bind: {e}"))?;
    sock.connect_timeout(&to.into(), Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"TIME\r\nQUIT\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .map_err(|e| format!("read: {e} after {out:?}"))?;
    let text = String::from_utf8_lossy(&out).into_owned();
    match text.strip_suffix("\r\n") {
        Some(line) if jam_time(line).is_some() => Ok(line.to_owned()),
        _ => Err(format!("reply {text:?}")),
    }
}

fn haproxy() -> Option<PathBuf> {
    require_tool("haproxy")
}

#[test]
fn haproxy_send_proxy_v1_and_v2_with_health_checks() {
    let Some(haproxy) = haproxy() else {
        return;
    };
    for version in ["send-proxy", "send-proxy-v2"] {
        // Health checks logged, to see them come and end well.
        let jamd = behind_balancer("[log]\nhealth_checks = true\n");
        let opts = format!("{version} check inter 100ms");
        let hp = Haproxy::start(&haproxy, "", &[(jamd.addr, &opts)]);
        // Some health checks first (they connect from 127.0.0.1).
        wait_line(&jamd, &["closed 127.0.0.1:"]);
        let reply = session("127.0.0.5", hp.front).unwrap_or_else(|e| {
            panic!(
                "{version}: {e}; jamd: {:#?}; haproxy: {}",
                jamd.stderr.all(),
                std::fs::read_to_string(&hp.log).unwrap_or_default()
            )
        });
        assert!(jam_time(&reply).is_some(), "{reply}");
        let line = wait_line(&jamd, &["connection from 127.0.0.5:", " via 127.0.0.1:"]);
        let client = line
            .split_whitespace()
            .nth(3)
            .unwrap_or_else(|| panic!("{line}"));
        wait_line(
            &jamd,
            &[&format!("closed {client} requests=1 "), "reason=quit"],
        );
        // A few more health checks (every 100 ms), then look: none logged
        // as an error.
        let deadline = Instant::now() + T;
        while jamd.stderr.count("closed 127.0.0.1:") < 4 {
            assert!(
                Instant::now() < deadline,
                "{version}: few health checks: {:#?}",
                jamd.stderr.all()
            );
            thread::sleep(Duration::from_millis(50));
        }
        let all = jamd.stderr.all();
        // Started as root (as tests run) without server.user, jamd says so
        // once at start: not about the health checks.
        for l in all
            .iter()
            .filter(|l| !l.contains("warning: running as root"))
        {
            assert!(
                !l.contains("reason=error")
                    && !l.contains("error:")
                    && !l.contains("warning:")
                    && !l.contains("bad proxy header"),
                "{version}: {l}\n{all:#?}"
            );
        }
        drop(hp);
    }
}

#[test]
fn a_fleet_behind_haproxy_loses_no_session_when_one_jamd_stops() {
    let Some(haproxy) = haproxy() else {
        return;
    };
    let mut a = behind_balancer("");
    let b = behind_balancer("");
    let opts = "send-proxy-v2 check inter 200ms";
    let hp = Haproxy::start(
        &haproxy,
        "    balance roundrobin\n    retries 3\n    option redispatch 1\n",
        &[(a.addr, opts), (b.addr, opts)],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = Arc::clone(&stop);
        let front = hp.front;
        thread::spawn(move || {
            let mut results = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
                results.push(session("127.0.0.6", front));
            }
            results
        })
    };
    // Both serve, then one is stopped in the middle of the traffic.
    wait_line(&a, &["connection from 127.0.0.6:"]);
    wait_line(&b, &["connection from 127.0.0.6:"]);
    a.signal("TERM");
    assert_eq!(a.wait_exit(T), Some(0), "{:#?}", a.stderr.all());
    let served_by_b = b.stderr.count("connection from 127.0.0.6:");
    let now = b
        .stderr
        .wait_for_count("connection from 127.0.0.6:", served_by_b + 200, T);
    assert!(now >= served_by_b + 200, "b serves no more sessions");
    stop.store(true, Ordering::Release);
    let results = client.join().unwrap();
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} sessions failed: {failed:?}\nhaproxy: {}",
        failed.len(),
        results.len(),
        std::fs::read_to_string(&hp.log).unwrap_or_default()
    );
    assert!(results.len() >= 60, "only {} sessions", results.len());
}

// ---- socket activation -----------------------------------------------------

/// `systemd-socket-activate` and the shell standing in for systemd: stopped
/// by pid with every jamd it started.
struct Supervisor(Child);

impl Drop for Supervisor {
    fn drop(&mut self) {
        for kid in common::process::children_of(self.0.id()) {
            let _ = Command::new("kill").arg(kid.to_string()).status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What `jamd.socket` + `systemctl restart jamd.service` do: the listening
/// socket stays with the supervisor while jamd is stopped and started
/// again, so connections made in between wait in the kernel's queue and are
/// served by the next jamd.
#[test]
fn connections_made_during_a_restart_wait_in_the_kernel_and_are_served() {
    let Some(activate) = require_tool("systemd-socket-activate") else {
        return;
    };
    let port = common::free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let dir = temp_dir("restart");
    let cfg = dir.join("jamd.toml");
    std::fs::write(&cfg, "").unwrap();
    let log = dir.join("stderr.log");
    // systemd-socket-activate execs the shell on the first connection; the
    // shell keeps the socket (fd 3) and runs jamd twice, each time with
    // LISTEN_PID set to that jamd's pid, as systemd does, and a pause
    // between them, as a restart has.
    let script = format!(
        "for gen in 1 2; do (export LISTEN_PID=$BASHPID; exec {jamd} -c {cfg} --log stderr); \
         [ $gen = 1 ] && echo restarting >&2 && sleep 2; done",
        jamd = JAMD,
        cfg = cfg.display()
    );
    let sup = Supervisor(
        Command::new(activate)
            .args(["-l", &addr.to_string(), "bash", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let wait_log = |needle: &str, n: usize| {
        common::wait_until(&format!("{needle:?} x{n} in the log"), T, || {
            let text = read_log();
            let enough = text.matches(needle).count() >= n;
            enough.then_some(()).ok_or(common::Verbatim(text))
        });
    };
    common::wait_until("a first session served", T, || {
        session("127.0.0.1", addr).map_err(|e| (e, common::Verbatim(read_log())))
    });
    wait_log("using 1 socket(s) from the service manager", 1);
    let gen1 = common::process::children_of(sup.0.id());
    assert_eq!(gen1.len(), 1, "one jamd under the shell: {gen1:?}");
    let status = Command::new("kill")
        .args(["-TERM", &gen1[0].to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_log("restarting", 1);
    // No jamd runs now; these connect all the same and wait.
    let waiting: Vec<_> = (0..3)
        .map(|_| thread::spawn(move || session("127.0.0.7", addr)))
        .collect();
    for w in waiting {
        let reply = w.join().unwrap();
        assert!(reply.is_ok(), "{reply:?}: {}", read_log());
    }
    wait_log("using 1 socket(s) from the service manager", 2);
    let text = read_log();
    assert!(
        !text.contains("refused") && !text.contains("error"),
        "{text}"
    );
    drop(sup);
}

/// The metrics endpoint of a jamd started with `listen = "127.0.0.1:0"`.
fn metrics_addr(jamd: &Jamd) -> SocketAddr {
    let line = jamd
        .stderr
        .wait_for("metrics at http://", T)
        .unwrap_or_else(|| panic!("no metrics line: {:?}", jamd.stderr.all()));
    let rest = &line[line.find("http://").unwrap() + "http://".len()..];
    rest.split('/').next().unwrap().parse().expect("an address")
}

/// The value of the sample `name` (with its labels, as rendered).
fn sample(metrics: SocketAddr, name: &str) -> f64 {
    let mut s = TcpStream::connect_timeout(&metrics, T).expect("connect to metrics");
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

/// The connection counters a scrape shows: open, accepted, closed (all
/// reasons).
fn connection_counts(metrics: SocketAddr) -> (f64, f64, f64) {
    let closed = ["quit", "eof", "idle", "too_long", "error", "shutdown"]
        .iter()
        .map(|r| {
            sample(
                metrics,
                &format!("jamd_connections_closed_total{{reason=\"{r}\"}}"),
            )
        })
        .sum();
    (
        sample(metrics, "jamd_connections_open"),
        sample(metrics, "jamd_connections_accepted_total"),
        closed,
    )
}

/// Waits (bounded) until `f` holds.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_balancer_connection_before_its_header_holds_a_slot_but_is_no_client() {
    let jamd = Jamd::start(
        "[server]\nmax_connections = 2\n\
         [proxy]\ntrusted = [\"127.0.0.1\"]\nheader_timeout = 60\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n",
    );
    let metrics = metrics_addr(&jamd);
    let mut waiting = Peer::connect("127.0.0.1", jamd.addr);
    let mut direct = Peer::connect("127.0.0.5", jamd.addr);
    assert!(jam_time(&direct.ask("TIME")).is_some());
    // The balancer's connection is not a client yet...
    assert_eq!(connection_counts(metrics), (1.0, 1.0, 0.0));
    jamd.signal("USR1");
    wait_line(&jamd, &["status: 1 connection(s) open, accepted=1 "]);
    // ...but it holds one of max_connections all the same.
    let mut third = Peer::connect("127.0.0.6", jamd.addr);
    assert_eq!(third.line(), "ERROR server busy");
    // Once its header names a client, that client is one.
    waiting.send(&v1("192.0.2.44", 44));
    assert!(jam_time(&waiting.ask("TIME")).is_some());
    assert_eq!(connection_counts(metrics), (2.0, 2.0, 0.0));
    waiting.send(b"QUIT\r\n");
    assert!(waiting.rest().is_empty());
    wait_until("accepted = open + closed after a QUIT", || {
        connection_counts(metrics) == (1.0, 2.0, 1.0)
    });

    // At shutdown, one waiting for its header is not counted as open.
    let _waiting = Peer::connect("127.0.0.1", jamd.addr);
    // Accepted (it holds the other slot: the next client is refused), and
    // still not counted.
    let mut fourth = Peer::connect("127.0.0.6", jamd.addr);
    assert_eq!(fourth.line(), "ERROR server busy");
    assert_eq!(connection_counts(metrics), (1.0, 2.0, 1.0));
    jamd.signal("TERM");
    wait_line(&jamd, &["shutting down: 1 connection(s) open"]);
    drop(direct);
}

#[test]
fn health_checks_are_not_clients_and_are_not_logged_by_default() {
    let jamd = Jamd::start(
        "[proxy]\ntrusted = [\"127.0.0.1\"]\nheader_timeout = 5\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n",
    );
    let metrics = metrics_addr(&jamd);
    let mut ports = Vec::new();
    for header in [v2(0, 0x00, &[]), b"PROXY UNKNOWN\r\n".to_vec()] {
        // A health check that asks, then one that closes after its header.
        let mut c = Peer::connect("127.0.0.1", jamd.addr);
        ports.push(c.port());
        c.send(&header);
        assert!(jam_time(&c.ask("TIME")).is_some(), "served as the balancer");
        drop(c);
        let mut c = Peer::connect("127.0.0.1", jamd.addr);
        ports.push(c.port());
        c.send(&header);
        drop(c);
    }
    // And a plain TCP check: closed without a byte.
    let c = Peer::connect("127.0.0.1", jamd.addr);
    ports.push(c.port());
    drop(c);
    wait_until("four LOCAL/UNKNOWN headers counted", || {
        sample(metrics, "jamd_proxy_headers_total{result=\"local\"}") == 4.0
    });
    // Then a client, so that every earlier connection has been handled.
    let mut client = Peer::connect("127.0.0.1", jamd.addr);
    client.send(&v1("192.0.2.3", 3));
    assert!(jam_time(&client.ask("TIME")).is_some());
    wait_line(&jamd, &["connection from 192.0.2.3:3 via"]);
    wait_until("the health checks closed", || {
        sample(metrics, "jamd_connections_open") == 1.0
    });
    // Not clients: only the one client is counted.
    assert_eq!(connection_counts(metrics), (1.0, 1.0, 0.0));
    // Not logged.
    for line in jamd.stderr.all() {
        for p in &ports {
            assert!(
                !line.contains(&format!("127.0.0.1:{p}")),
                "a health check was logged: {line}"
            );
        }
    }
}

#[test]
fn health_checks_are_logged_when_asked_for() {
    let jamd = behind_balancer("[log]\nhealth_checks = true\n");
    let c = Peer::connect("127.0.0.1", jamd.addr);
    let port = c.port();
    drop(c);
    wait_line(&jamd, &[&format!("connection from 127.0.0.1:{port}")]);
    wait_line(
        &jamd,
        &[
            &format!("closed 127.0.0.1:{port} requests=0 "),
            "reason=eof",
        ],
    );
}

#[test]
fn haproxy_health_checks_are_counted_as_local_and_not_logged() {
    let Some(haproxy) = haproxy() else {
        return;
    };
    let jamd = behind_balancer("[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let metrics = metrics_addr(&jamd);
    let hp = Haproxy::start(
        &haproxy,
        "",
        &[(jamd.addr, "send-proxy-v2 check inter 100ms")],
    );
    wait_until("HAProxy's health checks counted as local", || {
        sample(metrics, "jamd_proxy_headers_total{result=\"local\"}") >= 4.0
    });
    // Clients so far (the harness may have tried the front end): all closed.
    let (open, accepted, closed) = connection_counts(metrics);
    assert_eq!((open, accepted), (0.0, closed));
    let reply = session("127.0.0.5", hp.front).expect("a session through HAProxy");
    assert!(jam_time(&reply).is_some(), "{reply}");
    wait_line(&jamd, &["closed 127.0.0.5:", "reason=quit"]);
    // The session is a client; the checks that went on meanwhile are not:
    // accepted = open + closed.
    let checks = sample(metrics, "jamd_proxy_headers_total{result=\"local\"}");
    wait_until("more health checks", || {
        sample(metrics, "jamd_proxy_headers_total{result=\"local\"}") >= checks + 3.0
    });
    assert_eq!(
        connection_counts(metrics),
        (0.0, accepted + 1.0, closed + 1.0)
    );
    drop(hp);
    // A health check would be logged as the balancer itself, with no client
    // named (`via`); every `closed` line is a named client's.
    let lines = jamd.stderr.all();
    let named: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains(" via "))
        .filter_map(|l| l.split("connection from ").nth(1)?.split(' ').next())
        .collect();
    for line in &lines {
        let check = match line.split("closed ").nth(1) {
            Some(rest) => !named.contains(&rest.split(' ').next().unwrap_or("")),
            None => line.contains("connection from ") && !line.contains(" via "),
        };
        assert!(!check, "a health check was logged: {line}\n{lines:#?}");
    }
}
