//! A JAM client for tests: bounded reads, lines checked for CR LF.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};

use std::path::Path;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use super::wait::{wait_until, Verbatim};

/// How long a read waits for the server before the test gives up on it.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A test client with a bounded read timeout.
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects (bounded) to `addr`; panics if it cannot.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Client::from_stream(stream)
    }

    /// Connects to `addr` once something listens there, retrying (bounded)
    /// while it starts (a supervisor, a proxy). The probe that found it
    /// listening is closed at once, and this client is a second connection
    /// (under `Accept=yes`, each starts a jamd of its own).
    pub fn connect_retry(addr: SocketAddr) -> Client {
        drop(wait_listening(addr, LISTEN_WITHIN, None));
        Client::connect(addr)
    }

    /// Connects (bounded) from the local address `src` to `to`; panics if it cannot.
    pub fn connect_from(src: &str, to: SocketAddr) -> Client {
        Client::from_stream(connect_from(src, to))
    }

    /// Wraps a connected stream.
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// One reply line, with its CR LF; empty string at EOF.
    pub fn line_raw(&mut self) -> String {
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(_) => String::from_utf8_lossy(&buf).into_owned(),
            Err(e) => panic!("no reply line: {e}"),
        }
    }

    /// One reply line without CR LF; panics unless it ended with CR LF.
    pub fn line(&mut self) -> String {
        let l = self.line_raw();
        assert!(l.ends_with("\r\n"), "reply {l:?} does not end with CR LF");
        l.trim_end_matches("\r\n").to_owned()
    }

    /// Sends a request line and returns the reply line.
    pub fn ask(&mut self, request: &str) -> String {
        self.send(format!("{request}\r\n").as_bytes());
        self.line()
    }

    /// Asks TIME and returns the time of the `JAM hh:mm:ss` reply; panics
    /// with the reply when it is anything else.
    pub fn time(&mut self) -> (u32, u32, u32) {
        let reply = self.ask("TIME");
        jam_time(&reply).unwrap_or_else(|| panic!("TIME got {reply:?}, not JAM hh:mm:ss"))
    }

    /// Reads the server's last line, checks it is `last`, and checks the
    /// server then closed the connection.
    pub fn told_and_closed(&mut self, last: &str) {
        assert_eq!(self.line(), last);
        assert!(self.closed(), "still open after {last:?}");
    }

    /// Checks a whole session with a jamd started for this one connection
    /// (by inetd, or socket activation with `Accept=yes`): TIME is
    /// answered, an unknown command refused, and QUIT closes with nothing
    /// else sent (nothing but replies reach the client: no log line leaks
    /// onto a connection that is jamd's stdio).
    pub fn assert_one_session(&mut self) {
        let reply = self.ask("TIME");
        assert!(jam_time(&reply).is_some(), "TIME got {reply:?}");
        assert_eq!(self.ask("HELLO"), "ERROR unknown command");
        self.send(b"QUIT\r\n");
        let after = self.line_raw();
        assert_eq!(after, "", "closed after QUIT, nothing but replies sent");
    }

    /// True when the server closed the connection — EOF, or a reset — with
    /// nothing more sent, within the read timeout. A timeout (the connection
    /// is still open) and unread bytes are both "not closed".
    pub fn closed(&mut self) -> bool {
        self.closed_within(READ_TIMEOUT)
    }

    /// Like [`Client::closed`], waiting at most `timeout`.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 64];
        let closed = loop {
            match self.reader.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => break false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    break matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset
                            | ErrorKind::ConnectionAborted
                            | ErrorKind::BrokenPipe
                    )
                }
            }
        };
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        closed
    }

    /// True when the connection is still open after `wait`: no EOF, no reset
    /// and no bytes arrived in that time.
    pub fn still_open_after(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 64];
        let open = matches!(
            self.reader.read(&mut buf),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
        );
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        open
    }
}

/// How long a supervisor or proxy may take to listen, on a loaded machine.
const LISTEN_WITHIN: Duration = Duration::from_secs(10);

/// A stream connected to `addr` as soon as something listens there,
/// retrying (bounded by `within`) while it starts. When nothing does in
/// time, panics with the last error and, if given, the text of `log` (the
/// starting program's log file).
#[track_caller]
pub fn wait_listening(addr: SocketAddr, within: Duration, log: Option<&Path>) -> TcpStream {
    wait_until(&format!("something to listen on {addr}"), within, || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| {
            let log = log.map(|p| Verbatim(std::fs::read_to_string(p).unwrap_or_default()));
            (e, log)
        })
    })
}

/// A stream connected (bounded) from the local address `src` to `to`, with
/// the bounded read timeout: 127.0.0.2, … play other hosts. Panics if it cannot.
pub fn connect_from(src: &str, to: SocketAddr) -> TcpStream {
    let src: IpAddr = src.parse().unwrap_or_else(|e| panic!("source {src}: {e}"));
    let sock = Socket::new(Domain::for_address(to), Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::new(src, 0).into())
        .unwrap_or_else(|e| panic!("bind {src}: {e}"));
    sock.connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {src} -> {to}: {e}"));
    let stream: TcpStream = sock.into();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
}

/// The queues of an IPv4 TCP connection on this host, from /proc/net/tcp:
/// the bytes `client` sent that its kernel has not seen acked, and the
/// bytes that reached `server` and wait there unread. (0, 0): the server
/// has read all that was sent. None while either side is not listed.
pub fn tcp_queues(client: SocketAddr, server: SocketAddr) -> Option<(u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    // `0100007F:1F90`: the address as the kernel's u32 in hex, the port.
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => String::new(),
    };
    // `tx_queue:rx_queue` of the row for this local and remote address.
    let queues = |local: &str, remote: &str| {
        table.lines().find_map(|row| {
            let f: Vec<&str> = row.split_whitespace().collect();
            if f.len() > 4 && f[1] == local && f[2] == remote {
                let (tx, rx) = f[4].split_once(':')?;
                let hex = |q| u64::from_str_radix(q, 16).ok();
                Some((hex(tx)?, hex(rx)?))
            } else {
                None
            }
        })
    };
    let (c, s) = (hex(client), hex(server));
    let (unacked, _) = queues(&c, &s)?;
    let (_, unread) = queues(&s, &c)?;
    Some((unacked, unread))
}

/// Parses `hh:mm:ss` from a `JAM hh:mm:ss` reply.
pub fn jam_time(reply: &str) -> Option<(u32, u32, u32)> {
    let t = reply.strip_prefix("JAM ")?;
    let mut parts = t.split(':').map(|p| p.parse::<u32>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    (parts.next().is_none() && h < 24 && m < 60 && s < 61).then_some((h, m, s))
}
