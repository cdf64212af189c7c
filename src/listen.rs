//! Getting the sockets jamd serves on: binding them itself (socket2), taking
//! them from a service manager (socket activation), or from inetd on stdin.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use crate::config::{default_bind, ServerConfig};
use crate::inetd::ByteStream;
use crate::sys::{self as fd, FdKind};

/// The sockets to serve: listeners, or one connection already accepted.
#[derive(Debug)]
pub enum Sockets {
    /// Accept connections on these (jamd's own, systemd `Accept=no`, inetd `wait`).
    Listeners(Vec<TcpListener>),
    /// Serve this one connection, then exit (systemd `Accept=yes`, inetd `nowait`).
    Connection(TcpStream),
}

/// Why the sockets could not be had.
#[derive(Debug)]
pub enum ListenError {
    /// An address could not be bound or listened on.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: io::Error,
    },
    /// Nothing to listen on.
    NoAddress,
    /// The inherited sockets were unusable.
    Inherited(String),
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenError::Bind { addr, error } => {
                write!(f, "cannot listen on {}: {error}", show_addr(addr))?;
                match error.raw_os_error() {
                    Some(libc::EADDRINUSE) => f.write_str(
                        "; another program (or another jamd) holds this port: stop it, or choose another port (server.port, -p)",
                    ),
                    Some(libc::EACCES) => f.write_str(
                        "; ports below 1024 need root or CAP_NET_BIND_SERVICE (the shipped unit grants it)",
                    ),
                    Some(libc::EADDRNOTAVAIL) => f.write_str(
                        "; the address is not on this host: check server.bind (ip address shows the host's addresses)",
                    ),
                    _ => Ok(()),
                }
            }
            ListenError::NoAddress => write!(f, "no address to listen on (server.bind is empty)"),
            ListenError::Inherited(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ListenError {}

/// One bound listener, and a warning for an address that was skipped.
pub struct Bound {
    /// The listeners, non-blocking.
    pub listeners: Vec<TcpListener>,
    /// Addresses from the default list that this host cannot bind (no IPv6).
    pub skipped: Vec<(SocketAddr, io::Error)>,
}

impl Bound {
    /// The warnings to log for the skipped addresses:
    /// `skipping [::]:45000: no IPv6 on this host? (Address family not supported by protocol)`.
    pub fn skip_warnings(&self) -> Vec<String> {
        self.skipped
            .iter()
            .map(|(addr, why)| {
                format!(
                    "skipping {}: no IPv6 on this host? ({})",
                    show_addr(addr),
                    without_errno(why)
                )
            })
            .collect()
    }
}

/// An I/O error's text without the ` (os error N)` the standard library adds.
fn without_errno(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_owned(),
        _ => text,
    }
}

/// How many times `-p 0` with several addresses tries for one port that is
/// free on all of them.
const SHARED_PORT_TRIES: usize = 16;

/// Binds one listening socket per `bind` address, with the configured backlog
/// and SO_REUSEADDR; IPv6 sockets are v6-only. With the default bind list, an
/// address whose family the host lacks is skipped; any other failure is fatal.
/// Port 0 with several addresses gets one port for all: the kernel picks it
/// for the first address, and the others take the same one.
pub fn bind_all(server: &ServerConfig) -> Result<Bound, ListenError> {
    if server.bind.is_empty() {
        return Err(ListenError::NoAddress);
    }
    let mut tries = 0;
    loop {
        match bind_all_on(server) {
            // The port the kernel chose for the first address was taken on
            // another: let it choose again.
            Err(ListenError::Bind { error, .. })
                if server.port == 0
                    && error.raw_os_error() == Some(libc::EADDRINUSE)
                    && tries + 1 < SHARED_PORT_TRIES =>
            {
                tries += 1;
            }
            result => return result,
        }
    }
}

fn bind_all_on(server: &ServerConfig) -> Result<Bound, ListenError> {
    let is_default = server.bind == default_bind();
    let mut bound = Bound {
        listeners: Vec::new(),
        skipped: Vec::new(),
    };
    let mut port = server.port;
    for ip in &server.bind {
        let addr = SocketAddr::new(*ip, port);
        match bind_one(addr, server.backlog, server.reuse_address) {
            Ok(l) => {
                if port == 0 {
                    port = l.local_addr().map(|a| a.port()).unwrap_or(0);
                }
                bound.listeners.push(l);
            }
            Err(error) if is_default && ip.is_ipv6() && family_missing(&error) => {
                bound.skipped.push((addr, error));
            }
            Err(error) => return Err(ListenError::Bind { addr, error }),
        }
    }
    if bound.listeners.is_empty() {
        return Err(ListenError::NoAddress);
    }
    Ok(bound)
}

fn family_missing(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL) | Some(libc::EPROTONOSUPPORT)
    )
}

/// Binds and listens on one address.
pub fn bind_one(addr: SocketAddr, backlog: u32, reuse_address: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(reuse_address)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(addr))?;
    // listen(2) takes an int; the kernel caps it at somaxconn anyway.
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// What the service manager passed (`LISTEN_PID`, `LISTEN_FDS`).
#[derive(Debug)]
pub struct Activation {
    /// The usable sockets.
    pub sockets: Sockets,
}

impl Activation {
    /// How many of the passed descriptors jamd uses (those it skips are
    /// named in warnings).
    pub fn used(&self) -> usize {
        match &self.sockets {
            Sockets::Listeners(listeners) => listeners.len(),
            Sockets::Connection(_) => 1,
        }
    }
}

/// Reads and clears the socket-activation variables. Returns `Ok(None)` when
/// there is no activation for this process. Problems that do not stop jamd
/// (variables meant for another process, a passed descriptor that is not a
/// TCP socket) are pushed onto `warnings` for the log.
pub fn from_service_manager(warnings: &mut Vec<String>) -> Result<Option<Activation>, ListenError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    // Children must never see them (sd_listen_fds(3) does the same).
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let (pid, fds) = match (pid, fds) {
        (None, None) => return Ok(None),
        (Some(p), Some(f)) => (p, f),
        (p, f) => {
            warnings.push(format!(
                "ignoring incomplete socket activation (LISTEN_PID={}, LISTEN_FDS={})",
                p.as_deref().unwrap_or("unset"),
                f.as_deref().unwrap_or("unset")
            ));
            return Ok(None);
        }
    };
    let me = std::process::id();
    if pid.trim().parse::<u32>().ok() != Some(me) {
        warnings.push(format!(
            "ignoring LISTEN_FDS: LISTEN_PID={pid:?} is not this process ({me})"
        ));
        return Ok(None);
    }
    let n: i32 = match fds.trim().parse() {
        Ok(n) if (1..=1024).contains(&n) => n,
        _ => {
            return Err(ListenError::Inherited(format!(
                "LISTEN_FDS={fds:?} is not a number of sockets (1 to 1024)"
            )))
        }
    };
    let mut listeners = Vec::new();
    let mut connections = Vec::new();
    for fd in 3..3 + n {
        match fd::kind(fd) {
            FdKind::Closed => {
                warnings.push(format!("passed descriptor {fd} is not open; skipping it"));
                continue;
            }
            FdKind::NotASocket => {
                warnings.push(format!(
                    "passed descriptor {fd} is not a socket; skipping it"
                ));
                continue;
            }
            FdKind::Socket => {}
        }
        let Some(owned) = fd::adopt(fd) else {
            warnings.push(format!(
                "passed descriptor {fd} cannot be used; skipping it"
            ));
            continue;
        };
        match classify(owned) {
            Ok(Inherited::Listener(l)) => listeners.push(l),
            Ok(Inherited::Connection(c)) => connections.push(c),
            Err(why) => warnings.push(format!("passed descriptor {fd} {why}; skipping it")),
        }
    }
    let sockets = match (listeners.is_empty(), connections.len()) {
        (false, 0) => Sockets::Listeners(listeners),
        (true, 1) => Sockets::Connection(connections.remove(0)),
        (true, 0) => {
            return Err(ListenError::Inherited(format!(
                "none of the {n} descriptor(s) passed by the service manager is a TCP socket"
            )))
        }
        _ => {
            return Err(ListenError::Inherited(
                "the service manager passed more than one connection, or connections and listeners together".into(),
            ))
        }
    };
    Ok(Some(Activation { sockets }))
}

enum Inherited {
    Listener(TcpListener),
    Connection(TcpStream),
}

/// Decides whether an inherited socket is a TCP listener or a connection.
fn classify(owned: OwnedFd) -> Result<Inherited, String> {
    let sock = SockRef::from(&owned);
    match sock.r#type() {
        Ok(t) if t == Type::STREAM => {}
        Ok(_) => return Err("is not a stream socket".into()),
        Err(e) => return Err(format!("is not usable: {e}")),
    }
    match sock.domain() {
        Ok(d) if d == Domain::IPV4 || d == Domain::IPV6 => {}
        _ => return Err("is not a TCP/IP socket".into()),
    }
    let listening = sock
        .is_listener()
        .map_err(|e| format!("is not usable: {e}"))?;
    sock.set_nonblocking(true)
        .map_err(|e| format!("cannot be made non-blocking: {e}"))?;
    Ok(if listening {
        Inherited::Listener(TcpListener::from(owned))
    } else {
        Inherited::Connection(TcpStream::from(owned))
    })
}

/// What `--inetd` found on standard input.
pub enum Inetd {
    /// A TCP socket: a connection (`nowait`) or a listener (`wait`), served
    /// by the workers.
    Sockets(Sockets),
    /// Any other byte stream (a unix socketpair, pipes, a terminal), served
    /// by [`crate::inetd::serve`].
    Stream(ByteStream),
}

/// `--inetd`: standard input is the connection (`nowait`), a listening socket
/// (`wait`), or any other byte stream with standard output as its other half
/// (SPEC 12). For a TCP socket, standard I/O is pointed at /dev/null
/// afterwards so that nothing jamd prints can reach the client and closing
/// the connection really closes it.
pub fn from_inetd() -> Result<Inetd, ListenError> {
    let bad = |why: String| ListenError::Inherited(format!("--inetd: {why}"));
    if fd::kind(0) == FdKind::Closed {
        return Err(bad("standard input is closed: there is no client".into()));
    }
    if fd::kind(0) == FdKind::Socket && stdin_is_tcp() {
        let owned = fd::dup_stdin().map_err(|e| bad(format!("cannot use standard input: {e}")))?;
        let sockets = match classify(owned) {
            Ok(Inherited::Listener(l)) => Sockets::Listeners(vec![l]),
            Ok(Inherited::Connection(c)) => Sockets::Connection(c),
            Err(why) => return Err(bad(format!("standard input {why}"))),
        };
        fd::detach_stdio_sockets().map_err(|e| bad(format!("cannot detach stdio: {e}")))?;
        return Ok(Inetd::Sockets(sockets));
    }
    let what = match crate::inetd::describe_stdin() {
        Ok(Some(what)) => what,
        Ok(None) => {
            return Err(bad(
                "standard input is a file, not a connection (run jamd from inetd, socat or a pipe, or without --inetd)".into(),
            ))
        }
        Err(e) => return Err(bad(format!("cannot use standard input: {e}"))),
    };
    if what == "a unix socket" && !stdin_is_stream_socket() {
        return Err(bad(
            "standard input is a datagram socket, not a byte stream".into(),
        ));
    }
    ByteStream::from_stdio(what)
        .map(Inetd::Stream)
        .map_err(|e| bad(format!("cannot use standard input and output: {e}")))
}

/// Whether standard input is a TCP/IP socket (the workers serve those).
fn stdin_is_tcp() -> bool {
    let stdin = std::io::stdin();
    let sock = SockRef::from(&stdin);
    matches!(sock.domain(), Ok(d) if d == Domain::IPV4 || d == Domain::IPV6)
}

/// Whether standard input is a stream socket (not datagrams).
fn stdin_is_stream_socket() -> bool {
    let stdin = std::io::stdin();
    let sock = SockRef::from(&stdin);
    matches!(sock.r#type(), Ok(t) if t == Type::STREAM)
}

/// When the service manager's listening sockets are not what `server.port`
/// and `server.bind` say, the notice to log: the file's settings are then
/// ignored, and an operator editing them would wonder why (SPEC 12, issue 12
/// item 18). A dual-stack `[::]` socket (systemd's `BindIPv6Only=both`)
/// stands for `0.0.0.0` too.
pub fn activation_differs(sockets: &Sockets, server: &ServerConfig) -> Option<String> {
    let Sockets::Listeners(listeners) = sockets else {
        return None;
    };
    let passed: Vec<(SocketAddr, bool)> = listeners
        .iter()
        .filter_map(|l| {
            let addr = l.local_addr().ok()?;
            let dual = addr.is_ipv6() && SockRef::from(l).only_v6().ok() == Some(false);
            Some((addr, dual))
        })
        .collect();
    let any4 = IpAddr::from([0u8, 0, 0, 0]);
    let covers = |(addr, dual): &(SocketAddr, bool), ip: &IpAddr| {
        addr.port() == server.port
            && (addr.ip() == *ip || (*dual && addr.ip().is_unspecified() && *ip == any4))
    };
    let configured_served = server
        .bind
        .iter()
        .all(|ip| passed.iter().any(|p| covers(p, ip)));
    let passed_configured = passed
        .iter()
        .all(|p| server.bind.iter().any(|ip| covers(p, ip)));
    if configured_served && passed_configured {
        return None;
    }
    let show = |addrs: Vec<String>| addrs.join(", ");
    Some(format!(
        "the service manager's sockets ({}) are used, not server.port and server.bind ({}): to move jamd, change ListenStream= in its socket unit",
        show(passed.iter().map(|(a, _)| show_addr(a)).collect()),
        show(
            server
                .bind
                .iter()
                .map(|ip| show_addr(&SocketAddr::new(*ip, server.port)))
                .collect()
        )
    ))
}

/// `ADDR` as log lines write it: `1.2.3.4:5678` or `[::1]:5678`; an
/// IPv4-mapped IPv6 address is shown as plain IPv4.
pub fn show_addr(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => format!("{v4}:{}", v6.port()),
            None => format!("[{}]:{}", v6.ip(), v6.port()),
        },
        SocketAddr::V4(_) => addr.to_string(),
    }
}

/// The source address a per-source limit counts, with v4-mapped folded to v4.
pub fn source_ip(addr: &SocketAddr) -> IpAddr {
    match addr.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        ip @ IpAddr::V4(_) => ip,
    }
}

/// The integration tests' one way to skip: listed for scripts/test, a
/// failure under CI=true.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../tests/common/skip.rs"]
mod test_skip;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_shown_as_the_spec_writes_them() {
        assert_eq!(show_addr(&"1.2.3.4:5678".parse().unwrap()), "1.2.3.4:5678");
        assert_eq!(show_addr(&"[::1]:5678".parse().unwrap()), "[::1]:5678");
        assert_eq!(
            show_addr(&"[::ffff:10.0.0.1]:80".parse().unwrap()),
            "10.0.0.1:80"
        );
    }

    #[test]
    fn bind_one_listens_with_reuse_and_nonblocking() {
        let l = bind_one("127.0.0.1:0".parse().unwrap(), 16, true).unwrap();
        let sock = SockRef::from(&l);
        assert!(sock.reuse_address().unwrap());
        assert!(sock.is_listener().unwrap());
        let addr = l.local_addr().unwrap();
        assert!(TcpStream::connect(addr).is_ok());
    }

    #[test]
    fn ipv6_listeners_are_v6_only() {
        match bind_one("[::1]:0".parse().unwrap(), 16, true) {
            Ok(l) => assert!(SockRef::from(&l).only_v6().unwrap()),
            Err(e) => test_skip::record_skip(&format!("no IPv6 loopback here ({e})")),
        }
    }

    #[test]
    fn an_address_in_use_is_an_error_naming_it() {
        let l = bind_one("127.0.0.1:0".parse().unwrap(), 16, false).unwrap();
        let server = ServerConfig {
            bind: vec!["127.0.0.1".parse().unwrap()],
            port: l.local_addr().unwrap().port(),
            reuse_address: false,
            ..ServerConfig::default()
        };
        let e = bind_all(&server).err().unwrap();
        let text = e.to_string();
        assert!(text.starts_with("cannot listen on 127.0.0.1:"), "{text}");
        assert!(text.contains("Address already in use"), "{text}");
        assert!(
            text.contains("choose another port (server.port, -p)"),
            "{text}"
        );
    }

    #[test]
    fn a_skipped_address_is_said_with_one_pair_of_parentheses() {
        let bound = Bound {
            listeners: Vec::new(),
            skipped: vec![(
                "[::]:45000".parse().unwrap(),
                io::Error::from_raw_os_error(libc::EAFNOSUPPORT),
            )],
        };
        assert_eq!(
            bound.skip_warnings(),
            ["skipping [::]:45000: no IPv6 on this host? (Address family not supported by protocol)"]
        );
    }
}
