mod bench;
mod build;
mod cmd;
mod demo;
mod kernels;
mod kmod;
mod paths;
mod setup;
mod test;
mod vm;
mod vm_boot;
mod vm_check;
mod vm_run;
mod vm_test;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Developer tasks for gup-trace: set-up, tests in stock-kernel VMs, the demo.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the build and the VM tests need (idempotent; every task runs it first).
    Setup,
    /// Run gup-trace live in a stock-kernel VM over the selftest workload (the main job).
    Demo {
        /// Kernel series to boot (6.1, 6.12, 6.18, another major.minor, an exact release).
        #[arg(long, value_name = "SERIES", default_value = "newest")]
        kernel: String,
        /// Run the `top` dashboard (headless, its screens captured as text) over the workload
        /// and a leak, instead of `trace`; the captures go to target/demo-tui/ and are checked.
        #[arg(long)]
        tui: bool,
        /// With --tui: also load the pinleak test module and leak pins through it (kernels
        /// it builds for: see `cargo xtask kmod`).
        #[arg(long, requires = "tui")]
        kmod: bool,
    },
    /// Unit tests, host tests on this machine's kernel, then the VM matrix.
    Test {
        /// Kernel series for the VM matrix (repeatable; default: 6.1 6.12 6.18 newest).
        #[arg(long = "kernel", value_name = "SERIES")]
        kernels: Vec<String>,
    },
    /// `gup-trace selftest` in stock Debian kernels under QEMU; a table of hooks and totals.
    VmTest {
        /// Kernel series (repeatable; default: 6.1 6.12 6.18 newest).
        #[arg(long = "kernel", value_name = "SERIES")]
        kernels: Vec<String>,
    },
    /// Boot one stock kernel with gup-trace installed and run a shell command in it, the console
    /// shown live (for trying things by hand: `cargo xtask vm-run -- gup-trace probe`).
    VmRun {
        #[arg(long, value_name = "SERIES", default_value = "newest")]
        kernel: String,
        /// Seconds before the guest is killed.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Another host program to put in the guest's /bin (repeatable).
        #[arg(long = "with", value_name = "FILE")]
        with: Vec<std::path::PathBuf>,
        /// Also put the pinleak test module, built for this kernel, at /root/pinleak.ko and
        /// its driver at /bin/pinleak-user (see `cargo xtask kmod`).
        #[arg(long)]
        kmod: bool,
        /// The command, run by busybox sh as root (the NVMe scratch disk is /dev/nvme0n1).
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
    /// Build the pinleak test module (a misc device that leaks FOLL_PIN pins on purpose, from
    /// xtask/fixtures/pinleak) against each kernel's Debian headers package, and pinleak-user,
    /// its static driver. Prints the .ko of each kernel or why it cannot be built here.
    Kmod {
        /// Kernel series (repeatable; default: 6.1 6.12 6.18 newest).
        #[arg(long = "kernel", value_name = "SERIES")]
        kernels: Vec<String>,
    },
    /// Measure what tracing costs (a benchmark: numbers, saved under target/bench/; it fails
    /// only if the run breaks). The vm section boots one stock kernel under QEMU and runs
    /// pin/unpin, O_DIRECT and io_uring fixed-buffer workloads untraced vs traced; the host
    /// section replays a synthetic recording through the engine, measures memory per pinned
    /// folio and the recording writer, on this machine.
    Bench(bench::Options),
    /// Boot stock Debian kernels in QEMU with a minimal initramfs and print a table
    /// (a check of the VM plumbing that vm-test and demo use).
    VmBoot {
        /// Kernel series to boot: 6.1, 6.12, 6.18, another major.minor, an exact release, or
        /// "newest". Repeatable; default: 6.1 6.12 6.18 newest.
        #[arg(long = "kernel", value_name = "SERIES")]
        kernels: Vec<String>,
        /// Show each guest's console as it boots.
        #[arg(long)]
        echo: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    setup::ensure()?;
    match cli.command {
        Task::Setup => Ok(()),
        Task::VmBoot { kernels, echo } => vm_boot::vm_boot(&kernels, echo),
        Task::VmRun {
            kernel,
            timeout,
            with,
            kmod,
            command,
        } => vm_run::vm_run(&kernel, timeout, &with, kmod, &command.join(" ")),
        Task::Kmod { kernels } => kmod::run_kmod(&kernels),
        Task::Demo { kernel, tui, kmod } => {
            if tui {
                demo::run_tui(Some(&kernel), kmod)
            } else {
                demo::run(Some(&kernel))
            }
        }
        Task::Test { kernels } => test::run_all(&kernels),
        Task::VmTest { kernels } => vm_test::run(&kernels),
        Task::Bench(opts) => bench::run(&opts),
    }
}
