//! Getting the sockets jamd serves on: binding them itself (socket2), or
//! taking them from a service manager (socket activation). What inetd
//! passes on standard input is told apart in `daemon/inetd.rs`, with
//! [`classify`] from here.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;

use socket2::{Domain, SockAddr, SockRef, Socket as Socket2, Type};

use crate::config::{default_bind, Config, ServerConfig};
use crate::listener::{show_addr, Listener, Protocol, Transport};
use crate::sys::{self as fd, FdKind};

/// A listening socket: a TCP listener or a UDP socket.
#[derive(Debug)]
pub enum Socket {
    /// Connections to accept.
    Stream(TcpListener),
    /// Datagrams to answer.
    Datagram(UdpSocket),
}

/// A socket jamd serves, and the protocol it serves there.
#[derive(Debug)]
pub struct Listening {
    /// What it serves.
    pub protocol: Protocol,
    /// The socket, non-blocking.
    pub socket: Socket,
}

impl Listening {
    /// Where it listens.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.socket {
            Socket::Stream(l) => l.local_addr(),
            Socket::Datagram(u) => u.local_addr(),
        }
    }

    /// TCP or UDP.
    pub fn transport(&self) -> Transport {
        match self.socket {
            Socket::Stream(_) => Transport::Tcp,
            Socket::Datagram(_) => Transport::Udp,
        }
    }

    /// A duplicate of the socket (each worker polls its own).
    pub fn try_clone(&self) -> io::Result<Listening> {
        Ok(Listening {
            protocol: self.protocol,
            socket: match &self.socket {
                Socket::Stream(l) => Socket::Stream(l.try_clone()?),
                Socket::Datagram(u) => Socket::Datagram(u.try_clone()?),
            },
        })
    }

    /// The `listening on` line: `listening on ADDR (backlog N)` for JAM as
    /// ever; the protocol and `udp` are named for the others, the backlog
    /// for a TCP socket jamd bound, and where an inherited one came
    /// `from`: `listening on 0.0.0.0:13 (daytime, udp, from inetd)`.
    pub fn announcement(&self, backlog: Option<u32>, from: Option<&str>) -> Option<String> {
        let addr = show_addr(&self.local_addr().ok()?);
        let mut what = Vec::new();
        if self.protocol != Protocol::Jam {
            what.push(self.protocol.to_string());
        }
        match (self.transport(), backlog) {
            (Transport::Udp, _) => what.push("udp".into()),
            (Transport::Tcp, Some(n)) => what.push(format!("backlog {n}")),
            (Transport::Tcp, None) => {}
        }
        if let Some(from) = from {
            what.push(format!("from {from}"));
        }
        Some(if what.is_empty() {
            format!("listening on {addr}")
        } else {
            format!("listening on {addr} ({})", what.join(", "))
        })
    }
}

/// The sockets to serve: listeners, or one connection already accepted.
#[derive(Debug)]
pub enum Sockets {
    /// Accept connections and answer datagrams on these (jamd's own,
    /// systemd `Accept=no`, inetd `wait` over TCP).
    Listeners(Vec<Listening>),
    /// Serve this one connection with this protocol, then exit (systemd
    /// `Accept=yes`, inetd `nowait`).
    Connection(TcpStream, Protocol),
    /// inetd `dgram wait`: answer datagrams on this socket until none has
    /// come for `idle_timeout`, then exit.
    Datagrams(Listening),
}

/// Why the sockets could not be had.
#[derive(Debug)]
pub enum ListenError {
    /// An address could not be bound or listened on.
    Bind {
        addr: SocketAddr,
        /// The keys that name it (`server.port, -p`, `daytime.listen_udp`).
        keys: &'static str,
        error: io::Error,
    },
    /// Nothing to listen on.
    NoAddress,
    /// The inherited sockets were unusable.
    Inherited(String),
}

/// What works for a port below 1024 (EACCES from bind), after the error:
/// every listener's bind error says it.
pub const PRIVILEGED_PORT_ADVICE: &str =
    "; ports below 1024 need privilege: start jamd as root with server.user set \
     (it gives up root once its sockets are open), let the service manager \
     open the socket (socket activation, jamd.socket), or grant \
     CAP_NET_BIND_SERVICE (AmbientCapabilities= in the unit)";

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenError::Bind { addr, keys, error } => {
                write!(f, "cannot listen on {}: {error}", show_addr(addr))?;
                match error.raw_os_error() {
                    Some(libc::EADDRINUSE) => write!(f,
                        "; another program (or another jamd) holds this port: stop it, or choose another port ({keys})",
                    ),
                    Some(libc::EACCES) => f.write_str(PRIVILEGED_PORT_ADVICE),
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

/// The bound listeners, and a warning for an address that was skipped.
pub struct Bound {
    /// The listeners, non-blocking.
    pub listeners: Vec<Listening>,
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
///
/// Then the `[daytime]` and `[rfc868]` listeners, each exactly where it says.
pub fn bind_all(config: &Config) -> Result<Bound, ListenError> {
    let mut bound = bind_jam(&config.server)?;
    let backlog = config.server.backlog;
    let reuse = config.server.reuse_address;
    for l in config.listeners() {
        if l.protocol == Protocol::Jam {
            continue;
        }
        let socket = match l.transport {
            Transport::Tcp => bind_one(l.addr, backlog, reuse).map(Socket::Stream),
            Transport::Udp => bind_udp(l.addr, reuse).map(Socket::Datagram),
        };
        let socket = socket.map_err(|error| ListenError::Bind {
            addr: l.addr,
            keys: key_of(l),
            error,
        })?;
        bound.listeners.push(Listening {
            protocol: l.protocol,
            socket,
        });
    }
    Ok(bound)
}

/// The key that names a listener.
fn key_of(l: Listener) -> &'static str {
    match (l.protocol, l.transport) {
        (Protocol::Jam, _) => "server.port, -p",
        (Protocol::Daytime, Transport::Tcp) => "daytime.listen",
        (Protocol::Daytime, Transport::Udp) => "daytime.listen_udp",
        (Protocol::Rfc868, Transport::Tcp) => "rfc868.listen",
        (Protocol::Rfc868, Transport::Udp) => "rfc868.listen_udp",
    }
}

/// The JAM listeners: `server.bind` × `server.port`.
fn bind_jam(server: &ServerConfig) -> Result<Bound, ListenError> {
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
                bound.listeners.push(Listening {
                    protocol: Protocol::Jam,
                    socket: Socket::Stream(l),
                });
            }
            Err(error) if is_default && ip.is_ipv6() && family_missing(&error) => {
                bound.skipped.push((addr, error));
            }
            Err(error) => {
                return Err(ListenError::Bind {
                    addr,
                    keys: "server.port, -p",
                    error,
                })
            }
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
    let socket = bound(addr, Type::STREAM, socket2::Protocol::TCP, reuse_address)?;
    // listen(2) takes an int; the kernel caps it at somaxconn anyway.
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// Binds a UDP socket on one address (v6-only for IPv6), non-blocking.
pub fn bind_udp(addr: SocketAddr, reuse_address: bool) -> io::Result<UdpSocket> {
    Ok(bound(addr, Type::DGRAM, socket2::Protocol::UDP, reuse_address)?.into())
}

/// A non-blocking socket bound to `addr`, v6-only for IPv6 (so `::` and
/// `0.0.0.0` can both be listened on), SO_REUSEADDR as `server.reuse_address` says.
fn bound(
    addr: SocketAddr,
    kind: Type,
    protocol: socket2::Protocol,
    reuse_address: bool,
) -> io::Result<Socket2> {
    let socket = Socket2::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(reuse_address)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket)
}

/// What the service manager passed (`LISTEN_PID`, `LISTEN_FDS`,
/// `LISTEN_FDNAMES`), before the configuration says what each serves.
#[derive(Debug)]
pub enum Activation {
    /// Listening sockets (`Accept=no`).
    Listeners(Vec<Passed>),
    /// One connection (`Accept=yes`).
    Connection(Passed),
}

/// One passed socket and its `LISTEN_FDNAMES` entry.
#[derive(Debug)]
pub struct Passed {
    fd: i32,
    name: Option<String>,
    socket: Inherited,
}

impl Activation {
    /// Whether it is one connection (`Accept=yes`).
    pub fn is_connection(&self) -> bool {
        matches!(self, Activation::Connection(_))
    }

    /// What each passed socket serves: the protocol its `LISTEN_FDNAMES`
    /// entry names (`jam`, `daytime`, `rfc868`); else the configured
    /// listener with its transport and local address (a wildcard address
    /// matching any); else, for a stream socket, JAM as ever. A datagram
    /// socket that matches nothing is skipped with a warning.
    pub fn resolve(
        self,
        config: &Config,
        warnings: &mut Vec<String>,
    ) -> Result<Sockets, ListenError> {
        let configured = config.listeners();
        let passed = match self {
            Activation::Connection(p) => {
                let protocol = p.protocol(&configured).unwrap_or(Protocol::Jam);
                return match p.socket {
                    Inherited::Connection(c) => Ok(Sockets::Connection(c, protocol)),
                    Inherited::Listener(_) | Inherited::Datagram(_) => Err(ListenError::Inherited(
                        "the passed connection is not a connection".into(),
                    )),
                };
            }
            Activation::Listeners(passed) => passed,
        };
        let n = passed.len();
        let mut listeners = Vec::with_capacity(n);
        for p in passed {
            let protocol = p.protocol(&configured);
            let socket = match p.socket {
                Inherited::Listener(l) => Socket::Stream(l),
                Inherited::Datagram(u) => Socket::Datagram(u),
                Inherited::Connection(_) => continue,
            };
            match (protocol, socket) {
                (Some(protocol), socket) => listeners.push(Listening { protocol, socket }),
                (None, socket @ Socket::Stream(_)) => listeners.push(Listening {
                    protocol: Protocol::Jam,
                    socket,
                }),
                (None, Socket::Datagram(u)) => {
                    let at = u.local_addr().map(|a| show_addr(&a)).unwrap_or_default();
                    warnings.push(format!(
                        "passed descriptor {} (udp {at}) is named for no protocol (FileDescriptorName=daytime or rfc868) and matches no daytime.listen_udp or rfc868.listen_udp; skipping it",
                        p.fd
                    ));
                }
            }
        }
        if listeners.is_empty() {
            return Err(ListenError::Inherited(format!(
                "none of the {n} socket(s) passed by the service manager can be served"
            )));
        }
        Ok(Sockets::Listeners(listeners))
    }
}

impl Passed {
    /// The protocol its name says, or the configured listener it matches.
    fn protocol(&self, configured: &[Listener]) -> Option<Protocol> {
        if let Some(p) = self.name.as_deref().and_then(Protocol::from_name) {
            return Some(p);
        }
        let (transport, local) = match &self.socket {
            Inherited::Listener(l) => (Transport::Tcp, l.local_addr().ok()?),
            Inherited::Connection(c) => (Transport::Tcp, c.local_addr().ok()?),
            Inherited::Datagram(u) => (Transport::Udp, u.local_addr().ok()?),
        };
        match_listener(configured, transport, local)
    }
}

/// The protocol of the configured listener with this transport and local
/// address: the same address first, then a wildcard on either side.
fn match_listener(
    configured: &[Listener],
    transport: Transport,
    local: SocketAddr,
) -> Option<Protocol> {
    let candidates = || {
        configured
            .iter()
            .filter(move |l| l.transport == transport && l.addr.port() == local.port())
    };
    candidates()
        .find(|l| l.addr.ip().to_canonical() == local.ip().to_canonical())
        .or_else(|| {
            candidates().find(|l| l.addr.ip().is_unspecified() || local.ip().is_unspecified())
        })
        .map(|l| l.protocol)
}

/// The names `LISTEN_FDNAMES` gives the `n` passed descriptors, in order
/// (an empty or missing entry is no name).
fn fd_names(names: Option<&str>, n: usize) -> Vec<Option<String>> {
    let mut given = names.map(|s| s.split(':')).into_iter().flatten();
    (0..n)
        .map(|_| given.next().filter(|s| !s.is_empty()).map(str::to_owned))
        .collect()
}

/// Reads and clears the socket-activation variables. Returns `Ok(None)` when
/// there is no activation for this process. Problems that do not stop jamd
/// (variables meant for another process, a passed descriptor that is not a
/// TCP socket) are pushed onto `warnings` for the log.
pub fn from_service_manager(warnings: &mut Vec<String>) -> Result<Option<Activation>, ListenError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    // Children must never see them (sd_listen_fds(3) does the same).
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        crate::sys::remove_env(var);
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
    let mut names = fd_names(names.as_deref(), n.unsigned_abs() as usize).into_iter();
    let mut listeners = Vec::new();
    let mut connections = Vec::new();
    for fd in 3..3 + n {
        let name = names.next().flatten();
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
            Ok(socket @ Inherited::Connection(_)) => connections.push(Passed { fd, name, socket }),
            Ok(socket) => listeners.push(Passed { fd, name, socket }),
            Err(why) => warnings.push(format!("passed descriptor {fd} {why}; skipping it")),
        }
    }
    let activation = match (listeners.is_empty(), connections.len()) {
        (false, 0) => Activation::Listeners(listeners),
        (true, 1) => Activation::Connection(connections.remove(0)),
        (true, 0) => {
            return Err(ListenError::Inherited(format!(
                "none of the {n} descriptor(s) passed by the service manager is a TCP socket (or a UDP one)"
            )))
        }
        _ => {
            return Err(ListenError::Inherited(
                "the service manager passed more than one connection, or connections and listeners together".into(),
            ))
        }
    };
    Ok(Some(activation))
}

/// What an inherited socket is ([`classify`]).
#[derive(Debug)]
pub(crate) enum Inherited {
    Listener(TcpListener),
    Connection(TcpStream),
    Datagram(UdpSocket),
}

/// Decides whether an inherited socket is a TCP listener, a connection or
/// a UDP socket.
pub(crate) fn classify(owned: OwnedFd) -> Result<Inherited, String> {
    let sock = SockRef::from(&owned);
    let datagram = match sock.r#type() {
        Ok(t) if t == Type::STREAM => false,
        Ok(t) if t == Type::DGRAM => true,
        Ok(_) => return Err("is neither a stream nor a datagram socket".into()),
        Err(e) => return Err(format!("is not usable: {e}")),
    };
    match sock.domain() {
        Ok(d) if d == Domain::IPV4 || d == Domain::IPV6 => {}
        _ if datagram => return Err("is not a UDP/IP socket".into()),
        _ => return Err("is not a TCP/IP socket".into()),
    }
    if datagram {
        sock.set_nonblocking(true)
            .map_err(|e| format!("cannot be made non-blocking: {e}"))?;
        return Ok(Inherited::Datagram(UdpSocket::from(owned)));
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

/// When the service manager's listening sockets are not what `server.port`
/// and `server.bind` say, the notice to log: the file's settings are then
/// ignored, and an operator editing them would wonder why (jamd(8), SOCKET
/// ACTIVATION). A dual-stack `[::]` socket (systemd's `BindIPv6Only=both`)
/// stands for `0.0.0.0` too.
pub fn activation_differs(sockets: &Sockets, server: &ServerConfig) -> Option<String> {
    let Sockets::Listeners(listeners) = sockets else {
        return None;
    };
    // JAM's own: the other protocols' sockets are not server.port's.
    let passed: Vec<(SocketAddr, bool)> = listeners
        .iter()
        .filter_map(|l| match &l.socket {
            Socket::Stream(s) if l.protocol == Protocol::Jam => {
                let addr = s.local_addr().ok()?;
                let dual = addr.is_ipv6() && SockRef::from(s).only_v6().ok() == Some(false);
                Some((addr, dual))
            }
            Socket::Stream(_) | Socket::Datagram(_) => None,
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
        let config = Config {
            server,
            ..Config::default()
        };
        let e = bind_all(&config).err().unwrap();
        let text = e.to_string();
        assert!(text.starts_with("cannot listen on 127.0.0.1:"), "{text}");
        assert!(text.contains("Address already in use"), "{text}");
        assert!(
            text.contains("choose another port (server.port, -p)"),
            "{text}"
        );
    }

    fn listener(addr: &str, transport: Transport, protocol: Protocol) -> Listener {
        Listener {
            addr: addr.parse().unwrap(),
            transport,
            protocol,
        }
    }

    #[test]
    fn every_configured_listener_is_bound_with_its_protocol() {
        let mut config = Config::default();
        config.server.bind = vec!["127.0.0.1".parse().unwrap()];
        config.server.port = 0;
        config.daytime.listen_udp = vec!["127.0.0.1:0".parse().unwrap()];
        config.rfc868.listen = vec!["127.0.0.1:0".parse().unwrap()];
        let bound = bind_all(&config).unwrap();
        let got: Vec<(Protocol, Transport)> = bound
            .listeners
            .iter()
            .map(|l| (l.protocol, l.transport()))
            .collect();
        assert_eq!(
            got,
            [
                (Protocol::Jam, Transport::Tcp),
                (Protocol::Daytime, Transport::Udp),
                (Protocol::Rfc868, Transport::Tcp),
            ]
        );
        let line = bound.listeners[1].announcement(Some(128), None).unwrap();
        assert!(line.starts_with("listening on 127.0.0.1:"), "{line}");
        assert!(line.ends_with(" (daytime, udp)"), "{line}");
        let line = bound.listeners[0].announcement(Some(128), None).unwrap();
        assert!(line.ends_with(" (backlog 128)"), "{line}");
        let line = bound.listeners[2]
            .announcement(None, Some("inetd"))
            .unwrap();
        assert!(line.ends_with(" (rfc868, from inetd)"), "{line}");
        let line = bound.listeners[0]
            .announcement(None, Some("inetd"))
            .unwrap();
        assert!(line.ends_with(" (from inetd)"), "{line}");
    }

    #[test]
    fn a_taken_udp_port_is_an_error_naming_the_key() {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut config = Config::default();
        config.server.bind = vec!["127.0.0.1".parse().unwrap()];
        config.server.port = 0;
        config.rfc868.listen_udp = vec![taken.local_addr().unwrap()];
        let e = bind_all(&config).err().unwrap().to_string();
        assert!(e.contains("Address already in use"), "{e}");
        assert!(
            e.ends_with("choose another port (rfc868.listen_udp)"),
            "{e}"
        );
    }

    #[test]
    fn fd_names_are_read_in_order_and_may_be_missing() {
        assert_eq!(
            fd_names(Some("jam:daytime::rfc868"), 5),
            [
                Some("jam".to_owned()),
                Some("daytime".to_owned()),
                None,
                Some("rfc868".to_owned()),
                None
            ]
        );
        assert_eq!(fd_names(None, 2), [None, None]);
    }

    #[test]
    fn a_passed_socket_matches_the_listener_at_its_address() {
        let configured = [
            listener("0.0.0.0:45000", Transport::Tcp, Protocol::Jam),
            listener("0.0.0.0:13", Transport::Tcp, Protocol::Daytime),
            listener("127.0.0.1:37", Transport::Udp, Protocol::Rfc868),
            listener("[::]:37", Transport::Udp, Protocol::Daytime),
        ];
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        // A wildcard in the configuration matches any address of the port.
        assert_eq!(
            match_listener(&configured, Transport::Tcp, at("127.0.0.1:13")),
            Some(Protocol::Daytime)
        );
        // The exact address wins over a wildcard.
        assert_eq!(
            match_listener(&configured, Transport::Udp, at("127.0.0.1:37")),
            Some(Protocol::Rfc868)
        );
        assert_eq!(
            match_listener(&configured, Transport::Udp, at("[::1]:37")),
            Some(Protocol::Daytime)
        );
        // A passed wildcard matches a listener of its port.
        assert_eq!(
            match_listener(&configured, Transport::Tcp, at("[::]:13")),
            Some(Protocol::Daytime)
        );
        // Another transport or port matches nothing.
        assert_eq!(
            match_listener(&configured, Transport::Udp, at("0.0.0.0:13")),
            None
        );
        assert_eq!(
            match_listener(&configured, Transport::Tcp, at("127.0.0.1:99")),
            None
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
