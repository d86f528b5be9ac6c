//! Small helpers for running external programs with errors that name the command.

use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, Result, bail};

/// Runs `cmd` with inherited stdio and fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("failed to start {}", describe(cmd)))?;
    if !status.success() {
        bail!("{} failed: {status}", describe(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; stderr is passed through. Fails unless it exits 0.
pub fn output(cmd: &mut Command) -> Result<String> {
    let Output { status, stdout, .. } = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("failed to start {}", describe(cmd)))?;
    if !status.success() {
        bail!("{} failed: {status}", describe(cmd));
    }
    String::from_utf8(stdout).with_context(|| format!("{} printed non-UTF-8", describe(cmd)))
}

/// Runs `cmd` and returns its status and what it printed (stdout and stderr piped unless the
/// caller set them), whatever the status: for callers that read a failure's output. Fails only
/// when `cmd` cannot be started.
pub fn capture(cmd: &mut Command) -> Result<Output> {
    cmd.output()
        .with_context(|| format!("failed to start {}", describe(cmd)))
}

/// Whether `cmd` can be started and exits 0, with all output discarded.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}
