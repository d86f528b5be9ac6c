//! gup-trace's kernel side: programs on the GUP entry points, the per-folio grab and release
//! functions, the slow walk, and the mmap_lock and process tracepoints, feeding one ring buffer.
//!
//! Every hooked kernel function gets both an fentry/fexit and a kprobe/kretprobe flavour;
//! userspace loads whichever the running kernel accepts (see `gup-trace/src/kernel/mod.rs`).
//!
//! Modules, each using only the ones below it:
//! - `entry_points`: the fentry/fexit/kprobe/kretprobe programs, one table row per hooked
//!   function; they read the arguments and call `calls` and `folio`.
//! - `mmap_lock`, `process`: the tracepoint programs (mmap_lock correlated with the GUP call
//!   in progress through `calls`; process exits and forks).
//! - `owner`: whose memory a GUP call works on (the mm's owner), and whether that owner passes
//!   the filters.
//! - `migration`: what pins block: the migrate and page_isolation tracepoints and memory
//!   offlining (called by `entry_points` for `offline_pages`).
//! - `cma`: what pins block in CMA allocations: the cma tracepoints (busy ranges, ends).
//! - `calls`: per-thread nesting of GUP and release calls, the call events, mmap_lock
//!   correlation.
//! - `folio`: finding a page's folio and reading its counts with the layout from userspace;
//!   grab transitions and release batches.
//! - `maps`: the maps, the load-time globals, the filters, and the two ways out (events and
//!   counters).
//! - `state`: what the per-thread maps hold.
#![no_std]
#![no_main]
// Program names are derived from the kernel symbol (`fentry_<symbol>`, ...); stable Rust cannot
// paste identifiers, and this crate builds with nightly anyway.
#![feature(macro_metavar_expr_concat)]

mod calls;
mod cma;
mod entry_points;
mod folio;
mod maps;
mod migration;
mod mmap_lock;
mod owner;
mod process;
mod state;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
