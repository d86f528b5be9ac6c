//! `gup-trace assets --out DIR` (hidden): the man pages and the shell completions, generated
//! from the command line's own definition, so they never drift from it. `cargo xtask package`
//! runs it and puts them in the Debian package.

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context as _, Result};
use clap::Args;
use clap_complete::Shell;

#[derive(Args, Debug)]
pub struct AssetsArgs {
    /// Where to write `man/` (gup-trace.1 and a page per command, gup-trace-serve.1, ...) and
    /// `completions/` (bash, zsh and fish).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// The shells completions are written for, and the file each one's generator names.
pub const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "gup-trace.bash"),
    (Shell::Zsh, "_gup-trace"),
    (Shell::Fish, "gup-trace.fish"),
];

/// Writes the man pages and completions of `cli` (the whole command line) under `args.out`.
pub fn run(mut cli: clap::Command, args: AssetsArgs) -> Result<ExitCode> {
    let man = args.out.join("man");
    let completions = args.out.join("completions");
    for dir in [&man, &completions] {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {} for the assets", dir.display()))?;
    }
    clap_mangen::generate_to(cli.clone(), &man)
        .with_context(|| format!("cannot write the man pages into {}", man.display()))?;
    for (shell, file) in SHELLS {
        let written = clap_complete::generate_to(shell, &mut cli, "gup-trace", &completions)
            .with_context(|| {
                format!(
                    "cannot write the {shell} completions into {}",
                    completions.display()
                )
            })?;
        check_name(&written, file)?;
    }
    println!("{}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// The packaging names the completion files: a generator that changed its file names must
/// fail here, not leave the package without them.
fn check_name(written: &Path, expected: &str) -> Result<()> {
    anyhow::ensure!(
        written.file_name().is_some_and(|n| n == expected),
        "clap_complete wrote {} where {expected} was expected: update commands::assets::SHELLS and the package's assets",
        written.display()
    );
    Ok(())
}
