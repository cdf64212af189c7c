//! Hostile clients and faults, against the real jamd on loopback:
//! no client behaviour and no resource fault stops jamd, harms other
//! clients, leaks descriptors or memory, or loses a reply.
//!
//! Every test is bounded in connections and time; jamd is stopped by its pid
//! (the `Jamd` guard kills it on drop). Time bounds are behaviour bounds the
//! man pages promise, kept generous for a busy 2-core machine, not benchmarks.

// kill(2) on our own child and sysconf(3); Cargo.toml denies unsafe elsewhere.
#![allow(unsafe_code)]

mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::client::connect_from;
use common::{
    jam_time, parse_listening, poll_until, recv_until, require_tool, spawn_jamd, syslog_config,
    temp_dir, wait_until, Jamd, JAMD, LOOPBACK_FILE_LOG,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const BASE: &str = "[time]\ntimezone = \"UTC\"\n";

/// How long something jamd does at once may take on a loaded machine.
const T: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Helpers: what /proc says about jamd, and clients that report instead of panic.

/// Resident memory of a process in KiB (`VmRSS` in /proc/PID/status).
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Open descriptors of a process (entries of /proc/PID/fd).
fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

/// CPU time (user + system) a process has used, in seconds.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name (which may hold spaces) in parentheses:
    // state is field 3, utime 14 and stime 15.
    let after = &stat[stat.rfind(')').expect("comm in stat") + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// Starts jamd like `Jamd::start`, under `wrapper` (e.g. prlimit) if given,
/// and waits for its `READY=1` to the service manager: only then are all its
/// workers set up, so that descriptor counts taken after are its steady state.
fn start_ready(config: &str, wrapper: &[&str]) -> Jamd {
    let dir = temp_dir("ready");
    let path = dir.join("jamd.toml");
    std::fs::write(&path, config).unwrap();
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(JAMD);
            c
        }
        None => Command::new(JAMD),
    };
    cmd.arg("-c")
        .arg(&path)
        .args(["-p", "0", "-b", "127.0.0.1", "--log", "stderr"])
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let jamd = Jamd::spawn(cmd, dir, path);
    let ready = recv_until(
        |buf| notify.recv(buf),
        Duration::from_secs(10),
        |m| m.starts_with("READY=1"),
    );
    assert!(ready.is_some(), "jamd sent no READY=1");
    jamd
}

/// What each of a process's descriptors is, for failure messages.
fn fd_list(pid: i32) -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let target = std::fs::read_link(e.path()).unwrap_or_default();
                    format!("{}→{}", e.file_name().to_string_lossy(), target.display())
                })
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    fds
}

/// Waits (bounded) for jamd's descriptor count to come back to `base`;
/// returns the last count seen.
fn settle_fds(pid: i32, base: usize) -> usize {
    let settled = poll_until(Duration::from_secs(10), || {
        let now = fd_count(pid);
        if now == base {
            Ok(now)
        } else {
            Err(now)
        }
    });
    settled.unwrap_or_else(|now| now)
}

/// A process's descriptors at one moment, to check later that it holds as
/// many again.
struct FdBaseline {
    pid: i32,
    count: usize,
    /// What they were, for the failure message.
    list: Vec<String>,
}

impl FdBaseline {
    fn take(pid: i32) -> FdBaseline {
        FdBaseline {
            pid,
            count: fd_count(pid),
            list: fd_list(pid),
        }
    }

    /// Asserts (after a bounded wait) that the process holds exactly as
    /// many descriptors as at the baseline; returns the count.
    fn assert_back(&self) -> usize {
        let fds = settle_fds(self.pid, self.count);
        assert_eq!(
            fds,
            self.count,
            "descriptors before {:?}, after {:?}",
            self.list,
            fd_list(self.pid)
        );
        fds
    }
}

/// jamd on `BASE`, served `warm_up` clients one after the other, and the
/// baseline of its descriptors taken then.
fn start_measured(warm_up: usize) -> (Jamd, FdBaseline) {
    let jamd = start_ready(BASE, &[]);
    for _ in 0..warm_up {
        assert_serving(jamd.addr);
    }
    let base = FdBaseline::take(jamd.pid());
    (jamd, base)
}

/// A small deterministic random generator (xorshift64*), so that a failing
/// run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        let n = u64::try_from(n).unwrap();
        usize::try_from(self.next() % n).unwrap()
    }

    /// `n` bytes, each the low byte of the next number.
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}

/// Makes `per_thread` visits from each of `threads` threads at once; each
/// thread draws from its own [`Rng`], seeded with `seed ^ (thread + 1)` so
/// that a failing run can be repeated. `visit(rng, i)` connects and does
/// its damage; it returns false when its connect failed. Checks that every
/// visit connected: what they send really reached jamd.
fn storm(
    threads: u64,
    per_thread: usize,
    seed: u64,
    visit: impl Fn(&mut Rng, usize) -> bool + Sync,
) {
    let failed_connects = AtomicUsize::new(0);
    thread::scope(|scope| {
        for t in 0..threads {
            let (failed_connects, visit) = (&failed_connects, &visit);
            scope.spawn(move || {
                let mut rng = Rng(seed ^ (t + 1));
                for i in 0..per_thread {
                    if !visit(&mut rng, i) {
                        failed_connects.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let failed = failed_connects.into_inner();
    assert_eq!(
        failed, 0,
        "{failed} connects failed of {threads} x {per_thread}"
    );
}

/// One reply line read with a bounded wait.
enum Reply {
    /// A whole line, CR LF removed.
    Line(String),
    /// The server closed (EOF, or a reset with nothing unread).
    Closed,
    /// Bytes that did not end with CR LF before the connection ended.
    Truncated(Vec<u8>),
    /// Nothing within the read timeout, or another error.
    Failed(String),
}

fn read_reply(reader: &mut BufReader<TcpStream>) -> Reply {
    let mut buf = Vec::new();
    match reader.read_until(b'\n', &mut buf) {
        Ok(0) => Reply::Closed,
        Ok(_) if buf.ends_with(b"\r\n") => {
            Reply::Line(String::from_utf8_lossy(&buf[..buf.len() - 2]).into_owned())
        }
        Ok(_) => Reply::Truncated(buf),
        Err(e) if buf.is_empty() && e.kind() == io::ErrorKind::ConnectionReset => Reply::Closed,
        Err(_) if !buf.is_empty() => Reply::Truncated(buf),
        Err(e) => Reply::Failed(e.to_string()),
    }
}

/// Connects, asks TIME, sends QUIT; returns the reply or why it failed.
fn ask_time(addr: SocketAddr) -> Result<String, String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    (&stream)
        .write_all(b"TIME\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let reply = match read_reply(&mut reader) {
        Reply::Line(l) if jam_time(&l).is_some() => l,
        Reply::Line(l) => return Err(format!("reply {l:?}")),
        Reply::Closed => return Err("closed without a reply".into()),
        Reply::Truncated(b) => return Err(format!("truncated reply {b:?}")),
        Reply::Failed(e) => return Err(format!("read: {e}")),
    };
    // Wait for the server to close, so that jamd holds nothing for this
    // client once we return (descriptor counts are compared after).
    let _ = (&stream).write_all(b"QUIT\r\n");
    match read_reply(&mut reader) {
        Reply::Closed => Ok(reply),
        Reply::Line(l) => Err(format!("{l:?} after QUIT")),
        Reply::Truncated(b) => Err(format!("{b:?} after QUIT")),
        Reply::Failed(e) => Err(format!("not closed after QUIT: {e}")),
    }
}

fn assert_serving(addr: SocketAddr) {
    if let Err(e) = ask_time(addr) {
        panic!("jamd no longer serves: {e}");
    }
}

/// Clients that keep asking TIME on short connections until stopped; they
/// count failures and remember the slowest answer.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<LoadResult>>,
}

#[derive(Default, Debug)]
struct LoadResult {
    ok: usize,
    failures: Vec<String>,
    slowest: Duration,
}

impl Load {
    fn start(addr: SocketAddr, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    let mut r = LoadResult::default();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        match ask_time(addr) {
                            Ok(_) => r.ok += 1,
                            Err(e) => r.failures.push(e),
                        }
                        r.slowest = r.slowest.max(t.elapsed());
                        thread::sleep(Duration::from_millis(5));
                    }
                    r
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn finish(self) -> LoadResult {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = LoadResult::default();
        for t in self.threads {
            let r = t.join().expect("load thread");
            all.ok += r.ok;
            all.failures.extend(r.failures);
            all.slowest = all.slowest.max(r.slowest);
        }
        all
    }
}

// ---------------------------------------------------------------------------
// 1. Random bytes.

#[test]
fn random_bytes_from_500_clients_leave_jamd_serving_without_growing() {
    // Warm up every worker's buffers and the allocator before measuring.
    let (jamd, base) = start_measured(20);
    let pid = jamd.pid();
    let rss_before = rss_kib(pid);

    let addr = jamd.addr;
    // 500 clients, each of which must get in: the noise really reaches jamd.
    storm(10, 50, 0x9E37_79B9_7F4A_7C15, |rng, _| {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
            return false;
        };
        // Mostly noise; sometimes real requests mixed in, and sometimes far
        // more than a line holds.
        let len = match rng.below(4) {
            0 => rng.below(16) + 1,
            1 => rng.below(300) + 1,
            _ => rng.below(8192) + 1,
        };
        let mut bytes = rng.bytes(len);
        if rng.below(3) == 0 {
            let at = rng.below(bytes.len());
            bytes.splice(at..at, b"\r\nTIME\r\n".iter().copied());
        }
        // The server may close first (line too long): errors are fine.
        let _ = s.write_all(&bytes);
        true
    });

    assert_serving(jamd.addr);
    let fds = base.assert_back();
    let rss_after = rss_kib(pid);
    let growth = rss_after.saturating_sub(rss_before);
    eprintln!(
        "RSS {rss_before} → {rss_after} KiB, descriptors {} → {fds}",
        base.count
    );
    assert!(
        growth < 20 * 1024,
        "RSS grew by {growth} KiB ({rss_before} → {rss_after} KiB)"
    );
}

// ---------------------------------------------------------------------------
// 2. Slowloris.

#[test]
fn slowloris_clients_do_not_delay_normal_clients_and_are_timed_out() {
    let idle = 3;
    // Ready and served once: its descriptor count is its steady state.
    let jamd = start_ready(&format!("[server]\nidle_timeout = {idle}\n{BASE}"), &[]);
    let (addr, pid) = (jamd.addr, jamd.pid());
    assert_serving(addr);
    let base_fds = fd_count(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));

    // 200 clients that each send one byte every 0.2 s and never end a line.
    let slow = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        thread::spawn(move || {
            let mut conns: Vec<TcpStream> = (0..200)
                .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap())
                .collect();
            while !stop.load(Ordering::Relaxed) {
                for c in &mut conns {
                    // Once jamd has closed one, writes to it fail: that is fine.
                    if c.write_all(b"x").is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                thread::sleep(Duration::from_millis(200));
            }
            conns
        })
    };
    // The normal clients come once jamd holds the slowloris clients and
    // they trickle (a first byte from each).
    wait_until("jamd to hold 200 trickling clients", T, || {
        let (fds, bytes) = (fd_count(pid), sent.load(Ordering::Relaxed));
        if fds >= base_fds + 200 && bytes >= 200 {
            Ok(())
        } else {
            Err(format!(
                "{fds} descriptors (from {base_fds}), {bytes} bytes sent"
            ))
        }
    });

    // Beside them, 200 normal clients in 10 threads, over about two seconds.
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let failures = Arc::new(Mutex::new(Vec::new()));
    thread::scope(|scope| {
        for _ in 0..10 {
            let (slowest, failures) = (Arc::clone(&slowest), Arc::clone(&failures));
            scope.spawn(move || {
                for _ in 0..20 {
                    let t = Instant::now();
                    let r = ask_time(addr);
                    let took = t.elapsed();
                    {
                        let mut s = slowest.lock().unwrap();
                        *s = (*s).max(took);
                    }
                    if let Err(e) = r {
                        failures.lock().unwrap().push(e);
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            });
        }
    });
    // A trickle of bytes is not a request: once idle_timeout has passed
    // since they connected, jamd closes every slowloris client, which gives
    // their descriptors back; they trickle on until then.
    let closed_within = Duration::from_secs(idle) + T;
    wait_until("jamd to close the slowloris clients", closed_within, || {
        let fds = fd_count(pid);
        if fds <= base_fds {
            Ok(())
        } else {
            Err(format!("{fds} descriptors (from {base_fds})"))
        }
    });
    stop.store(true, Ordering::Relaxed);
    let conns = slow.join().unwrap();
    let sent = sent.load(Ordering::Relaxed);

    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "normal clients failed: {failures:?}");
    let slowest = *slowest.lock().unwrap();
    eprintln!("slowest normal client {slowest:?}; slowloris bytes sent {sent}");
    // Generous for a loaded 2-core machine; a stalled loop would hold them
    // for the whole idle_timeout.
    assert!(
        slowest < Duration::from_secs(idle),
        "a normal client waited {slowest:?} for its reply"
    );
    assert!(sent >= 2000, "the slowloris clients sent only {sent} bytes");
    for (i, c) in conns.into_iter().enumerate() {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut reader = BufReader::new(c);
        match read_reply(&mut reader) {
            Reply::Line(l) if l == "ERROR idle timeout" => {}
            Reply::Line(l) => panic!("slowloris client {i} got {l:?}"),
            Reply::Closed => panic!("slowloris client {i} closed without ERROR idle timeout"),
            Reply::Truncated(b) => panic!("slowloris client {i} got a truncated {b:?}"),
            Reply::Failed(e) => panic!("slowloris client {i} still open: {e}"),
        }
        assert!(matches!(read_reply(&mut reader), Reply::Closed));
    }
}

// ---------------------------------------------------------------------------
// 3. Resets.

#[test]
fn connections_reset_mid_request_leave_jamd_serving_and_leak_nothing() {
    let (jamd, base) = start_measured(1);
    let addr = jamd.addr;
    // 500 resets, each of which must really reach jamd.
    storm(5, 100, 0xD1B5_4A32_D192_ED03, |rng, i| {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        if s.connect_timeout(&SockAddr::from(addr), Duration::from_secs(5))
            .is_err()
        {
            return false;
        }
        // Half a request, a request whose reply is never read, requests and
        // a half, or a long unfinished line.
        let bytes: Vec<u8> = match i % 4 {
            0 => b"TI".to_vec(),
            1 => b"TIME\r\n".to_vec(),
            2 => b"TIME\r\nTIME\r\nTI".to_vec(),
            _ => rng.bytes(200).into_iter().filter(|&b| b != b'\n').collect(),
        };
        let _ = s.send(&bytes);
        if rng.below(2) == 0 {
            thread::sleep(Duration::from_millis(1));
        }
        // SO_LINGER 0: close sends RST instead of FIN.
        s.set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
        true
    });
    assert_serving(jamd.addr);
    base.assert_back();
}

// ---------------------------------------------------------------------------
// 4. Out of descriptors.

#[test]
fn out_of_descriptors_jamd_idles_serves_its_clients_and_recovers() {
    let Some(prlimit) = require_tool("prlimit") else {
        return;
    };
    let prlimit = prlimit.to_string_lossy().into_owned();
    // prlimit execs jamd: the pid is jamd's.
    let jamd = start_ready(BASE, &[&prlimit, "--nofile=64:64", "--"]);
    let pid = jamd.pid();
    assert_serving(jamd.addr);

    // 100 clients each send TIME at once; jamd can hold only some of them.
    let clients: Vec<TcpStream> = (0..100)
        .map(|_| {
            let s = TcpStream::connect_timeout(&jamd.addr, Duration::from_secs(5)).unwrap();
            (&s).write_all(b"TIME\r\n").unwrap();
            s
        })
        .collect();
    for c in &clients {
        c.set_nonblocking(true).unwrap();
    }
    // The held clients are the ones answered; wait until that number settles.
    let mut answered = vec![false; clients.len()];
    let mut last_change = Instant::now();
    // Not settled in time is not a failure here: the asserts below judge.
    let _ = poll_until(Duration::from_secs(15), || {
        for (i, c) in clients.iter().enumerate() {
            let mut buf = [0u8; 64];
            if !answered[i] && matches!((&*c).read(&mut buf), Ok(n) if n > 0) {
                answered[i] = true;
                last_change = Instant::now();
            }
        }
        let settled = last_change.elapsed() >= Duration::from_secs(1) && answered.contains(&true);
        settled.then_some(()).ok_or(())
    });
    let held: Vec<usize> = (0..clients.len()).filter(|&i| answered[i]).collect();
    assert!(!held.is_empty(), "jamd answered none of the clients");
    assert!(
        held.len() < clients.len(),
        "jamd held all {} clients: descriptors were never exhausted",
        clients.len()
    );
    assert!(fd_count(pid) >= 60, "jamd holds only {} fds", fd_count(pid));

    // While out of descriptors with clients waiting, jamd must not spin.
    // A rate needs time to pass: there is no event to wait for.
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    thread::sleep(Duration::from_secs(2));
    let rate = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64();
    eprintln!(
        "holding {} of {} clients, {} descriptors, {rate:.3} CPU-s/s",
        held.len(),
        answered.len(),
        fd_count(pid)
    );
    assert!(rate < 0.5, "jamd used {rate:.2} CPU-seconds per second");

    // The clients it holds are served.
    for &i in &held {
        let c = &clients[i];
        c.set_nonblocking(false).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut reader = BufReader::new(c.try_clone().unwrap());
        (&*c).write_all(b"TIME\r\n").unwrap();
        match read_reply(&mut reader) {
            Reply::Line(l) if jam_time(&l).is_some() => {}
            _ => panic!("held client {i} was not served"),
        }
    }

    // Descriptors free up as the held clients leave: the waiting ones are
    // accepted and answered (each leaves once answered, freeing one more).
    let mut waiting = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        if answered[i] {
            let _ = (&c).write_all(b"QUIT\r\n");
            drop(c);
        } else {
            waiting.push(c);
        }
    }
    let results: Vec<Result<(), String>> = thread::scope(|scope| {
        let handles: Vec<_> = waiting
            .into_iter()
            .map(|c| {
                scope.spawn(move || {
                    c.set_nonblocking(false).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    let mut reader = BufReader::new(c.try_clone().unwrap());
                    let r = match read_reply(&mut reader) {
                        Reply::Line(l) if jam_time(&l).is_some() => Ok(()),
                        Reply::Line(l) => Err(format!("reply {l:?}")),
                        Reply::Closed => Err("closed".into()),
                        Reply::Truncated(b) => Err(format!("truncated {b:?}")),
                        Reply::Failed(e) => Err(e),
                    };
                    let _ = (&c).write_all(b"QUIT\r\n");
                    r
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "waiting clients not served: {failed:?}");
    // And new clients are served again.
    for _ in 0..5 {
        assert_serving(jamd.addr);
    }
}

// ---------------------------------------------------------------------------
// 5. Descriptor leaks.

#[test]
fn two_thousand_sequential_connections_leak_no_descriptor() {
    let (jamd, base) = start_measured(1);
    for i in 0..2000 {
        let s = TcpStream::connect_timeout(&jamd.addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        // Every way a connection can end, in turn.
        match i % 5 {
            0 => {
                (&s).write_all(b"TIME\r\nQUIT\r\n").unwrap();
                assert!(
                    matches!(read_reply(&mut reader), Reply::Line(l) if jam_time(&l).is_some())
                );
                assert!(matches!(read_reply(&mut reader), Reply::Closed));
            }
            1 => {
                (&s).write_all(b"TIME\r\n").unwrap();
                assert!(
                    matches!(read_reply(&mut reader), Reply::Line(l) if jam_time(&l).is_some())
                );
            }
            2 => {
                (&s).write_all(b"TI").unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                assert!(matches!(read_reply(&mut reader), Reply::Closed));
            }
            3 => {
                (&s).write_all(&[b'x'; 300]).unwrap();
                assert!(
                    matches!(read_reply(&mut reader), Reply::Line(l) if l == "ERROR line too long")
                );
            }
            _ => {}
        }
    }
    assert_serving(jamd.addr);
    base.assert_back();
}

/// Found by the test above: data and the client's FIN that arrive together
/// come with one edge-triggered event, and a short read must not be taken to
/// mean "nothing more" — the EOF is queued behind the data. jamd is stopped
/// (SIGSTOP) while the clients send and close, so that every connection is
/// first seen with its data and its FIN already there. With the idle timeout
/// off, a missed EOF would hold the connection for ever.
#[test]
fn data_and_fin_arriving_together_are_both_seen() {
    let jamd = start_ready(&format!("[server]\nidle_timeout = 0\n{BASE}"), &[]);
    let pid = jamd.pid();
    assert_serving(jamd.addr);
    let base_fds = fd_count(pid);
    // SAFETY: kill(2) on the pid of our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let clients: Vec<(TcpStream, &[u8])> = (0..30)
        .map(|i| {
            let s = TcpStream::connect_timeout(&jamd.addr, Duration::from_secs(5)).unwrap();
            let sent: &[u8] = match i % 3 {
                0 => b"TIME\r\n",
                1 => b"TI",
                _ => b"TIME\r\nTIME\r\nTIME",
            };
            (&s).write_all(sent).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            (s, sent)
        })
        .collect();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    for (i, (s, sent)) in clients.into_iter().enumerate() {
        let mut reader = BufReader::new(s);
        let whole_lines = sent.iter().filter(|&&b| b == b'\n').count();
        for _ in 0..whole_lines {
            match read_reply(&mut reader) {
                Reply::Line(l) if jam_time(&l).is_some() => {}
                _ => panic!("client {i} ({sent:?}) got no reply"),
            }
        }
        match read_reply(&mut reader) {
            Reply::Closed => {}
            Reply::Failed(e) => panic!("client {i} ({sent:?}) was not closed after its EOF: {e}"),
            _ => panic!("client {i} ({sent:?}) got more than it asked for"),
        }
    }
    let fds = settle_fds(pid, base_fds);
    assert_eq!(fds, base_fds, "descriptors before {base_fds}, after {fds}");
}

// ---------------------------------------------------------------------------
// 6. Connection limits.

/// Sends TIME on a fresh connection and sorts it: Some(true) admitted (a JAM
/// reply), Some(false) refused (`ERROR server busy`, then closed).
fn admitted(stream: &TcpStream) -> Result<bool, String> {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    // A refused client may already have been closed: a failed write is fine,
    // the busy line is waiting to be read.
    let _ = (&*stream).write_all(b"TIME\r\n");
    match read_reply(&mut reader) {
        Reply::Line(l) if jam_time(&l).is_some() => Ok(true),
        Reply::Line(l) if l == "ERROR server busy" => match read_reply(&mut reader) {
            Reply::Closed => Ok(false),
            _ => Err("not closed after ERROR server busy".into()),
        },
        Reply::Line(l) => Err(format!("reply {l:?}")),
        Reply::Closed => Err("closed without a reply".into()),
        Reply::Truncated(b) => Err(format!("truncated {b:?}")),
        Reply::Failed(e) => Err(e),
    }
}

#[test]
fn a_flood_of_ten_times_max_connections_gets_busy_and_the_admitted_are_served() {
    let max = 20;
    let jamd = Jamd::start(&format!("[server]\nmax_connections = {max}\n{BASE}"));
    let clients: Vec<TcpStream> = (0..10 * max)
        .map(|_| {
            let s = TcpStream::connect_timeout(&jamd.addr, Duration::from_secs(5)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    let mut kept = Vec::new();
    let mut refused = 0;
    for c in clients {
        match admitted(&c) {
            Ok(true) => kept.push(c),
            Ok(false) => refused += 1,
            Err(e) => panic!("flood client: {e}"),
        }
    }
    assert_eq!(kept.len(), max, "admitted {} of {}", kept.len(), 10 * max);
    assert_eq!(refused, 9 * max);
    // The admitted ones go on being served.
    for c in &kept {
        let mut reader = BufReader::new(c.try_clone().unwrap());
        (&*c).write_all(b"TIME\r\n").unwrap();
        assert!(matches!(read_reply(&mut reader), Reply::Line(l) if jam_time(&l).is_some()));
    }
    // Once they leave, there is room again.
    for c in &kept {
        let mut reader = BufReader::new(c.try_clone().unwrap());
        (&*c).write_all(b"QUIT\r\n").unwrap();
        assert!(matches!(read_reply(&mut reader), Reply::Closed));
    }
    assert_serving(jamd.addr);
}

#[test]
fn max_connections_per_source_counts_each_address_separately() {
    let jamd = Jamd::start(&format!(
        "[server]\nmax_connections = 100\nmax_connections_per_source = 3\n{BASE}"
    ));
    let mut kept = Vec::new();
    for source in ["127.0.0.1", "127.0.0.2"] {
        let mut ok = Vec::new();
        let mut busy = 0;
        for _ in 0..5 {
            let c = connect_from(source, jamd.addr);
            match admitted(&c) {
                Ok(true) => ok.push(c),
                Ok(false) => busy += 1,
                Err(e) => panic!("client from {source}: {e}"),
            }
        }
        assert_eq!((ok.len(), busy), (3, 2), "from {source}");
        kept.push(ok);
    }
    // One client from 127.0.0.1 leaves: one more from there is admitted,
    // and 127.0.0.2 is still full.
    let leaving = kept[0].pop().unwrap();
    let mut reader = BufReader::new(leaving.try_clone().unwrap());
    (&leaving).write_all(b"QUIT\r\n").unwrap();
    assert!(matches!(read_reply(&mut reader), Reply::Closed));
    assert_eq!(admitted(&connect_from("127.0.0.1", jamd.addr)), Ok(true));
    assert_eq!(admitted(&connect_from("127.0.0.2", jamd.addr)), Ok(false));
}

// ---------------------------------------------------------------------------
// 7. syslog going away and coming back.

/// A stand-in for /dev/log that can be removed and created again; a thread
/// keeps reading so that jamd is never slowed by a full socket.
struct LogSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    reader: Option<thread::JoinHandle<()>>,
}

impl LogSocket {
    fn bind(path: &Path, lines: Arc<Mutex<Vec<String>>>) -> LogSocket {
        let sock = UnixDatagram::bind(path).expect("bind the syslog socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (stop, lines) = (Arc::clone(&stop), Arc::clone(&lines));
            thread::spawn(move || {
                let mut buf = vec![0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = sock.recv(&mut buf) {
                        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                        lines.lock().unwrap().push(line);
                    }
                }
            })
        };
        LogSocket {
            path: path.to_owned(),
            stop,
            reader: Some(reader),
        }
    }

    /// Closes the socket and removes its file.
    fn remove(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        std::fs::remove_file(&self.path).unwrap();
    }
}

fn find(lines: &Mutex<Vec<String>>, from: usize, needle: &str) -> Option<String> {
    lines.lock().unwrap()[from..]
        .iter()
        .find(|l| l.contains(needle))
        .cloned()
}

#[test]
fn syslog_socket_removed_and_recreated_serving_goes_on_and_logging_resumes() {
    let dir = temp_dir("syslog-gone");
    let sock_path = dir.join("log.sock");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let log = LogSocket::bind(&sock_path, Arc::clone(&lines));
    let config = format!(
        "{BASE}{}",
        syslog_config(sock_path.display(), "connections = true\n")
    );
    let (_jamd, stderr, _dir) = spawn_jamd(&config, &LOOPBACK_FILE_LOG);
    let listening = wait_until("jamd's listening line in syslog", T, || {
        find(&lines, 0, "listening on ").ok_or(())
    });
    let addr = parse_listening(&listening).unwrap();

    let load = Load::start(addr, 2);
    wait_until("connection lines in syslog", Duration::from_secs(5), || {
        find(&lines, 0, "connection from").ok_or(())
    });
    // syslog goes away for a while, under load: jamd says so once on stderr
    // and logs there meanwhile (jamd.8, LOGGING).
    log.remove();
    let t = Duration::from_secs(15);
    assert!(
        stderr.wait_for("cannot reach syslog", t).is_some(),
        "the outage was not said on stderr: {:?}",
        stderr.all()
    );
    let outage = stderr.mark();
    assert!(
        stderr
            .wait_for_after(outage, "connection from", t)
            .is_some(),
        "no connection lines on stderr during the outage: {:?}",
        stderr.all()
    );
    let mark = lines.lock().unwrap().len();
    let _log = LogSocket::bind(&sock_path, Arc::clone(&lines));

    // The receiver is back: lines reach syslog again.
    let resumed = poll_until(t, || find(&lines, mark, "connection from").ok_or(()));
    let result = load.finish();
    assert!(
        resumed.is_ok(),
        "logging did not resume: {} line(s) since the socket came back, stderr: {:?}",
        lines.lock().unwrap().len() - mark,
        stderr.all()
    );
    assert_eq!(
        stderr.count("cannot reach syslog"),
        1,
        "said more than once: {:?}",
        stderr.all()
    );
    assert!(
        result.failures.is_empty(),
        "clients failed: {:?}",
        result.failures
    );
    assert!(result.ok > 0);
    assert!(
        result.slowest < Duration::from_secs(5),
        "serving paused: a client waited {:?}",
        result.slowest
    );
}

// ---------------------------------------------------------------------------
// 8. A storm of SIGHUPs.

#[test]
fn a_hundred_sighups_in_a_second_fail_no_client() {
    let jamd = Jamd::start(&format!(
        "[server]\nmax_line_bytes = 64\nidle_timeout = 10\n{BASE}"
    ));
    let load = Load::start(jamd.addr, 4);
    // One long-lived client asking all through the storm.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let long = {
        let (stop, answered, addr) = (Arc::clone(&stop), Arc::clone(&answered), jamd.addr);
        thread::spawn(move || -> Result<usize, String> {
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                (&s).write_all(b"TIME\r\n").map_err(|e| e.to_string())?;
                match read_reply(&mut reader) {
                    Reply::Line(l) if jam_time(&l).is_some() => {
                        n += 1;
                        answered.store(n, Ordering::Relaxed);
                    }
                    Reply::Line(l) => return Err(format!("reply {l:?}")),
                    Reply::Closed => return Err("closed".into()),
                    Reply::Truncated(b) => return Err(format!("truncated {b:?}")),
                    Reply::Failed(e) => return Err(e),
                }
                thread::sleep(Duration::from_millis(10));
            }
            Ok(n)
        })
    };
    // The long-lived client has been answered `more` times after `since`
    // (its failure ends the wait: the join below reports it).
    let answered_again = |since: usize, more: usize, what: &str| {
        wait_until(what, T, || {
            let n = answered.load(Ordering::Relaxed);
            if n >= since + more || long.is_finished() {
                Ok(n)
            } else {
                Err(n)
            }
        })
    };
    // The storm starts once the long-lived client is being served.
    answered_again(0, 1, "the long-lived client's first reply");
    // Each reload really changes something: the limits and the log settings
    // alternate. The file is replaced by rename, so every read sees a whole one.
    let variants = [
        format!("[server]\nmax_line_bytes = 64\nidle_timeout = 10\n{BASE}"),
        format!(
            "[server]\nmax_line_bytes = 128\nidle_timeout = 20\nmax_connections = 500\n\
             {BASE}[log]\nlevel = \"debug\"\nconnections = false\n"
        ),
    ];
    let next = jamd.dir.join("next.toml");
    for i in 0..100 {
        std::fs::write(&next, &variants[i % 2]).unwrap();
        std::fs::rename(&next, &jamd.config).unwrap();
        // SAFETY: kill(2) on the pid of our own child.
        assert_eq!(unsafe { libc::kill(jamd.pid(), libc::SIGHUP) }, 0);
        thread::sleep(Duration::from_millis(10));
    }
    // It goes on asking through the end of the storm, while the last
    // signals are handled, and is still answered after it.
    let after_storm = answered.load(Ordering::Relaxed);
    answered_again(
        after_storm,
        20,
        "replies to the long-lived client after the storm",
    );
    stop.store(true, Ordering::Relaxed);
    let long = long.join().unwrap();
    let result = load.finish();
    eprintln!(
        "{} connections during the storm; long-lived client {long:?}",
        result.ok
    );
    assert!(
        result.failures.is_empty(),
        "clients failed: {:?}",
        result.failures
    );
    assert!(result.ok > 0);
    assert!(long.is_ok(), "the long-lived client failed: {long:?}");
    assert_eq!(jamd.stderr.count("reload failed"), 0);
    // The storm ends with a file only it allows (a format and a line limit
    // neither variant has): jamd must end up with it.
    std::fs::write(
        &next,
        "[server]\nmax_line_bytes = 8\n[time]\ntimezone = \"UTC\"\nformat = \"%H.%M.%S\"\n",
    )
    .unwrap();
    std::fs::rename(&next, &jamd.config).unwrap();
    jamd.signal("HUP");
    let last = wait_until(
        "the last file to take effect",
        Duration::from_secs(15),
        || {
            let reply = jamd.connect().ask("TIME");
            if reply.starts_with("JAM ") && reply.matches('.').count() == 2 {
                Ok(reply)
            } else {
                Err(reply)
            }
        },
    );
    assert!(jam_time(&last.replace('.', ":")).is_some(), "{last}");
    let mut c = jamd.connect();
    assert_eq!(c.ask("TIME     "), "ERROR line too long");
}

// ---------------------------------------------------------------------------
// 9. SIGTERM under load.

#[test]
fn sigterm_under_load_truncates_no_reply_and_exits_zero_in_time() {
    let grace = 2;
    let mut jamd = Jamd::start(&format!("[server]\nshutdown_timeout = {grace}\n{BASE}"));
    let addr = jamd.addr;
    let clients = 50;
    let ready = Arc::new(Barrier::new(clients + 1));
    let replies_before = Arc::new(AtomicUsize::new(0));
    let replies_after = Arc::new(AtomicUsize::new(0));
    let term_sent = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (ready, term_sent, replies_before, replies_after) = (
                Arc::clone(&ready),
                Arc::clone(&term_sent),
                Arc::clone(&replies_before),
                Arc::clone(&replies_after),
            );
            thread::spawn(move || -> Result<String, String> {
                let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                    .map_err(|e| format!("connect: {e}"))?;
                s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                let mut reader = BufReader::new(s.try_clone().unwrap());
                (&s).write_all(b"TIME\r\n").unwrap();
                let first = read_reply(&mut reader);
                ready.wait();
                if !matches!(&first, Reply::Line(l) if jam_time(l).is_some()) {
                    return Err("first request not answered".into());
                }
                // Ask without pause until the server ends the connection.
                let mut last = String::new();
                loop {
                    let sent = (&s).write_all(b"TIME\r\n").is_ok();
                    match read_reply(&mut reader) {
                        Reply::Line(l) if jam_time(&l).is_some() => {
                            if term_sent.load(Ordering::Relaxed) {
                                replies_after.fetch_add(1, Ordering::Relaxed);
                            } else {
                                replies_before.fetch_add(1, Ordering::Relaxed);
                            }
                            last = l;
                        }
                        Reply::Line(l) if l == "ERROR server shutting down" => {
                            return match read_reply(&mut reader) {
                                Reply::Closed => Ok(l),
                                Reply::Line(x) => Err(format!("{x:?} after {l:?}")),
                                Reply::Truncated(b) => Err(format!("truncated {b:?}")),
                                Reply::Failed(e) => Err(format!("not closed: {e}")),
                            };
                        }
                        Reply::Line(l) => return Err(format!("reply {l:?}")),
                        Reply::Closed if !last.is_empty() => return Ok(last),
                        Reply::Closed => return Err("closed before any reply".into()),
                        Reply::Truncated(b) => return Err(format!("truncated reply {b:?}")),
                        Reply::Failed(e) if !sent => return Err(format!("write failed, {e}")),
                        Reply::Failed(e) => return Err(e),
                    }
                }
            })
        })
        .collect();
    ready.wait();
    // SIGTERM comes once the clients ask without pause: two replies each
    // on average (a client that ended early ends the wait; it is judged
    // below).
    wait_until("the clients to be asking without pause", T, || {
        let n = replies_before.load(Ordering::Relaxed);
        if n >= 2 * clients || handles.iter().any(|h| h.is_finished()) {
            Ok(())
        } else {
            Err(n)
        }
    });
    term_sent.store(true, Ordering::Relaxed);
    let t = Instant::now();
    // SAFETY: kill(2) on the pid of our own child.
    assert_eq!(unsafe { libc::kill(jamd.pid(), libc::SIGTERM) }, 0);
    let signalled = t.elapsed();
    let code = jamd.wait_exit(Duration::from_secs(grace + 5));
    let took = t.elapsed();
    eprintln!("SIGTERM sent in {signalled:?}, exit {code:?} after {took:?}");
    let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    assert_eq!(code, Some(0), "exit code after SIGTERM (after {took:?})");
    assert!(
        took < Duration::from_secs(grace + 3),
        "took {took:?} to stop with shutdown_timeout = {grace}"
    );
    let bad: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(bad.is_empty(), "clients saw: {bad:?}");
    // Open connections were served during the grace period, and all of them
    // were still open when it ended: each was told so (jamd(8), SIGNALS).
    assert!(replies_after.load(Ordering::Relaxed) > 0);
    let told = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(l) if l == "ERROR server shutting down"))
        .count();
    assert_eq!(told, clients, "clients told ERROR server shutting down");
}
