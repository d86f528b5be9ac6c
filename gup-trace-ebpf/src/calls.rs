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
use gup_trace_common::{Hook, HookClass, counter};

use crate::maps::{FOLL_PIN, Record, THREADS, bump, current_task, emit, now_ns, stack_id};

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ThreadCalls {
    /// Nesting depth of GUP entry points (pin_user_pages*, get_user_pages*).
    gup_depth: u32,
    unpin_depth: u32,
    gup_start_ns: u64,
    unpin_start_ns: u64,
    /// Pages released while the outermost pin call was in progress.
    released_in_pin: u64,
    /// Pages the outermost unpin call releases (from its arguments at entry).
    unpin_pages: u64,
    /// The outermost GUP call's arguments, saved at entry for the event at its return.
    gup_start: u64,
    gup_requested: u64,
    gup_flags: u32,
    gup_stack_id: i32,
    gup_hook: u32,
    unpin_hook: u32,
}

const IDLE: ThreadCalls = ThreadCalls {
    gup_depth: 0,
    unpin_depth: 0,
    gup_start_ns: 0,
    unpin_start_ns: 0,
    released_in_pin: 0,
    unpin_pages: 0,
    gup_start: 0,
    gup_requested: 0,
    gup_flags: 0,
    gup_stack_id: -1,
    gup_hook: 0,
    unpin_hook: 0,
};

/// A GUP call's arguments as the entry program reads them.
#[derive(Clone, Copy)]
pub struct GupArgs {
    pub start: u64,
    pub requested: u64,
    pub flags: u32,
}

/// The thread's state, created on first use.
#[inline(always)]
fn state_for_entry(tid: u32) -> Option<&'static mut ThreadCalls> {
    if let Some(state) = THREADS.get_ptr_mut(&tid) {
        return Some(unsafe { &mut *state });
    }
    if THREADS.insert(&tid, &IDLE, 0).is_err() {
        bump(counter::TASK_MAP_FULL, 1);
        return None;
    }
    THREADS
        .get_ptr_mut(&tid)
        .map(|state| unsafe { &mut *state })
}

#[inline(always)]
fn state_for_exit(tid: u32) -> Option<&'static mut ThreadCalls> {
    match THREADS.get_ptr_mut(&tid) {
        Some(state) => Some(unsafe { &mut *state }),
        None => {
            bump(counter::UNMATCHED_EXITS, 1);
            None
        }
    }
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

/// Drops the thread's entry once it is inside no call, keeping the map small.
#[inline(always)]
fn forget_if_idle(tid: u32, state: &ThreadCalls) {
    if state.gup_depth == 0 && state.unpin_depth == 0 {
        let _ = THREADS.remove(&tid);
    }
}

/// Entry of a GUP entry point. Only the outermost call of a thread is reported: the stack is
/// taken here, where it still shows the caller.
#[inline(always)]
pub fn gup_enter<C: StackIdContext>(ctx: &C, hook: Hook, args: GupArgs) {
    let Some((_, tid)) = current_task() else {
        return;
    };
    let Some(state) = state_for_entry(tid) else {
        return;
    };
    if state.gup_depth == 0 {
        state.gup_start_ns = now_ns();
        state.released_in_pin = 0;
        state.gup_hook = hook as u32;
        state.gup_start = args.start;
        state.gup_requested = args.requested;
        state.gup_flags = args.flags;
        state.gup_stack_id = stack_id(ctx);
    }
    state.gup_depth += 1;
}

/// `ret` is the entry point's return value: pages (or folios) obtained, or a negative errno.
#[inline(always)]
pub fn gup_exit<C: EbpfContext>(ctx: &C, ret: i64) {
    let Some(task) = current_task() else { return };
    let Some(state) = state_for_exit(task.1) else {
        return;
    };
    if leave(&mut state.gup_depth) {
        let (got, error) = if ret < 0 {
            (0, ret as i32)
        } else {
            (ret as u64, 0)
        };
        let hook = Hook::from_id(state.gup_hook).unwrap_or(Hook::PinUserPages);
        // Pins the call gave back before returning were taken by it too.
        let pages = match hook.class() {
            HookClass::Pin => got + state.released_in_pin,
            _ => got,
        };
        let record = Record {
            duration_ns: now_ns().saturating_sub(state.gup_start_ns),
            error,
            start: state.gup_start,
            requested: state.gup_requested,
            gup_flags: state.gup_flags,
            stack_id: state.gup_stack_id,
            ..Record::new(hook, pages)
        };
        emit(ctx, task, record);
    }
    forget_if_idle(task.1, state);
}

#[inline(always)]
pub fn unpin_enter(hook: Hook, pages: u64) {
    let Some((_, tid)) = current_task() else {
        return;
    };
    let Some(state) = state_for_entry(tid) else {
        return;
    };
    if state.unpin_depth == 0 {
        state.unpin_start_ns = now_ns();
        state.unpin_pages = pages;
        state.unpin_hook = hook as u32;
    }
    state.unpin_depth += 1;
}

#[inline(always)]
pub fn unpin_exit<C: EbpfContext>(ctx: &C) {
    let Some(task) = current_task() else { return };
    let Some(state) = state_for_exit(task.1) else {
        return;
    };
    if leave(&mut state.unpin_depth) {
        record_release(
            ctx,
            task,
            state,
            state.unpin_hook,
            state.unpin_pages,
            state.unpin_start_ns,
        );
    }
    forget_if_idle(task.1, state);
}

/// `gup_put_folio(folio, refs, flags)`: a release of its own only outside any `unpin_*` call,
/// and only for FOLL_PIN references (FOLL_GET puts go through it too).
#[inline(always)]
pub fn put_folio<C: EbpfContext>(ctx: &C, refs: u64, flags: u32) {
    if flags & FOLL_PIN.load() == 0 {
        return;
    }
    let Some(task) = current_task() else { return };
    match THREADS.get_ptr_mut(&task.1) {
        Some(state) => {
            let state = unsafe { &mut *state };
            if state.unpin_depth == 0 {
                record_release(ctx, task, state, Hook::GupPutFolio as u32, refs, now_ns());
            }
        }
        None => emit(ctx, task, Record::new(Hook::GupPutFolio, refs)),
    }
}

#[inline(always)]
fn record_release<C: EbpfContext>(
    ctx: &C,
    task: (u32, u32),
    state: &mut ThreadCalls,
    hook: u32,
    pages: u64,
    start_ns: u64,
) {
    if state.gup_depth > 0 {
        state.released_in_pin += pages;
    }
    let hook = Hook::from_id(hook).unwrap_or(Hook::GupPutFolio);
    let record = Record {
        duration_ns: now_ns().saturating_sub(start_ns),
        ..Record::new(hook, pages)
    };
    emit(ctx, task, record);
}

/// Whether the current thread is inside a traced GUP call (for mmap_lock correlation).
#[inline(always)]
pub fn in_gup_call(tid: u32) -> bool {
    unsafe { THREADS.get(&tid) }.is_some_and(|s| s.gup_depth > 0)
}
