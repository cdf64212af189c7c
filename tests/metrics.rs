//! The metrics endpoint (jamd(8), METRICS) against the real things: a real
//! jamd with `[metrics] listen` on loopback, real clients, `promtool`, and a
//! real Prometheus server scraping it. promtool and prometheus come from the
//! Debian package, unpacked by .ci/run into target/tools/root (no service
//! starts); outside CI a missing tool skips the test that needs it.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{repo, slots, temp_dir, ChildGuard, Client, Jamd};

const T: Duration = Duration::from_secs(10);

/// promtool or prometheus: unpacked by .ci/run, or installed.
fn prometheus_tool(name: &str) -> Option<PathBuf> {
    common::require_unpacked(name)
}

/// A jamd with metrics on a port the kernel picks, and that port.
struct Served {
    jamd: Jamd,
    metrics: SocketAddr,
}

fn start(extra: &str) -> Served {
    let config = format!("{extra}\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let jamd = Jamd::start(&config);
    let line = jamd
        .stderr
        .wait_for("metrics at http://", T)
        .unwrap_or_else(|| panic!("no metrics line: {:?}", jamd.stderr.all()));
    let rest = &line[line.find("http://").unwrap() + "http://".len()..];
    let metrics = rest.split('/').next().unwrap().parse().expect("address");
    Served { jamd, metrics }
}

/// Sends `request` and reads the whole response (the server closes).
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect_timeout(&addr, T).expect("connect to metrics");
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(request).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).expect("read the response");
    String::from_utf8(reply).expect("UTF-8 response")
}

/// One HTTP response: status line, header lines, body.
struct Response {
    status: String,
    headers: Vec<String>,
    body: String,
}

fn get(addr: SocketAddr, path: &str) -> Response {
    let reply = exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
    );
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.split("\r\n").map(str::to_owned);
    Response {
        status: lines.next().unwrap(),
        headers: lines.collect(),
        body: body.to_owned(),
    }
}

/// The samples of a scrape: `name{labels}` → value.
fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    r.body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("name value");
            (k.to_owned(), v.parse().expect("a number"))
        })
        .collect()
}

/// The samples these tests compare from one scrape to the next.
const WATCHED: &[&str] = &[
    "jamd_connections_open",
    "jamd_connections_accepted_total",
    "jamd_connections_refused_total{reason=\"busy\"}",
    "jamd_connections_refused_total{reason=\"source_busy\"}",
    "jamd_connections_refused_total{reason=\"rate_limited\"}",
    "jamd_connections_refused_total{reason=\"access_denied\"}",
    "jamd_connections_refused_total{reason=\"bad_proxy_header\"}",
    "jamd_connections_closed_total{reason=\"quit\"}",
    "jamd_connections_closed_total{reason=\"eof\"}",
    "jamd_connections_closed_total{reason=\"idle\"}",
    "jamd_connections_closed_total{reason=\"too_long\"}",
    "jamd_connections_closed_total{reason=\"error\"}",
    "jamd_connections_closed_total{reason=\"shutdown\"}",
    "jamd_requests_total{command=\"time\"}",
    "jamd_requests_total{command=\"unknown\"}",
    "jamd_reloads_total{result=\"ok\"}",
    "jamd_reloads_total{result=\"failed\"}",
];

fn counts(addr: SocketAddr) -> HashMap<String, f64> {
    let all = scrape(addr);
    WATCHED
        .iter()
        .map(|k| {
            let v = *all
                .get(*k)
                .unwrap_or_else(|| panic!("{k} missing from the scrape"));
            (k.to_string(), v)
        })
        .collect()
}

/// accepted = open + the sum of closed, the identity jamd(8), METRICS, states.
fn assert_identity(c: &HashMap<String, f64>) {
    let closed: f64 = c
        .iter()
        .filter(|(k, _)| k.starts_with("jamd_connections_closed_total"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        c["jamd_connections_accepted_total"],
        c["jamd_connections_open"] + closed,
        "accepted = open + closed: {c:?}"
    );
}

/// Waits (bounded) until the scrape shows exactly `before` plus `delta` (the
/// other watched counters unchanged), and the identity holds. A close is
/// counted when the worker handles it, a moment after the client saw it.
fn expect_delta(
    addr: SocketAddr,
    before: &HashMap<String, f64>,
    delta: &[(&str, f64)],
) -> HashMap<String, f64> {
    let mut want = before.clone();
    for (k, d) in delta {
        let full = WATCHED
            .iter()
            .find(|w| w.contains(k))
            .unwrap_or_else(|| panic!("{k} is not watched"));
        *want.get_mut(*full).unwrap() += d;
    }
    let got = common::poll_until(T, || {
        let now = counts(addr);
        if now == want {
            Ok(now)
        } else {
            Err(now)
        }
    });
    match got {
        Ok(now) => {
            assert_identity(&now);
            now
        }
        Err(now) => {
            let diff: Vec<_> = WATCHED
                .iter()
                .filter(|k| now[**k] != want[**k])
                .map(|k| format!("{k}: got {} want {}", now[*k], want[*k]))
                .collect();
            panic!("counters after {delta:?}: {diff:?}");
        }
    }
}

#[test]
fn a_scrape_is_the_text_format_and_promtool_finds_nothing_to_say() {
    let s = start("");
    let r = get(s.metrics, "/metrics");
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    assert!(
        r.headers
            .iter()
            .any(|h| h == "Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{:?}",
        r.headers
    );
    assert!(r.headers.iter().any(|h| h == "Connection: close"));
    assert!(r
        .headers
        .contains(&format!("Content-Length: {}", r.body.len())));
    // Every metric of jamd(8), METRICS, with HELP and TYPE.
    for name in [
        "jamd_build_info",
        "jamd_connections_open",
        "jamd_connections_accepted_total",
        "jamd_connections_refused_total",
        "jamd_connections_closed_total",
        "jamd_requests_total",
        "jamd_tracked_sources",
        "jamd_tracked_sources_evicted_total",
        "jamd_log_lines_dropped_total",
        "jamd_reloads_total",
        "jamd_proxy_headers_total",
        "process_start_time_seconds",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
    ] {
        assert!(r.body.contains(&format!("# HELP {name} ")), "{name}");
        assert!(r.body.contains(&format!("# TYPE {name} ")), "{name}");
    }
    let version = env!("CARGO_PKG_VERSION");
    // version, then the commit built (`unknown` outside a git checkout).
    assert!(
        r.body.contains(&format!(
            "jamd_build_info{{version=\"{version}\",revision=\""
        )),
        "{}",
        r.body
    );
    // A fresh jamd: every counter at 0, for every label value.
    let c = counts(s.metrics);
    assert!(c.values().all(|&v| v == 0.0), "{c:?}");
    // The process metrics are this jamd's.
    let all = scrape(s.metrics);
    let stat = std::fs::read_to_string(format!("/proc/{}/status", s.jamd.pid())).unwrap();
    assert!(stat.contains("Name:\tjamd"));
    assert!(all["process_open_fds"] >= 3.0);
    assert!(all["process_max_fds"] >= all["process_open_fds"]);
    assert!(all["process_resident_memory_bytes"] > 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = all["process_start_time_seconds"];
    assert!(
        started <= now + 1.0 && started > now - 600.0,
        "{started} vs {now}"
    );

    let Some(promtool) = prometheus_tool("promtool") else {
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(r.body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check metrics: {said}");
    assert_eq!(
        said.trim(),
        "",
        "promtool check metrics has something to say"
    );
}

#[test]
fn http_1_0_is_answered_in_http_1_0() {
    let s = start("");
    let reply = exchange(s.metrics, b"GET /metrics HTTP/1.0\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.0 200 OK\r\n"), "{reply}");
    assert!(reply.contains("\r\n\r\n# HELP "), "{reply}");
}

#[test]
fn other_paths_get_404_and_other_methods_405() {
    let s = start("");
    let r = get(s.metrics, "/");
    assert_eq!(r.status, "HTTP/1.1 404 Not Found");
    let r = get(s.metrics, "/metrics/extra");
    assert_eq!(r.status, "HTTP/1.1 404 Not Found");
    for method in ["POST", "PUT", "DELETE"] {
        let reply = exchange(
            s.metrics,
            format!("{method} /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        assert!(
            reply.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{method}: {reply}"
        );
        assert!(reply.contains("\r\nAllow: GET, HEAD\r\n"), "{reply}");
    }
}

#[test]
fn head_metrics_gets_the_head_a_get_gets_without_the_body() {
    let s = start("");
    let reply = exchange(s.metrics, b"HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert_eq!(body, "", "HEAD gets no body");
    let length: usize = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a Content-Length")
        .parse()
        .unwrap();
    // The length a GET's body has (the same metrics, give or take digits of
    // process_* values that change between the two).
    let get_length = get(s.metrics, "/metrics").body.len();
    assert!(
        length.abs_diff(get_length) < 64,
        "HEAD says {length}, GET sends {get_length}"
    );
    let r = exchange(s.metrics, b"HEAD /nope HTTP/1.0\r\n\r\n");
    assert!(
        r.starts_with("HTTP/1.0 404 ") && r.ends_with("\r\n\r\n"),
        "{r}"
    );
}

#[test]
fn a_hundred_clients_holding_half_sent_heads_do_not_delay_a_scrape() {
    let s = start("");
    let crowd: Vec<TcpStream> = (0..100)
        .map(|i| {
            let mut c = TcpStream::connect_timeout(&s.metrics, T).expect("connect");
            let half = format!("GET /metrics HTTP/1.1\r\nHost: slow-{i}\r\n");
            c.write_all(half.as_bytes()).unwrap();
            c
        })
        .collect();
    for _ in 0..3 {
        let mut c = TcpStream::connect_timeout(&s.metrics, T).expect("connect");
        // Within 2 s, however many slow clients came first.
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: prometheus\r\n\r\n")
            .unwrap();
        let mut reply = Vec::new();
        c.read_to_end(&mut reply)
            .expect("a scrape answered within 2 s");
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.contains("\njamd_connections_open "), "{reply}");
    }
    drop(crowd);
}

#[test]
fn listen_colon_port_means_every_address() {
    let jamd = Jamd::start("[metrics]\nlisten = \":0\"\n");
    let line = jamd
        .stderr
        .wait_for("metrics at http://", T)
        .unwrap_or_else(|| panic!("no metrics line: {:?}", jamd.stderr.all()));
    assert!(line.contains("metrics at http://[::]:"), "{line}");
    let port: u16 = line
        .rsplit_once("]:")
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a port in {line}"));
    for addr in ["127.0.0.1", "127.0.0.2", "::1"] {
        let addr = SocketAddr::new(addr.parse().unwrap(), port);
        assert_eq!(get(addr, "/metrics").status, "HTTP/1.1 200 OK", "{addr}");
    }
}

#[test]
fn an_oversized_or_slow_request_head_is_closed() {
    let s = start("");
    // Over 8 KiB without an end: closed, no reply.
    let mut c = TcpStream::connect(s.metrics).unwrap();
    c.set_read_timeout(Some(T)).unwrap();
    let mut head = b"GET /metrics HTTP/1.1\r\n".to_vec();
    while head.len() <= 8 * 1024 + 100 {
        head.extend_from_slice(b"X-Filler: 0123456789abcdef0123456789abcdef\r\n");
    }
    let _ = c.write_all(&head); // the server may close before it has all
    let mut reply = Vec::new();
    let _ = c.read_to_end(&mut reply);
    assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));

    // A head that never ends: closed after 5 s, without a reply.
    let started = Instant::now();
    let mut c = TcpStream::connect(s.metrics).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: slow\r\n")
        .unwrap();
    let mut reply = Vec::new();
    let _ = c.read_to_end(&mut reply);
    let waited = started.elapsed();
    assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(25),
        "closed after {waited:?}"
    );
    // Meanwhile and after, scrapes are answered.
    assert_eq!(get(s.metrics, "/metrics").status, "HTTP/1.1 200 OK");
}

#[test]
fn a_slow_scraper_does_not_hold_up_jam_clients_or_other_scrapes() {
    let s = start("");
    // Eight scrape connections that send nothing: every slot of the endpoint.
    let idle: Vec<_> = (0..8)
        .map(|_| TcpStream::connect(s.metrics).unwrap())
        .collect();
    let mut c = s.jamd.connect();
    for _ in 0..3 {
        assert!(c.ask("TIME").starts_with("JAM "));
    }
    drop(idle);
    assert_eq!(get(s.metrics, "/metrics").status, "HTTP/1.1 200 OK");
}

#[test]
fn the_metrics_socket_is_not_a_jam_client() {
    let s = start("");
    for _ in 0..3 {
        scrape(s.metrics);
    }
    get(s.metrics, "/nope");
    exchange(s.metrics, b"TIME\r\n\r\n");
    let c = counts(s.metrics);
    assert!(c.values().all(|&v| v == 0.0), "{c:?}");
    assert_eq!(s.jamd.stderr.count("connection from"), 0);
}

#[test]
fn counters_follow_a_known_sequence_of_clients() {
    let s = start("[server]\nidle_timeout = 2\nmax_line_bytes = 16\n");
    let a = s.metrics;
    let c0 = counts(a);

    // Served, then QUIT.
    let mut c = s.jamd.connect();
    assert!(c.ask("TIME").starts_with("JAM "));
    assert!(c.ask("time").starts_with("JAM "));
    c.send(b"QUIT\r\n");
    assert!(c.closed());
    let c1 = expect_delta(a, &c0, &[("accepted", 1.0), ("quit", 1.0), ("\"time", 2.0)]);

    // Served, then the client just goes (EOF).
    let mut c = s.jamd.connect();
    assert!(c.ask("TIME").starts_with("JAM "));
    drop(c);
    let c2 = expect_delta(a, &c1, &[("accepted", 1.0), ("eof", 1.0), ("\"time", 1.0)]);

    // An unknown command, then QUIT; empty lines are not requests.
    let mut c = s.jamd.connect();
    assert_eq!(c.ask("HELLO"), "ERROR unknown command");
    c.send(b"\r\n  \r\nQUIT\r\n");
    assert!(c.closed());
    let c3 = expect_delta(
        a,
        &c2,
        &[("accepted", 1.0), ("quit", 1.0), ("unknown", 1.0)],
    );

    // A line too long.
    let mut c = s.jamd.connect();
    c.send(b"TIMETIMETIMETIMETIMETIME\r\n");
    assert_eq!(c.line(), "ERROR line too long");
    assert!(c.closed());
    let c4 = expect_delta(a, &c3, &[("accepted", 1.0), ("too_long", 1.0)]);

    // Idle: nothing sent for idle_timeout.
    let mut c = s.jamd.connect();
    assert_eq!(c.line(), "ERROR idle timeout");
    assert!(c.closed());
    expect_delta(a, &c4, &[("accepted", 1.0), ("idle", 1.0)]);
}

#[test]
fn a_client_over_max_connections_is_counted_as_busy_not_accepted() {
    let s = start("[server]\nmax_connections = 2\n");
    let a = s.metrics;
    let c5 = counts(a);
    let held = slots::hold(&s.jamd, 2);
    let c6 = expect_delta(
        a,
        &c5,
        &[
            ("accepted", 2.0),
            ("jamd_connections_open", 2.0),
            ("\"time", 2.0),
        ],
    );
    slots::assert_refused(s.jamd.connect());
    let c7 = expect_delta(a, &c6, &[("\"busy", 1.0)]);
    for mut c in held {
        c.send(b"QUIT\r\n");
        assert!(c.closed());
    }
    expect_delta(a, &c7, &[("jamd_connections_open", -2.0), ("quit", 2.0)]);
}

#[test]
fn a_per_source_refusal_is_counted_as_source_busy() {
    let s = start("[server]\nmax_connections_per_source = 1\n");
    let c0 = counts(s.metrics);
    let held = slots::hold(&s.jamd, 1);
    slots::assert_refused(s.jamd.connect());
    let c1 = expect_delta(
        s.metrics,
        &c0,
        &[
            ("accepted", 1.0),
            ("jamd_connections_open", 1.0),
            ("\"time", 1.0),
            ("source_busy", 1.0),
        ],
    );
    drop(held);
    expect_delta(
        s.metrics,
        &c1,
        &[("jamd_connections_open", -1.0), ("eof", 1.0)],
    );
}

#[test]
fn a_denied_client_is_counted_as_access_denied_and_never_admitted() {
    let s = start("[access]\ndeny = [\"127.0.0.2\"]\n");
    let c0 = counts(s.metrics);
    for _ in 0..2 {
        let mut denied = Client::connect_from("127.0.0.2", s.jamd.addr);
        assert_eq!(denied.line(), "ERROR access denied");
        assert!(denied.closed());
    }
    let c1 = expect_delta(s.metrics, &c0, &[("access_denied", 2.0)]);
    let mut c = Client::connect_from("127.0.0.3", s.jamd.addr);
    assert!(c.ask("TIME").starts_with("JAM "));
    drop(c);
    expect_delta(
        s.metrics,
        &c1,
        &[("accepted", 1.0), ("\"time", 1.0), ("eof", 1.0)],
    );
}

#[test]
fn a_client_over_its_source_rate_is_counted_as_rate_limited() {
    let s = start("[server]\nconnection_rate_per_source = 1\nconnection_burst_per_source = 1\n");
    let c0 = counts(s.metrics);
    // The bucket holds one token and gains one a second: connecting in a
    // quick loop soon finds it empty. How many got in first depends on the
    // machine's speed; the counters must say exactly what the clients saw.
    let (mut served, mut limited) = (0.0, 0.0);
    for _ in 0..20 {
        let mut c = Client::connect_from("127.0.0.4", s.jamd.addr);
        c.send(b"QUIT\r\n");
        match c.line_raw().as_str() {
            "ERROR rate limited\r\n" => limited += 1.0,
            "" => served += 1.0, // QUIT: closed without a reply
            other => panic!("unexpected reply {other:?}"),
        }
        assert!(c.closed());
        if limited >= 2.0 {
            break;
        }
    }
    assert!(limited >= 2.0, "never rate limited in 20 quick connections");
    expect_delta(
        s.metrics,
        &c0,
        &[
            ("accepted", served),
            ("quit", served),
            ("rate_limited", limited),
        ],
    );
}

#[test]
fn the_per_source_table_is_shown_and_its_evictions_counted() {
    // Room for two sources; each client leaves its source's bucket short of
    // a token for a second, so the source stays in the table until then.
    let s = start(
        "[server]\nmax_connections = 2\nmax_tracked_sources = 2\n\
         connection_rate_per_source = 1\nconnection_burst_per_source = 5\n",
    );
    let mut held = Client::connect_from("127.0.1.1", s.jamd.addr);
    assert!(held.ask("TIME").starts_with("JAM "));
    let all = common::poll_until(T, || {
        let all = scrape(s.metrics);
        if all["jamd_tracked_sources"] == 1.0 {
            Ok(all)
        } else {
            Err(all)
        }
    })
    .unwrap_or_else(|all| all);
    assert_eq!(all["jamd_tracked_sources"], 1.0, "one source with a client");
    assert_eq!(all["jamd_tracked_sources_evicted_total"], 0.0);
    // New sources one after another: the table is full, so the one seen
    // longest ago without a client is forgotten (never 127.0.1.1).
    for i in 2..12 {
        let mut c = Client::connect_from(&format!("127.0.1.{i}"), s.jamd.addr);
        assert!(c.ask("TIME").starts_with("JAM "), "127.0.1.{i}");
        c.send(b"QUIT\r\n");
        assert!(c.closed());
    }
    let all = scrape(s.metrics);
    assert!(all["jamd_tracked_sources"] <= 2.0, "{all:?}");
    assert!(
        all["jamd_tracked_sources_evicted_total"] >= 1.0,
        "ten new sources through a table of two, none forgotten: {all:?}"
    );
    assert!(held.ask("TIME").starts_with("JAM "));
}

#[test]
fn proxy_headers_are_counted_by_result() {
    // 127.0.0.5 plays the balancer; everyone else connects directly.
    let s = start("[proxy]\ntrusted = [\"127.0.0.5\"]\nheader_timeout = 1\n");
    let a = s.metrics;
    let c0 = scrape(a);
    let proxy = |all: &HashMap<String, f64>, result: &str| {
        all[&format!("jamd_proxy_headers_total{{result=\"{result}\"}}")]
    };
    let bad = "jamd_connections_refused_total{reason=\"bad_proxy_header\"}";

    // A header naming a client: served as that client.
    let mut c = Client::connect_from("127.0.0.5", s.jamd.addr);
    c.send(b"PROXY TCP4 192.0.2.7 127.0.0.1 4242 45000\r\nTIME\r\n");
    assert!(c.line().starts_with("JAM "));
    c.send(b"QUIT\r\n");
    assert!(c.closed());
    // A health check (v1 UNKNOWN): served as the balancer itself.
    let mut c = Client::connect_from("127.0.0.5", s.jamd.addr);
    c.send(b"PROXY UNKNOWN\r\nQUIT\r\n");
    assert!(c.closed());
    // Not a header: closed without a reply.
    let mut c = Client::connect_from("127.0.0.5", s.jamd.addr);
    c.send(b"TIME\r\n");
    assert_eq!(c.line_raw(), "");
    // Half a header, then nothing: closed after header_timeout.
    let mut c = Client::connect_from("127.0.0.5", s.jamd.addr);
    c.send(b"PROXY TCP4 192.0.2.7");
    assert_eq!(c.line_raw(), "");

    // The refusal is counted apart from the header's result: wait for both.
    let now = common::poll_until(T, || {
        let now = scrape(a);
        if proxy(&now, "timeout") == proxy(&c0, "timeout")
            || now[bad] - c0[bad] < 2.0
            || now["jamd_connections_closed_total{reason=\"quit\"}"] < 1.0
        {
            Err(now)
        } else {
            Ok(now)
        }
    })
    .unwrap_or_else(|now| now);
    for (result, want) in [
        ("proxy", 1.0),
        ("local", 1.0),
        ("invalid", 1.0),
        ("timeout", 1.0),
    ] {
        assert_eq!(
            proxy(&now, result) - proxy(&c0, result),
            want,
            "{result}: {now:?}"
        );
    }
    assert_eq!(
        now[bad] - c0[bad],
        2.0,
        "invalid and late headers are refusals"
    );
    // Only the connection a header named a client for was a client: the
    // health check was served, but is none.
    assert_eq!(now["jamd_connections_accepted_total"], 1.0);
    assert_eq!(now["jamd_connections_closed_total{reason=\"quit\"}"], 1.0);
    assert_eq!(now["jamd_requests_total{command=\"time\"}"], 1.0);
    assert_eq!(now["jamd_connections_open"], 0.0);
}

#[test]
fn counters_survive_reloads_which_are_counted() {
    let s = start("");
    let mut c = s.jamd.connect();
    assert!(c.ask("TIME").starts_with("JAM "));
    c.send(b"QUIT\r\n");
    assert!(c.closed());
    let c0 = expect_delta(s.metrics, &counts(s.metrics), &[]);
    assert_eq!(c0["jamd_connections_accepted_total"], 1.0);
    let same = std::fs::read_to_string(&s.jamd.config).unwrap();
    s.jamd
        .reload(&format!("{same}\n[time]\nformat = \"%H:%M\"\n"));
    let c1 = expect_delta(s.metrics, &c0, &[("\"ok", 1.0)]);
    // A broken file: counted as failed, and nothing is reset.
    s.jamd.reload_failing("[server]\nport = \"forty\"\n");
    expect_delta(s.metrics, &c1, &[("failed", 1.0)]);
    // Changing the metrics address needs a restart, and says so.
    s.jamd
        .write_config(&same.replace("127.0.0.1:0", "127.0.0.1:1"));
    s.jamd.signal("HUP");
    assert!(s
        .jamd
        .stderr
        .wait_for("metrics.listen changed: restart jamd", T)
        .is_some());
    assert_eq!(get(s.metrics, "/metrics").status, "HTTP/1.1 200 OK");
}

/// SIGUSR1's line (jamd(8), SIGNALS) and a scrape agree, refusals and unknown
/// commands included.
#[test]
fn sigusr1_logs_a_status_line_from_the_same_counters() {
    let s = start("[server]\nmax_connections = 1\n");
    let base = counts(s.metrics);
    let mut held = s.jamd.connect();
    assert!(held.ask("TIME").starts_with("JAM "));
    assert_eq!(held.ask("NOPE"), "ERROR unknown command");
    let mut refused = s.jamd.connect();
    assert_eq!(refused.line(), "ERROR server busy");
    // The refusal is counted a moment after its reply is written: wait for it.
    let c = expect_delta(
        s.metrics,
        &base,
        &[
            ("jamd_connections_open", 1.0),
            ("accepted", 1.0),
            ("\"busy", 1.0),
            ("\"time", 1.0),
            ("\"unknown", 1.0),
        ],
    );
    assert_eq!(c["jamd_connections_accepted_total"], 1.0);
    s.jamd.signal("USR1");
    let line = s
        .jamd
        .stderr
        .wait_for("status: ", T)
        .expect("a status line");
    assert!(
        line.ends_with("status: 1 connection(s) open, accepted=1 refused=1 requests=2"),
        "{line}"
    );
    // SIGUSR1 is no reload and no stop.
    assert_eq!(counts(s.metrics)["jamd_reloads_total{result=\"ok\"}"], 0.0);
    assert!(held.ask("TIME").starts_with("JAM "));
}

#[test]
fn a_bad_metrics_address_is_a_config_error_and_a_taken_one_a_start_failure() {
    let dir = temp_dir("metrics-bad");
    let path = dir.join("jamd.toml");
    std::fs::write(&path, "[metrics]\nlisten = \"localhost:9645\"\n").unwrap();
    let p = path.to_str().unwrap();
    let (code, _, err) = common::run_jamd(&["-t", "-c", p], T);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("metrics.listen"), "{err}");
    assert!(err.contains("jamd.toml:2:"), "{err}");

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    std::fs::write(&path, format!("[metrics]\nlisten = \"{addr}\"\n")).unwrap();
    let (code, _, err) = common::run_jamd(
        &["-c", p, "-p", "0", "-b", "127.0.0.1", "--log", "stderr"],
        T,
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&addr.to_string()), "{err}");
    assert!(err.contains("metrics"), "{err}");
}

/// Asks Prometheus's HTTP API for one instant query; the first result's
/// value, if any.
fn prom_query(api: SocketAddr, query: &str) -> Option<String> {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let mut s = TcpStream::connect_timeout(&api, T).ok()?;
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(
        format!("GET /api/v1/query?query={encoded} HTTP/1.0\r\nHost: prometheus\r\n\r\n")
            .as_bytes(),
    )
    .ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let body = reply.split_once("\r\n\r\n")?.1;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let first = v["data"]["result"].get(0)?;
    first["value"][1].as_str().map(str::to_owned)
}

#[test]
fn a_real_prometheus_scrapes_jamd() {
    let Some(prometheus) = prometheus_tool("prometheus") else {
        return;
    };
    let s = start("");
    // Known traffic before Prometheus looks.
    for _ in 0..3 {
        let mut c = s.jamd.connect();
        assert!(c.ask("TIME").starts_with("JAM "));
        c.send(b"QUIT\r\n");
        assert!(c.closed());
    }
    let dir = temp_dir("prometheus");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: jamd\n    static_configs:\n      - targets: [\"{}\"]\n",
            s.metrics
        ),
    )
    .unwrap();
    let mut last_err = String::new();
    // The port may be taken between free_port and Prometheus binding it:
    // a few tries, each bounded.
    for _ in 0..3 {
        let api: SocketAddr = format!("127.0.0.1:{}", common::free_port())
            .parse()
            .unwrap();
        let log = dir.join("prometheus.log");
        // Stopped by its pid when the guard drops, however the test ends.
        let mut guard = ChildGuard::spawn(
            Command::new(&prometheus)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={api}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap()),
        );
        // Until it scrapes jamd, or exits (a port taken: the next try).
        let up = common::poll_until(Duration::from_secs(60), || {
            let up = prom_query(api, "up{job=\"jamd\"}");
            if up.as_deref() == Some("1") || matches!(guard.0.try_wait(), Ok(Some(_))) {
                Ok(up)
            } else {
                Err(up)
            }
        })
        .unwrap_or_else(|up| up);
        if up.as_deref() != Some("1") {
            last_err = format!(
                "up = {up:?}; prometheus said:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            continue;
        }
        // The counter as Prometheus stored it: 3 clients so far.
        let accepted = prom_query(api, "jamd_connections_accepted_total{job=\"jamd\"}");
        assert_eq!(accepted.as_deref(), Some("3"));
        // Two more clients: Prometheus sees 5 within a few scrapes.
        for _ in 0..2 {
            let mut c = s.jamd.connect();
            assert!(c.ask("TIME").starts_with("JAM "));
        }
        let seen = common::poll_until(Duration::from_secs(30), || {
            let seen = prom_query(api, "jamd_connections_accepted_total{job=\"jamd\"}");
            if seen.as_deref() == Some("5") {
                Ok(seen)
            } else {
                Err(seen)
            }
        })
        .unwrap_or_else(|seen| seen);
        assert_eq!(seen.as_deref(), Some("5"));
        let refused = prom_query(
            api,
            "sum(rate(jamd_connections_refused_total{job=\"jamd\"}[1m]))",
        );
        assert_eq!(refused.as_deref(), Some("0"));
        // The scrapes did not count as clients.
        assert_eq!(counts(s.metrics)["jamd_connections_accepted_total"], 5.0);
        return;
    }
    panic!("prometheus never scraped jamd: {last_err}");
}

/// The shipped alert rules are valid, and their own unit tests pass.
#[test]
fn the_shipped_alert_rules_pass_promtool() {
    let Some(promtool) = prometheus_tool("promtool") else {
        return;
    };
    let dir = repo().join("packaging/prometheus");
    for args in [
        ["check", "rules", "jamd.rules.yml"],
        ["test", "rules", "jamd.rules.test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
