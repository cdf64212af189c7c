//! jamd: command line → configuration → sockets → serve. Nothing else.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use jamd::cli::JamdArgs;
use jamd::config::{self, Config, LogConfig, DEFAULT_PATH};
use jamd::control::{Notifier, Signals};
use jamd::listen::{self, show_addr, Sockets};
use jamd::log::Logger;
use jamd::server::{self, Options};

/// EX_CONFIG from sysexits.h: the configuration is wrong.
const EX_CONFIG: u8 = 78;

fn main() -> ExitCode {
    jamd::sys::ensure_stdio_open();
    let args = JamdArgs::parse();
    let explicit = args.config.is_some();
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));

    if let Some(addr) = args.check_access {
        return match load(&path, explicit, &args) {
            Ok((config, _)) => {
                let decision = config.access.list().decide(addr);
                println!("{addr}: {decision}");
                if decision.is_allowed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(why) => {
                eprintln!("jamd: {why}");
                ExitCode::from(EX_CONFIG)
            }
        };
    }

    if args.check_config {
        return match load(&path, explicit, &args) {
            Ok((config, missing_default)) => {
                // What start-up would log, so -t before a reload shows it.
                if missing_default {
                    eprintln!(
                        "jamd: no configuration file at {}; using built-in defaults",
                        path.display()
                    );
                }
                for w in config.warnings() {
                    eprintln!("jamd: warning: {w}");
                }
                print!("{}", config.to_toml());
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("jamd: {why}");
                ExitCode::from(EX_CONFIG)
            }
        };
    }

    // Before anything can announce that jamd is up: a signal sent right
    // after the first log line must find its handler in place.
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => return fail(1, &format!("cannot install signal handlers: {e}"), false),
    };

    // Inherited sockets first: whether standard I/O is a client decides
    // where every later message may go.
    let mut warnings = Vec::new();
    let mut notices = Vec::new();
    let inherited = if args.inetd {
        match listen::from_inetd() {
            Ok(s) => Some(s),
            Err(why) => return fail(1, &why.to_string(), true),
        }
    } else {
        match listen::from_service_manager(&mut warnings) {
            Ok(Some(activation)) => {
                notices.push(format!(
                    "using {} socket(s) from the service manager",
                    activation.passed
                ));
                Some(activation.sockets)
            }
            Ok(None) => None,
            Err(why) => {
                for w in &warnings {
                    eprintln!("jamd: warning: {w}");
                }
                return fail(1, &why.to_string(), false);
            }
        }
    };
    let stdio_is_client = args.inetd || matches!(inherited, Some(Sockets::Connection(_)));
    if stdio_is_client {
        // Closing the connection must really close it, and nothing printed may reach it.
        if let Err(e) = jamd::sys::detach_stdio_sockets() {
            warnings.push(format!("cannot detach standard I/O from the client: {e}"));
        }
    }

    let (config, missing_default) = match load(&path, explicit, &args) {
        Ok(c) => c,
        Err(why) => return fail(EX_CONFIG, &why, stdio_is_client),
    };
    let log = Logger::start(&config.log, stdio_is_client);
    if missing_default {
        log.info(format!(
            "no configuration file at {}; using built-in defaults",
            path.display()
        ));
    }
    for w in warnings.iter().chain(config.warnings().iter()) {
        log.warn(w.clone());
    }

    let sockets = match inherited {
        Some(s) => {
            for n in notices {
                log.info(n);
            }
            if let Sockets::Listeners(listeners) = &s {
                let from = if args.inetd {
                    "inetd"
                } else {
                    "the service manager"
                };
                for l in listeners {
                    if let Ok(addr) = l.local_addr() {
                        log.info(format!("listening on {} (from {from})", show_addr(&addr)));
                    }
                }
            }
            s
        }
        None => match listen::bind_all(&config.server) {
            Ok(bound) => {
                for (addr, why) in &bound.skipped {
                    log.warn(format!(
                        "skipping {}: {why} (no IPv6 on this host?)",
                        show_addr(addr)
                    ));
                }
                for l in &bound.listeners {
                    if let Ok(addr) = l.local_addr() {
                        log.info(format!(
                            "listening on {} (backlog {})",
                            show_addr(&addr),
                            config.server.backlog
                        ));
                    }
                }
                Sockets::Listeners(bound.listeners)
            }
            Err(why) => {
                log.flush(Duration::from_millis(500));
                return fail(1, &why.to_string(), stdio_is_client);
            }
        },
    };

    let mut notify_warnings = Vec::new();
    let notifier = Notifier::from_env(&mut notify_warnings);
    for w in notify_warnings {
        log.warn(w);
    }
    let options = Options {
        config_path: if explicit || !missing_default {
            Some(path)
        } else {
            None
        },
        overrides: args.overrides(),
        stdio_is_client,
    };
    let result = server::run(config, sockets, log.clone(), signals, notifier, options);
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            log.error(why.to_string());
            if !stdio_is_client {
                eprintln!("jamd: {why}");
            }
            ExitCode::from(1)
        }
    };
    log.flush(Duration::from_secs(2));
    code
}

/// Loads the configuration and applies the command line. The flag says the
/// default file was missing and built-in defaults are used.
fn load(path: &Path, explicit: bool, args: &JamdArgs) -> Result<(Config, bool), String> {
    let loaded = config::load(path, explicit, &args.overrides()).map_err(|e| e.to_string())?;
    Ok((loaded.config, loaded.missing_default))
}

/// Reports a fatal error in one line and returns the exit code. When standard
/// I/O is a client, the line goes to syslog instead.
fn fail(code: u8, why: &str, stdio_is_client: bool) -> ExitCode {
    if stdio_is_client {
        let log = Logger::start(&LogConfig::default(), true);
        log.error(why.to_owned());
        log.flush(Duration::from_secs(1));
    } else {
        eprintln!("jamd: {why}");
    }
    ExitCode::from(code)
}
