//! Reaching a server: resolving its name, connecting address by address, and
//! taking readings (a JAM conversation, a daytime or RFC 868 connection, a
//! datagram), every wait bounded by a deadline; [`super::wire`] reads.

use std::io::{self, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::answer::{
    jam_reply, without_line_end, JamReply, Protocol, Transport, MAX_DATAGRAM_BYTES,
    MAX_DAYTIME_BYTES, MAX_REPLY_BYTES,
};
use super::cli::{Family, Target};
use super::error::{ClientError, ClientErrorKind, ConnectFailure};
use super::wire::{End, Reader};

/// One reply and when it came: a line (JAM, daytime) or four bytes (RFC 868).
#[derive(Debug, Clone)]
pub struct Reply {
    /// A line as received, without CR LF; for RFC 868 the four bytes.
    pub line: Vec<u8>,
    /// How long the window is in which the server read its clock: for JAM,
    /// from sending `TIME` to the end of the reply line; for a daytime or
    /// RFC 868 connection, from beginning to connect to the reply; for a datagram,
    /// from sending it to its answer.
    pub rtt: Duration,
    /// This machine's clock at the middle of that window.
    pub mid: DateTime<Utc>,
    /// When jamc began this reading (sent `TIME`, began to connect, sent the datagram).
    pub began: Instant,
    /// The middle of the window, on the monotonic clock.
    pub mid_at: Instant,
}

impl Reply {
    /// The time part of a `JAM <time>` line, if it is one.
    pub fn jam_time(&self) -> Option<&str> {
        match jam_reply(&self.line) {
            JamReply::Time(time) => Some(time),
            _ => None,
        }
    }

    /// A reply whose window ran from `from` (this machine's clock `wall`
    /// then) to now; `began` is when the reading began.
    fn ended_now(line: Vec<u8>, began: Instant, from: Instant, wall: DateTime<Utc>) -> Reply {
        let rtt = from.elapsed();
        Reply {
            line,
            rtt,
            mid: mid_point(wall, rtt),
            began,
            mid_at: from + rtt / 2,
        }
    }
}

/// Resolves the target to the addresses to try, in the resolver's order, within the deadline.
pub(crate) fn resolve(
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

/// When a request went out: the beginning of its reading's window.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    began: Instant,
    wall: DateTime<Utc>,
}

/// A connection to a JAM server that reads reply lines within deadlines.
pub struct Connection {
    reader: Reader,
    server: String,
    timeout: Duration,
}

/// The error for a wait that ended as `end` while asking `server` (with
/// `timeout` as the time allowed): a partial reply is named in it.
pub(crate) fn end_error(server: &str, end: End, timeout: Duration) -> ClientError {
    let kind = match end {
        End::TimedOut(got) if got.is_empty() => ClientErrorKind::ReplyTimeout { timeout },
        End::TimedOut(got) => ClientErrorKind::Incomplete {
            timeout,
            partial: got,
        },
        End::Closed(got) if got.is_empty() => ClientErrorKind::ClosedEarly,
        End::Closed(got) => ClientErrorKind::Unterminated {
            partial: String::from_utf8_lossy(&got).into_owned(),
        },
        End::Reset(_) => ClientErrorKind::Reset,
        End::TooLong(_) => ClientErrorKind::TooLong,
        End::Failed(e) => io_kind("reading", &e),
    };
    ClientError::new(server, kind)
}

fn io_kind(doing: &'static str, e: &io::Error) -> ClientErrorKind {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => ClientErrorKind::Reset,
        io::ErrorKind::BrokenPipe => ClientErrorKind::ClosedEarly,
        _ => ClientErrorKind::Io {
            doing,
            why: e.to_string(),
        },
    }
}

impl Connection {
    /// Wraps a connected stream to `server`; `timeout` is named in timeout errors.
    pub fn new(stream: TcpStream, server: &str, timeout: Duration) -> Connection {
        Connection {
            reader: Reader::new(stream, MAX_REPLY_BYTES),
            server: server.to_string(),
            timeout,
        }
    }

    /// The error of a reply that did not come in time.
    pub fn timed_out(&self) -> ClientError {
        ClientError::new(
            &self.server,
            ClientErrorKind::ReplyTimeout {
                timeout: self.timeout,
            },
        )
    }

    fn send(&mut self, request: &[u8], deadline: Instant) -> Result<(), ClientError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out());
        }
        let stream = self.reader.stream();
        let _ = stream.set_write_timeout(Some(left));
        match stream.write_all(request) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(self.timed_out())
            }
            Err(e) => Err(ClientError::new(&self.server, io_kind("sending", &e))),
        }
    }

    /// The next line (without CR LF), waiting no later than the deadline.
    fn read_line(&mut self, deadline: Instant) -> Result<Vec<u8>, ClientError> {
        match self.reader.line(deadline) {
            Ok(line) => Ok(without_line_end(&line).to_vec()),
            Err(end) => Err(end_error(&self.server, end, self.timeout)),
        }
    }

    /// Sends `TIME` and reads one reply line.
    pub fn ask(&mut self, deadline: Instant) -> Result<Reply, ClientError> {
        let started = Instant::now();
        let wall = Utc::now();
        if let Err(e) = self.send(b"TIME\r\n", deadline) {
            // A server that refused us (ERROR server busy) may have closed before
            // our request arrived: its last words may still be waiting to be read.
            if self.reader.has_pending()
                || matches!(
                    e.kind,
                    ClientErrorKind::Reset | ClientErrorKind::ClosedEarly
                )
            {
                if let Ok(line) = self.read_line(deadline) {
                    return Ok(Reply::ended_now(line, started, started, wall));
                }
            }
            return Err(e);
        }
        let line = self.read_line(deadline)?;
        Ok(Reply::ended_now(line, started, started, wall))
    }

    /// Sends `TIME` without waiting for its reply: several requests may be
    /// in flight at once (jamd answers them in order, jamd(8)), each reply
    /// read with [`Connection::reply_by`].
    pub fn send_time(&mut self, deadline: Instant) -> Result<Sent, ClientError> {
        let sent = Sent {
            began: Instant::now(),
            wall: Utc::now(),
        };
        self.send(b"TIME\r\n", deadline)?;
        Ok(sent)
    }

    /// The next reply line, as the reply to the oldest request not yet
    /// answered (`sent`), waiting no later than `until`: None when `until`
    /// came first (what arrived of the line is kept for the next call).
    ///
    /// Replies come in the order of the requests, so the reply to a request
    /// was written after that request was sent: its window runs from
    /// `sent` to now, whatever other requests were in flight.
    pub fn reply_by(&mut self, sent: Sent, until: Instant) -> Result<Option<Reply>, ClientError> {
        match self.reader.line(until) {
            Ok(line) => Ok(Some(Reply::ended_now(
                without_line_end(&line).to_vec(),
                sent.began,
                sent.began,
                sent.wall,
            ))),
            Err(End::TimedOut(_)) => Ok(None),
            Err(end) => Err(end_error(&self.server, end, self.timeout)),
        }
    }

    /// Says `QUIT` (best effort) and closes.
    pub fn quit(mut self) {
        // Best effort: the server may already be gone, and we are done either way.
        let stream = self.reader.stream();
        let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
        let _ = stream.write_all(b"QUIT\r\n");
        let _ = stream.shutdown(Shutdown::Write);
    }
}

/// One daytime or RFC 868 reading over TCP: connect (from `source`, when
/// given), read what the server sends (a line, or four bytes), close.
pub fn tcp_reading(
    protocol: Protocol,
    server: &str,
    addrs: &[SocketAddr],
    (deadline, timeout): (Instant, Duration),
    source: Option<IpAddr>,
) -> Result<Reply, ClientError> {
    // The reading's interval starts before the connect: the server may read
    // its clock as soon as our last handshake packet reaches it, which can be
    // long before a busy machine lets `connect` return to us. Starting later
    // would make a tighter interval that the truth can lie outside of.
    let began = Instant::now();
    let wall = Utc::now();
    let stream = connect_from(server, addrs, deadline, timeout, source)?;
    let mut reader = Reader::new(stream, MAX_DAYTIME_BYTES);
    let got = match protocol {
        Protocol::Rfc868 => reader.exactly(4, deadline),
        // A line; or, from a server that ends it by closing, what came before the close.
        _ => match reader.line(deadline) {
            Ok(line) => Ok(without_line_end(&line).to_vec()),
            Err(End::Closed(got)) if !got.is_empty() => Ok(got),
            Err(end) => Err(end),
        },
    };
    let reply = match got {
        Ok(bytes) => Reply::ended_now(bytes, began, began, wall),
        Err(end) => return Err(end_error(server, end, timeout)),
    };
    // The server closes; we need not wait for it.
    let _ = reader.stream().shutdown(Shutdown::Both);
    Ok(reply)
}

/// One daytime or RFC 868 reading, over TCP or UDP as `transport` says,
/// from the local address `source` when one is given (`-s`).
pub fn reading(
    (protocol, transport): (Protocol, Transport),
    server: &str,
    addrs: &[SocketAddr],
    (deadline, timeout): (Instant, Duration),
    source: Option<IpAddr>,
) -> Result<Reply, ClientError> {
    match transport {
        Transport::Tcp => tcp_reading(protocol, server, addrs, (deadline, timeout), source),
        Transport::Udp => udp_reading(server, addrs, (deadline, timeout), source),
    }
}

/// One daytime or RFC 868 reading over UDP: a datagram (empty, as RFC 868
/// says) from a socket of its own, and its answer. Addresses are tried in
/// turn, each with an equal share of the time left, as [`connect`] does.
pub fn udp_reading(
    server: &str,
    addrs: &[SocketAddr],
    (deadline, timeout): (Instant, Duration),
    source: Option<IpAddr>,
) -> Result<Reply, ClientError> {
    let mut attempts = Vec::with_capacity(addrs.len());
    for (i, addr) in addrs.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let share = left / u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
        match udp_once(*addr, source, Instant::now() + share) {
            Ok(reply) => return Ok(reply),
            Err(UdpFailure::TimedOut) => attempts.push((*addr, ConnectFailure::TimedOut)),
            Err(UdpFailure::Refused) => attempts.push((*addr, ConnectFailure::Refused)),
            Err(UdpFailure::Io(e)) => attempts.push((*addr, connect_failure(&e))),
        }
    }
    if attempts
        .iter()
        .all(|(_, why)| *why == ConnectFailure::TimedOut)
    {
        return Err(ClientError::new(
            server,
            ClientErrorKind::ReplyTimeout { timeout },
        ));
    }
    Err(ClientError::new(
        server,
        ClientErrorKind::Connect { attempts, timeout },
    ))
}

enum UdpFailure {
    TimedOut,
    Refused,
    Io(io::Error),
}

fn udp_once(
    addr: SocketAddr,
    source: Option<IpAddr>,
    deadline: Instant,
) -> Result<Reply, UdpFailure> {
    let local: SocketAddr = match source {
        Some(ip) => (ip, 0).into(),
        None if addr.is_ipv4() => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        None => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).map_err(UdpFailure::Io)?;
    socket.connect(addr).map_err(UdpFailure::Io)?;
    let began = Instant::now();
    let wall = Utc::now();
    socket.send(&[]).map_err(UdpFailure::Io)?;
    let mut buf = [0u8; MAX_DATAGRAM_BYTES];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(UdpFailure::TimedOut);
        }
        let _ = socket.set_read_timeout(Some(left));
        match socket.recv(&mut buf) {
            Ok(n) => {
                let line = without_line_end(&buf[..n]).to_vec();
                return Ok(Reply::ended_now(line, began, began, wall));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(UdpFailure::TimedOut)
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Err(UdpFailure::Refused)
            }
            Err(e) => return Err(UdpFailure::Io(e)),
        }
    }
}

fn mid_point(sent: DateTime<Utc>, rtt: Duration) -> DateTime<Utc> {
    sent + chrono::Duration::from_std(rtt / 2).unwrap_or_else(|_| chrono::Duration::zero())
}
