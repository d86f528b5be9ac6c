//! Maps, load-time globals, and the two ways out of the kernel: events and counters.

use aya_ebpf::{
    EbpfContext, Global,
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_ktime_get_ns},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, StackTrace},
    programs::tracing::StackIdContext,
};
use aya_log_ebpf::info;
use gup_trace_common::{
    COMM_LEN, CallPath, Event, EventKind, FolioLayout, FolioTransition, HOOK_COUNT, Hook,
    LockStats, NO_CALL, counter, setting,
};

use crate::state::{MmOwner, PendingGrab, ReleaseBatch, ThreadCalls};

/// Default 4 MiB; userspace resizes it (`--ring-buffer-kib`) before load.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Per-CPU counters indexed by `gup_trace_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Per-thread state of the GUP calls in progress, keyed by [`thread_key`]. Entries are removed
/// when the thread's outermost call returns, so the map holds only threads inside a call.
#[map]
pub static THREADS: HashMap<u32, ThreadCalls> = HashMap::with_max_entries(16384, 0);

/// A grab in progress on a thread: the folio and its counts before the grab.
#[map]
pub static GRABS: HashMap<u32, PendingGrab> = HashMap::with_max_entries(4096, 0);

/// The folios an outermost release call is dropping, with their counts at its entry. Large
/// values (a bounded walk of `pages[]`), so few entries: a thread that finds the map full is
/// still counted at call level and the shortfall is counted in `TASK_MAP_FULL`.
#[map]
pub static RELEASES: HashMap<u32, ReleaseBatch> = HashMap::with_max_entries(256, 0);

/// A zeroed batch to create `RELEASES` entries from: too large for the 512-byte BPF stack.
#[map]
pub static EMPTY_BATCH: PerCpuArray<ReleaseBatch> = PerCpuArray::with_max_entries(1, 0);

/// Kernel stacks of GUP callers, referenced by `Event::stack_id`.
#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(16384, 0);

/// Whether a hook has fired yet (logged once through aya-log, so `--verbose` shows which hooks
/// are live).
#[map]
static FIRED: Array<u32> = Array::with_max_entries(HOOK_COUNT as u32, 0);

#[unsafe(no_mangle)]
pub static FOLL_PIN: Global<u32> = Global::new(0);
/// Userspace always replaces it before load: with the layout it read from BTF, or with an
/// unread one carrying the running kernel's page size. Until then: unread, with x86-64's.
#[unsafe(no_mangle)]
pub static FOLIO_LAYOUT: Global<FolioLayout> = Global::new(FolioLayout::unread(X86_64_PAGE_SIZE));
const X86_64_PAGE_SIZE: u32 = 4096;
/// Wake the reader only once this much data waits in the ring buffer (0: on every event).
/// A wakeup per event costs more than the event itself; the reader also drains on a timer, so
/// nothing waits longer than its poll interval.
#[unsafe(no_mangle)]
pub static WAKEUP_BYTES: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
pub static FILTER_TGID: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static FILTER_COMM: Global<[u8; COMM_LEN]> = Global::new([0; COMM_LEN]);
#[unsafe(no_mangle)]
pub static FILTER_CGROUP: Global<u64> = Global::new(0);
/// 1: only trace the processes in `FOLLOWED` (a process tree: `gup-trace check`).
#[unsafe(no_mangle)]
pub static FILTER_FOLLOWED: Global<u32> = Global::new(0);

/// 1: releases are traced whoever makes them, filters or not. A pin is often released by
/// another task (io_uring teardown in a kworker, block I/O completing in interrupt context), and
/// whoever reconstructs pin ownership must see those releases.
#[unsafe(no_mangle)]
pub static RELEASES_UNFILTERED: Global<u32> = Global::new(0);

/// 1: the floor, for `gup-trace bench`: every program only counts its run and returns. Read-only
/// (.rodata, frozen before load), so the verifier prunes all the rest of each program.
#[unsafe(no_mangle)]
pub static FLOOR: Global<u32> = Global::new(0);

/// Tested first in every program: in floor mode, counts the run in `counter::FLOOR_RUNS` and
/// says so (the program then returns at once).
#[inline(always)]
pub fn floor() -> bool {
    let on = FLOOR.load() != 0;
    if on {
        bump(counter::FLOOR_RUNS, 1);
    }
    on
}

/// The processes (tgids) of a followed tree: userspace puts the root in before it runs, and
/// `task_newtask` adds each child. LRU: a long run with many short processes must not fill it.
#[map]
pub static FOLLOWED: LruHashMap<u32, u8> = LruHashMap::with_max_entries(16384, 0);

/// Indexed by `gup_trace_common::setting`.
#[map]
static SETTINGS: Array<u32> = Array::with_max_entries(setting::COUNT, 0);

#[inline(always)]
pub fn setting_value(index: u32) -> u32 {
    SETTINGS.get(index).copied().unwrap_or(0)
}

#[inline(always)]
pub fn bump(index: u32, by: u64) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // Per-CPU slot, and BPF programs do not migrate mid-run: a plain add is safe.
        unsafe { *slot += by };
    }
}

/// The current task as (tgid, tid), or None when a filter excludes it. Filtering here, first
/// thing in every program, is what keeps a filtered trace nearly free for other tasks. A task
/// the filters exclude still passes inside a GUP call that was let in for its memory's owner
/// (`calls::gup_enter`): the call's grabs, slow walk and return belong to that owner.
#[inline(always)]
pub fn current_task() -> Option<(u32, u32)> {
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    let task = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if caller_passes(task.0) {
        return Some(task);
    }
    let state = unsafe { THREADS.get(&thread_key(task.1)) }?;
    (state.gup_depth > 0).then_some(task)
}

/// Whether the current task passes the process filters itself.
#[inline(always)]
pub fn caller_passes(tgid: u32) -> bool {
    caller_filters(tgid).is_some()
}

#[inline(always)]
fn caller_filters(tgid: u32) -> Option<()> {
    let filter = FILTER_TGID.load();
    if filter != 0 && filter != tgid {
        return None;
    }
    if FILTER_FOLLOWED.load() != 0 && unsafe { FOLLOWED.get(&tgid) }.is_none() {
        return None;
    }
    let cgroup = FILTER_CGROUP.load();
    if cgroup != 0 && cgroup != unsafe { bpf_get_current_cgroup_id() } {
        return None;
    }
    let comm = FILTER_COMM.load();
    if comm[0] != 0 && bpf_get_current_comm().ok()? != comm {
        return None;
    }
    Some(())
}

/// The current task as (tgid, tid), whatever the filters say.
#[inline(always)]
pub fn any_task() -> (u32, u32) {
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    ((pid_tgid >> 32) as u32, pid_tgid as u32)
}

/// The current task as (tgid, tid) for a release hook: filtered like every other hook unless
/// `RELEASES_UNFILTERED` is set.
#[inline(always)]
pub fn releasing_task() -> Option<(u32, u32)> {
    if RELEASES_UNFILTERED.load() == 0 {
        return current_task();
    }
    Some(any_task())
}

/// The key of the current thread's per-thread state. The idle tasks of all CPUs share tid 0,
/// and releases completed in interrupt context run on them: give each CPU its own key.
#[inline(always)]
pub fn thread_key(tid: u32) -> u32 {
    if tid == 0 {
        0x8000_0000 | unsafe { aya_ebpf::helpers::bpf_get_smp_processor_id() }
    } else {
        tid
    }
}

/// The caller's kernel stack, saved in `STACKS`; -1 when it could not be saved.
#[inline(always)]
pub fn stack_id<C: StackIdContext>(ctx: &C) -> i32 {
    ctx.get_stackid(&STACKS, 0)
        .map(|id| id as i32)
        .unwrap_or(-1)
}

/// What a hook reports; `emit` adds time, task, cgroup and comm.
#[derive(Clone, Copy)]
pub struct Record {
    pub kind: EventKind,
    pub hook: Hook,
    pub pages: u64,
    pub duration_ns: u64,
    pub error: i32,
    pub start: u64,
    pub requested: u64,
    pub gup_flags: u32,
    pub stack_id: i32,
    pub call_hook: u32,
    pub path: CallPath,
    pub lock: LockStats,
    pub folio: FolioTransition,
    pub owner: MmOwner,
}

impl Record {
    #[inline(always)]
    pub const fn new(kind: EventKind, hook: Hook, pages: u64) -> Record {
        Record {
            kind,
            hook,
            pages,
            duration_ns: 0,
            error: 0,
            start: 0,
            requested: 0,
            gup_flags: 0,
            stack_id: -1,
            call_hook: NO_CALL,
            path: CallPath::ZERO,
            lock: LockStats::ZERO,
            folio: FolioTransition::ZERO,
            owner: MmOwner::UNKNOWN,
        }
    }
}

#[inline(always)]
pub fn now_ns() -> u64 {
    unsafe { bpf_ktime_get_ns() }
}

/// The event `r` describes, stamped with time, task, cgroup and comm.
#[inline(always)]
pub fn event(task: (u32, u32), r: &Record) -> Event {
    Event {
        ts_ns: now_ns(),
        duration_ns: r.duration_ns,
        pages: r.pages,
        tgid: task.0,
        tid: task.1,
        kind: r.kind as u32,
        hook: r.hook as u32,
        error: r.error,
        gup_flags: r.gup_flags,
        start: r.start,
        requested: r.requested,
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        stack_id: r.stack_id,
        call_hook: r.call_hook,
        comm: bpf_get_current_comm().unwrap_or([0u8; COMM_LEN]),
        path: r.path,
        lock: r.lock,
        folio: r.folio,
        owner_tgid: r.owner.tgid,
        owner_bits: r.owner.bits,
        owner_comm: r.owner.comm,
    }
}

/// Writes one event; a full ring buffer is counted, never silent.
#[inline(always)]
pub fn emit<C: EbpfContext>(ctx: &C, task: (u32, u32), r: Record) {
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        bump(counter::LOST_EVENTS, 1);
        return;
    };
    entry.write(event(task, &r));
    entry.submit(wakeup_flag());
    log_first_fire(ctx, r.hook);
}

/// Submit flags: no wakeup until `WAKEUP_BYTES` are waiting.
#[inline(always)]
pub fn wakeup_flag() -> u64 {
    use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
    let threshold = WAKEUP_BYTES.load();
    if threshold == 0 {
        0
    } else if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[inline(always)]
fn log_first_fire<C: EbpfContext>(ctx: &C, hook: Hook) {
    if let Some(fired) = FIRED.get_ptr_mut(hook as u32) {
        // Two CPUs may both see 0 and log twice; harmless for a diagnostic line.
        if unsafe { *fired } == 0 {
            unsafe { *fired = 1 };
            info!(ctx, "first event from hook {}", hook.name());
        }
    }
}
