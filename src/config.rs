//! The configuration file: its TOML schema, defaults and validation.
//!
//! Every value is checked while it is read, so a loaded [`Config`] cannot hold
//! an invalid setting: a bad time format or zone, an address that is not an
//! address, a limit out of range. Errors name the file, the line and the
//! column: `FILE:LINE:COLUMN: what is wrong`.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::{Clock, TimeFormat, Zone};

/// Where jamd looks for its configuration when `-c` is not given.
pub const DEFAULT_PATH: &str = "/etc/jamd/jamd.toml";

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`: sockets and limits.
    pub server: ServerConfig,
    /// `[time]`: how replies show the time.
    pub time: TimeConfig,
    /// `[log]`: where log lines go.
    pub log: LogConfig,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// TCP port (0: the kernel picks one; the log says which).
    pub port: u16,
    /// One listening socket per address.
    pub bind: Vec<IpAddr>,
    /// listen(2) backlog.
    #[serde(deserialize_with = "backlog")]
    pub backlog: u32,
    /// SO_REUSEADDR.
    pub reuse_address: bool,
    /// Clients served at once.
    #[serde(deserialize_with = "at_least_one")]
    pub max_connections: usize,
    /// Clients from one IP address at once; 0 means no limit.
    pub max_connections_per_source: usize,
    /// Seconds without a complete request before closing; 0 disables.
    #[serde(deserialize_with = "seconds")]
    pub idle_timeout: u64,
    /// Longest request line accepted, terminator not counted.
    #[serde(deserialize_with = "line_bytes")]
    pub max_line_bytes: usize,
    /// Seconds SIGTERM waits for open connections.
    #[serde(deserialize_with = "seconds")]
    pub shutdown_timeout: u64,
    /// Event-loop threads; 0 means one per CPU. One by default: see
    /// BENCHMARKS.md, "Workers".
    #[serde(deserialize_with = "workers")]
    pub workers: usize,
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
            idle_timeout: 30,
            max_line_bytes: 256,
            shutdown_timeout: 5,
            workers: 1,
        }
    }
}

impl ServerConfig {
    /// The number of worker threads to run.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// `[time]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeConfig {
    /// strftime format.
    pub format: TimeFormat,
    /// Time zone.
    pub timezone: Zone,
}

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig {
            format: TimeFormat::parse("%H:%M:%S").expect("the default format is valid"),
            // "local" only fails on a broken /etc/localtime or TZ; then UTC.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
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
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            target: LogTarget::Syslog,
            facility: Facility::Daemon,
            syslog_socket: SyslogSocket::Unix("/dev/log".into()),
            level: Level::Info,
            connections: true,
        }
    }
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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
        if let Some(hostport) = s.strip_prefix("udp://") {
            match hostport.rsplit_once(':') {
                Some((host, port))
                    if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) =>
                {
                    Ok(SyslogSocket::Udp(hostport.to_owned()))
                }
                _ => Err(format!(
                    "invalid syslog address {s:?} (expected udp://HOST:PORT)"
                )),
            }
        } else if s.starts_with('/') {
            Ok(SyslogSocket::Unix(PathBuf::from(s)))
        } else {
            Err(format!(
                "invalid syslog_socket {s:?} (expected an absolute socket path or udp://HOST:PORT)"
            ))
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

/// Implements Serialize/Deserialize as a string for a type parsed from one.
macro_rules! string_serde {
    ($ty:ty, $parse:expr, $show:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let show: fn(&$ty) -> String = $show;
                s.serialize_str(&show(self))
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                let parse: fn(&str) -> Result<$ty, String> = $parse;
                parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_serde!(TimeFormat, TimeFormat::parse, |f| f.as_str().to_owned());
string_serde!(Zone, Zone::parse, |z| z.name().to_owned());
string_serde!(SyslogSocket, SyslogSocket::parse, |s| s.to_string());

fn ranged<'de, D: Deserializer<'de>>(
    d: D,
    min: u64,
    max: u64,
    what: &str,
) -> Result<u64, D::Error> {
    let v = i64::deserialize(d)?;
    if v < min as i64 || v as u64 > max {
        return Err(serde::de::Error::custom(format!(
            "{what} must be between {min} and {max}, not {v}"
        )));
    }
    Ok(v as u64)
}

fn backlog<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, 1, i32::MAX as u64, "backlog").map(|v| v as u32)
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    ranged(d, 1, 10_000_000, "max_connections").map(|v| v as usize)
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ranged(d, 0, 86_400 * 365, "a number of seconds")
}

fn line_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    ranged(d, 4, 65_536, "max_line_bytes").map(|v| v as usize)
}

fn workers<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    ranged(d, 0, 1024, "workers").map(|v| v as usize)
}

/// A configuration that could not be loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read (missing, permissions, not text).
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
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, and what was expected.
        message: String,
    },
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
                line,
                column,
                message,
            } => write!(f, "{}:{line}:{column}: {message}", path.display()),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Config::parse(&text, path)
    }

    /// Validates configuration text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or((1, 1));
            let message = e
                .message()
                .trim()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        })
    }

    /// The effective settings as TOML, as `jamd -t` prints them.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot show the configuration: {e}\n"))
    }

    /// Legal but odd settings worth a warning.
    pub fn warnings(&self) -> Vec<String> {
        let s = &self.server;
        let mut w = Vec::new();
        if s.max_connections_per_source > s.max_connections {
            w.push(format!(
                "max_connections_per_source ({}) is above max_connections ({}): it has no effect",
                s.max_connections_per_source, s.max_connections
            ));
        }
        if s.bind.is_empty() {
            w.push("bind is empty: jamd will not listen on any address".into());
        }
        w
    }
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
    /// Applies the overrides to a configuration read from a file.
    pub fn apply(&self, config: &mut Config) {
        if let Some(port) = self.port {
            config.server.port = port;
        }
        if !self.bind.is_empty() {
            config.server.bind = self.bind.clone();
        }
        if let Some(target) = self.log_target {
            config.log.target = target;
        }
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
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key_and_place() {
        let e = parse("[server]\nport = 1\nprot = 2\n").unwrap_err();
        assert!(e.starts_with("jamd.toml:3:1: "), "{e}");
        assert!(e.contains("unknown field `prot`"), "{e}");
        let e = parse("[sever]\n").unwrap_err();
        assert!(e.contains("unknown field `sever`"), "{e}");
    }

    #[test]
    fn wrong_types_say_what_was_expected() {
        let e = parse("[server]\nport = \"45000\"\n").unwrap_err();
        assert!(e.starts_with("jamd.toml:2:8: "), "{e}");
        assert!(e.contains("invalid type") && e.contains("expected"), "{e}");
        let e = parse("[server]\nreuse_address = 1\n").unwrap_err();
        assert!(e.contains("expected a boolean"), "{e}");
    }

    #[test]
    fn out_of_range_values_are_errors() {
        assert!(parse("[server]\nport = 70000\n").is_err());
        assert!(parse("[server]\nport = -1\n").is_err());
        assert!(parse("[server]\nmax_line_bytes = 0\n").is_err());
        assert!(parse("[server]\nmax_connections = 0\n").is_err());
        assert!(parse("[server]\nbacklog = 0\n").is_err());
        let e = parse("[server]\nidle_timeout = -5\n").unwrap_err();
        assert!(e.starts_with("jamd.toml:2:16: "), "{e}");
    }

    #[test]
    fn a_bind_entry_that_is_not_an_address_is_an_error() {
        let e = parse("[server]\nbind = [\"127.0.0.1\", \"localhost\"]\n").unwrap_err();
        assert!(e.starts_with("jamd.toml:2:22: "), "{e}");
        assert!(e.contains("IP address"), "{e}");
    }

    #[test]
    fn an_invalid_time_format_is_a_config_error() {
        let e = parse("[time]\nformat = \"%H:%M:%\"\n").unwrap_err();
        assert!(e.starts_with("jamd.toml:2:10: "), "{e}");
        assert!(e.contains("strftime"), "{e}");
    }

    #[test]
    fn an_unknown_time_zone_is_a_config_error() {
        let e = parse("[time]\ntimezone = \"Nowhere/Atlantis\"\n").unwrap_err();
        assert!(e.starts_with("jamd.toml:2:12: "), "{e}");
        assert!(e.contains("unknown time zone"), "{e}");
    }

    #[test]
    fn log_values_are_checked() {
        assert!(parse("[log]\ntarget = \"file\"\n")
            .unwrap_err()
            .contains("expected one of"));
        assert!(parse("[log]\nfacility = \"kern\"\n").is_err());
        assert!(parse("[log]\nlevel = \"trace\"\n").is_err());
        assert!(parse("[log]\nsyslog_socket = \"dev/log\"\n").is_err());
        assert!(parse("[log]\nsyslog_socket = \"udp://host\"\n").is_err());
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
        .apply(&mut c);
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
