//! The jamd process: command line → start-up → control loop → exit status.
//!
//! - [`cli`]: the command line (clap), defined once.
//! - [`config_file`]: which configuration file is read, at start and on reload.
//! - [`startup`]: the start-up sequence, step by step, until jamd is ready to serve.
//! - [`supervise`]: the control loop on the main thread: signals, shutdown,
//!   the service manager, and the workers' lives.
//! - [`reload`]: SIGHUP: re-read the configuration and put it in effect.
//! - [`signals`]: the signal handlers (a flag and a self-pipe).
//! - [`notify`]: messages to the service manager (sd_notify).
//! - [`confine`]: giving up root, raising the open-file limit, and the
//!   system-call filter.
//!
//! The server itself (workers, connections, limits) is [`crate::server`]: it
//! knows nothing of signals or systemd, and is steered through
//! [`crate::server::Server`].

pub(crate) mod cli;
pub(crate) mod config_file;
pub(crate) mod confine;
pub(crate) mod inetd;
pub(crate) mod notify;
pub(crate) mod reload;
pub(crate) mod signals;
pub(crate) mod startup;
pub(crate) mod supervise;

use std::ffi::OsString;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use cli::JamdArgs;
use config_file::ConfigFile;

/// EX_CONFIG from sysexits.h: the configuration is wrong.
pub(crate) const EX_CONFIG: u8 = 78;

/// Runs jamd with these arguments (the program name first) and returns its
/// exit status: 0 clean stop, 1 failure, 2 bad command line, 78 bad configuration.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    crate::sys::ensure_stdio_open();
    let args = JamdArgs::parse_from(args);
    if let Some(addr) = args.check_access {
        return check_access(&args, addr);
    }
    if args.check_config {
        return check_config(&args);
    }
    let mut started = match startup::start(&args) {
        Ok(started) => started,
        Err(fatal) => return fatal.report(),
    };
    let log = started.log.clone();
    if let Some(stream) = started.stream.take() {
        // One client on a pipe or socketpair: served here, not by workers.
        if started.config.server.sandbox {
            if let Err(why) = confine::sandbox() {
                log.error(why);
                log.flush(Duration::from_secs(2));
                return ExitCode::from(1);
            }
        }
        let protocol = args.protocol.unwrap_or(crate::listener::Protocol::Jam);
        let code = match inetd::serve(stream, protocol, &started.config, &log, &started.signals) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log.error(format!("cannot serve standard input: {e}"));
                ExitCode::from(1)
            }
        };
        log.flush(Duration::from_secs(2));
        return code;
    }
    let stdio_is_client = started.stdio_is_client;
    let code = match supervise::serve(started) {
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

/// `-t`: prints the effective configuration as TOML and its warnings (0),
/// or why it is wrong (78).
fn check_config(args: &JamdArgs) -> ExitCode {
    let file = ConfigFile::from_args(args);
    match file.load() {
        Ok(loaded) => {
            // An unknown server.user or group stops a start: -t says so too.
            if let Err(why) = confine::account(&loaded.config.server) {
                eprintln!("jamd: {why}");
                return ExitCode::from(EX_CONFIG);
            }
            // What start-up would log, so -t before a reload shows it.
            if loaded.missing_default {
                eprintln!(
                    "jamd: no configuration file at {}; using built-in defaults",
                    file.path().display()
                );
            }
            for w in loaded.config.warnings() {
                eprintln!("jamd: warning: {w}");
            }
            print!("{}", loaded.config.to_toml());
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("jamd: {why}");
            ExitCode::from(EX_CONFIG)
        }
    }
}

/// `--check-access ADDR`: prints `ADDR: allowed` (0) or `ADDR: denied (by …)`
/// (1) under `[access]`, or why the configuration is wrong (78). A trusted
/// balancer's address is not a client: what happens to its connections is
/// said instead (0).
fn check_access(args: &JamdArgs, addr: IpAddr) -> ExitCode {
    match ConfigFile::from_args(args).load() {
        Ok(loaded) => {
            let trusted_by = loaded
                .config
                .proxy
                .trusted
                .iter()
                .find(|p| p.contains(addr.to_canonical()));
            if let Some(by) = trusted_by {
                println!(
                    "{addr}: a trusted balancer (by proxy.trusted {by}): its connections are \
                     served, and [access] decides on each client its PROXY header names"
                );
                return ExitCode::SUCCESS;
            }
            let decision = loaded.config.access.list().decide(addr);
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
    }
}
