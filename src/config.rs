//! The configuration file: its TOML schema, defaults and validation.
//!
//! Every value is checked while it is read, so a loaded [`Config`] cannot hold
//! an invalid setting: a bad time format or zone, an address that is not an
//! address, a limit out of range, a `bind` list that cannot work. Errors name
//! the file, the line and the column, the key, and what the key takes, in a
//! user's words (never a Rust type):
//! `jamd.toml:4:8: server.port: expected a port number (0-65535), found the string "x"`.
//!
//! The file is read by hand from toml's spanned document ([`Keys`], [`Value`])
//! rather than by `serde::Deserialize`, whose messages speak Rust (`expected
//! u16`, `expected struct ServerConfig`).
//!
//! # Adding a key
//!
//! 1. Add the field to its section's struct (with its default in `Default`);
//!    derive or keep `Serialize` so `jamd -t` prints it.
//! 2. Read it in the section's reader with one line, saying in words what it
//!    takes; the reader names the key and the place in every error:
//!    ```ignore
//!    keys.read("idle_timeout", &mut s.idle_timeout, |v| v.seconds())?;
//!    keys.read("rate", &mut a.rate, |v| v.integer(0, 1_000_000, "a number of requests per second"))?;
//!    keys.read("mode", &mut a.mode, |v| v.one_of(&[("allow", Mode::Allow), ("deny", Mode::Deny)]))?;
//!    keys.read("listen", &mut m.listen, |v| v.parse_str("an address such as \"127.0.0.1:9100\"", parse_listen))?;
//!    ```
//!    A new section is one line in [`read_config`]:
//!    `root.read("metrics", &mut c.metrics, |v| read_metrics(v.table()?))?;`
//!    where `read_metrics` reads its keys the same way and ends with
//!    `keys.finish()` (which rejects the keys it did not read, listing the
//!    ones it knows).
//! 3. Document it in `config/jamd.toml` and `man/jamd.toml.5`.

use std::fmt;
use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Serialize, Serializer};
use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

use crate::access::{AccessList, Prefix};
use crate::clock::{Clock, TimeFormat, Zone};
use crate::listen::{show_addr, Listener, Protocol, Transport};
use crate::sources::{Rate, SourceKey, SourceLimits};

/// Where jamd looks for its configuration when `-c` is not given.
pub const DEFAULT_PATH: &str = "/etc/jamd/jamd.toml";

/// The most listening sockets jamd serves on (each needs an event-loop
/// token below the workers' own; see src/server/worker.rs).
pub const MAX_LISTENERS: usize = 1024;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Config {
    /// `[server]`: sockets and limits.
    pub server: ServerConfig,
    /// `[time]`: how replies show the time.
    pub time: TimeConfig,
    /// `[log]`: where log lines go.
    pub log: LogConfig,
    /// `[access]`: who may connect.
    pub access: AccessConfig,
    /// `[proxy]`: load balancers that send a PROXY protocol header.
    pub proxy: ProxyConfig,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[daytime]`: Daytime (RFC 867) listeners and their format.
    pub daytime: DaytimeConfig,
    /// `[rfc868]`: Time (RFC 868) listeners.
    pub rfc868: Rfc868Config,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct MetricsConfig {
    /// Where `/metrics` is served; `None` (written `""`) is off. Bound at
    /// start only: a change needs a restart.
    #[serde(serialize_with = "serialize_listen")]
    pub listen: Option<SocketAddr>,
}

fn serialize_listen<S: Serializer>(addr: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&addr.map(|a| a.to_string()).unwrap_or_default())
}

/// `metrics.listen`: `""` or an address with a port. Only an address: the
/// socket must be exactly where the operator said, not wherever a host name
/// resolves today.
///
/// `":PORT"` is every address, as node_exporter's `--web.listen-address`
/// takes it: `[::]:PORT`, which also takes IPv4 (unless the system sets
/// `net.ipv6.bindv6only`).
fn parse_listen(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let every = s
        .strip_prefix(':')
        .and_then(|port| port.parse::<u16>().ok())
        .map(|port| SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)));
    every.or_else(|| s.parse().ok()).map(Some).ok_or_else(|| {
        format!(
            "expected an address and port such as \"127.0.0.1:9645\" or \"[::1]:9645\", \
             \":9645\" for every address, or \"\" for off, found the string {s:?}"
        )
    })
}

fn read_metrics(mut keys: Keys<'_, '_>, taken: &mut Taken) -> Result<MetricsConfig, Invalid> {
    let mut m = MetricsConfig::default();
    keys.read("listen", &mut m.listen, |v| {
        let listen = v.parse_str(
            "an address and port such as \"127.0.0.1:9645\", or \"\" for off",
            parse_listen,
        )?;
        if let Some(addr) = listen {
            taken.claim(v, addr, Transport::Tcp)?;
        }
        Ok(listen)
    })?;
    keys.finish()?;
    Ok(m)
}

/// `[daytime]`: Daytime (RFC 867). Listeners are bound at start only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaytimeConfig {
    /// TCP listeners; empty: none.
    pub listen: Vec<SocketAddr>,
    /// UDP listeners; empty: none.
    pub listen_udp: Vec<SocketAddr>,
    /// The line's strftime format, in `[time] timezone`.
    pub format: TimeFormat,
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
pub struct Rfc868Config {
    /// TCP listeners; empty: none.
    pub listen: Vec<SocketAddr>,
    /// UDP listeners; empty: none.
    pub listen_udp: Vec<SocketAddr>,
}

fn read_daytime(mut keys: Keys<'_, '_>, taken: &mut Taken) -> Result<DaytimeConfig, Invalid> {
    let mut d = DaytimeConfig::default();
    keys.read("listen", &mut d.listen, |v| {
        read_listeners(v, Transport::Tcp, taken)
    })?;
    keys.read("listen_udp", &mut d.listen_udp, |v| {
        read_listeners(v, Transport::Udp, taken)
    })?;
    keys.read("format", &mut d.format, |v| {
        v.parse_str(
            "a strftime format such as \"%a %b %e %H:%M:%S %Y\"",
            TimeFormat::parse,
        )
    })?;
    keys.finish()?;
    Ok(d)
}

fn read_rfc868(mut keys: Keys<'_, '_>, taken: &mut Taken) -> Result<Rfc868Config, Invalid> {
    let mut r = Rfc868Config::default();
    keys.read("listen", &mut r.listen, |v| {
        read_listeners(v, Transport::Tcp, taken)
    })?;
    keys.read("listen_udp", &mut r.listen_udp, |v| {
        read_listeners(v, Transport::Udp, taken)
    })?;
    keys.finish()?;
    Ok(r)
}

/// A `listen` / `listen_udp` list: `"ADDR:PORT"` entries, none of them an
/// address, port and transport another listener has.
fn read_listeners(
    v: &Value<'_, '_>,
    transport: Transport,
    taken: &mut Taken,
) -> Result<Vec<SocketAddr>, Invalid> {
    const WHAT: &str = "\"ADDR:PORT\", such as \"0.0.0.0:13\" or \"[::]:13\"";
    let items = v.list("a list of \"ADDR:PORT\" entries, such as [\"0.0.0.0:13\", \"[::]:13\"]")?;
    let mut list = Vec::with_capacity(items.len());
    for item in &items {
        let addr = item.parse_str(WHAT, |s| {
            s.parse::<SocketAddr>().map_err(|_| {
                format!("expected {WHAT}, found the string {s:?} (an IP address, not a host name, and a port)")
            })
        })?;
        taken.claim(item, addr, transport)?;
        list.push(addr);
    }
    Ok(list)
}

/// The listeners read so far, each with the key that named it.
struct Taken {
    listeners: Vec<(SocketAddr, Transport, String)>,
}

impl Taken {
    /// The JAM listeners `server.bind` × `server.port` make.
    fn of_jam(server: &ServerConfig) -> Taken {
        Taken {
            listeners: server
                .bind
                .iter()
                .map(|ip| {
                    (
                        SocketAddr::new(*ip, server.port),
                        Transport::Tcp,
                        "server.bind and server.port".to_owned(),
                    )
                })
                .collect(),
        }
    }

    /// Takes `addr` over `transport` for the key of `v`, unless another key
    /// has it. Port 0 (the kernel picks a free port) is never a clash.
    fn claim(
        &mut self,
        v: &Value<'_, '_>,
        addr: SocketAddr,
        transport: Transport,
    ) -> Result<(), Invalid> {
        // The same address, or one a wildcard of its family covers (binding
        // both on one port fails with "Address already in use").
        let clash = |other: &SocketAddr| {
            other.port() == addr.port()
                && other.is_ipv4() == addr.is_ipv4()
                && (*other == addr || other.ip().is_unspecified() || addr.ip().is_unspecified())
        };
        let same = self
            .listeners
            .iter()
            .find(|(a, t, _)| addr.port() != 0 && *t == transport && clash(a));
        if let Some((other, _, key)) = same {
            let what = match (*other == addr, key == v.key()) {
                (true, true) => "is listed twice".to_owned(),
                (true, false) => format!("is taken by {key} already"),
                (false, _) => format!("clashes with {} of {key}", show_addr(other)),
            };
            return Err(v.error(format_args!(
                "{} ({transport}) {what}: each address, port and transport can have one listener",
                show_addr(&addr)
            )));
        }
        if self.listeners.len() >= MAX_LISTENERS {
            return Err(v.error(format_args!(
                "more than {MAX_LISTENERS} listeners in all; jamd listens on at most {MAX_LISTENERS}"
            )));
        }
        self.listeners.push((addr, transport, v.key().to_owned()));
        Ok(())
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerConfig {
    /// TCP port (0: the kernel picks one; the log says which).
    pub port: u16,
    /// One listening socket per address.
    pub bind: Vec<IpAddr>,
    /// listen(2) backlog.
    pub backlog: u32,
    /// SO_REUSEADDR.
    pub reuse_address: bool,
    /// Clients served at once.
    pub max_connections: usize,
    /// Clients from one source at once; 0 means no limit.
    pub max_connections_per_source: usize,
    /// Clients count as one source per this IPv4 prefix length.
    pub source_prefix_v4: u8,
    /// Clients count as one source per this IPv6 prefix length.
    pub source_prefix_v6: u8,
    /// New connections a second from one source; 0: no limit.
    pub connection_rate_per_source: u32,
    /// Connections a source may open at once above the rate.
    pub connection_burst_per_source: u32,
    /// Bound on the per-source state kept in memory.
    pub max_tracked_sources: usize,
    /// Seconds without a complete request before closing; 0 disables.
    pub idle_timeout: u64,
    /// Longest request line accepted, terminator not counted.
    pub max_line_bytes: usize,
    /// Seconds SIGTERM waits for open connections.
    pub shutdown_timeout: u64,
    /// Event-loop threads; 0 means one per CPU. One by default: see
    /// BENCHMARKS.md, "Workers".
    pub workers: usize,
    /// Started as root: the user to become once every socket is open; "": stay.
    pub user: String,
    /// That user's group; "": the user's primary group.
    pub group: String,
    /// After start-up, confine jamd to the system calls it needs (jamd.8).
    pub sandbox: bool,
}

/// The addresses bound when neither the file nor `-b` names any.
pub fn default_bind() -> Vec<IpAddr> {
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
            max_connections_per_source: 0,
            source_prefix_v4: 32,
            source_prefix_v6: 64,
            connection_rate_per_source: 0,
            connection_burst_per_source: 20,
            max_tracked_sources: 65_536,
            idle_timeout: 30,
            max_line_bytes: 256,
            shutdown_timeout: 5,
            workers: 1,
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
                per_second: self.connection_rate_per_source,
                burst: self.connection_burst_per_source,
            },
            max_open: self.max_connections_per_source,
            max_tracked: self.max_tracked_sources,
        }
    }

    /// The number of worker threads to run.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// `[access]`: the allow and deny lists.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct AccessConfig {
    /// Addresses or prefixes that may connect; empty: everyone not denied.
    pub allow: Vec<Prefix>,
    /// Addresses or prefixes that may not connect.
    pub deny: Vec<Prefix>,
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
    pub trusted: Vec<Prefix>,
    /// Seconds a trusted connection has to send its header.
    pub header_timeout: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            trusted: Vec::new(),
            header_timeout: 3,
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
pub struct TimeConfig {
    /// strftime format.
    pub format: TimeFormat,
    /// Time zone.
    pub timezone: Zone,
}

impl Default for TimeConfig {
    /// The built-in settings. The local zone is resolved here as best it can
    /// be; a configuration jamd runs with always comes from [`load`], which
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
    pub fn clock(&self) -> Arc<Clock> {
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
    pub target: LogTarget,
    /// syslog facility.
    pub facility: Facility,
    /// A unix datagram socket path, or `udp://HOST:PORT`.
    pub syslog_socket: SyslogSocket,
    /// The least severe level logged.
    pub level: Level,
    /// One line when a client connects and one when it leaves.
    pub connections: bool,
    /// Those lines for a trusted balancer's health checks too.
    pub health_checks: bool,
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
pub enum Facility {
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
pub enum SyslogSocket {
    /// A local unix datagram socket such as `/dev/log`.
    Unix(PathBuf),
    /// A remote collector, `HOST:PORT`, over UDP.
    Udp(String),
}

impl SyslogSocket {
    fn parse(s: &str) -> Result<Self, String> {
        const WHAT: &str = "expected an absolute socket path (\"/dev/log\") or udp://HOST:PORT";
        if let Some(hostport) = s.strip_prefix("udp://") {
            match hostport.rsplit_once(':') {
                Some((host, port))
                    if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) =>
                {
                    Ok(SyslogSocket::Udp(hostport.to_owned()))
                }
                _ => Err(format!("{WHAT}, found the string {s:?}")),
            }
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
            SyslogSocket::Udp(a) => write!(f, "udp://{a}"),
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

// ---------------------------------------------------------------------------
// Reading the file.

/// A value the file gives that its key cannot take: where it is (byte offsets
/// into the file) and what is wrong, in a user's words, key first.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// None: the problem is not at one place (a default that cannot work).
    span: Option<Range<usize>>,
    message: String,
}

impl Invalid {
    /// An error at `span` of the file.
    pub fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        Invalid {
            span: Some(span),
            message: message.into(),
        }
    }
}

/// The keys of one table of the file (a section such as `[server]`, or the
/// top level), read one by one with [`Keys::read`]. [`Keys::finish`] rejects
/// any key that no `read` asked for.
pub struct Keys<'a, 'i> {
    /// `server.` for `[server]`, empty for the top level.
    prefix: String,
    /// The table's entries in the order the file gives them.
    entries: Vec<(&'a Spanned<DeString<'i>>, &'a Spanned<DeValue<'i>>)>,
    taken: Vec<bool>,
    known: Vec<&'static str>,
}

impl<'a, 'i> Keys<'a, 'i> {
    fn new(prefix: String, table: &'a DeTable<'i>) -> Self {
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        Keys {
            prefix,
            taken: vec![false; entries.len()],
            entries,
            known: Vec::new(),
        }
    }

    /// Reads `key` into `into` with `how` when the file gives it; leaves the
    /// default otherwise.
    pub fn read<T>(
        &mut self,
        key: &'static str,
        into: &mut T,
        how: impl FnOnce(&Value<'a, 'i>) -> Result<T, Invalid>,
    ) -> Result<(), Invalid> {
        self.known.push(key);
        if let Some(i) = self.entries.iter().position(|(k, _)| k.get_ref() == key) {
            self.taken[i] = true;
            let value = Value {
                key: format!("{}{key}", self.prefix),
                value: self.entries[i].1,
            };
            *into = how(&value)?;
        }
        Ok(())
    }

    /// Whether the file gives `key` in this table.
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.get_ref() == key)
    }

    /// Fails on the first key (in file order) that no [`Keys::read`] took,
    /// naming the keys this table does take.
    pub fn finish(self) -> Result<(), Invalid> {
        let Some(i) = self.taken.iter().position(|t| !t) else {
            return Ok(());
        };
        let (key, value) = self.entries[i];
        let known = self.known.join(", ");
        let is_section = self.prefix.is_empty() && value.get_ref().is_table();
        let hint = nearest(key.get_ref(), &self.known)
            .map(|near| {
                if is_section {
                    format!("; did you mean [{near}]?")
                } else {
                    format!("; did you mean {near}?")
                }
            })
            .unwrap_or_default();
        let message = if self.prefix.is_empty() {
            if value.get_ref().is_table() {
                format!(
                    "unknown section [{}]; the sections are {known}",
                    key.get_ref()
                )
            } else {
                format!(
                    "{}: unknown key outside any section; the sections are {known}",
                    key.get_ref()
                )
            }
        } else {
            let section = self.prefix.trim_end_matches('.');
            format!(
                "{}{}: unknown key; [{section}] takes {known}",
                self.prefix,
                key.get_ref()
            )
        };
        Err(Invalid::at(key.span(), message + &hint))
    }
}

/// The known name closest to `word` when one is close enough to be a typing
/// mistake (`max_line_byte`, `prot`, `sever`): at most one edit in three
/// characters, and at most three.
fn nearest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let word = word.to_ascii_lowercase();
    let most = word.chars().count().div_ceil(3).clamp(1, 3);
    known
        .iter()
        .map(|k| (edit_distance(&word, k), *k))
        .filter(|(d, _)| *d <= most)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Edits (insert, delete, replace, swap two neighbours) that turn `a` into
/// `b`: the optimal string alignment distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Rows i-2, i-1 and i of the table.
    let mut before: Vec<usize> = Vec::new();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (prev[j] + 1).min(row[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut prev, row);
    }
    prev[b.len()]
}

/// One key's value and its place in the file, read as the type the key takes.
/// Every error names the key (`server.port`) and says what it takes.
pub struct Value<'a, 'i> {
    key: String,
    value: &'a Spanned<DeValue<'i>>,
}

impl<'a, 'i> Value<'a, 'i> {
    /// The key's full name, such as `server.port`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// An error about this value: `KEY: what`.
    pub fn error(&self, what: impl fmt::Display) -> Invalid {
        Invalid::at(self.value.span(), format!("{}: {what}", self.key))
    }

    /// `KEY: expected WHAT, found …` (what the file gives, in words).
    pub fn expected(&self, what: impl fmt::Display) -> Invalid {
        self.error(format_args!("expected {what}, found {}", self.found()))
    }

    /// What the file gives, in words: `the string "x"`, `-5`, `a list`.
    fn found(&self) -> String {
        match self.value.get_ref() {
            DeValue::String(s) => format!("the string {:?}", s.as_ref()),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => n.to_string(),
                Err(_) => format!("the number {i} (too large)"),
            },
            DeValue::Float(f) => format!("the number {f}"),
            DeValue::Boolean(b) => b.to_string(),
            DeValue::Datetime(d) => format!("the date {d}"),
            DeValue::Array(a) if !a.is_empty() && a.iter().all(|v| v.get_ref().is_table()) => {
                format!("a list of tables ([[{}]])", self.key)
            }
            DeValue::Array(_) => "a list".into(),
            DeValue::Table(_) => "a table".into(),
        }
    }

    /// A whole number from `min` to `max`, as the type the setting is kept
    /// in (`u8`, `u32`, `usize`…); `what` says what it counts ("a number of
    /// seconds"), and the range is added to the message. A range wider than
    /// the type is the same error, never a value cut short.
    pub fn integer<T: TryFrom<i64>>(&self, min: i64, max: i64, what: &str) -> Result<T, Invalid> {
        let n = match self.value.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        n.filter(|n| (min..=max).contains(n))
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| self.expected(format_args!("{what} ({min}-{max})")))
    }

    /// A TCP port number.
    pub fn port(&self) -> Result<u16, Invalid> {
        self.integer(0, 65_535, "a port number")
    }

    /// A number of seconds, up to a year.
    pub fn seconds(&self) -> Result<u64, Invalid> {
        self.integer(0, 86_400 * 365, "a number of seconds")
    }

    /// `true` or `false`.
    pub fn boolean(&self) -> Result<bool, Invalid> {
        match self.value.get_ref() {
            DeValue::Boolean(b) => Ok(*b),
            _ => Err(self.expected("true or false")),
        }
    }

    /// Any string; `what` says what it should be, for the error.
    pub fn string(&self, what: &str) -> Result<&'a str, Invalid> {
        match self.value.get_ref() {
            DeValue::String(s) => Ok(s.as_ref()),
            _ => Err(self.expected(what)),
        }
    }

    /// A string turned into a `T` by `parse`, whose error (already in a
    /// user's words) follows the key. `what` is for a value that is not a
    /// string at all.
    pub fn parse_str<T>(
        &self,
        what: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, Invalid> {
        let s = self.string(what)?;
        parse(s).map_err(|why| self.error(why))
    }

    /// One of a few words.
    pub fn one_of<T: Copy>(&self, choices: &[(&str, T)]) -> Result<T, Invalid> {
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
        let what = format!("one of {}", names.join(", "));
        let s = self.string(&what)?;
        choices
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, v)| *v)
            .ok_or_else(|| self.expected(&what))
    }

    /// A list; each item is a [`Value`] under the same key. `what` describes
    /// the whole list, for a value that is not one.
    pub fn list(&self, what: &str) -> Result<Vec<Value<'a, 'i>>, Invalid> {
        match self.value.get_ref() {
            DeValue::Array(items) => Ok(items
                .iter()
                .map(|value| Value {
                    key: self.key.clone(),
                    value,
                })
                .collect()),
            _ => Err(self.expected(what)),
        }
    }

    /// A section (`[server]`), to read its keys.
    pub fn table(&self) -> Result<Keys<'a, 'i>, Invalid> {
        match self.value.get_ref() {
            DeValue::Table(t) => Ok(Keys::new(format!("{}.", self.key), t)),
            _ => Err(self.expected(format_args!("one [{}] section", self.key))),
        }
    }
}

/// Reads a whole document.
fn read_config(mut root: Keys<'_, '_>) -> Result<Config, Invalid> {
    let mut c = Config::default();
    let mut zone_given = false;
    root.read("server", &mut c.server, |v| read_server(v.table()?))?;
    root.read("time", &mut c.time, |v| {
        let keys = v.table()?;
        zone_given = keys.has("timezone");
        read_time(keys)
    })?;
    root.read("log", &mut c.log, |v| read_log(v.table()?))?;
    root.read("access", &mut c.access, |v| read_access(v.table()?))?;
    root.read("proxy", &mut c.proxy, |v| read_proxy(v.table()?))?;
    // Every listener's address, port and transport, to refuse the same
    // one twice across sections.
    let mut taken = Taken::of_jam(&c.server);
    root.read("metrics", &mut c.metrics, |v| {
        read_metrics(v.table()?, &mut taken)
    })?;
    root.read("daytime", &mut c.daytime, |v| {
        read_daytime(v.table()?, &mut taken)
    })?;
    root.read("rfc868", &mut c.rfc868, |v| {
        read_rfc868(v.table()?, &mut taken)
    })?;
    root.finish()?;
    if !zone_given {
        // The default "local", resolved strictly: a broken TZ or
        // /etc/localtime is an error, never UTC in silence.
        c.time.timezone = Zone::parse("local").map_err(|why| Invalid {
            span: None,
            message: format!("time.timezone (default \"local\"): {why}"),
        })?;
    }
    Ok(c)
}

fn read_server(mut keys: Keys<'_, '_>) -> Result<ServerConfig, Invalid> {
    let mut s = ServerConfig::default();
    keys.read("port", &mut s.port, |v| v.port())?;
    keys.read("bind", &mut s.bind, read_bind)?;
    keys.read("backlog", &mut s.backlog, |v| {
        v.integer(1, i32::MAX.into(), "a listen backlog")
    })?;
    keys.read("reuse_address", &mut s.reuse_address, |v| v.boolean())?;
    keys.read("max_connections", &mut s.max_connections, |v| {
        v.integer(1, 10_000_000, "a number of connections")
    })?;
    keys.read(
        "max_connections_per_source",
        &mut s.max_connections_per_source,
        |v| v.integer(0, 10_000_000, "a number of connections (0: no limit)"),
    )?;
    keys.read("source_prefix_v4", &mut s.source_prefix_v4, |v| {
        v.integer(0, 32, "an IPv4 prefix length")
    })?;
    keys.read("source_prefix_v6", &mut s.source_prefix_v6, |v| {
        v.integer(0, 128, "an IPv6 prefix length")
    })?;
    keys.read(
        "connection_rate_per_source",
        &mut s.connection_rate_per_source,
        |v| {
            v.integer(
                0,
                1_000_000,
                "a number of connections a second (0: no limit)",
            )
        },
    )?;
    keys.read(
        "connection_burst_per_source",
        &mut s.connection_burst_per_source,
        |v| v.integer(1, 1_000_000, "a number of connections"),
    )?;
    keys.read("max_tracked_sources", &mut s.max_tracked_sources, |v| {
        v.integer(1, 100_000_000, "a number of sources")
    })?;
    keys.read("idle_timeout", &mut s.idle_timeout, |v| v.seconds())?;
    keys.read("max_line_bytes", &mut s.max_line_bytes, |v| {
        v.integer(4, 65_536, "a number of bytes")
    })?;
    keys.read("shutdown_timeout", &mut s.shutdown_timeout, |v| v.seconds())?;
    keys.read("workers", &mut s.workers, |v| {
        v.integer(0, 1024, "a number of threads (0: one per CPU)")
    })?;
    keys.read("user", &mut s.user, |v| {
        v.parse_str("a user name such as \"nobody\", or \"\"", account_name)
    })?;
    keys.read("group", &mut s.group, |v| {
        v.parse_str("a group name such as \"nogroup\", or \"\"", account_name)
    })?;
    keys.read("sandbox", &mut s.sandbox, |v| v.boolean())?;
    keys.finish()?;
    Ok(s)
}

/// `server.user` / `server.group`: a name to look up at start, or "".
fn account_name(s: &str) -> Result<String, String> {
    if s.contains(['\0', ':', '/']) || s.chars().any(char::is_whitespace) {
        return Err(format!(
            "expected a user or group name (no spaces, ':' or '/'), found the string {s:?}"
        ));
    }
    Ok(s.to_owned())
}

fn read_access(mut keys: Keys<'_, '_>) -> Result<AccessConfig, Invalid> {
    let mut a = AccessConfig::default();
    keys.read("allow", &mut a.allow, read_prefixes)?;
    keys.read("deny", &mut a.deny, read_prefixes)?;
    keys.finish()?;
    Ok(a)
}

fn read_proxy(mut keys: Keys<'_, '_>) -> Result<ProxyConfig, Invalid> {
    let mut p = ProxyConfig::default();
    keys.read("trusted", &mut p.trusted, read_prefixes)?;
    // Not 0: a balancer that never sends its header would hold its
    // connection (and one of max_connections) for ever.
    keys.read("header_timeout", &mut p.header_timeout, |v| {
        v.integer(1, 3600, "a number of seconds")
    })?;
    keys.finish()?;
    Ok(p)
}

/// `allow` / `deny` / `trusted`: addresses or prefixes; each error says
/// what was meant.
fn read_prefixes(v: &Value<'_, '_>) -> Result<Vec<Prefix>, Invalid> {
    const WHAT: &str = "an address or prefix such as \"192.0.2.7\" or \"10.0.0.0/8\"";
    let items =
        v.list("a list of addresses or prefixes, such as [\"10.0.0.0/8\", \"2001:db8::/32\"]")?;
    items
        .iter()
        .map(|item| item.parse_str(WHAT, |s| s.parse::<Prefix>().map_err(|e| e.to_string())))
        .collect()
}

/// `bind`: a list of IP addresses that can all be listened on at once.
fn read_bind(v: &Value<'_, '_>) -> Result<Vec<IpAddr>, Invalid> {
    let items = v.list("a list of IP addresses, such as [\"127.0.0.1\", \"::1\"]")?;
    let mut list = Vec::with_capacity(items.len());
    for item in &items {
        list.push(item.parse_str(
            "an IP address such as \"127.0.0.1\" or \"::1\"",
            parse_address,
        )?);
    }
    check_bind(&list).map_err(|(i, why)| match i {
        Some(i) => items[i].error(why),
        None => v.error(why),
    })?;
    Ok(list)
}

/// One `bind` address; a host name is refused with a reason, as jamd binds
/// before it could trust any resolver.
pub fn parse_address(s: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(ip);
    }
    let host_like = s.chars().any(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if host_like {
        Err(format!(
            "{s:?} is a host name; host names are not allowed here, give an IP address such as \"127.0.0.1\" or \"::1\""
        ))
    } else {
        Err(format!(
            "expected an IP address such as \"127.0.0.1\" or \"::1\", found the string {s:?}"
        ))
    }
}

/// Whether jamd can listen on all these addresses at once, on one port.
/// The error names the offending entry (by index) when there is one.
pub fn check_bind(list: &[IpAddr]) -> Result<(), (Option<usize>, String)> {
    if list.is_empty() {
        return Err((
            None,
            "the list is empty, so jamd would listen on no address; give at least one, such as \"127.0.0.1\"".into(),
        ));
    }
    if list.len() > MAX_LISTENERS {
        return Err((
            Some(MAX_LISTENERS),
            format!(
                "{} addresses; jamd listens on at most {MAX_LISTENERS}",
                list.len()
            ),
        ));
    }
    for (i, ip) in list.iter().enumerate() {
        if list[..i].contains(ip) {
            return Err((Some(i), format!("{ip} is listed twice")));
        }
        // A wildcard already holds the port for every address of its family:
        // binding both on one port fails with "Address already in use".
        let same_family = |other: &IpAddr| other.is_ipv4() == ip.is_ipv4();
        if let Some(other) = list[..i]
            .iter()
            .find(|o| same_family(o) && (o.is_unspecified() || ip.is_unspecified()))
        {
            let (any, one) = if other.is_unspecified() {
                (other, ip)
            } else {
                (ip, other)
            };
            return Err((
                Some(i),
                format!(
                    "{any} and {one} cannot both listen on one port ({any} already covers {one}); keep one of them"
                ),
            ));
        }
    }
    Ok(())
}

fn read_time(mut keys: Keys<'_, '_>) -> Result<TimeConfig, Invalid> {
    let mut t = TimeConfig::default();
    keys.read("format", &mut t.format, |v| {
        v.parse_str("a strftime format such as \"%H:%M:%S\"", TimeFormat::parse)
    })?;
    keys.read("timezone", &mut t.timezone, |v| {
        v.parse_str(
            "\"local\", \"UTC\", an offset like \"+07:00\" or a name like \"Asia/Jakarta\"",
            Zone::parse,
        )
    })?;
    keys.finish()?;
    Ok(t)
}

fn read_log(mut keys: Keys<'_, '_>) -> Result<LogConfig, Invalid> {
    use Facility::*;
    let mut l = LogConfig::default();
    keys.read("target", &mut l.target, |v| {
        v.one_of(&[
            ("syslog", LogTarget::Syslog),
            ("stderr", LogTarget::Stderr),
            ("both", LogTarget::Both),
        ])
    })?;
    keys.read("facility", &mut l.facility, |v| {
        v.one_of(&[
            ("daemon", Daemon),
            ("user", User),
            ("local0", Local0),
            ("local1", Local1),
            ("local2", Local2),
            ("local3", Local3),
            ("local4", Local4),
            ("local5", Local5),
            ("local6", Local6),
            ("local7", Local7),
        ])
    })?;
    keys.read("syslog_socket", &mut l.syslog_socket, |v| {
        v.parse_str(
            "an absolute socket path (\"/dev/log\") or udp://HOST:PORT",
            SyslogSocket::parse,
        )
    })?;
    keys.read("level", &mut l.level, |v| {
        let level = v.one_of(&[
            ("error", Level::Error),
            ("warn", Level::Warn),
            ("info", Level::Info),
            ("debug", Level::Debug),
        ]);
        match level {
            // syslog's own name for the level (LOG_WARNING, `logger -p
            // daemon.warning`) means the same.
            Err(_) if v.value.get_ref().as_str() == Some("warning") => Ok(Level::Warn),
            level => level,
        }
    })?;
    keys.read("connections", &mut l.connections, |v| v.boolean())?;
    keys.read("health_checks", &mut l.health_checks, |v| v.boolean())?;
    keys.finish()?;
    Ok(l)
}

// ---------------------------------------------------------------------------
// Loading.

/// A configuration that could not be loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read (permissions, not a regular file, a
    /// missing file given with `-c`).
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line and column of the offending text, when there is one.
        place: Option<(usize, usize)>,
        /// What is wrong, and what was expected.
        message: String,
    },
    /// The command line asks for something that cannot work.
    CommandLine(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, error } => {
                write!(
                    f,
                    "{}: cannot read the configuration: {error}",
                    path.display()
                )
            }
            ConfigError::Invalid {
                path,
                place: Some((line, column)),
                message,
            } => write!(f, "{}:{line}:{column}: {message}", path.display()),
            ConfigError::Invalid {
                path,
                place: None,
                message,
            } => write!(f, "{}: {message}", path.display()),
            ConfigError::CommandLine(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The configuration jamd runs with.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The settings, command line applied.
    pub config: Config,
    /// The default file was absent, so these are the built-in defaults.
    pub missing_default: bool,
}

/// Reads the configuration jamd runs with: the file at `path` or, when it
/// is the default path (`explicit` false) and there is no file there, the
/// built-in defaults; then applies the command line and checks the result.
/// Only a file that does not exist means "use the defaults": an unreadable
/// directory, a FIFO or a device is an error.
pub fn load(path: &Path, explicit: bool, overrides: &Overrides) -> Result<Loaded, ConfigError> {
    let (mut config, missing_default) = match read_regular_file(path) {
        Ok(text) => (Config::parse_bytes(&text, path)?, false),
        Err(error) if !explicit && error.kind() == std::io::ErrorKind::NotFound => {
            (Config::parse("", path)?, true)
        }
        Err(error) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                error,
            })
        }
    };
    overrides.apply(&mut config)?;
    Ok(Loaded {
        config,
        missing_default,
    })
}

/// The file's bytes, refusing anything but a regular file without blocking
/// on it: a FIFO would otherwise hang jamd (also on reload, in the control
/// thread), and a device could be read forever. The configuration and the
/// zone files are read this way.
pub(crate) fn read_regular_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        return Err(std::io::Error::other(format!(
            "it is {what}, not a regular file"
        )));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

impl Config {
    /// Every listener the configuration names: JAM on `server.bind` ×
    /// `server.port`, then `[daytime]`'s and `[rfc868]`'s.
    pub fn listeners(&self) -> Vec<Listener> {
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
    pub fn daytime_clock(&self) -> Arc<Clock> {
        Arc::new(Clock {
            format: self.daytime.format.clone(),
            zone: self.time.timezone.clone(),
        })
    }

    /// Reads and validates the file at `path` (no command line, no default
    /// for a missing file).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = read_regular_file(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Config::parse_bytes(&bytes, path)
    }

    /// Validates the bytes of a file, which must be UTF-8 text.
    fn parse_bytes(bytes: &[u8], path: &Path) -> Result<Config, ConfigError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Config::parse(text, path),
            Err(e) => {
                let valid = &bytes[..e.valid_up_to()];
                let text = std::str::from_utf8(valid).unwrap_or_default();
                Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    place: Some(line_column(text, text.len())),
                    message: format!(
                        "the file is not UTF-8 text (byte 0x{:02X}); save it as UTF-8",
                        bytes[e.valid_up_to()]
                    ),
                })
            }
        }
    }

    /// Validates configuration text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |span: Option<Range<usize>>, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            place: span.map(|s| line_column(text, s.start)),
            message,
        };
        let doc = DeTable::parse(text).map_err(|e| {
            let span = e.span();
            invalid(span.clone(), syntax_message(text, e.message(), span))
        })?;
        read_config(Keys::new(String::new(), doc.get_ref())).map_err(|e| invalid(e.span, e.message))
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
        if s.max_connections_per_source > s.max_connections {
            w.push(format!(
                "server.max_connections_per_source ({}) is above server.max_connections ({}): it has no effect",
                s.max_connections_per_source, s.max_connections
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

/// A TOML syntax error in words, naming the key for a duplicate.
fn syntax_message(text: &str, message: &str, span: Option<Range<usize>>) -> String {
    let message = message
        .trim()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let Some(span) = span.filter(|_| message.starts_with("duplicate key")) else {
        return message;
    };
    let key = text
        .get(span.clone())
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    if text[line_start..].trim_start().starts_with('[') {
        return format!("the section [{key}] is given twice; give each section once");
    }
    // The section the key is in: the last header above it.
    let section = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .and_then(|l| l.trim_start_matches('[').split(']').next())
        .map(|s| format!("{}.", s.trim()))
        .unwrap_or_default();
    format!("{section}{key} is given twice; give each key once")
}

/// Settings given on the command line; they win over the file, also on reload.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `-p`.
    pub port: Option<u16>,
    /// `-b` (repeatable).
    pub bind: Vec<IpAddr>,
    /// `--log`.
    pub log_target: Option<LogTarget>,
}

impl Overrides {
    /// Applies the overrides to a configuration read from a file; a `-b`
    /// list that cannot work is an error.
    pub fn apply(&self, config: &mut Config) -> Result<(), ConfigError> {
        if let Some(port) = self.port {
            config.server.port = port;
        }
        if !self.bind.is_empty() {
            check_bind(&self.bind)
                .map_err(|(_, why)| ConfigError::CommandLine(format!("-b/--bind: {why}")))?;
            config.server.bind = self.bind.clone();
        }
        if let Some(target) = self.log_target {
            config.log.target = target;
        }
        if self.port.is_some() || !self.bind.is_empty() {
            // -p and -b may now name what a [daytime] or [rfc868] listener has.
            let port = config.server.port;
            if let Some(l) = config.listeners().iter().find(|l| {
                l.protocol != Protocol::Jam
                    && l.transport == Transport::Tcp
                    && l.addr.port() != 0
                    && l.addr.port() == port
                    && config.server.bind.iter().any(|ip| {
                        ip.is_ipv4() == l.addr.is_ipv4()
                            && (*ip == l.addr.ip()
                                || ip.is_unspecified()
                                || l.addr.ip().is_unspecified())
                    })
            }) {
                return Err(ConfigError::CommandLine(format!(
                    "-p/-b: port {} is taken by the {} listener {} (tcp) of the configuration",
                    port,
                    l.protocol,
                    show_addr(&l.addr)
                )));
            }
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("jamd.toml")).map_err(|e| e.to_string())
    }

    /// `Value::integer` checks the range and the setting's type together:
    /// a range wider than the type is refused with the same message, never
    /// cut short to fit.
    #[test]
    fn an_integer_is_read_as_the_settings_type() {
        let read = |text: &str, max: i64| -> Result<Option<u8>, String> {
            let doc = DeTable::parse(text).unwrap();
            let mut keys = Keys::new("t.".into(), doc.get_ref());
            let mut n = None;
            keys.read("n", &mut n, |v| v.integer(0, max, "a number").map(Some))
                .map_err(|e| e.message)?;
            Ok(n)
        };
        assert_eq!(read("n = 255", 255), Ok(Some(255)));
        assert_eq!(read("n = 0x10", 255), Ok(Some(16)));
        let refused = "t.n: expected a number (0-300), found 256";
        assert_eq!(read("n = 256", 300).unwrap_err(), refused);
        assert_eq!(
            read("n = 256", 255).unwrap_err(),
            "t.n: expected a number (0-255), found 256"
        );
        assert_eq!(
            read("n = -1", 255).unwrap_err(),
            "t.n: expected a number (0-255), found -1"
        );
    }

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
    fn every_key_is_read() {
        let c = parse(
            r#"
[server]
port = 4500
bind = ["127.0.0.1", "::1"]
backlog = 64
reuse_address = false
max_connections = 10
max_connections_per_source = 2
idle_timeout = 7
max_line_bytes = 100
shutdown_timeout = 3
workers = 2
[time]
format = "%H:%M:%S%.3f"
timezone = "+07:00"
[log]
target = "both"
facility = "local3"
syslog_socket = "udp://127.0.0.1:514"
level = "debug"
connections = false
[metrics]
listen = "[::1]:9645"
"#,
        )
        .unwrap();
        assert_eq!(c.server.port, 4500);
        assert_eq!(c.server.bind.len(), 2);
        assert_eq!(c.server.backlog, 64);
        assert!(!c.server.reuse_address);
        assert_eq!(c.server.max_connections, 10);
        assert_eq!(c.server.max_connections_per_source, 2);
        assert_eq!(c.server.idle_timeout, 7);
        assert_eq!(c.server.max_line_bytes, 100);
        assert_eq!(c.server.shutdown_timeout, 3);
        assert_eq!(c.server.workers, 2);
        assert_eq!(c.time.timezone.name(), "+07:00");
        assert_eq!(c.log.target, LogTarget::Both);
        assert_eq!(c.log.facility, Facility::Local3);
        assert_eq!(
            c.log.syslog_socket,
            SyslogSocket::Udp("127.0.0.1:514".into())
        );
        assert_eq!(c.log.level, Level::Debug);
        assert!(!c.log.connections);
        assert_eq!(c.metrics.listen, Some("[::1]:9645".parse().unwrap()));
    }

    #[test]
    fn metrics_listen_is_off_or_an_address_with_a_port() {
        assert_eq!(Config::default().metrics.listen, None);
        let c = parse("[metrics]\nlisten = \"\"\n").unwrap();
        assert_eq!(c.metrics.listen, None);
        let c = parse("[metrics]\nlisten = \"127.0.0.1:9645\"\n").unwrap();
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9645".parse().unwrap()));
        for bad in [
            "localhost:9645",
            "127.0.0.1",
            "9645",
            ":",
            ":x",
            ":70000",
            "::1:9645",
        ] {
            let e = parse(&format!("[metrics]\nlisten = \"{bad}\"\n")).unwrap_err();
            assert!(e.starts_with("jamd.toml:2:10: metrics.listen: expected an address and port such as \"127.0.0.1:9645\""), "{e}");
            assert!(e.contains(&format!("found the string {bad:?}")), "{e}");
        }
        let c = parse("[metrics]\nlisten = \":9645\"\n").unwrap();
        assert_eq!(
            c.metrics.listen,
            Some("[::]:9645".parse().unwrap()),
            "every address"
        );
        // -t prints it so that the output is a valid file again.
        let c = parse("[metrics]\nlisten = \"[::1]:9645\"\n").unwrap();
        let again = parse(&c.to_toml()).unwrap();
        assert_eq!(again, c);
        assert!(Config::default()
            .to_toml()
            .contains("[metrics]\nlisten = \"\"\n"));
    }

    #[test]
    fn daytime_and_rfc868_listeners_are_read() {
        let c = parse(
            "[daytime]\nlisten = [\"0.0.0.0:13\", \"[::]:13\"]\nlisten_udp = [\"127.0.0.1:13\"]\nformat = \"%T\"\n\
             [rfc868]\nlisten = [\"0.0.0.0:37\"]\nlisten_udp = [\"[::1]:37\"]\n",
        )
        .unwrap();
        assert_eq!(c.daytime.format.as_str(), "%T");
        let shown: Vec<String> = c.listeners().iter().map(|l| l.to_string()).collect();
        assert_eq!(
            shown,
            [
                "jam on 0.0.0.0:45000 (tcp)",
                "jam on [::]:45000 (tcp)",
                "daytime on 0.0.0.0:13 (tcp)",
                "daytime on [::]:13 (tcp)",
                "daytime on 127.0.0.1:13 (udp)",
                "rfc868 on 0.0.0.0:37 (tcp)",
                "rfc868 on [::1]:37 (udp)",
            ]
        );
        // -t prints them so that the output is a valid file again.
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        let d = Config::default();
        assert!(d.daytime.listen.is_empty() && d.rfc868.listen_udp.is_empty());
        assert_eq!(d.daytime.format.as_str(), "%a %b %e %H:%M:%S %Y");
    }

    #[test]
    fn a_listener_entry_must_be_addr_port() {
        for bad in ["localhost:13", "0.0.0.0", "13", "::1:13", "[::1]"] {
            let e = parse(&format!("[rfc868]\nlisten_udp = [\"{bad}\"]\n")).unwrap_err();
            assert!(
                e.starts_with("jamd.toml:2:15: rfc868.listen_udp: expected \"ADDR:PORT\""),
                "{e}"
            );
            assert!(e.contains(&format!("found the string {bad:?}")), "{e}");
        }
        let e = parse("[daytime]\nlisten = \"0.0.0.0:13\"\n").unwrap_err();
        assert!(e.contains("daytime.listen: expected a list"), "{e}");
    }

    #[test]
    fn the_same_address_port_and_transport_twice_is_an_error_naming_the_key() {
        let e = parse("[daytime]\nlisten = [\"127.0.0.1:13\", \"127.0.0.1:13\"]\n").unwrap_err();
        assert_eq!(e, "jamd.toml:2:27: daytime.listen: 127.0.0.1:13 (tcp) is listed twice: each address, port and transport can have one listener");
        let e = parse(
            "[daytime]\nlisten_udp = [\"127.0.0.1:37\"]\n[rfc868]\nlisten_udp = [\"127.0.0.1:37\"]\n",
        )
        .unwrap_err();
        assert!(e.starts_with("jamd.toml:4:15: rfc868.listen_udp: 127.0.0.1:37 (udp) is taken by daytime.listen_udp already"), "{e}");
        let e = parse("[server]\nport = 13\n[daytime]\nlisten = [\"[::]:13\"]\n").unwrap_err();
        assert!(
            e.contains(
                "daytime.listen: [::]:13 (tcp) is taken by server.bind and server.port already"
            ),
            "{e}"
        );
        let e = parse(
            "[metrics]\nlisten = \"127.0.0.1:9645\"\n[rfc868]\nlisten = [\"0.0.0.0:9645\"]\n",
        )
        .unwrap_err();
        assert!(
            e.contains(
                "rfc868.listen: 0.0.0.0:9645 (tcp) clashes with 127.0.0.1:9645 of metrics.listen"
            ),
            "{e}"
        );
        let e =
            parse("[server]\nport = 9645\n[metrics]\nlisten = \"127.0.0.1:9645\"\n").unwrap_err();
        assert!(e.contains("metrics.listen: 127.0.0.1:9645 (tcp) clashes with 0.0.0.0:9645 of server.bind and server.port"), "{e}");
        // Another transport, another family, or port 0 (the kernel picks) is no clash.
        assert!(parse("[daytime]\nlisten = [\"127.0.0.1:13\", \"[::]:13\"]\nlisten_udp = [\"127.0.0.1:13\"]\n").is_ok());
        assert!(parse("[server]\nport = 0\nbind = [\"127.0.0.1\"]\n[daytime]\nlisten = [\"127.0.0.1:0\", \"127.0.0.1:0\"]\n").is_ok());
    }

    #[test]
    fn a_port_from_the_command_line_cannot_take_a_daytime_listeners() {
        let mut c = parse("[daytime]\nlisten = [\"127.0.0.1:1313\"]\n").unwrap();
        let o = Overrides {
            port: Some(1313),
            ..Overrides::default()
        };
        let e = o.apply(&mut c).unwrap_err().to_string();
        assert_eq!(e, "-p/-b: port 1313 is taken by the daytime listener 127.0.0.1:1313 (tcp) of the configuration");
        let o = Overrides {
            port: Some(1314),
            ..Overrides::default()
        };
        assert!(o.apply(&mut c).is_ok());
    }

    #[test]
    fn access_and_source_keys_are_read() {
        let c = parse(
            r#"
[server]
source_prefix_v4 = 24
source_prefix_v6 = 48
connection_rate_per_source = 5
connection_burst_per_source = 10
max_tracked_sources = 256
[access]
allow = ["10.0.0.0/8", "::ffff:192.0.2.7"]
deny = ["10.1.2.0/24"]
"#,
        )
        .unwrap();
        assert_eq!(c.server.source_prefix_v4, 24);
        assert_eq!(c.server.source_prefix_v6, 48);
        assert_eq!(c.server.connection_rate_per_source, 5);
        assert_eq!(c.server.connection_burst_per_source, 10);
        assert_eq!(c.server.max_tracked_sources, 256);
        let list = c.access.list();
        assert!(list.decide("10.9.9.9".parse().unwrap()).is_allowed());
        assert!(!list.decide("10.1.2.9".parse().unwrap()).is_allowed());
        assert!(list.decide("192.0.2.7".parse().unwrap()).is_allowed());
        let shown = c.to_toml();
        assert!(
            shown.contains(
                "[access]\nallow = [\"10.0.0.0/8\", \"192.0.2.7\"]\ndeny = [\"10.1.2.0/24\"]"
            ),
            "{shown}"
        );
        assert!(shown.contains("max_tracked_sources = 256"), "{shown}");
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
    fn proxy_keys_are_read() {
        let c =
            parse("[proxy]\ntrusted = [\"10.0.0.0/8\", \"::1\"]\nheader_timeout = 5\n").unwrap();
        assert_eq!(c.proxy.header_timeout, 5);
        assert!(c.proxy.trusts("10.9.8.7".parse().unwrap()));
        assert!(c.proxy.trusts("::ffff:10.0.0.1".parse().unwrap()));
        assert!(c.proxy.trusts("::1".parse().unwrap()));
        assert!(!c.proxy.trusts("192.0.2.1".parse().unwrap()));
        assert!(!Config::default().proxy.trusts("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn an_unknown_key_suggests_the_nearest_known_one() {
        let cases = [
            (
                "[server]\nmax_line_byte = 9\n",
                Some("did you mean max_line_bytes?"),
            ),
            ("[server]\nprot = 9\n", Some("did you mean port?")),
            ("[sever]\n", Some("did you mean [server]?")),
            ("[proxy]\ntrust = []\n", Some("did you mean trusted?")),
            ("[log]\nLevel = \"info\"\n", Some("did you mean level?")),
            ("[metrics]\nport = 9645\n", None),
            ("[server]\ncolour = 1\n", None),
        ];
        for (file, hint) in cases {
            let e = parse(file).expect_err(file);
            match hint {
                Some(hint) => assert!(e.ends_with(&format!("; {hint}")), "{file:?}: {e}"),
                None => assert!(!e.contains("did you mean"), "{file:?}: {e}"),
            }
        }
        assert_eq!(edit_distance("prot", "port"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn log_level_warning_is_warn() {
        assert_eq!(
            parse("[log]\nlevel = \"warning\"\n").unwrap().log.level,
            Level::Warn
        );
        let e = parse("[log]\nlevel = \"trace\"\n").unwrap_err();
        assert!(e.contains("expected one of \"error\", \"warn\""), "{e}");
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key_and_place() {
        // (file, how its error starts: the list of what is known goes on)
        let cases = [
            (
                "[server]\nport = 1\nprot = 2\n",
                "jamd.toml:3:1: server.prot: unknown key; [server] takes port, bind",
            ),
            (
                "[sever]\n",
                "jamd.toml:1:2: unknown section [sever]; the sections are server, time, log",
            ),
            (
                "[metrics]\nport = 9645\n",
                "jamd.toml:2:1: metrics.port: unknown key; [metrics] takes listen",
            ),
            (
                "[access]\nallowed = []\n",
                "jamd.toml:2:1: access.allowed: unknown key; [access] takes allow, deny",
            ),
            (
                "[proxy]\ntrust = []\n",
                "jamd.toml:2:1: proxy.trust: unknown key; [proxy] takes trusted, header_timeout",
            ),
        ];
        for (file, start) in cases {
            let e = parse(file).expect_err(file);
            assert!(e.starts_with(start), "{file:?}: {e}");
        }
    }

    #[test]
    fn bad_values_are_errors_that_say_where_and_what_was_expected() {
        // (file, its whole error)
        let cases = [
            (
                "[metrics]\nlisten = 9645\n",
                "jamd.toml:2:10: metrics.listen: expected an address and port such as \"127.0.0.1:9645\", or \"\" for off, found 9645",
            ),
            (
                "[access]\ndeny = [\"192.0.2.7\", \"10.1.2.3/8\"]\n",
                "jamd.toml:2:22: access.deny: \"10.1.2.3/8\" has bits set past its length: did you mean 10.0.0.0/8?",
            ),
            (
                "[access]\nallow = [\"gateway.example\"]\n",
                "jamd.toml:2:10: access.allow: \"gateway.example\" is not an IP address or prefix: write an address like 192.0.2.7 or 2001:db8::1, or a prefix like 10.0.0.0/8 (host names are not resolved)",
            ),
            (
                "[access]\nallow = [\"::/200\"]\n",
                "jamd.toml:2:10: access.allow: \"::/200\": the prefix length must be 0-128 for an IPv6 address",
            ),
            (
                "[access]\nallow = \"10.0.0.0/8\"\n",
                "jamd.toml:2:9: access.allow: expected a list of addresses or prefixes, such as [\"10.0.0.0/8\", \"2001:db8::/32\"], found the string \"10.0.0.0/8\"",
            ),
            (
                "[server]\nsource_prefix_v4 = 33\n",
                "jamd.toml:2:20: server.source_prefix_v4: expected an IPv4 prefix length (0-32), found 33",
            ),
            (
                "[server]\nconnection_burst_per_source = 0\n",
                "jamd.toml:2:31: server.connection_burst_per_source: expected a number of connections (1-1000000), found 0",
            ),
            (
                "[proxy]\ntrusted = [\"10.1.2.3/8\"]\n",
                "jamd.toml:2:12: proxy.trusted: \"10.1.2.3/8\" has bits set past its length: did you mean 10.0.0.0/8?",
            ),
            (
                "[proxy]\nheader_timeout = 0\n",
                "jamd.toml:2:18: proxy.header_timeout: expected a number of seconds (1-3600), found 0",
            ),
            (
                "[server]\nport = \"45000\"\n",
                "jamd.toml:2:8: server.port: expected a port number (0-65535), found the string \"45000\"",
            ),
            (
                "[server]\nreuse_address = 1\n",
                "jamd.toml:2:17: server.reuse_address: expected true or false, found 1",
            ),
            (
                "[server]\nport = 70000\n",
                "jamd.toml:2:8: server.port: expected a port number (0-65535), found 70000",
            ),
            (
                "[server]\nport = -1\n",
                "jamd.toml:2:8: server.port: expected a port number (0-65535), found -1",
            ),
            (
                "[server]\nmax_line_bytes = 0\n",
                "jamd.toml:2:18: server.max_line_bytes: expected a number of bytes (4-65536), found 0",
            ),
            (
                "[server]\nmax_connections = 0\n",
                "jamd.toml:2:19: server.max_connections: expected a number of connections (1-10000000), found 0",
            ),
            (
                "[server]\nbacklog = 0\n",
                "jamd.toml:2:11: server.backlog: expected a listen backlog (1-2147483647), found 0",
            ),
            (
                "[server]\nidle_timeout = -5\n",
                "jamd.toml:2:16: server.idle_timeout: expected a number of seconds (0-31536000), found -5",
            ),
            (
                "[server]\nbind = [\"127.0.0.1\", \"localhost\"]\n",
                "jamd.toml:2:22: server.bind: \"localhost\" is a host name; host names are not allowed here, give an IP address such as \"127.0.0.1\" or \"::1\"",
            ),
            (
                "[time]\nformat = \"%H:%M:%\"\n",
                "jamd.toml:2:10: time.format: invalid strftime format \"%H:%M:%\"",
            ),
            (
                "[time]\ntimezone = \"Nowhere/Atlantis\"\n",
                "jamd.toml:2:12: time.timezone: unknown time zone \"Nowhere/Atlantis\"; expected \"local\", \"UTC\", an offset like \"+07:00\" or a name like \"Asia/Jakarta\"",
            ),
            (
                "[log]\ntarget = \"file\"\n",
                "jamd.toml:2:10: log.target: expected one of \"syslog\", \"stderr\", \"both\", found the string \"file\"",
            ),
            (
                "[log]\nfacility = \"kern\"\n",
                "jamd.toml:2:12: log.facility: expected one of \"daemon\", \"user\", \"local0\", \"local1\", \"local2\", \"local3\", \"local4\", \"local5\", \"local6\", \"local7\", found the string \"kern\"",
            ),
            (
                "[log]\nlevel = \"trace\"\n",
                "jamd.toml:2:9: log.level: expected one of \"error\", \"warn\", \"info\", \"debug\", found the string \"trace\"",
            ),
            (
                "[log]\nsyslog_socket = \"dev/log\"\n",
                "jamd.toml:2:17: log.syslog_socket: expected an absolute socket path (\"/dev/log\") or udp://HOST:PORT, found the string \"dev/log\"",
            ),
            (
                "[log]\nsyslog_socket = \"udp://host\"\n",
                "jamd.toml:2:17: log.syslog_socket: expected an absolute socket path (\"/dev/log\") or udp://HOST:PORT, found the string \"udp://host\"",
            ),
        ];
        for (file, error) in cases {
            assert_eq!(parse(file).expect_err(file), error, "{file:?}");
        }
    }

    #[test]
    fn syntax_errors_have_a_place() {
        let e = parse("[server]\nport = = 1\n").unwrap_err();
        assert!(e.starts_with("jamd.toml:2:"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn the_effective_settings_round_trip_through_toml() {
        let c = parse("[server]\nport = 4501\n[time]\ntimezone = \"UTC\"\n").unwrap();
        let again = parse(&c.to_toml()).unwrap();
        assert_eq!(c, again);
        assert!(c.to_toml().contains("port = 4501"));
    }

    #[test]
    fn overrides_win_over_the_file() {
        let mut c = parse("[server]\nport = 4501\n").unwrap();
        Overrides {
            port: Some(4600),
            bind: vec!["127.0.0.1".parse().unwrap()],
            log_target: Some(LogTarget::Stderr),
        }
        .apply(&mut c)
        .unwrap();
        assert_eq!(c.server.port, 4600);
        assert_eq!(c.server.bind, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.log.target, LogTarget::Stderr);
    }

    #[test]
    fn a_missing_file_is_a_read_error() {
        let e = Config::load(Path::new("/nonexistent/jamd.toml")).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e.to_string().starts_with("/nonexistent/jamd.toml: "));
    }

    #[test]
    fn the_shipped_config_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/jamd.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c, Config::default());
    }
}
