//! Which configuration file jamd reads, remembered from the command line and
//! the start for `-t`, start-up and every reload.

use std::path::{Path, PathBuf};

use crate::config::{self, ConfigError, Loaded, Overrides, DEFAULT_PATH};

use super::cli::JamdArgs;

/// The configuration's source: a file, with the command line on top.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    /// A missing file is an error: it was named with `-c`, or it was there
    /// at start (deleting it later must not silently bring the defaults back).
    required: bool,
    overrides: Overrides,
}

impl ConfigFile {
    /// `-c FILE` (required) or the default path (optional), and `-p`, `-b`, `--log`.
    pub fn from_args(args: &JamdArgs) -> ConfigFile {
        ConfigFile {
            required: args.config.is_some(),
            path: args
                .config
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH)),
            overrides: args.overrides(),
        }
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file, or takes the built-in defaults when the file is
    /// optional and missing, then applies the command line
    /// ([`config::load`] decides what "missing" means).
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        config::load(&self.path, self.required, &self.overrides)
    }

    /// From now on a missing file is an error (it was found at start).
    pub fn require(&mut self) {
        self.required = true;
    }
}
