//! Whose memory a GUP call works on. A pin belongs to the process whose address space holds
//! the pages, not necessarily to the task that called GUP: `pin_user_pages_remote` /
//! `get_user_pages_remote` take the mm as their first argument (a driver's worker pins a
//! process's pages on its behalf), and a kernel thread that adopted an mm (kthread_use_mm)
//! pins through `current->mm`. From the mm, `mm->owner` (CONFIG_MEMCG) names the process.
//!
//! Offsets come from userspace (`MM_OWNER_LAYOUT`, read from BTF); nothing is compiled in.

use aya_ebpf::{
    Global,
    helpers::{bpf_get_current_task, bpf_probe_read_kernel},
};
use gup_trace_common::{COMM_LEN, MmOwnerLayout, owner_bit};

use crate::{
    maps::{FILTER_CGROUP, FILTER_COMM, FILTER_FOLLOWED, FILTER_TGID, FOLLOWED},
    state::MmOwner,
};

#[unsafe(no_mangle)]
pub static MM_OWNER_LAYOUT: Global<MmOwnerLayout> = Global::new(MmOwnerLayout {
    task_mm: 0,
    task_flags: 0,
    task_tgid: 0,
    task_comm: 0,
    mm_owner: 0,
    valid: 0,
});

/// include/linux/sched.h: the task is a kernel thread.
const PF_KTHREAD: u32 = 0x0020_0000;

#[inline(always)]
fn read<T>(addr: u64) -> Option<T> {
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

/// Which mm the call works on: `remote_mm` (the `*_remote` entry points' first argument,
/// nonzero) or the caller's own.
#[inline(always)]
pub fn owner_of_call(remote_mm: u64) -> MmOwner {
    let layout = MM_OWNER_LAYOUT.load();
    if layout.valid == 0 {
        return MmOwner::UNKNOWN;
    }
    let task = unsafe { bpf_get_current_task() };
    let flags = read::<u32>(task + layout.task_flags as u64).unwrap_or(0);
    let mut bits = if flags & PF_KTHREAD != 0 {
        owner_bit::KTHREAD_CALLER
    } else {
        0
    };
    let mm = if remote_mm != 0 {
        bits |= owner_bit::REMOTE_MM;
        remote_mm
    } else {
        read::<u64>(task + layout.task_mm as u64).unwrap_or(0)
    };
    let owner = if mm == 0 {
        0
    } else {
        read::<u64>(mm + layout.mm_owner as u64).unwrap_or(0)
    };
    if owner == 0 {
        return MmOwner {
            bits,
            ..MmOwner::UNKNOWN
        };
    }
    let (Some(tgid), Some(comm)) = (
        read::<u32>(owner + layout.task_tgid as u64),
        read::<[u8; COMM_LEN]>(owner + layout.task_comm as u64),
    ) else {
        return MmOwner {
            bits,
            ..MmOwner::UNKNOWN
        };
    };
    MmOwner {
        tgid,
        bits: bits | owner_bit::KNOWN,
        comm,
    }
}

/// Whether the owner passes the process filters (the pid, the followed tree, the comm), so
/// that a call whose caller does not pass is still traced: a kernel worker pinning a followed
/// process's memory. The cgroup filter stays the caller's: an owner's cgroup is not read, so
/// with `--cgroup` no owner passes on its own.
#[inline(always)]
pub fn owner_passes(owner: &MmOwner) -> bool {
    if owner.bits & owner_bit::KNOWN == 0 || FILTER_CGROUP.load() != 0 {
        return false;
    }
    let filter = FILTER_TGID.load();
    if filter != 0 && filter != owner.tgid {
        return false;
    }
    if FILTER_FOLLOWED.load() != 0 && unsafe { FOLLOWED.get(&owner.tgid) }.is_none() {
        return false;
    }
    let comm = FILTER_COMM.load();
    if comm[0] != 0 && owner.comm != comm {
        return false;
    }
    true
}
