//! What the dashboard shows, taken from the engine at one moment: a [`DashboardSnapshot`],
//! small and self-contained (rows of numbers and short strings, the drill-down details of the
//! processes that hold pins, the findings with their evidence). The screens are drawn from it
//! alone, never from the event stream, so drawing costs the same whatever the event rate, and a
//! paused screen can still be sorted, filtered and drilled into.
//!
//! Its rows are the analysis layer's ([`crate::analysis`], re-exported here); this module adds
//! what only the dashboard keeps: the history of samples, the baseline of the rates, the trim to
//! [`MAX_PROCESSES`], health, and the findings as one-line headlines with their evidence.

use std::collections::VecDeque;

pub use crate::analysis::{
    AGE_LABELS, FOLIOS_PER_PROCESS, FolioRow, LockRow, ProcessRow, SiteRow, share,
};
use crate::{
    analysis::{Analysis, Baseline, FindingSubject, SiteStacks},
    engine::{
        Finding, PinEngine,
        pins::{ProcessId, SiteId},
    },
    output::{self, StackLookup},
};

/// Processes in a snapshot at most (those with pins outstanding first, then by pins taken).
pub const MAX_PROCESSES: usize = 2000;
/// Frames of each call site's stack kept.
pub const STACK_DEPTH: usize = 16;
/// History samples kept: ten minutes at one a second.
pub const HISTORY: usize = 600;

/// One sample of the pin history, taken at every tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub ts_ns: u64,
    pub pinned_now: u64,
    /// The most pages pinned at once since the previous sample.
    pub peak: u64,
    /// Pages pinned and released since tracing began.
    pub pinned_total: u64,
    pub released_total: u64,
}

/// The last minutes of samples: the sparkline and the rates.
#[derive(Clone, Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
}

impl History {
    /// Records the engine's state at `ts_ns` (and starts the engine's next peak period).
    /// `folio_level`: the per-folio hooks are attached, so the per-folio totals are the exact
    /// ones.
    pub fn sample(&mut self, engine: &mut PinEngine, folio_level: bool, ts_ns: u64) {
        self.push(sample_of(engine, folio_level, ts_ns));
    }

    pub fn push(&mut self, sample: Sample) {
        if self.samples.len() == HISTORY {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    pub fn samples(&self) -> &VecDeque<Sample> {
        &self.samples
    }

    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// The mean time between samples.
    pub fn tick_ns(&self) -> u64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(a), Some(b)) if self.samples.len() > 1 => {
                b.ts_ns.saturating_sub(a.ts_ns) / (self.samples.len() as u64 - 1)
            }
            _ => 0,
        }
    }

    /// Pins and releases per second between the last two samples.
    pub fn rates(&self) -> (f64, f64) {
        let n = self.samples.len();
        if n < 2 {
            return (0.0, 0.0);
        }
        let (a, b) = (self.samples[n - 2], self.samples[n - 1]);
        let secs = b.ts_ns.saturating_sub(a.ts_ns) as f64 / 1e9;
        if secs <= 0.0 {
            return (0.0, 0.0);
        }
        (
            b.pinned_total.saturating_sub(a.pinned_total) as f64 / secs,
            b.released_total.saturating_sub(a.released_total) as f64 / secs,
        )
    }
}

pub fn sample_of(engine: &mut PinEngine, folio_level: bool, ts_ns: u64) -> Sample {
    let peak = engine.state.take_peak();
    let l = &engine.ledger;
    let (pinned_total, released_total) = if folio_level {
        (l.folios.pinned + l.folios.added_pins, l.folios.released)
    } else {
        (l.totals.pinned, l.totals.released)
    };
    Sample {
        ts_ns,
        pinned_now: engine.state.pinned_now,
        peak,
        pinned_total,
        released_total,
    }
}

/// What the engine cannot tell by itself: where the events come from and what is missing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceInfo {
    /// `live` or the recording's file name.
    pub source: String,
    pub kernel: String,
    /// When tracing (or the recording) began, CLOCK_MONOTONIC.
    pub start_ns: u64,
    /// For a recording: when it ends (the cursor moves between start_ns and this).
    pub end_ns: Option<u64>,
    /// `pid 12`, `comm fio`, ...; empty: everything is traced.
    pub filters: String,
    /// Hooks this kernel has but gup-trace could not attach.
    pub missing_hooks: Vec<String>,
    /// No pin or grab hook attached: nothing about pins can be seen.
    pub blind: bool,
    /// Per-folio (grab) hooks attached.
    pub folio_level: bool,
    pub page_size: u64,
}

/// The moment a snapshot is taken, and what changes between moments.
#[derive(Clone, Debug, Default)]
pub struct Moment {
    pub now_ns: u64,
    /// Events the kernel side could not deliver (None: unknown, e.g. a truncated recording).
    pub lost_events: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DashboardSnapshot {
    pub source: SourceInfo,
    pub now_ns: u64,
    pub pinned_pages: u64,
    pub pinned_folios: u64,
    pub longterm_pages: u64,
    /// The most pages pinned at once in each tick, newest last, and the time between ticks.
    pub history: Vec<u64>,
    pub tick_ns: u64,
    pub pins_per_s: f64,
    pub unpins_per_s: f64,
    pub pinned_total: u64,
    pub released_total: u64,
    pub processes: Vec<ProcessRow>,
    /// Processes left out (beyond [`MAX_PROCESSES`]).
    pub processes_omitted: usize,
    pub sites: Vec<SiteRow>,
    /// Pinned pages by age: short-term and FOLL_LONGTERM.
    pub ages_short: [u64; 7],
    pub ages_long: [u64; 7],
    pub fast_refs: u64,
    pub slow_refs: u64,
    pub lock: LockRow,
    pub findings: Vec<FindingRow>,
    pub health: Health,
}

impl DashboardSnapshot {
    pub fn problems(&self) -> usize {
        self.findings.iter().filter(|f| f.problem).count()
    }

    pub fn fast_share(&self) -> Option<f64> {
        share(self.fast_refs, self.slow_refs)
    }

    pub fn elapsed_ns(&self) -> u64 {
        self.now_ns.saturating_sub(self.source.start_ns)
    }

    pub fn process(&self, id: ProcessId) -> Option<&ProcessRow> {
        self.processes.iter().find(|p| p.id == id)
    }

    pub fn site(&self, id: SiteId) -> Option<&SiteRow> {
        self.sites.iter().find(|s| s.id == id)
    }
}

/// What is missing from the view, always shown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub lost_events: Option<u64>,
    /// Events that arrived too late to be put in order.
    pub late_events: u64,
    /// Pages released by calls that came without their folios.
    pub unitemized_releases: u64,
    pub pre_existing_releases: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FindingRow {
    /// Stable across snapshots while the finding lasts: kind, process, call site.
    pub key: String,
    pub kind: &'static str,
    /// A problem in the traced programs (not only in gup-trace's view).
    pub problem: bool,
    pub headline: String,
    pub pid: Option<u32>,
    pub process: Option<ProcessId>,
    /// The evidence, as `gup-trace report` prints it.
    pub evidence: Vec<String>,
}

/// Builds snapshots, remembering what rates need from the previous one and the call sites'
/// stacks (named once each).
pub struct SnapshotBuilder {
    previous: Option<Baseline>,
    stacks: SiteStacks,
}

impl Default for SnapshotBuilder {
    fn default() -> Self {
        SnapshotBuilder {
            previous: None,
            stacks: SiteStacks::new(STACK_DEPTH),
        }
    }
}

impl SnapshotBuilder {
    pub fn new() -> SnapshotBuilder {
        SnapshotBuilder::default()
    }

    /// Forgets the previous snapshot: the next rates are measured from `engine` at `now_ns`
    /// (after a jump of a recording's time cursor).
    pub fn baseline(&mut self, engine: &PinEngine, now_ns: u64) {
        self.previous = Some(Baseline::of(engine, now_ns));
    }

    pub fn build(
        &mut self,
        engine: &PinEngine,
        source: &SourceInfo,
        moment: &Moment,
        history: &History,
        stacks: &mut StackLookup,
    ) -> DashboardSnapshot {
        let now = moment.now_ns;
        let state = &engine.state;
        let analysis = Analysis::new(
            engine,
            now,
            self.previous.as_ref(),
            &mut self.stacks,
            stacks,
        );
        let mut processes = analysis.processes;
        let mut processes_omitted = 0;
        if processes.len() > MAX_PROCESSES {
            processes.sort_by(ProcessRow::most_held_first);
            processes_omitted = processes.len() - MAX_PROCESSES;
            processes.truncate(MAX_PROCESSES);
            processes.sort_by_key(|p| p.id);
        }

        let findings = engine
            .findings(now, None, source.folio_level)
            .iter()
            .map(|f| finding_row(f, engine, source.start_ns, now, stacks))
            .collect();

        let (pins_per_s, unpins_per_s) = history.rates();
        let last = history.samples().back().copied().unwrap_or_default();
        let snapshot = DashboardSnapshot {
            source: source.clone(),
            now_ns: now,
            pinned_pages: state.pinned_now,
            pinned_folios: state.folios.len() as u64,
            longterm_pages: analysis.longterm_pages,
            history: history.samples().iter().map(|s| s.peak).collect(),
            tick_ns: history.tick_ns(),
            pins_per_s,
            unpins_per_s,
            pinned_total: last.pinned_total,
            released_total: last.released_total,
            processes,
            processes_omitted,
            sites: analysis.sites,
            ages_short: analysis.ages.short,
            ages_long: analysis.ages.long,
            fast_refs: analysis.fast_refs,
            slow_refs: analysis.slow_refs,
            lock: analysis.lock,
            findings,
            health: Health {
                lost_events: moment.lost_events,
                late_events: engine.late_events(),
                unitemized_releases: state.unitemized_releases,
                pre_existing_releases: state.pre_existing_releases,
            },
        };
        self.baseline(engine, now);
        snapshot
    }
}

/// `4.1s` style durations for headlines (short: a headline is one line of the panel).
pub fn secs(ns: u64) -> String {
    let s = ns as f64 / 1e9;
    if s < 10.0 {
        format!("{s:.1}s")
    } else if s < 600.0 {
        format!("{s:.0}s")
    } else {
        format!("{:.0}min", s / 60.0)
    }
}

fn pages(n: u64) -> String {
    format!("{n} page{}", if n == 1 { "" } else { "s" })
}

fn finding_row(
    f: &Finding,
    engine: &PinEngine,
    start_ns: u64,
    now: u64,
    stacks: &mut StackLookup,
) -> FindingRow {
    let evidence: Vec<String> = output::finding_text(f, start_ns, stacks, STACK_DEPTH)
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l).to_string())
        .collect();
    let FindingSubject { key, pid, process } = FindingSubject::of(f, &engine.state);
    FindingRow {
        key,
        kind: f.kind(),
        problem: f.is_problem(),
        headline: headline(f, now),
        pid,
        process,
        evidence,
    }
}

/// A finding in one line of the findings panel.
fn headline(f: &Finding, now: u64) -> String {
    match f {
        Finding::OrphanedPins(h) => format!(
            "ORPHANED pid {} {}: {} pinned, exited {} ago{}",
            h.tgid,
            h.comm,
            pages(h.pages),
            secs(now.saturating_sub(h.exited_ns.unwrap_or(now))),
            if h.longterm { " (LONGTERM)" } else { "" }
        ),
        Finding::LongHeldPin(h) => format!(
            "LONG-HELD pid {} {}: {} without FOLL_LONGTERM for {}",
            h.tgid,
            h.comm,
            pages(h.pages),
            secs(now.saturating_sub(h.oldest_ns))
        ),
        Finding::UnbalancedRelease(u) => format!(
            "UNBALANCED pid {} {}: {} dropped {} pin(s) on pfn {:#x}, which had {}",
            u.tgid, u.comm, u.hook, u.released, u.pfn, u.pins_before
        ),
        Finding::BiasAnomaly(b) => format!(
            "BIAS pid {}: {} moved refcount {:+} (expected {:+})",
            b.tgid, b.hook, b.refcount_delta, b.expected_refcount_delta
        ),
        Finding::CounterDrift(d) => format!(
            "DRIFT seen {}/{} pinned/released, vmstat {}/{}",
            d.pinned, d.released, d.vmstat_acquired, d.vmstat_released
        ),
        Finding::BlockedMigration(b) => {
            let (start, end) = b.blocked.range();
            let holder = b.holders.first().map_or("holder unknown".to_string(), |h| {
                format!("held by pid {} {}", h.tgid, h.comm)
            });
            format!(
                "BLOCKED {} pfn {start:#x}-{end:#x}: {holder}{}",
                b.blocked.name(),
                match b.outcome {
                    None => String::new(),
                    Some(0) => " (done since)".to_string(),
                    Some(err) => format!(" (gave up: {err})"),
                }
            )
        }
    }
}
