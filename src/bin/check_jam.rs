//! check_jam: jamc's clock check by the monitoring-plugins conventions.
//! Command line → check → status line and exit code; nothing else.

use std::process::ExitCode;

fn main() -> ExitCode {
    let parsed = jamd::client::plugin::parse_args(std::env::args_os());
    ExitCode::from(jamd::client::run_parsed(parsed))
}
