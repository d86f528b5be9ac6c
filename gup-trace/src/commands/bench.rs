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

use super::require_root;
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
    pub traced: bool,
    pub seconds: f64,
    /// `/proc/vmstat` deltas over the round (read around the timed loop).
    pub vmstat_acquired: u64,
    pub vmstat_released: u64,
    /// Traced rounds: events received (inside the round's window), lost events, and the pages
    /// gup-trace counted as pinned and released.
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
    /// Operations per second, per round.
    pub untraced_ops_per_s: Stat,
    pub traced_ops_per_s: Stat,
    /// Per pair of rounds (round i untraced, round i traced): traced time / untraced time - 1,
    /// in percent. Positive: tracing made the workload slower.
    pub slowdown_pct: Stat,
    /// FOLL_PIN pins plus releases per traced round (vmstat, median).
    pub folios_per_round: u64,
    /// Per pair of rounds: (traced - untraced time) / folios pinned and released, in ns.
    /// `None` when the workload pins nothing.
    pub ns_per_folio: Option<Stat>,
    /// Events received per traced round.
    pub events_per_round: Stat,
    /// Over all traced rounds.
    pub events: u64,
    pub lost_events: u64,
    pub seen_pinned: u64,
    pub seen_released: u64,
    pub vmstat_acquired: u64,
    pub vmstat_released: u64,
    pub rounds: Vec<Round>,
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
    /// CPUs this system has (online).
    pub cpus: usize,
    pub rounds: u32,
    pub round_ms: u64,
    pub hooks: Hooks,
    pub workloads: Vec<WorkloadResult>,
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
fn start_session() -> Result<Session> {
    let session = Session::start(&SessionConfig::default())?;
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

    let mut ops = Vec::new();
    for w in std::mem::take(&mut workloads) {
        let (w, n) = calibrate(w, target).await?;
        eprintln!("bench: {}: {n} operations per round", w.name());
        ops.push(n);
        workloads.push(w);
    }

    let mut rounds: Vec<Vec<Round>> = workloads.iter().map(|_| Vec::new()).collect();
    let mut session: Option<Session> = None;
    for round in 1..=args.rounds.count {
        // Traced first in odd rounds, untraced first in even ones: drift over the run (a busy
        // host) then weighs on both sides alike. Traced first in round 1, so that a kernel
        // gup-trace cannot hook is refused right after calibration.
        let order = if round % 2 == 1 {
            [true, false]
        } else {
            [false, true]
        };
        for traced_mode in order {
            if traced_mode {
                let started = Instant::now();
                let what = match session.as_mut() {
                    None => {
                        session = Some(start_session()?);
                        "session started"
                    }
                    Some(s) => {
                        s.reattach()?;
                        "programs attached again"
                    }
                };
                eprintln!(
                    "bench: round {round}/{}: {what} in {:.1} s",
                    args.rounds.count,
                    started.elapsed().as_secs_f64()
                );
            }
            for (i, w) in std::mem::take(&mut workloads).into_iter().enumerate() {
                let tracing = if traced_mode { session.take() } else { None };
                let (w, r) = match tracing {
                    None => {
                        let (w, m) = untraced(w, ops[i]).await?;
                        (w, round_of(&m, None))
                    }
                    Some(s) => {
                        let (s, w, m, seen) = traced(s, w, ops[i]).await?;
                        session = Some(s);
                        (w, round_of(&m, Some(&seen)))
                    }
                };
                eprintln!(
                    "bench: round {round}/{} {:<20} {:>8}: {:.3} s{}",
                    args.rounds.count,
                    w.name(),
                    if traced_mode { "traced" } else { "untraced" },
                    r.seconds,
                    match (r.events, r.lost_events) {
                        (Some(e), Some(l)) => format!(", {e} events, {l} lost"),
                        _ => String::new(),
                    }
                );
                rounds[i].push(r);
                workloads.push(w);
            }
            // Every program detached before the next untraced round; they stay loaded.
            if let Some(s) = session.as_mut().filter(|_| traced_mode) {
                s.detach();
            }
        }
    }
    let session = session.ok_or_else(|| anyhow!("no traced round ran"))?;
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
        .map(|((w, ops), rounds)| summarize(w.name(), w.description(), ops, rounds))
        .collect::<Result<Vec<_>>>()?;
    drop(workloads);
    let report = BenchReport {
        kernel,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        rounds: args.rounds.count,
        round_ms: args.rounds.round_ms,
        hooks,
        workloads: results,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}

fn round_of(m: &Measured, seen: Option<&Seen>) -> Round {
    Round {
        traced: seen.is_some(),
        seconds: m.elapsed.as_secs_f64(),
        vmstat_acquired: m.vmstat.acquired,
        vmstat_released: m.vmstat.released,
        events: seen.map(|s| s.events),
        lost_events: seen.map(|s| s.lost_events),
        seen_pinned: seen.map(|s| s.pinned),
        seen_released: seen.map(|s| s.released),
    }
}

/// Medians and ranges over the rounds; untraced and traced rounds pair up in order.
fn summarize(
    name: &'static str,
    description: String,
    ops: u64,
    rounds: Vec<Round>,
) -> Result<WorkloadResult> {
    let (traced, untraced): (Vec<&Round>, Vec<&Round>) = rounds.iter().partition(|r| r.traced);
    let rate = |rs: &[&Round]| -> Vec<f64> {
        rs.iter()
            .map(|r| ops as f64 / r.seconds.max(1e-9))
            .collect()
    };
    let pairs: Vec<(&Round, &Round)> = untraced
        .iter()
        .copied()
        .zip(traced.iter().copied())
        .collect();
    let folios: Vec<f64> = traced
        .iter()
        .map(|r| (r.vmstat_acquired + r.vmstat_released) as f64)
        .collect();
    let no_rounds = || anyhow!("workload {name}: no untraced or no traced round ran");
    let folios_per_round = Stat::of(&folios).ok_or_else(no_rounds)?.median as u64;
    let ns_per_folio = (folios_per_round > 0)
        .then(|| {
            Stat::of(
                &pairs
                    .iter()
                    .map(|(u, t)| (t.seconds - u.seconds) * 1e9 / folios_per_round as f64)
                    .collect::<Vec<_>>(),
            )
        })
        .flatten();
    let sum = |f: &dyn Fn(&Round) -> Option<u64>| traced.iter().filter_map(|r| f(r)).sum::<u64>();
    let events: Vec<f64> = traced
        .iter()
        .filter_map(|r| r.events)
        .map(|e| e as f64)
        .collect();
    Ok(WorkloadResult {
        name,
        description,
        ops_per_round: ops,
        untraced_ops_per_s: Stat::of(&rate(&untraced)).ok_or_else(no_rounds)?,
        traced_ops_per_s: Stat::of(&rate(&traced)).ok_or_else(no_rounds)?,
        slowdown_pct: Stat::of(
            &pairs
                .iter()
                .map(|(u, t)| (t.seconds / u.seconds.max(1e-9) - 1.0) * 100.0)
                .collect::<Vec<_>>(),
        )
        .ok_or_else(no_rounds)?,
        folios_per_round,
        ns_per_folio,
        events_per_round: Stat::of(&events).ok_or_else(no_rounds)?,
        events: sum(&|r| r.events),
        lost_events: sum(&|r| r.lost_events),
        seen_pinned: sum(&|r| r.seen_pinned),
        seen_released: sum(&|r| r.seen_released),
        vmstat_acquired: sum(&|r| Some(r.vmstat_acquired)),
        vmstat_released: sum(&|r| Some(r.vmstat_released)),
        rounds,
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

    fn round(traced: bool, seconds: f64, folios: u64) -> Round {
        Round {
            traced,
            seconds,
            vmstat_acquired: folios / 2,
            vmstat_released: folios / 2,
            events: traced.then_some(10),
            lost_events: traced.then_some(0),
            seen_pinned: traced.then_some(folios / 2),
            seen_released: traced.then_some(folios / 2),
        }
    }

    #[test]
    fn rounds_pair_up_into_slowdown_and_cost_per_folio() {
        // 1000 ops; untraced 1.0 s and 2.0 s, traced 1.1 s and 2.4 s; 1000 folios per round.
        let rounds = vec![
            round(false, 1.0, 1000),
            round(true, 1.1, 1000),
            round(true, 2.4, 1000),
            round(false, 2.0, 1000),
        ];
        let r = summarize("w", String::new(), 1000, rounds).unwrap();
        assert_eq!(r.folios_per_round, 1000);
        assert!((r.slowdown_pct.min - 10.0).abs() < 1e-9);
        assert!((r.slowdown_pct.max - 20.0).abs() < 1e-9);
        let ns = r.ns_per_folio.unwrap();
        assert!((ns.min - 100_000.0).abs() < 1e-6 && (ns.max - 400_000.0).abs() < 1e-6);
        assert_eq!((r.events, r.lost_events), (20, 0));
        assert_eq!((r.vmstat_acquired, r.seen_pinned), (1000, 1000));
        assert!((r.untraced_ops_per_s.median - 750.0).abs() < 1e-9);
    }

    #[test]
    fn a_workload_that_pins_nothing_has_no_cost_per_folio() {
        let rounds = vec![round(false, 1.0, 0), round(true, 1.0, 0)];
        let r = summarize("w", String::new(), 10, rounds).unwrap();
        assert!(r.ns_per_folio.is_none());
    }
}
