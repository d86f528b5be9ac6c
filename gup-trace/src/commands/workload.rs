//! `gup-trace workload`: the selftest's pin workload alone, to trace from another terminal, and
//! scenarios that leave pins behind on purpose, for `check`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::{
    output,
    workload::{self, WorkloadOptions, ring_handoff},
};

#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WorkloadArgs {
    #[command(subcommand)]
    pub scenario: Option<Scenario>,
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

#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// Register io_uring fixed buffers (FOLL_LONGTERM pins), pass the ring to a child process
    /// over a unix socket (SCM_RIGHTS) and exit at once: the child holds the ring, and the
    /// pins, for --hold seconds. Under `gup-trace check` the pins are orphaned when the hold
    /// outlasts the grace period, and nothing is reported when it does not.
    RingHandoff {
        /// Seconds the child keeps the ring open.
        #[arg(long, default_value_t = 5.0, value_name = "SECS")]
        hold: f64,
        /// Pages to register.
        #[arg(long, default_value_t = 64)]
        pages: usize,
    },
    /// The child of ring-handoff: receives the ring on fd 3 and holds it.
    #[command(hide = true)]
    RingHolder {
        #[arg(long, value_name = "SECS")]
        hold: f64,
    },
}

pub async fn run(args: WorkloadArgs) -> Result<ExitCode> {
    match args.scenario {
        Some(Scenario::RingHandoff { hold, pages }) => {
            let hold = super::seconds(hold, "--hold")?;
            let (holder, how) =
                tokio::task::spawn_blocking(move || ring_handoff::hand_off(pages, hold)).await??;
            println!(
                "ring-handoff: {pages} pages registered, ring handed to pid {holder} for {:.1} s ({})",
                hold.as_secs_f64(),
                match how {
                    ring_handoff::Handover::ScmRights => "over SCM_RIGHTS",
                    ring_handoff::Handover::Inherited =>
                        "inherited: this kernel refuses io_uring fds in SCM_RIGHTS",
                }
            );
            return Ok(ExitCode::SUCCESS);
        }
        Some(Scenario::RingHolder { hold }) => {
            let hold = super::seconds(hold, "--hold")?;
            tokio::task::spawn_blocking(move || ring_handoff::hold_ring(hold)).await??;
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    for round in 1..=args.rounds {
        let opts = args.options();
        let report = tokio::task::spawn_blocking(move || workload::run(&opts)).await??;
        for step in &report.steps {
            println!("round {round}: {}", output::workload_step(step));
        }
    }
    Ok(ExitCode::SUCCESS)
}
