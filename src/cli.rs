//! jamd's command line, defined once: used by the binary, by `--help`, and by
//! the tests that check the man page names every flag.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::config::{LogTarget, Overrides};

/// jamd — a small TCP time service: clients send TIME and get `JAM 14:03:27`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "jamd",
    version,
    about = "jamd: a small TCP time service. Clients send TIME and get JAM 14:03:27.",
    after_help = "Signals: SIGTERM/SIGINT drain and stop, SIGHUP reloads the configuration.\nExit status: 0 clean stop, 1 failure to start, 2 bad command line, 78 configuration error."
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

/// Writes bash, zsh and fish completions for jamd and jamc into `dir`,
/// generated from the same definitions the binaries parse with, and returns
/// the files written.
pub fn write_completions(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    use clap::CommandFactory;
    use clap_complete::{generate_to, Shell};
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        written.push(generate_to(shell, &mut JamdArgs::command(), "jamd", dir)?);
        written.push(generate_to(
            shell,
            &mut crate::client::cli::JamcArgs::command(),
            "jamc",
            dir,
        )?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn completions_name_every_long_flag_of_both_programs() {
        let dir = std::env::temp_dir().join(format!("jamd-completions-{}", std::process::id()));
        let files = write_completions(&dir).unwrap();
        assert_eq!(files.len(), 6);
        for (name, cmd) in [
            ("jamd", JamdArgs::command()),
            ("jamc", crate::client::cli::JamcArgs::command()),
        ] {
            let longs: Vec<String> = cmd
                .get_arguments()
                .filter_map(|a| a.get_long().map(str::to_owned))
                .collect();
            assert!(longs.len() >= 5, "{name}: {longs:?}");
            for file in files.iter().filter(|f| {
                f.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(name))
            }) {
                let text = std::fs::read_to_string(file).unwrap();
                for long in &longs {
                    assert!(
                        text.contains(long.as_str()),
                        "{long} missing in {}",
                        file.display()
                    );
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
