//! The `mmap_lock:mmap_lock_released` tracepoint. It works on every kernel since 5.15, with or
//! without kprobes/fentry, so it is the one hook a locked-down kernel still gives us.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use gup_trace_common::{Hook, counter, setting};

use crate::{
    calls::in_gup_call,
    maps::{Record, bump, current_task, emit, setting_value},
};

#[tracepoint]
pub fn mmap_lock_released(ctx: TracePointContext) -> u32 {
    let Some(task) = current_task() else { return 0 };
    bump(counter::MMAP_LOCK_RELEASES, 1);
    // Every release on a busy machine is a flood; by default only releases inside a GUP call
    // are events (the lock drops GUP makes), the rest are counted.
    if setting_value(setting::MMAP_LOCK_ALL) != 0 || in_gup_call(task.1) {
        emit(&ctx, task, Record::new(Hook::MmapLockReleased, 0));
    }
    0
}
