//! What pins block: when the kernel fails to isolate or migrate a pfn range (memory offline,
//! a contiguous allocation, ...), the pinned and FOLL_GET-referenced folios gup-trace knows in
//! that range, with who holds them; and for FOLL_LONGTERM pin calls, the migrations the kernel
//! ran inside them (GUP moves movable memory out of ZONE_MOVABLE/CMA before pinning it).
//!
//! The holders are named from the state at the moment the kernel reported the failure, so a
//! finding keeps naming them after they let go (that is when the blocked operation succeeds).
//!
//! Generic over what was blocked ([`Blocked`]): each kind of operation adds a variant.

use gup_trace_common::{EventKind, Hook, HookClass, folio_bit};
use serde::Serialize;

use crate::events::{Comm, TraceEvent};

use super::{FastMap, findings::HeldFolio, pins::PinState};

/// include/uapi/asm-generic/errno-base.h
const ENOMEM: i32 = 12;

/// What a failed isolation or migration was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Blocked {
    /// `offline_pages` of the pfn range `[start_pfn, end_pfn)` (a memory block going offline).
    MemoryOffline { start_pfn: u64, end_pfn: u64 },
    /// A pfn range that could not be isolated outside memory offlining (alloc_contig_range:
    /// contiguous allocations).
    Isolation { start_pfn: u64, end_pfn: u64 },
    /// A contiguous allocation from the CMA area `area` (cma_alloc) that found the pfn range
    /// `[start_pfn, end_pfn)` busy.
    CmaAllocation {
        area: Comm,
        start_pfn: u64,
        end_pfn: u64,
    },
}

impl Blocked {
    pub fn range(&self) -> (u64, u64) {
        match *self {
            Blocked::MemoryOffline { start_pfn, end_pfn }
            | Blocked::Isolation { start_pfn, end_pfn }
            | Blocked::CmaAllocation {
                start_pfn, end_pfn, ..
            } => (start_pfn, end_pfn),
        }
    }

    /// "memory offline", "isolation", "CMA allocation (hugetlb0)": what the text calls it.
    pub fn name(&self) -> String {
        match self {
            Blocked::MemoryOffline { .. } => "memory offline".to_string(),
            Blocked::Isolation { .. } => "isolation".to_string(),
            Blocked::CmaAllocation { area, .. } => format!("CMA allocation ({area})"),
        }
    }
}

/// How a holder holds the folios: pins (FOLL_PIN) or plain references (FOLL_GET, whose
/// release the kernel side does not see: such a reference may be gone already).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldKind {
    Pin,
    Get,
}

/// One holder of folios inside a blocked range: a process through one call site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockingHolder {
    pub tgid: u32,
    pub comm: String,
    pub kind: HoldKind,
    #[serde(serialize_with = "super::pins::hook_name")]
    pub entry: Hook,
    pub stack_id: Option<u32>,
    pub longterm: bool,
    pub pages: u64,
    pub folios: u64,
    pub oldest_ns: u64,
    /// A few of the folios, oldest first.
    pub examples: Vec<HeldFolio>,
}

/// A range the kernel could not isolate or migrate, and who held folios in it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BlockedMigration {
    #[serde(flatten)]
    pub blocked: Blocked,
    /// The task that was blocked (the one offlining memory), and its kernel stack.
    pub by_tgid: u32,
    pub by_comm: String,
    pub stack_id: Option<u32>,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Migration attempts (mm_migrate_pages firings) and folios that failed to migrate in them,
    /// and isolation attempts that failed.
    pub migrate_attempts: u64,
    pub migrate_failed: u64,
    pub isolation_failures: u64,
    /// CMA allocations: times the allocation found the range busy (cma_alloc_busy_retry).
    pub busy_retries: u64,
    /// The first pfn the kernel could not isolate (test_pages_isolated's fin_pfn), if it said.
    pub busy_pfn: Option<u64>,
    /// How the blocked operation ended: 0 done, a negative errno given up (-EINTR: interrupted,
    /// -EBUSY), None still going when last seen.
    pub outcome: Option<i32>,
    pub ended_ns: Option<u64>,
    /// Holders of folios in the range when the kernel last reported the failure, most pages
    /// first.
    pub holders: Vec<BlockingHolder>,
}

/// What the kernel's migrations did inside one FOLL_LONGTERM GUP call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LongtermMigration {
    pub ts_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub comm: String,
    #[serde(serialize_with = "super::pins::hook_name")]
    pub entry: Hook,
    pub stack_id: Option<u32>,
    /// The call's pages (pinned or referenced) and asked for, and its error (0: none).
    pub pages: u64,
    pub requested: u64,
    pub error: i32,
    /// Folios migrated and failed over all the migrations in the call, and how many times GUP
    /// migrated (each retry of `__gup_longterm_locked` is one more).
    pub migrated: u64,
    pub failed: u64,
    pub retries: u32,
    /// The whole call's duration: the migrations are most of it.
    pub duration_ns: u64,
    /// The call failed with -ENOMEM after migration failed: what `ibv_reg_mr` and
    /// io_uring buffer registration report when pinned memory will not move.
    pub enomem_after_failed_migration: bool,
}

/// One mm_migrate_pages event, as the kernel side aggregated it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigrationStep {
    pub reason: u32,
    pub migrated: u64,
    pub failed: u64,
    pub firings: u32,
    /// The pfn range `offline_pages` works on, when inside it.
    pub range: Option<(u64, u64)>,
}

impl MigrationStep {
    pub fn of(e: &TraceEvent) -> Option<MigrationStep> {
        if e.kind != EventKind::Migration {
            return None;
        }
        let f = e.folio.unwrap_or_default();
        Some(MigrationStep {
            reason: e.gup_flags,
            migrated: e.pages,
            failed: e.requested,
            firings: f.refs.max(1),
            range: (f.pfn > e.start).then_some((e.start, f.pfn)),
        })
    }
}

/// One test_pages_isolated event (aggregated attempts on one range).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsolationStep {
    pub start_pfn: u64,
    pub end_pfn: u64,
    pub fin_pfn: u64,
    pub attempts: u32,
}

impl IsolationStep {
    pub fn of(e: &TraceEvent) -> Option<IsolationStep> {
        if e.kind != EventKind::Isolation {
            return None;
        }
        let f = e.folio.unwrap_or_default();
        Some(IsolationStep {
            start_pfn: e.start,
            end_pfn: e.requested,
            fin_pfn: f.pfn,
            attempts: f.refs,
        })
    }

    pub fn busy(&self) -> bool {
        self.fin_pfn < self.end_pfn
    }
}

/// One cma_alloc_busy_retry event (aggregated retries on one range).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmaStep {
    pub area: Comm,
    pub start_pfn: u64,
    pub end_pfn: u64,
    pub retries: u32,
}

impl CmaStep {
    pub fn of(e: &TraceEvent) -> Option<CmaStep> {
        if e.kind != EventKind::CmaBusy {
            return None;
        }
        Some(CmaStep {
            area: area_of(e),
            start_pfn: e.start,
            end_pfn: e.requested,
            retries: e.folio.unwrap_or_default().refs.max(1),
        })
    }
}

/// One cma_alloc_finish event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmaEnd {
    pub area: Comm,
    /// The first pfn allocated (None: failed), pages asked for, errno, busy retries in it.
    pub pfn: Option<u64>,
    pub pages: u64,
    pub error: i32,
    pub retries: u32,
}

impl CmaEnd {
    pub fn of(e: &TraceEvent) -> Option<CmaEnd> {
        if e.kind != EventKind::CmaAllocEnd {
            return None;
        }
        Some(CmaEnd {
            area: area_of(e),
            pfn: (e.error == 0 && e.start != 0).then_some(e.start),
            pages: e.pages,
            error: e.error,
            retries: e.folio.unwrap_or_default().refs,
        })
    }
}

/// The CMA area a cma event names (see `gup_trace_common::cma_event`).
fn area_of(e: &TraceEvent) -> Comm {
    let (name, len) = e.path.name();
    let mut bytes = [0u8; gup_trace_common::COMM_LEN];
    let n = len.min(gup_trace_common::COMM_LEN - 1);
    bytes[..n].copy_from_slice(&name[..n]);
    Comm::new(bytes)
}

/// A FOLL_GET reference seen taken (its release is not traced).
#[derive(Clone, Copy, Debug)]
struct GetRef {
    pfn: u64,
    order: u8,
    tgid: u32,
    comm: crate::events::Comm,
    entry: Hook,
    stack_id: Option<u32>,
    refs: u32,
    since_ns: u64,
}

/// FOLL_GET references remembered; the oldest half is forgotten past this.
const GETS_KEPT: usize = 65_536;
/// Blocked ranges and long-term calls kept as evidence.
const BLOCKED_KEPT: usize = 64;
const LONGTERM_KEPT: usize = 256;
const EXAMPLES: usize = 4;

/// The blocking view, fed every event after the pin state (whose folios it searches).
#[derive(Default)]
pub struct BlockingState {
    gets: FastMap<u64, GetRef>,
    /// Migrations inside a GUP call in progress, per thread, until the call's event.
    in_call: FastMap<u32, Vec<MigrationStep>>,
    pub blocked: Vec<BlockedMigration>,
    pub longterm_calls: Vec<LongtermMigration>,
    /// All long-term calls with migrations (the list keeps the latest), folios they migrated
    /// and failed, calls that failed with -ENOMEM after failed migration.
    pub longterm_totals: LongtermTotals,
    /// Failed migrations outside any range gup-trace knows (compaction, ...): by reason
    /// value, (attempts, folios failed).
    pub unranged_failures: FastMap<u32, (u64, u64)>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LongtermTotals {
    pub calls: u64,
    pub migrated: u64,
    pub failed: u64,
    pub retries: u64,
    pub enomem_calls: u64,
}

impl BlockingState {
    /// FOLL_GET references remembered (at most 65,536: the oldest half is forgotten past it).
    pub fn remembered_gets(&self) -> usize {
        self.gets.len()
    }

    /// Forgets the FOLL_GET references taken before `cutoff_ns` (their release is not
    /// traced: most were dropped long since); how many.
    pub fn forget_gets_before(&mut self, cutoff_ns: u64) -> usize {
        let before = self.gets.len();
        self.gets.retain(|_, g| g.since_ns >= cutoff_ns);
        before - self.gets.len()
    }

    pub fn apply(&mut self, e: &TraceEvent, pins: &PinState) {
        match e.kind {
            EventKind::Folio => self.apply_folio(e),
            EventKind::Call if matches!(e.hook.class(), HookClass::Pin | HookClass::Get) => {
                self.finish_call(e)
            }
            EventKind::Migration => self.apply_migration(e, pins),
            EventKind::Isolation => self.apply_isolation(e, pins),
            EventKind::OfflineEnd => self.apply_offline_end(e),
            EventKind::CmaBusy => self.apply_cma_busy(e, pins),
            EventKind::CmaAllocEnd => self.apply_cma_end(e),
            // Its references went with it (the kernel drops them at exit at the latest).
            EventKind::ProcessExit => self.gets.retain(|_, g| g.tgid != e.tgid),
            _ => {}
        }
    }

    fn apply_folio(&mut self, e: &TraceEvent) {
        let Some(t) = &e.folio else { return };
        let get = t.bits & (folio_bit::PIN | folio_bit::FAILED | folio_bit::RELEASE) == 0;
        if !get || t.bits & folio_bit::ZERO_PAGE != 0 {
            return;
        }
        if self.gets.len() >= GETS_KEPT {
            let mut ages: Vec<u64> = self.gets.values().map(|g| g.since_ns).collect();
            ages.sort_unstable();
            let median = ages[ages.len() / 2];
            self.gets.retain(|_, g| g.since_ns > median);
        }
        // The newest reference on a folio names it: a buffer reused for I/O is referenced
        // again and again by the same reader.
        self.gets.insert(
            t.folio,
            GetRef {
                pfn: t.pfn,
                order: t.order.min(255) as u8,
                tgid: e.tgid,
                comm: e.comm,
                entry: e.call_hook.unwrap_or(e.hook),
                stack_id: e.stack_id,
                refs: t.refs,
                since_ns: e.ts_ns,
            },
        );
    }

    fn apply_migration(&mut self, e: &TraceEvent, pins: &PinState) {
        let Some(step) = MigrationStep::of(e) else {
            return;
        };
        if e.call_hook.is_some() {
            self.in_call.entry(e.tid).or_default().push(step);
            return;
        }
        if step.failed == 0 {
            return;
        }
        let Some((start_pfn, end_pfn)) = step.range else {
            let slot = self.unranged_failures.entry(step.reason).or_default();
            slot.0 += u64::from(step.firings);
            slot.1 += step.failed;
            return;
        };
        let holders = holders_in(pins, &self.gets, start_pfn, end_pfn);
        let b = self.blocked_entry(e, Blocked::MemoryOffline { start_pfn, end_pfn }, holders);
        b.migrate_attempts += u64::from(step.firings);
        b.migrate_failed += step.failed;
    }

    fn apply_isolation(&mut self, e: &TraceEvent, pins: &PinState) {
        let Some(step) = IsolationStep::of(e) else {
            return;
        };
        // Offlining isolates its own range: the failure belongs to that offline.
        let offline = Blocked::MemoryOffline {
            start_pfn: step.start_pfn,
            end_pfn: step.end_pfn,
        };
        let blocked = if self.open(offline).is_some() {
            offline
        } else if let Some(i) = self.open_cma(e.tgid, step.start_pfn, step.end_pfn) {
            // cma_alloc isolates the range it tries: the failure belongs to that allocation.
            self.blocked[i].blocked
        } else {
            Blocked::Isolation {
                start_pfn: step.start_pfn,
                end_pfn: step.end_pfn,
            }
        };
        if !step.busy() {
            // Isolated at last after failing: the block is over.
            if let Some(b) = self.open(blocked) {
                let b = &mut self.blocked[b];
                b.last_ns = e.ts_ns;
                b.busy_pfn = None;
            }
            return;
        }
        // The first busy pfn's folio first: that is the one the kernel tripped over.
        let holders = holders_in(pins, &self.gets, step.start_pfn, step.end_pfn);
        let b = self.blocked_entry(e, blocked, holders);
        b.isolation_failures += u64::from(step.attempts);
        b.busy_pfn = Some(step.fin_pfn);
    }

    fn apply_offline_end(&mut self, e: &TraceEvent) {
        let blocked = Blocked::MemoryOffline {
            start_pfn: e.start,
            end_pfn: e.requested,
        };
        if let Some(b) = self.open(blocked) {
            let b = &mut self.blocked[b];
            b.outcome = Some(e.error);
            b.ended_ns = Some(e.ts_ns);
            // The kernel may retry for seconds before its first reported failure: the
            // offline's own start is when the block began.
            b.first_ns = b.first_ns.min(e.ts_ns.saturating_sub(e.duration_ns));
        }
    }

    /// A CMA allocation found a range busy: the holders in it, and the isolation failure the
    /// same task reported about it before (that was this allocation's) folded in.
    fn apply_cma_busy(&mut self, e: &TraceEvent, pins: &PinState) {
        let Some(step) = CmaStep::of(e) else { return };
        let blocked = Blocked::CmaAllocation {
            area: step.area,
            start_pfn: step.start_pfn,
            end_pfn: step.end_pfn,
        };
        let isolation = self.blocked.iter().rposition(|b| {
            let (start, end) = b.blocked.range();
            matches!(b.blocked, Blocked::Isolation { .. })
                && b.outcome.is_none()
                && b.by_tgid == e.tgid
                && start < step.end_pfn
                && end > step.start_pfn
        });
        let folded = isolation.map(|i| self.blocked.remove(i));
        let holders = holders_in(pins, &self.gets, step.start_pfn, step.end_pfn);
        let b = self.blocked_entry(e, blocked, holders);
        b.busy_retries += u64::from(step.retries);
        if let Some(f) = folded {
            b.first_ns = b.first_ns.min(f.first_ns);
            b.isolation_failures += f.isolation_failures;
            b.busy_pfn = b.busy_pfn.or(f.busy_pfn);
            if b.holders.is_empty() {
                b.holders = f.holders;
            }
        }
    }

    /// A CMA allocation ended: its open findings (this task, this area) get its outcome.
    fn apply_cma_end(&mut self, e: &TraceEvent) {
        let Some(end) = CmaEnd::of(e) else { return };
        for b in &mut self.blocked {
            if matches!(b.blocked, Blocked::CmaAllocation { area, .. } if area == end.area)
                && b.by_tgid == e.tgid
                && b.outcome.is_none()
            {
                b.outcome = Some(end.error);
                b.ended_ns = Some(e.ts_ns);
            }
        }
    }

    /// The open CMA allocation finding of `tgid` over a range overlapping `[start, end)`.
    fn open_cma(&self, tgid: u32, start: u64, end: u64) -> Option<usize> {
        self.blocked.iter().rposition(|b| {
            let (s, e) = b.blocked.range();
            matches!(b.blocked, Blocked::CmaAllocation { .. })
                && b.outcome.is_none()
                && b.by_tgid == tgid
                && s < end
                && e > start
        })
    }

    /// The still-open finding about `blocked`, if any.
    fn open(&self, blocked: Blocked) -> Option<usize> {
        self.blocked
            .iter()
            .rposition(|b| b.blocked == blocked && b.outcome.is_none())
    }

    /// The open finding about `blocked`, created if there is none; `holders` replace the
    /// ones it named when there are any (the latest view of who holds the range).
    fn blocked_entry(
        &mut self,
        e: &TraceEvent,
        blocked: Blocked,
        holders: Vec<BlockingHolder>,
    ) -> &mut BlockedMigration {
        let index = match self.open(blocked) {
            Some(i) => i,
            None => {
                if self.blocked.len() >= BLOCKED_KEPT {
                    self.blocked.remove(0);
                }
                self.blocked.push(BlockedMigration {
                    blocked,
                    by_tgid: e.tgid,
                    by_comm: e.comm.to_string(),
                    stack_id: e.stack_id,
                    first_ns: e.ts_ns.saturating_sub(e.duration_ns),
                    last_ns: e.ts_ns,
                    migrate_attempts: 0,
                    migrate_failed: 0,
                    isolation_failures: 0,
                    busy_retries: 0,
                    busy_pfn: None,
                    outcome: None,
                    ended_ns: None,
                    holders: Vec::new(),
                });
                self.blocked.len() - 1
            }
        };
        let b = &mut self.blocked[index];
        b.last_ns = e.ts_ns;
        if !holders.is_empty() {
            b.holders = holders;
        }
        b
    }

    /// A GUP call returned: the migrations inside it become its long-term migration report.
    fn finish_call(&mut self, e: &TraceEvent) {
        let Some(steps) = self.in_call.remove(&e.tid) else {
            return;
        };
        let migrated = steps.iter().map(|s| s.migrated).sum();
        let failed: u64 = steps.iter().map(|s| s.failed).sum();
        let retries = steps.iter().map(|s| s.firings).sum();
        let report = LongtermMigration {
            ts_ns: e.ts_ns,
            tgid: e.tgid,
            tid: e.tid,
            comm: e.comm.to_string(),
            entry: e.hook,
            stack_id: e.stack_id,
            pages: e.pages,
            requested: e.requested,
            error: e.error,
            migrated,
            failed,
            retries,
            duration_ns: e.duration_ns,
            enomem_after_failed_migration: e.error == -ENOMEM && failed > 0,
        };
        let t = &mut self.longterm_totals;
        t.calls += 1;
        t.migrated += migrated;
        t.failed += failed;
        t.retries += u64::from(retries);
        t.enomem_calls += u64::from(report.enomem_after_failed_migration);
        if self.longterm_calls.len() >= LONGTERM_KEPT {
            self.longterm_calls.remove(0);
        }
        self.longterm_calls.push(report);
    }
}

/// Whether a folio at `pfn` of `order` overlaps `[start, end)`.
fn overlaps(pfn: u64, order: u8, start: u64, end: u64) -> bool {
    pfn < end && pfn + (1u64 << order.min(63)) > start
}

/// Pins (from the pin state) and FOLL_GET references (remembered here) on folios in
/// `[start, end)`, grouped by holder, most pages first.
fn holders_in(
    pins: &PinState,
    gets: &FastMap<u64, GetRef>,
    start: u64,
    end: u64,
) -> Vec<BlockingHolder> {
    let mut by_holder: FastMap<(u32, HoldKind, Hook, Option<u32>, bool), BlockingHolder> =
        FastMap::default();
    let mut add = |key: (u32, HoldKind, Hook, Option<u32>, bool), comm: String, f: HeldFolio| {
        let h = by_holder.entry(key).or_insert_with(|| BlockingHolder {
            tgid: key.0,
            comm,
            kind: key.1,
            entry: key.2,
            stack_id: key.3,
            longterm: key.4,
            pages: 0,
            folios: 0,
            oldest_ns: f.since_ns,
            examples: Vec::new(),
        });
        h.pages += u64::from(f.refs);
        h.folios += 1;
        h.oldest_ns = h.oldest_ns.min(f.since_ns);
        h.examples.push(f);
    };
    for (&address, folio) in &pins.folios {
        if !overlaps(folio.pfn, folio.order, start, end) {
            continue;
        }
        for hold in &folio.holds {
            let owner = pins.owners[hold.owner as usize];
            let process = &pins.processes[owner.process as usize];
            let site = &pins.call_sites[owner.site as usize];
            add(
                (
                    process.tgid,
                    HoldKind::Pin,
                    site.entry,
                    site.stack_id,
                    owner.longterm,
                ),
                process.comm.to_string(),
                HeldFolio {
                    folio: address,
                    pfn: folio.pfn,
                    order: folio.order,
                    refs: hold.refs,
                    since_ns: hold.since_ns,
                },
            );
        }
    }
    // FOLL_GET references are dropped unseen, most within the call that took them (futexes,
    // execve's argument pages): they are named only when no pin explains the block.
    let mut pinned = false;
    for folio in pins.folios.values() {
        pinned |= !folio.holds.is_empty() && overlaps(folio.pfn, folio.order, start, end);
    }
    for (&address, g) in gets {
        if pinned || !overlaps(g.pfn, g.order, start, end) {
            continue;
        }
        add(
            (g.tgid, HoldKind::Get, g.entry, g.stack_id, false),
            g.comm.to_string(),
            HeldFolio {
                folio: address,
                pfn: g.pfn,
                order: g.order,
                refs: g.refs,
                since_ns: g.since_ns,
            },
        );
    }
    let mut all: Vec<BlockingHolder> = by_holder
        .into_values()
        .map(|mut h| {
            h.examples.sort_by_key(|f| (f.since_ns, f.pfn));
            h.examples.truncate(EXAMPLES);
            h
        })
        .collect();
    // Pins before plain references (those are certain), then the most pages.
    all.sort_by(|a, b| {
        (a.kind != HoldKind::Pin)
            .cmp(&(b.kind != HoldKind::Pin))
            .then(b.pages.cmp(&a.pages))
            .then(a.tgid.cmp(&b.tgid))
    });
    all
}

#[cfg(test)]
mod tests {
    use gup_trace_common::{EventKind, Hook, folio_bit};

    use super::super::{PinEngine, synthetic::*};
    use super::*;

    const EINTR: i32 = 4;

    /// An aggregated failed migration inside `offline_pages` of `[start, end)`.
    fn offline_migration(ts: u64, start: u64, end: u64, failed: u64) -> TraceEvent {
        let mut e = event(EventKind::Migration, Hook::MmMigratePages, ts, 900);
        e.requested = failed;
        e.gup_flags = 2;
        e.start = start;
        e.stack_id = Some(55);
        let mut f = transition(0, 7, 0, (0, 0), (0, 0));
        f.pfn = end;
        e.folio = Some(f);
        e
    }

    fn offline_end(ts: u64, start: u64, end: u64, error: i32) -> TraceEvent {
        let mut e = event(EventKind::OfflineEnd, Hook::OfflinePages, ts, 900);
        e.start = start;
        e.requested = end;
        e.error = error;
        e
    }

    #[test]
    fn a_blocked_offline_names_the_pin_holder_in_its_range_and_how_it_ended() {
        let mut e = engine();
        // F1's pfn is F1 >> 6; F2 lies outside the offlined range.
        let pfn = F1 >> 6;
        run(&mut e, pin_call(10 * MS, 100, &[F1], 0, 7));
        run(&mut e, pin_call(11 * MS, 200, &[F2], 0, 8));
        run(
            &mut e,
            [
                offline_migration(1 * S, pfn - 4, pfn + 4, 1),
                offline_migration(2 * S, pfn - 4, pfn + 4, 1),
            ],
        );
        let blocked = |e: &PinEngine| -> Vec<BlockedMigration> {
            e.findings(3 * S, None, true)
                .into_iter()
                .filter_map(|f| match f {
                    crate::engine::Finding::BlockedMigration(b) => Some(b),
                    _ => None,
                })
                .collect()
        };
        let found = blocked(&e);
        let [b] = found.as_slice() else {
            panic!("one blocked offline expected: {found:?}")
        };
        assert_eq!(
            b.blocked,
            Blocked::MemoryOffline {
                start_pfn: pfn - 4,
                end_pfn: pfn + 4
            }
        );
        assert_eq!((b.migrate_attempts, b.migrate_failed), (14, 2));
        assert_eq!((b.by_tgid, b.outcome), (900, None));
        let [h] = b.holders.as_slice() else {
            panic!("only the holder inside the range: {:?}", b.holders)
        };
        assert_eq!(
            (h.tgid, h.comm.as_str(), h.kind),
            (100, "proc100", HoldKind::Pin)
        );
        assert_eq!(
            (h.entry, h.stack_id, h.pages),
            (Hook::PinUserPagesFast, Some(7), 1)
        );
        // The holder lets go, the offline succeeds: the finding keeps naming it.
        run(&mut e, unpin_call(3 * S, 100, &[(F1, small(1), small(0))]));
        let mut end = offline_end(4 * S, pfn - 4, pfn + 4, 0);
        end.duration_ns = 3500 * MS;
        run(&mut e, [end]);
        let found = blocked(&e);
        assert_eq!(found[0].outcome, Some(0));
        assert_eq!(found[0].first_ns, 500 * MS, "from the offline's start");
        assert_eq!(found[0].holders[0].tgid, 100);
        // A later offline of the same range that is interrupted is a new finding.
        run(
            &mut e,
            [
                offline_migration(5 * S, pfn - 4, pfn + 4, 3),
                offline_end(6 * S, pfn - 4, pfn + 4, -EINTR),
            ],
        );
        let found = blocked(&e);
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].outcome, Some(-EINTR));
        assert!(found[1].holders.is_empty(), "nobody held it any more");
    }

    fn cma_event(kind: EventKind, hook: Hook, ts: u64, start: u64, end: u64) -> TraceEvent {
        let mut e = event(kind, hook, ts, 900);
        let mut name = [0u8; gup_trace_common::cma_event::AREA_NAME_LEN];
        name[..8].copy_from_slice(b"hugetlb0");
        e.path = gup_trace_common::CallPath::with_name(name);
        e.start = start;
        e.requested = end;
        e.stack_id = Some(66);
        e
    }

    #[test]
    fn a_cma_allocation_that_found_its_range_busy_names_the_pin_holder() {
        let mut e = engine();
        let pfn = F1 >> 6;
        run(&mut e, pin_call(10 * MS, 100, &[F1], 0, 7));
        run(&mut e, pin_call(11 * MS, 200, &[F2], 0, 8));
        // The allocating task's isolation failure comes first, then the busy range.
        let mut isolation = cma_event(
            EventKind::Isolation,
            Hook::TestPagesIsolated,
            1 * S,
            pfn - 4,
            pfn + 4,
        );
        let mut f = transition(0, 2, 0, (0, 0), (0, 0));
        f.pfn = pfn;
        isolation.folio = Some(f);
        let mut busy = cma_event(
            EventKind::CmaBusy,
            Hook::CmaAllocBusyRetry,
            2 * S,
            pfn - 4,
            pfn + 4,
        );
        busy.folio = Some(transition(0, 3, 0, (0, 0), (0, 0)));
        let mut end = cma_event(EventKind::CmaAllocEnd, Hook::CmaAllocFinish, 3 * S, 0, 0);
        end.error = -16;
        run(&mut e, [isolation, busy, end]);
        let [b] = e.blocking.blocked.as_slice() else {
            panic!(
                "one finding, the isolation folded in: {:?}",
                e.blocking.blocked
            )
        };
        assert_eq!(b.blocked.name(), "CMA allocation (hugetlb0)");
        assert_eq!(b.blocked.range(), (pfn - 4, pfn + 4));
        assert_eq!((b.busy_retries, b.isolation_failures), (3, 2));
        assert_eq!(
            (b.busy_pfn, b.outcome, b.first_ns),
            (Some(pfn), Some(-16), 1 * S)
        );
        let [h] = b.holders.as_slice() else {
            panic!("only the holder inside the range: {:?}", b.holders)
        };
        assert_eq!(
            (h.tgid, h.kind, h.entry, h.stack_id),
            (100, HoldKind::Pin, Hook::PinUserPagesFast, Some(7))
        );
        let json = serde_json::to_value(b).unwrap();
        assert_eq!(json["what"], "cma_allocation");
        assert_eq!(json["area"], "hugetlb0");
        // After the holder let go, the next allocation succeeds: no new finding.
        run(&mut e, unpin_call(4 * S, 100, &[(F1, small(1), small(0))]));
        let mut ok = cma_event(
            EventKind::CmaAllocEnd,
            Hook::CmaAllocFinish,
            5 * S,
            pfn - 4,
            0,
        );
        ok.pages = 8;
        run(&mut e, [ok]);
        assert_eq!(e.blocking.blocked.len(), 1);
        assert_eq!(e.blocking.blocked[0].outcome, Some(-16));
    }

    #[test]
    fn foll_get_references_in_a_range_are_named_as_such() {
        let mut e = engine();
        let mut get = grab(10 * MS, 300, transition(F1, 1, 0, small(0), (2, 0)));
        get.call_hook = Some(Hook::GetUserPagesFast);
        get.stack_id = Some(9);
        let mut isolation = event(EventKind::Isolation, Hook::TestPagesIsolated, 1 * S, 900);
        let pfn = F1 >> 6;
        isolation.start = pfn - 1;
        isolation.requested = pfn + 1;
        let mut f = transition(0, 3, 0, (0, 0), (0, 0));
        f.pfn = pfn;
        isolation.folio = Some(f);
        run(&mut e, [get, isolation]);
        let b = &e.blocking.blocked[0];
        assert_eq!(
            b.blocked,
            Blocked::Isolation {
                start_pfn: pfn - 1,
                end_pfn: pfn + 1
            }
        );
        assert_eq!((b.isolation_failures, b.busy_pfn), (3, Some(pfn)));
        let h = &b.holders[0];
        assert_eq!(
            (h.tgid, h.kind, h.entry),
            (300, HoldKind::Get, Hook::GetUserPagesFast)
        );
        // Once its process is gone, its references are too.
        run(&mut e, [exit(2 * S, 300)]);
        assert!(e.blocking.gets.is_empty());
    }

    #[test]
    fn migrations_inside_a_longterm_pin_call_are_reported_with_it() {
        let mut e = engine();
        let migration = |ts: u64, migrated: u64, failed: u64| {
            let mut m = event(EventKind::Migration, Hook::MmMigratePages, ts, 100);
            m.pages = migrated;
            m.requested = failed;
            m.gup_flags = 7;
            m.call_hook = Some(Hook::PinUserPagesFast);
            m.folio = Some(transition(0, 1, 0, (0, 0), (0, 0)));
            m
        };
        let mut call = pin_call(3 * MS, 100, &[F1], LONGTERM, 7);
        call.last_mut().unwrap().duration_ns = 2 * MS;
        run(
            &mut e,
            [migration(1 * MS, 512, 0), migration(2 * MS, 30, 2)],
        );
        run(&mut e, call);
        // A second call that fails with -ENOMEM after migration failed.
        let mut failing = event(EventKind::Call, Hook::PinUserPagesFast, 5 * MS, 100);
        failing.error = -ENOMEM;
        failing.gup_flags = LONGTERM;
        run(&mut e, [migration(4 * MS, 0, 4), failing]);
        // -ENOMEM with every migration successful is some other shortage.
        let mut other = event(EventKind::Call, Hook::PinUserPagesFast, 7 * MS, 100);
        other.error = -ENOMEM;
        run(&mut e, [migration(6 * MS, 10, 0), other]);
        let calls = &e.blocking.longterm_calls;
        assert_eq!(calls.len(), 3);
        assert!(!calls[2].enomem_after_failed_migration);
        assert_eq!(
            (calls[0].migrated, calls[0].failed, calls[0].retries),
            (542, 2, 2)
        );
        assert!(!calls[0].enomem_after_failed_migration);
        assert_eq!(calls[0].duration_ns, 2 * MS);
        assert!(calls[1].enomem_after_failed_migration);
        assert_eq!(e.blocking.longterm_totals.migrated, 552);
        assert!(
            e.blocking.blocked.is_empty(),
            "a pin call's migrations block nothing"
        );
    }

    #[test]
    fn pins_a_longterm_call_drops_before_migrating_are_not_held_afterwards() {
        let mut e = engine();
        // Inside one pin call: pin F1 (movable), unpin it, migrate, pin F2 (its copy).
        let mut events = vec![grab(
            1 * MS,
            100,
            transition(F1, 1, folio_bit::PIN, small(0), small(1)),
        )];
        events.extend(unpin_call(2 * MS, 100, &[(F1, small(1), small(0))]));
        events.extend(pin_call(3 * MS, 100, &[F2], LONGTERM, 7));
        run(&mut e, events);
        let held: Vec<u64> = e.state.folios.keys().copied().collect();
        assert_eq!(held, vec![F2], "only the copy stays pinned");
        run(&mut e, [exit(1 * S, 100)]);
        let orphans: Vec<_> = e
            .findings(10 * S, None, true)
            .into_iter()
            .filter(|f| matches!(f, crate::engine::Finding::OrphanedPins(_)))
            .collect();
        let [crate::engine::Finding::OrphanedPins(o)] = orphans.as_slice() else {
            panic!("one orphan expected: {orphans:?}")
        };
        assert_eq!(o.pages, 1, "F1's pin was given back inside the call");
    }
}
