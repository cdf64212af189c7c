//! check_jam: jamc's clock check by the monitoring-plugins conventions.
//! Command line → check → status line and exit code; nothing else.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let settings = match jamd::client::plugin::parse_args(std::env::args_os()) {
        Ok(settings) => settings,
        Err(exit) => {
            // Not print!: it panics when stdout is closed.
            let _ = std::io::stdout().write_all(exit.stdout.as_bytes());
            let _ = std::io::stderr().write_all(exit.stderr.as_bytes());
            return ExitCode::from(exit.code);
        }
    };
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    ExitCode::from(jamd::client::run(&settings, &mut out, &mut err))
}
