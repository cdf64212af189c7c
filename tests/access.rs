//! Who may connect and how much each source may take (jamd.toml(5), The
//! [access] table and The [server] table), against a real jamd on loopback:
//! clients bind 127.0.0.2, 127.0.0.3, … to play other hosts. Also
//! `jamd --check-access`, the configuration errors, reloads that change the
//! rules while clients are connected, the refusal log lines, the bounded
//! source table, and a dual-stack socket from systemd.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    check_config, require_tool, run_jamd, temp_dir, wait_file, wait_until, write_file, Checked,
    ChildGuard, Client, Jamd, Verbatim, JAMD,
};

const T: Duration = Duration::from_secs(10);

/// Connects from `src` and returns the first reply to TIME (or the refusal
/// the server sent at once).
fn first_reply(src: &str, to: SocketAddr) -> String {
    let mut c = Client::connect_from(src, to);
    c.ask("TIME")
}

/// A client from `src` whose TIME was answered: it holds a place.
fn served_from(src: &str, to: SocketAddr) -> Client {
    let mut c = Client::connect_from(src, to);
    let reply = c.ask("TIME");
    assert!(reply.starts_with("JAM "), "{src}: {reply:?}");
    c
}

fn assert_served(src: &str, to: SocketAddr) {
    served_from(src, to);
}

fn assert_refused(src: &str, to: SocketAddr, why: &str) {
    // Refused clients are told at once, before they send anything, and closed.
    let mut c = Client::connect_from(src, to);
    assert_eq!(c.line(), format!("ERROR {why}"), "{src}");
    assert!(c.closed(), "{src}: still open after ERROR {why}");
}

#[test]
fn a_denied_client_is_told_and_closed_and_others_are_served() {
    let jamd = Jamd::start("[access]\nallow = [\"127.0.0.0/8\"]\ndeny = [\"127.0.0.2\"]\n");
    assert_refused("127.0.0.2", jamd.addr, "access denied");
    assert_served("127.0.0.3", jamd.addr);
    assert!(
        jamd.stderr
            .wait_for("refused 127.0.0.2:", T)
            .is_some_and(|l| l.ends_with(": access denied")),
        "{:?}",
        jamd.stderr.all()
    );
}

#[test]
fn the_longest_prefix_decides_and_a_tie_denies() {
    let jamd = Jamd::start(
        "[access]\n\
         allow = [\"127.0.0.0/24\", \"127.0.0.4\"]\n\
         deny = [\"127.0.0.0/8\", \"127.0.0.4/32\", \"127.0.0.5\"]\n",
    );
    assert_served("127.0.0.2", jamd.addr); // allow /24 beats deny /8
    assert_refused("127.0.1.2", jamd.addr, "access denied"); // only deny /8
    assert_refused("127.0.0.4", jamd.addr, "access denied"); // /32 in both: tie
    assert_refused("127.0.0.5", jamd.addr, "access denied"); // deny /32 beats allow /24
}

#[test]
fn with_an_allow_list_an_address_in_no_entry_is_denied() {
    let jamd = Jamd::start("[access]\nallow = [\"127.0.0.2\", \"127.0.0.3\"]\n");
    assert_served("127.0.0.2", jamd.addr);
    assert_served("127.0.0.3", jamd.addr);
    assert_refused("127.0.0.4", jamd.addr, "access denied");
}

#[test]
fn denied_clients_never_count_against_max_connections() {
    let jamd = Jamd::start("[server]\nmax_connections = 1\n[access]\ndeny = [\"127.0.0.2\"]\n");
    let mut held = served_from("127.0.0.3", jamd.addr);
    // Full: a denied client hears that it is denied, not that we are busy.
    assert_refused("127.0.0.2", jamd.addr, "access denied");
    assert_refused("127.0.0.4", jamd.addr, "server busy");
    assert!(held.ask("TIME").starts_with("JAM "));
}

#[test]
fn per_source_limits_count_sources_cut_to_their_prefix() {
    let jamd = Jamd::start("[server]\nmax_connections_per_source = 1\nsource_prefix_v4 = 24\n");
    let held = served_from("127.0.0.2", jamd.addr);
    // 127.0.0.3 is in the same /24: the same source.
    assert_refused("127.0.0.3", jamd.addr, "server busy");
    assert_served("127.0.1.3", jamd.addr);
    drop(held);
    // The slot comes back once the first client is gone.
    wait_until("127.0.0.3's slot back", T, || {
        let reply = first_reply("127.0.0.3", jamd.addr);
        reply.starts_with("JAM ").then_some(()).ok_or(reply)
    });
}

#[test]
fn a_source_over_its_rate_is_rate_limited_and_others_are_not() {
    let jamd =
        Jamd::start("[server]\nconnection_rate_per_source = 1\nconnection_burst_per_source = 3\n");
    let start = Instant::now();
    let replies: Vec<String> = (0..6)
        .map(|_| first_reply("127.0.0.2", jamd.addr))
        .collect();
    let elapsed = start.elapsed();
    let served = replies.iter().filter(|r| r.starts_with("JAM ")).count();
    let limited = replies
        .iter()
        .filter(|r| *r == "ERROR rate limited")
        .count();
    assert_eq!(served + limited, 6, "{replies:?}");
    // At most the burst plus one a second; exactly the burst when fast.
    let most = 3 + usize::try_from(elapsed.as_secs()).unwrap() + 1;
    assert!(served >= 3 && served <= most, "{replies:?} in {elapsed:?}");
    if elapsed < Duration::from_millis(900) {
        assert_eq!(served, 3, "{replies:?} in {elapsed:?}");
    }
    assert_served("127.0.0.3", jamd.addr);
    let line = jamd.stderr.wait_for(": rate limited", T);
    assert!(
        line.is_some_and(|l| l.contains("refused 127.0.0.2:")),
        "{:#?}",
        jamd.log()
    );
}

#[test]
fn reloads_add_and_remove_rules_without_dropping_anyone() {
    let jamd = Jamd::start("");
    let mut two = Client::connect_from("127.0.0.2", jamd.addr);
    let mut three = Client::connect_from("127.0.0.3", jamd.addr);
    assert!(two.ask("TIME").starts_with("JAM "));
    assert!(three.ask("TIME").starts_with("JAM "));

    jamd.reload("[access]\ndeny = [\"127.0.0.2\"]\n[server]\nmax_connections_per_source = 1\n");
    // Those connected stay served; new ones meet the new rules, and the
    // clients already connected count against the new per-source limit.
    assert!(two.ask("TIME").starts_with("JAM "));
    assert!(three.ask("TIME").starts_with("JAM "));
    assert_refused("127.0.0.2", jamd.addr, "access denied");
    assert_refused("127.0.0.3", jamd.addr, "server busy");
    assert_served("127.0.0.4", jamd.addr);

    jamd.reload("[server]\nconnection_rate_per_source = 1\nconnection_burst_per_source = 1\n");
    assert!(two.ask("TIME").starts_with("JAM "));
    assert!(three.ask("TIME").starts_with("JAM "));
    assert_served("127.0.0.2", jamd.addr);
    assert_served("127.0.0.3", jamd.addr);
    let mut c = Client::connect_from("127.0.0.3", jamd.addr);
    let reply = c.ask("TIME");
    assert!(
        reply == "ERROR rate limited" || reply.starts_with("JAM "),
        "{reply}"
    );

    jamd.reload("");
    assert!(two.ask("TIME").starts_with("JAM "));
    assert!(three.ask("TIME").starts_with("JAM "));
    for _ in 0..5 {
        assert_served("127.0.0.3", jamd.addr);
    }
}

#[test]
fn a_full_table_forgets_the_source_seen_longest_ago_but_never_a_connected_one() {
    let jamd = Jamd::start(
        "[server]\nmax_tracked_sources = 2\nmax_connections = 2\n\
         connection_rate_per_source = 1\nconnection_burst_per_source = 1\n",
    );
    // Each source spends its one token; the table holds two of them.
    assert_served("127.0.0.2", jamd.addr);
    assert_served("127.0.0.3", jamd.addr);
    let since_four = Instant::now();
    assert_served("127.0.0.4", jamd.addr); // forgets 127.0.0.2
                                           // Forgotten, 127.0.0.2 starts again with a full bucket (127.0.0.3 goes).
    assert_served("127.0.0.2", jamd.addr);
    // 127.0.0.4 is remembered: still rate limited (unless a loaded machine
    // took a whole second since its first connection, refilling its bucket).
    let reply = first_reply("127.0.0.4", jamd.addr);
    if since_four.elapsed() < Duration::from_millis(900) {
        assert_eq!(reply, "ERROR rate limited");
    }

    // Sources with clients connected are never forgotten: with both places
    // taken by connected sources, a new source is turned away.
    jamd.reload("[server]\nmax_tracked_sources = 2\nmax_connections_per_source = 5\n");
    let mut a = Client::connect_from("127.0.0.5", jamd.addr);
    let mut b = Client::connect_from("127.0.0.6", jamd.addr);
    assert!(a.ask("TIME").starts_with("JAM "));
    assert!(b.ask("TIME").starts_with("JAM "));
    assert_refused("127.0.0.7", jamd.addr, "server busy");
    assert!(a.ask("TIME").starts_with("JAM "));
    drop(b);
    wait_until("room for 127.0.0.7 after a source left", T, || {
        let reply = first_reply("127.0.0.7", jamd.addr);
        reply.starts_with("JAM ").then_some(()).ok_or(reply)
    });
}

/// Sums what the log says about refusals: the lines naming a client and
/// the `refused N more connection(s)` summaries.
fn refusals_logged(lines: &[String]) -> (usize, u64) {
    let single = lines
        .iter()
        .filter(|l| l.contains("refused 127.") && l.ends_with(": access denied"))
        .count();
    let more = lines
        .iter()
        .filter_map(|l| {
            let rest = &l[l.find("refused ")? + "refused ".len()..];
            // `refused N more connection(s): N access denied`
            let (n, _) = rest.split_once(" more connection(s)")?;
            n.parse::<u64>().ok()
        })
        .sum();
    (single, more)
}

#[test]
fn a_flood_of_refusals_logs_a_line_a_second_and_every_count() {
    let jamd = Jamd::start("[access]\ndeny = [\"127.0.0.2\"]\n");
    const N: usize = 60;
    let start = Instant::now();
    for _ in 0..N {
        let mut c = Client::connect_from("127.0.0.2", jamd.addr);
        assert_eq!(c.line(), "ERROR access denied");
    }
    let elapsed = start.elapsed();
    // The summary comes once refusals stop (within a minute at most).
    let what = format!("the log to count all {N} refusals");
    let (single, more) = wait_until(&what, Duration::from_secs(70), || {
        let lines = jamd.stderr.all();
        let (single, more) = refusals_logged(&lines);
        let logged = single as u64 + more;
        assert!(
            logged <= N as u64,
            "logged {single} + {more} of {N}: {lines:#?}"
        );
        if logged == N as u64 {
            Ok((single, more))
        } else {
            Err((single, more, lines))
        }
    });
    assert!(
        single <= usize::try_from(elapsed.as_secs()).unwrap() + 2,
        "{single} lines in {elapsed:?}"
    );
    assert!(more > 0);
}

#[test]
fn refusals_left_out_are_logged_before_stopped() {
    let mut jamd = Jamd::start("[access]\ndeny = [\"127.0.0.2\"]\n");
    const N: usize = 20;
    for _ in 0..N {
        let mut c = Client::connect_from("127.0.0.2", jamd.addr);
        assert_eq!(c.line(), "ERROR access denied");
    }
    // At once, before the summary is due: it must come before `stopped`.
    jamd.signal("TERM");
    jamd.exits_0(T);
    assert!(jamd.stderr.wait_for("stopped", T).is_some());
    let lines = jamd.stderr.all();
    let (single, more) = refusals_logged(&lines);
    assert_eq!(single as u64 + more, N as u64, "{lines:#?}");
    let stopped = lines.iter().position(|l| l.ends_with("stopped")).unwrap();
    assert!(
        lines[stopped..].iter().all(|l| !l.contains("refused")),
        "{lines:#?}"
    );
}

#[test]
fn check_access_says_who_decides_and_exits_0_or_1() {
    let rules = "[access]\nallow = [\"10.0.0.0/8\"]\ndeny = [\"10.1.2.0/24\"]\n";
    let dir = temp_dir("check-access");
    let cfg = write_file(&dir, "jamd.toml", rules);
    let run = |addr: &str| run_jamd(&["-c", &cfg, "--check-access", addr], T);
    assert_eq!(
        run("10.9.8.7"),
        (Some(0), "10.9.8.7: allowed\n".into(), String::new())
    );
    assert_eq!(
        run("10.1.2.3"),
        (
            Some(1),
            "10.1.2.3: denied (by deny 10.1.2.0/24)\n".into(),
            String::new()
        )
    );
    // As seen on a dual-stack socket: the IPv4 rules apply.
    let (code, out, _) = run("::ffff:10.1.2.3");
    assert_eq!(code, Some(1));
    assert_eq!(out, "::ffff:10.1.2.3: denied (by deny 10.1.2.0/24)\n");
    let (code, out, _) = run("192.0.2.1");
    assert_eq!(code, Some(1));
    assert!(out.starts_with("192.0.2.1: denied"), "{out}");
    let (code, _, err) = run("gateway");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--check-access"), "{err}");
    let bad = write_file(&dir, "jamd.toml", "[access]\ndeny = [\"10.1.2.3/8\"]\n");
    let (code, _, err) = run_jamd(&["-c", &bad, "--check-access", "10.0.0.1"], T);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("did you mean 10.0.0.0/8?"), "{err}");
}

#[test]
fn config_errors_name_the_place_and_say_what_was_meant() {
    for (text, want) in [
        (
            "[access]\nallow = [\"10.0.0.0/8\", \"10.1.2.3/8\"]\n",
            ":2:24: access.allow: \"10.1.2.3/8\" has bits set past its length: did you mean 10.0.0.0/8?",
        ),
        (
            "[access]\ndeny = [\"gateway.example.com\"]\n",
            ":2:9: access.deny: \"gateway.example.com\" is not an IP address or prefix",
        ),
        (
            "[access]\ndeny = [\"10.0.0.0/40\"]\n",
            "access.deny: \"10.0.0.0/40\": the prefix length must be 0-32 for an IPv4 address",
        ),
        (
            "[server]\nsource_prefix_v6 = 129\n",
            "server.source_prefix_v6: expected an IPv6 prefix length (0-128), found 129",
        ),
        (
            "[server]\nconnection_rate_per_source = -1\n",
            "server.connection_rate_per_source: expected a number of connections a second",
        ),
        (
            "[server]\nmax_tracked_sources = 0\n",
            "server.max_tracked_sources: expected a number of sources",
        ),
    ] {
        let Checked {
            file,
            code,
            out,
            err,
        } = check_config(text, &[]);
        assert_eq!(code, Some(78), "{text}: {err}");
        assert!(out.is_empty());
        assert!(err.contains(&format!("{file}{want}")) || err.contains(want), "{text}: {err}");
    }
}

#[test]
fn check_config_prints_every_new_key() {
    let Checked { code, out, err, .. } = check_config(
        "[server]\nconnection_rate_per_source = 5\n[access]\ndeny = [\"::ffff:192.0.2.0/120\"]\n",
        &[],
    );
    assert_eq!(code, Some(0), "{err}");
    for want in [
        "source_prefix_v4 = 32\n",
        "source_prefix_v6 = 64\n",
        "connection_rate_per_source = 5\n",
        "connection_burst_per_source = 20\n",
        "max_tracked_sources = 65536\n",
        "[access]\nallow = []\ndeny = [\"192.0.2.0/24\"]\n",
    ] {
        assert!(out.contains(want), "{want:?} not in {out}");
    }
}

#[test]
fn ipv4_rules_apply_to_clients_of_a_dual_stack_socket() {
    let Some(activate) = require_tool("systemd-socket-activate") else {
        return;
    };
    let port = common::free_port();
    let dir = temp_dir("dual-stack");
    let cfg = write_file(
        &dir,
        "jamd.toml",
        "[access]\ndeny = [\"127.0.0.2\"]\n[server]\nmax_connections_per_source = 1\n",
    );
    let log = dir.join("stderr.log");
    // systemd-socket-activate execs jamd: the guard's pid is jamd's.
    let _jamd = ChildGuard::spawn(
        Command::new(activate)
            .args(["-l", &format!("[::]:{port}")])
            .arg(JAMD)
            .args(["-c", &cfg, "--log", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    // systemd-socket-activate listens at once, and starts jamd at the first
    // connection; a refused connect means it is not listening yet.
    wait_until(&format!("a listener on [::]:{port}"), T, || {
        TcpStream::connect_timeout(&to, Duration::from_secs(1))
    });
    // The probe started jamd; wait until it has taken the socket, so that a
    // slow start on a loaded machine is not mistaken for a failure below.
    wait_file(
        &log,
        "socket(s) from the service manager",
        Duration::from_secs(30),
    );
    // The clients reach jamd as ::ffff:127.0.0.x: the IPv4 entry matches.
    assert_refused("127.0.0.2", to, "access denied");
    let _held = served_from("127.0.0.3", to);
    // And the mapped address counts as the IPv4 source.
    assert_refused("127.0.0.3", to, "server busy");
    assert_served("127.0.0.4", to);
    // The log is written by jamd's logging thread: give it time.
    wait_until("127.0.0.2's refusal logged", T, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let logged =
            text.contains("refused [::ffff:127.0.0.2]:") || text.contains("refused 127.0.0.2:");
        logged.then_some(()).ok_or(Verbatim(text))
    });
}
