//! What jamc does: ask a JAM server the time ([`query`]), many clients at once
//! ([`run`] with `-P`), and the monitoring check ([`check()`]; how the offset is
//! measured and how precise it is: [`mod@check`]). No argument parsing here:
//! [`cli`] holds the clap definition ([`cli::JamcArgs`]) and resolves it into
//! [`cli::Settings`].
//!
//! Every wait is bounded by `--timeout`: name resolution, connecting (all
//! addresses of a host in turn, each given an equal share of the time left) and
//! the first reply share one deadline, and each later reply on the same
//! connection (`-n`) gets the timeout again. So `jamc -w 5` with one request
//! never takes much more than 5 s. Every failure becomes a [`ClientError`]
//! whose `Display` says what happened in words.

pub mod check;
pub mod cli;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use check::{failure_line, status_line, Status};
use cli::{CheckSettings, Family, Mode, Settings, Target};

/// Longest reply line jamc accepts, terminator not counted.
pub const MAX_REPLY_BYTES: usize = 1024;

/// Stack size of each `-P` client thread: they only do blocking socket I/O.
const CLIENT_STACK_BYTES: usize = 256 * 1024;

/// One reply line and when it came.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The line as received, without CR LF.
    pub line: Vec<u8>,
    /// From sending `TIME` to the end of the reply line.
    pub rtt: Duration,
    /// This machine's clock at the middle of the round trip.
    pub mid: DateTime<Utc>,
}

impl Reply {
    /// The time part of a `JAM <time>` line, if it is one.
    pub fn jam_time(&self) -> Option<&str> {
        std::str::from_utf8(&self.line)
            .ok()?
            .strip_prefix("JAM ")
            .filter(|t| !t.trim().is_empty())
    }
}

/// Why connecting to one address failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Nothing listens there.
    Refused,
    /// No route to the host or network.
    Unreachable,
    /// No answer within the time left.
    TimedOut,
    /// Anything else, in the system's words.
    Other(String),
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectFailure::Refused => f.write_str("connection refused"),
            ConnectFailure::Unreachable => f.write_str("unreachable"),
            ConnectFailure::TimedOut => f.write_str("timed out"),
            ConnectFailure::Other(why) => f.write_str(why),
        }
    }
}

/// Everything that can go wrong asking a server the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The host name did not resolve.
    Resolve {
        /// The host.
        host: String,
        /// The resolver's words.
        why: String,
    },
    /// The host has no address of the family asked for.
    NoAddress {
        /// The host.
        host: String,
        /// "IPv4" or "IPv6".
        family: &'static str,
    },
    /// No address accepted the connection.
    Connect {
        /// The server as given.
        server: String,
        /// Each address tried and why it failed.
        attempts: Vec<(SocketAddr, ConnectFailure)>,
        /// The timeout, for the message.
        timeout: Duration,
    },
    /// No complete reply within the timeout.
    ReplyTimeout {
        /// The server.
        server: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The server answered with an `ERROR` line.
    ServerSaid {
        /// The server.
        server: String,
        /// The line, e.g. `ERROR server busy`.
        line: String,
    },
    /// A reply line that is neither `JAM ...` nor `ERROR ...`.
    NotJam {
        /// The server.
        server: String,
        /// The line (invalid UTF-8 replaced).
        line: String,
    },
    /// A reply longer than [`MAX_REPLY_BYTES`] without a line end.
    TooLong {
        /// The server.
        server: String,
    },
    /// The server closed the connection in the middle of a reply line.
    Unterminated {
        /// The server.
        server: String,
        /// What had arrived (invalid UTF-8 replaced).
        partial: String,
    },
    /// The server closed the connection before replying.
    ClosedEarly {
        /// The server.
        server: String,
    },
    /// The server reset the connection.
    Reset {
        /// The server.
        server: String,
    },
    /// Another I/O error.
    Io {
        /// The server.
        server: String,
        /// What jamc was doing.
        doing: &'static str,
        /// The system's words.
        why: String,
    },
    /// The reply's time could not be read with `--format` (check mode).
    Time {
        /// The server.
        server: String,
        /// Why.
        why: String,
    },
}

fn secs(d: Duration) -> String {
    format!("{}", (d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Resolve { host, why } => write!(f, "cannot resolve {host}: {why}"),
            ClientError::NoAddress { host, family } => write!(f, "{host} has no {family} address"),
            ClientError::Connect {
                server,
                attempts,
                timeout,
            } => {
                if attempts
                    .iter()
                    .all(|(_, why)| *why == ConnectFailure::TimedOut)
                {
                    return write!(
                        f,
                        "timed out connecting to {server} after {} s",
                        secs(*timeout)
                    );
                }
                match attempts.as_slice() {
                    [(_, why)] => write!(f, "cannot connect to {server}: {why}"),
                    _ => {
                        write!(f, "cannot connect to {server}: ")?;
                        for (i, (addr, why)) in attempts.iter().enumerate() {
                            let sep = if i == 0 { "" } else { "; " };
                            write!(f, "{sep}{addr} {why}")?;
                        }
                        Ok(())
                    }
                }
            }
            ClientError::ReplyTimeout { server, timeout } => write!(
                f,
                "timed out waiting for a reply from {server} after {} s",
                secs(*timeout)
            ),
            ClientError::ServerSaid { server, line } => write!(f, "{server}: server said {line}"),
            ClientError::NotJam { server, line } => {
                write!(f, "{server}: reply is not a JAM line: {line:?}")
            }
            ClientError::TooLong { server } => write!(
                f,
                "{server}: reply longer than {MAX_REPLY_BYTES} bytes without a line end"
            ),
            ClientError::Unterminated { server, partial } => write!(
                f,
                "{server}: reply not terminated: server closed the connection after {partial:?}"
            ),
            ClientError::ClosedEarly { server } => {
                write!(f, "{server}: server closed the connection before replying")
            }
            ClientError::Reset { server } => write!(f, "{server}: server reset the connection"),
            ClientError::Io { server, doing, why } => write!(f, "{server}: {doing}: {why}"),
            ClientError::Time { server, why } => write!(f, "{server}: {why}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The monitoring state this failure means for `--check`.
    pub fn status(&self) -> Status {
        match self {
            // The reply came but cannot be read as a time: we cannot judge the clock.
            ClientError::NotJam { .. } | ClientError::Time { .. } => Status::Unknown,
            _ => Status::Critical,
        }
    }
}

/// Resolves the target to the addresses to try, in the resolver's order, within the deadline.
pub fn resolve(
    target: &Target,
    family: Family,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, ClientError> {
    let wanted = |addr: &SocketAddr| match family {
        Family::Any => true,
        Family::V4 => addr.is_ipv4(),
        Family::V6 => addr.is_ipv6(),
    };
    let all: Vec<SocketAddr> = if let Ok(ip) = target.host.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, target.port)]
    } else {
        // getaddrinfo has no timeout of its own: ask it on a helper thread and stop waiting at the deadline.
        let (tx, rx) = mpsc::channel();
        let query = (target.host.clone(), target.port);
        thread::Builder::new()
            .name("jamc-resolve".into())
            .spawn(move || {
                let result = query
                    .to_socket_addrs()
                    .map(|it| it.collect::<Vec<_>>())
                    .map_err(|e| e.to_string());
                let _ = tx.send(result);
            })
            .map_err(|e| ClientError::Resolve {
                host: target.host.clone(),
                why: e.to_string(),
            })?;
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Ok(addrs)) => addrs,
            Ok(Err(why)) => {
                return Err(ClientError::Resolve {
                    host: target.host.clone(),
                    why,
                })
            }
            Err(_) => {
                return Err(ClientError::Resolve {
                    host: target.host.clone(),
                    why: "timed out".to_string(),
                })
            }
        }
    };
    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(all.len());
    for addr in all.into_iter().filter(wanted) {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(match family {
            Family::V4 => ClientError::NoAddress {
                host: target.host.clone(),
                family: "IPv4",
            },
            Family::V6 => ClientError::NoAddress {
                host: target.host.clone(),
                family: "IPv6",
            },
            Family::Any => ClientError::Resolve {
                host: target.host.clone(),
                why: "no address".to_string(),
            },
        });
    }
    Ok(addrs)
}

fn connect_failure(e: &io::Error) -> ConnectFailure {
    // errno, not ErrorKind: the unreachable kinds are newer than our MSRV.
    if matches!(
        e.raw_os_error(),
        Some(libc::EHOSTUNREACH | libc::ENETUNREACH)
    ) {
        return ConnectFailure::Unreachable;
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ConnectFailure::TimedOut,
        _ => ConnectFailure::Other(e.to_string()),
    }
}

/// Connects to the first address that answers, address by address, before the deadline.
///
/// Each address gets an equal share of the time left, so one that never
/// answers cannot use up the time of those after it.
pub fn connect(
    server: &str,
    addrs: &[SocketAddr],
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, ClientError> {
    let mut attempts = Vec::with_capacity(addrs.len());
    for (i, addr) in addrs.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            attempts.push((*addr, ConnectFailure::TimedOut));
            continue;
        }
        let share = left / u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
        match TcpStream::connect_timeout(addr, share.max(Duration::from_millis(1))) {
            Ok(stream) => {
                // Requests are tiny: send each at once.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => attempts.push((*addr, connect_failure(&e))),
        }
    }
    Err(ClientError::Connect {
        server: server.to_string(),
        attempts,
        timeout,
    })
}

/// A connection to a JAM server that reads reply lines within deadlines.
struct Connection {
    stream: TcpStream,
    server: String,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Connection {
    fn io_error(&self, doing: &'static str, e: &io::Error) -> ClientError {
        match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                ClientError::Reset {
                    server: self.server.clone(),
                }
            }
            io::ErrorKind::BrokenPipe => ClientError::ClosedEarly {
                server: self.server.clone(),
            },
            _ => ClientError::Io {
                server: self.server.clone(),
                doing,
                why: e.to_string(),
            },
        }
    }

    fn send(&mut self, request: &[u8], deadline: Instant) -> Result<(), ClientError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out());
        }
        let _ = self.stream.set_write_timeout(Some(left));
        match self.stream.write_all(request) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(self.timed_out())
            }
            Err(e) => Err(self.io_error("sending", &e)),
        }
    }

    fn timed_out(&self) -> ClientError {
        ClientError::ReplyTimeout {
            server: self.server.clone(),
            timeout: self.timeout,
        }
    }

    /// The next line (without CR LF), waiting no later than the deadline.
    fn read_line(&mut self, deadline: Instant) -> Result<Vec<u8>, ClientError> {
        let mut chunk = [0u8; 2048];
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                if end > MAX_REPLY_BYTES + 1 {
                    return Err(ClientError::TooLong {
                        server: self.server.clone(),
                    });
                }
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > MAX_REPLY_BYTES {
                    return Err(ClientError::TooLong {
                        server: self.server.clone(),
                    });
                }
                return Ok(line);
            }
            // Room for the longest line plus CR: more without LF is too long.
            if self.buf.len() > MAX_REPLY_BYTES + 1 {
                return Err(ClientError::TooLong {
                    server: self.server.clone(),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timed_out());
            }
            let _ = self.stream.set_read_timeout(Some(left));
            match self.stream.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => {
                    return Err(ClientError::ClosedEarly {
                        server: self.server.clone(),
                    })
                }
                Ok(0) => {
                    return Err(ClientError::Unterminated {
                        server: self.server.clone(),
                        partial: String::from_utf8_lossy(&self.buf).into_owned(),
                    })
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(self.timed_out())
                }
                Err(e) => return Err(self.io_error("reading", &e)),
            }
        }
    }

    /// Sends `TIME` and reads one reply line.
    fn ask(&mut self, deadline: Instant) -> Result<Reply, ClientError> {
        let started = Instant::now();
        let wall = Utc::now();
        if let Err(e) = self.send(b"TIME\r\n", deadline) {
            // A server that refused us (ERROR server busy) may have closed before
            // our request arrived: its last words may still be waiting to be read.
            if !self.buf.is_empty()
                || matches!(
                    e,
                    ClientError::Reset { .. } | ClientError::ClosedEarly { .. }
                )
            {
                if let Ok(line) = self.read_line(deadline) {
                    let rtt = started.elapsed();
                    return Ok(Reply {
                        line,
                        rtt,
                        mid: mid_point(wall, rtt),
                    });
                }
            }
            return Err(e);
        }
        let line = self.read_line(deadline)?;
        let rtt = started.elapsed();
        Ok(Reply {
            line,
            rtt,
            mid: mid_point(wall, rtt),
        })
    }

    fn quit(mut self) {
        // Best effort: the server may already be gone, and we are done either way.
        let _ = self
            .stream
            .set_write_timeout(Some(Duration::from_millis(200)));
        let _ = self.stream.write_all(b"QUIT\r\n");
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

fn mid_point(sent: DateTime<Utc>, rtt: Duration) -> DateTime<Utc> {
    sent + chrono::Duration::from_std(rtt / 2).unwrap_or_else(|_| chrono::Duration::zero())
}

/// Judges a reply line: a JAM line is fine, anything else is an error.
fn judge(server: &str, reply: &Reply) -> Result<(), ClientError> {
    if reply.jam_time().is_some() {
        return Ok(());
    }
    let line = String::from_utf8_lossy(&reply.line).into_owned();
    if line.starts_with("ERROR") {
        Err(ClientError::ServerSaid {
            server: server.to_string(),
            line,
        })
    } else {
        Err(ClientError::NotJam {
            server: server.to_string(),
            line,
        })
    }
}

/// Whether a conversation goes on after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Ask again if `-n` says so.
    Continue,
    /// Say QUIT now.
    Stop,
}

/// One client's conversation: connect, `count` × TIME, then QUIT.
///
/// `on_reply` sees every reply line (also non-JAM ones, for `--raw` and
/// `--json`) before it is judged; the first failure ends the conversation,
/// and so does `on_reply` returning [`Flow::Stop`] (nobody reads our output).
pub fn query(
    settings: &Settings,
    addrs: &[SocketAddr],
    started: Instant,
    on_reply: &mut dyn FnMut(&Reply) -> Flow,
) -> Result<(), ClientError> {
    let server = settings.target.to_string();
    let deadline = started + settings.timeout;
    let stream = connect(&server, addrs, deadline, settings.timeout)?;
    let mut conn = Connection {
        stream,
        server: server.clone(),
        buf: Vec::new(),
        timeout: settings.timeout,
    };
    for i in 0..settings.count {
        // The first reply shares the connect deadline; later ones get a timeout of their own.
        let deadline = if i == 0 {
            deadline
        } else {
            Instant::now() + settings.timeout
        };
        let reply = conn.ask(deadline)?;
        let flow = on_reply(&reply);
        judge(&server, &reply)?;
        if flow == Flow::Stop {
            break;
        }
    }
    conn.quit();
    Ok(())
}

/// Where jamc writes, shared by the client threads; a line is written whole.
struct Output<'a> {
    out: Mutex<&'a mut (dyn Write + Send)>,
    err: Mutex<&'a mut (dyn Write + Send)>,
    /// Set when stdout is gone (`jamc -n 1000 | head -1`): no point asking further.
    out_closed: AtomicBool,
}

impl Output<'_> {
    fn out(&self, bytes: &[u8]) -> Flow {
        if let Ok(mut w) = self.out.lock() {
            // A closed stdout (jamc | head -1) is not worth a failure of its own,
            // but it does end the run.
            if w.write_all(bytes).and_then(|()| w.flush()).is_err() {
                self.out_closed.store(true, Ordering::Relaxed);
            }
        }
        if self.out_closed.load(Ordering::Relaxed) {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    fn err(&self, text: &str) {
        if let Ok(mut w) = self.err.lock() {
            let _ = w.write_all(text.as_bytes()).and_then(|()| w.flush());
        }
    }
}

/// One `--json` object.
#[derive(Serialize)]
struct JsonReply<'a> {
    client: u32,
    server: &'a str,
    reply: &'a str,
    time: Option<&'a str>,
    rtt_ms: f64,
}

fn print_reply(settings: &Settings, client: u32, reply: &Reply, output: &Output<'_>) -> Flow {
    let prefix = match settings.parallel {
        Some(_) => format!("[{client}] "),
        None => String::new(),
    };
    match settings.mode {
        Mode::Raw => {
            let mut bytes = prefix.into_bytes();
            bytes.extend_from_slice(&reply.line);
            bytes.push(b'\n');
            output.out(&bytes)
        }
        Mode::Json => {
            let line = String::from_utf8_lossy(&reply.line);
            let obj = JsonReply {
                client,
                server: &settings.target.to_string(),
                reply: &line,
                time: reply.jam_time(),
                rtt_ms: (reply.rtt.as_secs_f64() * 1_000_000.0).round() / 1000.0,
            };
            match serde_json::to_string(&obj) {
                Ok(text) => output.out(format!("{text}\n").as_bytes()),
                Err(_) => Flow::Continue,
            }
        }
        Mode::Plain => match reply.jam_time() {
            Some(time) => output.out(format!("{prefix}{time}\n").as_bytes()),
            None => Flow::Continue,
        },
        Mode::Check(_) => Flow::Continue,
    }
}

/// Runs jamc with checked settings, writing to `out` and `err`; returns the exit code.
pub fn run(settings: &Settings, out: &mut (dyn Write + Send), err: &mut (dyn Write + Send)) -> u8 {
    let output = Output {
        out: Mutex::new(out),
        err: Mutex::new(err),
        out_closed: AtomicBool::new(false),
    };
    if let Mode::Check(check) = &settings.mode {
        let (status, line) = self::check(settings, check);
        let _ = output.out(format!("{line}\n").as_bytes());
        return status.code();
    }

    let started = Instant::now();
    let addrs = match resolve(
        &settings.target,
        settings.family,
        started + settings.timeout,
    ) {
        Ok(addrs) => addrs,
        Err(e) => {
            output.err(&format!("jamc: {e}\n"));
            return 1;
        }
    };

    let Some(clients) = settings.parallel else {
        let mut print = |reply: &Reply| print_reply(settings, 1, reply, &output);
        return match query(settings, &addrs, started, &mut print) {
            Ok(()) => 0,
            Err(e) => {
                output.err(&format!("jamc: {e}\n"));
                1
            }
        };
    };

    let ok = parallel(settings, &addrs, clients, &output);
    output.err(&format!(
        "{ok}/{clients} clients ok in {:.3} s\n",
        started.elapsed().as_secs_f64()
    ));
    if ok == clients {
        0
    } else {
        1
    }
}

/// `-P`: runs `clients` conversations at once; returns how many went well.
fn parallel(settings: &Settings, addrs: &[SocketAddr], clients: u32, output: &Output<'_>) -> u32 {
    // The threads wait at this gate until all are spawned, so they connect
    // together; a thread that cannot be spawned counts as a failed client.
    let gate = RwLock::new(());
    let client = |id: u32| {
        drop(gate.read());
        let started = Instant::now();
        let mut print = |reply: &Reply| print_reply(settings, id, reply, output);
        match query(settings, addrs, started, &mut print) {
            Ok(()) => true,
            Err(e) => {
                output.err(&format!("jamc: [{id}] {e}\n"));
                false
            }
        }
    };
    thread::scope(|scope| {
        let closed = gate.write();
        let mut handles = Vec::new();
        for id in 1..=clients {
            let client = &client;
            match thread::Builder::new()
                .name(format!("jamc-{id}"))
                .stack_size(CLIENT_STACK_BYTES)
                .spawn_scoped(scope, move || client(id))
            {
                Ok(h) => handles.push(h),
                Err(e) => output.err(&format!("jamc: [{id}] cannot start a thread: {e}\n")),
            }
        }
        drop(closed);
        let mut ok = 0;
        for h in handles {
            if h.join().unwrap_or(false) {
                ok += 1;
            }
        }
        ok
    })
}

/// `--check`: one query, the offset judged against the thresholds; returns the state and its line.
///
/// With `-n N` the reply with the shortest round trip is used, as it pins the
/// server's reading most tightly (see [`mod@check`] for the precision).
pub fn check(settings: &Settings, check: &CheckSettings) -> (Status, String) {
    let server = settings.target.to_string();
    let started = Instant::now();
    let mut best: Option<Reply> = None;
    let result = resolve(
        &settings.target,
        settings.family,
        started + settings.timeout,
    )
    .and_then(|addrs| {
        let mut keep = |reply: &Reply| {
            let better = match &best {
                Some(b) => reply.rtt < b.rtt,
                None => true,
            };
            if reply.jam_time().is_some() && better {
                best = Some(reply.clone());
            }
            Flow::Continue
        };
        query(settings, &addrs, started, &mut keep)
    });
    let reading = result.and_then(|()| {
        let reply = best.ok_or_else(|| ClientError::ClosedEarly {
            server: server.clone(),
        })?;
        let time = reply.jam_time().unwrap_or_default();
        let server_time = check.format.read(time).map_err(|e| ClientError::Time {
            server: server.clone(),
            why: e.to_string(),
        })?;
        let offset = server_time.offset_from(reply.mid, &check.zone);
        Ok((offset, reply.rtt))
    });
    match reading {
        Ok((offset, rtt)) => {
            let offset_secs = offset
                .num_nanoseconds()
                .map_or_else(|| offset.num_seconds() as f64, |n| n as f64 / 1e9);
            let status = check.thresholds.judge(offset_secs);
            let line = status_line(
                status,
                offset_secs,
                &server,
                rtt.as_secs_f64(),
                &check.thresholds,
            );
            (status, line)
        }
        Err(e) => {
            let status = e.status();
            (status, failure_line(status, &e.to_string()))
        }
    }
}
