//! The mmap_lock tracepoints (5.15+). They work with or without kprobes/fentry, so the release
//! counter is the one thing a locked-down kernel still gives us. Inside a traced GUP call they
//! are correlated with it per thread (`calls`): wait, hold, and every drop-and-retake.

use aya_ebpf::{Global, macros::tracepoint, programs::TracePointContext};
use gup_trace_common::{EventKind, Hook, counter, setting};

use crate::{
    calls,
    maps::{Record, bump, current_task, emit, setting_value},
};

/// Offset of `bool success` in mmap_lock_acquire_returned's record, from its tracefs format
/// (the record lost its `memcg_path` field in 6.13, moving it); 0 when unknown.
#[unsafe(no_mangle)]
pub static LOCK_SUCCESS_OFFSET: Global<u32> = Global::new(0);

#[tracepoint]
pub fn mmap_lock_start_locking(_ctx: TracePointContext) -> u32 {
    if crate::maps::floor() {
        return 0;
    }
    if let Some((_, tid)) = current_task() {
        calls::lock_start_locking(tid);
    }
    0
}

#[tracepoint]
pub fn mmap_lock_acquire_returned(ctx: TracePointContext) -> u32 {
    if crate::maps::floor() {
        return 0;
    }
    let Some(task) = current_task() else { return 0 };
    let offset = LOCK_SUCCESS_OFFSET.load() as usize;
    let success = offset == 0 || unsafe { ctx.read_at::<u8>(offset) }.unwrap_or(1) != 0;
    calls::lock_acquired(&ctx, task, success);
    0
}

#[tracepoint]
pub fn mmap_lock_released(ctx: TracePointContext) -> u32 {
    if crate::maps::floor() {
        return 0;
    }
    let Some(task) = current_task() else { return 0 };
    bump(counter::MMAP_LOCK_RELEASES, 1);
    // Every release on a busy machine is a flood: by default releases become events only as
    // drops inside a GUP call (at the retake, see `calls::lock_acquired`); the rest are counted.
    if !calls::lock_released(task.1) && setting_value(setting::MMAP_LOCK_ALL) != 0 {
        emit(
            &ctx,
            task,
            Record::new(EventKind::MmapLockRelease, Hook::MmapLockReleased, 0),
        );
    }
    0
}
