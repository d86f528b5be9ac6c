//! What pins block, CMA side: contiguous allocations from a CMA area (`cma:cma_alloc_*`
//! tracepoints). `cma_alloc` tries one aligned pfn range after another; a range holding a page
//! that would not migrate (pinned, referenced) makes `alloc_contig_range` fail with -EBUSY, the
//! kernel fires `cma_alloc_busy_retry` with that range and moves on; `cma_alloc_finish` says
//! how it ended.
//!
//! Busy retries can come in a loop (a caller retrying, an area with many ranges): per thread
//! they are aggregated in `CMA_WATCHES` and go out at most once per `AGGREGATE_MS` for one
//! range, and at once when the range changes or the allocation ends. Every end goes out: CMA
//! allocations are rare (gigantic pages, DMA buffers), unlike page faults.
//!
//! Like `migration`, these ignore the process filters: the allocating task is not the one
//! holding the pins. Field offsets come from the tracefs formats (`CmaOffsets`, read by
//! userspace); an unknown offset (0) turns that tracepoint's reports off. See
//! `gup_trace_common::cma_event` for which event fields carry what.

use aya_ebpf::{
    EbpfContext, Global,
    helpers::bpf_probe_read_kernel_str_bytes,
    macros::{map, tracepoint},
    maps::LruHashMap,
    programs::TracePointContext,
};
use gup_trace_common::{
    CallPath, CmaOffsets, EventKind, Hook, cma_event::AREA_NAME_LEN, migration_event::AGGREGATE_MS,
};

use crate::maps::{Record, emit, now_ns, stack_id, thread_key};

#[unsafe(no_mangle)]
pub static CMA_OFFSETS: Global<CmaOffsets> = Global::new(CmaOffsets::UNKNOWN);

const AGGREGATE_NS: u64 = AGGREGATE_MS * 1_000_000;

/// One thread's CMA allocation in progress and its busy ranges not yet reported.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CmaWatch {
    pub since: u64,
    pub retries_total: u32,
    /// Busy retries on `[pfn, pfn + count)` since the last event about it.
    pub retries: u32,
    pub pfn: u64,
    pub count: u64,
    pub first: u64,
    pub last: u64,
    pub emitted: u64,
    pub name: [u8; AREA_NAME_LEN],
}

impl CmaWatch {
    const EMPTY: CmaWatch = CmaWatch {
        since: 0,
        retries_total: 0,
        retries: 0,
        pfn: 0,
        count: 0,
        first: 0,
        last: 0,
        emitted: 0,
        name: [0; AREA_NAME_LEN],
    };
}

/// Per thread (`thread_key`); LRU so that a thread whose finish was missed cannot keep a slot.
#[map]
static CMA_WATCHES: LruHashMap<u32, CmaWatch> = LruHashMap::with_max_entries(256, 0);

#[inline(always)]
fn any_task() -> (u32, u32) {
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    ((pid_tgid >> 32) as u32, pid_tgid as u32)
}

#[inline(always)]
fn watch(key: u32) -> Option<&'static mut CmaWatch> {
    if let Some(w) = CMA_WATCHES.get_ptr_mut(&key) {
        return Some(unsafe { &mut *w });
    }
    CMA_WATCHES.insert(&key, &CmaWatch::EMPTY, 0).ok()?;
    CMA_WATCHES.get_ptr_mut(&key).map(|w| unsafe { &mut *w })
}

#[inline(always)]
fn read_u64(ctx: &TracePointContext, offset: u32) -> u64 {
    unsafe { ctx.read_at::<u64>(offset as usize) }.unwrap_or(0)
}

/// The area name: a `__data_loc` word at `offset` (low 16 bits: where the string starts in
/// the record, high 16: its length), the string cut to `AREA_NAME_LEN` bytes.
#[inline(always)]
fn read_name(ctx: &TracePointContext, offset: u32, name: &mut [u8; AREA_NAME_LEN]) {
    let loc = unsafe { ctx.read_at::<u32>(offset as usize) }.unwrap_or(0);
    let at = (loc & 0xffff) as usize;
    if at == 0 {
        return;
    }
    let src = unsafe { (ctx.as_ptr() as *const u8).add(at) };
    let _ = unsafe { bpf_probe_read_kernel_str_bytes(src, name) };
}

#[tracepoint]
pub fn cma_alloc_start(ctx: TracePointContext) -> u32 {
    if crate::maps::floor() {
        return 0;
    }
    let offsets = CMA_OFFSETS.load();
    if offsets.start_name == 0 {
        return 0;
    }
    let Some(w) = watch(thread_key(any_task().1)) else {
        return 0;
    };
    *w = CmaWatch::EMPTY;
    w.since = now_ns();
    read_name(&ctx, offsets.start_name, &mut w.name);
    0
}

#[tracepoint]
pub fn cma_alloc_busy_retry(ctx: TracePointContext) -> u32 {
    if crate::maps::floor() {
        return 0;
    }
    let offsets = CMA_OFFSETS.load();
    if offsets.retry_pfn == 0 || offsets.retry_count == 0 || offsets.retry_name == 0 {
        return 0;
    }
    let (pfn, count) = (
        read_u64(&ctx, offsets.retry_pfn),
        read_u64(&ctx, offsets.retry_count),
    );
    let task = any_task();
    let Some(w) = watch(thread_key(task.1)) else {
        return 0;
    };
    let now = now_ns();
    // Another range: what was pending about the last one goes out first.
    if w.retries > 0 && (w.pfn != pfn || w.count != count) {
        flush_busy(&ctx, task, w, now);
    }
    if w.retries == 0 {
        w.first = now;
    }
    w.retries += 1;
    w.retries_total += 1;
    w.pfn = pfn;
    w.count = count;
    w.last = now;
    read_name(&ctx, offsets.retry_name, &mut w.name);
    if now.saturating_sub(w.emitted) >= AGGREGATE_NS {
        flush_busy(&ctx, task, w, now);
    }
    0
}

/// Reports the busy retries aggregated in `w`.
#[inline(always)]
fn flush_busy(ctx: &TracePointContext, task: (u32, u32), w: &mut CmaWatch, now: u64) {
    let mut r = Record::new(EventKind::CmaBusy, Hook::CmaAllocBusyRetry, w.count);
    r.start = w.pfn;
    r.requested = w.pfn.saturating_add(w.count);
    r.folio.refs = w.retries;
    r.duration_ns = w.last.saturating_sub(w.first);
    r.path = CallPath::with_name(w.name);
    r.stack_id = stack_id(ctx);
    emit(ctx, task, r);
    w.retries = 0;
    w.emitted = now;
}

#[tracepoint]
pub fn cma_alloc_finish(ctx: TracePointContext) -> u32 {
    if crate::maps::floor() {
        return 0;
    }
    let offsets = CMA_OFFSETS.load();
    if offsets.finish_pfn == 0
        || offsets.finish_count == 0
        || offsets.finish_errorno == 0
        || offsets.finish_name == 0
    {
        return 0;
    }
    let task = any_task();
    let key = thread_key(task.1);
    let now = now_ns();
    let mut w = CmaWatch::EMPTY;
    if let Some(seen) = CMA_WATCHES.get_ptr_mut(&key).map(|w| unsafe { &mut *w }) {
        if seen.retries > 0 {
            flush_busy(&ctx, task, seen, now);
        }
        w = *seen;
        let _ = CMA_WATCHES.remove(&key);
    }
    let mut r = Record::new(
        EventKind::CmaAllocEnd,
        Hook::CmaAllocFinish,
        read_u64(&ctx, offsets.finish_count),
    );
    r.start = read_u64(&ctx, offsets.finish_pfn);
    r.error = unsafe { ctx.read_at::<i32>(offsets.finish_errorno as usize) }.unwrap_or(0);
    r.folio.refs = w.retries_total;
    r.duration_ns = if w.since > 0 {
        now.saturating_sub(w.since)
    } else {
        0
    };
    read_name(&ctx, offsets.finish_name, &mut w.name);
    r.path = CallPath::with_name(w.name);
    r.stack_id = stack_id(&ctx);
    emit(&ctx, task, r);
    0
}
