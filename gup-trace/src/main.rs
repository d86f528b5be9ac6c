use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};
use gup_trace::commands::{
    self, assets::AssetsArgs, bench::BenchArgs, check::CheckArgs, probe::ProbeArgs,
    record::RecordArgs, report::ReportArgs, selftest::SelftestArgs, serve::ServeArgs, top::TopArgs,
    trace::TraceArgs, workload::WorkloadArgs,
};

/// Trace get_user_pages (GUP) and FOLL_PIN page pinning with eBPF.
///
/// gup-trace hooks the kernel's pin_user_pages* entry points, the per-folio grab functions and
/// the unpin_* release calls (fentry where the kernel allows it, kprobes otherwise), the
/// mmap_lock and process tracepoints, reconstructs who holds which pins, and checks its totals
/// against the kernel's own /proc/vmstat pin counters.
///
/// Start with `sudo gup-trace probe` to see what this kernel lets it hook, then
/// `sudo gup-trace selftest` to check it against the kernel's counters. To find pins a program
/// leaves behind: `sudo gup-trace check -- PROGRAM ARGS` (exit 1 on a leak, for CI); to watch
/// who holds pins on a live machine: `sudo gup-trace top`.
#[derive(Parser)]
#[command(name = "gup-trace", version, propagate_version = true)]
struct Cli {
    /// Say more: per-hook details, and log lines from the eBPF programs.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print each pin, unpin and mmap_lock event live, then totals beside /proc/vmstat.
    Trace(TraceArgs),
    /// Run a command, follow its process tree, and report the pins it leaves behind (exit 1 on
    /// a leak): for CI.
    Check(CheckArgs),
    /// A live dashboard: pinned pages now, top pinning processes and call sites, pin ages,
    /// mmap_lock, findings as they appear; drill into a process or a finding.
    Top(TopArgs),
    /// Export pinned memory, pins and releases, GUP latency, findings, vmstat's pin counters
    /// and gup-trace's health as Prometheus/OpenMetrics metrics on /metrics (default
    /// 127.0.0.1:9808), until SIGTERM.
    Serve(ServeArgs),
    /// Record every event (and the kernel stacks) into a file, for `report` later or elsewhere.
    Record(RecordArgs),
    /// Replay a recording: top pinning processes and call sites, pins outstanding at the end,
    /// findings, mmap_lock figures (no root needed).
    Report(ReportArgs),
    /// Run a known pin workload while tracing; pass only if the totals equal /proc/vmstat.
    Selftest(SelftestArgs),
    /// Report which hooks this kernel supports, how they attach, and why others do not.
    Probe(ProbeArgs),
    /// Run the selftest's pin workload without tracing (trace it from another terminal).
    Workload(WorkloadArgs),
    /// Measure what tracing costs pin-heavy workloads, untraced vs traced rounds; prints JSON
    /// (run by `cargo xtask bench` inside a VM).
    #[command(hide = true)]
    Bench(BenchArgs),
    /// Write the man pages and the bash, zsh and fish completions into a directory (run by
    /// `cargo xtask package` for the Debian package).
    #[command(hide = true)]
    Assets(AssetsArgs),
}

impl Command {
    /// Whether the command starts a session (loads and attaches the eBPF programs).
    fn loads_programs(&self) -> bool {
        !matches!(self, Command::Report(_) | Command::Workload(_))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if cli.verbose { "info" } else { "warn" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .init();
    if cli.command.loads_programs() {
        if let Err(e) = gup_trace::limits::ensure_open_files() {
            eprintln!("gup-trace: error: {e}");
            return ExitCode::from(2);
        }
    }
    // Runtime threads are named after the tool: the workload runs on one of them, and its
    // comm is what trace lines show.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_name("gup-trace")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let hint = if e.raw_os_error() == Some(libc::EMFILE) {
                " (raise the open-file limit: `ulimit -n 4096`)"
            } else {
                ""
            };
            eprintln!("gup-trace: error: cannot start the async runtime: {e}{hint}");
            return ExitCode::from(2);
        }
    };
    // The commands that trace until stopped hear SIGINT/SIGTERM from now on, so one sent
    // while the programs load is not lost. The others keep the default (Ctrl-C ends them).
    let stoppable = matches!(
        cli.command,
        Command::Trace(_)
            | Command::Check(_)
            | Command::Top(_)
            | Command::Serve(_)
            | Command::Record(_)
    );
    let result = runtime.block_on(async {
        if stoppable {
            gup_trace::stop::listen();
        }
        match cli.command {
            Command::Trace(args) => commands::trace::run(args, cli.verbose).await,
            Command::Check(args) => commands::check::run(args, cli.verbose).await,
            Command::Top(args) => commands::top::run(args, cli.verbose).await,
            Command::Serve(args) => commands::serve::run(args, cli.verbose).await,
            Command::Record(args) => commands::record::run(args, cli.verbose).await,
            Command::Report(args) => commands::report::run(args),
            Command::Selftest(args) => commands::selftest::run(args, cli.verbose).await,
            Command::Probe(args) => commands::probe::run(args).await,
            Command::Workload(args) => commands::workload::run(args).await,
            Command::Bench(args) => commands::bench::run(args).await,
            Command::Assets(args) => commands::assets::run(Cli::command(), args),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gup-trace: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
