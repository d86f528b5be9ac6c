//! `gup-trace bench` (hidden from --help; `cargo xtask bench` runs it inside a VM): what tracing
//! costs the programs it traces.
//!
//! Each workload runs untraced and traced in this one process, in alternating rounds. "Traced"
//! is a real [`Session`]: every hook this kernel allows attached, every event streamed out of the
//! ring buffer, decoded and applied to the pin engine by the async runtime while the workload
//! runs on a blocking thread, exactly as `selftest` consumes events. Events are not printed: on
//! a serial console that would measure the console. One session serves every traced round: its
//! programs are loaded once (under TCG that takes ~20 s, most of it in the verifier), attached
//! for each traced round and detached after it, so untraced rounds run with nothing attached.
//! Each traced round is its own window: the events of the round are drained at its end.
//!
//! Workloads (`pin_unpin`, `o_direct_read`, `io_uring_read_fixed`: [`crate::workload::bench`]).
//! Each is calibrated untraced to last about `--round-ms` per round; its operation count then
//! stays the same in every round, so rounds compare by time: the slowdown is in throughput. A
//! workload that pins also has its cost given per folio: (traced - untraced time) / (pins +
//! releases), counted by `/proc/vmstat` (`nr_foll_pin_acquired` + `nr_foll_pin_released`).
//!
//! Output: progress on stderr, then one JSON object ([`BenchReport`]) on stdout.

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use gup_trace_common::bench::BenchRounds;
use serde::Serialize;

use super::{
    bench_tracer::{Mode, Tracer, TracerEnd},
    require_root,
};
use crate::{
    events::TraceEvent,
    kernel::{AttachKind, PinVisibility},
    session::{Session, SessionConfig, StackNames},
    vmstat::PinCounters,
    window,
    workload::{self, bench::Workload},
};

/// Calibration grows the operation count until a run lasts at least 1/this of a round (a short
/// run on a noisy machine can be off by a factor of three).
const CALIBRATION_SHARE: u32 = 2;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Block device (or file) for the O_DIRECT and io_uring reads (default: /dev/nvme0n1,
    /// /dev/vda or /dev/sda, else a temporary file).
    #[arg(long, value_name = "PATH")]
    pub device: Option<PathBuf>,
    #[command(flatten)]
    pub rounds: BenchRounds,
    /// Tracing modes, each in its own rounds beside untraced ones (bpftrace modes are left out
    /// where bpftrace is missing).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        value_name = "MODE",
        default_value = "floor,session,record,serve,bpftrace-counters,bpftrace-stacks"
    )]
    pub modes: Vec<Mode>,
}

/// Median and range of one quantity over the rounds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    /// `None` for no values.
    fn of(values: &[f64]) -> Option<Stat> {
        let mut v: Vec<f64> = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Some(Stat {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// One round of one workload.
#[derive(Clone, Debug, Serialize)]
pub struct Round {
    /// The boot's first round (round 0, one of each mode): reported, not counted. Under
    /// instruction time it ran 2x slower than later untraced rounds (caches, first faults).
    pub warmup: bool,
    pub mode: Mode,
    pub seconds: f64,
    /// `/proc/vmstat` deltas over the round (read around the timed loop).
    pub vmstat_acquired: u64,
    pub vmstat_released: u64,
    /// Rounds of the in-process session: events received (inside the round's window), lost
    /// events, and the pages gup-trace counted as pinned and released.
    pub events: Option<u64>,
    pub lost_events: Option<u64>,
    pub seen_pinned: Option<u64>,
    pub seen_released: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct WorkloadResult {
    pub name: &'static str,
    pub description: String,
    pub ops_per_round: u64,
    /// Nanoseconds per operation, per round (under QEMU's instruction time: instructions).
    pub untraced_ns_per_op: Stat,
    /// The same for each tracing mode, beside the untraced median.
    pub modes: Vec<ModeCost>,
    /// FOLL_PIN pins plus releases per untraced round (vmstat, median).
    pub folios_per_round: u64,
    /// Over the in-process session's counted rounds: events received, lost, the pages
    /// gup-trace counted and /proc/vmstat's deltas.
    pub events: u64,
    pub lost_events: u64,
    pub seen_pinned: u64,
    pub seen_released: u64,
    pub vmstat_acquired: u64,
    pub vmstat_released: u64,
    pub rounds: Vec<Round>,
    /// One more traced round with the kernel's BPF statistics on: what each program cost.
    pub hooks: Option<HookCosts>,
}

/// One tracing mode's time per operation in one workload.
#[derive(Debug, Serialize)]
pub struct ModeCost {
    pub mode: Mode,
    pub ns_per_op: Stat,
    /// Median minus the untraced median.
    pub added_ns_per_op: f64,
    /// Median over the untraced median.
    pub ratio: f64,
}

/// One round of an external tracer (over every workload of the round).
#[derive(Debug, Serialize)]
pub struct TracerRound {
    pub mode: Mode,
    pub warmup: bool,
    #[serde(flatten)]
    pub end: TracerEnd,
}

/// What each eBPF program cost per operation in one traced round with the kernel's BPF
/// statistics on (`BPF_ENABLE_STATS`), and that round's time per operation (statistics add
/// two clock reads per program run).
#[derive(Debug, Serialize)]
pub struct HookCosts {
    pub ns_per_op: f64,
    pub records_per_op: f64,
    /// Programs that ran, most costly first.
    pub programs: Vec<HookCost>,
    /// The programs' own run time per operation, summed.
    pub program_ns_per_op: f64,
}

#[derive(Debug, Serialize)]
pub struct HookCost {
    pub program: String,
    pub runs_per_op: f64,
    pub ns_per_run: f64,
    pub ns_per_op: f64,
}

#[derive(Debug, Serialize)]
pub struct Hooks {
    pub fentry: usize,
    pub kprobe: usize,
    pub tracepoint: usize,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub kernel: String,
    /// How long the session took to start: the eBPF object loaded (the verifier) and every
    /// hook attached, in seconds of guest time.
    pub load_seconds: f64,
    /// The same for the floor session (`floor` mode), whose programs the verifier prunes to a
    /// counter bump; None without that mode.
    pub floor_load_seconds: Option<f64>,
    /// Program runs the floor session counted over all its rounds (its programs' own count).
    pub floor_runs: Option<u64>,
    /// CPUs this system has (online).
    pub cpus: usize,
    pub rounds: u32,
    pub round_ms: u64,
    pub hooks: Hooks,
    pub workloads: Vec<WorkloadResult>,
    /// Each external tracer's rounds: its load time, events and lost events.
    pub tracers: Vec<TracerRound>,
    /// Modes asked for that could not run here, with why.
    pub skipped_modes: Vec<String>,
}

/// What one timed run measured.
struct Measured {
    elapsed: Duration,
    vmstat: PinCounters,
}

/// What the session saw during one traced run.
struct Seen {
    events: u64,
    lost_events: u64,
    pinned: u64,
    released: u64,
}

type Job = tokio::task::JoinHandle<(Box<dyn Workload>, Result<Measured>)>;

/// Runs `ops` operations of `w` on a blocking thread, between two vmstat readings; the workload
/// comes back with the result.
fn spawn_run(mut w: Box<dyn Workload>, ops: u64) -> Job {
    tokio::task::spawn_blocking(move || {
        let measured = (|| {
            let before = PinCounters::read()?;
            let elapsed = w.run(ops)?;
            let vmstat = PinCounters::read()?.delta_since(&before);
            Ok(Measured { elapsed, vmstat })
        })();
        (w, measured)
    })
}

async fn untraced(w: Box<dyn Workload>, ops: u64) -> Result<(Box<dyn Workload>, Measured)> {
    let (w, measured) = spawn_run(w, ops).await?;
    let measured = measured.with_context(|| format!("bench workload {}", w.name()))?;
    Ok((w, measured))
}

/// Runs `w` while this task streams, decodes and counts the session's events, as `selftest`
/// does; the session comes back for the next round.
async fn traced(
    session: Session,
    w: Box<dyn Workload>,
    ops: u64,
) -> Result<(Session, Box<dyn Workload>, Measured, Seen)> {
    let mut window = window::open(session, StackNames::NotRead)?;
    window.poll_every(Duration::from_millis(100));
    let mut events = 0u64;
    let mut count = |_: &TraceEvent, _: &mut StackNames| -> Result<()> {
        events += 1;
        Ok(())
    };
    let (w, measured) = window.run_until(spawn_run(w, ops), &mut count).await??;
    let (summary, session) = window::close(window, count)?;
    let measured = measured.with_context(|| format!("bench workload {} (traced)", w.name()))?;
    let seen = Seen {
        events,
        lost_events: summary.kernel.lost_events,
        pinned: summary.totals.pinned,
        released: summary.totals.released,
    };
    Ok((session, w, measured, seen))
}

/// An operation count for which one run of `w` lasts about `target`.
async fn calibrate(mut w: Box<dyn Workload>, target: Duration) -> Result<(Box<dyn Workload>, u64)> {
    let mut ops = 8u64;
    loop {
        let (back, m) = untraced(w, ops).await?;
        w = back;
        if m.elapsed >= target / CALIBRATION_SHARE || ops >= 1 << 32 {
            let per_op = m.elapsed.as_secs_f64() / ops as f64;
            let n = (target.as_secs_f64() / per_op.max(1e-9)).ceil() as u64;
            return Ok((w, n.max(1)));
        }
        ops *= 4;
    }
}

/// Starts a session and refuses a kernel where gup-trace cannot hook pins and releases.
fn start_session(floor: bool) -> Result<Session> {
    let session = Session::start(&SessionConfig {
        floor,
        ..SessionConfig::default()
    })?;
    let caps = &session.capabilities;
    if caps.pin_visibility() == PinVisibility::Blind {
        bail!(
            "this kernel ({}) lets gup-trace hook no pin or no unpin function (`gup-trace probe` \
             says why), so there is no tracing cost to measure: run the bench on a kernel that \
             can (cargo xtask bench boots one)",
            caps.kernel
        );
    }
    Ok(session)
}

pub async fn run(args: BenchArgs) -> Result<ExitCode> {
    require_root("bench")?;
    let target = Duration::from_millis(args.rounds.round_ms);
    let mut workloads =
        workload::bench::all(args.device.as_deref(), args.rounds.pin_pages as usize)?;
    let only = &args.rounds.workloads;
    if let Some(unknown) = only
        .iter()
        .find(|n| !workloads.iter().any(|w| w.name() == *n))
    {
        bail!(
            "--workloads: no workload is called {unknown:?} here (there are: {})",
            workloads
                .iter()
                .map(|w| w.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    workloads.retain(|w| only.is_empty() || only.iter().any(|n| n == w.name()));

    let mut ops = Vec::new();
    for w in std::mem::take(&mut workloads) {
        let (w, n) = calibrate(w, target).await?;
        eprintln!("bench: {}: {n} operations per round", w.name());
        ops.push(n);
        workloads.push(w);
    }

    let mut modes = Vec::new();
    let mut skipped_modes = Vec::new();
    for mode in args.modes.iter().copied().filter(|&m| m != Mode::Untraced) {
        match mode.unavailable() {
            Some(why) => {
                eprintln!("bench: mode {} left out: {why}", mode.name());
                skipped_modes.push(format!("{}: {why}", mode.name()));
            }
            None if !modes.contains(&mode) => modes.push(mode),
            None => {}
        }
    }
    // The session starts first (and is kept, detached between its rounds): a kernel gup-trace
    // cannot hook is refused right after calibration, and its load time is measured once.
    let started = Instant::now();
    let mut session = start_session(false)?;
    let load_seconds = started.elapsed().as_secs_f64();
    session.detach();
    eprintln!("bench: session started in {load_seconds:.2} s");
    // The floor: a second session, its programs only counting their runs.
    let (mut floor, floor_load_seconds) = if modes.contains(&Mode::Floor) {
        let started = Instant::now();
        let mut floor = start_session(true)?;
        let seconds = started.elapsed().as_secs_f64();
        floor.detach();
        eprintln!("bench: floor session started in {seconds:.2} s");
        (Some(floor), Some(seconds))
    } else {
        (None, None)
    };

    let mut rounds: Vec<Vec<Round>> = workloads.iter().map(|_| Vec::new()).collect();
    let mut tracers = Vec::new();
    for round in 0..=args.rounds.count {
        let warmup = round == 0;
        // Each mode's round follows an untraced one.
        for &mode in &modes {
            for m in [Mode::Untraced, mode] {
                let tracer = if m.external() {
                    Some(Tracer::start(m)?)
                } else {
                    None
                };
                if m == Mode::Session {
                    session.reattach()?;
                }
                if let Some(f) = floor.as_mut().filter(|_| m == Mode::Floor) {
                    f.reattach()?;
                }
                for (i, w) in std::mem::take(&mut workloads).into_iter().enumerate() {
                    let (w, r) = if m == Mode::Session {
                        let (s, w, measured, seen) = traced(session, w, ops[i]).await?;
                        session = s;
                        (w, round_of(warmup, m, &measured, Some(&seen)))
                    } else {
                        let (w, measured) = untraced(w, ops[i]).await?;
                        (w, round_of(warmup, m, &measured, None))
                    };
                    eprintln!(
                        "bench: round {round}/{} {:<20} {:>18}: {:.0} ns/op{}",
                        args.rounds.count,
                        w.name(),
                        m.name(),
                        r.seconds * 1e9 / ops[i] as f64,
                        match (r.events, r.lost_events) {
                            (Some(e), Some(l)) => format!(", {e} events, {l} lost"),
                            _ => String::new(),
                        }
                    );
                    rounds[i].push(r);
                    workloads.push(w);
                }
                if m == Mode::Session {
                    session.detach();
                }
                if let Some(f) = floor.as_mut().filter(|_| m == Mode::Floor) {
                    f.detach();
                }
                if let Some(t) = tracer {
                    let end = t.stop()?;
                    eprintln!("bench: round {round} {}: {end:?}", m.name());
                    tracers.push(TracerRound {
                        mode: m,
                        warmup,
                        end,
                    });
                }
            }
        }
    }
    let floor_runs = floor.as_ref().map(Session::floor_runs).transpose()?;
    drop(floor);
    let (session, workloads, mut hook_costs_of) = hook_costs(session, workloads, &ops).await?;
    let caps = &session.capabilities;
    let kernel = caps.kernel.clone();
    let hooks = Hooks {
        fentry: caps.count_by_kind(AttachKind::Fentry),
        kprobe: caps.count_by_kind(AttachKind::Kprobe),
        tracepoint: caps.count_by_kind(AttachKind::Tracepoint),
    };
    drop(session);

    let results = workloads
        .iter()
        .zip(ops)
        .zip(rounds)
        .map(|((w, ops), rounds)| summarize(w.name(), w.description(), ops, &modes, rounds))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .zip(hook_costs_of.drain(..))
        .map(|(r, h)| WorkloadResult {
            hooks: Some(h),
            ..r
        })
        .collect();
    drop(workloads);
    let report = BenchReport {
        kernel,
        load_seconds,
        floor_load_seconds,
        floor_runs,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        rounds: args.rounds.count,
        round_ms: args.rounds.round_ms,
        hooks,
        workloads: results,
        tracers,
        skipped_modes,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}

/// One more traced round of each workload with the kernel's BPF statistics on: each
/// program's runs and own run time per operation. A separate round, because the statistics
/// cost two clock reads per program run.
async fn hook_costs(
    mut session: Session,
    workloads: Vec<Box<dyn Workload>>,
    ops: &[u64],
) -> Result<(Session, Vec<Box<dyn Workload>>, Vec<HookCosts>)> {
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context(
        "BPF_ENABLE_STATS (BPF_STATS_RUN_TIME) failed: per-program run time needs Linux 5.8+",
    )?;
    session.reattach()?;
    let mut back = Vec::new();
    let mut costs = Vec::new();
    for (w, &ops) in workloads.into_iter().zip(ops) {
        let before = session.program_stats()?;
        let (s, w, m, seen) = traced(session, w, ops).await?;
        session = s;
        let after = session.program_stats()?;
        let per_op = |v: u64| v as f64 / ops.max(1) as f64;
        let mut programs: Vec<HookCost> = after
            .iter()
            .filter_map(|a| {
                let b = before.iter().find(|b| b.program == a.program)?;
                let runs = a.runs.checked_sub(b.runs).filter(|&r| r > 0)?;
                let run_ns = a.run_ns.saturating_sub(b.run_ns);
                Some(HookCost {
                    program: a.program.clone(),
                    runs_per_op: per_op(runs),
                    ns_per_run: run_ns as f64 / runs as f64,
                    ns_per_op: per_op(run_ns),
                })
            })
            .collect();
        programs.sort_by(|a, b| b.ns_per_op.total_cmp(&a.ns_per_op));
        eprintln!(
            "bench: {:<20} with BPF statistics: {:.0} ns/op; {}",
            w.name(),
            per_op(m.elapsed.as_nanos() as u64),
            programs
                .iter()
                .map(|p| format!("{} {:.0} ns/op", p.program, p.ns_per_op))
                .collect::<Vec<_>>()
                .join(", ")
        );
        costs.push(HookCosts {
            ns_per_op: per_op(m.elapsed.as_nanos() as u64),
            records_per_op: per_op(seen.events),
            program_ns_per_op: programs.iter().map(|p| p.ns_per_op).sum(),
            programs,
        });
        back.push(w);
    }
    session.detach();
    Ok((session, back, costs))
}

fn round_of(warmup: bool, mode: Mode, m: &Measured, seen: Option<&Seen>) -> Round {
    Round {
        warmup,
        mode,
        seconds: m.elapsed.as_secs_f64(),
        vmstat_acquired: m.vmstat.acquired,
        vmstat_released: m.vmstat.released,
        events: seen.map(|s| s.events),
        lost_events: seen.map(|s| s.lost_events),
        seen_pinned: seen.map(|s| s.pinned),
        seen_released: seen.map(|s| s.released),
    }
}

/// Medians and ranges over the counted rounds, per mode.
fn summarize(
    name: &'static str,
    description: String,
    ops: u64,
    modes: &[Mode],
    rounds: Vec<Round>,
) -> Result<WorkloadResult> {
    let counted = |mode: Mode| -> Vec<&Round> {
        rounds
            .iter()
            .filter(|r| !r.warmup && r.mode == mode)
            .collect()
    };
    let ns_per_op = |mode: Mode| -> Option<Stat> {
        Stat::of(
            &counted(mode)
                .iter()
                .map(|r| r.seconds * 1e9 / ops.max(1) as f64)
                .collect::<Vec<_>>(),
        )
    };
    let no_rounds = || anyhow!("workload {name}: no counted untraced round ran");
    let untraced = ns_per_op(Mode::Untraced).ok_or_else(no_rounds)?;
    let mode_costs = modes
        .iter()
        .filter_map(|&mode| {
            let s = ns_per_op(mode)?;
            Some(ModeCost {
                mode,
                ns_per_op: s,
                added_ns_per_op: s.median - untraced.median,
                ratio: s.median / untraced.median.max(1e-9),
            })
        })
        .collect();
    let folios: Vec<f64> = counted(Mode::Untraced)
        .iter()
        .map(|r| (r.vmstat_acquired + r.vmstat_released) as f64)
        .collect();
    let session = counted(Mode::Session);
    let sum = |f: &dyn Fn(&Round) -> Option<u64>| session.iter().filter_map(|r| f(r)).sum::<u64>();
    Ok(WorkloadResult {
        name,
        description,
        ops_per_round: ops,
        untraced_ns_per_op: untraced,
        modes: mode_costs,
        folios_per_round: Stat::of(&folios).ok_or_else(no_rounds)?.median as u64,
        events: sum(&|r| r.events),
        lost_events: sum(&|r| r.lost_events),
        seen_pinned: sum(&|r| r.seen_pinned),
        seen_released: sum(&|r| r.seen_released),
        vmstat_acquired: sum(&|r| Some(r.vmstat_acquired)),
        vmstat_released: sum(&|r| Some(r.vmstat_released)),
        rounds,
        hooks: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_gives_median_and_range() {
        let s = Stat::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            s,
            Stat {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
        assert_eq!(Stat::of(&[4.0, 1.0, 2.0, 10.0]).unwrap().median, 3.0);
        assert!(Stat::of(&[]).is_none());
    }

    fn round(mode: Mode, warmup: bool, seconds: f64, folios: u64) -> Round {
        let session = mode == Mode::Session;
        Round {
            warmup,
            mode,
            seconds,
            vmstat_acquired: folios / 2,
            vmstat_released: folios / 2,
            events: session.then_some(10),
            lost_events: session.then_some(0),
            seen_pinned: session.then_some(folios / 2),
            seen_released: session.then_some(folios / 2),
        }
    }

    #[test]
    fn counted_rounds_give_ns_per_op_per_mode_beside_untraced() {
        // 1000 ops; a warm-up pair, then untraced 1.0, 1.002 and 1.0 ms, session 3.0 and 3.2
        // ms, record 2.0 ms: 1000 ns/op untraced.
        let rounds = vec![
            round(Mode::Untraced, true, 9e-3, 1000),
            round(Mode::Session, true, 9e-3, 1000),
            round(Mode::Untraced, false, 1.0e-3, 1000),
            round(Mode::Session, false, 3.0e-3, 1000),
            round(Mode::Untraced, false, 1.002e-3, 1000),
            round(Mode::Session, false, 3.2e-3, 1000),
            round(Mode::Untraced, false, 1.0e-3, 1000),
            round(Mode::Record, false, 2.0e-3, 1000),
        ];
        let modes = [Mode::Session, Mode::Record, Mode::Serve];
        let r = summarize("w", String::new(), 1000, &modes, rounds).unwrap();
        assert_eq!(r.folios_per_round, 1000);
        assert!(
            (r.untraced_ns_per_op.median - 1000.0).abs() < 1e-6,
            "the warm-up is not counted: {:?}",
            r.untraced_ns_per_op
        );
        assert!((r.untraced_ns_per_op.max - 1002.0).abs() < 1e-6);
        assert_eq!(r.modes.len(), 2, "serve ran no round: no row");
        assert!((r.modes[0].ns_per_op.median - 3100.0).abs() < 1e-6);
        assert!((r.modes[0].added_ns_per_op - 2100.0).abs() < 1e-6);
        assert!((r.modes[1].ratio - 2.0).abs() < 1e-9);
        assert_eq!((r.events, r.lost_events), (20, 0), "session rounds only");
        assert_eq!((r.vmstat_acquired, r.seen_pinned), (1000, 1000));
    }

    #[test]
    fn a_workload_without_a_counted_untraced_round_is_an_error() {
        let rounds = vec![
            round(Mode::Untraced, true, 1.0, 0),
            round(Mode::Session, false, 1.0, 0),
        ];
        assert!(summarize("w", String::new(), 10, &[Mode::Session], rounds).is_err());
    }
}
