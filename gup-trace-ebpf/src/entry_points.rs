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

/// Pin entry points return pages (or folios) pinned or a negative errno. Some return `int`,
/// some `long`: read the low 32 bits as `i32` in every case, which is exact for both (counts
/// stay far below 2^31) and avoids the undefined upper half of an `int` return register.
macro_rules! pin_functions {
    ($($symbol:ident => $hook:ident),* $(,)?) => { $(
        #[fentry]
        pub fn ${concat(fentry_, $symbol)}(_ctx: FEntryContext) -> u32 {
            calls::pin_enter(Hook::$hook);
            0
        }
        #[fexit]
        pub fn ${concat(fexit_, $symbol)}(ctx: FExitContext) -> u32 {
            calls::pin_exit(&ctx, ctx.ret::<i32>().unwrap_or(0) as i64);
            0
        }
        #[kprobe]
        pub fn ${concat(kprobe_, $symbol)}(_ctx: ProbeContext) -> u32 {
            calls::pin_enter(Hook::$hook);
            0
        }
        #[kretprobe]
        pub fn ${concat(kretprobe_, $symbol)}(ctx: RetProbeContext) -> u32 {
            calls::pin_exit(&ctx, ctx.ret::<i32>() as i64);
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

pin_functions! {
    pin_user_pages => PinUserPages,
    pin_user_pages_fast => PinUserPagesFast,
    pin_user_pages_fast_only => PinUserPagesFastOnly,
    pin_user_pages_remote => PinUserPagesRemote,
    pin_user_pages_unlocked => PinUserPagesUnlocked,
    memfd_pin_folios => MemfdPinFolios,
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
