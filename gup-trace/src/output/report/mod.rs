//! What `gup-trace report` states about a replayed recording: who pinned, from where, what was
//! still pinned at the end, the findings, and mmap_lock inside GUP calls. One document
//! ([`Report`]) is the JSON form and what the text form ([`text`]) prints. It only selects
//! and formats the analysis layer's views ([`crate::analysis`]): the first rows of each, with
//! times in seconds into the recording.

mod text;

use serde::Serialize;

pub use text::{text, utc};

use super::FindingRecord;
use crate::{
    analysis::{Analysis, Holding, ProcessRow, SiteRow, SiteStacks},
    engine::{
        Finding,
        blocking::{LongtermMigration, LongtermTotals},
    },
    recording::{Damage, Filters, ReadStatus, Replay},
    session::KernelCounters,
    symbols::CallStack,
    vmstat::PinCounters,
};

/// How much of a report to show.
#[derive(Clone, Copy, Debug)]
pub struct ReportOptions {
    pub top: usize,
    pub stack_depth: usize,
}

#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub recording: Summary,
    pub processes: Table<ProcessEntry>,
    pub call_sites: Table<SiteEntry>,
    pub outstanding: Table<HeldEntry>,
    pub findings: Vec<FindingRecord<'a>>,
    pub mmap_lock: Table<LockEntry>,
    /// FOLL_LONGTERM GUP calls that migrated movable memory before pinning it.
    pub longterm_migrations: LongtermSection,
}

/// The migrations inside FOLL_LONGTERM GUP calls: totals, and the latest calls.
#[derive(Debug, Serialize)]
pub struct LongtermSection {
    #[serde(flatten)]
    pub totals: LongtermTotals,
    pub rows: Vec<LongtermEntry>,
}

/// One GUP call and the migrations inside it, placed in the recording's time.
#[derive(Debug, Serialize)]
pub struct LongtermEntry {
    pub time_s: f64,
    #[serde(flatten)]
    pub call: LongtermMigration,
}

impl LongtermEntry {
    fn of(m: &LongtermMigration, start_ns: u64) -> LongtermEntry {
        LongtermEntry {
            time_s: secs(m.ts_ns, start_ns),
            call: m.clone(),
        }
    }
}

/// The first rows of a longer list.
#[derive(Debug, Serialize)]
pub struct Table<T> {
    pub total: usize,
    pub rows: Vec<T>,
}

impl<T> Table<T> {
    /// The first `n` of `all`, each made a row by `row`.
    fn top<R>(all: Vec<R>, n: usize, row: impl FnMut(R) -> T) -> Table<T> {
        Table {
            total: all.len(),
            rows: all.into_iter().take(n).map(row).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub gup_trace_version: String,
    pub kernel: String,
    pub start_unix_s: f64,
    pub seconds: f64,
    pub records: u64,
    pub events: u64,
    /// None when the recording does not say (it was cut short before the counters).
    pub lost_events: Option<u64>,
    pub stacks: usize,
    /// `complete`, `truncated` or `damaged: ...`.
    pub status: String,
    /// The file ends before the end marker (the recorder was killed or the disk filled).
    pub truncated: bool,
    /// The chunk that failed its checksum (or could not be read): the report stops there.
    pub damaged: Option<Damage>,
    /// Hooks the kernel has but gup-trace could not attach, and why.
    pub missing_hooks: Vec<MissingHook>,
    pub filters: Filters,
    /// Pages pinned and released, as gup-trace saw them and as /proc/vmstat counted them.
    pub pinned: u64,
    pub released: u64,
    pub vmstat: Option<PinCounters>,
    pub kernel_counters: Option<KernelCounters>,
    /// Events that arrived too late to be put back in order; records this build could not
    /// decode.
    pub late_events: u64,
    pub undecodable_records: u64,
}

#[derive(Debug, Serialize)]
pub struct MissingHook {
    pub hook: String,
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
}

/// A process as the report states it.
#[derive(Debug, Serialize)]
pub struct ProcessEntry {
    pub pid: u32,
    pub comm: String,
    pub parent: Option<u32>,
    pub pins_taken: u64,
    pub pins_released: u64,
    pub outstanding: u64,
    /// Pins it released, its own or others'.
    pub releases_made: u64,
    pub pin_calls: u64,
    pub failed_pin_calls: u64,
    pub get_calls: u64,
    /// Share of its GUP pages that came from the lockless fast walk (None: no path figures).
    pub fast_share: Option<f64>,
    /// Seconds into the recording.
    pub first_s: f64,
    pub exited_s: Option<f64>,
}

/// A call site as the report states it.
#[derive(Debug, Serialize)]
pub struct SiteEntry {
    pub entry: &'static str,
    pub stack_id: Option<u32>,
    pub pins_taken: u64,
    pub pins_released: u64,
    pub outstanding: u64,
    pub stack: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_error: Option<String>,
}

/// Pins one process still held at the end, taken through one call site.
#[derive(Debug, Serialize)]
pub struct HeldEntry {
    /// The process whose memory is pinned (it holds the pins).
    pub pid: u32,
    pub comm: String,
    pub exited_s: Option<f64>,
    /// The process that took them, when another (a kernel worker on its behalf).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taken_by: Option<TakerEntry>,
    pub entry: &'static str,
    pub stack_id: Option<u32>,
    pub longterm: bool,
    pub pages: u64,
    pub folios: u64,
    /// When the oldest was taken, in seconds into the recording, and its age at the end.
    pub oldest_s: f64,
    pub age_s: f64,
}

/// Who took pins on another process's memory.
#[derive(Debug, Serialize)]
pub struct TakerEntry {
    pub pid: u32,
    pub comm: String,
}

/// mmap_lock inside one process's GUP calls, as the report states it.
#[derive(Debug, Serialize)]
pub struct LockEntry {
    pub pid: u32,
    pub comm: String,
    /// GUP calls that took mmap_lock.
    pub calls: u64,
    pub wait_p50_ns: u64,
    pub wait_p99_ns: u64,
    pub hold_p50_ns: u64,
    pub hold_p99_ns: u64,
    pub wait_total_ns: u64,
    pub hold_total_ns: u64,
    /// Times GUP dropped the lock and took it again, and how long it stayed dropped.
    pub drops: u64,
    pub dropped_ns: u64,
}

fn secs(ns: u64, start_ns: u64) -> f64 {
    ns.saturating_sub(start_ns) as f64 / 1e9
}

impl ProcessEntry {
    fn of(p: &ProcessRow, start_ns: u64) -> ProcessEntry {
        ProcessEntry {
            pid: p.pid,
            comm: p.comm.clone(),
            parent: p.parent,
            pins_taken: p.taken,
            pins_released: p.released,
            outstanding: p.outstanding,
            releases_made: p.releases_made,
            pin_calls: p.pin_calls,
            failed_pin_calls: p.failed_pin_calls,
            get_calls: p.get_calls,
            fast_share: p.fast_share(),
            first_s: secs(p.first_ns, start_ns),
            exited_s: p.exited_ns.map(|t| secs(t, start_ns)),
        }
    }
}

impl SiteEntry {
    fn of(s: &SiteRow) -> SiteEntry {
        let (stack, stack_error) = match (&s.frames, s.stack_id) {
            // The report has always said it in fewer words than the dashboard.
            (_, None) => (Vec::new(), Some("the kernel recorded no stack".into())),
            (Ok(frames), Some(_)) => (frames.clone(), None),
            (Err(why), Some(_)) => (Vec::new(), Some(why.clone())),
        };
        SiteEntry {
            entry: s.entry,
            stack_id: s.stack_id,
            pins_taken: s.taken,
            pins_released: s.released,
            outstanding: s.outstanding,
            stack,
            stack_error,
        }
    }
}

impl HeldEntry {
    fn of(h: &Holding, a: &Analysis, start_ns: u64) -> HeldEntry {
        let (p, s) = (a.process(h.process), a.site(h.site));
        HeldEntry {
            pid: p.pid,
            comm: p.comm.clone(),
            exited_s: p.exited_ns.map(|t| secs(t, start_ns)),
            taken_by: h.taker.map(|t| {
                let t = a.process(t);
                TakerEntry {
                    pid: t.pid,
                    comm: t.comm.clone(),
                }
            }),
            entry: s.entry,
            stack_id: s.stack_id,
            longterm: h.longterm,
            pages: h.pages,
            folios: h.folios,
            oldest_s: secs(h.oldest_ns, start_ns),
            age_s: secs(a.now_ns, h.oldest_ns),
        }
    }
}

impl LockEntry {
    fn of(p: &ProcessRow) -> LockEntry {
        let l = &p.lock;
        LockEntry {
            pid: p.pid,
            comm: p.comm.clone(),
            calls: l.calls,
            wait_p50_ns: l.wait_p50,
            wait_p99_ns: l.wait_p99,
            hold_p50_ns: l.hold_p50,
            hold_p99_ns: l.hold_p99,
            wait_total_ns: l.wait_total_ns,
            hold_total_ns: l.hold_total_ns,
            drops: l.drops,
            dropped_ns: l.dropped_ns,
        }
    }
}

impl Summary {
    fn of(replay: &Replay) -> Summary {
        let meta = &replay.meta;
        let ledger = &replay.engine.ledger;
        let (pinned, released) = if replay.folio_level() {
            (ledger.folios.pinned, ledger.folios.released)
        } else {
            (ledger.totals.pinned, ledger.totals.released)
        };
        Summary {
            gup_trace_version: meta.gup_trace_version.clone(),
            kernel: meta.kernel_release.clone(),
            start_unix_s: meta.start_unix_ns as f64 / 1e9,
            seconds: secs(replay.end_ns(), meta.start_ns),
            records: replay.records,
            events: replay.events,
            lost_events: replay.lost_events(),
            stacks: replay.stacks.len(),
            status: replay.status.to_string(),
            truncated: replay.status == ReadStatus::Truncated,
            damaged: match &replay.status {
                ReadStatus::Damaged(d) => Some(d.clone()),
                _ => None,
            },
            missing_hooks: meta
                .hooks
                .iter()
                .filter(|h| h.failed())
                .map(|h| MissingHook {
                    hook: h.hook.clone(),
                    reasons: h.reasons.clone(),
                    cost: h.cost.clone(),
                })
                .collect(),
            filters: meta.filters.clone(),
            pinned,
            released,
            vmstat: replay.vmstat_delta(),
            kernel_counters: replay.kernel_delta(),
            late_events: replay.engine.late_events(),
            undecodable_records: replay.undecodable,
        }
    }
}

impl<'a> Report<'a> {
    /// `findings` come from [`Replay::findings`] on the same replay (kept by the caller, which
    /// the JSON form borrows).
    pub fn new(replay: &Replay, findings: &'a [Finding], opts: ReportOptions) -> Report<'a> {
        let start_ns = replay.meta.start_ns;
        let mut lookup = |id: u32| -> CallStack { replay.stack(id) };
        let analysis = Analysis::new(
            &replay.engine,
            replay.end_ns(),
            None,
            &mut SiteStacks::new(opts.stack_depth),
            &mut lookup,
        );

        let mut processes: Vec<&ProcessRow> = analysis.processes.iter().collect();
        processes.sort_by(|a, b| ProcessRow::most_taken_first(a, b));
        let mut sites: Vec<&SiteRow> = analysis.sites.iter().collect();
        sites.sort_by(|a, b| SiteRow::most_taken_first(a, b));
        let mut holdings: Vec<&Holding> = analysis.holdings.iter().collect();
        holdings.sort_by(|a, b| Holding::oldest_first(a, b));

        let findings = findings
            .iter()
            .map(|f| FindingRecord::new(f, &mut lookup, opts.stack_depth))
            .collect();
        Report {
            recording: Summary::of(replay),
            processes: Table::top(processes, opts.top, |p| ProcessEntry::of(p, start_ns)),
            call_sites: Table::top(sites, opts.top, |s| SiteEntry::of(s)),
            outstanding: Table::top(holdings, opts.top, |h| {
                HeldEntry::of(h, &analysis, start_ns)
            }),
            findings,
            mmap_lock: Table::top(analysis.lock_users(), opts.top, |p| LockEntry::of(p)),
            longterm_migrations: LongtermSection {
                totals: replay.engine.blocking.longterm_totals,
                rows: replay
                    .engine
                    .blocking
                    .longterm_calls
                    .iter()
                    .rev()
                    .take(opts.top)
                    .map(|m| LongtermEntry::of(m, start_ns))
                    .collect(),
            },
        }
    }
}

/// The report as `report` prints it: `report` (made by [`Report::new`] from the same
/// `replay` and `findings`) with each finding's text and evidence.
pub fn replay_text(
    report: &Report,
    replay: &Replay,
    findings: &[Finding],
    opts: ReportOptions,
) -> String {
    let mut lookup = |id: u32| -> CallStack { replay.stack(id) };
    let findings_text = super::findings_text(
        findings,
        replay.meta.start_ns,
        &mut lookup,
        opts.stack_depth,
    );
    text(report, &findings_text)
}

#[cfg(test)]
mod tests;
