//! What the dashboard shows, taken from the engine at one moment: a [`DashboardSnapshot`],
//! small and self-contained (rows of numbers and short strings, the drill-down details of the
//! processes that hold pins, the findings with their evidence). The screens are drawn from it
//! alone, never from the event stream, so drawing costs the same whatever the event rate, and a
//! paused screen can still be sorted, filtered and drilled into.
//!
//! Building one walks the engine's processes, call sites and pinned folios once.

use std::collections::{HashMap, VecDeque};

use gup_trace_common::Hook;

use crate::{
    engine::{
        Finding, PinEngine,
        pins::{Log2Histogram, ProcessId, SiteId},
    },
    output::{self, StackLookup},
};

/// Upper bounds of the pin-age buckets, in ns; the last bucket is open.
pub const AGE_BOUNDS_NS: [u64; 6] = [
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    60_000_000_000,
    600_000_000_000,
];
pub const AGE_LABELS: [&str; 7] = ["<10ms", "<100ms", "<1s", "<10s", "<1m", "<10m", ">=10m"];

/// Pinned folios listed per process in its drill-down (the oldest).
pub const FOLIOS_PER_PROCESS: usize = 64;
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

pub fn share(fast: u64, slow: u64) -> Option<f64> {
    (fast + slow > 0).then(|| fast as f64 / (fast + slow) as f64)
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

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessRow {
    pub id: ProcessId,
    pub pid: u32,
    pub comm: String,
    pub parent: Option<u32>,
    pub outstanding: u64,
    pub taken: u64,
    pub released: u64,
    /// Pins it released, its own or others'.
    pub releases_made: u64,
    /// Pins taken per second since the previous snapshot.
    pub rate: f64,
    /// When its oldest outstanding pin was taken.
    pub oldest_ns: Option<u64>,
    pub first_ns: u64,
    pub exited_ns: Option<u64>,
    pub pin_calls: u64,
    pub failed_pin_calls: u64,
    pub get_calls: u64,
    pub fast_refs: u64,
    pub slow_refs: u64,
    pub lock: LockRow,
    /// Its pins outstanding per call site: (site, FOLL_LONGTERM, pages).
    pub holdings: Vec<(SiteId, bool, u64)>,
    /// Call sites it took pins through.
    pub sites: Vec<SiteId>,
    /// Its oldest pinned folios, oldest first, and how many folios it holds pins on.
    pub folios: Vec<FolioRow>,
    pub folio_count: u64,
}

impl ProcessRow {
    /// Whether it did anything with pins: took or released some, or made GUP calls. Other
    /// processes are only known from their forks and exits.
    pub fn active(&self) -> bool {
        self.taken + self.releases_made + self.pin_calls + self.get_calls + self.lock.drops > 0
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FolioRow {
    pub folio: u64,
    pub pfn: u64,
    pub order: u8,
    pub refs: u32,
    pub since_ns: u64,
    pub longterm: bool,
    pub site: SiteId,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SiteRow {
    pub id: SiteId,
    pub entry: &'static str,
    pub stack_id: Option<u32>,
    pub taken: u64,
    pub released: u64,
    pub outstanding: u64,
    pub rate: f64,
    pub oldest_ns: Option<u64>,
    /// The first frame below the GUP code: who asked for the pins.
    pub caller: String,
    /// The stack, top first (without the tracer's frames), or why there is none.
    pub frames: Result<Vec<String>, String>,
}

/// mmap_lock inside GUP calls (upper bounds of power-of-two buckets).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockRow {
    pub calls: u64,
    pub wait_p50: u64,
    pub wait_p99: u64,
    pub hold_p50: u64,
    pub hold_p99: u64,
    pub drops: u64,
    pub dropped_ns: u64,
}

impl LockRow {
    fn of(wait: &Log2Histogram, hold: &Log2Histogram, drops: u64, dropped_ns: u64) -> LockRow {
        LockRow {
            calls: wait.count,
            wait_p50: wait.percentile(50.0),
            wait_p99: wait.percentile(99.0),
            hold_p50: hold.percentile(50.0),
            hold_p99: hold.percentile(99.0),
            drops,
            dropped_ns,
        }
    }
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
/// stacks (read once each).
#[derive(Default)]
pub struct SnapshotBuilder {
    prev_ns: Option<u64>,
    prev_process_taken: Vec<u64>,
    prev_site_taken: Vec<u64>,
    stacks: HashMap<u32, (String, Result<Vec<String>, String>)>,
}

/// Per-process figures gathered in the walk over pinned folios.
#[derive(Default)]
struct Held {
    oldest_ns: Option<u64>,
    folios: Vec<FolioRow>,
    /// Once `folios` was trimmed: the newest pin it kept (younger ones cannot get in).
    cutoff_ns: u64,
    folio_count: u64,
    holdings: Vec<(SiteId, bool, u64)>,
}

impl Held {
    fn new() -> Held {
        Held {
            cutoff_ns: u64::MAX,
            ..Held::default()
        }
    }

    /// Keeps the oldest [`FOLIOS_PER_PROCESS`] folios, in linear time per folio on average.
    fn offer(&mut self, row: FolioRow) {
        if row.since_ns > self.cutoff_ns {
            return;
        }
        self.folios.push(row);
        if self.folios.len() >= 2 * FOLIOS_PER_PROCESS {
            self.folios
                .select_nth_unstable_by_key(FOLIOS_PER_PROCESS - 1, |f| (f.since_ns, f.pfn));
            self.folios.truncate(FOLIOS_PER_PROCESS);
            self.cutoff_ns = self.folios.iter().map(|f| f.since_ns).max().unwrap_or(0);
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
        let state = &engine.state;
        self.prev_ns = Some(now_ns);
        self.prev_process_taken = state.processes.iter().map(|p| p.pins_taken).collect();
        self.prev_site_taken = state.call_sites.iter().map(|s| s.pins_taken).collect();
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
        let secs = self
            .prev_ns
            .map(|t| now.saturating_sub(t) as f64 / 1e9)
            .filter(|s| *s > 0.0);
        let rate = |now_taken: u64, prev: Option<&u64>| match secs {
            Some(s) => now_taken.saturating_sub(prev.copied().unwrap_or(0)) as f64 / s,
            None => 0.0,
        };

        // One walk over the pinned folios: ages, oldest pins, each holder's folios.
        // Indexed by ProcessId and SiteId: a hash lookup per pinned folio was most of the walk.
        let mut held: Vec<Option<Held>> = Vec::new();
        held.resize_with(state.processes.len(), || None);
        let mut site_oldest: Vec<Option<u64>> = vec![None; state.call_sites.len()];
        let mut ages_short = [0u64; 7];
        let mut ages_long = [0u64; 7];
        let mut longterm_pages = 0;
        for (&address, folio) in &state.folios {
            for hold in &folio.holds {
                let owner = state.owners[hold.owner as usize];
                let age = now.saturating_sub(hold.since_ns);
                let bucket = AGE_BOUNDS_NS
                    .iter()
                    .position(|&b| age < b)
                    .unwrap_or(AGE_BOUNDS_NS.len());
                let refs = u64::from(hold.refs);
                if owner.longterm {
                    ages_long[bucket] += refs;
                    longterm_pages += refs;
                } else {
                    ages_short[bucket] += refs;
                }
                let oldest = &mut site_oldest[owner.site as usize];
                *oldest = Some(oldest.map_or(hold.since_ns, |t| t.min(hold.since_ns)));
                let h = held[owner.process as usize].get_or_insert_with(Held::new);
                h.oldest_ns = Some(h.oldest_ns.map_or(hold.since_ns, |t| t.min(hold.since_ns)));
                h.folio_count += 1;
                match h
                    .holdings
                    .iter_mut()
                    .find(|(s, l, _)| *s == owner.site && *l == owner.longterm)
                {
                    Some((_, _, pages)) => *pages += refs,
                    None => h.holdings.push((owner.site, owner.longterm, refs)),
                }
                h.offer(FolioRow {
                    folio: address,
                    pfn: folio.pfn,
                    order: folio.order,
                    refs: hold.refs,
                    since_ns: hold.since_ns,
                    longterm: owner.longterm,
                    site: owner.site,
                });
            }
        }

        let mut sites_of: HashMap<ProcessId, Vec<SiteId>> = HashMap::new();
        for owner in &state.owners {
            let sites = sites_of.entry(owner.process).or_default();
            if !sites.contains(&owner.site) {
                sites.push(owner.site);
            }
        }

        let mut wait = Log2Histogram::default();
        let mut hold = Log2Histogram::default();
        let (mut drops, mut dropped_ns, mut fast_refs, mut slow_refs) = (0, 0, 0, 0);
        let mut processes: Vec<ProcessRow> = Vec::with_capacity(state.processes.len());
        for (i, p) in state.processes.iter().enumerate() {
            let id = i as ProcessId;
            wait.merge(&p.lock.wait);
            hold.merge(&p.lock.hold);
            drops += p.lock.drops;
            dropped_ns += p.lock.dropped_ns;
            fast_refs += p.fast_refs;
            slow_refs += p.slow_refs;
            let mut h = held[i].take().unwrap_or_default();
            oldest_first(&mut h.folios);
            h.holdings.sort_by(|a, b| b.2.cmp(&a.2));
            processes.push(ProcessRow {
                id,
                pid: p.tgid,
                comm: p.comm.to_string(),
                parent: p.parent,
                outstanding: p.outstanding(),
                taken: p.pins_taken,
                released: p.pins_released,
                releases_made: p.releases_made,
                rate: rate(p.pins_taken, self.prev_process_taken.get(i)),
                oldest_ns: h.oldest_ns,
                first_ns: p.first_ns,
                exited_ns: p.exited_ns,
                pin_calls: p.pin_calls,
                failed_pin_calls: p.failed_pin_calls,
                get_calls: p.get_calls,
                fast_refs: p.fast_refs,
                slow_refs: p.slow_refs,
                lock: LockRow::of(&p.lock.wait, &p.lock.hold, p.lock.drops, p.lock.dropped_ns),
                holdings: h.holdings,
                sites: sites_of.remove(&id).unwrap_or_default(),
                folios: h.folios,
                folio_count: h.folio_count,
            });
        }
        let mut processes_omitted = 0;
        if processes.len() > MAX_PROCESSES {
            // Keep the ones that matter: pins held, then pins taken, then the newest.
            processes.sort_by(|a, b| {
                (b.outstanding, b.taken, b.first_ns).cmp(&(a.outstanding, a.taken, a.first_ns))
            });
            processes_omitted = processes.len() - MAX_PROCESSES;
            processes.truncate(MAX_PROCESSES);
            processes.sort_by_key(|p| p.id);
        }

        let mut sites = Vec::with_capacity(state.call_sites.len());
        for (i, s) in state.call_sites.iter().enumerate() {
            let (caller, frames) = match s.stack_id {
                Some(id) => self
                    .stacks
                    .entry(id)
                    .or_insert_with(|| stack_text(&stacks(id), s.entry))
                    .clone(),
                None => (
                    String::new(),
                    Err("the kernel recorded no stack (pins taken outside a GUP call)".into()),
                ),
            };
            sites.push(SiteRow {
                id: i as SiteId,
                entry: s.entry.name(),
                stack_id: s.stack_id,
                taken: s.pins_taken,
                released: s.pins_released,
                outstanding: s.outstanding(),
                rate: rate(s.pins_taken, self.prev_site_taken.get(i)),
                oldest_ns: site_oldest[i],
                caller,
                frames,
            });
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
            longterm_pages,
            history: history.samples().iter().map(|s| s.peak).collect(),
            tick_ns: history.tick_ns(),
            pins_per_s,
            unpins_per_s,
            pinned_total: last.pinned_total,
            released_total: last.released_total,
            processes,
            processes_omitted,
            sites,
            ages_short,
            ages_long,
            fast_refs,
            slow_refs,
            lock: LockRow::of(&wait, &hold, drops, dropped_ns),
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

fn oldest_first(folios: &mut Vec<FolioRow>) {
    folios.sort_by_key(|f| (f.since_ns, f.pfn));
    folios.truncate(FOLIOS_PER_PROCESS);
}

/// Whether a frame is GUP's own code (or the tracer's), not the caller that asked for pins.
fn is_gup_internal(function: &str) -> bool {
    function.contains("gup")
        || function.starts_with("pin_user_pages")
        || function.starts_with("get_user_pages")
        || function.starts_with("__get_user_pages")
        || function.starts_with("try_grab")
        || function.starts_with("follow_page")
        || function.starts_with("folio_add_pin")
}

/// The caller (first frame outside GUP) and the stack as text.
fn stack_text(
    stack: &crate::symbols::CallStack,
    entry: Hook,
) -> (String, Result<Vec<String>, String>) {
    match stack {
        Ok(frames) => {
            let frames = output::call_frames(frames, entry);
            let caller = frames
                .iter()
                .find(|f| f.function().is_none_or(|name| !is_gup_internal(name)))
                .map(|f| f.function().map_or_else(|| f.to_string(), str::to_string))
                .unwrap_or_default();
            (
                caller,
                Ok(frames
                    .iter()
                    .take(STACK_DEPTH)
                    .map(ToString::to_string)
                    .collect()),
            )
        }
        Err(why) => (String::new(), Err(why.clone())),
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
    let (pid, headline, key) = match f {
        Finding::OrphanedPins(h) => (
            Some(h.tgid),
            format!(
                "ORPHANED pid {} {}: {} pinned, exited {} ago{}",
                h.tgid,
                h.comm,
                pages(h.pages),
                secs(now.saturating_sub(h.exited_ns.unwrap_or(now))),
                if h.longterm { " (LONGTERM)" } else { "" }
            ),
            format!("orphaned/{}/{}/{:?}", h.tgid, h.entry.name(), h.stack_id),
        ),
        Finding::LongHeldPin(h) => (
            Some(h.tgid),
            format!(
                "LONG-HELD pid {} {}: {} without FOLL_LONGTERM for {}",
                h.tgid,
                h.comm,
                pages(h.pages),
                secs(now.saturating_sub(h.oldest_ns))
            ),
            format!("long/{}/{}/{:?}", h.tgid, h.entry.name(), h.stack_id),
        ),
        Finding::UnbalancedRelease(u) => (
            Some(u.tgid),
            format!(
                "UNBALANCED pid {} {}: {} dropped {} pin(s) on pfn {:#x}, which had {}",
                u.tgid, u.comm, u.hook, u.released, u.pfn, u.pins_before
            ),
            format!("unbalanced/{}/{:#x}/{}", u.tgid, u.folio, u.ts_ns),
        ),
        Finding::BiasAnomaly(b) => (
            Some(b.tgid),
            format!(
                "BIAS pid {}: {} moved refcount {:+} (expected {:+})",
                b.tgid, b.hook, b.refcount_delta, b.expected_refcount_delta
            ),
            format!("bias/{}/{:#x}/{}", b.tgid, b.folio, b.ts_ns),
        ),
        Finding::CounterDrift(d) => (
            None,
            format!(
                "DRIFT seen {}/{} pinned/released, vmstat {}/{}",
                d.pinned, d.released, d.vmstat_acquired, d.vmstat_released
            ),
            "drift".to_string(),
        ),
    };
    // The process record the finding is about: the newest lifetime of that pid that fits.
    let process = pid.and_then(|pid| {
        let exited = match f {
            Finding::OrphanedPins(h) => h.exited_ns,
            _ => None,
        };
        engine
            .state
            .processes
            .iter()
            .enumerate()
            .rev()
            .find(|(_, p)| p.tgid == pid && (exited.is_none() || p.exited_ns == exited))
            .map(|(i, _)| i as ProcessId)
    });
    FindingRow {
        key,
        kind: f.kind(),
        problem: f.is_problem(),
        headline,
        pid,
        process,
        evidence,
    }
}
