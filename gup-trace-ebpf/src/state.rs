//! What the per-thread maps hold (`THREADS`, `GRABS`, `RELEASES` in `maps`): the GUP and
//! release calls in progress on a thread, a grab between its entry and its return, and the
//! folios a release call drops. The types live here, below both the maps and the modules that
//! work on them (`calls`, `folio`), so that those depend on the maps and never the reverse.

use gup_trace_common::{
    COMM_LEN, CallPath, Event, FolioTransition, LockStats, NO_CALL, RELEASE_FOLIOS_MAX,
};

/// A thread's GUP and release calls in progress (`THREADS`), kept by `calls`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ThreadCalls {
    /// Nesting depth of GUP entry points (pin_user_pages*, get_user_pages*).
    pub gup_depth: u32,
    pub unpin_depth: u32,
    pub unpin_start_ns: u64,
    /// Pages the outermost unpin call releases (from its arguments at entry).
    pub unpin_pages: u64,
    /// The outermost unpin call's hook, or NO_CALL when it releases no pins.
    pub unpin_hook: u32,
    pub _pad: u32,
    pub gup: GupCall,
}

impl ThreadCalls {
    /// A thread inside no call.
    pub const IDLE: ThreadCalls = ThreadCalls {
        gup_depth: 0,
        unpin_depth: 0,
        unpin_start_ns: 0,
        unpin_pages: 0,
        unpin_hook: NO_CALL,
        _pad: 0,
        gup: GupCall::NONE,
    };
}

/// The process owning a GUP call's memory (see `owner`), as it goes into the call's events.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MmOwner {
    pub tgid: u32,
    /// `owner_bit` flags.
    pub bits: u32,
    pub comm: [u8; COMM_LEN],
}

impl MmOwner {
    pub const UNKNOWN: MmOwner = MmOwner {
        tgid: 0,
        bits: 0,
        comm: [0; COMM_LEN],
    };
}

/// The outermost GUP call in progress on a thread.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GupCall {
    pub start_ns: u64,
    /// Pages released while the call was in progress.
    pub released_in_pin: u64,
    /// The call's arguments, saved at entry for the event at its return.
    pub start: u64,
    pub requested: u64,
    pub flags: u32,
    pub stack_id: i32,
    pub hook: u32,
    /// Nesting depth of `__get_user_pages` (the slow walk) inside the call.
    pub slow_depth: u32,
    pub path: CallPath,
    /// The slow walk in progress: its start address and the pages it grabbed so far, which
    /// locate the page it was faulting in when it dropped mmap_lock.
    pub walk_start: u64,
    pub walk_refs: u64,
    pub lock: LockStats,
    /// mmap_lock correlation: when the wait began, when the lock was taken, when it was
    /// dropped (0: not in that state) and at which address.
    pub lock_wait_since: u64,
    pub lock_held_since: u64,
    pub lock_dropped_at: u64,
    pub lock_drop_addr: u64,
    /// Whose memory the call works on, read at its entry.
    pub owner: MmOwner,
}

impl GupCall {
    /// No GUP call in progress.
    pub const NONE: GupCall = GupCall {
        start_ns: 0,
        released_in_pin: 0,
        start: 0,
        requested: 0,
        flags: 0,
        stack_id: -1,
        hook: NO_CALL,
        slow_depth: 0,
        path: CallPath::ZERO,
        walk_start: 0,
        walk_refs: 0,
        lock: LockStats::ZERO,
        lock_wait_since: 0,
        lock_held_since: 0,
        lock_dropped_at: 0,
        lock_drop_addr: 0,
        owner: MmOwner::UNKNOWN,
    };
}

/// A folio's counts at one instant, and what kind of folio it is.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FolioCounts {
    pub refcount: i32,
    pub pincount: i32,
    /// `folio_bit::LARGE` / `ZERO_PAGE`.
    pub bits: u32,
    pub order: u32,
}

/// A grab between its entry and its return (`GRABS`), kept by `folio`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingGrab {
    pub folio: u64,
    pub refs: u32,
    pub flags: u32,
    pub before: FolioCounts,
}

/// One release call in progress (`RELEASES`), kept by `folio`: the folios it drops, in call
/// order, consecutive entries of one folio merged (the kernel merges them too, into one
/// `gup_put_folio`), with their counts at entry; at return the counts after, and the call's own
/// event in front of them. The whole thing then goes out as one ring-buffer record: `Event`
/// followed by `len` transitions.
#[repr(C)]
pub struct ReleaseBatch {
    pub len: u32,
    /// Array entries (or pages) walked; fewer than the call releases when the walk stopped.
    pub walked: u32,
    pub truncated: u32,
    pub _pad: u32,
    pub record: Event,
    pub folios: [FolioTransition; RELEASE_FOLIOS_MAX as usize],
}
