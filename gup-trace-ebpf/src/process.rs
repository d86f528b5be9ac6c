//! Process lifetimes, from the scheduler's tracepoints: an exit tells userspace that pins the
//! process still holds are left behind (orphaned once a grace period passes), a fork that a
//! pid it knew now names a new process. Forks also grow the followed process tree of
//! `gup-trace check`.

use aya_ebpf::{
    Global, helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use gup_trace_common::{EventKind, Hook};

use crate::maps::{FOLLOWED, Record, current_task, emit};

/// Offsets of `pid` and `clone_flags` in task_newtask's record, from its tracefs format (0:
/// unknown, and forks are not reported).
#[unsafe(no_mangle)]
pub static NEWTASK_PID_OFFSET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static NEWTASK_FLAGS_OFFSET: Global<u32> = Global::new(0);

/// include/uapi/linux/sched.h: the new task is a thread of its parent's process.
const CLONE_THREAD: u64 = 0x0001_0000;

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    if crate::maps::floor() {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    // Only the main thread: the process as a whole goes away (exit_group).
    if pid_tgid as u32 != (pid_tgid >> 32) as u32 {
        return 0;
    }
    if let Some(task) = current_task() {
        emit(
            &ctx,
            task,
            Record::new(EventKind::ProcessExit, Hook::SchedProcessExit, 0),
        );
    }
    0
}

/// Runs in the parent, for the new task.
#[tracepoint]
pub fn task_newtask(ctx: TracePointContext) -> u32 {
    if crate::maps::floor() {
        return 0;
    }
    let (pid_at, flags_at) = (NEWTASK_PID_OFFSET.load(), NEWTASK_FLAGS_OFFSET.load());
    if pid_at == 0 || flags_at == 0 {
        return 0;
    }
    let Some(task) = current_task() else { return 0 };
    let (Ok(child), Ok(flags)) = (unsafe { ctx.read_at::<u32>(pid_at as usize) }, unsafe {
        ctx.read_at::<u64>(flags_at as usize)
    }) else {
        return 0;
    };
    if flags & CLONE_THREAD != 0 {
        return 0;
    }
    // The parent passed the filter: when following a tree, its child belongs to it.
    let _ = FOLLOWED.insert(&child, &1, 0);
    let mut r = Record::new(EventKind::ProcessFork, Hook::TaskNewtask, 0);
    r.start = u64::from(child);
    emit(&ctx, task, r);
    0
}
