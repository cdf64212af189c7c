//! `check_jam`: `jamc --check` by the monitoring-plugins conventions, with
//! the options their users type by habit (`-H`, `-p`, `-w`, `-c`, `-t`,
//! `-4`/`-6`, `-v`, `-h`, `-V`), as check_ntp_time takes them. Here `-w` is
//! the warning threshold, not jamc's timeout.
//!
//! It is the `check_jam` binary, and jamc itself when run under that name
//! (a link), so either can be installed in the plugin directory.

use std::ffi::OsString;
use std::time::Duration;

use clap::Parser;

use super::answer::{Protocol, Transport, DEFAULT_PORT};
use super::cli::{
    parse_source, parse_timeout, source_family, CheckSettings, EarlyExit, Family, Mode, Settings,
    Target,
};
use super::reading::ReplyFormat;
use super::thresholds::{Range, Thresholds};
use crate::clock::Zone;

/// The name jamc answers to as a plugin.
pub(crate) const NAME: &str = "check_jam";

/// check_jam's raw command-line arguments (clap derive).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "check_jam",
    version = env!("JAMD_VERSION"),
    // What clap would write lists the arguments given before an error as if
    // they were required; this is the plugin's usage, as its users read it.
    override_usage = "check_jam -H HOST [-p PORT] [-w RANGE] [-c RANGE] [-t SECS] [-s ADDR]\n       \
        [-46qv] [--format FMT] [--timezone TZ]",
    about = "Check the clock of a JAM time server (jamd), as a monitoring plugin",
    long_about = "Check the clock of a JAM time server (jamd), as a monitoring plugin \
        (Nagios, Icinga, Naemon, cron).\n\n\
        Prints one status line, e.g. JAM OK - offset +0.012 s from timehost:45000 | \
        offset=0.012s;2;10 time=0.000210s uncertainty=0.003s, and exits 0 OK, 1 WARNING, \
        2 CRITICAL, 3 UNKNOWN. Thresholds apply to the offset's absolute value and \
        take the monitoring plugins' range syntax (10, 10:, ~:10, 5:10, @5:10)."
)]
pub(crate) struct CheckJamArgs {
    /// Server to check (name or address; HOST:PORT too); repeat for several
    #[arg(short = 'H', long = "hostname", value_name = "HOST", required = true)]
    pub(crate) hosts: Vec<String>,

    /// TCP port (default 45000)
    #[arg(short = 'p', long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) port: Option<u16>,

    /// Offset in seconds (or range) that makes WARNING
    #[arg(short = 'w', long, value_name = "SECS", default_value = "2", value_parser = Range::parse)]
    pub(crate) warning: Range,

    /// Offset in seconds (or range) that makes CRITICAL
    #[arg(short = 'c', long, value_name = "SECS", default_value = "10", value_parser = Range::parse)]
    pub(crate) critical: Range,

    /// Seconds before the check gives up (CRITICAL)
    #[arg(short = 't', long, value_name = "SECS", default_value = "10", value_parser = parse_timeout)]
    pub(crate) timeout: f64,

    /// Take one reply instead of pinning the second change (±0.5 s)
    #[arg(short = 'q', long)]
    pub(crate) quick: bool,

    /// strftime format of the server's time
    #[arg(long, value_name = "FMT", default_value = "%H:%M:%S")]
    pub(crate) format: String,

    /// The server's time zone: local, UTC, +07:00 or an IANA name
    #[arg(
        long,
        value_name = "TZ",
        default_value = "local",
        allow_hyphen_values = true
    )]
    pub(crate) timezone: String,

    /// Also say how each offset was measured
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    /// Connect from this local address (to test an access list)
    #[arg(short = 's', long, value_name = "ADDR", value_parser = parse_source)]
    pub(crate) source: Option<std::net::IpAddr>,

    /// IPv4 only
    #[arg(short = '4', long = "use-ipv4", conflicts_with = "ipv6")]
    pub(crate) ipv4: bool,

    /// IPv6 only
    #[arg(short = '6', long = "use-ipv6")]
    pub(crate) ipv6: bool,
}

impl CheckJamArgs {
    /// Checks what clap cannot and builds check [`Settings`].
    pub(crate) fn resolve(self) -> Result<Settings, String> {
        let targets = self
            .hosts
            .iter()
            .map(|h| Target::parse_one_of_several(h, self.port).map_err(|e| format!("-H: {e}")))
            .collect::<Result<Vec<Target>, String>>()?;
        let target = targets.first().cloned().unwrap_or(Target {
            host: "localhost".into(),
            port: self.port.unwrap_or(DEFAULT_PORT),
        });
        let family = match (self.ipv4, self.ipv6) {
            (true, _) => Family::V4,
            (_, true) => Family::V6,
            _ => Family::Any,
        };
        let family = source_family(self.source, family, &targets)?;
        let check = CheckSettings {
            thresholds: Thresholds::new(self.warning, self.critical, ("-w", "-c"))?,
            format: ReplyFormat::new(&self.format).map_err(|e| e.to_string())?,
            zone: Zone::parse(self.timezone.trim()).map_err(|e| format!("--timezone: {e}"))?,
            quick: self.quick,
            verbose: self.verbose > 0,
            textfile: None,
        };
        Ok(Settings {
            target,
            targets,
            family,
            timeout: Duration::from_secs_f64(self.timeout),
            source: self.source,
            count: 1,
            parallel: None,
            mode: Mode::Check(Box::new(check)),
            protocol: Protocol::Jam,
            transport: Transport::Tcp,
        })
    }
}

/// True when argv\[0\] names check_jam (a link to jamc in the plugin directory).
pub fn invoked_as_plugin(argv0: &std::ffi::OsStr) -> bool {
    std::path::Path::new(argv0)
        .file_name()
        .is_some_and(|name| name == NAME)
}

/// Reads check_jam's command line into [`Settings`], or says how to exit:
/// help and version exit 0; a bad command line exits 3 (UNKNOWN) with one
/// `JAM UNKNOWN - …` line on stdout that names the option, and nothing on
/// stderr, as a monitoring system shows the first line of stdout alone.
pub fn parse_args<I, T>(argv: I) -> Result<Settings, EarlyExit>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = CheckJamArgs::try_parse_from(argv).map_err(clap_exit)?;
    args.resolve().map_err(|why| bad_command_line(&why))
}

/// The exit for clap's error: help and version on stdout with 0, anything
/// else a bad command line in one line.
fn clap_exit(e: clap::Error) -> EarlyExit {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => EarlyExit {
            code: 0,
            stdout: e.render().to_string(),
            stderr: String::new(),
        },
        // clap puts the names of what is missing on lines of their own.
        ErrorKind::MissingRequiredArgument => {
            let missing = match e.get(ContextKind::InvalidArg) {
                Some(ContextValue::Strings(names)) => names.join(", "),
                _ => "--hostname <HOST>".to_string(),
            };
            let missing = missing.replace("--hostname <HOST>", "-H HOST");
            bad_command_line(&format!(
                "missing {missing}: the server to check (check_jam -H HOST)"
            ))
        }
        // Every other message of clap names the option in its first line.
        _ => bad_command_line(&e.render().to_string()),
    }
}

/// A bad command line under the plugin rules: exit 3 (UNKNOWN), the first
/// line of `message` on stdout as `JAM UNKNOWN - …`, nothing on stderr.
fn bad_command_line(message: &str) -> EarlyExit {
    let first = message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("bad command line");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    EarlyExit {
        code: 3,
        stdout: format!("JAM UNKNOWN - {first}\n"),
        stderr: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        CheckJamArgs::command().debug_assert();
    }

    #[test]
    fn check_ntp_time_habits_are_understood() {
        let s = parse_args([
            "check_jam",
            "-H",
            "timehost",
            "-p",
            "45001",
            "-w",
            "0.5",
            "-c",
            "1",
            "-t",
            "3",
            "-4",
        ])
        .unwrap();
        assert_eq!(s.target.to_string(), "timehost:45001");
        assert_eq!(s.timeout, Duration::from_secs(3));
        assert_eq!(s.family, Family::V4);
        let Mode::Check(check) = &s.mode else {
            panic!("not a check")
        };
        assert_eq!(check.thresholds.warning.to_string(), "0.5");
        let s = parse_args([
            "check_jam",
            "-H",
            "a",
            "-H",
            "b:7",
            "-w",
            "~:3",
            "-c",
            "@5:",
        ])
        .unwrap();
        assert_eq!(s.targets.len(), 2);
    }

    #[test]
    fn bad_command_lines_are_unknown() {
        for (bad, names) in [
            (&["check_jam"][..], "-H HOST"),
            (&["check_jam", "-w", "1", "-c", "2"], "-H HOST"),
            (&["check_jam", "-H", "h", "-w", "5", "-c", "2"], "-w 5"),
            (&["check_jam", "-H", "h", "-w", "x"], "--warning"),
            (&["check_jam", "-H", "h", "-t", "0"], "--timeout"),
            (&["check_jam", "-H", "h", "--nope"], "--nope"),
            (&["check_jam", "-H", "h", "-p"], "--port"),
            (&["check_jam", "-H", "h:x"], "-H"),
            (
                &["check_jam", "-H", "h", "--timezone", "Nowhere/Land"],
                "--timezone",
            ),
            (&["check_jam", "-H", "h", "--format", "%H:%Q"], "--format"),
            (&["check_jam", "-H", "h", "-4", "-6"], "--use-ipv4"),
        ] {
            let e = parse_args(bad.iter().copied()).unwrap_err();
            assert_eq!(e.code, 3, "{bad:?}");
            assert!(e.stdout.starts_with("JAM UNKNOWN - "), "{bad:?}: {e:?}");
            assert_eq!(e.stdout.lines().count(), 1, "{bad:?}: {e:?}");
            assert!(e.stdout.contains(names), "{bad:?}: {e:?}");
            assert_eq!(e.stderr, "", "{bad:?}");
        }
        assert_eq!(parse_args(["check_jam", "-h"]).unwrap_err().code, 0);
        assert_eq!(parse_args(["check_jam", "-V"]).unwrap_err().code, 0);
    }

    #[test]
    fn the_plugin_name_is_recognised_in_any_directory() {
        assert!(invoked_as_plugin(
            "/usr/lib/nagios/plugins/check_jam".as_ref()
        ));
        assert!(invoked_as_plugin("check_jam".as_ref()));
        assert!(!invoked_as_plugin("/usr/bin/jamc".as_ref()));
    }
}
