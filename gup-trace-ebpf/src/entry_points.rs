//! The programs themselves: for every hooked kernel function, an fentry/fexit pair and a
//! kprobe/kretprobe pair that call the same helpers in `calls`. Userspace loads one pair per
//! function: fentry/fexit where the kernel allows it, kprobes otherwise. Program names are
//! `<kind>_<kernel symbol>`; the symbol itself is given at load/attach time.

// Program names repeat the kernel symbol, leading underscores included (`__get_user_pages`).
#![allow(non_snake_case)]

use aya_ebpf::{
    EbpfContext,
    helpers::bpf_probe_read_kernel,
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use gup_trace_common::Hook;

use crate::{
    calls,
    folio::{self, Released},
    migration,
};

/// Reads arguments from either flavour of entry context, always as plain integers.
trait EntryArgs {
    /// An integer argument.
    fn arg_u64(&self, n: usize) -> u64;
    /// A pointer argument, as an address to compute with and to read through.
    fn arg_addr(&self, n: usize) -> u64;
}

impl EntryArgs for FEntryContext {
    #[inline(always)]
    fn arg_u64(&self, n: usize) -> u64 {
        self.arg(n)
    }

    /// fentry types a pointer argument by its BTF, and the verifier then restricts it: no
    /// arithmetic but adding bounded offsets to a `struct page *` (`folio_of` masks it: "math
    /// between ptr_ pointer and register with unbounded min value is not allowed"), and no
    /// read at all of a `struct page **` before 7.x ("arg0 type PTR is not a struct"). Both made
    /// the release and grab hooks fall back to kprobes. Copying the argument's slot with
    /// `bpf_probe_read_kernel` yields an untyped scalar, as a kprobe's register is: both
    /// flavours then run the same code the same way through the verifier.
    #[inline(always)]
    fn arg_addr(&self, n: usize) -> u64 {
        let slot = unsafe { self.as_ptr().cast::<u64>().add(n) };
        unsafe { bpf_probe_read_kernel(slot) }.unwrap_or(0)
    }
}

impl EntryArgs for ProbeContext {
    #[inline(always)]
    fn arg_u64(&self, n: usize) -> u64 {
        self.arg(n).unwrap_or(0)
    }

    #[inline(always)]
    fn arg_addr(&self, n: usize) -> u64 {
        self.arg_u64(n)
    }
}

/// What a release function's arguments say it gives back: pages for its call event, folios
/// for its folio events.
#[derive(Clone, Copy)]
enum ReleaseArgs {
    /// `(page)` or `(folio)`: one pin.
    One,
    /// `(folio, npages)`: npages pins of one folio.
    FolioRefs,
    /// `(pages[] or folios[], n)`: one pin per entry.
    Array,
    /// `(first page, n, ...)`: n contiguous pages.
    Range,
    /// `gup_put_folio(folio, refs, flags)`: a pin release only when flags has FOLL_PIN.
    PutFolio,
}

#[inline(always)]
fn released<C: EntryArgs>(ctx: &C, args: ReleaseArgs) -> (u64, Released) {
    let ptr = ctx.arg_addr(0);
    let n = ctx.arg_u64(1) as u32;
    match args {
        ReleaseArgs::One => (1, Released::Folio { page: ptr, refs: 1 }),
        ReleaseArgs::FolioRefs => (n as u64, Released::Folio { page: ptr, refs: n }),
        ReleaseArgs::Array => (
            n as u64,
            Released::Array {
                entries: ptr,
                len: n,
            },
        ),
        ReleaseArgs::Range => (n as u64, Released::Range { first: ptr, len: n }),
        ReleaseArgs::PutFolio if ctx.arg_u64(2) as u32 & crate::maps::FOLL_PIN.load() != 0 => {
            (n as u64, Released::Folio { page: ptr, refs: n })
        }
        ReleaseArgs::PutFolio => (0, Released::Nothing),
    }
}

/// Where a GUP entry point keeps its arguments. The positions are the same in every kernel
/// from 5.10 to 7.x (arguments were only ever removed after these, e.g. `vmas`).
#[derive(Clone, Copy)]
struct GupArgPositions {
    start: usize,
    nr: usize,
    flags: Option<usize>,
    /// The `*_remote` entry points: the mm whose pages they take.
    mm: Option<usize>,
}

const fn at(start: usize, nr: usize, flags: usize) -> GupArgPositions {
    GupArgPositions {
        start,
        nr,
        flags: Some(flags),
        mm: None,
    }
}

/// `(mm, start, nr_pages, gup_flags, ...)`: the same in 6.1, 6.12 and 7.x (BTF).
const REMOTE: GupArgPositions = GupArgPositions {
    mm: Some(0),
    ..at(1, 2, 3)
};

#[inline(always)]
fn gup_args<C: EntryArgs>(ctx: &C, at: GupArgPositions) -> calls::GupArgs {
    calls::GupArgs {
        start: ctx.arg_u64(at.start),
        requested: ctx.arg_u64(at.nr) as u32 as u64,
        flags: at.flags.map_or(0, |n| ctx.arg_u64(n) as u32),
        mm: at.mm.map_or(0, |n| ctx.arg_addr(n)),
    }
}

/// GUP entry points return pages (or folios) obtained or a negative errno. Some return `int`,
/// some `long`: read the low 32 bits as `i32` in every case, which is exact for both (counts
/// stay far below 2^31) and avoids the undefined upper half of an `int` return register.
macro_rules! gup_functions {
    ($($symbol:ident => $hook:ident, $at:expr;)*) => { $(
        #[fentry]
        pub fn ${concat(fentry_, $symbol)}(ctx: FEntryContext) -> u32 {
            if crate::maps::floor() {
                return 0;
            }
            calls::gup_enter(&ctx, Hook::$hook, gup_args(&ctx, $at));
            0
        }
        #[fexit]
        pub fn ${concat(fexit_, $symbol)}(ctx: FExitContext) -> u32 {
            if crate::maps::floor() {
                return 0;
            }
            calls::gup_exit(&ctx, ctx.ret::<i32>().unwrap_or(0) as i64);
            0
        }
        #[kprobe]
        pub fn ${concat(kprobe_, $symbol)}(ctx: ProbeContext) -> u32 {
            if crate::maps::floor() {
                return 0;
            }
            calls::gup_enter(&ctx, Hook::$hook, gup_args(&ctx, $at));
            0
        }
        #[kretprobe]
        pub fn ${concat(kretprobe_, $symbol)}(ctx: RetProbeContext) -> u32 {
            if crate::maps::floor() {
                return 0;
            }
            calls::gup_exit(&ctx, ctx.ret::<i32>() as i64);
            0
        }
    )* };
}

macro_rules! release_functions {
    ($($symbol:ident => $hook:ident, $args:ident;)*) => { $(
        #[fentry]
        pub fn ${concat(fentry_, $symbol)}(ctx: FEntryContext) -> u32 {
            if crate::maps::floor() {
                return 0;
            }
            let (pages, released) = released(&ctx, ReleaseArgs::$args);
            calls::unpin_enter(Hook::$hook, pages, released);
            0
        }
        #[fexit]
        pub fn ${concat(fexit_, $symbol)}(ctx: FExitContext) -> u32 {
            if crate::maps::floor() {
                return 0;
            }
            calls::unpin_exit(&ctx);
            0
        }
        #[kprobe]
        pub fn ${concat(kprobe_, $symbol)}(ctx: ProbeContext) -> u32 {
            if crate::maps::floor() {
                return 0;
            }
            let (pages, released) = released(&ctx, ReleaseArgs::$args);
            calls::unpin_enter(Hook::$hook, pages, released);
            0
        }
        #[kretprobe]
        pub fn ${concat(kretprobe_, $symbol)}(ctx: RetProbeContext) -> u32 {
            if crate::maps::floor() {
                return 0;
            }
            calls::unpin_exit(&ctx);
            0
        }
    )* };
}

/// Where a grab function keeps its arguments.
#[derive(Clone, Copy)]
enum GrabArgs {
    /// `(page or folio, int refs, unsigned int flags)`
    RefsFlags,
    /// `(page, unsigned int flags)`: one reference.
    Flags,
    /// `(folio)`: one pin.
    OnePin,
    /// `(folio, int pins)`
    Pins,
}

#[inline(always)]
fn grab_args<C: EntryArgs>(ctx: &C, at: GrabArgs) -> (u64, u32, u32) {
    let pin = crate::maps::FOLL_PIN.load();
    let ptr = ctx.arg_addr(0);
    match at {
        GrabArgs::RefsFlags => (ptr, ctx.arg_u64(1) as u32, ctx.arg_u64(2) as u32),
        GrabArgs::Flags => (ptr, 1, ctx.arg_u64(1) as u32),
        GrabArgs::OnePin => (ptr, 1, pin),
        GrabArgs::Pins => (ptr, ctx.arg_u64(1) as u32, pin),
    }
}

/// Grab functions: leaves that take references on one folio. The return value says whether
/// they did; how depends on the kernel (see `grab_rule`), so it is passed on raw. The return
/// goes through `calls`, which counts the grab on the GUP call in progress.
macro_rules! grab_functions {
    ($($symbol:ident => $hook:ident, $at:expr;)*) => { $(
        #[fentry]
        pub fn ${concat(fentry_, $symbol)}(ctx: FEntryContext) -> u32 {
            if crate::maps::floor() {
                return 0;
            }
            let (page, refs, flags) = grab_args(&ctx, $at);
            folio::grab_enter(page, refs, flags);
            0
        }
        #[fexit]
        pub fn ${concat(fexit_, $symbol)}(ctx: FExitContext) -> u32 {
            if crate::maps::floor() {
                return 0;
            }
            calls::grab_exit(&ctx, Hook::$hook, ctx.ret::<u64>().unwrap_or(0));
            0
        }
        #[kprobe]
        pub fn ${concat(kprobe_, $symbol)}(ctx: ProbeContext) -> u32 {
            if crate::maps::floor() {
                return 0;
            }
            let (page, refs, flags) = grab_args(&ctx, $at);
            folio::grab_enter(page, refs, flags);
            0
        }
        #[kretprobe]
        pub fn ${concat(kretprobe_, $symbol)}(ctx: RetProbeContext) -> u32 {
            if crate::maps::floor() {
                return 0;
            }
            calls::grab_exit(&ctx, Hook::$hook, ctx.ret::<u64>());
            0
        }
    )* };
}

gup_functions! {
    // (start, nr_pages, gup_flags, pages, ...)
    pin_user_pages => PinUserPages, at(0, 1, 2);
    pin_user_pages_fast => PinUserPagesFast, at(0, 1, 2);
    pin_user_pages_fast_only => PinUserPagesFastOnly, at(0, 1, 2);
    get_user_pages => GetUserPages, at(0, 1, 2);
    get_user_pages_fast => GetUserPagesFast, at(0, 1, 2);
    get_user_pages_fast_only => GetUserPagesFastOnly, at(0, 1, 2);
    // (mm, start, nr_pages, gup_flags, pages, ...)
    pin_user_pages_remote => PinUserPagesRemote, REMOTE;
    get_user_pages_remote => GetUserPagesRemote, REMOTE;
    // (start, nr_pages, pages, gup_flags)
    pin_user_pages_unlocked => PinUserPagesUnlocked, at(0, 1, 3);
    get_user_pages_unlocked => GetUserPagesUnlocked, at(0, 1, 3);
    // (memfd, start, end, folios, max_folios, offset): no gup_flags.
    memfd_pin_folios => MemfdPinFolios, GupArgPositions { start: 1, nr: 4, flags: None, mm: None };
}

release_functions! {
    unpin_user_page => UnpinUserPage, One;
    unpin_user_pages => UnpinUserPages, Array;
    unpin_user_pages_dirty_lock => UnpinUserPagesDirtyLock, Array;
    unpin_user_page_range_dirty_lock => UnpinUserPageRangeDirtyLock, Range;
    unpin_user_folio => UnpinUserFolio, FolioRefs;
    unpin_folio => UnpinFolio, One;
    // unpin_folios(folios, nfolios) drops one pin per array entry.
    unpin_folios => UnpinFolios, Array;
    // A release of its own only outside the functions above, which call it: nesting decides.
    gup_put_folio => GupPutFolio, PutFolio;
}

grab_functions! {
    // 6.1-6.9: struct folio *(struct page *, int refs, unsigned int flags), the fast path's;
    // 6.10+: int (struct folio *, int refs, unsigned int flags), the slow path's.
    try_grab_folio => TryGrabFolio, GrabArgs::RefsFlags;
    // 6.10+: struct folio *(struct page *, int refs, unsigned int flags).
    try_grab_folio_fast => TryGrabFolioFast, GrabArgs::RefsFlags;
    // Up to 6.9: bool or int (struct page *, unsigned int flags).
    try_grab_page => TryGrabPage, GrabArgs::Flags;
    // 6.5+: void (struct folio *); 6.18+: int (struct folio *, int pins).
    folio_add_pin => FolioAddPin, GrabArgs::OnePin;
    folio_add_pins => FolioAddPins, GrabArgs::Pins;
}

// __get_user_pages(mm, start, nr_pages, gup_flags, pages, [vmas,] locked): the slow walk.
#[fentry]
pub fn fentry___get_user_pages(ctx: FEntryContext) -> u32 {
    if crate::maps::floor() {
        return 0;
    }
    calls::slow_walk_enter(ctx.arg_u64(1));
    0
}

#[fexit]
pub fn fexit___get_user_pages(_ctx: FExitContext) -> u32 {
    if crate::maps::floor() {
        return 0;
    }
    calls::slow_walk_exit();
    0
}

#[kprobe]
pub fn kprobe___get_user_pages(ctx: ProbeContext) -> u32 {
    if crate::maps::floor() {
        return 0;
    }
    calls::slow_walk_enter(ctx.arg_u64(1));
    0
}

#[kretprobe]
pub fn kretprobe___get_user_pages(_ctx: RetProbeContext) -> u32 {
    if crate::maps::floor() {
        return 0;
    }
    calls::slow_walk_exit();
    0
}

// offline_pages(start_pfn, nr_pages, zone, group): memory offlining, whose pfn range the
// migration and isolation tracepoints report about while it runs (see `migration`).
#[fentry]
pub fn fentry_offline_pages(ctx: FEntryContext) -> u32 {
    if crate::maps::floor() {
        return 0;
    }
    migration::offline_enter(ctx.arg_u64(0), ctx.arg_u64(1));
    0
}

#[fexit]
pub fn fexit_offline_pages(ctx: FExitContext) -> u32 {
    if crate::maps::floor() {
        return 0;
    }
    migration::offline_exit(&ctx, ctx.ret::<i32>().unwrap_or(0));
    0
}

#[kprobe]
pub fn kprobe_offline_pages(ctx: ProbeContext) -> u32 {
    if crate::maps::floor() {
        return 0;
    }
    migration::offline_enter(ctx.arg_u64(0), ctx.arg_u64(1));
    0
}

#[kretprobe]
pub fn kretprobe_offline_pages(ctx: RetProbeContext) -> u32 {
    if crate::maps::floor() {
        return 0;
    }
    migration::offline_exit(&ctx, ctx.ret::<i32>());
    0
}
