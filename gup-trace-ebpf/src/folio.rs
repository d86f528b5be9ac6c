//! Folios: finding a page's folio and reading its reference counts, with the offsets userspace
//! read from the running kernel's BTF (`FOLIO_LAYOUT`). Nothing about `struct page` is compiled
//! in: its layout moved in every release from 6.1 to 7.x.
//!
//! Grabs (`try_grab_folio*`, `try_grab_page`, `folio_add_pin(s)`) are leaves: their counts are
//! read at entry and at return. Releases are itemized at the outermost release call: its
//! `pages[]`/`folios[]` argument is walked at entry (bounded) and each folio's counts are read
//! again at its return. Why not `gup_put_folio` alone: from 6.18 it is inlined into
//! `unpin_user_folio`, so it misses the releases O_DIRECT and io_uring make.
//!
//! Below `calls`: a grab's event is handed back to it (`finish_grab`) to be counted on the GUP
//! call in progress, and `calls` starts and ends the release batches.

use aya_ebpf::{EbpfContext, helpers::bpf_probe_read_kernel};
use gup_trace_common::{
    Event, EventKind, FolioLayout, FolioTransition, Hook, RELEASE_FOLIOS_MAX, RELEASE_WALK_MAX,
    counter, folio_bit, grab_rule,
};

use crate::{
    maps::{
        EMPTY_BATCH, EVENTS, FOLIO_LAYOUT, FOLL_PIN, GRABS, RELEASES, Record, bump, current_task,
        emit, event, thread_key, wakeup_flag,
    },
    state::{FolioCounts, PendingGrab, ReleaseBatch},
};

/// A read of kernel memory. Failures are not counted here: a branch per read inside the bounded
/// walks would multiply the states the verifier explores (6.1's most of all).
#[inline(always)]
fn read<T>(addr: u64) -> Option<T> {
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

/// `page_folio()`: bit 0 of a tail page's `compound_head` is set, and the rest is its head's
/// address. From 7.0 (`compound_info`) the rest may instead be a mask to apply to the tail
/// page's own address (hugetlb with vmemmap optimization); a mask is all ones down to some
/// bit, which no struct page address is. A folio (a head page) resolves to itself.
#[inline(always)]
pub fn folio_of(page: u64, layout: &FolioLayout) -> u64 {
    match read::<u64>(page + layout.compound_head_offset as u64) {
        Some(info) if info & 1 == 1 => {
            let rest = info - 1;
            if rest | rest.wrapping_sub(1) == u64::MAX {
                page & rest
            } else {
                rest
            }
        }
        _ => page,
    }
}

/// All ones for a large folio (`PG_head` set), else zero: used as a mask rather than a branch,
/// because branches inside the bounded walks multiply the states the verifier explores.
#[inline(always)]
fn large_mask(folio: u64, layout: &FolioLayout) -> u32 {
    let flags = read::<u64>(folio + layout.flags_offset as u64).unwrap_or(0);
    let large = ((flags >> (layout.head_bit & 63)) & 1) as u32;
    0u32.wrapping_sub(large)
}

/// Counts and order of a folio. The pin count and order live in the first tail page, which a
/// small folio does not have: they are read anyway (the next struct page, always mapped) and
/// masked off.
#[inline(always)]
fn counts(folio: u64, layout: &FolioLayout) -> FolioCounts {
    let large = large_mask(folio, layout);
    let refcount = read::<i32>(folio + layout.refcount_offset as u64).unwrap_or(0);
    let pincount = read::<i32>(folio + layout.pincount_offset as u64).unwrap_or(0) as u32;
    let order = read::<u8>(folio + layout.order_offset as u64).unwrap_or(0) as u32;
    FolioCounts {
        refcount,
        pincount: (pincount & large) as i32,
        bits: folio_bit::LARGE & large,
        order: order & large,
    }
}

#[inline(always)]
fn pfn(folio: u64, layout: &FolioLayout) -> u64 {
    let base = if layout.vmemmap_base_addr != 0 {
        read::<u64>(layout.vmemmap_base_addr).unwrap_or(layout.vmemmap_start)
    } else {
        layout.vmemmap_start
    };
    let stride = layout.page_struct_size.max(1) as u64;
    folio.wrapping_sub(base) / stride
}

#[inline(always)]
fn zero_page_bit(pfn: u64, layout: &FolioLayout) -> u32 {
    if layout.zero_pfn_addr != 0 && read::<u64>(layout.zero_pfn_addr) == Some(pfn) {
        folio_bit::ZERO_PAGE
    } else {
        0
    }
}

#[inline(always)]
fn transition(
    folio: u64,
    refs: u32,
    bits: u32,
    before: &FolioCounts,
    layout: &FolioLayout,
) -> FolioTransition {
    let after = counts(folio, layout);
    let pfn = pfn(folio, layout);
    FolioTransition {
        folio,
        pfn,
        refs,
        bits: bits | before.bits | zero_page_bit(pfn, layout),
        order: before.order,
        refcount_before: before.refcount,
        refcount_after: after.refcount,
        pincount_before: before.pincount,
        pincount_after: after.pincount,
        _pad: 0,
    }
}

/// Entry of a grab: `page` may be a page or a folio (the `try_grab_folio` of 6.10+ takes a
/// folio, the older one a page).
#[inline(always)]
pub fn grab_enter(page: u64, refs: u32, flags: u32) {
    let Some((_, tid)) = current_task() else {
        return;
    };
    let layout = FOLIO_LAYOUT.load();
    if layout.valid == 0 {
        return;
    }
    let folio = folio_of(page, &layout);
    let pending = PendingGrab {
        folio,
        refs,
        flags,
        before: counts(folio, &layout),
    };
    if GRABS.insert(&thread_key(tid), &pending, 0).is_err() {
        bump(counter::TASK_MAP_FULL, 1);
    }
}

#[inline(always)]
fn grab_succeeded(hook: Hook, ret: u64, layout: &FolioLayout) -> bool {
    match grab_rule::of(layout.grab_rules, hook) {
        grab_rule::POINTER => ret != 0,
        grab_rule::STATUS => ret as u32 == 0,
        grab_rule::BOOL => ret as u8 != 0,
        _ => true,
    }
}

/// Ends the grab in progress on thread `key`: its folio event, or None when its entry was not
/// seen.
#[inline(always)]
pub fn finish_grab(key: u32, hook: Hook, ret: u64) -> Option<Record> {
    let Some(pending) = (unsafe { GRABS.get(&key) }).copied() else {
        bump(counter::UNMATCHED_EXITS, 1);
        return None;
    };
    let _ = GRABS.remove(&key);
    let layout = FOLIO_LAYOUT.load();
    let ok = grab_succeeded(hook, ret, &layout);
    let mut bits = if pending.flags & FOLL_PIN.load() != 0 {
        folio_bit::PIN
    } else {
        0
    };
    if !ok {
        bits |= folio_bit::FAILED;
    }
    let mut record = Record::new(EventKind::Folio, hook, 0);
    if ok {
        record.pages = pending.refs as u64;
    }
    record.folio = transition(pending.folio, pending.refs, bits, &pending.before, &layout);
    Some(record)
}

/// What an outermost release call gives back, from its arguments at entry.
#[derive(Clone, Copy)]
pub enum Released {
    /// Not a pin release (a FOLL_GET `gup_put_folio`).
    Nothing,
    /// `refs` pins of the folio holding `page`.
    Folio { page: u64, refs: u32 },
    /// One pin per entry of an array of page (or folio) pointers.
    Array { entries: u64, len: u32 },
    /// One pin per page of `len` contiguous struct pages from `first`.
    Range { first: u64, len: u32 },
}

/// Slot indices are masked with this: the verifier then knows every index is in bounds.
const SLOT_MASK: u32 = RELEASE_FOLIOS_MAX - 1;
const _: () = assert!(RELEASE_FOLIOS_MAX.is_power_of_two());

impl ReleaseBatch {
    /// Adds `refs` of `folio`; false when the batch is full.
    #[inline(always)]
    fn add(&mut self, folio: u64, refs: u32, layout: &FolioLayout) -> bool {
        let len = self.len;
        if len > 0 {
            let last = &mut self.folios[((len - 1) & SLOT_MASK) as usize];
            if last.folio == folio {
                last.refs += refs;
                return true;
            }
        }
        if len >= RELEASE_FOLIOS_MAX {
            return false;
        }
        let before = counts(folio, layout);
        let slot = &mut self.folios[(len & SLOT_MASK) as usize];
        slot.folio = folio;
        slot.refs = refs;
        slot.bits = folio_bit::PIN | folio_bit::RELEASE | before.bits;
        slot.order = before.order;
        slot.refcount_before = before.refcount;
        slot.pincount_before = before.pincount;
        self.len = len + 1;
        true
    }
}

/// Entry of an outermost release call: records each folio it will drop, with its counts now.
#[inline(always)]
pub fn release_enter(key: u32, released: Released) {
    if matches!(released, Released::Nothing) || FOLIO_LAYOUT.load().valid == 0 {
        return;
    }
    let Some(empty) = EMPTY_BATCH.get_ptr(0) else {
        return;
    };
    if RELEASES.insert(&key, unsafe { &*empty }, 0).is_err() {
        bump(counter::TASK_MAP_FULL, 1);
        return;
    }
    let Some(batch) = RELEASES.get_ptr_mut(&key) else {
        return;
    };
    let batch = unsafe { &mut *batch };
    let layout = FOLIO_LAYOUT.load();
    let complete = match released {
        Released::Nothing => true,
        Released::Folio { page, refs } => {
            batch.walked = refs;
            batch.add(folio_of(page, &layout), refs, &layout)
        }
        Released::Array { entries, len } => walk(batch, PageList::Array(entries), len, &layout),
        Released::Range { first, len } => walk(batch, PageList::Range(first), len, &layout),
    };
    if !complete {
        batch.truncated = 1;
        bump(counter::TRUNCATED_WALKS, 1);
    }
}

/// One pin per page: the `len` entries of an array of page (or folio) pointers, or `len`
/// contiguous struct pages. Pages of one folio in a row merge into one transition (a range over
/// a large folio becomes one folio with many references). The step is always one page, never a
/// folio's length: a data-dependent step would make the verifier track every path apart.
#[inline(always)]
fn walk(batch: &mut ReleaseBatch, pages: PageList, len: u32, layout: &FolioLayout) -> bool {
    for i in 0..RELEASE_WALK_MAX {
        if i >= len {
            return true;
        }
        let page = match pages {
            PageList::Array(entries) => match read::<u64>(entries + 8 * i as u64) {
                Some(page) => page,
                None => return false,
            },
            PageList::Range(first) => first + i as u64 * layout.page_struct_size as u64,
        };
        if !batch.add(folio_of(page, layout), 1, layout) {
            return false;
        }
        batch.walked = i + 1;
    }
    len <= RELEASE_WALK_MAX
}

#[derive(Clone, Copy)]
enum PageList {
    Array(u64),
    Range(u64),
}

/// Return of an outermost release call: the call's event `call` goes out with every folio's
/// transition behind it, in one record. Without a batch (not a pin release, or the map was
/// full) the call's event goes out alone.
#[inline(always)]
pub fn release_exit<C: EbpfContext>(ctx: &C, task: (u32, u32), key: u32, mut call: Record) {
    let Some(batch) = RELEASES.get_ptr_mut(&key) else {
        emit(ctx, task, call);
        return;
    };
    let batch = unsafe { &mut *batch };
    let layout = FOLIO_LAYOUT.load();
    let truncated = if batch.truncated != 0 {
        folio_bit::TRUNCATED
    } else {
        0
    };
    for i in 0..RELEASE_FOLIOS_MAX {
        if i >= batch.len {
            break;
        }
        let t = &mut batch.folios[(i & SLOT_MASK) as usize];
        let after = counts(t.folio, &layout);
        t.refcount_after = after.refcount;
        t.pincount_after = after.pincount;
        t.pfn = pfn(t.folio, &layout);
        t.bits |= truncated | zero_page_bit(t.pfn, &layout);
    }
    call.path.walked = batch.walked;
    batch.record = event(task, &call);
    let len = batch.len.min(RELEASE_FOLIOS_MAX) as usize;
    let size = size_of::<Event>() + len * size_of::<FolioTransition>();
    // SAFETY: `record` and `folios` are adjacent in the repr(C) map value, and `size` stops at
    // the end of `folios`.
    let bytes =
        unsafe { core::slice::from_raw_parts((&raw const batch.record).cast::<u8>(), size) };
    if EVENTS.output(bytes, wakeup_flag()).is_err() {
        bump(counter::LOST_EVENTS, 1);
    }
    let _ = RELEASES.remove(&key);
}
