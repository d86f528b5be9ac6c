//! What pins block: page migration failing (`migrate:mm_migrate_pages`), pfn ranges that could
//! not be isolated (`page_isolation:test_pages_isolated`), and memory offlining
//! (`offline_pages`, whose pfn range the other two are then about).
//!
//! Memory offlining retries migration and isolation until it succeeds or is interrupted, many
//! times a second: those events are aggregated per thread in `WATCHES` and go out at most once
//! per `AGGREGATE_MS`, and once more when `offline_pages` returns. Inside a traced GUP call a
//! migration is the FOLL_LONGTERM pin moving movable memory first: those go out one per firing
//! (a handful per call), naming the call, so userspace can attach them to it.
//!
//! These hooks ignore the process filters: the task that offlines memory or compacts it is not
//! the one holding the pins, and the pins are what the filters are about.
//!
//! Field offsets come from the tracepoints' tracefs formats (userspace reads them: the records
//! differ between kernels); an unknown offset (0) turns the tracepoint's reports off. See
//! `gup_trace_common::migration_event` for which event fields carry what.

use aya_ebpf::{
    EbpfContext, Global,
    helpers::bpf_get_current_pid_tgid,
    macros::map,
    macros::tracepoint,
    maps::LruHashMap,
    programs::{TracePointContext, tracing::StackIdContext},
};
use gup_trace_common::{EventKind, Hook, migration_event::AGGREGATE_MS};

use crate::maps::{Record, THREADS, emit, now_ns, stack_id, thread_key};

#[unsafe(no_mangle)]
pub static MIGRATE_SUCCEEDED_OFFSET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static MIGRATE_FAILED_OFFSET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static MIGRATE_REASON_OFFSET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static ISOLATED_START_OFFSET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static ISOLATED_END_OFFSET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static ISOLATED_FIN_OFFSET: Global<u32> = Global::new(0);

const AGGREGATE_NS: u64 = AGGREGATE_MS * 1_000_000;
/// include/uapi/asm-generic/errno-base.h: what a range that would not isolate means.
const EBUSY: i32 = 16;

/// Migration and isolation on one thread since its last event, and the offlining it is in.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Watch {
    /// The pfn range `offline_pages` works on (0, 0: none) and when it began.
    pub offline_start: u64,
    pub offline_end: u64,
    pub offline_since: u64,
    /// Migrations not yet reported: folios moved and failed, firings, first and last firing.
    pub migrated: u64,
    pub failed: u64,
    pub migrations: u32,
    pub reason: u32,
    pub migrate_first: u64,
    pub migrate_last: u64,
    pub migrate_emitted: u64,
    /// Isolation attempts not yet reported, the range and the first pfn that would not go.
    pub isolations: u32,
    pub isolation_failed: u32,
    pub iso_start: u64,
    pub iso_end: u64,
    pub iso_fin: u64,
    pub iso_first: u64,
    pub iso_last: u64,
    pub iso_emitted: u64,
}

impl Watch {
    const EMPTY: Watch = Watch {
        offline_start: 0,
        offline_end: 0,
        offline_since: 0,
        migrated: 0,
        failed: 0,
        migrations: 0,
        reason: 0,
        migrate_first: 0,
        migrate_last: 0,
        migrate_emitted: 0,
        isolations: 0,
        isolation_failed: 0,
        iso_start: 0,
        iso_end: 0,
        iso_fin: 0,
        iso_first: 0,
        iso_last: 0,
        iso_emitted: 0,
    };
}

/// Per thread (`thread_key`). LRU: compaction runs on any thread that allocates, and a thread
/// that stopped failing must not keep its slot.
#[map]
static WATCHES: LruHashMap<u32, Watch> = LruHashMap::with_max_entries(1024, 0);

/// The current task, whatever the filters say (see the module comment).
#[inline(always)]
fn any_task() -> (u32, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    ((pid_tgid >> 32) as u32, pid_tgid as u32)
}

#[inline(always)]
fn watch(key: u32) -> Option<&'static mut Watch> {
    if let Some(w) = WATCHES.get_ptr_mut(&key) {
        return Some(unsafe { &mut *w });
    }
    WATCHES.insert(&key, &Watch::EMPTY, 0).ok()?;
    WATCHES.get_ptr_mut(&key).map(|w| unsafe { &mut *w })
}

#[inline(always)]
fn read_u64(ctx: &TracePointContext, offset: u32) -> u64 {
    unsafe { ctx.read_at::<u64>(offset as usize) }.unwrap_or(0)
}

#[tracepoint]
pub fn mm_migrate_pages(ctx: TracePointContext) -> u32 {
    if crate::maps::floor() {
        return 0;
    }
    let (ok_at, failed_at, reason_at) = (
        MIGRATE_SUCCEEDED_OFFSET.load(),
        MIGRATE_FAILED_OFFSET.load(),
        MIGRATE_REASON_OFFSET.load(),
    );
    if ok_at == 0 || failed_at == 0 || reason_at == 0 {
        return 0;
    }
    let migrated = read_u64(&ctx, ok_at);
    let failed = read_u64(&ctx, failed_at);
    let reason = unsafe { ctx.read_at::<u32>(reason_at as usize) }.unwrap_or(u32::MAX);
    let task = any_task();
    let key = thread_key(task.1);
    if let Some(gup) = THREADS.get_ptr(&key).map(|s| unsafe { &*s })
        && gup.gup_depth > 0
    {
        let mut r = Record::new(EventKind::Migration, Hook::MmMigratePages, migrated);
        r.requested = failed;
        r.gup_flags = reason;
        r.call_hook = gup.gup.hook;
        r.stack_id = gup.gup.stack_id;
        r.folio.refs = 1;
        emit(&ctx, task, r);
        return 0;
    }
    let Some(w) = watch(key) else { return 0 };
    let now = now_ns();
    if w.migrations == 0 {
        w.migrate_first = now;
    }
    w.migrations += 1;
    w.migrated += migrated;
    w.failed += failed;
    w.reason = reason;
    w.migrate_last = now;
    // Only failures are news outside GUP; successful compaction is the kernel doing its job.
    if w.failed > 0 && now.saturating_sub(w.migrate_emitted) >= AGGREGATE_NS {
        flush_migrations(&ctx, task, w, now);
    }
    0
}

/// Reports the migrations aggregated in `w` and starts a new aggregate.
#[inline(always)]
fn flush_migrations<C: EbpfContext + StackIdContext>(
    ctx: &C,
    task: (u32, u32),
    w: &mut Watch,
    now: u64,
) {
    let mut r = Record::new(EventKind::Migration, Hook::MmMigratePages, w.migrated);
    r.requested = w.failed;
    r.gup_flags = w.reason;
    r.duration_ns = w.migrate_last.saturating_sub(w.migrate_first);
    r.start = w.offline_start;
    r.folio.pfn = w.offline_end;
    r.folio.refs = w.migrations;
    r.stack_id = stack_id(ctx);
    emit(ctx, task, r);
    w.migrated = 0;
    w.failed = 0;
    w.migrations = 0;
    w.migrate_emitted = now;
}

#[tracepoint]
pub fn test_pages_isolated(ctx: TracePointContext) -> u32 {
    if crate::maps::floor() {
        return 0;
    }
    let (start_at, end_at, fin_at) = (
        ISOLATED_START_OFFSET.load(),
        ISOLATED_END_OFFSET.load(),
        ISOLATED_FIN_OFFSET.load(),
    );
    if start_at == 0 || end_at == 0 || fin_at == 0 {
        return 0;
    }
    let (start, end, fin) = (
        read_u64(&ctx, start_at),
        read_u64(&ctx, end_at),
        read_u64(&ctx, fin_at),
    );
    let task = any_task();
    let Some(w) = watch(thread_key(task.1)) else {
        return 0;
    };
    let now = now_ns();
    let busy = fin < end;
    // Another range: what was pending about the last one goes out first.
    if w.isolations > 0 && (w.iso_start != start || w.iso_end != end) {
        flush_isolations(&ctx, task, w, now);
    }
    if w.isolations == 0 {
        w.iso_first = now;
    }
    w.isolations += 1;
    w.isolation_failed += u32::from(busy);
    w.iso_start = start;
    w.iso_end = end;
    w.iso_fin = fin;
    w.iso_last = now;
    // A failure at most every AGGREGATE_MS; a success at once when failures came before it
    // (the range that was blocked is free now). A first-time success is no news.
    if (busy && now.saturating_sub(w.iso_emitted) >= AGGREGATE_NS)
        || (!busy && w.isolation_failed > 0)
    {
        flush_isolations(&ctx, task, w, now);
    } else if !busy {
        w.isolations = 0;
    }
    0
}

#[inline(always)]
fn flush_isolations<C: EbpfContext + StackIdContext>(
    ctx: &C,
    task: (u32, u32),
    w: &mut Watch,
    now: u64,
) {
    let mut r = Record::new(EventKind::Isolation, Hook::TestPagesIsolated, 0);
    r.start = w.iso_start;
    r.requested = w.iso_end;
    r.folio.pfn = w.iso_fin;
    r.folio.refs = w.isolations;
    r.duration_ns = w.iso_last.saturating_sub(w.iso_first);
    r.error = if w.iso_fin < w.iso_end { -EBUSY } else { 0 };
    r.stack_id = stack_id(ctx);
    emit(ctx, task, r);
    w.isolations = 0;
    w.isolation_failed = 0;
    w.iso_emitted = now;
}

/// Entry of `offline_pages(start_pfn, nr_pages, ...)`: migrations on this thread until it
/// returns are about that range.
#[inline(always)]
pub fn offline_enter(start_pfn: u64, nr_pages: u64) {
    let (_, tid) = any_task();
    let Some(w) = watch(thread_key(tid)) else {
        return;
    };
    w.offline_start = start_pfn;
    w.offline_end = start_pfn.saturating_add(nr_pages);
    w.offline_since = now_ns();
}

/// Return of `offline_pages`: what is still aggregated goes out, then the outcome.
#[inline(always)]
pub fn offline_exit<C: EbpfContext + StackIdContext>(ctx: &C, ret: i32) {
    let task = any_task();
    let key = thread_key(task.1);
    let Some(w) = WATCHES.get_ptr_mut(&key).map(|w| unsafe { &mut *w }) else {
        return;
    };
    let now = now_ns();
    if w.migrations > 0 && w.failed > 0 {
        flush_migrations(ctx, task, w, now);
    }
    if w.isolations > 0 && w.isolation_failed > 0 {
        flush_isolations(ctx, task, w, now);
    }
    let mut r = Record::new(EventKind::OfflineEnd, Hook::OfflinePages, 0);
    r.start = w.offline_start;
    r.requested = w.offline_end;
    r.error = ret;
    r.duration_ns = now.saturating_sub(w.offline_since);
    r.stack_id = stack_id(ctx);
    emit(ctx, task, r);
    let _ = WATCHES.remove(&key);
}
