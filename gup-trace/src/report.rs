//! A recording replayed through the pin engine, and what `gup-trace report` says about it:
//! who pinned, from where, what was still pinned at the end, the findings, and mmap_lock inside
//! GUP calls. One model ([`Report`]) serves the text and the JSON forms.

use std::{
    collections::{HashMap, VecDeque},
    fmt::Write as _,
    io::Read,
};

use anyhow::Result;
use gup_trace_common::{Hook, HookClass};
use serde::Serialize;

use crate::{
    engine::{FindingRules, PinEngine, REORDER_HOLD_NS},
    events::TraceEvent,
    output::{self, FindingRecord, call_frames},
    recording::{CounterSnapshot, EndTotals, Item, Metadata, ReadStatus, RecordingReader},
    session::KernelCounters,
    symbols::CallStack,
    vmstat::PinCounters,
};

/// A recording, replayed.
pub struct Replay {
    pub meta: Metadata,
    pub engine: PinEngine,
    pub stacks: HashMap<u32, CallStack>,
    pub start: Option<CounterSnapshot>,
    pub end: Option<CounterSnapshot>,
    pub end_totals: Option<EndTotals>,
    pub status: ReadStatus,
    pub records: u64,
    pub events: u64,
    /// Records this build could not decode, and the first reason.
    pub undecodable: u64,
    pub decode_error: Option<String>,
}

/// Which events of a recording to replay: `report --pid/--comm/--cgroup`. Releases pass
/// whoever made them, as in a live session: a pin is often released by another task, and
/// without the release it would look held.
#[derive(Clone, Debug, Default)]
pub struct ReplayFilter {
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub cgroup_id: Option<u64>,
}

impl ReplayFilter {
    pub fn keeps(&self, e: &TraceEvent) -> bool {
        let release = e.hook.class() == gup_trace_common::HookClass::Unpin
            || e.folio
                .is_some_and(|f| f.bits & gup_trace_common::folio_bit::RELEASE != 0);
        // Forks keep pid reuse visible whoever the parent is.
        if release || e.kind == gup_trace_common::EventKind::ProcessFork {
            return true;
        }
        self.pid.is_none_or(|p| p == e.tgid)
            && self.comm.as_deref().is_none_or(|c| e.comm == c)
            && self.cgroup_id.is_none_or(|c| c == e.cgroup_id)
    }
}

/// A recording replayed step by step: the engine's state at any time of the recording, reached
/// by applying its events up to that time ([`Replayer::advance`]). `report --tui` moves a time
/// cursor with it; [`Replay::read`] runs it to the end.
pub struct Replayer<R: Read> {
    reader: RecordingReader<R>,
    pub engine: PinEngine,
    pub stacks: HashMap<u32, CallStack>,
    pub start: Option<CounterSnapshot>,
    pub end: Option<CounterSnapshot>,
    pub end_totals: Option<EndTotals>,
    pub undecodable: u64,
    pub decode_error: Option<String>,
    /// Events read but later than the time reached, in reading order.
    ahead: VecDeque<TraceEvent>,
    batch: Vec<TraceEvent>,
    filter: ReplayFilter,
}

impl<R: Read> Replayer<R> {
    pub fn new(reader: RecordingReader<R>, rules: FindingRules) -> Replayer<R> {
        let meta = &reader.meta;
        let engine = PinEngine::new(meta.start_ns, meta.foll_longterm, rules);
        Replayer {
            reader,
            engine,
            stacks: HashMap::new(),
            start: None,
            end: None,
            end_totals: None,
            undecodable: 0,
            decode_error: None,
            ahead: VecDeque::new(),
            batch: Vec::new(),
            filter: ReplayFilter::default(),
        }
    }

    /// Applies only the events `filter` keeps.
    pub fn filtered(mut self, filter: ReplayFilter) -> Replayer<R> {
        self.filter = filter;
        self
    }

    pub fn meta(&self) -> &Metadata {
        &self.reader.meta
    }

    /// Whether every item has been read and applied.
    pub fn at_end(&self) -> bool {
        self.ahead.is_empty() && self.reader.status != ReadStatus::Reading
    }

    /// Applies every event up to `until_ns` (all of them with None), then flushes the engine:
    /// its state is the recording's at that time. Records arrive nearly in time order, so
    /// reading goes on until an event is [`REORDER_HOLD_NS`] past `until_ns`; the events past
    /// `until_ns` wait for the next step.
    pub fn advance(&mut self, until_ns: Option<u64>) -> Result<()> {
        let until = until_ns.unwrap_or(u64::MAX);
        let stop_after = until.saturating_add(REORDER_HOLD_NS);
        // What an earlier step read ahead first, in its order.
        let mut kept = VecDeque::new();
        let mut past_stop = false;
        while let Some(e) = self.ahead.pop_front() {
            past_stop |= e.ts_ns > stop_after;
            if e.ts_ns <= until {
                self.engine.push(e);
            } else {
                kept.push_back(e);
            }
        }
        self.ahead = kept;
        while !past_stop {
            let Some(item) = self.reader.next_item()? else {
                break;
            };
            match item {
                Item::Record(bytes) => match TraceEvent::decode_record(bytes, &mut self.batch) {
                    Ok(()) => {
                        for e in self.batch.drain(..).filter(|e| self.filter.keeps(e)) {
                            past_stop |= e.ts_ns > stop_after;
                            if e.ts_ns <= until {
                                self.engine.push(e);
                            } else {
                                self.ahead.push_back(e);
                            }
                        }
                    }
                    Err(e) => {
                        self.batch.clear();
                        self.undecodable += 1;
                        self.decode_error.get_or_insert_with(|| e.to_string());
                    }
                },
                Item::Stack(id, stack) => {
                    self.stacks.insert(id, stack);
                }
                Item::Counters(c) if c.end => {
                    // The kernel's counters were read here: later events are outside the
                    // window they cover (they still count for who holds what).
                    self.engine.ledger.close(c.ts_ns);
                    self.end = Some(c);
                }
                Item::Counters(c) => self.start = Some(c),
                Item::End(e) => self.end_totals = Some(e),
            }
        }
        self.engine.flush();
        Ok(())
    }

    /// Records and events read so far.
    pub fn read_so_far(&self) -> (u64, u64) {
        (self.reader.records, self.reader.events)
    }

    pub fn status(&self) -> &ReadStatus {
        &self.reader.status
    }

    /// The replay as far as it went (all of it after `advance(None)`).
    pub fn into_replay(self) -> Replay {
        Replay {
            meta: self.reader.meta.clone(),
            engine: self.engine,
            stacks: self.stacks,
            start: self.start,
            end: self.end,
            end_totals: self.end_totals,
            status: self.reader.status.clone(),
            records: self.reader.records,
            events: self.reader.events,
            undecodable: self.undecodable,
            decode_error: self.decode_error,
        }
    }
}

impl Replay {
    /// Reads the whole recording and applies its events to a fresh engine, in order.
    pub fn read<R: Read>(reader: RecordingReader<R>, rules: FindingRules) -> Result<Replay> {
        Replay::read_filtered(reader, rules, &ReplayFilter::default())
    }

    /// [`Replay::read`], keeping only the events `filter` keeps.
    pub fn read_filtered<R: Read>(
        reader: RecordingReader<R>,
        rules: FindingRules,
        filter: &ReplayFilter,
    ) -> Result<Replay> {
        let mut replayer = Replayer::new(reader, rules).filtered(filter.clone());
        replayer.advance(None)?;
        Ok(replayer.into_replay())
    }

    /// When the recording ended: its end marker, else its last counters, else its newest
    /// event (a truncated recording).
    pub fn end_ns(&self) -> u64 {
        self.end_totals
            .map(|e| e.end_ns)
            .or(self.end.map(|c| c.ts_ns))
            .unwrap_or(self.engine.newest_ns)
            .max(self.meta.start_ns)
    }

    /// The kernel's counters over the recording, when both ends were recorded.
    pub fn kernel_delta(&self) -> Option<KernelCounters> {
        Some(self.end?.kernel.delta_since(&self.start?.kernel))
    }

    pub fn vmstat_delta(&self) -> Option<PinCounters> {
        Some(self.end?.vmstat?.delta_since(&self.start?.vmstat?))
    }

    /// Events lost: from the end marker, else from the counters.
    pub fn lost_events(&self) -> Option<u64> {
        self.end_totals
            .map(|e| e.lost_events)
            .or(self.kernel_delta().map(|k| k.lost_events))
    }

    fn filtered(&self) -> bool {
        let f = &self.meta.filters;
        f.pid.is_some() || f.comm.is_some() || f.cgroup_id.is_some()
    }

    pub fn stack(&self, id: u32) -> CallStack {
        self.stacks
            .get(&id)
            .cloned()
            .unwrap_or_else(|| Err(format!("stack {id} is not in the recording")))
    }
}

/// How much of a report to show.
#[derive(Clone, Copy, Debug)]
pub struct ReportOptions {
    pub top: usize,
    pub stack_depth: usize,
}

#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub recording: Summary,
    pub processes: Table<ProcessRow>,
    pub call_sites: Table<SiteRow>,
    pub outstanding: Table<HeldRow>,
    pub findings: Vec<FindingRecord<'a>>,
    pub mmap_lock: Table<LockRow>,
}

/// The first rows of a longer list.
#[derive(Debug, Serialize)]
pub struct Table<T> {
    pub total: usize,
    pub rows: Vec<T>,
}

impl<T> Table<T> {
    fn top(mut all: Vec<T>, n: usize) -> Table<T> {
        let total = all.len();
        all.truncate(n);
        Table { total, rows: all }
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
    /// Hooks the kernel has but gup-trace could not attach, and why.
    pub missing_hooks: Vec<MissingHook>,
    pub filters: crate::recording::Filters,
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

#[derive(Debug, Serialize)]
pub struct ProcessRow {
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

#[derive(Debug, Serialize)]
pub struct SiteRow {
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
pub struct HeldRow {
    pub pid: u32,
    pub comm: String,
    pub exited_s: Option<f64>,
    pub entry: &'static str,
    pub stack_id: Option<u32>,
    pub longterm: bool,
    pub pages: u64,
    pub folios: u64,
    /// When the oldest was taken, in seconds into the recording, and its age at the end.
    pub oldest_s: f64,
    pub age_s: f64,
}

#[derive(Debug, Serialize)]
pub struct LockRow {
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

fn stack_strings(stack: &CallStack, hook: Hook, depth: usize) -> (Vec<String>, Option<String>) {
    match stack {
        Ok(frames) => (
            call_frames(frames, hook)
                .iter()
                .take(depth)
                .map(ToString::to_string)
                .collect(),
            None,
        ),
        Err(why) => (Vec::new(), Some(why.clone())),
    }
}

impl<'a> Report<'a> {
    /// `findings` come from [`PinEngine::findings`] on the same replay (kept by the caller,
    /// which the JSON form borrows).
    pub fn new(
        replay: &Replay,
        findings: &'a [crate::engine::Finding],
        opts: ReportOptions,
    ) -> Report<'a> {
        let start_ns = replay.meta.start_ns;
        let end_ns = replay.end_ns();
        let state = &replay.engine.state;
        let ledger = &replay.engine.ledger;

        let mut processes: Vec<ProcessRow> = state
            .processes
            .iter()
            .map(|p| {
                let path = p.fast_refs + p.slow_refs;
                ProcessRow {
                    pid: p.tgid,
                    comm: p.comm.to_string(),
                    parent: p.parent,
                    pins_taken: p.pins_taken,
                    pins_released: p.pins_released,
                    outstanding: p.outstanding(),
                    releases_made: p.releases_made,
                    pin_calls: p.pin_calls,
                    failed_pin_calls: p.failed_pin_calls,
                    get_calls: p.get_calls,
                    fast_share: (path > 0).then(|| p.fast_refs as f64 / path as f64),
                    first_s: secs(p.first_ns, start_ns),
                    exited_s: p.exited_ns.map(|t| secs(t, start_ns)),
                }
            })
            .collect();
        processes.sort_by(|a, b| {
            (b.pins_taken, b.releases_made, b.pin_calls + b.get_calls)
                .cmp(&(a.pins_taken, a.releases_made, a.pin_calls + a.get_calls))
                .then(a.first_s.total_cmp(&b.first_s))
        });

        let mut sites: Vec<SiteRow> = state
            .call_sites
            .iter()
            .map(|s| {
                let (stack, stack_error) = match s.stack_id {
                    Some(id) => stack_strings(&replay.stack(id), s.entry, opts.stack_depth),
                    None => (Vec::new(), Some("the kernel recorded no stack".into())),
                };
                SiteRow {
                    entry: s.entry.name(),
                    stack_id: s.stack_id,
                    pins_taken: s.pins_taken,
                    pins_released: s.pins_released,
                    outstanding: s.outstanding(),
                    stack,
                    stack_error,
                }
            })
            .collect();
        sites.sort_by(|a, b| {
            b.pins_taken
                .cmp(&a.pins_taken)
                .then(b.outstanding.cmp(&a.outstanding))
        });

        // Outstanding pins, grouped by who took them and where.
        let mut held: HashMap<(u32, u32, bool), (u64, u64, u64)> = HashMap::new();
        for folio in state.folios.values() {
            for h in &folio.holds {
                let o = state.owners[h.owner as usize];
                let entry = held
                    .entry((o.process, o.site, o.longterm))
                    .or_insert((0, 0, u64::MAX));
                entry.0 += u64::from(h.refs);
                entry.1 += 1;
                entry.2 = entry.2.min(h.since_ns);
            }
        }
        let mut outstanding: Vec<HeldRow> = held
            .into_iter()
            .map(|((process, site, longterm), (pages, folios, oldest))| {
                let p = &state.processes[process as usize];
                let s = &state.call_sites[site as usize];
                HeldRow {
                    pid: p.tgid,
                    comm: p.comm.to_string(),
                    exited_s: p.exited_ns.map(|t| secs(t, start_ns)),
                    entry: s.entry.name(),
                    stack_id: s.stack_id,
                    longterm,
                    pages,
                    folios,
                    oldest_s: secs(oldest, start_ns),
                    age_s: secs(end_ns, oldest),
                }
            })
            .collect();
        outstanding.sort_by(|a, b| {
            a.oldest_s
                .total_cmp(&b.oldest_s)
                .then(b.pages.cmp(&a.pages))
        });

        let mut locks: Vec<LockRow> = state
            .processes
            .iter()
            .filter(|p| p.lock.wait.count > 0 || p.lock.drops > 0)
            .map(|p| {
                let l = &p.lock;
                LockRow {
                    pid: p.tgid,
                    comm: p.comm.to_string(),
                    calls: l.wait.count,
                    wait_p50_ns: l.wait.percentile(50.0),
                    wait_p99_ns: l.wait.percentile(99.0),
                    hold_p50_ns: l.hold.percentile(50.0),
                    hold_p99_ns: l.hold.percentile(99.0),
                    wait_total_ns: l.wait_ns,
                    hold_total_ns: l.hold_ns,
                    drops: l.drops,
                    dropped_ns: l.dropped_ns,
                }
            })
            .collect();
        locks.sort_by(|a, b| {
            (b.wait_total_ns + b.hold_total_ns + b.dropped_ns)
                .cmp(&(a.wait_total_ns + a.hold_total_ns + a.dropped_ns))
        });

        let mut lookup = |id: u32| replay.stack(id);
        let findings = findings
            .iter()
            .map(|f| FindingRecord::new(f, &mut lookup, opts.stack_depth))
            .collect();

        let folio_level = replay.meta.attached(HookClass::Grab) > 0;
        let (pinned, released) = if folio_level {
            (ledger.folios.pinned, ledger.folios.released)
        } else {
            (ledger.totals.pinned, ledger.totals.released)
        };
        let meta = &replay.meta;
        let recording = Summary {
            gup_trace_version: meta.gup_trace_version.clone(),
            kernel: meta.kernel_release.clone(),
            start_unix_s: meta.start_unix_ns as f64 / 1e9,
            seconds: secs(end_ns, start_ns),
            records: replay.records,
            events: replay.events,
            lost_events: replay.lost_events(),
            stacks: replay.stacks.len(),
            status: replay.status.to_string(),
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
        };
        Report {
            recording,
            processes: Table::top(processes, opts.top),
            call_sites: Table::top(sites, opts.top),
            outstanding: Table::top(outstanding, opts.top),
            findings,
            mmap_lock: Table::top(locks, opts.top),
        }
    }
}

/// The findings at the recording's end: vmstat is compared only when nothing was filtered
/// (it counts the whole machine).
pub fn findings(replay: &Replay) -> Vec<crate::engine::Finding> {
    let vmstat = if replay.filtered() {
        None
    } else {
        replay.vmstat_delta().map(|v| (v.acquired, v.released))
    };
    let folio_level = replay.meta.attached(HookClass::Grab) > 0;
    replay.engine.findings(replay.end_ns(), vmstat, folio_level)
}

/// `2026-11-21 10:00:00 UTC` from seconds since the epoch.
pub fn utc(unix_s: f64) -> String {
    let secs = unix_s as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn pct(share: Option<f64>) -> String {
    share.map_or("-".into(), |s| format!("{:.0}%", s * 100.0))
}

fn of(table_total: usize, shown: usize) -> String {
    if table_total > shown {
        format!("{shown} of {table_total}")
    } else {
        format!("{table_total}")
    }
}

/// The report as text. `findings_text` is `output::findings_text` of the same findings.
pub fn text(report: &Report, findings_text: &str) -> String {
    let r = &report.recording;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "recording by gup-trace {} on Linux {}, started {}, {:.2} s",
        r.gup_trace_version,
        r.kernel,
        utc(r.start_unix_s),
        r.seconds
    );
    let _ = writeln!(
        out,
        "  {} events in {} records; lost events: {}; {} kernel stacks; {}",
        r.events,
        r.records,
        r.lost_events
            .map_or("unknown (no end counters)".into(), |n| n.to_string()),
        r.stacks,
        match r.status.as_str() {
            "truncated" => format!(
                "TRUNCATED after {} events (the recorder did not finish: killed, or the disk \
                 filled)",
                r.events
            ),
            other => other.to_string(),
        }
    );
    let f = &r.filters;
    let filters = f.describe();
    let _ = writeln!(
        out,
        "  filters: {}{}; mmap_lock events: {}",
        if filters.is_empty() {
            "none".to_string()
        } else {
            filters.join(", ")
        },
        if f.all_releases {
            " (releases by any task)"
        } else {
            ""
        },
        f.mmap_lock
    );
    if r.missing_hooks.is_empty() {
        out.push_str("  hooks: every hook this kernel has was attached\n");
    } else {
        let mut groups: Vec<(String, Vec<&str>, Vec<&str>)> = Vec::new();
        for h in &r.missing_hooks {
            let why = h.reasons.join("; ");
            let i = match groups.iter().position(|g| g.0 == why) {
                Some(i) => i,
                None => {
                    groups.push((why, Vec::new(), Vec::new()));
                    groups.len() - 1
                }
            };
            groups[i].1.push(&h.hook);
            if let Some(cost) = h.cost.as_deref().filter(|c| !groups[i].2.contains(c)) {
                groups[i].2.push(cost);
            }
        }
        let _ = writeln!(out, "  hooks NOT attached: {}", r.missing_hooks.len());
        for (why, hooks, costs) in &groups {
            let _ = writeln!(out, "      {}: {why}", hooks.join(", "));
            for cost in costs {
                let _ = writeln!(out, "        cost: {cost}");
            }
        }
    }
    let _ = write!(
        out,
        "  pages pinned/released: {} / {} seen",
        r.pinned, r.released
    );
    match r.vmstat {
        Some(v) => {
            let _ = writeln!(
                out,
                ", /proc/vmstat {} / {}{}",
                v.acquired,
                v.released,
                if filters.is_empty() {
                    ""
                } else {
                    " (whole machine)"
                }
            );
        }
        None => out.push_str(", /proc/vmstat not recorded\n"),
    }
    if r.late_events + r.undecodable_records > 0 {
        let _ = writeln!(
            out,
            "  {} events arrived too late to be put in order; {} records could not be decoded",
            r.late_events, r.undecodable_records
        );
    }

    let _ = writeln!(
        out,
        "\nprocesses ({}, by pins taken; RELEASED: of its pins, by anyone; UNPINNED: pins it \
         released, its own or others')",
        of(report.processes.total, report.processes.rows.len())
    );
    if report.processes.rows.is_empty() {
        out.push_str("  none seen\n");
    } else {
        let _ = writeln!(
            out,
            "  {:>7}  {:<16} {:>9} {:>9} {:>11} {:>9} {:>5} {:>9} {:>9}  STATE",
            "PID",
            "COMM",
            "TAKEN",
            "RELEASED",
            "OUTSTANDING",
            "UNPINNED",
            "FAST",
            "PINCALLS",
            "GETCALLS"
        );
        for p in &report.processes.rows {
            let _ = writeln!(
                out,
                "  {:>7}  {:<16} {:>9} {:>9} {:>11} {:>9} {:>5} {:>9} {:>9}  {}",
                p.pid,
                p.comm,
                p.pins_taken,
                p.pins_released,
                p.outstanding,
                p.releases_made,
                pct(p.fast_share),
                p.pin_calls,
                p.get_calls,
                p.exited_s
                    .map_or("running".into(), |t| format!("exited at {t:.2} s"))
            );
        }
    }

    let _ = writeln!(
        out,
        "\ncall sites ({}, by pins taken)",
        of(report.call_sites.total, report.call_sites.rows.len())
    );
    if report.call_sites.rows.is_empty() {
        out.push_str("  none: no pins were taken\n");
    }
    for s in &report.call_sites.rows {
        let _ = writeln!(
            out,
            "  {}: {} taken, {} released, {} outstanding",
            s.entry, s.pins_taken, s.pins_released, s.outstanding
        );
        for frame in &s.stack {
            let _ = writeln!(out, "        {frame}");
        }
        if let Some(why) = &s.stack_error {
            let _ = writeln!(out, "        (no stack: {why})");
        }
    }

    let _ = writeln!(
        out,
        "\noutstanding pins at the end ({} holders, oldest first)",
        of(report.outstanding.total, report.outstanding.rows.len())
    );
    if report.outstanding.rows.is_empty() {
        out.push_str("  none: every pin taken while recording was released\n");
    } else {
        let _ = writeln!(
            out,
            "  {:>7}  {:<16} {:>7} {:>7} {:>10} {:>9}  ENTRY",
            "PID", "COMM", "PAGES", "FOLIOS", "SINCE", "AGE"
        );
        for h in &report.outstanding.rows {
            let _ = writeln!(
                out,
                "  {:>7}  {:<16} {:>7} {:>7} {:>8.2} s {:>7.2} s  {}{}{}",
                h.pid,
                h.comm,
                h.pages,
                h.folios,
                h.oldest_s,
                h.age_s,
                h.entry,
                if h.longterm { " LONGTERM" } else { "" },
                h.exited_s
                    .map_or(String::new(), |t| format!(" (exited at {t:.2} s)"))
            );
        }
    }

    out.push('\n');
    out.push_str(findings_text);

    let _ = writeln!(
        out,
        "\nmmap_lock inside GUP calls, per process ({})",
        of(report.mmap_lock.total, report.mmap_lock.rows.len())
    );
    if report.mmap_lock.rows.is_empty() {
        out.push_str("  no GUP call took mmap_lock while recording\n");
    } else {
        let _ = writeln!(
            out,
            "  {:>7}  {:<16} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6} {:>9}",
            "PID", "COMM", "CALLS", "WAIT p50", "p99", "HOLD p50", "p99", "DROPS", "DROPPED"
        );
        for l in &report.mmap_lock.rows {
            let _ = writeln!(
                out,
                "  {:>7}  {:<16} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6} {:>9}",
                l.pid,
                l.comm,
                l.calls,
                output::duration(l.wait_p50_ns),
                output::duration(l.wait_p99_ns),
                output::duration(l.hold_p50_ns),
                output::duration(l.hold_p99_ns),
                l.drops,
                output::duration(l.dropped_ns)
            );
        }
        out.push_str("  (percentiles are upper bounds of power-of-two buckets)\n");
    }
    out
}

#[cfg(test)]
mod tests;
