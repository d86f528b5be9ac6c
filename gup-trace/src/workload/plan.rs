//! Built-in pin workload run by `gup-trace selftest` while tracing.
//!
//! Each step makes the kernel take references on a known number of user pages and release them
//! again before the step returns. All steps but one take FOLL_PIN pins, so a tracer (and the
//! kernel's own `/proc/vmstat` counters `nr_foll_pin_acquired` / `nr_foll_pin_released`)
//! should see exactly `StepReport::pages` acquisitions and as many releases per pinning step
//! that ran ([`StepReport::pins`]); the last step takes plain FOLL_GET references, which move
//! those counters by 0:
//!
//! 1. `o_direct_read`: O_DIRECT read into freshly faulted private anonymous memory
//!    (block layer, `iov_iter_extract_pages` -> `pin_user_pages_fast`). Block O_DIRECT pins
//!    with FOLL_PIN on kernels newer than 6.1; 6.1 and older take plain references (FOLL_GET),
//!    which the vmstat pin counters do not see.
//! 2. `io_uring_register_buffers`: IORING_REGISTER_BUFFERS + IORING_UNREGISTER_BUFFERS of small
//!    pages (`io_pin_pages` -> `pin_user_pages_fast(FOLL_WRITE | FOLL_LONGTERM)`).
//! 3. `io_uring_buffers_thp`: the same on a buffer of PMD-sized transparent huge pages (large
//!    anonymous folios: pins go to `_pincount`). Skipped unless every huge page really formed.
//! 4. `io_uring_buffers_hugetlb`: the same on 2 MiB hugetlb pages (`MAP_HUGETLB`); as root
//!    the 2 MiB pool is grown for the step when it lacks free pages and shrunk back afterwards.
//! 5. `process_vm_readv`: read a forked child's buffer (`pin_user_pages_remote`).
//! 6. `process_vm_writev`: write a forked child's buffer (`pin_user_pages_remote(FOLL_WRITE)`);
//!    the child checks what arrived (a read-back through the kernel would pin again).
//! 7. `proc_pid_mem_read`: pread of a forked child's buffer through `/proc/<pid>/mem`
//!    (`access_remote_vm` -> `get_user_pages_remote`, one page at a time): FOLL_GET references,
//!    not pins. `pages` counts the pages read; vmstat's pin counters move by 0.
//! 8. `o_direct_read_cold_file_mmap`: O_DIRECT read (from the same target as step 1) into a
//!    MAP_PRIVATE mapping of a part of that target that is not in the page cache. GUP's write
//!    fault on such a page is a major fault: `filemap_fault` starts the read, releases mmap_lock
//!    (`maybe_unlock_mmap_for_io` / `lock_folio_maybe_drop_mmap`) and returns VM_FAULT_RETRY,
//!    and GUP takes the lock again and retries. The fault may drop the lock only because the
//!    block layer's GUP entry passes a `locked` pointer down (`get_user_pages_fast` ->
//!    `get_user_pages_unlocked` up to 6.1; `pin_user_pages_fast` -> `__gup_longterm_locked`
//!    with FOLL_UNLOCKABLE from 6.3). Calls without one (`pin_user_pages`, `get_user_pages`
//!    with the lock held by the caller, `/proc/<pid>/mem`) never drop it. `MADV_RANDOM` turns
//!    off read-around, so (nearly) every page's fault drops the lock once.
//! 9. `process_vm_readv_zero_page`: process_vm_readv of this process's own *untouched*
//!    anonymous memory (`pin_user_pages_remote`, FOLL_PIN without FOLL_WRITE). The read fault
//!    maps the shared zero page, and GUP pins that. Since 6.5 ("mm: Don't pin ZERO_PAGE in
//!    pin_user_pages()") the kernel takes no pin on the zero page and leaves vmstat alone, on
//!    the pin and on the release; older mainline kernels pin and count it like any page.
//!    Debian's 6.1.0-56 (6.1.192) was measured to skip it too.
//! 10. `legacy_direct_io_read`: O_DIRECT read of a file on a FAT file system (only when a
//!     directory on one is given), which goes through the legacy `fs/direct-io.c` instead of
//!     iomap or the block device's own path. From 6.5 it pins the user pages
//!     (`iov_iter_extract_pages`), and while it builds bios it takes an extra pin on each page
//!     with `folio_add_pin` (`dio_pin_page`/`dio_send_cur_page`) and drops it with
//!     `unpin_user_page`: vmstat counts those releases but not those acquisitions. This is the
//!     only out-of-line caller of `folio_add_pin` in the 6.12, 6.18 and 7.3 Debian kernels
//!     (their `memfd_pin_folios` inlines it; io_uring does not call it), and nothing built in
//!     calls `folio_add_pins` (iommufd). Up to 6.4 it takes plain references.
//!
//! "Pages" are kernel pages (`sysconf(_SC_PAGESIZE)`, 4 KiB on x86-64). All buffers but step
//! 9's are private anonymous memory written to before use, so no page is the shared zero page.
//! Small-page buffers are marked `MADV_NOHUGEPAGE` (small folios, one pin per page; for step 9
//! also the small zero page, not the huge one).
//!
//! Huge-page steps count every small page of the buffer, because that is what the kernel
//! counts: io_uring pins the buffer through one page pointer per small page, so a 2 MiB folio
//! adds 512 to `nr_foll_pin_acquired`. Kernels that coalesce huge-page buffers into one bvec
//! per folio (6.18 measured: a 4 MiB buffer gave +1024 acquired, +1022 released at
//! registration, +2 released at unregistration) drop all but one pin per folio while
//! registering (`unpin_user_folio(folio, 511)`) and the last one when unregistering
//! (`unpin_user_folio(folio, 1)`), so acquisitions and releases each still equal `pages`.
//! Kernels that do not coalesce pin and unpin page by page: the same totals.
//!
//! Caveats for exact counting:
//! - FOLL_LONGTERM (io_uring) pins of pages in ZONE_MOVABLE or CMA are migrated first
//!   (unpin, migrate, repin), which adds extra acquire/release pairs.
//! - O_DIRECT on file systems that do not go through the block layer (NFS, FUSE, 9p, ...)
//!   may take references instead of pins. tmpfs accepts O_DIRECT from 6.6 on but copies
//!   through the page cache without pinning, so a tmpfs target is skipped.
//! - `folio_add_pin` / `folio_add_pins` (legacy fs/direct-io.c, iommufd) add pins without
//!   touching `nr_foll_pin_acquired`; their release is counted. Only step 10 goes through them.
//! - Zero-page pins (step 9) are not counted by vmstat from 6.5 on, pin or release.
//!
//! Everything here blocks; from an async runtime call [`run`] via `spawn_blocking`.

use std::path::PathBuf;

use anyhow::Result;

use super::child::VmCopy;
use super::error::{Outcome, WorkloadError};
use super::steps::{
    direct_io_step, legacy_dio_step, lock_drop_step, proc_mem_step, uring_hugetlb_step, uring_step,
    uring_thp_step, vm_copy_step, zero_page_step,
};
use crate::kernel::page_size;

pub const STEP_DIRECT_IO: &str = "o_direct_read";
pub const STEP_URING: &str = "io_uring_register_buffers";
pub const STEP_URING_THP: &str = "io_uring_buffers_thp";
pub const STEP_URING_HUGETLB: &str = "io_uring_buffers_hugetlb";
pub const STEP_VM_READV: &str = "process_vm_readv";
pub const STEP_VM_WRITEV: &str = "process_vm_writev";
pub const STEP_PROC_MEM: &str = "proc_pid_mem_read";
pub const STEP_LOCK_DROP: &str = "o_direct_read_cold_file_mmap";
pub const STEP_ZERO_PAGE: &str = "process_vm_readv_zero_page";
pub const STEP_LEGACY_DIO: &str = "legacy_direct_io_read";

/// Steps that take plain references (FOLL_GET) instead of pins: vmstat's pin counters do not
/// move for them, and a tracer should see them as gets, not pins.
pub const REFERENCE_STEPS: [&str; 1] = [STEP_PROC_MEM];

#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    /// O_DIRECT target: a block device or regular file (read only, must hold enough data), or
    /// a directory to create a temporary file in. `None` picks one automatically.
    pub direct_io_path: Option<PathBuf>,
    /// Pages read with O_DIRECT (0 skips the step).
    pub direct_io_pages: usize,
    /// Pages registered as an io_uring fixed buffer (0 skips the step).
    pub uring_pages: usize,
    /// PMD-sized transparent huge pages registered as an io_uring fixed buffer (0 skips).
    pub uring_thp_hugepages: usize,
    /// 2 MiB hugetlb pages registered as an io_uring fixed buffer (0 skips the step).
    pub uring_hugetlb_hugepages: usize,
    /// Pages read from a child with process_vm_readv (0 skips the step).
    pub vm_pages: usize,
    /// Pages written into a child with process_vm_writev (0 skips the step).
    pub vm_write_pages: usize,
    /// Pages read from a child through `/proc/<pid>/mem` (0 skips the step).
    pub proc_mem_pages: usize,
    /// Pages read with O_DIRECT into a cold file-backed private mapping (0 skips the step).
    pub lock_drop_pages: usize,
    /// Pages of untouched anonymous memory (the zero page) read with process_vm_readv (0 skips).
    pub zero_page_pages: usize,
    /// A directory on a FAT file system for the legacy direct I/O step (None skips it); a
    /// temporary file is created there.
    pub legacy_dio_dir: Option<PathBuf>,
    /// Pages read with O_DIRECT from that file (0 skips the step).
    pub legacy_dio_pages: usize,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        Self {
            direct_io_path: None,
            direct_io_pages: 1024,
            uring_pages: 64,
            uring_thp_hugepages: 2,
            uring_hugetlb_hugepages: 2,
            vm_pages: 64,
            vm_write_pages: 64,
            proc_mem_pages: 64,
            lock_drop_pages: 64,
            zero_page_pages: 64,
            legacy_dio_dir: None,
            legacy_dio_pages: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Ran,
    Skipped(String),
}

#[derive(Debug, Clone)]
pub struct StepReport {
    pub name: &'static str,
    /// Pages the step asked the kernel to pin (or, for a step that does not pin, to take a
    /// reference on); in small pages, also for huge-page buffers. 0 when skipped.
    pub pages: u64,
    pub outcome: StepOutcome,
}

impl StepReport {
    /// Whether the step takes FOLL_PIN pins (counted by vmstat `nr_foll_pin_*`). `false` for
    /// the steps in [`REFERENCE_STEPS`], which take FOLL_GET references.
    pub fn pins(&self) -> bool {
        !REFERENCE_STEPS.contains(&self.name)
    }
}

#[derive(Debug, Clone)]
pub struct WorkloadReport {
    pub steps: Vec<StepReport>,
}

/// Runs the steps in order. A step that cannot run here is reported as skipped; a step that
/// fails midway is an error (with the step, the syscall and the errno in its context).
/// Every pin or reference a step takes is released before the step returns.
pub fn run(opts: &WorkloadOptions) -> Result<WorkloadReport> {
    let page = page_size();
    let steps = vec![
        report(STEP_DIRECT_IO, direct_io_step(opts, page))?,
        report(STEP_URING, uring_step(opts.uring_pages, page))?,
        report(
            STEP_URING_THP,
            uring_thp_step(opts.uring_thp_hugepages, page),
        )?,
        report(
            STEP_URING_HUGETLB,
            uring_hugetlb_step(opts.uring_hugetlb_hugepages, page),
        )?,
        report(
            STEP_VM_READV,
            vm_copy_step(VmCopy::Read, opts.vm_pages, page),
        )?,
        report(
            STEP_VM_WRITEV,
            vm_copy_step(VmCopy::Write, opts.vm_write_pages, page),
        )?,
        report(STEP_PROC_MEM, proc_mem_step(opts.proc_mem_pages, page))?,
        report(STEP_LOCK_DROP, lock_drop_step(opts, page))?,
        report(STEP_ZERO_PAGE, zero_page_step(opts.zero_page_pages, page))?,
        report(STEP_LEGACY_DIO, legacy_dio_step(opts, page))?,
    ];
    Ok(WorkloadReport { steps })
}

/// Step `name`'s report: it ran on the pages it returns, or was skipped for the reason it gives;
/// or its error, naming the step.
fn report(name: &'static str, outcome: Outcome<usize>) -> Result<StepReport> {
    match outcome {
        Ok(pages) => Ok(StepReport {
            name,
            pages: pages as u64,
            outcome: StepOutcome::Ran,
        }),
        Err(WorkloadError::Unavailable(why)) => Ok(StepReport {
            name,
            pages: 0,
            outcome: StepOutcome::Skipped(why),
        }),
        Err(WorkloadError::Failed(e)) => Err(e.context(format!("workload step {name}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_ran_was_skipped_for_its_reason_or_failed_naming_itself() {
        let r = report(STEP_URING, Ok(64)).unwrap();
        assert_eq!(
            (r.name, r.pages, r.outcome),
            (STEP_URING, 64, StepOutcome::Ran)
        );

        let why = "io_uring unavailable: io_uring_setup: ENOSYS";
        let r = report(STEP_URING, Err(WorkloadError::Unavailable(why.into()))).unwrap();
        assert_eq!((r.pages, r.outcome), (0, StepOutcome::Skipped(why.into())));

        let failed = anyhow::anyhow!("io_uring_setup(8 entries)").into();
        let e = report(STEP_URING, Err(failed)).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "workload step io_uring_register_buffers: io_uring_setup(8 entries)"
        );
    }
}
