//! `cargo xtask vm-run`: one stock kernel booted with gup-trace installed, one shell command
//! run in it, the console shown live (for trying things by hand).

use std::{path::PathBuf, time::Duration};

use anyhow::{Result, anyhow, bail};

use crate::{
    build, kernels, kmod,
    paths::vm_dir,
    vm::{self, Boot, VERDICT_PREFIX},
};

/// `cargo xtask vm-run`: one guest, gup-trace installed, one command, the console live.
pub fn vm_run(
    series: &str,
    timeout_secs: u64,
    with: &[PathBuf],
    kmod: bool,
    command: &str,
) -> Result<()> {
    let binary = build::gup_trace_release()?;
    let kernel = kernels::resolve(&[series])?.remove(0);
    let initramfs = vm_dir().join("vm-run.cpio.gz");
    let script =
        format!("echo \"uname: $(uname -r)\"\n{command}\necho \"GUPTRACE-RESULT exit=$?\"\n");
    let mut files = vec![(binary, "/bin/gup-trace".to_string())];
    for extra in with {
        let name = extra
            .file_name()
            .ok_or_else(|| anyhow!("--with {}: not a file", extra.display()))?;
        files.push((extra.clone(), format!("/bin/{}", name.to_string_lossy())));
    }
    if kmod {
        files.extend(kmod::guest_files(&kernel)?);
    }
    vm::build_initramfs(&initramfs, &files, &script)?;
    let console = vm::boot(&Boot {
        kernel: kernel.vmlinuz.clone(),
        initramfs,
        disk_mb: 64,
        memory_mb: 1024,
        timeout: Duration::from_secs(timeout_secs),
        echo: true,
    })?;
    match console.find(VERDICT_PREFIX) {
        Some("exit=0") => Ok(()),
        other => bail!("the command did not succeed in the guest ({other:?})"),
    }
}
