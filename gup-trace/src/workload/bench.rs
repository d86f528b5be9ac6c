//! The workloads `gup-trace bench` times, untraced and traced (`commands::bench` runs the rounds
//! and the statistics). Each is set up once, then runs a given number of operations per round:
//! - `pin_unpin`: process_vm_readv of `--pin-pages` pages of a forked child, in a loop: each
//!   call pins the child's pages (`pin_user_pages_remote`) and unpins them. The buffer is small
//!   pages, one folio each.
//! - `o_direct_read`: 4 KiB O_DIRECT preads from the block device, walking through its first
//!   16 MiB; each read pins its page (6.1: takes a plain reference).
//! - `io_uring_read_fixed`: the same reads as IORING_OP_READ_FIXED into a buffer registered once
//!   before the rounds, queue depth 1: no pin per I/O, so tracing should cost it next to nothing.
//! - `uring_register_1024`: IORING_REGISTER_BUFFERS of a 1,024-page (small pages) buffer on a
//!   ring set up once, then IORING_UNREGISTER_BUFFERS: 1,024 FOLL_LONGTERM pins and releases
//!   in two calls.
//! - `uring_register_thp`: the same with one 2 MiB transparent huge page (one folio, 512
//!   pages); left out, with the reason on stderr, where THPs do not form.
//! - `fault_loop` and `fork_exit`: work that pins nothing, for what the mmap_lock and process
//!   hooks cost it: a write fault on a fresh anonymous page (the pages given back with
//!   MADV_DONTNEED every [`FAULT_PAGES`] faults), and fork + _exit + waitpid.
//!
//! The reads are CPU-bound only on a device that completes them inline: `null_blk` with
//! `irqmode=0` (`/dev/nullb0`), as `cargo xtask bench` sets up; on an emulated disk under
//! QEMU's instruction time the wait for the device is skipped or jumps to the next timer.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::child::{Child, VM_PATTERN, VmCopy, check_pattern, process_vm_copy};
use super::direct_io::{DirectTarget, direct_io_target};
use super::error::WorkloadError;
use super::huge_pages::{check_thp_backed, thp_size};
use super::memory::AnonBuf;
use super::sys::os_error;
use super::uring::register_unregister;
use crate::kernel::page_size;

/// Pages of the `uring_register_1024` buffer.
const REGISTER_PAGES: usize = 1024;

/// Pages the fault loop writes to before giving them back.
const FAULT_PAGES: usize = 256;

/// Size of one read.
const IO_BYTES: usize = 4096;
/// The reads walk through this much of the device, block after block, then start again.
const READ_SPAN: usize = 16 << 20;
/// The child's buffer in the pin loop has at least this many pages; calls walk through it.
const CHILD_PAGES: usize = 64;

/// A workload: set up once, then run for a given number of operations per round.
pub trait Workload: Send {
    fn name(&self) -> &'static str;
    fn description(&self) -> String;
    /// Runs `ops` operations and returns how long they took (nothing else is timed).
    fn run(&mut self, ops: u64) -> Result<Duration>;
}

/// The bench's workloads, in the order they run and are reported: the pin loop reads
/// `pin_pages` pages per call, the reads go to `device` (by default /dev/nvme0n1, /dev/vda or
/// /dev/sda, else a temporary file).
pub fn all(device: Option<&Path>, pin_pages: usize) -> Result<Vec<Box<dyn Workload>>> {
    let page = page_size();
    let mut all: Vec<Box<dyn Workload>> = vec![
        Box::new(PinUnpin::new(pin_pages, page)?),
        Box::new(DirectRead::new(device, page)?),
        Box::new(UringReadFixed::new(device, page)?),
        Box::new(UringRegister::small(page)?),
        Box::new(FaultLoop::new(page)?),
        Box::new(ForkExit),
    ];
    match UringRegister::thp(page) {
        Ok(w) => all.push(Box::new(w)),
        Err(WorkloadError::Unavailable(why)) => {
            eprintln!("bench: uring_register_thp left out: {why}")
        }
        Err(WorkloadError::Failed(e)) => return Err(e),
    }
    Ok(all)
}

// ---------------------------------------------------------------------------------------------
// pin_unpin: process_vm_readv from a child
// ---------------------------------------------------------------------------------------------

struct PinUnpin {
    pages: usize,
    slots: usize,
    local: Vec<u8>,
    // The child before its buffer: dropping it lets the child exit.
    child: Child,
    remote: AnonBuf,
    next: usize,
}

impl PinUnpin {
    fn new(pages: usize, page: usize) -> Result<PinUnpin> {
        let slots = CHILD_PAGES.div_ceil(pages);
        // Allocated and faulted in before fork: the same address in the child, which writes
        // its pattern into its own copies of the pages.
        let remote = AnonBuf::new(slots * pages, page)?;
        let child = Child::spawn(&remote, false)?;
        let mut w = PinUnpin {
            pages,
            slots,
            local: vec![0; pages * page],
            child,
            remote,
            next: 0,
        };
        w.read_slot(0)?;
        check_pattern(
            &w.local,
            VM_PATTERN,
            &format!("process_vm_readv(pid {})", w.child.pid),
        )?;
        Ok(w)
    }

    fn read_slot(&mut self, slot: usize) -> Result<()> {
        let len = self.local.len();
        let remote = self.remote.ptr.wrapping_add(slot * len);
        let n = process_vm_copy(VmCopy::Read, self.child.pid, &mut self.local, remote);
        if n < 0 {
            return Err(os_error(format!(
                "process_vm_readv(pid {}, {len} bytes): the pin/unpin loop needs it \
                 (CONFIG_CROSS_MEMORY_ATTACH, and a ptrace policy that lets root read its child)",
                self.child.pid
            )));
        }
        if n as usize != len {
            bail!(
                "process_vm_readv(pid {}) copied {n} of {len} bytes",
                self.child.pid
            );
        }
        Ok(())
    }
}

impl Workload for PinUnpin {
    fn name(&self) -> &'static str {
        "pin_unpin"
    }

    fn description(&self) -> String {
        format!(
            "process_vm_readv of {} page(s) of a child per call: pin_user_pages_remote + unpin",
            self.pages
        )
    }

    fn run(&mut self, ops: u64) -> Result<Duration> {
        let started = Instant::now();
        for _ in 0..ops {
            self.read_slot(self.next)?;
            self.next = (self.next + 1) % self.slots;
        }
        Ok(started.elapsed())
    }
}

// ---------------------------------------------------------------------------------------------
// o_direct_read and io_uring_read_fixed: 4 KiB reads from the block device
// ---------------------------------------------------------------------------------------------

/// The O_DIRECT target both read workloads use, with the bench's wording on failure.
fn read_target(device: Option<&Path>) -> Result<DirectTarget> {
    direct_io_target(device, READ_SPAN).map_err(|e| match e {
        WorkloadError::Unavailable(why) => anyhow!(
            "no target for the O_DIRECT read workloads: {why}; give a block device (or a file \
             of at least {} MiB on a disk file system) with --device",
            READ_SPAN >> 20
        ),
        WorkloadError::Failed(e) => e,
    })
}

/// Offset of the `i`th read: block after block through [`READ_SPAN`].
fn read_offset(i: u64) -> u64 {
    let blocks = (READ_SPAN / IO_BYTES) as u64;
    (i % blocks) * IO_BYTES as u64
}

struct DirectRead {
    target: DirectTarget,
    buf: AnonBuf,
    next: u64,
}

impl DirectRead {
    fn new(device: Option<&Path>, page: usize) -> Result<DirectRead> {
        Ok(DirectRead {
            target: read_target(device)?,
            buf: AnonBuf::new(IO_BYTES.div_ceil(page), page)?,
            next: 0,
        })
    }
}

impl Workload for DirectRead {
    fn name(&self) -> &'static str {
        "o_direct_read"
    }

    fn description(&self) -> String {
        format!("4 KiB O_DIRECT pread from {}", self.target.what)
    }

    fn run(&mut self, ops: u64) -> Result<Duration> {
        let started = Instant::now();
        for _ in 0..ops {
            let off = read_offset(self.next);
            // SAFETY: buf holds at least IO_BYTES bytes and outlives the call.
            let n = unsafe { self.target.pread(self.buf.ptr, IO_BYTES, off) }?;
            if n != IO_BYTES {
                return Err(self.target.short_read(IO_BYTES, off, n));
            }
            self.next += 1;
        }
        Ok(started.elapsed())
    }
}

struct UringReadFixed {
    // Dropped first: the ring, then the file and the buffer it used.
    ring: io_uring::IoUring,
    target: DirectTarget,
    buf: AnonBuf,
    next: u64,
}

impl UringReadFixed {
    fn new(device: Option<&Path>, page: usize) -> Result<UringReadFixed> {
        let target = read_target(device)?;
        let buf = AnonBuf::new(IO_BYTES.div_ceil(page), page)?;
        let ring = io_uring::IoUring::new(4).context(
            "io_uring_setup(4 entries) for the io_uring_read_fixed workload (needs \
             CONFIG_IO_URING and kernel.io_uring_disabled=0)",
        )?;
        let iov = libc::iovec {
            iov_base: buf.ptr.cast(),
            iov_len: IO_BYTES,
        };
        // SAFETY: the iovec describes `buf`, which outlives the ring (see the field order and
        // Drop below).
        unsafe { ring.submitter().register_buffers(&[iov]) }
            .context("io_uring_register(IORING_REGISTER_BUFFERS, one 4 KiB buffer)")?;
        Ok(UringReadFixed {
            ring,
            target,
            buf,
            next: 0,
        })
    }
}

impl Drop for UringReadFixed {
    fn drop(&mut self) {
        // Unpins the buffer now rather than in the kernel's ring teardown work, later.
        let _ = self.ring.submitter().unregister_buffers();
    }
}

impl Workload for UringReadFixed {
    fn name(&self) -> &'static str {
        "io_uring_read_fixed"
    }

    fn description(&self) -> String {
        format!(
            "4 KiB IORING_OP_READ_FIXED (registered buffer, queue depth 1) from {}",
            self.target.what
        )
    }

    fn run(&mut self, ops: u64) -> Result<Duration> {
        use io_uring::{opcode, types};
        use std::os::fd::AsRawFd as _;
        let fd = types::Fd(self.target.fd.as_raw_fd());
        let started = Instant::now();
        for _ in 0..ops {
            let off = read_offset(self.next);
            self.next += 1;
            let sqe = opcode::ReadFixed::new(fd, self.buf.ptr, IO_BYTES as u32, 0)
                .offset(off)
                .build()
                .user_data(self.next);
            // SAFETY: the buffer is registered as index 0 and stays mapped while the ring lives;
            // the read completes before the next one is queued.
            unsafe { self.ring.submission().push(&sqe) }
                .map_err(|_| anyhow!("io_uring submission queue full with one read queued"))?;
            loop {
                match self.ring.submit_and_wait(1) {
                    Ok(_) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(anyhow::Error::new(e).context("io_uring_enter")),
                }
            }
            let cqe = self
                .ring
                .completion()
                .next()
                .ok_or_else(|| anyhow!("io_uring_enter returned without a completion"))?;
            if cqe.result() != IO_BYTES as i32 {
                let what = if cqe.result() < 0 {
                    std::io::Error::from_raw_os_error(-cqe.result()).to_string()
                } else {
                    format!("{} bytes", cqe.result())
                };
                bail!(
                    "IORING_OP_READ_FIXED of {IO_BYTES} bytes at offset {off} from {}: {what}",
                    self.target.what
                );
            }
        }
        Ok(started.elapsed())
    }
}

// ---------------------------------------------------------------------------------------------
// uring_register_1024 and uring_register_thp: fixed-buffer registration and unregistration
// ---------------------------------------------------------------------------------------------

struct UringRegister {
    name: &'static str,
    what: String,
    // Dropped first: the ring, then the buffer.
    ring: io_uring::IoUring,
    buf: AnonBuf,
    pages: usize,
}

impl UringRegister {
    fn new(name: &'static str, what: String, buf: AnonBuf, page: usize) -> Result<UringRegister> {
        let ring = io_uring::IoUring::new(4).with_context(|| {
            format!(
                "io_uring_setup(4 entries) for the {name} workload (needs CONFIG_IO_URING and \
                 kernel.io_uring_disabled=0)"
            )
        })?;
        let pages = buf.len / page;
        Ok(UringRegister {
            name,
            what,
            ring,
            buf,
            pages,
        })
    }

    /// [`REGISTER_PAGES`] small pages.
    fn small(page: usize) -> Result<UringRegister> {
        UringRegister::new(
            "uring_register_1024",
            format!("{REGISTER_PAGES} small pages"),
            AnonBuf::new(REGISTER_PAGES, page)?,
            page,
        )
    }

    /// One PMD-sized transparent huge page.
    fn thp(page: usize) -> Result<UringRegister, WorkloadError> {
        let hp = thp_size(page)?;
        let buf = AnonBuf::thp(hp, hp, page)?;
        check_thp_backed(&buf)?;
        Ok(UringRegister::new(
            "uring_register_thp",
            format!("one {} KiB transparent huge page", hp >> 10),
            buf,
            page,
        )?)
    }
}

impl Workload for UringRegister {
    fn name(&self) -> &'static str {
        self.name
    }

    fn description(&self) -> String {
        format!(
            "IORING_REGISTER_BUFFERS + IORING_UNREGISTER_BUFFERS of {} on one ring",
            self.what
        )
    }

    fn run(&mut self, ops: u64) -> Result<Duration> {
        let started = Instant::now();
        for _ in 0..ops {
            register_unregister(&self.ring, &self.buf, self.pages)?;
        }
        Ok(started.elapsed())
    }
}

// ---------------------------------------------------------------------------------------------
// fault_loop and fork_exit: work that pins nothing
// ---------------------------------------------------------------------------------------------

struct FaultLoop {
    buf: AnonBuf,
    page: usize,
    next: usize,
}

impl FaultLoop {
    fn new(page: usize) -> Result<FaultLoop> {
        let buf = AnonBuf::untouched(FAULT_PAGES, page)?;
        Ok(FaultLoop { buf, page, next: 0 })
    }
}

impl Workload for FaultLoop {
    fn name(&self) -> &'static str {
        "fault_loop"
    }

    fn description(&self) -> String {
        format!(
            "a write fault on a fresh anonymous small page; MADV_DONTNEED of the {FAULT_PAGES} \
             pages after every {FAULT_PAGES} faults"
        )
    }

    fn run(&mut self, ops: u64) -> Result<Duration> {
        let started = Instant::now();
        for _ in 0..ops {
            // SAFETY: next < FAULT_PAGES, so the byte lies inside the buffer.
            unsafe { self.buf.ptr.add(self.next * self.page).write_volatile(1) };
            self.next += 1;
            if self.next == FAULT_PAGES {
                self.next = 0;
                // SAFETY: the range is the buffer's own mapping.
                if unsafe { libc::madvise(self.buf.ptr.cast(), self.buf.len, libc::MADV_DONTNEED) }
                    != 0
                {
                    return Err(os_error(format!(
                        "madvise({} bytes, MADV_DONTNEED)",
                        self.buf.len
                    )));
                }
            }
        }
        Ok(started.elapsed())
    }
}

struct ForkExit;

impl Workload for ForkExit {
    fn name(&self) -> &'static str {
        "fork_exit"
    }

    fn description(&self) -> String {
        "fork, the child _exit(0)s at once, waitpid".into()
    }

    fn run(&mut self, ops: u64) -> Result<Duration> {
        let started = Instant::now();
        for _ in 0..ops {
            // SAFETY: the child calls only _exit, which is async-signal-safe.
            let pid = unsafe { libc::fork() };
            if pid < 0 {
                return Err(os_error("fork for the fork_exit workload"));
            }
            if pid == 0 {
                // SAFETY: ends the child at once, without running the parent's destructors.
                unsafe { libc::_exit(0) };
            }
            let mut status = 0;
            // SAFETY: waits for the child just forked; status is a valid out pointer.
            if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
                return Err(os_error(format!(
                    "waitpid({pid}) for the fork_exit workload"
                )));
            }
        }
        Ok(started.elapsed())
    }
}
