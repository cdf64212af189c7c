//! Start-up, in order. [`start`] reads as the list of steps; each step that
//! takes more than a few lines is a function below it. A new step goes into
//! that list where its comment says why it must come there.

use std::fmt::Display;
use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Duration;

use super::inetd::{self, ByteStream, Inetd};
use crate::config::{Config, LogConfig};
use crate::listen::{self, Activation, Sockets};
use crate::listener::{show_addr, Protocol};
use crate::log::Logger;

use super::cli::JamdArgs;
use super::config_file::ConfigFile;
use super::confine::{self, Identity, OpenFiles};
use super::notify::Notifier;
use super::signals::Signals;
use super::EX_CONFIG;

/// Everything start-up hands to the control loop.
pub struct Started {
    /// The signal handlers, installed.
    pub signals: Signals,
    /// The sockets to serve: inherited or bound.
    pub sockets: Sockets,
    /// The `[metrics] listen` socket, bound, when metrics are on.
    pub metrics: Option<TcpListener>,
    /// `--inetd` on a byte stream that is not TCP (pipes, a socketpair):
    /// served by [`inetd::serve`] instead of the workers, and then
    /// `sockets` is empty.
    pub stream: Option<ByteStream>,
    /// The effective configuration.
    pub config: Config,
    /// Where the configuration came from, to read it again on SIGHUP.
    pub config_file: ConfigFile,
    /// The log, configured.
    pub log: Logger,
    /// The service manager, if one listens.
    pub notifier: Notifier,
    /// Standard I/O is a client connection: nothing may be written to it.
    pub stdio_is_client: bool,
}

/// A failure to start: the exit status and the one line that says why.
#[derive(Debug)]
pub struct Fatal {
    code: u8,
    why: String,
    stdio_is_client: bool,
}

impl Fatal {
    fn new(code: u8, why: impl Display, stdio_is_client: bool) -> Fatal {
        Fatal {
            code,
            why: why.to_string(),
            stdio_is_client,
        }
    }

    /// Reports the failure in one line and returns the exit status. When
    /// standard I/O is a client the line goes to syslog instead of stderr.
    pub fn report(self) -> ExitCode {
        if self.stdio_is_client {
            let log = Logger::start(&LogConfig::default(), true);
            log.error(self.why);
            log.flush(Duration::from_secs(1));
        } else {
            eprintln!("jamd: {}", self.why);
        }
        ExitCode::from(self.code)
    }
}

/// Log lines from the steps before the log exists, held for it.
#[derive(Default)]
struct Held {
    warnings: Vec<String>,
}

/// Runs start-up up to the point where the workers can be started.
pub fn start(args: &JamdArgs) -> Result<Started, Fatal> {
    // Inherited sockets first: whether standard I/O is a client decides
    // where every later message may go.
    // inetd hands the client to standard error too; socat and a shell do
    // not, and then start-up errors can be printed there (jamd(8), INETD).
    let stderr_is_client = args.inetd && inetd::stderr_is_client();
    let mut held = Held::default();
    let (inherited, stream) = inherited_sockets(args, &mut held, stderr_is_client)?;
    // Only now a descriptor of jamd's own (the signal pipe): created
    // earlier it could sit where LISTEN_FDS says a passed socket is, and be
    // taken for one (jamd(8), SOCKET ACTIVATION). Still before anything
    // can announce that jamd is up: a signal sent right after the first
    // log line must find its handler in place.
    let signals = Signals::install()
        .map_err(|e| Fatal::new(1, format!("cannot install signal handlers: {e}"), false))?;
    let stdio_is_client = if args.inetd {
        stderr_is_client
    } else {
        matches!(&inherited, Some(Inherited::Manager(a)) if a.is_connection())
    };
    if stdio_is_client {
        // Closing the connection must really close it, and nothing printed may reach it.
        if let Err(e) = crate::sys::detach_stdio_sockets() {
            held.warnings
                .push(format!("cannot detach standard I/O from the client: {e}"));
        }
    }

    // The configuration: a broken one stops jamd here, with EX_CONFIG.
    let mut config_file = ConfigFile::from_args(args);
    let loaded = config_file
        .load()
        .map_err(|why| Fatal::new(EX_CONFIG, why, stdio_is_client))?;
    if !loaded.missing_default {
        config_file.require();
    }
    let config = loaded.config;

    // Who jamd will run as, and the open-file limit: an unknown user or
    // group is a configuration error before anything is bound.
    let (identity, open_files) = resources(&config, &mut held, stdio_is_client)?;

    // The log, and what the steps before it had to say.
    let log = Logger::start(&config.log, stdio_is_client);
    if loaded.missing_default {
        log.info(format!(
            "no configuration file at {}; using built-in defaults",
            config_file.path().display()
        ));
    }
    for w in held.warnings.iter().chain(config.warnings().iter()) {
        log.warn(w.clone());
    }

    // The sockets to serve: the inherited ones, or our own.
    let sockets = match inherited {
        Some(Inherited::Inetd(sockets)) => {
            announce_inherited(&sockets, "inetd", &log);
            sockets
        }
        Some(Inherited::Manager(activation)) => {
            // What each passed socket serves: its name, or the
            // configuration's listener at its address.
            let mut warnings = Vec::new();
            let sockets = activation.resolve(&config, &mut warnings);
            for w in warnings {
                log.warn(w);
            }
            let sockets = sockets.map_err(|why| {
                log.flush(Duration::from_millis(500));
                Fatal::new(1, why, stdio_is_client)
            })?;
            let used = match &sockets {
                Sockets::Listeners(l) => l.len(),
                Sockets::Connection(..) | Sockets::Datagrams(_) => 1,
            };
            log.info(format!("using {used} socket(s) from the service manager"));
            announce_inherited(&sockets, "the service manager", &log);
            if let Some(notice) = listen::activation_differs(&sockets, &config.server) {
                log.info(notice);
            }
            sockets
        }
        None if stream.is_some() => Sockets::Listeners(Vec::new()),
        None => bind(&config, &log, stdio_is_client)?,
    };

    // The metrics socket, bound like the JAM listeners so that a taken
    // address stops jamd here rather than surprising anyone later.
    let metrics = bind_metrics(&config, &sockets, &log, stdio_is_client)?;

    let notifier = service_manager(&log);

    // Last, once every socket is open (ports below 1024 need root): give up
    // root for server.user, and say when the open-file limit is too low.
    confine_step(
        &config,
        &config_file,
        (&sockets, stream.is_some()),
        identity,
        open_files,
        &log,
        stdio_is_client,
    )?;

    Ok(Started {
        signals,
        sockets,
        metrics,
        stream,
        config,
        config_file,
        log,
        notifier,
        stdio_is_client,
    })
}

/// Resolves `server.user` / `server.group` (78 on an unknown name) and
/// raises the soft open-file limit to the hard one.
fn resources(
    config: &Config,
    held: &mut Held,
    stdio_is_client: bool,
) -> Result<(Identity, OpenFiles), Fatal> {
    let identity = confine::identity(&config.server, &mut held.warnings)
        .map_err(|why| Fatal::new(EX_CONFIG, why, stdio_is_client))?;
    Ok((identity, confine::raise_open_file_limit()))
}

/// Warns when `max_connections` cannot fit under the open-file limit, then
/// becomes `server.user` (logging `running as USER:GROUP`) and warns when
/// that user cannot read the configuration file.
fn confine_step(
    config: &Config,
    config_file: &ConfigFile,
    (sockets, stream): (&Sockets, bool),
    identity: Identity,
    open_files: OpenFiles,
    log: &Logger,
    stdio_is_client: bool,
) -> Result<(), Fatal> {
    // One client (inetd, Accept=yes) needs no more than a few descriptors.
    if let (Sockets::Listeners(listeners), false) = (sockets, stream) {
        let warning = confine::open_file_warning(
            open_files,
            config.server.max_connections,
            confine::open_descriptors().unwrap_or(0),
            config.server.worker_count(),
            listeners.len(),
        );
        if let Some(w) = warning {
            log.warn(w);
        }
    }
    if let Identity::Become(account) = identity {
        if let Err(why) = confine::become_user(&account) {
            log.flush(Duration::from_millis(500));
            return Err(Fatal::new(1, why, stdio_is_client));
        }
        log.info(format!("running as {account}"));
        if let Some(w) = confine::unreadable_config(config_file.path(), &account) {
            log.warn(w);
        }
    }
    Ok(())
}

/// Sockets jamd did not open itself.
enum Inherited {
    /// From inetd (`--inetd`), serving `--protocol`.
    Inetd(Sockets),
    /// From a service manager (`LISTEN_FDS`); what each serves is decided
    /// once the configuration is read.
    Manager(Activation),
}

/// The sockets inetd (`--inetd`) or a service manager (`LISTEN_FDS`) passed,
/// if any, or the byte stream `--inetd` found instead of a TCP socket.
fn inherited_sockets(
    args: &JamdArgs,
    held: &mut Held,
    stderr_is_client: bool,
) -> Result<(Option<Inherited>, Option<ByteStream>), Fatal> {
    if args.inetd {
        return match inetd::from_stdin(args.protocol.unwrap_or(Protocol::Jam)) {
            Ok(Inetd::Sockets(s)) => Ok((Some(Inherited::Inetd(s)), None)),
            Ok(Inetd::Stream(stream)) => Ok((None, Some(stream))),
            Err(why) => Err(Fatal::new(1, why, stderr_is_client)),
        };
    }
    match listen::from_service_manager(&mut held.warnings) {
        Ok(Some(activation)) => Ok((Some(Inherited::Manager(activation)), None)),
        Ok(None) => Ok((None, None)),
        Err(why) => {
            // There is no log yet; the warnings may explain the error.
            for w in &held.warnings {
                eprintln!("jamd: warning: {w}");
            }
            Err(Fatal::new(1, why, false))
        }
    }
}

/// Logs a `listening on` line per inherited listener, saying `from` whom.
fn announce_inherited(sockets: &Sockets, from: &str, log: &Logger) {
    let listeners = match sockets {
        Sockets::Listeners(listeners) => &listeners[..],
        Sockets::Datagrams(one) => std::slice::from_ref(one),
        Sockets::Connection(..) => return,
    };
    for l in listeners {
        if let Some(line) = l.announcement(None, Some(from)) {
            log.info(line);
        }
    }
}

/// Binds `server.bind` × `server.port` and logs a `listening on` line for each.
fn bind(config: &Config, log: &Logger, stdio_is_client: bool) -> Result<Sockets, Fatal> {
    match listen::bind_all(config) {
        Ok(bound) => {
            for w in bound.skip_warnings() {
                log.warn(w);
            }
            for l in &bound.listeners {
                if let Some(line) = l.announcement(Some(config.server.backlog), None) {
                    log.info(line);
                }
            }
            Ok(Sockets::Listeners(bound.listeners))
        }
        Err(why) => {
            // The lines logged so far go out before the error line.
            log.flush(Duration::from_millis(500));
            Err(Fatal::new(1, why, stdio_is_client))
        }
    }
}

/// Binds `metrics.listen`, if set. Not when serving a single inherited
/// connection (inetd `nowait`, `Accept=yes`): one jamd runs per connection
/// then, and they would race for the one port.
fn bind_metrics(
    config: &Config,
    sockets: &Sockets,
    log: &Logger,
    stdio_is_client: bool,
) -> Result<Option<TcpListener>, Fatal> {
    let Some(addr) = config.metrics.listen else {
        return Ok(None);
    };
    if let Sockets::Connection(..) | Sockets::Datagrams(_) = sockets {
        log.info("metrics.listen is not used when serving a single connection");
        return Ok(None);
    }
    TcpListener::bind(addr).map(Some).map_err(|e| {
        log.flush(Duration::from_millis(500));
        Fatal::new(
            1,
            format!(
                "cannot serve metrics on {}: {e}{}",
                show_addr(&addr),
                metrics_bind_advice(&e)
            ),
            stdio_is_client,
        )
    })
}

/// What to do about a metrics address that cannot be bound: the advice the
/// JAM listener's error gives (`listen::ListenError`), for `metrics.listen`.
fn metrics_bind_advice(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => {
            "; another program (or another jamd) holds this port: stop it, or choose another port (metrics.listen)"
        }
        Some(libc::EACCES) => crate::listen::PRIVILEGED_PORT_ADVICE,
        Some(libc::EADDRNOTAVAIL) => {
            "; the address is not on this host: check metrics.listen (ip address shows the host's addresses)"
        }
        _ => "",
    }
}

/// The service manager's notification socket and watchdog, from the environment.
fn service_manager(log: &Logger) -> Notifier {
    let mut warnings = Vec::new();
    let notifier = Notifier::from_env(&mut warnings);
    for w in warnings {
        log.warn(w);
    }
    notifier
}
