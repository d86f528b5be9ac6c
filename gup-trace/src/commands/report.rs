//! `gup-trace report FILE`: a recording replayed through the pin engine, as text or JSON.

use std::{io::IsTerminal as _, path::PathBuf, process::ExitCode};

use anyhow::{Context as _, Result, bail};

use super::FindingArgs;
use clap::Args;

use crate::{
    output::{
        self,
        report::{self, Report, ReportOptions},
    },
    recording::{ProcessFilter, RecordingReader, Replay},
};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The recording (`gup-trace record -o FILE`).
    pub file: PathBuf,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Rows of each table: processes, call sites, holders of outstanding pins, mmap_lock.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
    #[command(flatten)]
    pub findings: FindingArgs,
    /// Only this process's pins (tgid). Releases count whoever made them.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Only the pins of tasks with this name (as in /proc/PID/comm).
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,
    /// Only the pins of tasks in this cgroup v2 (its numeric id: the inode number of its
    /// directory on the recording machine).
    #[arg(long, value_name = "ID")]
    pub cgroup: Option<u64>,
    /// At most this many frames of each kernel stack.
    #[arg(long, default_value_t = 6, value_name = "FRAMES")]
    pub stack_depth: usize,
    /// Browse the recording in the `top` dashboard, with a time cursor (← → step through it;
    /// it opens at the end).
    #[arg(long, conflicts_with = "json")]
    pub tui: bool,
    /// With --tui: seconds of recording per step of the time cursor.
    #[arg(long, default_value_t = 1.0, value_name = "SECS", requires = "tui")]
    pub step: f64,
    /// Write the recording as a Perfetto trace to this file (open it in the Perfetto UI):
    /// per-process tracks with a track per thread, GUP and unpin calls as slices, mmap_lock
    /// drops as instants, each call's batch of pins as a slice from pin to release on its
    /// owner's tracks, pinned pages and pins/releases per second as counters, findings as
    /// instants at their time with their evidence.
    #[arg(long, value_name = "FILE.pftrace", conflicts_with_all = ["json", "tui"])]
    pub perfetto: Option<PathBuf>,
    /// With --perfetto: milliseconds of recording between samples of the pinned-pages
    /// counters.
    #[arg(long, default_value_t = 10, value_name = "MS", requires = "perfetto")]
    pub counter_ms: u64,
    /// With --tui: milliseconds per step while playing (p).
    #[arg(long, default_value_t = 500, value_name = "MS", requires = "tui")]
    pub interval: u64,
}

pub fn run(args: ReportArgs) -> Result<ExitCode> {
    let rules = args.findings.rules()?;
    let filter = ProcessFilter {
        pid: args.pid,
        comm: args.comm.clone(),
        cgroup_id: args.cgroup,
    };
    if args.tui {
        if !std::io::stdout().is_terminal() {
            bail!("--tui draws on a terminal: run it in one");
        }
        let step = super::seconds(args.step, "--step")?;
        let interval = std::time::Duration::from_millis(args.interval.max(20));
        crate::tui::replay::run(&args.file, rules, filter, step, interval)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(path) = &args.perfetto {
        // The recording is checked first: a file that is not one is the error to report.
        let reader = RecordingReader::open(&args.file)?;
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create the Perfetto trace {}", path.display()))?;
        let summary = output::perfetto::perfetto_trace(
            reader,
            rules,
            filter,
            args.counter_ms.max(1) * 1_000_000,
            std::io::BufWriter::new(file),
        )
        .with_context(|| format!("cannot write the Perfetto trace {}", path.display()));
        let summary = match summary {
            Ok(summary) => summary,
            Err(e) => {
                // Half a trace is no trace.
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
        };
        eprintln!(
            "gup-trace: wrote {}: {} processes, {} threads, {} calls, {} mmap_lock drops, {} pin batches ({} still held at the end), {} counter samples, {} findings",
            path.display(),
            summary.processes,
            summary.threads,
            summary.calls,
            summary.lock_drops,
            summary.pin_slices,
            summary.pins_open,
            summary.counter_samples,
            summary.findings
        );
        return Ok(ExitCode::SUCCESS);
    }
    let opts = ReportOptions {
        top: args.top,
        stack_depth: args.stack_depth,
    };
    let replay = Replay::read_filtered(RecordingReader::open(&args.file)?, rules, &filter)?;
    let findings = replay.findings();
    let report = Report::new(&replay, &findings, opts);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report::replay_text(&report, &replay, &findings, opts));
    }
    if let crate::recording::ReadStatus::Damaged(damage) = &replay.status {
        eprintln!(
            "gup-trace: warning: {}: the recording is damaged ({damage}); reported up to there",
            args.file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
