//! Shell completions (bash, zsh, fish) for both programs, generated from the
//! same clap definitions the binaries parse with, so they cannot drift from
//! the flags. `examples/completions.rs` writes them for the Debian package
//! (`scripts/build-deb`).

use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::{generate_to, Shell};

use crate::client::cli::JamcArgs;
use crate::daemon::cli::JamdArgs;

/// Writes bash, zsh and fish completions for jamd and jamc into `dir`,
/// generated from the same definitions the binaries parse with, and returns
/// the files written.
pub fn write_completions(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        written.push(generate_to(shell, &mut JamdArgs::command(), "jamd", dir)?);
        written.push(generate_to(shell, &mut JamcArgs::command(), "jamc", dir)?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_name_every_long_flag_of_both_programs() {
        let dir = std::env::temp_dir().join(format!("jamd-completions-{}", std::process::id()));
        let files = write_completions(&dir).unwrap();
        assert_eq!(files.len(), 6);
        for (name, cmd) in [("jamd", JamdArgs::command()), ("jamc", JamcArgs::command())] {
            let longs: Vec<String> = cmd
                .get_arguments()
                .filter_map(|a| a.get_long().map(str::to_owned))
                .collect();
            assert!(longs.len() >= 5, "{name}: {longs:?}");
            for file in files.iter().filter(|f| {
                f.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(name))
            }) {
                let text = std::fs::read_to_string(file).unwrap();
                for long in &longs {
                    assert!(
                        text.contains(long.as_str()),
                        "{long} missing in {}",
                        file.display()
                    );
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
