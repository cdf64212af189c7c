//! jamd: the daemon. Command line → `daemon::run` → exit status; nothing else.

use std::process::ExitCode;

fn main() -> ExitCode {
    jamd::daemon::run(std::env::args_os())
}
