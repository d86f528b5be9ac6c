//! `gup-trace record -o FILE`: every ring-buffer record, as the kernel side wrote it, into a
//! recording that `gup-trace report` reads later (see [`crate::recording`] for the format).

use std::{
    io::IsTerminal as _,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use clap::Args;

use super::{SessionArgs, require_root};
use crate::{
    output,
    pipeline::{LivePipeline, Reading, Records, VmstatUse, how_long, stop_after},
    recording::{
        Compression, CounterSnapshot, Filters, Metadata, ProcessFilter, RecordingWriter,
        WriteStats, stack_id_of,
    },
    session::{Session, StackNames},
};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  sudo gup-trace record -o pins.gtr --duration 60
  sudo gup-trace record -o fio.gtr --comm fio      (then: gup-trace report fio.gtr)")]
pub struct RecordArgs {
    /// Write the recording to this file (replaced if it exists).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECS", value_parser = super::positive_seconds)]
    pub duration: Option<f64>,
    /// Write chunks as they are, without LZ4 compression.
    #[arg(long)]
    pub no_compress: bool,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// How often what was recorded reaches the file, and progress is shown.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Writes one record, after its kernel stack the first time a stack id is seen.
fn write_record(
    writer: &mut RecordingWriter<std::fs::File>,
    stacks: &mut StackNames,
    record: &[u8],
) -> Result<()> {
    if let Some(id) = stack_id_of(record)
        && !writer.has_stack(id)
    {
        writer.stack(id, &stacks.frames(id))?;
    }
    writer.record(record)?;
    Ok(())
}

/// The kernel's counters as the recording keeps them.
fn snapshot(reading: &Reading, end: bool) -> CounterSnapshot {
    CounterSnapshot {
        ts_ns: reading.ts_ns,
        end,
        kernel: reading.kernel,
        vmstat: reading.vmstat,
    }
}

fn size(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    }
}

fn progress(stats: &WriteStats, lost: u64, seconds: f64) -> String {
    format!(
        "recorded {} events ({} records) in {seconds:.1} s: {} written; lost events: {lost}",
        stats.events,
        stats.records,
        size(stats.file_bytes)
    )
}

pub async fn run(args: RecordArgs, verbose: bool) -> Result<ExitCode> {
    require_root("record")?;
    let mut config = args.session.config()?;
    // Opened before the programs load: a path that cannot be written fails at once.
    let file = super::create_output(&args.output, "recording")?;
    // Who holds a pin is known only by seeing its release, often made by another task.
    config.all_releases = true;
    let mut session = Session::start(&config)?;
    eprint!("{}", output::capabilities(&session.capabilities, verbose));
    let stacks = session.stack_names();
    let filters = Filters {
        processes: ProcessFilter {
            pid: config.pid,
            comm: config.comm.clone(),
            cgroup_id: config.cgroup_id,
        },
        mmap_lock: format!("{:?}", session.mmap_lock).to_lowercase(),
        all_releases: config.all_releases,
        ring_buffer_kib: config.ring_buffer_kib,
    };
    let vmstat = VmstatUse::IfPresent {
        warning: "no /proc/vmstat pin counters in the recording",
    };
    let mut pipeline = LivePipeline::open(session, stacks, vmstat, |_| Records)?;
    let start = *pipeline.start();
    let started = Instant::now();
    let meta = Metadata::new(&pipeline.session().capabilities, filters, start.ts_ns);
    let compression = if args.no_compress {
        Compression::None
    } else {
        Compression::Lz4
    };
    let path = args.output.display().to_string();
    let mut writer = RecordingWriter::new(file, &meta, compression)
        .with_context(|| format!("cannot write the recording {path}"))?;
    let write_failed = || format!("writing the recording {path} failed");
    writer
        .counters(&snapshot(&start, false))
        .with_context(write_failed)?;
    eprintln!(
        "recording to {path} {}... (Ctrl-C ends)",
        how_long(args.duration)
    );
    let stop = stop_after(args.duration);
    tokio::pin!(stop);
    let live = std::io::stderr().is_terminal();
    // Once a second: what was recorded reaches the file, and the progress line is redrawn.
    loop {
        let due = async {
            tokio::select! {
                _ = &mut stop => true,
                _ = tokio::time::sleep(FLUSH_EVERY) => false,
            }
        };
        let stopped = pipeline
            .run_until(due, |record, stacks| {
                write_record(&mut writer, stacks, record).with_context(write_failed)
            })
            .await?;
        if stopped {
            break;
        }
        writer
            .flush_if_due(FLUSH_EVERY)
            .with_context(write_failed)?;
        if live {
            let lost = pipeline.counters_since_start()?.lost_events;
            eprint!(
                "\r{}\x1b[K",
                progress(&writer.stats, lost, started.elapsed().as_secs_f64())
            );
        }
    }

    let end = pipeline.close()?;
    writer
        .counters(&snapshot(&end, true))
        .with_context(write_failed)?;
    let finished = pipeline.finish(|record, stacks| {
        write_record(&mut writer, stacks, record).with_context(write_failed)
    })?;
    let lost = finished.closing.lost_events();
    let end = writer.end_totals(end.ts_ns, lost);
    let (_, stats) = writer.finish(&end).with_context(write_failed)?;
    if live {
        eprint!("\r\x1b[K");
    }
    let packed = stats.file_bytes - stats.header_bytes;
    eprintln!(
        "{}; {} kernel stacks; {path}{}",
        progress(&stats, lost, started.elapsed().as_secs_f64()),
        stats.stacks,
        if compression == Compression::Lz4 && packed > 0 {
            format!(
                " (LZ4: {:.1}x smaller)",
                stats.raw_bytes as f64 / packed as f64
            )
        } else {
            String::new()
        }
    );
    if lost > 0 {
        eprintln!(
            "gup-trace: warning: {lost} events were lost (ring buffer full): raise \
             --ring-buffer-kib; the report will miss them"
        );
    }
    eprintln!("read it with: gup-trace report {path}");
    Ok(ExitCode::SUCCESS)
}
