//! Reaching a server: resolving its name, connecting address by address, and
//! reading reply lines, every wait bounded by a deadline.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::cli::{Family, Target};
use super::error::{ClientError, ClientErrorKind, ConnectFailure};

/// Longest reply line jamc accepts, terminator not counted.
pub const MAX_REPLY_BYTES: usize = 1024;

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

/// Resolves the target to the addresses to try, in the resolver's order, within the deadline.
pub fn resolve(
    target: &Target,
    family: Family,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, ClientError> {
    let server = target.to_string();
    let resolve_error = |why: String| {
        ClientError::new(
            &server,
            ClientErrorKind::Resolve {
                host: target.host.clone(),
                why,
            },
        )
    };
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
            .map_err(|e| resolve_error(e.to_string()))?;
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Ok(addrs)) => addrs,
            Ok(Err(why)) => return Err(resolve_error(why)),
            Err(_) => return Err(resolve_error("timed out".to_string())),
        }
    };
    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(all.len());
    for addr in all.into_iter().filter(wanted) {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        let no_address = |family| {
            ClientError::new(
                &server,
                ClientErrorKind::NoAddress {
                    host: target.host.clone(),
                    family,
                },
            )
        };
        return Err(match family {
            Family::V4 => no_address("IPv4"),
            Family::V6 => no_address("IPv6"),
            Family::Any => resolve_error("no address".to_string()),
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
    connect_from(server, addrs, deadline, timeout, None)
}

/// [`connect`] from the local address `source` when one is given (`-s`).
pub fn connect_from(
    server: &str,
    addrs: &[SocketAddr],
    deadline: Instant,
    timeout: Duration,
    source: Option<IpAddr>,
) -> Result<TcpStream, ClientError> {
    let mut attempts = Vec::with_capacity(addrs.len());
    for (i, addr) in addrs.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            attempts.push((*addr, ConnectFailure::TimedOut));
            continue;
        }
        let share = left / u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
        match open(addr, source, share.max(Duration::from_millis(1))) {
            Ok(stream) => {
                // Requests are tiny: send each at once.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => attempts.push((*addr, connect_failure(&e))),
        }
    }
    Err(ClientError::new(
        server,
        ClientErrorKind::Connect { attempts, timeout },
    ))
}

/// One TCP connection to `addr` within `timeout`, from the local address
/// `source` (any port) when one is given, as `nc -s` does.
pub fn open(addr: &SocketAddr, source: Option<IpAddr>, timeout: Duration) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let Some(source) = source else {
        return TcpStream::connect_timeout(addr, timeout);
    };
    let socket = Socket::new(Domain::for_address(*addr), Type::STREAM, None)?;
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .map_err(|e| {
            let why = match e.kind() {
                io::ErrorKind::AddrNotAvailable => "not an address of this machine".to_string(),
                _ => e.to_string(),
            };
            io::Error::new(e.kind(), format!("cannot connect from {source}: {why}"))
        })?;
    socket.connect_timeout(&(*addr).into(), timeout)?;
    Ok(socket.into())
}

/// A connection to a JAM server that reads reply lines within deadlines.
pub struct Connection {
    stream: TcpStream,
    server: String,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Connection {
    /// Wraps a connected stream to `server`; `timeout` is named in timeout errors.
    pub fn new(stream: TcpStream, server: &str, timeout: Duration) -> Connection {
        Connection {
            stream,
            server: server.to_string(),
            buf: Vec::new(),
            timeout,
        }
    }

    fn error(&self, kind: ClientErrorKind) -> ClientError {
        ClientError::new(&self.server, kind)
    }

    fn io_error(&self, doing: &'static str, e: &io::Error) -> ClientError {
        self.error(match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                ClientErrorKind::Reset
            }
            io::ErrorKind::BrokenPipe => ClientErrorKind::ClosedEarly,
            _ => ClientErrorKind::Io {
                doing,
                why: e.to_string(),
            },
        })
    }

    fn timed_out(&self) -> ClientError {
        self.error(ClientErrorKind::ReplyTimeout {
            timeout: self.timeout,
        })
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

    /// The next line (without CR LF), waiting no later than the deadline.
    fn read_line(&mut self, deadline: Instant) -> Result<Vec<u8>, ClientError> {
        let mut chunk = [0u8; 2048];
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                if end > MAX_REPLY_BYTES + 1 {
                    return Err(self.error(ClientErrorKind::TooLong));
                }
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > MAX_REPLY_BYTES {
                    return Err(self.error(ClientErrorKind::TooLong));
                }
                return Ok(line);
            }
            // Room for the longest line plus CR: more without LF is too long.
            if self.buf.len() > MAX_REPLY_BYTES + 1 {
                return Err(self.error(ClientErrorKind::TooLong));
            }
            match read_by(&mut self.stream, &mut chunk, deadline) {
                Ok(None) => return Err(self.timed_out()),
                Ok(Some(0)) if self.buf.is_empty() => {
                    return Err(self.error(ClientErrorKind::ClosedEarly))
                }
                Ok(Some(0)) => {
                    let partial = String::from_utf8_lossy(&self.buf).into_owned();
                    return Err(self.error(ClientErrorKind::Unterminated { partial }));
                }
                Ok(Some(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(self.io_error("reading", &e)),
            }
        }
    }

    /// Sends `TIME` and reads one reply line.
    pub fn ask(&mut self, deadline: Instant) -> Result<Reply, ClientError> {
        let started = Instant::now();
        let wall = Utc::now();
        if let Err(e) = self.send(b"TIME\r\n", deadline) {
            // A server that refused us (ERROR server busy) may have closed before
            // our request arrived: its last words may still be waiting to be read.
            if !self.buf.is_empty()
                || matches!(
                    e.kind,
                    ClientErrorKind::Reset | ClientErrorKind::ClosedEarly
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

    /// Says `QUIT` (best effort) and closes.
    pub fn quit(mut self) {
        // Best effort: the server may already be gone, and we are done either way.
        let _ = self
            .stream
            .set_write_timeout(Some(Duration::from_millis(200)));
        let _ = self.stream.write_all(b"QUIT\r\n");
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// Reads once from `stream` into `chunk`, waiting no later than `deadline`
/// (and reading again after a signal): `Ok(None)` when the deadline came first.
pub(crate) fn read_by(
    stream: &mut TcpStream,
    chunk: &mut [u8],
    deadline: Instant,
) -> io::Result<Option<usize>> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(chunk) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
    }
}

fn mid_point(sent: DateTime<Utc>, rtt: Duration) -> DateTime<Utc> {
    sent + chrono::Duration::from_std(rtt / 2).unwrap_or_else(|_| chrono::Duration::zero())
}
