//! Writes shell completions for jamd and jamc, generated from the same clap
//! definitions the binaries use, so they cannot drift from the flags.
//!
//! ```sh
//! cargo run --example completions -- target/completions
//! ```
//!
//! writes `jamd.bash`, `jamc.bash`, `_jamd`, `_jamc`, `jamd.fish`, `jamc.fish`.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .unwrap_or_else(|| "target/completions".into()),
    );
    for path in jamd::completions::write_completions(&dir)? {
        println!("{}", path.display());
    }
    Ok(())
}
