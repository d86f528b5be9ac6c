//! gup-trace's kernel side: programs on the GUP entry points, the per-folio grab and release
//! functions, the slow walk and the mmap_lock tracepoints, feeding one ring buffer.
//!
//! Every GUP function gets both an fentry/fexit and a kprobe/kretprobe flavour; userspace loads
//! whichever the running kernel accepts (see `gup-trace/src/kernel.rs`).
#![no_std]
#![no_main]
// Program names are derived from the kernel symbol (`fentry_<symbol>`, ...); stable Rust cannot
// paste identifiers, and this crate builds with nightly anyway.
#![feature(macro_metavar_expr_concat)]

mod calls;
mod entry_points;
mod folio;
mod maps;
mod mmap_lock;
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
