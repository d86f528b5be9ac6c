//! `gup-trace workload`: the selftest's pin workload alone, to trace from another terminal.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::Args;

use crate::{
    output,
    workload::{self, WorkloadOptions},
};

#[derive(Args, Debug, Clone)]
pub struct WorkloadArgs {
    /// Block device or file for the O_DIRECT step (default: /dev/nvme0n1, /dev/vda or
    /// /dev/sda, else a temporary file).
    #[arg(long, value_name = "PATH")]
    pub device: Option<PathBuf>,
    /// A directory on a FAT file system: its O_DIRECT reads go through the legacy
    /// fs/direct-io.c, which adds pins with folio_add_pin (the step is skipped without it).
    #[arg(long, value_name = "DIR")]
    pub legacy_dio_dir: Option<PathBuf>,
    /// Repeat the workload this many times.
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
}

impl WorkloadArgs {
    pub fn options(&self) -> WorkloadOptions {
        WorkloadOptions {
            direct_io_path: self.device.clone(),
            legacy_dio_dir: self.legacy_dio_dir.clone(),
            ..WorkloadOptions::default()
        }
    }
}

pub async fn run(args: WorkloadArgs) -> Result<ExitCode> {
    for round in 1..=args.rounds {
        let opts = args.options();
        let report = tokio::task::spawn_blocking(move || workload::run(&opts)).await??;
        for step in &report.steps {
            println!("round {round}: {}", output::workload_step(step));
        }
    }
    Ok(ExitCode::SUCCESS)
}
