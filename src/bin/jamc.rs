//! jamc: ask a JAM time server the time. Command line → client → exit code.

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
    ExitCode::from(jamd::client::run_parsed(parsed))
}
