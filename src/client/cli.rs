//! jamc's command line: every flag defined once, here, in [`JamcArgs`] (used for
//! `--help`, and by the tools that generate shell completions and check the man
//! page), then resolved into checked [`Settings`] the client runs with.

use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use super::answer::DEFAULT_PORT;
use super::answer::{Protocol, Transport};
use super::reading::ReplyFormat;
use super::thresholds::{Range, Thresholds};
use crate::clock::Zone;

/// Most clients `-P` starts at once (each is a thread and a socket).
pub(crate) const MAX_PARALLEL: u32 = 1000;

/// jamc's raw command-line arguments (clap derive).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "jamc",
    version = env!("JAMD_VERSION"),
    about = "Ask a JAM time server (jamd) for the time",
    long_about = "Ask a JAM time server (jamd) for the time.\n\n\
        Plain use prints the server's time, one line per reply (HOST:PORT first when \
        several servers are given). --check measures each server's clock offset and \
        reports it the monitoring-plugins way (Nagios, \
        Icinga, cron). --conformance checks whether a server speaks the JAM \
        protocol and prints a TAP report that prove(1) reads.\n\n\
        Exit status: 0 every reply was a JAM line, 1 otherwise, 2 bad command line. \
        With --check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. With --conformance: \
        0 every required check passed (with --strict: every check), 1 otherwise."
)]
// A command line's switches are bools by nature; they are resolved into
// settings (modes, formats) right after parsing.
#[allow(clippy::struct_excessive_bools)]
pub(crate) struct JamcArgs {
    /// The servers to ask, as written on the command line.
    #[arg(
        value_name = "HOST[:PORT]",
        default_value = "localhost",
        num_args = 1..,
        help = "Servers to ask (all at once): HOST, HOST:PORT, an IPv6 address, or [IPv6]:PORT"
    )]
    pub(crate) servers: Vec<String>,

    /// TCP port (default 45000)
    #[arg(short = 'p', long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) port: Option<u16>,

    /// Seconds allowed for connecting and for each reply
    #[arg(short = 'w', long, value_name = "SECS", default_value = "5", value_parser = parse_timeout)]
    pub(crate) timeout: f64,

    /// TIME requests on each connection
    #[arg(short = 'n', long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) count: u32,

    /// N clients at once, each on its own connection
    #[arg(short = 'P', long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PARALLEL)))]
    pub(crate) parallel: Option<u32>,

    /// Print whole reply lines as received (without CR LF; control characters escaped)
    #[arg(long, conflicts_with_all = ["json", "check"])]
    pub(crate) raw: bool,

    /// Print one JSON object per reply
    #[arg(long, conflicts_with = "check")]
    pub(crate) json: bool,

    /// Monitoring mode: one status line, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
    #[arg(long, conflicts_with = "parallel")]
    pub(crate) check: bool,

    /// --check: |offset| in seconds that makes WARNING (or a range, as the monitoring plugins write it)
    #[arg(long, value_name = "SECS", default_value = "2", requires = "check", value_parser = Range::parse)]
    pub(crate) warning: Range,

    /// --check: |offset| in seconds that makes CRITICAL (or a range)
    #[arg(long, value_name = "SECS", default_value = "10", requires = "check", value_parser = Range::parse)]
    pub(crate) critical: Range,

    /// --check: take one reply instead of pinning the second change (whole-second replies: ±0.5 s)
    #[arg(long, requires = "check")]
    pub(crate) quick: bool,

    /// --check: strftime format of the server's time (fractional seconds are read when present)
    #[arg(
        long,
        value_name = "FMT",
        default_value = "%H:%M:%S",
        requires = "check"
    )]
    pub(crate) format: String,

    /// --check: the server's time zone: local, UTC, +07:00 or an IANA name
    #[arg(
        long,
        value_name = "TZ",
        default_value = "local",
        requires = "check",
        allow_hyphen_values = true
    )]
    pub(crate) timezone: String,

    /// Check the server against the JAM protocol and print a TAP report (exit 0: every required check passed)
    #[arg(long, conflicts_with_all = ["check", "raw", "json", "parallel", "count", "timeout"])]
    pub(crate) conformance: bool,

    /// --conformance: also check the rest of the protocol (exit 0 only when every check passed)
    #[arg(long, requires = "conformance")]
    pub(crate) strict: bool,

    /// Protocol to speak: jam, daytime (RFC 867) or rfc868 (RFC 868); the default port follows it (45000, 13, 37)
    #[arg(long, value_name = "PROTO", default_value = "jam", value_parser = Protocol::parse)]
    pub(crate) protocol: Protocol,

    /// daytime and rfc868: one datagram a reading instead of one TCP connection
    #[arg(long)]
    pub(crate) udp: bool,

    /// --check: also write the result for node_exporter's textfile collector to FILE (replaced atomically)
    #[arg(long, value_name = "FILE", requires = "check")]
    pub(crate) textfile: Option<PathBuf>,

    /// Connect from this local address (to test an access list, as nc -s does)
    #[arg(short = 's', long, value_name = "ADDR", value_parser = parse_source)]
    pub(crate) source: Option<IpAddr>,

    /// IPv4 only
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub(crate) ipv4: bool,

    /// IPv6 only
    #[arg(short = '6')]
    pub(crate) ipv6: bool,
}

pub(crate) fn parse_seconds(text: &str, min_exclusive: bool) -> Result<f64, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 || (min_exclusive && secs == 0.0) {
        return Err(format!("{text:?} is not a usable number of seconds"));
    }
    if secs > 86_400.0 {
        return Err(format!("{text:?} is more than a day"));
    }
    Ok(secs)
}

pub(crate) fn parse_timeout(text: &str) -> Result<f64, String> {
    parse_seconds(text, true)
}

/// `-s ADDR`: an IP address of this machine, as `nc -s` takes it.
pub(crate) fn parse_source(text: &str) -> Result<IpAddr, String> {
    let text = text.trim();
    text.strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text)
        .parse()
        .map_err(|_| format!("{text:?} is not an IP address (such as 127.0.0.2 or ::1)"))
}

/// The family to resolve names in when connecting from `source` (`-s`):
/// the source's own; a server address of the other family, or `-4`/`-6`
/// against it, is an error that names both.
pub(crate) fn source_family(
    source: Option<IpAddr>,
    family: Family,
    targets: &[Target],
) -> Result<Family, String> {
    let Some(source) = source else {
        return Ok(family);
    };
    let (own, flag) = if source.is_ipv4() {
        (Family::V4, "-6")
    } else {
        (Family::V6, "-4")
    };
    if family != Family::Any && family != own {
        return Err(format!("-s {source} does not fit {flag}"));
    }
    for target in targets {
        if let Ok(ip) = target.host.parse::<IpAddr>() {
            if ip.is_ipv4() != source.is_ipv4() {
                return Err(format!(
                    "-s {source} cannot reach {ip}: the two are of different IP families"
                ));
            }
        }
    }
    Ok(own)
}

/// IP families a host name may be resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// Any address (the default).
    Any,
    /// `-4`: IPv4 only.
    V4,
    /// `-6`: IPv6 only.
    V6,
}

/// The server to ask: a host (name or address literal) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Host name or IP address literal (without brackets).
    pub(crate) host: String,
    /// TCP port.
    pub(crate) port: u16,
}

impl Target {
    /// Reads `HOST`, `HOST:PORT`, `::1`, `[::1]` or `[::1]:PORT` for one of
    /// several servers: `-p` (`port_flag`) is the port of those that name
    /// none, and another port in `HOST:PORT` is no conflict.
    pub(crate) fn parse_one_of_several(
        text: &str,
        port_flag: Option<u16>,
    ) -> Result<Target, String> {
        Target::parse_with(text, port_flag, false, DEFAULT_PORT)
    }

    /// Reads a target; `default_port` when neither it nor `-p` names one.
    fn parse_with(
        text: &str,
        port_flag: Option<u16>,
        strict: bool,
        default_port: u16,
    ) -> Result<Target, String> {
        let text = text.trim();
        let (host, port_text) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: missing ']' after the IPv6 address"))?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(format!("{text:?}: expected ':PORT' after ']'")),
                },
            }
        } else if text.matches(':').count() == 1 {
            let (host, port) = text.split_once(':').unwrap_or((text, ""));
            (host, Some(port))
        } else {
            // No colon, or several: a bare IPv6 address.
            (text, None)
        };
        if host.is_empty() {
            return Err(format!("{text:?}: no host"));
        }
        let port = match port_text {
            None => port_flag.unwrap_or(default_port),
            Some(p) => {
                let port: u16 = p
                    .parse()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("{text:?}: {p:?} is not a port number (1-65535)"))?;
                if let Some(flag) = port_flag.filter(|&f| strict && f != port) {
                    return Err(format!(
                        "port given twice: {port} in {text:?} and {flag} with -p"
                    ));
                }
                port
            }
        };
        Ok(Target {
            host: host.to_string(),
            port,
        })
    }

    /// True when the host is an IPv6 address literal.
    pub(crate) fn is_ipv6_literal(&self) -> bool {
        self.host.parse::<std::net::Ipv6Addr>().is_ok()
    }
}

impl fmt::Display for Target {
    /// `localhost:45000`, `[::1]:45000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ipv6_literal() {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What `--check` needs besides the connection settings.
#[derive(Debug, Clone)]
pub(crate) struct CheckSettings {
    /// `--warning` and `--critical`.
    pub(crate) thresholds: Thresholds,
    /// `--format`.
    pub(crate) format: ReplyFormat,
    /// `--timezone`.
    pub(crate) zone: Zone,
    /// `--quick`: one reply, no readings to pin the second's change.
    pub(crate) quick: bool,
    /// check_jam's `-v`: a line on how each offset was measured.
    pub(crate) verbose: bool,
    /// `--textfile`: where to write the result for node_exporter, if anywhere.
    pub(crate) textfile: Option<PathBuf>,
}

/// How replies are reported.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    /// The server's time, one line per reply.
    Plain,
    /// `--raw`: whole reply lines as received, control characters escaped.
    Raw,
    /// `--json`: one JSON object per reply.
    Json,
    /// `--check`: one monitoring-plugin status line.
    Check(Box<CheckSettings>),
    /// `--conformance`: a TAP report of the protocol checks.
    Conformance {
        /// `--strict`: the checks of the rest of the protocol too.
        strict: bool,
    },
}

/// Checked settings the client runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The first (for `-P`, the only) server.
    pub(crate) target: Target,
    /// Every server, in the order given (the first is `target`).
    pub(crate) targets: Vec<Target>,
    /// `-4` / `-6`.
    pub(crate) family: Family,
    /// `-w`: for connecting (all addresses together) plus the first reply, and for each later reply.
    pub(crate) timeout: Duration,
    /// `-s`: the local address to connect from, when given.
    pub(crate) source: Option<IpAddr>,
    /// `-n`: TIME requests per connection.
    pub(crate) count: u32,
    /// `-P`: clients at once, when given.
    pub(crate) parallel: Option<u32>,
    /// What to print.
    pub(crate) mode: Mode,
    /// `--protocol`.
    pub(crate) protocol: Protocol,
    /// `--udp`: datagrams (daytime and rfc868 only).
    pub(crate) transport: Transport,
}

/// The end of a run decided while reading the command line (help, version, usage error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlyExit {
    /// Exit code: 0 for help/version, 2 for a bad command line, 3 with --check.
    pub(crate) code: u8,
    /// Text for stdout.
    pub(crate) stdout: String,
    /// Text for stderr.
    pub(crate) stderr: String,
}

impl JamcArgs {
    /// Checks the values clap cannot check alone and builds [`Settings`].
    pub(crate) fn resolve(self) -> Result<Settings, String> {
        let several = self.servers.len() > 1;
        let default_port = self.protocol.default_port();
        let targets = self
            .servers
            .iter()
            .map(|server| Target::parse_with(server, self.port, !several, default_port))
            .collect::<Result<Vec<Target>, String>>()?;
        if self.udp && self.protocol == Protocol::Jam {
            return Err(
                "--udp takes --protocol daytime or rfc868 (JAM is spoken over TCP)".to_string(),
            );
        }
        if self.conformance && self.protocol != Protocol::Jam {
            return Err("--conformance checks JAM servers only (--protocol jam)".to_string());
        }
        let Some(target) = targets.first().cloned() else {
            return Err("no server given".to_string());
        };
        if targets.len() > 1 && self.parallel.is_some() {
            return Err("-P takes one server; give several servers without -P".to_string());
        }
        let family = match (self.ipv4, self.ipv6) {
            (true, _) => Family::V4,
            (_, true) => Family::V6,
            _ => Family::Any,
        };
        for target in &targets {
            if let Ok(ip) = target.host.parse::<std::net::IpAddr>() {
                if (family == Family::V4 && ip.is_ipv6()) || (family == Family::V6 && ip.is_ipv4())
                {
                    return Err(format!(
                        "{ip} does not fit -{}",
                        if ip.is_ipv4() { 6 } else { 4 }
                    ));
                }
            }
        }
        if targets.len() > 1 && self.conformance {
            return Err("--conformance takes one server".to_string());
        }
        let family = source_family(self.source, family, &targets)?;
        let mode = if self.conformance {
            Mode::Conformance {
                strict: self.strict,
            }
        } else if self.check {
            Mode::Check(Box::new(CheckSettings {
                thresholds: Thresholds::new(
                    self.warning,
                    self.critical,
                    ("--warning", "--critical"),
                )?,
                format: ReplyFormat::new(&self.format).map_err(|e| e.to_string())?,
                zone: Zone::parse(self.timezone.trim()).map_err(|e| format!("--timezone: {e}"))?,
                quick: self.quick,
                verbose: false,
                textfile: self.textfile,
            }))
        } else if self.raw {
            Mode::Raw
        } else if self.json {
            Mode::Json
        } else {
            Mode::Plain
        };
        Ok(Settings {
            target,
            targets,
            family,
            timeout: Duration::from_secs_f64(self.timeout),
            source: self.source,
            count: self.count,
            parallel: self.parallel,
            mode,
            protocol: self.protocol,
            transport: if self.udp {
                Transport::Udp
            } else {
                Transport::Tcp
            },
        })
    }
}

/// The exit for a bad command line under the plugin rules: 3 (UNKNOWN), with
/// the first line of `message` on stdout as `JAM UNKNOWN - ...`.
pub(super) fn unknown_exit(message: String) -> EarlyExit {
    let first = message
        .lines()
        .next()
        .unwrap_or("bad command line")
        .trim_start_matches("error: ")
        .to_string();
    EarlyExit {
        code: 3,
        stdout: format!("JAM UNKNOWN - {first}\n"),
        stderr: message,
    }
}

/// How to exit on clap's error `e`: help and version go to stdout with 0, and
/// anything else is a bad command line, as `bad` says.
pub(super) fn clap_exit(e: clap::Error, bad: impl FnOnce(String) -> EarlyExit) -> EarlyExit {
    use clap::error::ErrorKind;
    let text = e.render().to_string();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => EarlyExit {
            code: 0,
            stdout: text,
            stderr: String::new(),
        },
        _ => bad(text),
    }
}

/// Reads the command line (argv\[0\] first) into [`Settings`], or says how to exit.
///
/// A bad command line exits 2, or 3 (UNKNOWN) when `--check` is among the
/// arguments, with a `JAM UNKNOWN - ...` line on stdout as a plugin must.
pub fn parse_args<I, T>(argv: I) -> Result<Settings, EarlyExit>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let check = argv
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--check");
    let usage_error = |message: String| {
        if check {
            unknown_exit(message)
        } else {
            EarlyExit {
                code: 2,
                stdout: String::new(),
                stderr: message,
            }
        }
    };
    let args = JamcArgs::try_parse_from(&argv).map_err(|e| clap_exit(e, usage_error))?;
    args.resolve().map_err(|why| {
        let usage = JamcArgs::command().render_usage().to_string();
        usage_error(format!(
            "error: {why}\n\n{usage}\n\nFor more information, try '--help'.\n"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        JamcArgs::command().debug_assert();
    }

    #[test]
    fn targets_are_read_in_every_spelling() {
        let t = |s: &str, p| Target::parse_with(s, p, true, DEFAULT_PORT);
        assert_eq!(t("localhost", None).unwrap().to_string(), "localhost:45000");
        assert_eq!(t("example.org:123", None).unwrap().port, 123);
        assert_eq!(t("127.0.0.1", Some(9)).unwrap().to_string(), "127.0.0.1:9");
        assert_eq!(t("[::1]:45001", None).unwrap().to_string(), "[::1]:45001");
        assert_eq!(t("[::1]", Some(7)).unwrap().to_string(), "[::1]:7");
        assert_eq!(t("::1", None).unwrap().to_string(), "[::1]:45000");
        assert_eq!(t("h:5", Some(5)).unwrap().port, 5);
        for bad in ["", ":45000", "h:0", "h:x", "h:70000", "[::1", "[::1]x"] {
            assert!(t(bad, None).is_err(), "{bad}");
        }
        assert!(t("h:5", Some(6)).is_err());
    }

    #[test]
    fn bad_arguments_exit_2_or_3_with_check() {
        let e = parse_args(["jamc", "--count", "0"]).unwrap_err();
        assert_eq!(e.code, 2);
        let e = parse_args(["jamc", "--check", "--warning", "x"]).unwrap_err();
        assert_eq!(e.code, 3);
        assert!(e.stdout.starts_with("JAM UNKNOWN - "), "{}", e.stdout);
        let e = parse_args(["jamc", "--check", "--timezone", "Nowhere/Land"]).unwrap_err();
        assert_eq!(e.code, 3);
        let e = parse_args(["jamc", "--check", "-P", "2"]).unwrap_err();
        assert_eq!(e.code, 3);
        let e = parse_args(["jamc", "--warning", "3"]).unwrap_err();
        assert_eq!(e.code, 2);
        let e = parse_args(["jamc", "-4", "::1"]).unwrap_err();
        assert_eq!(e.code, 2);
        assert_eq!(parse_args(["jamc", "--help"]).unwrap_err().code, 0);
    }

    #[test]
    fn several_servers_are_taken_in_order_but_not_with_parallel() {
        let s = parse_args(["jamc", "-p", "7", "a", "b:8", "[::1]"]).unwrap();
        let names: Vec<String> = s.targets.iter().map(Target::to_string).collect();
        assert_eq!(names, ["a:7", "b:8", "[::1]:7"]);
        assert_eq!(s.target.to_string(), "a:7");
        assert_eq!(
            parse_args(["jamc", "-P", "2", "a", "b"]).unwrap_err().code,
            2
        );
        assert_eq!(parse_args(["jamc", "-4", "a", "::1"]).unwrap_err().code, 2);
        let e = parse_args(["jamc", "--check", "a", "b:x"]).unwrap_err();
        assert_eq!(e.code, 3);
        let s = parse_args(["jamc", "--check", "--quick", "--warning", "~:1", "a", "b"]).unwrap();
        let Mode::Check(check) = &s.mode else {
            panic!("not a check")
        };
        assert!(check.quick);
        assert_eq!(check.thresholds.warning.to_string(), "~:1");
        assert_eq!(parse_args(["jamc", "--quick"]).unwrap_err().code, 2);
    }

    #[test]
    fn good_arguments_resolve() {
        let s = parse_args([
            "jamc",
            "--check",
            "--timezone=-03:00",
            "-w",
            "0.5",
            "[::1]:1",
        ])
        .unwrap();
        assert!(matches!(s.mode, Mode::Check(_)));
        assert_eq!(s.timeout, Duration::from_millis(500));
        assert_eq!(s.target.port, 1);
        let s = parse_args(["jamc", "-P", "9", "-n", "3", "--json", "-6"]).unwrap();
        assert_eq!(s.parallel, Some(9));
        assert_eq!(s.family, Family::V6);
        assert!(matches!(s.mode, Mode::Json));
        let s = parse_args(["jamc", "--conformance", "--strict", "-p", "7"]).unwrap();
        assert!(matches!(s.mode, Mode::Conformance { strict: true }));
        assert_eq!(s.target.port, 7);
    }

    #[test]
    fn source_is_an_address_and_sets_the_family() {
        let s = parse_args(["jamc", "-s", "127.0.0.2", "localhost"]).unwrap();
        assert_eq!(s.source, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(s.family, Family::V4);
        let s = parse_args(["jamc", "--source=[::1]", "--check", "::1"]).unwrap();
        assert_eq!(s.family, Family::V6);
        let s = parse_args(["jamc", "--conformance", "-s", "::1"]).unwrap();
        assert_eq!(s.source, Some("::1".parse().unwrap()));
        assert_eq!(parse_args(["jamc", "-s", "a.example"]).unwrap_err().code, 2);
        let e = parse_args(["jamc", "-s", "127.0.0.2", "-6"]).unwrap_err();
        assert!(e.stderr.contains("-s 127.0.0.2 does not fit -6"), "{e:?}");
        let e = parse_args(["jamc", "--check", "-s", "::1", "127.0.0.1"]).unwrap_err();
        assert_eq!(e.code, 3);
        assert!(e.stdout.contains("different IP families"), "{e:?}");
    }

    #[test]
    fn conformance_takes_no_flags_of_the_other_modes() {
        for bad in [
            &["jamc", "--strict"][..],
            &["jamc", "--conformance", "-P", "9"],
            &["jamc", "--conformance", "-n", "2"],
            &["jamc", "--conformance", "-w", "1"],
            &["jamc", "--conformance", "--json"],
        ] {
            assert_eq!(
                parse_args(bad.iter().copied()).unwrap_err().code,
                2,
                "{bad:?}"
            );
        }
    }
}
