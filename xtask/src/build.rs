//! Building the gup-trace binary the VMs run.

use std::{path::PathBuf, process::Command};

use anyhow::Result;

use crate::{cmd::run, paths::workspace_root, setup::USER_TOOLCHAIN};

/// `cargo build --release -p gup-trace` with the pinned toolchain; returns the binary's path.
/// Its build script builds the eBPF object with the pinned nightly.
pub fn gup_trace_release() -> Result<PathBuf> {
    println!("xtask: building gup-trace (release)");
    run(cargo().args(["build", "--release", "--quiet", "-p", "gup-trace"]))?;
    Ok(workspace_root().join("target/release/gup-trace"))
}

/// `cargo` with the toolchain aya 0.16 needs, whatever the machine's default is.
pub fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(format!("+{USER_TOOLCHAIN}"))
        .current_dir(workspace_root());
    cmd
}
