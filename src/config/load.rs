//! Loading: reading the file (a regular file only), turning its text into a
//! [`Config`] or a [`ConfigError`] with its place, and the command line's
//! [`Overrides`].

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::reader::Keys;
use super::sections::{check_bind, read_config};
use super::syntax::syntax_message;
use super::{Config, LogTarget};
use crate::listener::{show_addr, Protocol, Transport};
use crate::sys::read_regular_file;
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
    pub(crate) config: Config,
    /// The default file was absent, so these are the built-in defaults.
    pub(crate) missing_default: bool,
}

/// Reads the configuration jamd runs with: the file at `path` or, when it
/// is the default path (`explicit` false) and there is no file there, the
/// built-in defaults; then applies the command line and checks the result.
/// Only a file that does not exist means "use the defaults": an unreadable
/// directory, a FIFO or a device is an error.
pub(crate) fn load(
    path: &Path,
    explicit: bool,
    overrides: &Overrides,
) -> Result<Loaded, ConfigError> {
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

impl Config {
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
}

/// Settings given on the command line; they win over the file, also on reload.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `-p`.
    pub(crate) port: Option<u16>,
    /// `-b` (repeatable).
    pub(crate) bind: Vec<IpAddr>,
    /// `--log`.
    pub(crate) log_target: Option<LogTarget>,
}

impl Overrides {
    /// Applies the overrides to a configuration read from a file; a `-b`
    /// list that cannot work is an error.
    pub(crate) fn apply(&self, config: &mut Config) -> Result<(), ConfigError> {
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
    use crate::config::parse_for_tests as parse;

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
        let e = load(
            Path::new("/nonexistent/jamd.toml"),
            true,
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e.to_string().starts_with("/nonexistent/jamd.toml: "));
    }
}
