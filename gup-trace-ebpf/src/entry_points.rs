//! The programs themselves: for every hooked kernel function, an fentry/fexit pair and a
//! kprobe/kretprobe pair that call the same helpers in `calls`. Userspace loads one pair per
//! function: fentry/fexit where the kernel allows it, kprobes otherwise. Program names are
//! `<kind>_<kernel symbol>`; the symbol itself is given at load/attach time.

use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use gup_trace_common::Hook;

use crate::calls;

/// Reads an integer argument from either flavour of entry context.
trait EntryArgs {
    fn arg_u64(&self, n: usize) -> u64;
}

impl EntryArgs for FEntryContext {
    #[inline(always)]
    fn arg_u64(&self, n: usize) -> u64 {
        self.arg(n)
    }
}

impl EntryArgs for ProbeContext {
    #[inline(always)]
    fn arg_u64(&self, n: usize) -> u64 {
        self.arg(n).unwrap_or(0)
    }
}

/// Pages an unpin call releases: a fixed count or one of its arguments.
#[derive(Clone, Copy)]
enum PageCount {
    One,
    Arg(usize),
}

#[inline(always)]
fn pages<C: EntryArgs>(ctx: &C, count: PageCount) -> u64 {
    match count {
        PageCount::One => 1,
        PageCount::Arg(n) => ctx.arg_u64(n),
    }
}

/// Where a GUP entry point keeps its arguments. The positions are the same in every kernel
/// from 5.10 to 7.x (arguments were only ever removed after these, e.g. `vmas`).
#[derive(Clone, Copy)]
struct GupArgPositions {
    start: usize,
    nr: usize,
    flags: Option<usize>,
}

const fn at(start: usize, nr: usize, flags: usize) -> GupArgPositions {
    GupArgPositions {
        start,
        nr,
        flags: Some(flags),
    }
}

#[inline(always)]
fn gup_args<C: EntryArgs>(ctx: &C, at: GupArgPositions) -> calls::GupArgs {
    calls::GupArgs {
        start: ctx.arg_u64(at.start),
        requested: ctx.arg_u64(at.nr) as u32 as u64,
        flags: at.flags.map_or(0, |n| ctx.arg_u64(n) as u32),
    }
}

/// GUP entry points return pages (or folios) obtained or a negative errno. Some return `int`,
/// some `long`: read the low 32 bits as `i32` in every case, which is exact for both (counts
/// stay far below 2^31) and avoids the undefined upper half of an `int` return register.
macro_rules! gup_functions {
    ($($symbol:ident => $hook:ident, $at:expr;)*) => { $(
        #[fentry]
        pub fn ${concat(fentry_, $symbol)}(ctx: FEntryContext) -> u32 {
            calls::gup_enter(&ctx, Hook::$hook, gup_args(&ctx, $at));
            0
        }
        #[fexit]
        pub fn ${concat(fexit_, $symbol)}(ctx: FExitContext) -> u32 {
            calls::gup_exit(&ctx, ctx.ret::<i32>().unwrap_or(0) as i64);
            0
        }
        #[kprobe]
        pub fn ${concat(kprobe_, $symbol)}(ctx: ProbeContext) -> u32 {
            calls::gup_enter(&ctx, Hook::$hook, gup_args(&ctx, $at));
            0
        }
        #[kretprobe]
        pub fn ${concat(kretprobe_, $symbol)}(ctx: RetProbeContext) -> u32 {
            calls::gup_exit(&ctx, ctx.ret::<i32>() as i64);
            0
        }
    )* };
}

macro_rules! unpin_functions {
    ($($symbol:ident => $hook:ident, $count:expr;)*) => { $(
        #[fentry]
        pub fn ${concat(fentry_, $symbol)}(ctx: FEntryContext) -> u32 {
            calls::unpin_enter(Hook::$hook, pages(&ctx, $count));
            0
        }
        #[fexit]
        pub fn ${concat(fexit_, $symbol)}(ctx: FExitContext) -> u32 {
            calls::unpin_exit(&ctx);
            0
        }
        #[kprobe]
        pub fn ${concat(kprobe_, $symbol)}(ctx: ProbeContext) -> u32 {
            calls::unpin_enter(Hook::$hook, pages(&ctx, $count));
            0
        }
        #[kretprobe]
        pub fn ${concat(kretprobe_, $symbol)}(ctx: RetProbeContext) -> u32 {
            calls::unpin_exit(&ctx);
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
    pin_user_pages_remote => PinUserPagesRemote, at(1, 2, 3);
    get_user_pages_remote => GetUserPagesRemote, at(1, 2, 3);
    // (start, nr_pages, pages, gup_flags)
    pin_user_pages_unlocked => PinUserPagesUnlocked, at(0, 1, 3);
    get_user_pages_unlocked => GetUserPagesUnlocked, at(0, 1, 3);
    // (memfd, start, end, folios, max_folios, offset): no gup_flags.
    memfd_pin_folios => MemfdPinFolios, GupArgPositions { start: 1, nr: 4, flags: None };
}

unpin_functions! {
    unpin_user_page => UnpinUserPage, PageCount::One;
    unpin_user_pages => UnpinUserPages, PageCount::Arg(1);
    unpin_user_pages_dirty_lock => UnpinUserPagesDirtyLock, PageCount::Arg(1);
    unpin_user_page_range_dirty_lock => UnpinUserPageRangeDirtyLock, PageCount::Arg(1);
    unpin_user_folio => UnpinUserFolio, PageCount::Arg(1);
    unpin_folio => UnpinFolio, PageCount::One;
    // unpin_folios(folios, nfolios) drops one pin per array entry.
    unpin_folios => UnpinFolios, PageCount::Arg(1);
}

// gup_put_folio(folio, refs, flags) is a leaf: nothing we track nests inside it, so it needs no
// exit program.
#[fentry]
pub fn fentry_gup_put_folio(ctx: FEntryContext) -> u32 {
    calls::put_folio(&ctx, ctx.arg_u64(1) as u32 as u64, ctx.arg_u64(2) as u32);
    0
}

#[kprobe]
pub fn kprobe_gup_put_folio(ctx: ProbeContext) -> u32 {
    calls::put_folio(&ctx, ctx.arg_u64(1) as u32 as u64, ctx.arg_u64(2) as u32);
    0
}
