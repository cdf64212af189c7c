//! What a listener is: an address, a transport ([`Transport`]) and a
//! protocol ([`Protocol`]), as the configuration lists them, `listen.rs`
//! binds them, socket activation matches them and the workers serve them;
//! and how an address is written in log lines ([`show_addr`]).

use std::fmt;
use std::net::SocketAddr;

use crate::labels::labels;

labels! {
    /// The protocols jamd serves. Their names are the same wherever one is
    /// named: `--protocol`, `LISTEN_FDNAMES`, log lines and metric labels.
    #[derive(clap::ValueEnum)]
    pub enum Protocol {
        /// JAM: `TIME` → `JAM 14:03:27` (jamd(8)).
        Jam = "jam",
        /// Daytime (RFC 867): one line of text.
        Daytime = "daytime",
        /// Time (RFC 868): seconds since 1900 in 4 bytes.
        Rfc868 = "rfc868",
    }
}

impl Protocol {
    /// The protocol of a name (exactly as [`Protocol::as_str`] writes it).
    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

labels! {
    /// How a listener's clients reach it: the `transport` label of the
    /// metrics.
    pub enum Transport {
        /// Connections (a stream socket).
        Tcp = "tcp",
        /// Datagrams.
        Udp = "udp",
    }
}

/// One listener as configured: where, over what, serving which protocol.
/// The configuration lists them ([`crate::config::Config::listeners`]),
/// `listen::bind_all` binds them, socket activation matches passed sockets
/// against them, and the workers serve each by its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// The local address and port.
    pub addr: SocketAddr,
    /// TCP or UDP.
    pub transport: Transport,
    /// What it serves.
    pub protocol: Protocol,
}

impl fmt::Display for Listener {
    /// `daytime on 0.0.0.0:13 (udp)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {} ({})",
            self.protocol,
            show_addr(&self.addr),
            self.transport
        )
    }
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
