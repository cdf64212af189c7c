//! jamc: ask a JAM time server the time. Command line → client → exit code.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Run as check_jam (a link in the plugin directory): the plugin's options.
    let as_plugin = std::env::args_os()
        .next()
        .is_some_and(|argv0| jamd::client::plugin::invoked_as_plugin(&argv0));
    let parsed = if as_plugin {
        jamd::client::plugin::parse_args(std::env::args_os())
    } else {
        jamd::client::cli::parse_args(std::env::args_os())
    };
    let settings = match parsed {
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
