//! What jamc does, without argument parsing ([`cli`] holds the clap
//! definition, [`cli::JamcArgs`], and resolves it into [`cli::Settings`]):
//!
//! - [`net`]: resolving, connecting and reading reply lines, within deadlines;
//! - [`query`](mod@query): one conversation, and `-P` clients at once;
//! - [`output`]: how replies are printed (plain, `--raw`, `--json`);
//! - [`check`]: `--check`, one server or several, the monitoring-plugins
//!   report; [`reading`] reads the server's time from a reply, [`estimate`]
//!   turns replies into an offset and its uncertainty (pure), and
//!   [`thresholds`] holds `--warning`/`--critical` in the plugins' range syntax;
//! - [`plugin`]: `check_jam`, the check with the monitoring plugins' options;
//! - [`conformance`]: `--conformance`, is this a JAM server? (a TAP report);
//! - [`error`]: every failure as a [`ClientError`] whose `Display` says what
//!   happened in words.
//!
//! Every wait is bounded by `--timeout`: name resolution, connecting (all
//! addresses of a host in turn, each given an equal share of the time left) and
//! the first reply share one deadline, and each later reply on the same
//! connection (`-n`) gets the timeout again. So `jamc -w 5` with one request
//! never takes much more than 5 s.

pub mod answer;
pub(crate) mod check;
pub mod cli;
pub(crate) mod conformance;
pub(crate) mod error;
pub(crate) mod escape;
pub(crate) mod estimate;
pub mod net;
pub(crate) mod output;
pub mod plugin;
pub(crate) mod query;
pub mod reading;
pub(crate) mod sampling;
pub(crate) mod textfile;
pub(crate) mod thresholds;
pub(crate) mod wire;

use std::io::Write;
use std::thread;
use std::time::Instant;

pub use error::ClientError;
pub use net::connect;
pub(crate) use net::{resolve, Reply};
pub(crate) use query::query;

use cli::{CheckSettings, Mode, Settings, Target};
use output::Output;

/// What jamc and check_jam do with their parsed command line: write an early
/// exit's text, or run the settings on stdout and stderr; returns the exit code.
pub fn run_parsed(parsed: Result<Settings, cli::EarlyExit>) -> u8 {
    match parsed {
        Ok(settings) => run(&settings, &mut std::io::stdout(), &mut std::io::stderr()),
        Err(exit) => {
            // Not print!: it panics when stdout is closed.
            let _ = std::io::stdout().write_all(exit.stdout.as_bytes());
            let _ = std::io::stderr().write_all(exit.stderr.as_bytes());
            exit.code
        }
    }
}

/// Runs jamc with checked settings, writing to `out` and `err`; returns the exit code.
pub(crate) fn run(
    settings: &Settings,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> u8 {
    if let Mode::Conformance { strict } = settings.mode {
        let options = conformance::Options {
            target: settings.target.clone(),
            family: settings.family,
            source: settings.source,
            strict,
        };
        return conformance::run(&options, out);
    }
    let output = Output::new(out, err);
    if let Mode::Check(check) = &settings.mode {
        return run_check(settings, check, &output);
    }
    if settings.targets.len() > 1 {
        return run_several(settings, &output);
    }

    let started = Instant::now();
    let addrs = match resolve(
        &settings.target,
        settings.family,
        started + settings.timeout,
    ) {
        Ok(addrs) => addrs,
        Err(e) => {
            output.err(&format!("jamc: {e}\n"));
            return 1;
        }
    };

    let Some(clients) = settings.parallel else {
        let mut print = |reply: &Reply| output.reply(settings, &settings.target, 1, "", reply);
        return match query(settings, &settings.target, &addrs, started, &mut print) {
            Ok(()) => 0,
            Err(e) => {
                output.err(&format!("jamc: {e}\n"));
                1
            }
        };
    };

    let ok = query::parallel(settings, &addrs, clients, &output);
    output.err(&format!(
        "{ok}/{clients} clients ok in {:.3} s\n",
        started.elapsed().as_secs_f64()
    ));
    if ok == clients {
        0
    } else {
        1
    }
}

/// `--check`: every server at once, the report on stdout, the worst state as exit code.
fn run_check(settings: &Settings, check: &CheckSettings, output: &Output<'_>) -> u8 {
    let timed = sampling::measure_all(settings, check);
    let outcomes: Vec<check::Outcome> = timed.iter().map(|(o, _)| o.clone()).collect();
    let (status, lines) = check::report(&outcomes, &check.thresholds, check.verbose);
    let mut text = lines.join("\n");
    text.push('\n');
    let _ = output.out(text.as_bytes());
    if let Some(path) = &check.textfile {
        let metrics = textfile::render(&timed, &check.thresholds, std::time::SystemTime::now());
        if let Err(e) = textfile::write_atomically(path, &metrics) {
            // The check's state stands; the file that could not be written is said on stderr.
            output.err(&format!(
                "jamc: cannot write --textfile {}: {e}\n",
                path.display()
            ));
            return match status {
                thresholds::Status::Ok => thresholds::Status::Unknown.code(),
                worse => worse.code(),
            };
        }
    }
    status.code()
}

/// Several servers, asked at once; each one's lines (`HOST:PORT 14:03:27`)
/// printed in the order the servers were given. Exit 1 if any failed.
fn run_several(settings: &Settings, output: &Output<'_>) -> u8 {
    let ask = |target: &Target| -> (Vec<u8>, Vec<u8>, bool) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let ok = {
            let mine = Output::new(&mut out, &mut err);
            let prefix = format!("{target} ");
            let started = Instant::now();
            let result =
                resolve(target, settings.family, started + settings.timeout).and_then(|addrs| {
                    let mut print = |reply: &Reply| mine.reply(settings, target, 1, &prefix, reply);
                    query(settings, target, &addrs, started, &mut print)
                });
            match result {
                Ok(()) => true,
                Err(e) => {
                    mine.err(&format!("jamc: {e}\n"));
                    false
                }
            }
        };
        (out, err, ok)
    };
    let results: Vec<(Vec<u8>, Vec<u8>, bool)> = thread::scope(|scope| {
        let handles: Vec<_> = settings
            .targets
            .iter()
            .map(|t| (t, scope.spawn(move || ask(t))))
            .collect();
        handles
            .into_iter()
            .map(|(t, h)| {
                h.join().unwrap_or_else(|_| {
                    (
                        Vec::new(),
                        format!("jamc: {t}: failed\n").into_bytes(),
                        false,
                    )
                })
            })
            .collect()
    });
    let mut all_ok = true;
    for (out, err, ok) in results {
        let _ = output.out(&out);
        output.err(&String::from_utf8_lossy(&err));
        all_ok &= ok;
    }
    u8::from(!all_ok)
}
