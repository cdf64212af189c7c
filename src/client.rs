//! What jamc does, without argument parsing ([`cli`] holds the clap
//! definition, [`cli::JamcArgs`], and resolves it into [`cli::Settings`]):
//!
//! - [`net`]: resolving, connecting and reading reply lines, within deadlines;
//! - [`query`]: one conversation, and `-P` clients at once;
//! - [`output`]: how replies are printed (plain, `--raw`, `--json`);
//! - [`check`]: `--check`, the monitoring-plugins status line; [`reading`]
//!   reads the server's time from a reply and measures its offset;
//! - [`conformance`]: `--conformance`, is this a JAM server? (a TAP report);
//! - [`error`]: every failure as a [`ClientError`] whose `Display` says what
//!   happened in words.
//!
//! Every wait is bounded by `--timeout`: name resolution, connecting (all
//! addresses of a host in turn, each given an equal share of the time left) and
//! the first reply share one deadline, and each later reply on the same
//! connection (`-n`) gets the timeout again. So `jamc -w 5` with one request
//! never takes much more than 5 s.

pub mod check;
pub mod cli;
pub mod conformance;
pub mod error;
pub mod net;
pub mod output;
pub mod query;
pub mod reading;

use std::io::Write;
use std::time::Instant;

pub use error::{ClientError, ClientErrorKind, ConnectFailure};
pub use net::{connect, resolve, Reply, MAX_REPLY_BYTES};
pub use query::{query, Flow};

use cli::{Mode, Settings};
use output::Output;

/// Runs jamc with checked settings, writing to `out` and `err`; returns the exit code.
pub fn run(settings: &Settings, out: &mut (dyn Write + Send), err: &mut (dyn Write + Send)) -> u8 {
    if let Mode::Conformance { strict } = settings.mode {
        let options = conformance::Options {
            target: settings.target.clone(),
            family: settings.family,
            strict,
        };
        return conformance::run(&options, out);
    }
    let output = Output::new(out, err);
    if let Mode::Check(check) = &settings.mode {
        let (status, line) = check::run(settings, check);
        let _ = output.out(format!("{line}\n").as_bytes());
        return status.code();
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
        let mut print = |reply: &Reply| output.reply(settings, 1, reply);
        return match query(settings, &addrs, started, &mut print) {
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
