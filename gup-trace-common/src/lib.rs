//! Types shared by the eBPF programs and userspace. Everything here is `#[repr(C)]` and
//! `no_std`: the kernel side writes these bytes into the ring buffer, userspace reads them back.
#![no_std]

pub const COMM_LEN: usize = 16;

/// What a hook observes. Every hook belongs to exactly one class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookClass {
    /// A `pin_user_pages*`-style entry point: the pages it returns are pinned.
    Pin,
    /// A `get_user_pages*` entry point: the pages it returns hold plain references (FOLL_GET),
    /// which /proc/vmstat's pin counters do not count.
    Get,
    /// An `unpin_*` call or a `gup_put_folio` outside of one: pages released.
    Unpin,
    /// The `mmap_lock_released` tracepoint.
    MmapLock,
}

macro_rules! hooks {
    ($($variant:ident = $id:literal, $name:literal, $class:ident;)*) => {
        /// Every kernel function or tracepoint gup-trace can hook. The numeric id travels in
        /// [`Event::hook`]; the name is the kernel symbol (or tracepoint) it attaches to.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Hook {
            $($variant = $id,)*
        }

        impl Hook {
            pub const ALL: &'static [Hook] = &[$(Hook::$variant,)*];

            pub const fn name(self) -> &'static str {
                match self {
                    $(Hook::$variant => $name,)*
                }
            }

            pub const fn class(self) -> HookClass {
                match self {
                    $(Hook::$variant => HookClass::$class,)*
                }
            }

            pub const fn from_id(id: u32) -> Option<Hook> {
                match id {
                    $($id => Some(Hook::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

hooks! {
    PinUserPages = 0, "pin_user_pages", Pin;
    PinUserPagesFast = 1, "pin_user_pages_fast", Pin;
    PinUserPagesFastOnly = 2, "pin_user_pages_fast_only", Pin;
    PinUserPagesRemote = 3, "pin_user_pages_remote", Pin;
    PinUserPagesUnlocked = 4, "pin_user_pages_unlocked", Pin;
    MemfdPinFolios = 5, "memfd_pin_folios", Pin;
    UnpinUserPage = 6, "unpin_user_page", Unpin;
    UnpinUserPages = 7, "unpin_user_pages", Unpin;
    UnpinUserPagesDirtyLock = 8, "unpin_user_pages_dirty_lock", Unpin;
    UnpinUserPageRangeDirtyLock = 9, "unpin_user_page_range_dirty_lock", Unpin;
    UnpinUserFolio = 10, "unpin_user_folio", Unpin;
    UnpinFolio = 11, "unpin_folio", Unpin;
    UnpinFolios = 12, "unpin_folios", Unpin;
    GupPutFolio = 13, "gup_put_folio", Unpin;
    MmapLockReleased = 14, "mmap_lock_released", MmapLock;
    GetUserPages = 15, "get_user_pages", Get;
    GetUserPagesFast = 16, "get_user_pages_fast", Get;
    GetUserPagesFastOnly = 17, "get_user_pages_fast_only", Get;
    GetUserPagesRemote = 18, "get_user_pages_remote", Get;
    GetUserPagesUnlocked = 19, "get_user_pages_unlocked", Get;
}

pub const HOOK_COUNT: usize = Hook::ALL.len();

/// One observation, as written into the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Event {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the call returned or the tracepoint fired.
    pub ts_ns: u64,
    /// Duration of the outermost call in ns (0 for tracepoints).
    pub duration_ns: u64,
    /// Pages pinned (pin hooks) or released (unpin hooks); 0 for mmap_lock events.
    pub pages: u64,
    /// Process id (kernel tgid).
    pub tgid: u32,
    /// Thread id (kernel pid).
    pub tid: u32,
    /// A [`Hook`] id.
    pub hook: u32,
    /// For GUP calls, the raw return value when it was an error (negative errno), else 0.
    pub error: i32,
    /// GUP calls: the start address (memfd_pin_folios: the file offset).
    pub start: u64,
    /// GUP calls: pages asked for (memfd_pin_folios: the most folios it may return).
    pub requested: u64,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// GUP calls: the caller's gup_flags (without what GUP adds itself, e.g. FOLL_PIN).
    pub gup_flags: u32,
    /// GUP calls: id of the caller's kernel stack in the `STACKS` map; negative when none.
    pub stack_id: i32,
    pub comm: [u8; COMM_LEN],
}

/// Indices into the per-CPU `COUNTERS` array.
pub mod counter {
    /// Events dropped because the ring buffer was full.
    pub const LOST_EVENTS: u32 = 0;
    /// Every `mmap_lock_released` the tracepoint saw (after the pid filter), emitted or not.
    pub const MMAP_LOCK_RELEASES: u32 = 1;
    /// Calls not tracked because the per-thread state map was full.
    pub const TASK_MAP_FULL: u32 = 2;
    /// Returns seen without their entry (the probe was attached mid-call, or kretprobe misses).
    pub const UNMATCHED_EXITS: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Names of the globals userspace sets before load (`EbpfLoader::set_global`).
pub mod global {
    /// `FOLL_PIN` of the running kernel (0x40000 up to 6.1, 0x80000 from 6.12), read from BTF.
    pub const FOLL_PIN: &str = "FOLL_PIN";
    /// Only trace this tgid (0: every process).
    pub const FILTER_TGID: &str = "FILTER_TGID";
    /// Only trace tasks with this comm (all zero: every comm).
    pub const FILTER_COMM: &str = "FILTER_COMM";
    /// Only trace tasks in this cgroup v2 (0: every cgroup).
    pub const FILTER_CGROUP: &str = "FILTER_CGROUP";
}

/// Indices into the `SETTINGS` array: switches userspace sets after the programs are attached
/// (unlike globals, which are fixed before load).
pub mod setting {
    /// 1: emit every mmap_lock release; 0: only those inside a traced pin call.
    pub const MMAP_LOCK_ALL: u32 = 0;
    pub const COUNT: u32 = 1;
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for Event {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_ids_round_trip() {
        for (i, hook) in Hook::ALL.iter().enumerate() {
            assert_eq!(*hook as usize, i, "ids must be dense and in table order");
            assert_eq!(Hook::from_id(*hook as u32), Some(*hook));
        }
        assert_eq!(Hook::from_id(HOOK_COUNT as u32), None);
    }
}
