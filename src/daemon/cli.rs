//! jamd's command line, defined once: used by the binary, by `--help`, by the
//! shell completions (`crate::completions`) and by the tests that check the man
//! page names every flag.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::config::{LogTarget, Overrides};
use crate::listener::Protocol;

/// jamd — a small TCP time service: clients send TIME and get `JAM 14:03:27`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "jamd",
    version = env!("JAMD_VERSION"),
    about = "jamd: a small TCP time service. Clients send TIME and get JAM 14:03:27.",
    after_help = "Signals: SIGTERM/SIGINT drain and stop, SIGHUP reloads the configuration, SIGUSR1 logs a status line.\nExit status: 0 clean stop, 1 failure to start, 2 bad command line, 78 configuration error."
)]
pub struct JamdArgs {
    /// Configuration file [default: /etc/jamd/jamd.toml]
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// TCP port to listen on (overrides server.port; 0 lets the kernel choose)
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    pub port: Option<u16>,

    /// Address to listen on (overrides server.bind; repeat for several)
    #[arg(short = 'b', long = "bind", value_name = "ADDR")]
    pub bind: Vec<IpAddr>,

    /// Where to log (overrides log.target)
    #[arg(long = "log", value_name = "TARGET", value_enum)]
    pub log: Option<LogTarget>,

    /// Serve from inetd: stdin is the connection ("nowait") or a listening socket ("wait")
    #[arg(long = "inetd")]
    pub inetd: bool,

    /// With --inetd: the protocol to serve: jam, daytime (RFC 867) or rfc868 (RFC 868) [default: jam]
    #[arg(long = "protocol", value_name = "NAME", value_enum, requires = "inetd")]
    pub protocol: Option<Protocol>,

    /// Check the configuration, print the effective settings as TOML, and exit (0 valid, 78 not)
    #[arg(short = 't', long = "check-config")]
    pub check_config: bool,

    /// Check whether ADDR may connect under [access] of the configuration, print "ADDR: allowed" or "ADDR: denied (by …)", and exit (0 allowed, 1 denied, 78 bad configuration)
    #[arg(long = "check-access", value_name = "ADDR")]
    pub check_access: Option<IpAddr>,
}

impl JamdArgs {
    /// The settings that override the configuration file.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            port: self.port,
            bind: self.bind.clone(),
            log_target: self.log,
        }
    }
}
