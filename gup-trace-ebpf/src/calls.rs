//! Per-thread nesting of GUP calls.
//!
//! Why track nesting: the release API nests (`unpin_user_pages_dirty_lock` calls
//! `unpin_user_pages`, which calls `gup_put_folio`), and from 6.18 `gup_put_folio` is inlined
//! into `unpin_user_folio`, so it cannot be the single place to count. Counting pages at the
//! outermost `unpin_*` call, plus `gup_put_folio` calls outside any `unpin_*`, counts every
//! release once on every kernel.
//!
//! Releases that happen while a pin call is in progress were taken by that same call (GUP undoes
//! a grab when the PTE changed under it; FOLL_LONGTERM unpins, migrates and pins again), so they
//! are added to the call's pin total: the kernel's `nr_foll_pin_acquired` counts those grabs too.

use aya_ebpf::{EbpfContext, programs::tracing::StackIdContext};
use gup_trace_common::{EventKind, Hook, HookClass, NO_CALL, counter};

use crate::{
    folio::{self, Released, release_enter, release_exit},
    maps::{
        FOLIO_LAYOUT, Record, THREADS, any_task, bump, current_task, emit, now_ns, releasing_task,
        stack_id, thread_key,
    },
    owner,
    state::{GupCall, ThreadCalls},
};

/// A GUP call's arguments as the entry program reads them.
#[derive(Clone, Copy)]
pub struct GupArgs {
    pub start: u64,
    pub requested: u64,
    pub flags: u32,
    /// The `*_remote` entry points' mm argument; 0 for the others (they work on current->mm).
    pub mm: u64,
}

/// The thread's state, created on first use.
#[inline(always)]
fn state_for_entry(key: u32) -> Option<&'static mut ThreadCalls> {
    if let Some(state) = THREADS.get_ptr_mut(&key) {
        return Some(unsafe { &mut *state });
    }
    if THREADS.insert(&key, &ThreadCalls::IDLE, 0).is_err() {
        bump(counter::TASK_MAP_FULL, 1);
        return None;
    }
    THREADS
        .get_ptr_mut(&key)
        .map(|state| unsafe { &mut *state })
}

#[inline(always)]
fn state_for_exit(key: u32) -> Option<&'static mut ThreadCalls> {
    match THREADS.get_ptr_mut(&key) {
        Some(state) => Some(unsafe { &mut *state }),
        None => {
            bump(counter::UNMATCHED_EXITS, 1);
            None
        }
    }
}

/// The state of a thread inside a GUP call, if it is in one.
#[inline(always)]
fn state_in_gup(key: u32) -> Option<&'static mut ThreadCalls> {
    let state = unsafe { &mut *THREADS.get_ptr_mut(&key)? };
    (state.gup_depth > 0).then_some(state)
}

/// Leaves one level of nesting; true when that was the outermost call. A return without its
/// entry (the probe attached mid-call) is counted and changes nothing.
#[inline(always)]
fn leave(depth: &mut u32) -> bool {
    if *depth == 0 {
        bump(counter::UNMATCHED_EXITS, 1);
        return false;
    }
    *depth -= 1;
    *depth == 0
}

/// How long a call may look in progress before its return is taken for lost. A kretprobe
/// misses returns when more calls are in flight than its instances (6.1 keeps three kprobe
/// hooks); without this, every later call of that thread would look nested in the lost one and
/// go unreported. No GUP or release call runs this long between two hooked entries.
const STALE_CALL_NS: u64 = 10_000_000_000;

/// Forgets a call whose return never came (see [`STALE_CALL_NS`]), counting it.
#[inline(always)]
fn forget_if_stale(depth: &mut u32, since_ns: u64, now: u64) {
    if *depth > 0 && now.saturating_sub(since_ns) > STALE_CALL_NS {
        *depth = 0;
        bump(counter::STALE_CALLS, 1);
    }
}

/// Drops the thread's entry once it is inside no call, keeping the map small.
#[inline(always)]
fn forget_if_idle(key: u32, state: &ThreadCalls) {
    if state.gup_depth == 0 && state.unpin_depth == 0 {
        let _ = THREADS.remove(&key);
    }
}

/// Entry of a GUP entry point. Only the outermost call of a thread is reported: the stack is
/// taken here, where it still shows the caller. A call is traced when its caller or the owner
/// of the memory it works on passes the filters: a kernel worker pinning a followed process's
/// pages is that process's business.
#[inline(always)]
pub fn gup_enter<C: StackIdContext>(ctx: &C, hook: Hook, args: GupArgs) {
    let owner = owner::owner_of_call(args.mm);
    let tid = match current_task() {
        Some((_, tid)) => tid,
        None if owner::owner_passes(&owner) => any_task().1,
        None => return,
    };
    let Some(state) = state_for_entry(thread_key(tid)) else {
        return;
    };
    let now = now_ns();
    forget_if_stale(&mut state.gup_depth, state.gup.start_ns, now);
    if state.gup_depth == 0 {
        state.gup = GupCall {
            start_ns: now,
            start: args.start,
            requested: args.requested,
            flags: args.flags,
            stack_id: stack_id(ctx),
            hook: hook as u32,
            owner,
            ..GupCall::NONE
        };
    }
    state.gup_depth += 1;
}

/// `ret` is the entry point's return value: pages (or folios) obtained, or a negative errno.
#[inline(always)]
pub fn gup_exit<C: EbpfContext>(ctx: &C, ret: i64) {
    let Some(task) = current_task() else { return };
    let key = thread_key(task.1);
    let Some(state) = state_for_exit(key) else {
        return;
    };
    if leave(&mut state.gup_depth) {
        let now = now_ns();
        let (got, error) = if ret < 0 {
            (0, ret as i32)
        } else {
            (ret as u64, 0)
        };
        let hook = Hook::from_id(state.gup.hook).unwrap_or(Hook::PinUserPages);
        // Pins the call gave back before returning were taken by it too.
        let pages = match hook.class() {
            HookClass::Pin => got + state.gup.released_in_pin,
            _ => got,
        };
        if state.gup.lock_held_since != 0 {
            state.gup.lock.hold_ns += now.saturating_sub(state.gup.lock_held_since);
        }
        let mut record = Record::new(EventKind::Call, hook, pages);
        record.duration_ns = now.saturating_sub(state.gup.start_ns);
        record.error = error;
        record.start = state.gup.start;
        record.requested = state.gup.requested;
        record.gup_flags = state.gup.flags;
        record.stack_id = state.gup.stack_id;
        record.path = state.gup.path;
        record.lock = state.gup.lock;
        record.owner = state.gup.owner;
        emit(ctx, task, record);
    }
    forget_if_idle(key, state);
}

/// Entry of `__get_user_pages`, the slow walk: grabs until its return are slow-path grabs.
#[inline(always)]
pub fn slow_walk_enter(start: u64) {
    let Some((_, tid)) = current_task() else {
        return;
    };
    let Some(state) = state_in_gup(thread_key(tid)) else {
        return;
    };
    if state.gup.slow_depth == 0 {
        state.gup.path.slow_walks += 1;
        state.gup.walk_start = start;
        state.gup.walk_refs = 0;
    }
    state.gup.slow_depth += 1;
}

#[inline(always)]
pub fn slow_walk_exit() {
    let Some((_, tid)) = current_task() else {
        return;
    };
    if let Some(state) = state_in_gup(thread_key(tid))
        && state.gup.slow_depth > 0
    {
        state.gup.slow_depth -= 1;
    }
}

/// Return of a grab: its folio event, counted on the GUP call in progress.
#[inline(always)]
pub fn grab_exit<C: EbpfContext>(ctx: &C, hook: Hook, ret: u64) {
    let Some(task) = current_task() else { return };
    let key = thread_key(task.1);
    let Some(mut record) = folio::finish_grab(key, hook, ret) else {
        return;
    };
    note_grab(key, &mut record);
    emit(ctx, task, record);
}

/// A grab's folio event learns which GUP call it belongs to; the call counts the grab on the
/// path it happened on.
#[inline(always)]
fn note_grab(key: u32, record: &mut Record) {
    let Some(state) = state_in_gup(key) else {
        return;
    };
    record.call_hook = state.gup.hook;
    record.stack_id = state.gup.stack_id;
    record.owner = state.gup.owner;
    if state.gup.slow_depth > 0 {
        state.gup.path.slow_refs += record.pages;
        state.gup.walk_refs += record.pages;
    } else {
        state.gup.path.fast_refs += record.pages;
    }
}

/// Entry of a release function. `pages` is what the call releases, for its own event;
/// `released` tells which folios, walked now for the folio events.
#[inline(always)]
pub fn unpin_enter(hook: Hook, pages: u64, released: Released) {
    let Some((_, tid)) = releasing_task() else {
        return;
    };
    let key = thread_key(tid);
    let Some(state) = state_for_entry(key) else {
        return;
    };
    let now = now_ns();
    forget_if_stale(&mut state.unpin_depth, state.unpin_start_ns, now);
    if state.unpin_depth == 0 {
        state.unpin_start_ns = now;
        if matches!(released, Released::Nothing) {
            state.unpin_pages = 0;
            state.unpin_hook = NO_CALL;
        } else {
            state.unpin_pages = pages;
            state.unpin_hook = hook as u32;
            release_enter(key, released);
        }
    }
    state.unpin_depth += 1;
}

#[inline(always)]
pub fn unpin_exit<C: EbpfContext>(ctx: &C) {
    let Some(task) = releasing_task() else { return };
    let key = thread_key(task.1);
    let Some(state) = state_for_exit(key) else {
        return;
    };
    if leave(&mut state.unpin_depth)
        && let Some(hook) = Hook::from_id(state.unpin_hook)
    {
        let pages = state.unpin_pages;
        if state.gup_depth > 0 {
            state.gup.released_in_pin += pages;
        }
        let mut record = Record::new(EventKind::Call, hook, pages);
        record.duration_ns = now_ns().saturating_sub(state.unpin_start_ns);
        if state.gup_depth > 0 {
            record.call_hook = state.gup.hook;
            record.stack_id = state.gup.stack_id;
        }
        release_exit(ctx, task, key, record);
    }
    forget_if_idle(key, state);
}

/// mmap_lock_start_locking on a thread inside a GUP call.
#[inline(always)]
pub fn lock_start_locking(tid: u32) {
    if let Some(state) = state_in_gup(thread_key(tid)) {
        state.gup.lock_wait_since = now_ns();
    }
}

/// mmap_lock_acquire_returned: the wait ends; a retake after a drop in the same call is a
/// drop event (with how long the lock stayed dropped).
#[inline(always)]
pub fn lock_acquired<C: EbpfContext>(ctx: &C, task: (u32, u32), success: bool) {
    let Some(state) = state_in_gup(thread_key(task.1)) else {
        return;
    };
    let now = now_ns();
    if state.gup.lock_wait_since != 0 {
        state.gup.lock.wait_ns += now.saturating_sub(state.gup.lock_wait_since);
        state.gup.lock_wait_since = 0;
    }
    if !success {
        return;
    }
    state.gup.lock.acquisitions += 1;
    state.gup.lock_held_since = now;
    if state.gup.lock_dropped_at != 0 {
        state.gup.lock.drops += 1;
        let mut record = Record::new(EventKind::MmapLockDrop, Hook::MmapLockAcquireReturned, 0);
        record.duration_ns = now.saturating_sub(state.gup.lock_dropped_at);
        record.start = state.gup.lock_drop_addr;
        record.call_hook = state.gup.hook;
        record.stack_id = state.gup.stack_id;
        record.gup_flags = state.gup.flags;
        state.gup.lock_dropped_at = 0;
        emit(ctx, task, record);
    }
}

/// mmap_lock_released; true when the thread is inside a GUP call.
#[inline(always)]
pub fn lock_released(tid: u32) -> bool {
    let Some(state) = state_in_gup(thread_key(tid)) else {
        return false;
    };
    let page_size = FOLIO_LAYOUT.load().page_size as u64;
    let now = now_ns();
    if state.gup.lock_held_since != 0 {
        state.gup.lock.hold_ns += now.saturating_sub(state.gup.lock_held_since);
        state.gup.lock_held_since = 0;
    }
    state.gup.lock_dropped_at = now;
    // The slow walk takes pages in address order: the first one it has not got yet is the one
    // whose fault made it let go of the lock.
    state.gup.lock_drop_addr = state.gup.walk_start + state.gup.walk_refs * page_size;
    true
}
