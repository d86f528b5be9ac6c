//! Who holds which pins: per folio, the pins outstanding with their owners; per process and per
//! call site, the pins taken, released and outstanding; fast/slow-path and mmap_lock figures
//! per process.
//!
//! Ownership comes from the grab events (one per folio a GUP call pins), attributed to the GUP
//! call that follows them on the same thread (its entry point, kernel stack and FOLL_LONGTERM).
//! The kernel does not record which pin a release drops, so a release is matched to the
//! releasing process's own pins on that folio first, then to the oldest.

use gup_trace_common::{EventKind, FolioTransition, Hook, HookClass, folio_bit};
use serde::Serialize;
use smallvec::SmallVec;

use crate::events::{Comm, TraceEvent};

use super::{
    FastMap,
    findings::HeldFolio,
    ledger::{PIN_COUNTING_BIAS, refs_by_folio, skipped_zero_page},
};

#[path = "prune.rs"]
mod prune;
pub use prune::{Pruned, Retired, StateSize};

/// Index of a [`ProcessRecord`] in [`PinState::processes`].
pub type ProcessId = u32;
/// Index of a [`CallSite`] in [`PinState::call_sites`].
pub type SiteId = u32;
/// Index of an [`Owner`] in [`PinState::owners`].
pub type OwnerId = u32;

/// Pins one owner holds on one folio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinHold {
    pub owner: OwnerId,
    pub refs: u32,
    /// When the (first of these) pins was taken.
    pub since_ns: u64,
}

/// One folio with pins outstanding. Kept small: a busy machine has millions of pinned pages.
#[derive(Clone, Debug)]
pub struct FolioState {
    pub pfn: u64,
    pub order: u8,
    /// Pins the folio held before tracing began (from its counts when first seen).
    pub pre_existing: u32,
    pub holds: SmallVec<[PinHold; 1]>,
}

impl FolioState {
    pub fn outstanding(&self) -> u64 {
        self.holds.iter().map(|h| u64::from(h.refs)).sum()
    }
}

/// A process (one lifetime of a tgid: a reused pid starts a new record).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProcessRecord {
    pub tgid: u32,
    pub comm: Comm,
    pub parent: Option<u32>,
    pub first_ns: u64,
    pub exited_ns: Option<u64>,
    /// The cgroup v2 id its own tasks last ran in (0: none seen; the kernel side records the
    /// calling task's, so a process known only as the owner of pins a kernel worker took has
    /// none).
    pub cgroup_id: u64,
    /// Pins it took (pages), and how many of those were released (by anyone).
    pub pins_taken: u64,
    pub pins_released: u64,
    /// Pins it released, its own or others' (io_uring teardown, block I/O completions).
    pub releases_made: u64,
    pub pin_calls: u64,
    pub failed_pin_calls: u64,
    pub get_calls: u64,
    /// Pages its GUP calls got from the lockless fast walk and from the slow walk.
    pub fast_refs: u64,
    pub slow_refs: u64,
    pub lock: LockFigures,
}

impl ProcessRecord {
    pub fn outstanding(&self) -> u64 {
        self.pins_taken.saturating_sub(self.pins_released)
    }
}

/// Where pins are taken: a kernel stack and the GUP entry point (or the grab function, for
/// pins taken outside a GUP call such as io_uring's `folio_add_pin`).
#[derive(Clone, Debug, Serialize)]
pub struct CallSite {
    pub stack_id: Option<u32>,
    #[serde(serialize_with = "hook_name")]
    pub entry: Hook,
    pub pins_taken: u64,
    pub pins_released: u64,
    /// When a GUP call last took pins through it (what pruning goes by).
    #[serde(skip)]
    pub last_ns: u64,
}

impl CallSite {
    pub fn outstanding(&self) -> u64 {
        self.pins_taken.saturating_sub(self.pins_released)
    }
}

pub(super) fn hook_name<S: serde::Serializer>(hook: &Hook, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(hook.name())
}

/// Who holds a pin: the process whose memory it pins, through a call site, long-term or not;
/// and the process that took it when that was another one (a kernel worker pinning a
/// process's pages with `pin_user_pages_remote`, a kthread that adopted its mm).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    pub process: ProcessId,
    pub site: SiteId,
    pub longterm: bool,
    pub taker: Option<ProcessId>,
}

/// Short-term pins of one owner that were held longer than the long-pin threshold before they
/// were released: a finding even though nothing is left held.
#[derive(Clone, Debug, Default)]
pub struct LongRelease {
    pub pages: u64,
    pub folios: u64,
    /// When the oldest of them was taken, and the longest any of them was held.
    pub oldest_ns: u64,
    pub longest_ns: u64,
    /// When the last of them was released.
    pub released_ns: u64,
    pub examples: Vec<HeldFolio>,
}

/// Log2 buckets of durations in ns: percentiles without keeping every sample.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Log2Histogram {
    #[serde(skip)]
    buckets: [u32; 64],
    pub count: u64,
}

impl Default for Log2Histogram {
    fn default() -> Self {
        Log2Histogram {
            buckets: [0; 64],
            count: 0,
        }
    }
}

impl Log2Histogram {
    pub fn record(&mut self, ns: u64) {
        self.buckets[(64 - ns.leading_zeros()) as usize % 64] += 1;
        self.count += 1;
    }

    /// Adds `other`'s samples (percentiles over several processes).
    pub fn merge(&mut self, other: &Log2Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *mine += theirs;
        }
        self.count += other.count;
    }

    /// The upper bound of the bucket holding the `p`-th percentile (0..=100); 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return if i == 0 { 0 } else { (1u64 << i) - 1 };
            }
        }
        u64::MAX
    }
}

/// mmap_lock inside one process's GUP calls.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LockFigures {
    pub wait_ns: u64,
    pub hold_ns: u64,
    pub wait: Log2Histogram,
    pub hold: Log2Histogram,
    /// Drop-and-retake events, and how long the lock stayed dropped in them.
    pub drops: u64,
    pub dropped_ns: u64,
}

impl LockFigures {
    /// Adds `other`'s figures (several processes together). Saturating: each figure comes
    /// from the records, and a damaged recording's can be anything.
    pub fn merge(&mut self, other: &LockFigures) {
        self.wait.merge(&other.wait);
        self.hold.merge(&other.hold);
        self.wait_ns = self.wait_ns.saturating_add(other.wait_ns);
        self.hold_ns = self.hold_ns.saturating_add(other.hold_ns);
        self.drops = self.drops.saturating_add(other.drops);
        self.dropped_ns = self.dropped_ns.saturating_add(other.dropped_ns);
    }
}

/// A release call that dropped more pins on a folio than the folio had.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnbalancedRelease {
    pub ts_ns: u64,
    #[serde(serialize_with = "crate::hex::address")]
    pub folio: u64,
    pub pfn: u64,
    pub tgid: u32,
    pub comm: String,
    pub hook: &'static str,
    /// Pins on the folio when the call began (from its counts), and pins the call dropped.
    pub pins_before: u32,
    pub released: u32,
}

/// Pins on a folio according to its counts before a transition.
fn pins_in(t: &FolioTransition) -> u32 {
    if t.bits & folio_bit::LARGE != 0 {
        t.pincount_before.max(0) as u32
    } else {
        (i64::from(t.refcount_before).max(0) / PIN_COUNTING_BIAS) as u32
    }
}

/// Pin state folio by folio, and the figures derived from it.
#[derive(Default)]
pub struct PinState {
    foll_longterm: u32,
    /// How long a short-term pin may be held before its release is a finding (0: never).
    long_pin_ns: u64,
    /// Short-term pins released after being held longer than that, by owner.
    pub long_releases: FastMap<OwnerId, LongRelease>,
    pub folios: FastMap<u64, FolioState>,
    pub processes: Vec<ProcessRecord>,
    /// The current lifetime of each tgid.
    live: FastMap<u32, ProcessId>,
    pub call_sites: Vec<CallSite>,
    site_ids: FastMap<(Option<u32>, Hook), SiteId>,
    pub owners: Vec<Owner>,
    owner_ids: FastMap<Owner, OwnerId>,
    /// Pins grabbed inside a GUP call, waiting for the call's event to learn their owner.
    pending: FastMap<u32, Vec<(FolioTransition, u64)>>,
    /// Folios of a release call, waiting for the call's event (per thread).
    releasing: FastMap<u32, Vec<FolioTransition>>,
    /// Emptied vectors of `pending` and `releasing`, for the next calls: one allocation per
    /// call was a tenth of the engine's malloc and free time.
    spare_grabs: Vec<Vec<(FolioTransition, u64)>>,
    spare_releases: Vec<Vec<FolioTransition>>,
    /// The first unbalanced releases, as evidence, and how many pins were released unbalanced.
    pub unbalanced: Vec<UnbalancedRelease>,
    pub unbalanced_pins: u64,
    /// Releases of pins taken before tracing began (never a finding).
    pub pre_existing_releases: u64,
    /// Pages pinned now, as far as observed.
    pub pinned_now: u64,
    /// The most pages pinned at once since [`PinState::take_peak`] was last called.
    pinned_peak: u64,
    /// Pages released by calls that came without their folios.
    pub unitemized_releases: u64,
    /// When set, every change of an owner's pins on a folio is also kept here, in the order
    /// made, for a consumer that follows pins from take to release (the Perfetto timeline).
    pub hold_log: Option<Vec<HoldChange>>,
    /// What [`PinState::prune`] forgot, and the totals of what it forgot.
    pub pruned: Pruned,
    pub retired: Retired,
    /// How many times pruning renumbered processes, call sites and owners: ids kept from
    /// before (a [`crate::analysis::Baseline`]) are void once it changed.
    pub epoch: u64,
}

/// Pins taken or released on one folio for one owner (see [`PinState::hold_log`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldChange {
    pub owner: OwnerId,
    pub folio: u64,
    pub refs: u32,
    /// The event that made the change: the GUP call that took the pins (all of a call's
    /// folios carry its time), the grab outside a call, or the release call.
    pub ts_ns: u64,
    pub taken: bool,
}

/// Emptied per-call vectors kept for reuse.
const SPARE_VECS: usize = 64;

/// Folios kept as examples of long-held pins released.
const LONG_RELEASE_EXAMPLES: usize = 4;

/// Unbalanced releases kept as evidence; the count goes on.
const UNBALANCED_KEPT: usize = 64;

impl PinState {
    /// `foll_longterm` is the running kernel's FOLL_LONGTERM bit (0x10000 up to 6.4, 0x100
    /// after), read from BTF.
    /// `long_pin_ns`: how long a pin without FOLL_LONGTERM may be held; one released later is
    /// kept in [`PinState::long_releases`].
    pub fn new(foll_longterm: u32, long_pin_ns: u64) -> PinState {
        PinState {
            foll_longterm,
            long_pin_ns,
            ..PinState::default()
        }
    }

    pub fn apply(&mut self, e: &TraceEvent) {
        match e.kind {
            EventKind::Folio => {
                if let Some(t) = &e.folio {
                    self.apply_folio(e, t);
                }
            }
            EventKind::Call => self.apply_call(e),
            EventKind::MmapLockDrop => {
                let p = self.process(e);
                let lock = &mut self.processes[p as usize].lock;
                lock.drops += 1;
                lock.dropped_ns = lock.dropped_ns.saturating_add(e.duration_ns);
            }
            EventKind::MmapLockRelease => {}
            EventKind::ProcessExit => {
                let p = self.process(e);
                self.processes[p as usize].exited_ns = Some(e.ts_ns);
            }
            EventKind::ProcessFork => self.apply_fork(e),
            // What pins block: engine::blocking reads these against the folios here.
            EventKind::Migration
            | EventKind::Isolation
            | EventKind::OfflineEnd
            | EventKind::CmaBusy
            | EventKind::CmaAllocEnd => {}
        }
    }

    /// The process `e` comes from, created on first sight.
    fn process(&mut self, e: &TraceEvent) -> ProcessId {
        let id = self.process_named(e.tgid, e.comm, e.ts_ns);
        let p = &mut self.processes[id as usize];
        if p.exited_ns.is_none() && e.cgroup_id != 0 {
            p.cgroup_id = e.cgroup_id;
        }
        id
    }

    /// The process `tgid` (current lifetime), created on first sight, named `comm`.
    fn process_named(&mut self, tgid: u32, comm: Comm, ts_ns: u64) -> ProcessId {
        let id = match self.live.get(&tgid) {
            Some(&id) => id,
            None => {
                let id = self.processes.len() as ProcessId;
                self.processes.push(ProcessRecord {
                    tgid,
                    first_ns: ts_ns,
                    ..ProcessRecord::default()
                });
                self.live.insert(tgid, id);
                id
            }
        };
        let p = &mut self.processes[id as usize];
        // The latest name wins: a process's first events often come from its own execve
        // (argument copying through get_user_pages_remote), under the parent's name. Events
        // after its exit come from its teardown (closing an io_uring) and keep the name.
        if p.exited_ns.is_none() {
            p.comm = comm;
        }
        id
    }

    /// Who holds the pins `e` (a GUP call) took: the owner of the memory when it is another
    /// process than the caller `p`, which is then kept as the taker.
    fn holder(&mut self, e: &TraceEvent, p: ProcessId) -> (ProcessId, Option<ProcessId>) {
        match e.taken_for() {
            Some((tgid, comm)) => (self.process_named(tgid, comm, e.ts_ns), Some(p)),
            None => (p, None),
        }
    }

    /// A new task: if its pid was a process we knew, that process is gone and the pid reused,
    /// so the next events with it start a new record. (Thread creation lands here too; a tid
    /// can only equal a known tgid once that process was reaped, so the rule holds.)
    fn apply_fork(&mut self, e: &TraceEvent) {
        let child = e.start as u32;
        if let Some(old) = self.live.remove(&child) {
            let old = &mut self.processes[old as usize];
            old.exited_ns.get_or_insert(e.ts_ns);
        }
        let id = self.processes.len() as ProcessId;
        self.processes.push(ProcessRecord {
            tgid: child,
            comm: e.comm,
            parent: Some(e.tgid),
            first_ns: e.ts_ns,
            ..ProcessRecord::default()
        });
        self.live.insert(child, id);
    }

    /// The call site of `stack_id` and `entry`, created on first sight, used at `ts_ns`.
    fn site(&mut self, stack_id: Option<u32>, entry: Hook, ts_ns: u64) -> SiteId {
        let sites = &mut self.call_sites;
        let id = *self.site_ids.entry((stack_id, entry)).or_insert_with(|| {
            sites.push(CallSite {
                stack_id,
                entry,
                pins_taken: 0,
                pins_released: 0,
                last_ns: ts_ns,
            });
            (sites.len() - 1) as SiteId
        });
        let site = &mut sites[id as usize];
        site.last_ns = site.last_ns.max(ts_ns);
        id
    }

    fn owner(&mut self, owner: Owner) -> OwnerId {
        let owners = &mut self.owners;
        *self.owner_ids.entry(owner).or_insert_with(|| {
            owners.push(owner);
            (owners.len() - 1) as OwnerId
        })
    }

    fn apply_call(&mut self, e: &TraceEvent) {
        let class = e.hook.class();
        if !matches!(class, HookClass::Pin | HookClass::Get | HookClass::Unpin) {
            return;
        }
        let p = self.process(e);
        let record = &mut self.processes[p as usize];
        match class {
            HookClass::Pin | HookClass::Get => {
                if class == HookClass::Pin {
                    record.pin_calls += 1;
                    record.failed_pin_calls += u64::from(e.error < 0);
                } else {
                    record.get_calls += 1;
                }
                // Saturating, as every figure a record gives: a damaged recording's can be
                // anything (the decoder bounds only the pages a call pinned).
                record.fast_refs = record.fast_refs.saturating_add(e.path.fast_refs);
                record.slow_refs = record.slow_refs.saturating_add(e.path.slow_refs);
                if e.lock.acquisitions > 0 {
                    let lock = &mut record.lock;
                    lock.wait_ns = lock.wait_ns.saturating_add(e.lock.wait_ns);
                    lock.hold_ns = lock.hold_ns.saturating_add(e.lock.hold_ns);
                    lock.wait.record(e.lock.wait_ns);
                    lock.hold.record(e.lock.hold_ns);
                }
                if let Some(grabs) = self.pending.remove(&e.tid) {
                    let longterm = e.gup_flags & self.foll_longterm != 0;
                    let site = self.site(e.stack_id, e.hook, e.ts_ns);
                    let (process, taker) = self.holder(e, p);
                    let owner = self.owner(Owner {
                        process,
                        site,
                        longterm,
                        taker,
                    });
                    let mut grabs = grabs;
                    for (t, ts_ns) in grabs.drain(..) {
                        self.take(owner, &t, ts_ns, e.ts_ns);
                    }
                    if self.spare_grabs.len() < SPARE_VECS {
                        self.spare_grabs.push(grabs);
                    }
                }
            }
            _ => match self.releasing.remove(&e.tid) {
                Some(mut batch) => {
                    self.release_batch(e, &batch);
                    if self.spare_releases.len() < SPARE_VECS {
                        batch.clear();
                        self.spare_releases.push(batch);
                    }
                }
                // The kernel side could not itemize this call's folios (its per-thread
                // release map was full): these pages cannot be matched to their pins.
                None => self.unitemized_releases += e.pages,
            },
        }
    }

    fn apply_folio(&mut self, e: &TraceEvent, t: &FolioTransition) {
        let zero_page = skipped_zero_page(t);
        if t.bits & folio_bit::RELEASE != 0 {
            let spare = &mut self.spare_releases;
            let batch = self
                .releasing
                .entry(e.tid)
                .or_insert_with(|| spare.pop().unwrap_or_default());
            // A release that moved no count is the zero page the kernel never pinned: nothing
            // to match, but its call was itemized all the same.
            if !zero_page {
                batch.push(*t);
            }
            return;
        }
        // Plain references (FOLL_GET) are not pins; failed grabs and the zero page took none.
        let pin = t.bits & (folio_bit::PIN | folio_bit::FAILED) == folio_bit::PIN;
        if !pin || zero_page {
            return;
        }
        match e.call_hook {
            // Inside a GUP call: its event, right after, says who and why.
            Some(_) => {
                let spare = &mut self.spare_grabs;
                self.pending
                    .entry(e.tid)
                    .or_insert_with(|| spare.pop().unwrap_or_default())
                    .push((*t, e.ts_ns));
            }
            // Outside one (io_uring adding pins to a folio it pinned before): the grab function
            // is the entry point.
            None => {
                let p = self.process(e);
                let site = self.site(e.stack_id, e.hook, e.ts_ns);
                let owner = self.owner(Owner {
                    process: p,
                    site,
                    longterm: false,
                    taker: None,
                });
                self.take(owner, t, e.ts_ns, e.ts_ns);
            }
        }
    }

    /// `owner` took `t`'s pins at `ts_ns` (the grab), in the event at `event_ns`.
    fn take(&mut self, owner: OwnerId, t: &FolioTransition, ts_ns: u64, event_ns: u64) {
        let folio = self.folios.entry(t.folio).or_insert_with(|| {
            // Pins already on the folio when first seen were taken before tracing began.
            FolioState {
                pfn: t.pfn,
                order: t.order.min(255) as u8,
                pre_existing: pins_in(t),
                holds: SmallVec::new(),
            }
        });
        // One owner holds at most u32::MAX pins on a folio (the kernel's counts are ints): what
        // a damaged recording claims beyond that is counted nowhere, so the totals still add up.
        let refs = match folio.holds.iter_mut().find(|h| h.owner == owner) {
            Some(h) => {
                let before = h.refs;
                h.refs = h.refs.saturating_add(t.refs);
                h.refs - before
            }
            None => {
                folio.holds.push(PinHold {
                    owner,
                    refs: t.refs,
                    since_ns: ts_ns,
                });
                t.refs
            }
        };
        if let Some(log) = &mut self.hold_log {
            log.push(HoldChange {
                owner,
                folio: t.folio,
                refs,
                ts_ns: event_ns,
                taken: true,
            });
        }
        let Owner { process, site, .. } = self.owners[owner as usize];
        self.processes[process as usize].pins_taken += u64::from(refs);
        self.call_sites[site as usize].pins_taken += u64::from(refs);
        self.pinned_now += u64::from(refs);
        self.pinned_peak = self.pinned_peak.max(self.pinned_now);
    }

    /// One release call's folios (its record lists them before the call): matched to the
    /// holders, and judged against the kernel's counts at the call's entry, once per folio with
    /// all the pins the call dropped on it (a folio may be listed more than once).
    fn release_batch(&mut self, call: &TraceEvent, batch: &[FolioTransition]) {
        for (t, refs) in refs_by_folio(batch) {
            self.release(call, &t, refs);
        }
    }

    fn release(&mut self, call: &TraceEvent, t: &FolioTransition, refs: u32) {
        let releaser = self.process(call);
        self.processes[releaser as usize].releases_made += u64::from(refs);
        // The kernel's own evidence: pins the folio had when the call began. Every pin adds
        // exactly 1024 to a small folio's refcount (other references only add to it) and one to
        // a large folio's pincount, so dropping more than this many is certainly unbalanced.
        // Pins by tasks a filter hides only raise it: never a false finding.
        let pins_before = pins_in(t);
        let excess = if t.bits & folio_bit::TRUNCATED != 0 {
            0 // the call dropped pins on pages not walked too: its counts prove nothing
        } else {
            refs.saturating_sub(pins_before)
        };
        if excess > 0 {
            self.unbalanced_pins += u64::from(excess);
            if self.unbalanced.len() < UNBALANCED_KEPT {
                self.unbalanced.push(UnbalancedRelease {
                    ts_ns: call.ts_ns,
                    folio: t.folio,
                    pfn: t.pfn,
                    tgid: call.tgid,
                    comm: call.comm.to_string(),
                    hook: call.hook.name(),
                    pins_before,
                    released: refs,
                });
            }
        }
        let Some(folio) = self.folios.get_mut(&t.folio) else {
            // A FOLL_LONGTERM pin call unpins what it pinned in ZONE_MOVABLE before migrating it
            // and pinning again: those pins wait in `pending` for the call's event, and are
            // taken back here, or they would look held for ever (and orphaned at exit).
            let left = self.cancel_pending(call.tid, t.folio, refs - excess);
            self.pre_existing_releases += u64::from(left);
            return;
        };
        let mut left = refs - excess;
        // The releaser's own pins first, then the oldest.
        let owners = &self.owners;
        let processes = &mut self.processes;
        let sites = &mut self.call_sites;
        folio
            .holds
            .sort_by_key(|h| (owners[h.owner as usize].process != releaser, h.since_ns));
        for hold in folio.holds.iter_mut() {
            if left == 0 {
                break;
            }
            let n = left.min(hold.refs);
            hold.refs -= n;
            left -= n;
            if let Some(log) = &mut self.hold_log {
                log.push(HoldChange {
                    owner: hold.owner,
                    folio: t.folio,
                    refs: n,
                    ts_ns: call.ts_ns,
                    taken: false,
                });
            }
            let owner = owners[hold.owner as usize];
            processes[owner.process as usize].pins_released += u64::from(n);
            sites[owner.site as usize].pins_released += u64::from(n);
            self.pinned_now -= u64::from(n);
            let held_ns = call.ts_ns.saturating_sub(hold.since_ns);
            if !owner.longterm && self.long_pin_ns > 0 && held_ns > self.long_pin_ns {
                let long = self.long_releases.entry(hold.owner).or_insert(LongRelease {
                    oldest_ns: hold.since_ns,
                    ..LongRelease::default()
                });
                long.pages += u64::from(n);
                long.folios += 1;
                long.oldest_ns = long.oldest_ns.min(hold.since_ns);
                long.longest_ns = long.longest_ns.max(held_ns);
                long.released_ns = long.released_ns.max(call.ts_ns);
                if long.examples.len() < LONG_RELEASE_EXAMPLES {
                    long.examples.push(HeldFolio {
                        folio: t.folio,
                        pfn: folio.pfn,
                        order: folio.order,
                        refs: n,
                        since_ns: hold.since_ns,
                    });
                }
            }
        }
        folio.holds.retain(|h| h.refs > 0);
        // The rest were pins from before tracing began (or by tasks a filter hides).
        folio.pre_existing = folio.pre_existing.saturating_sub(left);
        self.pre_existing_releases += u64::from(left);
        if folio.holds.is_empty() {
            self.folios.remove(&t.folio);
        }
    }

    /// Takes up to `refs` pins on `folio` back from the grabs waiting for `tid`'s GUP call;
    /// what could not be taken back.
    fn cancel_pending(&mut self, tid: u32, folio: u64, mut refs: u32) -> u32 {
        let Some(grabs) = self.pending.get_mut(&tid) else {
            return refs;
        };
        for (t, _) in grabs.iter_mut().filter(|(t, _)| t.folio == folio) {
            let n = refs.min(t.refs);
            t.refs -= n;
            refs -= n;
        }
        grabs.retain(|(t, _)| t.refs > 0);
        refs
    }

    /// The most pages pinned at once since the last call (pins taken and released between two
    /// looks at `pinned_now` show here), and a new period starts.
    pub fn take_peak(&mut self) -> u64 {
        let peak = self.pinned_peak.max(self.pinned_now);
        self.pinned_peak = self.pinned_now;
        peak
    }

    /// Pins of `process` still outstanding, folio by folio.
    pub fn holds_of(&self, process: ProcessId) -> impl Iterator<Item = (&FolioState, &PinHold)> {
        self.folios.values().flat_map(move |f| {
            f.holds
                .iter()
                .filter(move |h| self.owners[h.owner as usize].process == process)
                .map(move |h| (f, h))
        })
    }
}
