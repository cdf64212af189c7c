//! The configuration file: its TOML schema, defaults and validation.
//!
//! Every value is checked while it is read, so a loaded [`Config`] cannot hold
//! an invalid setting: a bad time format or zone, an address that is not an
//! address, a limit out of range, a `bind` list that cannot work. Errors name
//! the file, the line and the column, the key, and what the key takes, in a
//! user's words (never a Rust type):
//! `jamd.toml:4:8: server.port: expected a port number (0-65535), found the string "x"`.
//!
//! The file is read by hand from toml's spanned document
//! ([`reader::Keys`], [`reader::Value`]) rather than by `serde::Deserialize`,
//! whose messages speak Rust (`expected u16`, `expected struct
//! ServerConfig`).
//!
//! # Adding a key
//!
//! 1. Add the field to its section's struct, here (with its default in
//!    `Default`); derive or keep `Serialize` so `jamd -t` prints it.
//! 2. Read it in the section's reader in `sections.rs` with one line, saying
//!    in words what it takes; the reader names the key and the place in every error:
//!    ```ignore
//!    keys.read("shutdown_timeout", &mut s.shutdown_timeout, |v| v.seconds())?;
//!    keys.read("rate", &mut a.rate, |v| v.integer(0, 1_000_000, "a number of requests per second"))?;
//!    keys.read("mode", &mut a.mode, |v| v.one_of(&[("allow", Mode::Allow), ("deny", Mode::Deny)]))?;
//!    keys.read("listen", &mut m.listen, |v| v.parse_str("an address such as \"127.0.0.1:9100\"", parse_listen))?;
//!    ```
//!    A new section is one line in [`sections::read_config`]:
//!    `root.read("metrics", &mut c.metrics, |v| read_metrics(v.table()?))?;`
//!    where `read_metrics` reads its keys the same way and ends with
//!    `keys.finish()` (which rejects the keys it did not read, listing the
//!    ones it knows).
//! 3. Document it in `config/jamd.toml` and `man/jamd.toml.5`.
//!
//! # Where things are
//!
//! - here: the schema (one struct per section) and its defaults;
//! - `reader.rs`: the spanned TOML reader ([`reader::Keys`],
//!   [`reader::Value`], [`reader::Invalid`]) and its messages;
//! - `sections.rs`: one reader per section, and the checks across keys;
//! - `load.rs`: reading the file, [`load()`], [`Overrides`];
//! - `syntax.rs`: TOML syntax errors in words.

mod load;
mod reader;
mod sections;
mod syntax;

pub(crate) use load::load;
pub use load::{ConfigError, Loaded, Overrides};

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU16, NonZeroU32, NonZeroUsize};
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::access::{AccessList, Prefix};
use crate::clock::{Clock, TimeFormat, Zone};
use crate::listener::{Listener, Protocol, Transport};
use crate::sources::{Rate, SourceKey, SourceLimits};

/// Where jamd looks for its configuration when `-c` is not given.
pub(crate) const DEFAULT_PATH: &str = "/etc/jamd/jamd.toml";

/// The most listening sockets jamd serves on (each needs an event-loop
/// token below the workers' own; see src/server/worker.rs).
pub(crate) const MAX_LISTENERS: usize = 1024;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Config {
    // server, access and proxy are `pub` for the configuration fuzz target
    // (fuzz/src/config.rs), which checks the decisions read from them.
    /// `[server]`: sockets and limits.
    pub server: ServerConfig,
    /// `[time]`: how replies show the time.
    pub(crate) time: TimeConfig,
    /// `[log]`: where log lines go.
    pub(crate) log: LogConfig,
    /// `[access]`: who may connect.
    pub access: AccessConfig,
    /// `[proxy]`: load balancers that send a PROXY protocol header.
    pub proxy: ProxyConfig,
    /// `[metrics]`: the Prometheus endpoint.
    pub(crate) metrics: MetricsConfig,
    /// `[daytime]`: Daytime (RFC 867) listeners and their format.
    pub(crate) daytime: DaytimeConfig,
    /// `[rfc868]`: Time (RFC 868) listeners.
    pub(crate) rfc868: Rfc868Config,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub(crate) struct MetricsConfig {
    /// Where `/metrics` is served; `None` (written `""`) is off. Bound at
    /// start only: a change needs a restart.
    #[serde(serialize_with = "serialize_listen")]
    pub(crate) listen: Option<SocketAddr>,
}

fn serialize_listen<S: Serializer>(addr: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&addr.map(|a| a.to_string()).unwrap_or_default())
}

/// `[daytime]`: Daytime (RFC 867). Listeners are bound at start only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct DaytimeConfig {
    /// TCP listeners; empty: none.
    pub(crate) listen: Vec<SocketAddr>,
    /// UDP listeners; empty: none.
    pub(crate) listen_udp: Vec<SocketAddr>,
    /// The line's strftime format, in `[time] timezone`.
    pub(crate) format: TimeFormat,
}

impl Default for DaytimeConfig {
    fn default() -> Self {
        DaytimeConfig {
            listen: Vec::new(),
            listen_udp: Vec::new(),
            format: crate::daytime::default_format(),
        }
    }
}

/// `[rfc868]`: Time (RFC 868). Listeners are bound at start only.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub(crate) struct Rfc868Config {
    /// TCP listeners; empty: none.
    pub(crate) listen: Vec<SocketAddr>,
    /// UDP listeners; empty: none.
    pub(crate) listen_udp: Vec<SocketAddr>,
}
/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerConfig {
    /// TCP port (0: the kernel picks one; the log says which).
    pub(crate) port: u16,
    /// One listening socket per address.
    pub(crate) bind: Vec<IpAddr>,
    /// listen(2) backlog.
    pub(crate) backlog: u32,
    /// SO_REUSEADDR.
    pub(crate) reuse_address: bool,
    /// Clients served at once.
    pub(crate) max_connections: usize,
    /// Clients from one source at once; `None` (0 in the file): no limit.
    #[serde(serialize_with = "serialize_or_zero")]
    pub(crate) max_connections_per_source: Option<NonZeroUsize>,
    /// Clients count as one source per this IPv4 prefix length.
    pub(crate) source_prefix_v4: u8,
    /// Clients count as one source per this IPv6 prefix length.
    pub(crate) source_prefix_v6: u8,
    /// New connections a second from one source; `None` (0 in the file):
    /// no limit.
    #[serde(serialize_with = "serialize_or_zero")]
    pub(crate) connection_rate_per_source: Option<NonZeroU32>,
    /// Connections a source may open at once above the rate.
    pub(crate) connection_burst_per_source: u32,
    /// Bound on the per-source state kept in memory.
    pub(crate) max_tracked_sources: usize,
    /// How long without a complete request before closing; `None` (0 in
    /// the file): never.
    #[serde(serialize_with = "serialize_seconds_or_off")]
    pub(crate) idle_timeout: Option<Duration>,
    /// Longest request line accepted, terminator not counted.
    pub(crate) max_line_bytes: usize,
    /// How long SIGTERM waits for open connections (whole seconds).
    #[serde(serialize_with = "serialize_seconds")]
    pub(crate) shutdown_timeout: Duration,
    /// Event-loop threads. One by default: see BENCHMARKS.md, "Workers".
    pub(crate) workers: Workers,
    /// Started as root: the user to become once every socket is open; "": stay.
    pub(crate) user: String,
    /// That user's group; "": the user's primary group.
    pub(crate) group: String,
    /// After start-up, confine jamd to the system calls it needs (jamd.8).
    pub(crate) sandbox: bool,
}

/// A limit that may be off: the limit, or 0 for off.
fn serialize_or_zero<S: Serializer, T: Serialize>(n: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match n {
        Some(n) => n.serialize(s),
        None => s.serialize_u64(0),
    }
}

/// A number of seconds, as the file gives it and `jamd -t` prints it.
fn serialize_seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// A timeout that may be off: its seconds, or 0 for off.
fn serialize_seconds_or_off<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.map_or(0, |d| d.as_secs()))
}

/// The addresses bound when neither the file nor `-b` names any.
pub(crate) fn default_bind() -> Vec<IpAddr> {
    vec![
        IpAddr::from([0u8, 0, 0, 0]),
        IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 0]),
    ]
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            port: 45000,
            bind: default_bind(),
            backlog: 128,
            reuse_address: true,
            max_connections: 1024,
            max_connections_per_source: None,
            source_prefix_v4: 32,
            source_prefix_v6: 64,
            connection_rate_per_source: None,
            connection_burst_per_source: 20,
            max_tracked_sources: 65_536,
            idle_timeout: Some(Duration::from_secs(30)),
            max_line_bytes: 256,
            shutdown_timeout: Duration::from_secs(5),
            workers: Workers::Count(NonZeroUsize::MIN),
            user: String::new(),
            group: String::new(),
            sandbox: cfg!(target_os = "linux"),
        }
    }
}

impl ServerConfig {
    /// The source a client address counts as.
    pub fn source_of(&self, ip: IpAddr) -> SourceKey {
        SourceKey::new(ip, self.source_prefix_v4, self.source_prefix_v6)
    }

    /// The per-source limits, for the source table.
    pub fn source_limits(&self) -> SourceLimits {
        SourceLimits {
            rate: Rate {
                per_second: self.connection_rate_per_source.map_or(0, NonZeroU32::get),
                burst: self.connection_burst_per_source,
            },
            max_open: self.max_connections_per_source.map_or(0, NonZeroUsize::get),
            max_tracked: self.max_tracked_sources,
        }
    }

    /// The number of worker threads to run.
    pub(crate) fn worker_count(&self) -> usize {
        match self.workers {
            Workers::Count(n) => n.get(),
            Workers::PerCpu => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// `server.workers`: how many event-loop threads to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workers {
    /// One per CPU (0 in the file).
    PerCpu,
    /// This many.
    Count(NonZeroUsize),
}

impl Serialize for Workers {
    /// As the file gives it: the count, or 0 for one per CPU.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Workers::PerCpu => s.serialize_u64(0),
            Workers::Count(n) => n.serialize(s),
        }
    }
}

/// `[access]`: the allow and deny lists.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct AccessConfig {
    /// Addresses or prefixes that may connect; empty: everyone not denied.
    pub(crate) allow: Vec<Prefix>,
    /// Addresses or prefixes that may not connect.
    pub(crate) deny: Vec<Prefix>,
}

impl AccessConfig {
    /// The lists, ready to decide.
    pub fn list(&self) -> AccessList {
        AccessList::new(&self.allow, &self.deny)
    }
}

/// `[proxy]`: load balancers trusted to name the client with a PROXY
/// protocol header.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyConfig {
    /// Addresses or prefixes of the balancers; empty: off.
    pub(crate) trusted: Vec<Prefix>,
    /// How long a trusted connection has to send its header (whole
    /// seconds, at least one).
    #[serde(serialize_with = "serialize_seconds")]
    pub(crate) header_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            trusted: Vec::new(),
            header_timeout: Duration::from_secs(3),
        }
    }
}

impl ProxyConfig {
    /// Whether a connection from `ip` must begin with a PROXY header.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|p| p.contains(ip))
    }
}

/// `[time]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct TimeConfig {
    /// strftime format.
    pub(crate) format: TimeFormat,
    /// Time zone.
    pub(crate) timezone: Zone,
}

impl Default for TimeConfig {
    /// The built-in settings. The local zone is resolved here as best it can
    /// be; a configuration jamd runs with always comes from [`load()`], which
    /// resolves "local" again and fails when it cannot (never UTC in silence).
    fn default() -> Self {
        TimeConfig {
            format: TimeFormat::parse("%H:%M:%S").expect("the default format is valid"),
            timezone: Zone::parse("local").unwrap_or_else(|_| Zone::utc()),
        }
    }
}

impl TimeConfig {
    /// The clock these settings describe.
    pub(crate) fn clock(&self) -> Arc<Clock> {
        Arc::new(Clock {
            format: self.format.clone(),
            zone: self.timezone.clone(),
        })
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogConfig {
    /// syslog, stderr or both.
    pub(crate) target: LogTarget,
    /// syslog facility.
    pub(crate) facility: Facility,
    /// A unix datagram socket path, or `udp://HOST:PORT`.
    pub(crate) syslog_socket: SyslogSocket,
    /// The least severe level logged.
    pub(crate) level: Level,
    /// One line when a client connects and one when it leaves.
    pub(crate) connections: bool,
    /// Those lines for a trusted balancer's health checks too.
    pub(crate) health_checks: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            target: LogTarget::Syslog,
            facility: Facility::Daemon,
            syslog_socket: SyslogSocket::Unix("/dev/log".into()),
            level: Level::Info,
            connections: true,
            health_checks: false,
        }
    }
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// The syslog socket only.
    Syslog,
    /// Standard error only.
    Stderr,
    /// Both.
    Both,
}

/// A syslog facility jamd may log under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub(crate) enum Facility {
    Daemon,
    User,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

/// A log level, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Something failed.
    Error,
    /// Something is wrong but jamd goes on.
    Warn,
    /// Normal operation: start, stop, connections.
    Info,
    /// Detail for debugging.
    Debug,
}

/// Where syslog lines are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyslogSocket {
    /// A local unix datagram socket such as `/dev/log`.
    Unix(PathBuf),
    /// A remote collector over UDP.
    Udp(UdpCollector),
}

impl SyslogSocket {
    /// `log.syslog_socket`: an absolute path, or `udp://HOST:PORT`.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        const WHAT: &str = "expected an absolute socket path (\"/dev/log\") or udp://HOST:PORT";
        if let Some(hostport) = s.strip_prefix("udp://") {
            UdpCollector::parse(hostport)
                .map(SyslogSocket::Udp)
                .ok_or_else(|| format!("{WHAT}, found the string {s:?}"))
        } else if s.starts_with('/') {
            Ok(SyslogSocket::Unix(PathBuf::from(s)))
        } else {
            Err(format!("{WHAT}, found the string {s:?}"))
        }
    }
}

impl fmt::Display for SyslogSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogSocket::Unix(p) => write!(f, "{}", p.display()),
            SyslogSocket::Udp(c) => write!(f, "udp://{c}"),
        }
    }
}

/// A remote syslog collector, `HOST:PORT`: a host name or address and a
/// port that is not 0. The host is looked up when the logger connects (at
/// start, after a reload that changes `[log]`, after a failed send), not
/// here: a name that moves meanwhile is followed then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UdpCollector {
    /// A name or an address; an IPv6 address without its brackets.
    host: String,
    port: NonZeroU16,
    /// Written `[ADDR]:PORT`: shown again that way.
    bracketed: bool,
}

impl UdpCollector {
    /// `HOST:PORT`, `[IPV6]:PORT`, or an IPv6 address and a port without
    /// brackets (`::1:514`, read from the last colon); None if not that.
    fn parse(hostport: &str) -> Option<UdpCollector> {
        let (host, port) = hostport.rsplit_once(':')?;
        let port = port.parse::<NonZeroU16>().ok()?;
        let (host, bracketed) = match host.strip_prefix('[') {
            Some(inner) => {
                let inner = inner.strip_suffix(']')?;
                // An address, with a zone (`fe80::1%eth0`) if it has one.
                let addr = inner.split_once('%').map_or(inner, |(a, _)| a);
                addr.parse::<std::net::Ipv6Addr>().ok()?;
                (inner, true)
            }
            None => (host, false),
        };
        if host.is_empty() {
            return None;
        }
        Some(UdpCollector {
            host: host.to_owned(),
            port,
            bracketed,
        })
    }

    /// The host name or address to look up (an IPv6 address unbracketed).
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The UDP port.
    pub(crate) fn port(&self) -> NonZeroU16 {
        self.port
    }
}

/// `HOST:PORT` as it was written.
impl fmt::Display for UdpCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bracketed {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Implements Serialize as a string, for `jamd -t`.
macro_rules! string_serialize {
    ($ty:ty, $show:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let show: fn(&$ty) -> String = $show;
                s.serialize_str(&show(self))
            }
        }
    };
}

string_serialize!(TimeFormat, |f| f.as_str().to_owned());
string_serialize!(Zone, |z| z.name().to_owned());
string_serialize!(SyslogSocket, |s| s.to_string());

impl Config {
    /// Every listener the configuration names: JAM on `server.bind` ×
    /// `server.port`, then `[daytime]`'s and `[rfc868]`'s.
    pub(crate) fn listeners(&self) -> Vec<Listener> {
        let jam = self.server.bind.iter().map(|ip| Listener {
            addr: SocketAddr::new(*ip, self.server.port),
            transport: Transport::Tcp,
            protocol: Protocol::Jam,
        });
        let of = |addrs: &[SocketAddr], transport, protocol| {
            addrs
                .iter()
                .map(move |addr| Listener {
                    addr: *addr,
                    transport,
                    protocol,
                })
                .collect::<Vec<_>>()
        };
        jam.chain(of(&self.daytime.listen, Transport::Tcp, Protocol::Daytime))
            .chain(of(
                &self.daytime.listen_udp,
                Transport::Udp,
                Protocol::Daytime,
            ))
            .chain(of(&self.rfc868.listen, Transport::Tcp, Protocol::Rfc868))
            .chain(of(
                &self.rfc868.listen_udp,
                Transport::Udp,
                Protocol::Rfc868,
            ))
            .collect()
    }

    /// The clock of Daytime replies: `[daytime] format` in `[time] timezone`.
    pub(crate) fn daytime_clock(&self) -> Arc<Clock> {
        Arc::new(Clock {
            format: self.daytime.format.clone(),
            zone: self.time.timezone.clone(),
        })
    }

    /// The effective settings as TOML, as `jamd -t` prints them; a zone given
    /// as "local" gets a comment with the zone in effect and where it came
    /// from (`# Asia/Jakarta, from TZ`).
    pub fn to_toml(&self) -> String {
        let text = toml::to_string(self)
            .unwrap_or_else(|e| format!("# cannot show the configuration: {e}\n"));
        match self.time.timezone.origin() {
            Some(origin) => text.replacen(
                "timezone = \"local\"\n",
                &format!("timezone = \"local\"  # {origin}\n"),
                1,
            ),
            None => text,
        }
    }

    /// Legal but odd settings worth a warning.
    pub fn warnings(&self) -> Vec<String> {
        let s = &self.server;
        let mut w = Vec::new();
        if let Some(per_source) = s
            .max_connections_per_source
            .filter(|n| n.get() > s.max_connections)
        {
            w.push(format!(
                "server.max_connections_per_source ({}) is above server.max_connections ({}): it has no effect",
                per_source, s.max_connections
            ));
        }
        let limits = s.source_limits();
        let per_source = limits.rate.per_second > 0 || limits.max_open > 0;
        if per_source && s.max_tracked_sources < s.max_connections {
            w.push(format!(
                "server.max_tracked_sources ({}) is below server.max_connections ({}): \
                 when every tracked source has a client connected, clients from new sources get \"ERROR server busy\"",
                s.max_tracked_sources, s.max_connections
            ));
        }
        for p in &self.access.allow {
            if self.access.deny.contains(p) {
                w.push(format!(
                    "{p} is in both access.allow and access.deny: it is denied"
                ));
            }
        }
        if let Some(note) = self.time.timezone.warning() {
            w.push(note);
        }
        w
    }
}

/// Reads `text` as `jamd.toml`, an error as its message: for unit tests.
#[cfg(test)]
fn parse_for_tests(text: &str) -> Result<Config, String> {
    Config::parse(text, Path::new("jamd.toml")).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::parse_for_tests as parse;
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.server.port, 45000);
        assert_eq!(c.server.bind, default_bind());
        assert_eq!(c.time.format.as_str(), "%H:%M:%S");
        assert_eq!(c.log.target, LogTarget::Syslog);
    }

    #[test]
    fn odd_access_and_source_settings_are_warned_about() {
        let c = parse("[server]\nmax_connections_per_source = 2\nmax_tracked_sources = 10\n[access]\nallow = [\"10.0.0.0/8\"]\ndeny = [\"10.0.0.0/8\"]\n").unwrap();
        let w = c.warnings().join("\n");
        assert!(
            w.contains("server.max_tracked_sources (10) is below server.max_connections (1024)"),
            "{w}"
        );
        assert!(
            w.contains("10.0.0.0/8 is in both access.allow and access.deny: it is denied"),
            "{w}"
        );
    }

    #[test]
    fn the_effective_settings_round_trip_through_toml() {
        let c = parse("[server]\nport = 4501\n[time]\ntimezone = \"UTC\"\n").unwrap();
        let again = parse(&c.to_toml()).unwrap();
        assert_eq!(c, again);
        assert!(c.to_toml().contains("port = 4501"));
    }

    #[test]
    fn a_udp_syslog_target_is_a_host_and_a_port_shown_as_written() {
        for (text, host, port) in [
            ("udp://127.0.0.1:514", "127.0.0.1", 514),
            ("udp://logs.example.org:6514", "logs.example.org", 6514),
            ("udp://[::1]:514", "::1", 514),
            ("udp://::1:514", "::1", 514),
            ("udp://[fe80::1%eth0]:514", "fe80::1%eth0", 514),
        ] {
            let socket = SyslogSocket::parse(text).unwrap();
            let SyslogSocket::Udp(collector) = &socket else {
                panic!("{text}: {socket:?}");
            };
            assert_eq!((collector.host(), collector.port().get()), (host, port));
            assert_eq!(socket.to_string(), text);
        }
    }

    #[test]
    fn a_udp_syslog_target_without_a_host_or_a_port_is_refused() {
        for text in [
            "udp://host",
            "udp://host:0",
            "udp://host:65536",
            "udp://host:x",
            "udp://:514",
            "udp://[]:514",
            "udp://[::1]",
            "udp://[::1:514",
            "udp://[logs.example.org]:514",
        ] {
            let e = SyslogSocket::parse(text).expect_err(text);
            assert_eq!(
                e,
                format!(
                    "expected an absolute socket path (\"/dev/log\") or udp://HOST:PORT, \
                     found the string {text:?}"
                )
            );
        }
    }

    #[test]
    fn the_shipped_config_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/jamd.toml");
        let c = load(&path, true, &Overrides::default()).unwrap().config;
        assert_eq!(c, Config::default());
    }
}
