//! `cargo xtask vm-run`: one stock kernel booted with gup-trace installed, one shell command
//! run in it, the console shown live (for trying things by hand).

use std::{path::PathBuf, time::Duration};

use anyhow::{Result, anyhow, bail};

use crate::{
    build, kmod,
    paths::vm_dir,
    series::KernelSeries,
    vm::{self, Boot, VERDICT_PREFIX},
};

/// `cargo xtask vm-run`'s flags.
#[derive(clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub kernel: KernelSeries,
    /// Seconds before the guest is killed.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Another host program to put in the guest's /bin (repeatable).
    #[arg(long = "with", value_name = "FILE")]
    pub with: Vec<PathBuf>,
    /// Also put the pinleak test module, built for this kernel, at /root/pinleak.ko and
    /// its driver at /bin/pinleak-user (see `cargo xtask kmod`).
    #[arg(long)]
    pub kmod: bool,
    /// More kernel command line (e.g. `movablecore=256M`, `hugetlb_cma=1G`), after the
    /// defaults.
    #[arg(long, value_name = "PARAMS")]
    pub append: Option<String>,
    /// Guest memory in MiB (default: the matrix's).
    #[arg(long, value_name = "MIB")]
    pub memory_mb: Option<u64>,
    /// The command, run by busybox sh as root (the NVMe scratch disk is /dev/nvme0n1).
    #[arg(trailing_var_arg = true, required = true)]
    pub command: Vec<String>,
}

pub fn run(opts: &Options) -> Result<()> {
    let binary = build::gup_trace_release()?;
    let kernel = opts.kernel.resolve()?;
    let initramfs = vm_dir().join("vm-run.cpio.gz");
    let command = opts.command.join(" ");
    let script =
        format!("echo \"uname: $(uname -r)\"\n{command}\necho \"GUPTRACE-RESULT exit=$?\"\n");
    let mut files = vec![(binary, "/bin/gup-trace".to_string())];
    for extra in &opts.with {
        let name = extra
            .file_name()
            .ok_or_else(|| anyhow!("--with {}: not a file", extra.display()))?;
        files.push((extra.clone(), format!("/bin/{}", name.to_string_lossy())));
    }
    if opts.kmod {
        files.extend(kmod::guest_files(&kernel)?);
    }
    vm::build_initramfs(&initramfs, &files, &script)?;
    let mut boot = Boot::new(&kernel, initramfs, Duration::from_secs(opts.timeout));
    boot.echo = true;
    boot.cmdline = opts.append.clone().unwrap_or_default();
    if let Some(mb) = opts.memory_mb {
        boot.memory_mb = mb;
    }
    let console = vm::boot(&boot)?;
    match console.find(VERDICT_PREFIX) {
        Some("exit=0") => Ok(()),
        other => bail!("the command did not succeed in the guest ({other:?})"),
    }
}
