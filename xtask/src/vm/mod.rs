//! Booting a stock kernel in QEMU (TCG: KVM does not work here) with a throw-away busybox
//! initramfs, and reading what the guest printed on its serial console: the layer under every
//! task that runs a guest (vm-test, the leak scenarios, demo, bench, vm-boot, vm-run).
//!
//! The guest has no root file system: /init mounts the pseudo file systems the tracer needs,
//! runs the caller's shell script and powers off. The script reports by printing lines the
//! caller looks for (see [`Console::find`]); the host never trusts QEMU's exit alone.
//!
//! - `initramfs`: the image (busybox, the caller's files and their libraries, /init, the script).
//! - `qemu`: one boot, retried when the kernel dies before /init, with a scratch NVMe disk.
//! - `console`: the serial console, cleaned of terminal escapes, and the lines a script prints.

mod console;
mod initramfs;
mod qemu;

pub use console::{Console, EXIT_PREFIX, VERDICT_PREFIX, find_line};
pub use initramfs::build_initramfs;
pub use qemu::{Boot, boot, boot_logged};
