//! Creating directories and writing files, with errors that name the path: the file-system
//! counterpart of `cmd`, below every module that writes under `target/`.

use std::{fs, path::Path};

use anyhow::{Context as _, Result};

/// `mkdir -p dir`.
pub fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Writes `contents` to `path`, replacing what was there.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}
