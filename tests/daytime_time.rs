//! Daytime (RFC 867) and Time (RFC 868), over TCP and UDP, against the
//! real thing: a jamd on loopback, asked by clients no one here wrote
//! (`rdate`, `check_time`, `nc`), compared with the built-in services of
//! openbsd-inetd and xinetd (the services jamd replaces), run under
//! openbsd-inetd (stream nowait, dgram wait) and under socket activation
//! with a stream and a datagram socket at once; the 2036 wrap under
//! faketime.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::NaiveDateTime;
use common::supervisor::{current_user, packaged_daemon, Supervisor};
use common::{free_port, require_tool, run_within, Jamd, TempDir, JAMD};

const T: Duration = Duration::from_secs(10);

/// Seconds from 1900 (RFC 868's epoch) to 1970.
const EPOCH_OFFSET: u64 = 2_208_988_800;

/// The four listeners of a jamd started by [`start`].
struct Listeners {
    daytime_tcp: SocketAddr,
    daytime_udp: SocketAddr,
    rfc868_tcp: SocketAddr,
    rfc868_udp: SocketAddr,
}

/// The address of the `listening on` line that ends with `what`.
fn listening(jamd: &Jamd, what: &str) -> SocketAddr {
    let line = jamd
        .stderr
        .wait_for(what, T)
        .unwrap_or_else(|| panic!("no `{what}` line: {:#?}", jamd.stderr.all()));
    common::parse_listening(&line).unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// A jamd with `before` (other sections), and daytime and rfc868 listeners
/// on 127.0.0.1 (ports the kernel picks) over TCP and UDP; `daytime` holds
/// more `[daytime]` keys.
fn start(before: &str, daytime: &str) -> (Jamd, Listeners) {
    let jamd = Jamd::start(&format!(
        "{before}\n[daytime]\nlisten = [\"127.0.0.1:0\"]\nlisten_udp = [\"127.0.0.1:0\"]\n{daytime}\n\
         [rfc868]\nlisten = [\"127.0.0.1:0\"]\nlisten_udp = [\"127.0.0.1:0\"]\n"
    ));
    let l = Listeners {
        daytime_tcp: listening(&jamd, "(daytime, backlog 128)"),
        daytime_udp: listening(&jamd, "(daytime, udp)"),
        rfc868_tcp: listening(&jamd, "(rfc868, backlog 128)"),
        rfc868_udp: listening(&jamd, "(rfc868, udp)"),
    };
    (jamd, l)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Everything a TCP server sends until it closes (bounded).
fn tcp_reply(addr: SocketAddr, send: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect_timeout(&addr, T).unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_read_timeout(Some(T)).unwrap();
    if !send.is_empty() {
        s.write_all(send).unwrap();
    }
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .unwrap_or_else(|e| panic!("read from {addr}: {e}"));
    got
}

/// A UDP client on `from` (127.0.0.1 or another loopback address).
fn udp_client(from: &str) -> UdpSocket {
    let c = UdpSocket::bind((from, 0)).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    c
}

/// One datagram's answer, or None when none comes within 1.5 s.
fn udp_reply(client: &UdpSocket, to: SocketAddr, send: &[u8]) -> Option<Vec<u8>> {
    client.send_to(send, to).unwrap();
    let mut buf = [0u8; 600];
    match client.recv_from(&mut buf) {
        Ok((n, from)) => {
            assert_eq!(from, to, "the answer comes from the listener");
            Some(buf[..n].to_vec())
        }
        Err(_) => None,
    }
}

/// RFC 868's 4 bytes as seconds since 1970 (this era).
fn rfc868_unix(bytes: &[u8]) -> u64 {
    let arr: [u8; 4] = bytes
        .try_into()
        .unwrap_or_else(|_| panic!("not 4 bytes: {bytes:?}"));
    u64::from(u32::from_be_bytes(arr)) - EPOCH_OFFSET
}

/// Asserts that `got` is the time now, to the second (RFC 868 shows whole
/// seconds: never one already past when the request was made).
fn assert_now(got: u64, before: u64, after: u64) {
    assert!(
        before <= got && got <= after,
        "{got} is not between {before} and {after}"
    );
}

/// ctime(3)'s line (`Fri Dec  4 05:44:53 2026`), read in UTC.
fn ctime_unix(line: &str) -> u64 {
    let t = NaiveDateTime::parse_from_str(line.trim_end(), "%a %b %e %H:%M:%S %Y")
        .unwrap_or_else(|e| panic!("not a ctime line {line:?}: {e}"));
    u64::try_from(t.and_utc().timestamp()).unwrap()
}

#[test]
fn daytime_is_ctimes_line_and_time_is_4_bytes_over_tcp_and_udp() {
    let (jamd, l) = start("[time]\ntimezone = \"UTC\"\n", "");
    let before = unix_now();
    let line = tcp_reply(l.daytime_tcp, b"");
    let udp = udp_client("127.0.0.1");
    let dgram = udp_reply(&udp, l.daytime_udp, b"").expect("a daytime datagram");
    let four = tcp_reply(l.rfc868_tcp, b"");
    let four_udp = udp_reply(&udp, l.rfc868_udp, b"whatever it holds").expect("a time datagram");
    let after = unix_now();

    let text = String::from_utf8(line.clone()).unwrap();
    assert!(text.ends_with("\r\n") && text.len() == 26, "{text:?}");
    assert_now(ctime_unix(&text), before, after);
    assert_eq!(dgram.len(), 26);
    assert_now(
        ctime_unix(std::str::from_utf8(&dgram).unwrap()),
        before,
        after,
    );
    assert_now(rfc868_unix(&four), before, after);
    assert_now(rfc868_unix(&four_udp), before, after);

    // What the client sends is read and discarded; the reply is whole
    // and the connection ends with a FIN, not a reset.
    let four = tcp_reply(l.rfc868_tcp, &[b'x'; 3000]);
    assert_eq!(four.len(), 4);

    assert!(jamd
        .stderr
        .wait_for("reason=sent protocol=daytime", T)
        .is_some());
    let closed = jamd
        .stderr
        .wait_for("reason=sent protocol=rfc868", T)
        .unwrap();
    assert!(closed.contains(" requests=1 duration_ms="), "{closed}");
}

#[test]
fn the_daytime_format_and_zone_are_the_configured_ones_and_reload() {
    let (jamd, l) = start(
        "[time]\ntimezone = \"+07:00\"\n",
        "format = \"%Y-%m-%dT%H:%M:%S%z\"",
    );
    let before = unix_now();
    let line = String::from_utf8(tcp_reply(l.daytime_tcp, b"")).unwrap();
    let after = unix_now();
    let t = chrono::DateTime::parse_from_str(line.trim_end(), "%Y-%m-%dT%H:%M:%S%z")
        .unwrap_or_else(|e| panic!("{line:?}: {e}"));
    assert!(line.ends_with("+0700\r\n"), "{line:?}");
    assert_now(u64::try_from(t.timestamp()).unwrap(), before, after);

    // SIGHUP: the new format at once, on the listeners already open.
    let config = std::fs::read_to_string(&jamd.config).unwrap();
    jamd.reload(&config.replace("%Y-%m-%dT%H:%M:%S%z", "%s"));
    let line = String::from_utf8(tcp_reply(l.daytime_tcp, b"")).unwrap();
    let shown: u64 = line
        .trim_end()
        .parse()
        .unwrap_or_else(|e| panic!("{line:?}: {e}; log: {:#?}", jamd.stderr.all()));
    assert_now(shown, before, unix_now());
}

/// rdate's line (`Fri Dec  4 05:58:16 UTC 2026`, with or without the zone),
/// run with TZ=UTC, as seconds since 1970.
fn rdate_unix(out: &str) -> u64 {
    let line = out.lines().last().unwrap_or("").replace(" UTC", "");
    ctime_unix(&line)
}

#[test]
fn rdate_reads_the_time_over_tcp_and_udp() {
    let Some(rdate) = require_tool("rdate") else {
        return;
    };
    let (_jamd, l) = start("", "");
    for (flags, addr) in [(vec![], l.rfc868_tcp), (vec!["-u"], l.rfc868_udp)] {
        let before = unix_now();
        let port = addr.port().to_string();
        let (code, out, err) = run_within(
            Command::new(&rdate)
                .arg("-p")
                .args(&flags)
                .args(["-o", &port, "127.0.0.1"])
                .env("TZ", "UTC"),
            T,
        );
        assert_eq!(code, Some(0), "rdate -p {flags:?}: {out}{err}");
        assert_now(rdate_unix(&out), before, unix_now());
    }
}

#[test]
fn check_time_is_ok_over_tcp_and_udp() {
    let check_time = Path::new("/usr/lib/nagios/plugins/check_time");
    let Some(check_time) =
        common::skip::find_tool("check_time", &[check_time.parent().unwrap().into()])
    else {
        common::skip::record_skip("check_time (monitoring-plugins-basic) is not installed");
        return;
    };
    let (_jamd, l) = start("", "");
    for (flags, addr) in [(vec![], l.rfc868_tcp), (vec!["-u"], l.rfc868_udp)] {
        let port = addr.port().to_string();
        let (code, out, err) = run_within(
            Command::new(&check_time)
                .args(["-H", "127.0.0.1", "-p", &port, "-w", "2", "-c", "5"])
                .args(&flags),
            T,
        );
        assert_eq!(code, Some(0), "check_time {flags:?}: {out}{err}");
        assert!(out.starts_with("TIME OK"), "{out}");
    }
}

#[test]
fn nc_gets_the_daytime_line_and_sees_the_connection_close() {
    let Some(nc) = require_tool("nc") else {
        return;
    };
    let (_jamd, l) = start("[time]\ntimezone = \"UTC\"\n", "");
    let before = unix_now();
    let port = l.daytime_tcp.port().to_string();
    // nc ends when the server closes: no -w needed, -q 0 once stdin ends.
    let (code, out, err) = run_within(
        Command::new(nc)
            .args(["-q", "0", "127.0.0.1", &port])
            .stdin(Stdio::null()),
        T,
    );
    assert_eq!(code, Some(0), "nc: {err}");
    assert!(out.ends_with("\r\n"), "{out:?}");
    assert_now(ctime_unix(&out), before, unix_now());
}

/// Waits until `addr` accepts a TCP connection (bounded).
fn wait_tcp(addr: SocketAddr) {
    let deadline = Instant::now() + T;
    while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback address of its own for this test run (127.x.y.z), so that
/// the well-known ports 13 and 37 the built-in services take are free.
fn private_loopback() -> IpAddr {
    let [a, b, c, d] = std::process::id().to_le_bytes();
    IpAddr::from([127, 100 + a % 100, b ^ c, 2 + d % 200])
}

/// Asks `ask_reference` and `ask_jamd` until both fall in the same second
/// (at most 5 tries), and returns both.
fn same_second(
    ask_reference: impl Fn() -> Vec<u8>,
    ask_jamd: impl Fn() -> Vec<u8>,
) -> (Vec<u8>, Vec<u8>) {
    let mut last = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let a = ask_reference();
        let b = ask_jamd();
        if a == b {
            return (a, b);
        }
        last = (a, b);
    }
    last
}

#[test]
fn replies_are_byte_for_byte_those_of_openbsd_inetds_builtins() {
    let Some(inetd) = packaged_daemon("inetd") else {
        return;
    };
    let ip = private_loopback();
    let dir = TempDir::new("builtins");
    let conf = dir.join("inetd.conf");
    std::fs::write(
        &conf,
        format!("{ip}:daytime stream tcp nowait root internal\n{ip}:time stream tcp nowait root internal\n"),
    )
    .unwrap();
    let _inetd = Supervisor::spawn(
        Command::new(inetd)
            .arg("-d")
            .arg(&conf)
            .env("TZ", "UTC")
            .stderr(Stdio::null()),
    );
    let (daytime, time) = (SocketAddr::new(ip, 13), SocketAddr::new(ip, 37));
    wait_tcp(daytime);
    wait_tcp(time);
    // jamd's defaults, in the zone inetd's ctime(3) uses.
    let (_jamd, l) = start("[time]\ntimezone = \"UTC\"\n", "");
    let (reference, ours) =
        same_second(|| tcp_reply(daytime, b""), || tcp_reply(l.daytime_tcp, b""));
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&reference),
        "daytime over TCP"
    );
    let (reference, ours) = same_second(|| tcp_reply(time, b""), || tcp_reply(l.rfc868_tcp, b""));
    assert_eq!(ours, reference, "time over TCP");
}

#[test]
fn replies_have_the_shape_of_xinetds_builtins() {
    let Some(xinetd) = packaged_daemon("xinetd") else {
        return;
    };
    let dir = TempDir::new("xinetd-builtins");
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let service = |name: &str, kind: &str, port: u16| {
        let (socket, proto, wait) = match kind {
            "stream" => ("stream", "tcp", "no"),
            _ => ("dgram", "udp", "yes"),
        };
        format!(
            "service {name}\n{{\n\ttype = INTERNAL UNLISTED\n\tid = {name}-{kind}\n\tsocket_type = {socket}\n\t\
             protocol = {proto}\n\twait = {wait}\n\tuser = {}\n\tbind = 127.0.0.1\n\tport = {port}\n\t\
             cps = 1000000 1\n\tflags = REUSE NOLIBWRAP\n\tdisable = no\n}}\n",
            current_user()
        )
    };
    let conf = dir.join("xinetd.conf");
    std::fs::write(
        &conf,
        format!(
            "defaults\n{{\n\tinstances = UNLIMITED\n}}\n{}{}{}{}",
            service("daytime", "stream", ports[0]),
            service("time", "stream", ports[1]),
            service("daytime", "dgram", ports[2]),
            service("time", "dgram", ports[3]),
        ),
    )
    .unwrap();
    let log = dir.join("xinetd.log");
    let _xinetd = Supervisor::spawn(
        Command::new(xinetd)
            .arg("-dontfork")
            .arg("-filelog")
            .arg(&log)
            .arg("-pidfile")
            .arg(dir.join("xinetd.pid"))
            .arg("-f")
            .arg(&conf)
            .env("TZ", "UTC")
            .stderr(Stdio::null()),
    );
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    wait_tcp(at(ports[0]));
    let (_jamd, l) = start("[time]\ntimezone = \"UTC\"\n", "");
    let udp = udp_client("127.0.0.1");

    // Time: the same 4 bytes, over TCP and UDP.
    let (reference, ours) = same_second(
        || tcp_reply(at(ports[1]), b""),
        || tcp_reply(l.rfc868_tcp, b""),
    );
    assert_eq!(ours, reference, "time over TCP");
    let (reference, ours) = same_second(
        || udp_reply(&udp, at(ports[3]), b"").expect("xinetd's time datagram"),
        || udp_reply(&udp, l.rfc868_udp, b"").expect("jamd's time datagram"),
    );
    assert_eq!(ours, reference, "time over UDP");

    // Daytime: xinetd writes its own form (`04 DEC 2026 06:04:01 UTC`);
    // both are one line ending in CR LF, sent on open or for any datagram,
    // showing the same time of day.
    let time_of_day = |line: &[u8]| -> String {
        let text = String::from_utf8(line.to_vec()).unwrap();
        assert!(
            text.ends_with("\r\n") && text.matches("\r\n").count() == 1,
            "{text:?}"
        );
        text.split_whitespace()
            .find(|w| w.len() == 8 && w.as_bytes()[2] == b':')
            .unwrap_or_else(|| panic!("no hh:mm:ss in {text:?}"))
            .to_owned()
    };
    let (reference, ours) = same_second(
        || time_of_day(&tcp_reply(at(ports[0]), b"")).into_bytes(),
        || time_of_day(&tcp_reply(l.daytime_tcp, b"")).into_bytes(),
    );
    assert_eq!(ours, reference, "daytime over TCP");
    let (reference, ours) = same_second(
        || {
            time_of_day(&udp_reply(&udp, at(ports[2]), b"").expect("xinetd's daytime datagram"))
                .into_bytes()
        },
        || {
            time_of_day(&udp_reply(&udp, l.daytime_udp, b"").expect("jamd's daytime datagram"))
                .into_bytes()
        },
    );
    assert_eq!(ours, reference, "daytime over UDP");
}

/// jamd run by faketime (`@DATE`: the clock starts there and runs on),
/// with daytime over TCP and rfc868 over TCP and UDP: those addresses.
fn start_faked(date: &str) -> Option<(Jamd, [SocketAddr; 3])> {
    let libfaketime = common::libfaketime()?;
    let dir = TempDir::new("faked");
    let path = dir.join("jamd.toml");
    std::fs::write(
        &path,
        "[time]\ntimezone = \"UTC\"\n[daytime]\nlisten = [\"127.0.0.1:0\"]\n\
         [rfc868]\nlisten = [\"127.0.0.1:0\"]\nlisten_udp = [\"127.0.0.1:0\"]\n",
    )
    .unwrap();
    // libfaketime preloaded into jamd itself, so that the pid the guard
    // stops is jamd's (the faketime command would fork it as its child).
    let mut cmd = Command::new(JAMD);
    cmd.arg("-c")
        .arg(&path)
        .args(common::LOOPBACK_ARGS)
        .env("LD_PRELOAD", libfaketime)
        .env("FAKETIME", format!("@{date}"))
        // The timers of the event loop keep real time.
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let jamd = Jamd::spawn(cmd, dir, path);
    let at = [
        listening(&jamd, "(daytime, backlog 128)"),
        listening(&jamd, "(rfc868, backlog 128)"),
        listening(&jamd, "(rfc868, udp)"),
    ];
    Some((jamd, at))
}

#[test]
fn the_count_wraps_on_2036_02_07_06_28_16_utc() {
    // Two seconds before the wrap: the count is near 2^32.
    let Some((jamd, [daytime, time, _])) = start_faked("2036-02-07 06:28:14") else {
        return;
    };
    let four = tcp_reply(time, b"");
    let n = u32::from_be_bytes(four.try_into().unwrap());
    assert!(n >= u32::MAX - 2, "before the wrap: {n}");
    let day = String::from_utf8(tcp_reply(daytime, b"")).unwrap();
    assert!(day.starts_with("Thu Feb  7 06:28:1"), "{day:?}");
    let first = jamd.pid();
    drop(jamd);
    remove_faketime_shm(first);

    // Just after it: the count starts again from 0, over TCP and UDP.
    let Some((jamd, [_, time, time_udp])) = start_faked("2036-02-07 06:28:17") else {
        return;
    };
    let four = tcp_reply(time, b"");
    let n = u32::from_be_bytes(four.try_into().unwrap());
    assert!((1..=5).contains(&n), "after the wrap: {n}");
    let udp = udp_client("127.0.0.1");
    let four = udp_reply(&udp, time_udp, b"").expect("a time datagram");
    let n = u32::from_be_bytes(four.try_into().unwrap());
    assert!((1..=5).contains(&n), "after the wrap, over UDP: {n}");
    let second = jamd.pid();
    drop(jamd);
    remove_faketime_shm(second);
}

/// libfaketime's shared-memory files of a jamd that has stopped: the
/// sandbox keeps jamd from removing them itself at exit.
fn remove_faketime_shm(pid: i32) {
    for name in ["faketime_shm_", "sem.faketime_sem_"] {
        let _ = std::fs::remove_file(format!("/dev/shm/{name}{pid}"));
    }
}

#[test]
fn refused_clients_get_no_bytes_and_refused_datagrams_no_answer() {
    let (jamd, l) = start(
        "[access]\ndeny = [\"127.0.0.2\"]\n\
         [server]\nconnection_rate_per_source = 1\nconnection_burst_per_source = 3\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n",
        "",
    );
    // A denied TCP client: closed at once, without a byte.
    let mut s = common::client::connect_from("127.0.0.2", l.daytime_tcp);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(got.is_empty(), "a refused client got {got:?}");

    // A denied datagram: no answer.
    let denied = udp_client("127.0.0.2");
    assert_eq!(udp_reply(&denied, l.rfc868_udp, b""), None);

    // The bucket of 3 is shared by datagrams and connections.
    let c = udp_client("127.0.0.1");
    assert!(udp_reply(&c, l.rfc868_udp, b"").is_some());
    assert!(udp_reply(&c, l.daytime_udp, b"").is_some());
    assert_eq!(tcp_reply(l.rfc868_tcp, b"").len(), 4);
    // (The refused connection first: waiting for the answer that does not
    // come gives the bucket time to refill.)
    let mut s = TcpStream::connect(l.rfc868_tcp).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(got.is_empty(), "a rate-limited connection got {got:?}");
    assert_eq!(udp_reply(&c, l.rfc868_udp, b""), None, "no token left");

    // From a port below 1024 (another service's): never answered.
    let privileged = UdpSocket::bind("127.0.0.1:1013");
    if let Ok(p) = &privileged {
        p.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        assert_eq!(udp_reply(p, l.daytime_udp, b""), None, "from port 1013");
    }

    assert!(jamd.stderr.wait_for("refused 127.0.0.2:", T).is_some());
    let line = jamd.stderr.wait_for("metrics at http://", T).unwrap();
    let metrics: SocketAddr = line[line.find("http://").unwrap() + 7..]
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut s = TcpStream::connect(metrics).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let value = |key: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
            .to_owned()
    };
    assert_eq!(
        value("jamd_datagrams_refused_total{reason=\"access_denied\"}"),
        "1"
    );
    assert_eq!(
        value("jamd_datagrams_refused_total{reason=\"rate_limited\"}"),
        "1"
    );
    let bad = if privileged.is_ok() { "1" } else { "0" };
    assert_eq!(
        value("jamd_datagrams_refused_total{reason=\"bad_source\"}"),
        bad
    );
    assert_eq!(
        value("jamd_datagrams_refused_total{reason=\"send_failed\"}"),
        "0"
    );
    assert_eq!(
        value("jamd_replies_total{protocol=\"rfc868\",transport=\"udp\"}"),
        "1"
    );
    assert_eq!(
        value("jamd_replies_total{protocol=\"daytime\",transport=\"udp\"}"),
        "1"
    );
    assert_eq!(
        value("jamd_replies_total{protocol=\"rfc868\",transport=\"tcp\"}"),
        "1"
    );
    let received = if privileged.is_ok() { "2" } else { "1" };
    assert_eq!(
        value("jamd_datagrams_received_total{protocol=\"daytime\"}"),
        received
    );
    assert_eq!(
        value("jamd_datagrams_received_total{protocol=\"rfc868\"}"),
        "3"
    );
    assert_eq!(value("jamd_connections_closed_total{reason=\"sent\"}"), "1");
    assert_eq!(
        value("jamd_connections_refused_total{reason=\"access_denied\"}"),
        "1"
    );
    assert_eq!(
        value("jamd_connections_refused_total{reason=\"rate_limited\"}"),
        "1"
    );
}

#[test]
fn a_listener_twice_or_not_addr_port_is_a_configuration_error() {
    let checked = common::check_config(
        "[daytime]\nlisten_udp = [\"127.0.0.1:1313\"]\n[rfc868]\nlisten_udp = [\"127.0.0.1:1313\"]\n",
        &[],
    );
    assert_eq!(checked.code, Some(78), "{checked:?}");
    assert!(
        checked.err.contains(
            "rfc868.listen_udp: 127.0.0.1:1313 (udp) is taken by daytime.listen_udp already"
        ),
        "{checked:?}"
    );
    let checked = common::check_config("[daytime]\nlisten = [\"localhost:13\"]\n", &[]);
    assert_eq!(checked.code, Some(78), "{checked:?}");
    assert!(
        checked
            .err
            .contains("daytime.listen: expected \"ADDR:PORT\""),
        "{checked:?}"
    );
    // -t prints both sections.
    let checked = common::check_config("[rfc868]\nlisten = [\"[::1]:3737\"]\n", &[]);
    assert_eq!(checked.code, Some(0), "{checked:?}");
    assert!(
        checked.out.contains(
            "[daytime]\nlisten = []\nlisten_udp = []\nformat = \"%a %b %e %H:%M:%S %Y\"\n"
        ),
        "{}",
        checked.out
    );
    assert!(
        checked
            .out
            .contains("[rfc868]\nlisten = [\"[::1]:3737\"]\nlisten_udp = []"),
        "{}",
        checked.out
    );
}

/// The children of `sup` that still run, waited for (bounded) until there
/// are `n`.
fn wait_children(sup: &Supervisor, n: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if sup.children().len() == n {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn under_openbsd_inetd_jamd_serves_daytime_stream_nowait_and_rfc868_dgram_wait() {
    let Some(inetd) = packaged_daemon("inetd") else {
        return;
    };
    let dir = TempDir::new("inetd-protocols");
    let cfg = dir.join("jamd.toml");
    std::fs::write(
        &cfg,
        "[server]\nidle_timeout = 1\n[time]\ntimezone = \"UTC\"\n[log]\ntarget = \"stderr\"\n",
    )
    .unwrap();
    let (tcp, udp) = (free_port(), free_port());
    let user = current_user();
    let conf = dir.join("inetd.conf");
    std::fs::write(
        &conf,
        format!(
            "127.0.0.1:{tcp} stream tcp nowait {user} {JAMD} jamd --inetd --protocol daytime -c {c}\n\
             127.0.0.1:{udp} dgram udp wait {user} {JAMD} jamd --inetd --protocol rfc868 -c {c}\n",
            c = cfg.display()
        ),
    )
    .unwrap();
    let sup = Supervisor::spawn(
        Command::new(inetd)
            .arg("-d")
            .arg(&conf)
            .stderr(Stdio::null()),
    );
    let daytime = SocketAddr::from(([127, 0, 0, 1], tcp));
    let time = SocketAddr::from(([127, 0, 0, 1], udp));
    wait_tcp(daytime);
    for _ in 0..2 {
        let before = unix_now();
        let line = String::from_utf8(tcp_reply(daytime, b"")).unwrap();
        assert_now(ctime_unix(&line), before, unix_now());
    }
    // dgram wait: one jamd answers every datagram while they come...
    let c = udp_client("127.0.0.1");
    let before = unix_now();
    let first = udp_reply(&c, time, b"").expect("an answer from jamd under inetd");
    assert_now(rfc868_unix(&first), before, unix_now());
    assert!(udp_reply(&c, time, b"").is_some());
    // ...and exits 0 once none has come for idle_timeout; inetd then
    // starts another for the next datagram.
    assert!(
        wait_children(&sup, 0, T),
        "jamd did not exit after idle_timeout: {:?}",
        sup.children()
    );
    assert!(udp_reply(&c, time, b"").is_some(), "a new jamd answers");
}

/// Runs `jamd -c CFG` with the sockets `fds` at descriptors 3, 4, … and
/// `LISTEN_FDS`, `LISTEN_FDNAMES` = `names`, `LISTEN_PID` = its own pid:
/// what systemd does, for a stream and datagram sockets at once (which
/// systemd-socket-activate cannot).
fn activate(fds: &[socket2::Socket], names: &str, dir: TempDir, config: &str) -> Jamd {
    use std::os::fd::AsRawFd;
    let path = dir.join("jamd.toml");
    std::fs::write(&path, config).unwrap();
    // bash (dash takes no descriptor above 9): first out of the way of 3…,
    // then into place, then exec jamd in the same process (same pid).
    let mut script = String::from("exec");
    for (i, s) in fds.iter().enumerate() {
        s.set_cloexec(false).unwrap();
        script.push_str(&format!(" {}<&{}", 50 + i, s.as_raw_fd()));
    }
    script.push_str("; exec");
    for i in 0..fds.len() {
        script.push_str(&format!(" {}<&{} {}<&-", 3 + i, 50 + i, 50 + i));
    }
    script.push_str(&format!(
        "; export LISTEN_PID=$$ LISTEN_FDS={} LISTEN_FDNAMES='{names}'; exec \"$0\" -c \"$1\" --log stderr",
        fds.len()
    ));
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script).arg(JAMD).arg(&path);
    let jamd = Jamd::spawn(cmd, dir, path);
    for s in fds {
        s.set_cloexec(true).unwrap();
    }
    jamd
}

#[test]
fn socket_activation_serves_stream_and_datagram_sockets_by_name_or_address() {
    use socket2::{Domain, Socket, Type};
    let bound = |ty: Type| {
        let s = Socket::new(Domain::IPV4, ty, None).unwrap();
        s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        if ty == Type::STREAM {
            s.listen(16).unwrap();
        }
        s
    };
    let addr = |s: &Socket| s.local_addr().unwrap().as_socket().unwrap();
    // 3: TCP named daytime; 4: UDP named rfc868; 5: UDP without a name, at
    // the port of daytime.listen_udp (a wildcard there); 6: TCP without a
    // name matching nothing (JAM, as ever); 7: UDP without a name matching
    // nothing (skipped, with a warning).
    let fds = [
        bound(Type::STREAM),
        bound(Type::DGRAM),
        bound(Type::DGRAM),
        bound(Type::STREAM),
        bound(Type::DGRAM),
    ];
    let config = format!(
        "[time]\ntimezone = \"UTC\"\n[daytime]\nlisten_udp = [\"0.0.0.0:{}\"]\n",
        addr(&fds[2]).port()
    );
    let jamd = activate(
        &fds,
        "daytime:rfc868:::",
        TempDir::new("activated"),
        &config,
    );
    assert!(jamd
        .stderr
        .wait_for("using 4 socket(s) from the service manager", T)
        .is_some());
    let warning = jamd
        .stderr
        .wait_for("matches no daytime.listen_udp", T)
        .unwrap();
    assert!(warning.contains("passed descriptor 7"), "{warning}");
    let before = unix_now();
    let line = String::from_utf8(tcp_reply(addr(&fds[0]), b"")).unwrap();
    assert_now(ctime_unix(&line), before, unix_now());
    let c = udp_client("127.0.0.1");
    let four = udp_reply(&c, addr(&fds[1]), b"").expect("rfc868 on the named datagram socket");
    assert_now(rfc868_unix(&four), before, unix_now());
    let day = udp_reply(&c, addr(&fds[2]), b"").expect("daytime on the matched datagram socket");
    assert_eq!(day.len(), 26);
    let mut jam = common::Client::connect(addr(&fds[3]));
    assert!(common::jam_time(&jam.ask("TIME")).is_some());
    assert_eq!(
        udp_reply(&c, addr(&fds[4]), b""),
        None,
        "the skipped socket"
    );
}

#[test]
fn the_shipped_inetd_and_xinetd_entries_serve_daytime_and_time_through_jamd() {
    let inetd = common::repo_file("packaging/inetd/jamd-time.inetd");
    let lines: Vec<Vec<&str>> = inetd
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let mut seen = Vec::new();
    for f in &lines {
        let (service, socket, wait) = (f[0], f[1], f[3]);
        let want = match service {
            "daytime" => "daytime",
            "time" => "rfc868",
            other => panic!("unexpected service {other}"),
        };
        assert_eq!(
            &f[5..],
            ["/usr/bin/jamd", "jamd", "--inetd", "--protocol", want],
            "{f:?}"
        );
        match socket {
            "stream" => assert_eq!((f[2], wait), ("tcp", "nowait"), "{f:?}"),
            "dgram" => assert_eq!((f[2], wait), ("udp", "wait"), "{f:?}"),
            other => panic!("socket type {other}"),
        }
        seen.push((service, socket));
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        [
            ("daytime", "dgram"),
            ("daytime", "stream"),
            ("time", "dgram"),
            ("time", "stream")
        ]
    );
    let xinetd = common::repo_file("packaging/xinetd/jamd-time");
    for (args, socket) in [
        ("--inetd --protocol daytime", "stream"),
        ("--inetd --protocol daytime", "dgram"),
        ("--inetd --protocol rfc868", "stream"),
        ("--inetd --protocol rfc868", "dgram"),
    ] {
        let found = xinetd.split("service ").skip(1).any(|block| {
            let attr = |k: &str| {
                block.lines().find_map(|l| {
                    let (key, value) = l.split_once('=')?;
                    (key.trim() == k).then(|| value.trim().to_owned())
                })
            };
            attr("server_args").as_deref() == Some(args)
                && attr("socket_type").as_deref() == Some(socket)
                && attr("wait").as_deref() == Some(if socket == "dgram" { "yes" } else { "no" })
                && attr("server").as_deref() == Some("/usr/bin/jamd")
        });
        assert!(
            found,
            "packaging/xinetd/jamd-time: no {socket} service running jamd {args}"
        );
    }
}
