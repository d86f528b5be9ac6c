//! `cargo xtask`: the developer tasks of gup-trace. Each task is a module that owns its flags
//! (`Options`) and its `run`; below them sit the layers they share: `vm` (QEMU, the initramfs,
//! the console), `kernels` (stock Debian kernels), `kmod` (the pinleak test module), `build`,
//! `series` (the `--kernel` flag), `paths`, `cmd`.

mod bench;
mod build;
mod cmd;
mod debroot;
mod demo;
mod files;
mod fuzz;
mod kernels;
mod kmod;
mod package;
mod paths;
mod series;
mod setup;
mod test;
mod vm;
mod vm_blocking;
mod vm_boot;
mod vm_check;
mod vm_cma;
mod vm_run;
mod vm_sessions;
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
    /// Install what the build and the VM tests need (idempotent; every task runs the packages
    /// and toolchains part first), and the Debian 13 build root of the pinleak module.
    Setup,
    /// Run gup-trace live in a stock-kernel VM over the selftest workload (the main job).
    Demo(demo::Options),
    /// Unit tests, host tests on this machine's kernel, the Debian package installed into a
    /// clean Debian 12 root, each fuzz target for 20 s, then the VM matrix.
    Test(test::Options),
    /// Build the Debian package (cargo-deb, installed first if missing): the binary, the
    /// gup-trace-serve systemd unit (not enabled), man pages, bash/zsh/fish completions and the
    /// Prometheus files. Prints the .deb's path.
    Package(package::Options),
    /// Run the cargo-fuzz targets (recording reader, ring-buffer decoder, engine) for a while
    /// each; installs cargo-fuzz first. Fails with the input and how to reproduce on a crash.
    Fuzz(fuzz::Options),
    /// `gup-trace selftest` in stock Debian kernels under QEMU; a table of hooks and totals.
    VmTest(vm_test::Options),
    /// Boot one stock kernel with gup-trace installed and run a shell command in it, the console
    /// shown live (for trying things by hand: `cargo xtask vm-run -- gup-trace probe`).
    VmRun(vm_run::Options),
    /// Build the pinleak test module (a misc device that leaks FOLL_PIN pins on purpose, from
    /// xtask/fixtures/pinleak) against each kernel's Debian headers package, and pinleak-user,
    /// its static driver. Prints the .ko of each kernel or why it cannot be built here.
    Kmod(kmod::Options),
    /// Measure what tracing costs (a benchmark: numbers, saved under target/bench/; it fails
    /// only if the run breaks). The vm section boots one stock kernel under QEMU and runs
    /// pin/unpin, O_DIRECT and io_uring fixed-buffer workloads untraced vs traced; the host
    /// section replays a synthetic recording through the engine, measures memory per pinned
    /// folio and the recording writer, on this machine.
    Bench(bench::Options),
    /// Boot stock Debian kernels in QEMU with a minimal initramfs and print a table
    /// (a check of the VM plumbing that vm-test and demo use).
    VmBoot(vm_boot::Options),
    /// Only vm-test's "what pins block" scenarios (movablecore, scsi_debug, io_uring) on the
    /// chosen kernels.
    VmBlocking(vm_test::ScenarioOptions),
    /// Only vm-test's CMA scenario (hugetlb_cma, a gigantic page blocked by dd's O_DIRECT
    /// pin) on the chosen kernels; kernels without the cma tracepoints skip it.
    VmCma(vm_test::ScenarioOptions),
    /// Only vm-test's session scenarios (serve, record, trace and check at once against
    /// /proc/vmstat; SIGKILL leaves no BPF object; lost events make check's verdict 2) on the
    /// chosen kernels (vm-test runs them on its oldest and newest kernel).
    VmSessions(vm_test::ScenarioOptions),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    setup::ensure()?;
    match cli.command {
        Task::Setup => setup::run_setup(),
        Task::Demo(opts) => demo::run(&opts),
        Task::Test(opts) => test::run(&opts),
        Task::Package(opts) => package::run(&opts),
        Task::Fuzz(opts) => fuzz::run_fuzz(&opts),
        Task::VmTest(opts) => vm_test::run(&opts),
        Task::VmRun(opts) => vm_run::run(&opts),
        Task::Kmod(opts) => kmod::run(&opts),
        Task::Bench(opts) => bench::run(&opts),
        Task::VmBoot(opts) => vm_boot::run(&opts),
        Task::VmBlocking(opts) => vm_test::run_alone::<vm_blocking::BlockingRow>(&opts),
        Task::VmCma(opts) => vm_test::run_alone::<vm_cma::CmaRow>(&opts),
        Task::VmSessions(opts) => vm_test::run_alone::<vm_sessions::SessionsRow>(&opts),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    /// clap checks the flags of every task (unique names and groups, `requires` that name an
    /// existing flag) only when a task's command line is parsed; this checks them all at once.
    #[test]
    fn every_tasks_flags_are_well_formed() {
        Cli::command().debug_assert();
    }
}
