//! Types shared by the eBPF programs and userspace. Everything here is `#[repr(C)]` and
//! `no_std`: the kernel side writes these bytes into the ring buffer, userspace reads them back.
#![no_std]

// The bench's flags are clap's, for userspace only: clap's derive needs `::std`.
#[cfg(feature = "cli")]
extern crate std;
#[cfg(feature = "cli")]
pub mod bench;

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
    /// A function that takes references on one folio (`try_grab_folio*`, `try_grab_page`,
    /// `folio_add_pin(s)`): the per-folio pin transitions.
    Grab,
    /// The slow path of GUP (`__get_user_pages`): marks which grabs the fast walk did not get.
    SlowPath,
    /// The mmap_lock tracepoints.
    MmapLock,
    /// The scheduler's process tracepoints: which processes exist, so that pins a process
    /// left behind when it exited can be told from pins it still holds.
    Process,
    /// What pins block: page migration and isolation failing (the migrate and page_isolation
    /// tracepoints) and memory offlining (`offline_pages`).
    Migration,
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

            /// The tracefs category of a tracepoint hook; None for kernel functions.
            pub const fn tracepoint_category(self) -> Option<&'static str> {
                match self.class() {
                    HookClass::MmapLock => Some("mmap_lock"),
                    HookClass::Process => match self {
                        Hook::SchedProcessExit => Some("sched"),
                        _ => Some("task"),
                    },
                    HookClass::Migration => match self {
                        Hook::MmMigratePages => Some("migrate"),
                        Hook::TestPagesIsolated => Some("page_isolation"),
                        Hook::CmaAllocStart | Hook::CmaAllocBusyRetry | Hook::CmaAllocFinish => {
                            Some("cma")
                        }
                        _ => None,
                    },
                    _ => None,
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
    TryGrabFolio = 20, "try_grab_folio", Grab;
    TryGrabFolioFast = 21, "try_grab_folio_fast", Grab;
    TryGrabPage = 22, "try_grab_page", Grab;
    FolioAddPin = 23, "folio_add_pin", Grab;
    FolioAddPins = 24, "folio_add_pins", Grab;
    GetUserPagesSlow = 25, "__get_user_pages", SlowPath;
    MmapLockStartLocking = 26, "mmap_lock_start_locking", MmapLock;
    MmapLockAcquireReturned = 27, "mmap_lock_acquire_returned", MmapLock;
    SchedProcessExit = 28, "sched_process_exit", Process;
    TaskNewtask = 29, "task_newtask", Process;
    MmMigratePages = 30, "mm_migrate_pages", Migration;
    TestPagesIsolated = 31, "test_pages_isolated", Migration;
    OfflinePages = 32, "offline_pages", Migration;
    CmaAllocStart = 33, "cma_alloc_start", Migration;
    CmaAllocBusyRetry = 34, "cma_alloc_busy_retry", Migration;
    CmaAllocFinish = 35, "cma_alloc_finish", Migration;
}

/// Marks "no GUP call in progress" in [`Event::call_hook`].
pub const NO_CALL: u32 = u32::MAX;

/// Most folios one release call itemizes. A bounded loop is what the verifier accepts; longer
/// batches are marked truncated.
pub const RELEASE_FOLIOS_MAX: u32 = 256;

/// Most entries of a release call's `pages[]` / `folios[]` (or pages of its range) walked in
/// the kernel. More than `RELEASE_FOLIOS_MAX`: consecutive pages of one large folio merge into
/// one folio (io_uring drops 511 extra pins of each 2 MiB folio in one call).
pub const RELEASE_WALK_MAX: u32 = 1024;

pub const HOOK_COUNT: usize = Hook::ALL.len();

/// What an [`Event`] describes; decides which of its parts are filled in.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The return of an outermost GUP entry point or `unpin_*` call (or a lone
    /// `gup_put_folio`): pages, duration, and for GUP calls the arguments, `path` and `lock`.
    Call = 0,
    /// One folio's references changing: `folio` is filled in, `hook` is the grab or release
    /// function, `call_hook` the GUP entry point in progress on the thread.
    Folio = 1,
    /// GUP dropped mmap_lock and took it again: `start` is the address GUP was working on,
    /// `duration_ns` how long the lock stayed dropped.
    MmapLockDrop = 2,
    /// An mmap_lock release outside GUP (only with `--mmap-lock all`).
    MmapLockRelease = 3,
    /// A process ended: its main thread (tid == tgid) exited. That is exit_group() or the last
    /// thread of a process whose main thread called pthread_exit() earlier; close enough for
    /// telling pins left behind from pins still held.
    ProcessExit = 4,
    /// A process was created (not a thread): `tgid`, `tid` and `comm` are the parent's, `start`
    /// is the child's pid.
    ProcessFork = 5,
    /// `mm_migrate_pages` fired (see `migration_event` for the fields it fills). Inside a
    /// traced GUP call: one event per firing, `call_hook`/`stack_id` naming the call (a
    /// FOLL_LONGTERM pin migrating movable memory first). Elsewhere only failures, aggregated
    /// per thread: at most one event per 500 ms, summing the firings since the last.
    Migration = 6,
    /// `test_pages_isolated` found a page it could not isolate (or succeeded after failing),
    /// aggregated per thread like `Migration`.
    Isolation = 7,
    /// `offline_pages` returned.
    OfflineEnd = 8,
    /// A CMA allocation found a pfn range busy and moved on to the next (`cma_alloc_busy_retry`),
    /// aggregated per thread and range like `Isolation` (see `cma_event`).
    CmaBusy = 9,
    /// A CMA allocation ended (`cma_alloc_finish`), successful or not (see `cma_event`).
    CmaAllocEnd = 10,
}

/// Which [`Event`] fields the `CmaBusy` and `CmaAllocEnd` events fill.
pub mod cma_event {
    //! - `CmaBusy`: `start`, `requested` the pfn range `[start, requested)` that could not be
    //!   allocated (busy pages in it), `pages` the pages asked for, `folio.refs` the retries
    //!   aggregated, `duration_ns` from the first to the last.
    //! - `CmaAllocEnd`: `pages` the pages asked for, `start` the first pfn allocated (0 when
    //!   the allocation failed), `error` its errno (0 or negative), `folio.refs` the busy
    //!   retries inside it, `duration_ns` since `cma_alloc_start` on the thread (0 if unseen).
    //!
    //! Both carry the CMA area's name (its first [`AREA_NAME_LEN`] bytes) in `path`, see
    //! [`crate::CallPath::with_name`]: a CMA event is no GUP call, so that part is free.

    /// Bytes of the area name an event carries (the kernel's CMA_MAX_NAME is 64; hugetlb's
    /// areas are "hugetlb0", ..., the DMA one "reserved").
    pub const AREA_NAME_LEN: usize = 16;
}

/// Which [`Event`] fields the `Migration`, `Isolation` and `OfflineEnd` events fill (the
/// struct is shared with every other event, so these reuse its fields).
pub mod migration_event {
    //! - `Migration`: `pages` folios migrated, `requested` folios that failed, `gup_flags` the
    //!   `enum migrate_reason` value, `folio.refs` how many times the tracepoint fired,
    //!   `duration_ns` from the first of those firings to the last; inside `offline_pages`
    //!   `start` and `folio.pfn` are the pfn range offlined (`[start, folio.pfn)`), else 0.
    //! - `Isolation`: `start`, `requested` the pfn range `[start, requested)`, `folio.pfn` the
    //!   first pfn that could not be isolated (`fin_pfn`; equal to the end on success),
    //!   `folio.refs` the attempts aggregated, `duration_ns` from the first to the last,
    //!   `error` -16 (EBUSY) when the range could not be isolated, 0 when it was.
    //! - `OfflineEnd`: `start`, `requested` the pfn range, `error` the return value,
    //!   `duration_ns` how long `offline_pages` ran.
    //!
    //! None of them carries a `FolioTransition` of a grab: `folio.folio` stays 0.

    /// Most milliseconds between two aggregated events of one thread.
    pub const AGGREGATE_MS: u64 = 500;
}

impl EventKind {
    pub const fn from_id(id: u32) -> Option<EventKind> {
        match id {
            0 => Some(EventKind::Call),
            1 => Some(EventKind::Folio),
            2 => Some(EventKind::MmapLockDrop),
            3 => Some(EventKind::MmapLockRelease),
            4 => Some(EventKind::ProcessExit),
            5 => Some(EventKind::ProcessFork),
            6 => Some(EventKind::Migration),
            7 => Some(EventKind::Isolation),
            8 => Some(EventKind::OfflineEnd),
            9 => Some(EventKind::CmaBusy),
            10 => Some(EventKind::CmaAllocEnd),
            _ => None,
        }
    }
}

/// How a grab function's return value says it took the references (see
/// [`FolioLayout::grab_rules`]). The same name changed signature: `try_grab_folio` returned the
/// folio up to 6.9 and returns 0 or an errno since.
pub mod grab_rule {
    /// Returns a pointer (the folio), NULL on failure.
    pub const POINTER: u32 = 0;
    /// Returns 0 on success, a negative errno on failure.
    pub const STATUS: u32 = 1;
    /// Returns bool, true on success.
    pub const BOOL: u32 = 2;
    /// Returns nothing: it cannot fail.
    pub const VOID: u32 = 3;

    /// The rule of `hook` within a packed `grab_rules` word.
    pub const fn of(rules: u32, hook: crate::Hook) -> u32 {
        let shift = 2 * (hook as u32).wrapping_sub(crate::Hook::TryGrabFolio as u32);
        if shift >= 32 {
            VOID
        } else {
            (rules >> shift) & 3
        }
    }

    /// `rules` with `hook`'s rule set to `rule`.
    pub const fn with(rules: u32, hook: crate::Hook, rule: u32) -> u32 {
        let shift = 2 * (hook as u32 - crate::Hook::TryGrabFolio as u32);
        (rules & !(3 << shift)) | (rule << shift)
    }
}

/// Bits of [`FolioTransition::bits`].
pub mod folio_bit {
    /// A FOLL_PIN reference (else FOLL_GET).
    pub const PIN: u32 = 1 << 0;
    /// The folio is large (has a `_pincount`).
    pub const LARGE: u32 = 1 << 1;
    /// The folio is the shared zero page: recent kernels take no pin on it.
    pub const ZERO_PAGE: u32 = 1 << 2;
    /// The grab failed (the function returned its failure value): no reference was taken.
    pub const FAILED: u32 = 1 << 3;
    /// A release from an array (`pages[]`, `folios[]`) whose walk stopped at the in-kernel
    /// bound: the call released more than its folio events show.
    pub const TRUNCATED: u32 = 1 << 4;
    /// A release (else a grab).
    pub const RELEASE: u32 = 1 << 5;
}

/// One folio's reference counts around a grab or a release, read by the kernel side before and
/// after the function ran. The GUP_PIN_COUNTING_BIAS rule is checked on these in userspace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FolioTransition {
    /// Kernel address of the `struct folio`.
    pub folio: u64,
    pub pfn: u64,
    /// References taken or dropped (pages, for pins).
    pub refs: u32,
    /// `folio_bit` flags.
    pub bits: u32,
    pub order: u32,
    pub refcount_before: i32,
    pub refcount_after: i32,
    pub pincount_before: i32,
    pub pincount_after: i32,
    pub _pad: u32,
}

impl FolioTransition {
    /// All zero, usable in `const` contexts (the kernel side builds records without memsets).
    pub const ZERO: FolioTransition = FolioTransition {
        folio: 0,
        pfn: 0,
        refs: 0,
        bits: 0,
        order: 0,
        refcount_before: 0,
        refcount_after: 0,
        pincount_before: 0,
        pincount_after: 0,
        _pad: 0,
    };
}

/// How an outermost GUP call got its pages.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallPath {
    /// References grabbed outside `__get_user_pages` (the lockless fast walk).
    pub fast_refs: u64,
    /// References grabbed inside `__get_user_pages` (the slow walk, with faults).
    pub slow_refs: u64,
    /// Times the slow walk ran during the call (0: the fast walk did everything).
    pub slow_walks: u32,
    /// Unpin calls: entries of the `pages[]`/`folios[]` argument walked in the kernel (less than
    /// `pages` when the walk stopped at its bound).
    pub walked: u32,
}

impl CallPath {
    pub const ZERO: CallPath = CallPath {
        fast_refs: 0,
        slow_refs: 0,
        slow_walks: 0,
        walked: 0,
    };

    /// A CMA event's path: the area name's bytes in `fast_refs` and `slow_refs` (see
    /// [`cma_event`]).
    pub const fn with_name(name: [u8; cma_event::AREA_NAME_LEN]) -> CallPath {
        let mut low = [0u8; 8];
        let mut high = [0u8; 8];
        let mut i = 0;
        while i < 8 {
            low[i] = name[i];
            high[i] = name[i + 8];
            i += 1;
        }
        CallPath {
            fast_refs: u64::from_le_bytes(low),
            slow_refs: u64::from_le_bytes(high),
            slow_walks: 0,
            walked: 0,
        }
    }

    /// The name [`CallPath::with_name`] stored, up to its NUL.
    pub fn name(&self) -> ([u8; cma_event::AREA_NAME_LEN], usize) {
        let mut name = [0u8; cma_event::AREA_NAME_LEN];
        name[..8].copy_from_slice(&self.fast_refs.to_le_bytes());
        name[8..].copy_from_slice(&self.slow_refs.to_le_bytes());
        let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        (name, len)
    }
}

/// mmap_lock as seen by one outermost GUP call on its own thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockStats {
    /// Time spent waiting for the lock inside the call.
    pub wait_ns: u64,
    /// Time the lock was held inside the call, from each acquisition to its release (or the
    /// call's return).
    pub hold_ns: u64,
    pub acquisitions: u32,
    /// Releases followed by another acquisition within the same call (VM_FAULT_RETRY and the
    /// like).
    pub drops: u32,
}

impl LockStats {
    pub const ZERO: LockStats = LockStats {
        wait_ns: 0,
        hold_ns: 0,
        acquisitions: 0,
        drops: 0,
    };
}

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
    /// An [`EventKind`] id.
    pub kind: u32,
    /// A [`Hook`] id.
    pub hook: u32,
    /// For GUP calls, the raw return value when it was an error (negative errno), else 0.
    pub error: i32,
    /// GUP calls: the caller's gup_flags (without what GUP adds itself, e.g. FOLL_PIN).
    pub gup_flags: u32,
    /// GUP calls: the start address (memfd_pin_folios: the file offset). mmap_lock drops: the
    /// address GUP was working on.
    pub start: u64,
    /// GUP calls: pages asked for (memfd_pin_folios: the most folios it may return).
    pub requested: u64,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// Id of the GUP caller's kernel stack in the `STACKS` map; negative when none. Folio
    /// events carry the stack of the GUP call in progress.
    pub stack_id: i32,
    /// Folio events: the [`Hook`] id of the GUP entry point in progress, or [`NO_CALL`].
    pub call_hook: u32,
    pub comm: [u8; COMM_LEN],
    pub path: CallPath,
    pub lock: LockStats,
    pub folio: FolioTransition,
    /// GUP calls and their folio events: the process whose memory the call works on (the
    /// owner of its mm), which may differ from the caller (`tgid`): `*_remote` calls name the
    /// mm, a kernel thread may have adopted one. Valid when `owner_bits` has
    /// [`owner_bit::KNOWN`].
    pub owner_tgid: u32,
    /// [`owner_bit`] flags.
    pub owner_bits: u32,
    pub owner_comm: [u8; COMM_LEN],
}

/// Bits of [`Event::owner_bits`].
pub mod owner_bit {
    /// `owner_tgid` and `owner_comm` were read (the mm had an owner).
    pub const KNOWN: u32 = 1 << 0;
    /// The mm came from the call's argument (`pin_user_pages_remote`, `get_user_pages_remote`),
    /// not from the caller's `current->mm`.
    pub const REMOTE_MM: u32 = 1 << 1;
    /// The caller is a kernel thread (PF_KTHREAD).
    pub const KTHREAD_CALLER: u32 = 1 << 2;
}

/// Where the kernel keeps what leads from a task to the process owning its memory:
/// `task_struct.mm`, `mm_struct.owner` (CONFIG_MEMCG only), the owner's `tgid` and `comm`,
/// and `task_struct.flags` (PF_KTHREAD). Read from BTF by userspace, handed to the programs as
/// one global like [`FolioLayout`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmOwnerLayout {
    pub task_mm: u32,
    pub task_flags: u32,
    pub task_tgid: u32,
    pub task_comm: u32,
    pub mm_owner: u32,
    /// 1 when every offset was read: without it owners are not read and stay unknown.
    pub valid: u32,
}

/// The layout of `struct page` / `struct folio` on the running kernel, read from its BTF by
/// userspace and handed to the programs as one global: nothing about it is compiled in.
///
/// No `Default`: an all-zero layout has page size 0, which the programs multiply by. Build one
/// from BTF, or [`FolioLayout::unread`] with the real page size.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FolioLayout {
    /// Address of the kernel variable `vmemmap_base` (0: use `vmemmap_start`).
    pub vmemmap_base_addr: u64,
    /// The struct page array's start when the kernel has no `vmemmap_base` variable.
    pub vmemmap_start: u64,
    /// Address of the kernel variable holding the zero page's pfn (0: unknown).
    pub zero_pfn_addr: u64,
    /// `PAGE_SIZE`: where GUP dropped mmap_lock is located with it (never 0).
    pub page_size: u32,
    /// `sizeof(struct page)`: the stride of the struct page array.
    pub page_struct_size: u32,
    /// `page.flags`, `page.compound_head`, `folio._refcount`.
    pub flags_offset: u32,
    pub compound_head_offset: u32,
    pub refcount_offset: u32,
    /// Offset of the large-folio pin count from the folio (in the first tail page).
    pub pincount_offset: u32,
    /// Offset of the byte holding the folio order (valid for large folios only).
    pub order_offset: u32,
    /// Bit of `PG_head` in `page.flags`.
    pub head_bit: u32,
    /// How each grab function reports success, from its BTF return type: two bits
    /// ([`grab_rule`]) per function, at `2 * (hook id - TryGrabFolio)`.
    pub grab_rules: u32,
    /// 1 when userspace could read the layout: without it no folio is read at all.
    pub valid: u32,
}

impl FolioLayout {
    /// The layout when it could not be read: `valid` 0, so the programs read no folio and every
    /// offset stays 0. The page size does not come from BTF, so it is always the real one: the
    /// programs locate where GUP dropped mmap_lock with it, folio hooks or not. The one
    /// definition for both sides: the programs start with it, userspace sends it as its fallback.
    pub const fn unread(page_size: u32) -> FolioLayout {
        FolioLayout {
            vmemmap_base_addr: 0,
            vmemmap_start: 0,
            zero_pfn_addr: 0,
            page_size,
            page_struct_size: 0,
            flags_offset: 0,
            compound_head_offset: 0,
            refcount_offset: 0,
            pincount_offset: 0,
            order_offset: 0,
            head_bit: 0,
            grab_rules: 0,
            valid: 0,
        }
    }
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
    /// Release batches (`pages[]`, `folios[]`) cut short by the in-kernel walk bound.
    pub const TRUNCATED_WALKS: u32 = 4;
    /// Calls that looked in progress for over 10 s when the thread entered another: their
    /// return was lost (kretprobe misses), and they were forgotten.
    pub const STALE_CALLS: u32 = 5;
    /// Program runs in floor mode (`FLOOR` set): each program only bumped this and returned.
    pub const FLOOR_RUNS: u32 = 6;
    pub const COUNT: u32 = 7;
}

/// Names of the globals userspace sets before load (`EbpfLoader::set_global`).
pub mod global {
    /// `FOLL_PIN` of the running kernel (0x40000 up to 6.1, 0x80000 from 6.12), read from BTF.
    pub const FOLL_PIN: &str = "FOLL_PIN";
    /// A [`crate::FolioLayout`].
    pub const FOLIO_LAYOUT: &str = "FOLIO_LAYOUT";
    /// Bytes waiting in the ring buffer before the reader is woken (0: every event).
    pub const WAKEUP_BYTES: &str = "WAKEUP_BYTES";
    /// Offset of `success` in the mmap_lock_acquire_returned tracepoint record (0: unknown).
    pub const LOCK_SUCCESS_OFFSET: &str = "LOCK_SUCCESS_OFFSET";
    /// Only trace this tgid (0: every process).
    pub const FILTER_TGID: &str = "FILTER_TGID";
    /// Only trace tasks with this comm (all zero: every comm).
    pub const FILTER_COMM: &str = "FILTER_COMM";
    /// Only trace tasks in this cgroup v2 (0: every cgroup).
    pub const FILTER_CGROUP: &str = "FILTER_CGROUP";
    /// 1: release hooks ignore the filters (pins are released by other tasks too).
    pub const RELEASES_UNFILTERED: &str = "RELEASES_UNFILTERED";
    /// 1: only trace the processes in the `FOLLOWED` map (a process tree).
    pub const FILTER_FOLLOWED: &str = "FILTER_FOLLOWED";
    /// Offsets of `pid` and `clone_flags` in the task_newtask tracepoint record (0: unknown).
    pub const NEWTASK_PID_OFFSET: &str = "NEWTASK_PID_OFFSET";
    pub const NEWTASK_FLAGS_OFFSET: &str = "NEWTASK_FLAGS_OFFSET";
    /// A [`crate::MmOwnerLayout`].
    pub const MM_OWNER_LAYOUT: &str = "MM_OWNER_LAYOUT";
    /// Offsets of `succeeded`, `failed` and `reason` in the mm_migrate_pages record (0:
    /// unknown, and the tracepoint reports nothing).
    pub const MIGRATE_SUCCEEDED_OFFSET: &str = "MIGRATE_SUCCEEDED_OFFSET";
    pub const MIGRATE_FAILED_OFFSET: &str = "MIGRATE_FAILED_OFFSET";
    pub const MIGRATE_REASON_OFFSET: &str = "MIGRATE_REASON_OFFSET";
    /// Offsets of `start_pfn`, `end_pfn` and `fin_pfn` in the test_pages_isolated record.
    pub const ISOLATED_START_OFFSET: &str = "ISOLATED_START_OFFSET";
    pub const ISOLATED_END_OFFSET: &str = "ISOLATED_END_OFFSET";
    pub const ISOLATED_FIN_OFFSET: &str = "ISOLATED_FIN_OFFSET";
    /// 1: the floor (`gup-trace bench --modes floor`): every program only bumps
    /// `counter::FLOOR_RUNS` and returns, what the hooks cost with nothing done in them.
    pub const FLOOR: &str = "FLOOR";
    /// A [`crate::CmaOffsets`]: where the cma tracepoints' records keep their fields.
    pub const CMA_OFFSETS: &str = "CMA_OFFSETS";
}

/// Offsets of the fields the cma tracepoints' programs read, from the tracefs formats (0:
/// unknown, and that tracepoint reports nothing). `*_name` is the `__data_loc` word.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CmaOffsets {
    pub start_name: u32,
    pub retry_name: u32,
    pub retry_pfn: u32,
    pub retry_count: u32,
    pub finish_name: u32,
    pub finish_pfn: u32,
    pub finish_count: u32,
    pub finish_errorno: u32,
}

impl CmaOffsets {
    pub const UNKNOWN: CmaOffsets = CmaOffsets {
        start_name: 0,
        retry_name: 0,
        retry_pfn: 0,
        retry_count: 0,
        finish_name: 0,
        finish_pfn: 0,
        finish_count: 0,
        finish_errorno: 0,
    };
}

/// Indices into the `SETTINGS` array: switches userspace sets after the programs are attached
/// (unlike globals, which are fixed before load).
pub mod setting {
    /// 1: emit every mmap_lock release; 0: only the drops inside a traced GUP call.
    pub const MMAP_LOCK_ALL: u32 = 0;
    pub const COUNT: u32 = 1;
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for Event {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for FolioLayout {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for CmaOffsets {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for MmOwnerLayout {}

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

    #[test]
    fn a_cma_area_name_survives_the_path_fields() {
        let mut raw = [0u8; cma_event::AREA_NAME_LEN];
        raw[..9].copy_from_slice(b"hugetlb10");
        let (name, len) = CallPath::with_name(raw).name();
        assert_eq!(&name[..len], b"hugetlb10");
        let full = *b"0123456789abcdef";
        let (name, len) = CallPath::with_name(full).name();
        assert_eq!(&name[..len], &full);
    }
}
