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
//!    directory on one is given), which goes through the legacy `fs/direct-io.c` instead of
//!    iomap or the block device's own path. From 6.5 it pins the user pages
//!    (`iov_iter_extract_pages`), and while it builds bios it takes an extra pin on each page
//!    with `folio_add_pin` (`dio_pin_page`/`dio_send_cur_page`) and drops it with
//!    `unpin_user_page`: vmstat counts those releases but not those acquisitions. This is the
//!    only out-of-line caller of `folio_add_pin` in the 6.12, 6.18 and 7.3 Debian kernels
//!    (their `memfd_pin_folios` inlines it; io_uring does not call it), and nothing built in
//!    calls `folio_add_pins` (iommufd). Up to 6.4 it takes plain references.
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

use std::ffi::{CString, c_int, c_void};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};

pub mod ring_handoff;

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

/// Block devices tried, in order, when no `direct_io_path` is given.
const AUTO_DEVICES: [&str; 3] = ["/dev/nvme0n1", "/dev/vda", "/dev/sda"];
/// Directories tried, in order, for a temporary O_DIRECT file when no device is usable.
const AUTO_TEMP_DIRS: [&str; 2] = [".", "/var/tmp"];
/// Largest single O_DIRECT read; the default 1024 pages are one read.
const MAX_READ_BYTES: usize = 64 << 20;
/// io_uring refuses registered buffers larger than 1 GiB each.
const MAX_URING_IOVEC_BYTES: usize = 1 << 30;
/// Pattern the forked children write: word i holds `VM_PATTERN ^ i`.
pub(crate) const VM_PATTERN: u64 = 0x6775_702d_7472_6163; // "gup-trac"
/// Pattern process_vm_writev writes into the child: word i holds `VM_WRITE_PATTERN ^ i`.
const VM_WRITE_PATTERN: u64 = !VM_PATTERN;
/// Exit status of a child that found something else than `VM_WRITE_PATTERN` in its buffer.
const CHILD_MISMATCH: c_int = 3;
/// Transparent huge page settings.
const THP_DIR: &str = "/sys/kernel/mm/transparent_hugepage";
/// The 2 MiB hugetlb pool.
const HUGETLB_DIR: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB";
const HUGETLB_SIZE: usize = 2 << 20;

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
    /// Pages read from a child through /proc/<pid>/mem (0 skips the step).
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
    let page = page_size()?;
    let ctx = |name: &str| format!("workload step {name}");
    let steps = vec![
        direct_io_step(opts, page).with_context(|| ctx(STEP_DIRECT_IO))?,
        uring_step(opts.uring_pages, page).with_context(|| ctx(STEP_URING))?,
        uring_thp_step(opts.uring_thp_hugepages, page).with_context(|| ctx(STEP_URING_THP))?,
        uring_hugetlb_step(opts.uring_hugetlb_hugepages, page)
            .with_context(|| ctx(STEP_URING_HUGETLB))?,
        vm_copy_step(VmCopy::Read, opts.vm_pages, page).with_context(|| ctx(STEP_VM_READV))?,
        vm_copy_step(VmCopy::Write, opts.vm_write_pages, page)
            .with_context(|| ctx(STEP_VM_WRITEV))?,
        proc_mem_step(opts.proc_mem_pages, page).with_context(|| ctx(STEP_PROC_MEM))?,
        lock_drop_step(opts, page).with_context(|| ctx(STEP_LOCK_DROP))?,
        zero_page_step(opts.zero_page_pages, page).with_context(|| ctx(STEP_ZERO_PAGE))?,
        legacy_dio_step(opts, page).with_context(|| ctx(STEP_LEGACY_DIO))?,
    ];
    Ok(WorkloadReport { steps })
}

fn ran(name: &'static str, pages: usize) -> StepReport {
    StepReport {
        name,
        pages: pages as u64,
        outcome: StepOutcome::Ran,
    }
}

fn skipped(name: &'static str, why: impl Into<String>) -> StepReport {
    StepReport {
        name,
        pages: 0,
        outcome: StepOutcome::Skipped(why.into()),
    }
}

/// The current errno as an error, with "what" (the syscall and its arguments) as context.
/// `pages` pages of `page` bytes, in bytes.
fn byte_len(pages: usize, page: usize) -> Result<usize> {
    pages
        .checked_mul(page)
        .ok_or_else(|| anyhow!("{pages} pages of {page} bytes overflow usize"))
}

fn os_error(what: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(io::Error::last_os_error()).context(what.into())
}

fn errno() -> c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub(crate) fn page_size() -> Result<usize> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v <= 0 {
        return Err(os_error("sysconf(_SC_PAGESIZE)"));
    }
    Ok(v as usize)
}

// ---------------------------------------------------------------------------------------------
// Anonymous, page-aligned, faulted-in buffers
// ---------------------------------------------------------------------------------------------

/// `len` bytes at `ptr`, inside the mapping `map_ptr .. map_ptr + map_len` that drop unmaps.
pub(crate) struct AnonBuf {
    pub(crate) ptr: *mut u8,
    pub(crate) len: usize,
    map_ptr: *mut c_void,
    map_len: usize,
}

// SAFETY: an AnonBuf owns its private mapping, which belongs to the process, not to a thread;
// moving it to another thread (e.g. into `spawn_blocking`) changes nothing about who may use it.
unsafe impl Send for AnonBuf {}

/// mmap of fresh private anonymous memory, read-write, with extra `flags`.
fn mmap_anon(len: usize, flags: c_int) -> std::result::Result<*mut c_void, io::Error> {
    // SAFETY: fresh anonymous mapping, no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p)
    }
}

impl AnonBuf {
    /// mmap `pages` private anonymous pages, ask for small pages, and write to every page so
    /// each one is a distinct private page (not the shared zero page).
    pub(crate) fn new(pages: usize, page: usize) -> Result<Self> {
        let buf = Self::untouched(pages, page)?;
        buf.touch(page);
        Ok(buf)
    }

    /// mmap `pages` private anonymous pages and ask for small pages, without touching them:
    /// a read fault maps the shared zero page.
    fn untouched(pages: usize, page: usize) -> Result<Self> {
        let len = byte_len(pages, page)?;
        let p = mmap_anon(len, 0).map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "mmap({len} bytes, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS)"
            ))
        })?;
        let buf = AnonBuf::whole(p, len);
        // EINVAL means a kernel without transparent huge pages: small pages anyway.
        // SAFETY: the range is the mapping just created.
        if unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) } != 0 && errno() != libc::EINVAL {
            return Err(os_error(format!("madvise({len} bytes, MADV_NOHUGEPAGE)")));
        }
        Ok(buf)
    }

    fn whole(p: *mut c_void, len: usize) -> Self {
        AnonBuf {
            ptr: p.cast(),
            len,
            map_ptr: p,
            map_len: len,
        }
    }

    /// `len` bytes (a multiple of the THP size `hp`) aligned to `hp`, marked MADV_HUGEPAGE and
    /// written to. The mapping keeps at least one small page on either side of the buffer that
    /// is not MADV_HUGEPAGE, so the buffer is a VMA of its own (it cannot merge with a
    /// neighbour) and its smaps entry describes exactly the buffer.
    /// `Ok(Err(why))` when the kernel refuses MADV_HUGEPAGE.
    fn thp(len: usize, hp: usize, page: usize) -> Result<std::result::Result<Self, String>> {
        let map_len = len
            .checked_add(2 * hp)
            .ok_or_else(|| anyhow!("{len} bytes + 2 huge pages overflow usize"))?;
        let p = mmap_anon(map_len, 0).map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "mmap({map_len} bytes, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS)"
            ))
        })?;
        let base = p as usize;
        let start = (base + page).next_multiple_of(hp);
        // start <= base + page + hp - 1 and hp >= 2 pages, so a page is left above the buffer.
        let buf = AnonBuf {
            ptr: p.cast::<u8>().wrapping_add(start - base),
            len,
            map_ptr: p,
            map_len,
        };
        // SAFETY: the range lies inside the mapping just created.
        if unsafe { libc::madvise(buf.ptr.cast(), len, libc::MADV_HUGEPAGE) } != 0 {
            if errno() == libc::EINVAL {
                return Ok(Err(
                    "madvise(MADV_HUGEPAGE) fails with EINVAL: kernel without transparent huge \
                     pages"
                        .into(),
                ));
            }
            return Err(os_error(format!("madvise({len} bytes, MADV_HUGEPAGE)")));
        }
        buf.touch(page);
        Ok(Ok(buf))
    }

    /// `len` bytes (a multiple of 2 MiB) of MAP_HUGETLB memory from the 2 MiB pool, written to.
    /// `Ok(Err(why))` when the kernel cannot provide them.
    fn hugetlb(len: usize, page: usize) -> Result<std::result::Result<Self, String>> {
        let p = match mmap_anon(len, libc::MAP_HUGETLB | libc::MAP_HUGE_2MB) {
            Ok(p) => p,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOMEM) | Some(libc::EINVAL)) => {
                return Ok(Err(format!(
                    "mmap({len} bytes, MAP_HUGETLB|MAP_HUGE_2MB) fails: {e} \
                     (no hugetlb support, or too few free 2 MiB huge pages)"
                )));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "mmap({len} bytes, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|MAP_HUGE_2MB)"
                )));
            }
        };
        // Private hugetlb mappings reserve their pages at mmap, so these faults cannot fail.
        let buf = AnonBuf::whole(p, len);
        buf.touch(page);
        Ok(Ok(buf))
    }

    /// Writes one byte to every page.
    fn touch(&self, page: usize) {
        for off in (0..self.len).step_by(page) {
            // SAFETY: off < len, inside the buffer.
            unsafe { ptr::write_volatile(self.ptr.add(off), 0x5a) };
        }
    }
}

impl Drop for AnonBuf {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created by the constructor.
        unsafe { libc::munmap(self.map_ptr, self.map_len) };
    }
}

// ---------------------------------------------------------------------------------------------
// Step 1: O_DIRECT read
// ---------------------------------------------------------------------------------------------

pub(crate) struct DirectTarget {
    pub(crate) fd: OwnedFd,
    /// The path, for messages.
    pub(crate) what: String,
}

enum Probe {
    Ready(DirectTarget),
    Unusable(String),
}

fn direct_io_step(opts: &WorkloadOptions, page: usize) -> Result<StepReport> {
    let pages = opts.direct_io_pages;
    if pages == 0 {
        return Ok(skipped(STEP_DIRECT_IO, "0 pages requested"));
    }
    let bytes = byte_len(pages, page)?;

    let target = match direct_io_target(opts.direct_io_path.as_deref(), bytes)? {
        Ok(t) => t,
        Err(why) => return Ok(skipped(STEP_DIRECT_IO, why)),
    };

    let buf = AnonBuf::new(pages, page)?;
    // SAFETY: buf is `bytes` long and outlives the reads.
    unsafe { read_direct(&target, buf.ptr, bytes, page) }?;
    Ok(ran(STEP_DIRECT_IO, pages))
}

/// O_DIRECT reads of `bytes` bytes from offset 0 of `target` into `dst`, in whole pages.
///
/// # Safety
/// `dst .. dst + bytes` must be writable memory of this process.
unsafe fn read_direct(
    target: &DirectTarget,
    dst: *mut u8,
    bytes: usize,
    page: usize,
) -> Result<()> {
    let fd = target.fd.as_raw_fd();
    let mut done = 0usize;
    while done < bytes {
        let want = (bytes - done).min(MAX_READ_BYTES);
        // SAFETY: dst + done .. + want lies inside the caller's buffer.
        let n = unsafe { libc::pread(fd, dst.add(done).cast(), want, done as libc::off_t) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(os_error(format!(
                "pread(O_DIRECT, {want} bytes at offset {done}) from {}",
                target.what
            )));
        }
        let n = n as usize;
        if n == 0 || !n.is_multiple_of(page) {
            bail!(
                "pread(O_DIRECT, {want} bytes at offset {done}) from {} returned {n} bytes",
                target.what
            );
        }
        done += n;
    }
    Ok(())
}

/// Opens an O_DIRECT read target holding at least `bytes` bytes, chosen as for the
/// `o_direct_read` step ([`WorkloadOptions::direct_io_path`]). `Ok(Err(why))` when there is none.
pub(crate) fn direct_io_target(
    path: Option<&Path>,
    bytes: usize,
) -> Result<std::result::Result<DirectTarget, String>> {
    let probe = match path {
        Some(p) if p.is_dir() => probe_temp_dir(p, bytes)?,
        Some(p) => probe_existing(p, bytes)?,
        None => auto_target(bytes),
    };
    Ok(match probe {
        Probe::Ready(t) => Ok(t),
        Probe::Unusable(why) => Err(why),
    })
}

fn auto_target(bytes: usize) -> Probe {
    let mut tried = Vec::new();
    for dev in AUTO_DEVICES {
        let path = Path::new(dev);
        if !path.exists() {
            continue;
        }
        match probe_existing(path, bytes) {
            Ok(Probe::Ready(t)) => return Probe::Ready(t),
            Ok(Probe::Unusable(why)) => tried.push(why),
            Err(e) => tried.push(format!("{e:#}")),
        }
    }
    if tried.is_empty() {
        tried.push(format!("none of {} exists", AUTO_DEVICES.join(", ")));
    }
    for dir in AUTO_TEMP_DIRS {
        match probe_temp_dir(Path::new(dir), bytes) {
            Ok(Probe::Ready(t)) => return Probe::Ready(t),
            Ok(Probe::Unusable(why)) => tried.push(why),
            Err(e) => tried.push(format!("{e:#}")),
        }
    }
    Probe::Unusable(format!("no O_DIRECT-capable target: {}", tried.join("; ")))
}

fn cpath(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| anyhow!("path {} contains a NUL byte", path.display()))
}

/// Opens `path` read-only with O_DIRECT. `Ok(Err(why))` when O_DIRECT is refused (EINVAL).
fn open_direct(path: &Path) -> Result<std::result::Result<OwnedFd, String>> {
    let c = cpath(path)?;
    // SAFETY: c is a valid NUL-terminated string.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECT | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        if errno() == libc::EINVAL {
            return Ok(Err(format!(
                "{}: open with O_DIRECT fails with EINVAL",
                path.display()
            )));
        }
        return Err(os_error(format!(
            "open({}, O_RDONLY|O_DIRECT)",
            path.display()
        )));
    }
    // SAFETY: fd was just returned by open and is owned by nobody else.
    Ok(Ok(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Refuses targets whose O_DIRECT reads would not pin: tmpfs (6.6+ accepts O_DIRECT but copies).
fn check_fs(fd: RawFd, what: &str) -> Result<Option<String>> {
    // SAFETY: statfs is plain data; fstatfs fills it.
    let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(fd, &mut sfs) } != 0 {
        return Err(os_error(format!("fstatfs({what})")));
    }
    // f_type and TMPFS_MAGIC have different integer types on different targets.
    #[allow(clippy::unnecessary_cast)]
    if sfs.f_type as i64 == libc::TMPFS_MAGIC as i64 {
        return Ok(Some(format!(
            "{what} is on tmpfs, whose O_DIRECT copies without pinning"
        )));
    }
    Ok(None)
}

/// A block device or regular file that must already hold `bytes` bytes (it is only read).
fn probe_existing(path: &Path, bytes: usize) -> Result<Probe> {
    let fd = match open_direct(path)? {
        Ok(fd) => fd,
        Err(why) => return Ok(Probe::Unusable(why)),
    };
    let what = path.display().to_string();
    // SAFETY: stat is plain data; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(os_error(format!("fstat({what})")));
    }
    let size = match st.st_mode & libc::S_IFMT {
        libc::S_IFBLK => {
            // SAFETY: plain syscall on an owned fd (pread is used later, position is irrelevant).
            let end = unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_END) };
            if end < 0 {
                return Err(os_error(format!("lseek({what}, 0, SEEK_END)")));
            }
            end as u64
        }
        libc::S_IFREG => {
            if let Some(why) = check_fs(fd.as_raw_fd(), &what)? {
                return Ok(Probe::Unusable(why));
            }
            st.st_size as u64
        }
        _ => {
            return Ok(Probe::Unusable(format!(
                "{what} is not a block device or regular file"
            )));
        }
    };
    if size < bytes as u64 {
        return Ok(Probe::Unusable(format!(
            "{what} holds {size} bytes, {bytes} needed"
        )));
    }
    Ok(Probe::Ready(DirectTarget { fd, what }))
}

/// Unlinks the temporary file when dropped (the O_DIRECT fd keeps the data alive).
struct Unlink(PathBuf);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Creates a temporary file in `dir`, fills it with `bytes` of real data (not fallocate:
/// O_DIRECT reads of unwritten extents are served as zeroes without any I/O or pin), syncs it,
/// reopens it with O_DIRECT and unlinks it.
fn probe_temp_dir(dir: &Path, bytes: usize) -> Result<Probe> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    probe_temp_file(
        &dir.join(format!(
            ".gup-trace-workload.{}.{nanos}",
            std::process::id()
        )),
        bytes,
    )
}

/// [`probe_temp_dir`] with the file's path chosen by the caller.
fn probe_temp_file(path: &Path, bytes: usize) -> Result<Probe> {
    let path = path.to_path_buf();
    let c = cpath(&path)?;
    // SAFETY: c is a valid NUL-terminated string.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(os_error(format!(
            "open({}, O_CREAT|O_EXCL)",
            path.display()
        )));
    }
    let _unlink = Unlink(path.clone());
    // SAFETY: fd was just returned by open and is owned by nobody else.
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    if let Some(why) = check_fs(file.as_raw_fd(), &path.display().to_string())? {
        return Ok(Probe::Unusable(why));
    }
    let chunk = vec![0xa5u8; bytes.min(1 << 20)];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        file.write_all(&chunk[..n])
            .with_context(|| format!("write({}, {n} bytes)", path.display()))?;
        left -= n;
    }
    file.sync_all()
        .with_context(|| format!("fsync({})", path.display()))?;
    drop(file);
    let fd = match open_direct(&path)? {
        Ok(fd) => fd,
        Err(why) => return Ok(Probe::Unusable(why)),
    };
    Ok(Probe::Ready(DirectTarget {
        fd,
        what: format!("temporary file {}", path.display()),
    }))
}

// ---------------------------------------------------------------------------------------------
// Steps 2-4: io_uring fixed buffers on small pages, transparent huge pages and hugetlb
// ---------------------------------------------------------------------------------------------

fn uring_step(pages: usize, page: usize) -> Result<StepReport> {
    if pages == 0 {
        return Ok(skipped(STEP_URING, "0 pages requested"));
    }
    let buf = AnonBuf::new(pages, page)?;
    uring_register_cycle(STEP_URING, &buf, pages)
}

// When are the pins released? IORING_UNREGISTER_BUFFERS is synchronous on every kernel with
// the opcode: 5.13-6.x quiesce the buffer table (wait for in-flight users and the rsrc put
// work) and 6.x newer kernels free the table inline, and either way the pages are unpinned
// (unpin_user_pages / unpin_user_folio) before the syscall returns. What is asynchronous is
// ring teardown: close() of the ring fd only queues io_ring_exit_work on a workqueue, and that
// work unpins whatever is still registered, possibly after we return. So we unregister
// explicitly (after which the ring holds no user pages: the SQ/CQ rings are kernel memory, the
// crate does not use IORING_SETUP_NO_MMAP) and then drop the ring, which munmaps the rings and
// closes the fd before this function returns. If unregistering fails, the step fails; the
// pins are then released by the kernel's exit work at some later time.
/// Registers `buf` (`pages` small pages) as fixed buffers of a new ring and unregisters it.
/// `buf` belongs to the caller and outlives the ring.
fn uring_register_cycle(name: &'static str, buf: &AnonBuf, pages: usize) -> Result<StepReport> {
    let ring = match io_uring::IoUring::new(8) {
        Ok(r) => r,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) => {
            return Ok(skipped(
                name,
                format!(
                    "io_uring unavailable: io_uring_setup: {e} \
                     (CONFIG_IO_URING off, kernel.io_uring_disabled, or seccomp)"
                ),
            ));
        }
        Err(e) => return Err(anyhow::Error::new(e).context("io_uring_setup(8 entries)")),
    };
    let iovecs: Vec<libc::iovec> = (0..buf.len)
        .step_by(MAX_URING_IOVEC_BYTES)
        .map(|off| libc::iovec {
            // SAFETY: off < buf.len.
            iov_base: unsafe { buf.ptr.add(off) }.cast::<c_void>(),
            iov_len: (buf.len - off).min(MAX_URING_IOVEC_BYTES),
        })
        .collect();
    // SAFETY: the iovecs describe `buf`, which stays mapped until after the ring is dropped.
    if let Err(e) = unsafe { ring.submitter().register_buffers(&iovecs) } {
        let hint = if e.raw_os_error() == Some(libc::ENOMEM) {
            " (without CAP_IPC_LOCK the pages count against RLIMIT_MEMLOCK)"
        } else {
            ""
        };
        drop(ring);
        return Err(anyhow::Error::new(e).context(format!(
            "io_uring_register(IORING_REGISTER_BUFFERS, {} iovec(s), {pages} pages){hint}",
            iovecs.len()
        )));
    }
    let unregistered = ring.submitter().unregister_buffers();
    drop(ring);
    unregistered.context("io_uring_register(IORING_UNREGISTER_BUFFERS)")?;
    Ok(ran(name, pages))
}

/// The selected value of a sysfs multiple-choice file: `always [madvise] never` -> `madvise`.
fn selected(choices: &str) -> Option<&str> {
    let (_, rest) = choices.split_once('[')?;
    Some(rest.split_once(']')?.0)
}

fn read_trimmed(path: &str) -> io::Result<String> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string())
}

fn read_u64(path: &str) -> Result<u64> {
    let s = read_trimmed(path).with_context(|| format!("read {path}"))?;
    s.parse()
        .with_context(|| format!("{path} holds {s:?}, not a number"))
}

fn uring_thp_step(hugepages: usize, page: usize) -> Result<StepReport> {
    let name = STEP_URING_THP;
    if hugepages == 0 {
        return Ok(skipped(name, "0 huge pages requested"));
    }
    let enabled_path = format!("{THP_DIR}/enabled");
    let enabled = match read_trimmed(&enabled_path) {
        Ok(s) => s,
        Err(e) => {
            return Ok(skipped(
                name,
                format!("no transparent huge pages: {enabled_path}: {e}"),
            ));
        }
    };
    if selected(&enabled) == Some("never") {
        return Ok(skipped(
            name,
            format!("transparent huge pages are disabled ({enabled_path}: {enabled})"),
        ));
    }
    let size_path = format!("{THP_DIR}/hpage_pmd_size");
    let hp = match read_u64(&size_path) {
        Ok(v) => v as usize,
        Err(e) => return Ok(skipped(name, format!("{e:#}"))),
    };
    if hp < 2 * page || !hp.is_multiple_of(page) {
        return Ok(skipped(
            name,
            format!("{size_path} is {hp}, not a multiple of the page size {page}"),
        ));
    }
    // Per-size switch (6.8+): "inherit" follows the global one.
    let sized_path = format!("{THP_DIR}/hugepages-{}kB/enabled", hp >> 10);
    if let Ok(s) = read_trimmed(&sized_path)
        && selected(&s) == Some("never")
    {
        return Ok(skipped(
            name,
            format!("PMD-sized transparent huge pages are disabled ({sized_path}: {s})"),
        ));
    }
    // SAFETY: PR_GET_THP_DISABLE takes no pointers.
    if unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) } == 1 {
        return Ok(skipped(
            name,
            "transparent huge pages are disabled for this process (prctl PR_SET_THP_DISABLE)",
        ));
    }
    let len = hugepages
        .checked_mul(hp)
        .ok_or_else(|| anyhow!("{hugepages} huge pages of {hp} bytes overflow usize"))?;
    let buf = match AnonBuf::thp(len, hp, page)? {
        Ok(b) => b,
        Err(why) => return Ok(skipped(name, why)),
    };
    if let Err(why) = check_thp_backed(&buf)? {
        return Ok(skipped(name, why));
    }
    uring_register_cycle(name, &buf, len / page)
}

/// Checks, with /proc/self/smaps, that the whole buffer is PMD-mapped transparent huge pages
/// (`AnonHugePages` counts exactly those). Needs the buffer to be a VMA of its own, which
/// [`AnonBuf::thp`] arranges. `Ok(Err(why))` when it is not.
fn check_thp_backed(buf: &AnonBuf) -> Result<std::result::Result<(), String>> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").context("read /proc/self/smaps")?;
    let (start, end) = (buf.ptr as usize, buf.ptr as usize + buf.len);
    let mut vma = None;
    for line in smaps.lines() {
        let range = line
            .split_once(' ')
            .and_then(|(r, _)| r.split_once('-'))
            .and_then(|(a, b)| {
                Some((
                    usize::from_str_radix(a, 16).ok()?,
                    usize::from_str_radix(b, 16).ok()?,
                ))
            });
        if let Some((a, b)) = range {
            vma = (a <= start && start < b).then_some((a, b));
            continue;
        }
        let Some((a, b)) = vma else { continue };
        let Some(v) = line.strip_prefix("AnonHugePages:") else {
            continue;
        };
        if (a, b) != (start, end) {
            return Ok(Err(format!(
                "the buffer {start:#x}-{end:#x} is not a VMA of its own in /proc/self/smaps \
                 ({a:#x}-{b:#x}), so its huge pages cannot be checked"
            )));
        }
        let kib: usize = v
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("/proc/self/smaps: unexpected line {line:?}"))?;
        if kib << 10 != buf.len {
            return Ok(Err(format!(
                "only {kib} of {} KiB of the buffer became transparent huge pages (the kernel \
                 fell back to small pages, e.g. memory too fragmented or {THP_DIR}/defrag \
                 forbids compaction)",
                buf.len >> 10
            )));
        }
        return Ok(Ok(()));
    }
    Ok(Err(format!(
        "/proc/self/smaps shows no AnonHugePages line for the buffer at {start:#x}"
    )))
}

/// Grows the 2 MiB hugetlb pool for a step and shrinks it back to its old size afterwards.
struct HugetlbPool {
    /// `nr_hugepages` to write back, when the pool was grown.
    restore: Option<u64>,
}

impl HugetlbPool {
    const NR: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

    /// Unreserved free 2 MiB huge pages.
    fn available() -> Result<u64> {
        let free = read_u64(&format!("{HUGETLB_DIR}/free_hugepages"))?;
        let resv = read_u64(&format!("{HUGETLB_DIR}/resv_hugepages"))?;
        Ok(free.saturating_sub(resv))
    }

    /// Makes sure `need` unreserved free huge pages exist, growing the pool (root only) if not.
    /// `Ok(Err(why))` when that is impossible.
    fn ensure(need: u64) -> Result<std::result::Result<Self, String>> {
        let avail = Self::available()?;
        if avail >= need {
            return Ok(Ok(HugetlbPool { restore: None }));
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(Err(format!(
                "{avail} free 2 MiB huge pages, {need} needed, and only root may grow the pool \
                 ({})",
                Self::NR
            )));
        }
        let old = read_u64(Self::NR)?;
        let target = old + (need - avail);
        // From here on, dropping `pool` writes `old` back.
        let pool = HugetlbPool { restore: Some(old) };
        if let Err(e) = std::fs::write(Self::NR, target.to_string()) {
            return Ok(Err(format!(
                "cannot grow the 2 MiB hugetlb pool from {old} to {target} pages: write {}: {e}",
                Self::NR
            )));
        }
        let now = Self::available()?;
        if now < need {
            let got = read_u64(Self::NR)?;
            return Ok(Err(format!(
                "asked for {target} 2 MiB hugetlb pages, the kernel found memory for {got} \
                 ({now} free, {need} needed)"
            )));
        }
        Ok(Ok(pool))
    }

    /// Shrinks the pool back, reporting a failure (drop does the same silently).
    fn restore(mut self) -> Result<()> {
        if let Some(old) = self.restore.take() {
            std::fs::write(Self::NR, old.to_string()).with_context(|| {
                format!(
                    "restore {} to {old} after growing the hugetlb pool",
                    Self::NR
                )
            })?;
        }
        Ok(())
    }
}

impl Drop for HugetlbPool {
    fn drop(&mut self) {
        if let Some(old) = self.restore.take() {
            let _ = std::fs::write(Self::NR, old.to_string());
        }
    }
}

fn uring_hugetlb_step(hugepages: usize, page: usize) -> Result<StepReport> {
    let name = STEP_URING_HUGETLB;
    if hugepages == 0 {
        return Ok(skipped(name, "0 huge pages requested"));
    }
    if !Path::new(HUGETLB_DIR).is_dir() {
        return Ok(skipped(
            name,
            format!("no 2 MiB hugetlb pool: {HUGETLB_DIR} does not exist (CONFIG_HUGETLBFS off?)"),
        ));
    }
    let len = hugepages
        .checked_mul(HUGETLB_SIZE)
        .ok_or_else(|| anyhow!("{hugepages} huge pages of 2 MiB overflow usize"))?;
    let pool = match HugetlbPool::ensure(hugepages as u64)? {
        Ok(p) => p,
        Err(why) => return Ok(skipped(name, why)),
    };
    let report = match AnonBuf::hugetlb(len, page)? {
        Ok(buf) => {
            let r = uring_register_cycle(name, &buf, len / page);
            drop(buf); // back to the pool before the pool shrinks
            r
        }
        Err(why) => Ok(skipped(name, why)),
    };
    let restored = pool.restore();
    let report = report?;
    restored?;
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// Steps 5-7: another process's memory: process_vm_readv, process_vm_writev, /proc/<pid>/mem
// ---------------------------------------------------------------------------------------------

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: fds has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(os_error("pipe2(O_CLOEXEC)"));
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The forked child: fills its copy of the buffer with `VM_PATTERN`, signals readiness, waits
/// for the parent, then (with `check_written`) checks that the buffer holds
/// `VM_WRITE_PATTERN` and exits with `CHILD_MISMATCH` if not. The parent may be a
/// multi-threaded program, so only async-signal-safe calls are allowed here: plain memory
/// accesses, close, read, write, _exit. No allocation, no Rust std I/O, nothing that can panic.
unsafe fn child_main(
    words: *mut u64,
    nwords: usize,
    ready_w: RawFd,
    go_r: RawFd,
    go_w: RawFd,
    check_written: bool,
) -> ! {
    unsafe {
        // Our copy of the release pipe's write end would keep read() below from seeing EOF
        // if the parent died.
        libc::close(go_w);
        for i in 0..nwords {
            ptr::write_volatile(words.add(i), VM_PATTERN ^ i as u64);
        }
        let byte = 1u8;
        loop {
            let r = libc::write(ready_w, (&byte as *const u8).cast(), 1);
            if r == 1 {
                break;
            }
            if r < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            libc::_exit(1);
        }
        // Block until the parent writes a byte, or closes its end (or dies).
        let mut sink = 0u8;
        loop {
            let r = libc::read(go_r, (&mut sink as *mut u8).cast(), 1);
            if r < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            break;
        }
        if check_written {
            for i in 0..nwords {
                if ptr::read_volatile(words.add(i)) != VM_WRITE_PATTERN ^ i as u64 {
                    libc::_exit(CHILD_MISMATCH);
                }
            }
        }
        libc::_exit(0);
    }
}

/// Releases and reaps the child on every path.
pub(crate) struct Child {
    pub(crate) pid: libc::pid_t,
    go_w: Option<OwnedFd>,
    reaped: bool,
}

impl Child {
    /// Forks a child running [`child_main`] on its copy of `remote` and waits until it has
    /// written its pattern.
    pub(crate) fn spawn(remote: &AnonBuf, check_written: bool) -> Result<Child> {
        let (ready_r, ready_w) = pipe()?;
        let (go_r, go_w) = pipe()?;
        let words = remote.ptr.cast::<u64>();
        let nwords = remote.len / 8;
        let (ready_w_raw, go_r_raw, go_w_raw) =
            (ready_w.as_raw_fd(), go_r.as_raw_fd(), go_w.as_raw_fd());

        // SAFETY: the child only runs child_main, which is async-signal-safe.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(os_error("fork()"));
        }
        if pid == 0 {
            // SAFETY: words..words+nwords is the (copied) mapping; the fds are inherited.
            unsafe {
                child_main(
                    words,
                    nwords,
                    ready_w_raw,
                    go_r_raw,
                    go_w_raw,
                    check_written,
                )
            };
        }
        drop(ready_w);
        drop(go_r);
        let mut child = Child {
            pid,
            go_w: Some(go_w),
            reaped: false,
        };
        let mut byte = 0u8;
        loop {
            // SAFETY: reads one byte into a local.
            let r = unsafe { libc::read(ready_r.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
            if r == 1 {
                return Ok(child);
            }
            if r < 0 && errno() == libc::EINTR {
                continue;
            }
            if r < 0 {
                return Err(os_error(format!("read(readiness pipe of child {pid})")));
            }
            let status = child.finish()?;
            bail!("child {pid} exited before signalling readiness (wait status {status:#x})");
        }
    }

    /// Lets the child exit and waits for it; returns its wait status.
    fn finish(&mut self) -> Result<c_int> {
        if let Some(go) = self.go_w.take() {
            let byte = 1u8;
            // SAFETY: writes one byte from a local; failure is fine, closing also releases it.
            unsafe { libc::write(go.as_raw_fd(), (&byte as *const u8).cast(), 1) };
        }
        let mut status: c_int = 0;
        loop {
            // SAFETY: plain syscall on our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                self.reaped = true;
                return Ok(status);
            }
            if r < 0 && errno() == libc::EINTR {
                continue;
            }
            self.reaped = true; // ECHILD: someone else reaped it; do not retry in Drop
            return Err(os_error(format!("waitpid({})", self.pid)));
        }
    }

    /// [`Child::finish`], and an error unless the child exited with status 0.
    fn finish_clean(&mut self) -> Result<()> {
        let status = self.finish()?;
        let pid = self.pid;
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == CHILD_MISMATCH {
            bail!("child {pid} found other data in its buffer than process_vm_writev wrote");
        }
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            bail!("child {pid} did not exit cleanly (wait status {status:#x})");
        }
        Ok(())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.finish();
        }
    }
}

/// Checks that `bytes` holds `pattern ^ i` in word i.
pub(crate) fn check_pattern(bytes: &[u8], pattern: u64, what: &str) -> Result<()> {
    for (i, w) in bytes.chunks_exact(8).enumerate() {
        let got = u64::from_ne_bytes(w.try_into().expect("8-byte chunk"));
        let want = pattern ^ i as u64;
        if got != want {
            bail!("{what}: word {i} is {got:#018x}, the child wrote {want:#018x}");
        }
    }
    Ok(())
}

/// Turns a failed process_vm_readv/writev (errno `e`, error `err`) into a skip or an error.
fn vm_rw_failure(name: &'static str, e: c_int, err: anyhow::Error) -> Result<StepReport> {
    match e {
        libc::ENOSYS => Ok(skipped(
            name,
            format!("{name} not available (CONFIG_CROSS_MEMORY_ATTACH off)"),
        )),
        libc::EPERM => Ok(skipped(
            name,
            format!("{name} not permitted (ptrace policy / LSM): {err:#}"),
        )),
        _ => Err(err),
    }
}

/// Which way process_vm_{readv,writev} copies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum VmCopy {
    Read,
    Write,
}

/// One process_vm_readv (into `local`) or process_vm_writev (from it) of `local.len()` bytes
/// at `remote` in process `pid`; the syscall's return value.
fn process_vm_copy(way: VmCopy, pid: libc::pid_t, local: &mut [u8], remote: *mut u8) -> isize {
    let liov = libc::iovec {
        iov_base: local.as_mut_ptr().cast(),
        iov_len: local.len(),
    };
    let riov = libc::iovec {
        iov_base: remote.cast(),
        iov_len: local.len(),
    };
    // SAFETY: liov describes `local`; riov is an address in `pid`, which the kernel checks.
    unsafe {
        match way {
            VmCopy::Read => libc::process_vm_readv(pid, &liov, 1, &riov, 1, 0),
            VmCopy::Write => libc::process_vm_writev(pid, &liov, 1, &riov, 1, 0),
        }
    }
}

/// process_vm_readv or process_vm_writev of a child's buffer. Only the child's pages are
/// pinned: the local side is copied with copy_{to,from}_user. A read is checked here; a write
/// is checked by the child itself, since reading it back through the kernel would pin the
/// pages once more.
fn vm_copy_step(way: VmCopy, pages: usize, page: usize) -> Result<StepReport> {
    let (step, syscall) = match way {
        VmCopy::Read => (STEP_VM_READV, "process_vm_readv"),
        VmCopy::Write => (STEP_VM_WRITEV, "process_vm_writev"),
    };
    if pages == 0 {
        return Ok(skipped(step, "0 pages requested"));
    }
    // Allocated and faulted in before fork: same address in the child, which then gets its
    // own copies of the pages when it writes the pattern.
    let remote = AnonBuf::new(pages, page)?;
    let len = remote.len;
    let mut local: Vec<u8> = match way {
        VmCopy::Read => vec![0u8; len],
        VmCopy::Write => (0..len / 8)
            .flat_map(|i| (VM_WRITE_PATTERN ^ i as u64).to_ne_bytes())
            .collect(),
    };
    let mut child = Child::spawn(&remote, way == VmCopy::Write)?;
    let pid = child.pid;
    let n = process_vm_copy(way, pid, &mut local, remote.ptr);
    if n < 0 {
        let e = errno();
        let err = os_error(format!(
            "{syscall}(pid {pid}, {len} bytes at {:p})",
            remote.ptr
        ));
        child.finish()?;
        return vm_rw_failure(step, e, err);
    }
    if n as usize != len {
        bail!("{syscall}(pid {pid}) copied {n} of {len} bytes");
    }
    if way == VmCopy::Read {
        check_pattern(&local, VM_PATTERN, &format!("{syscall}(pid {pid})"))?;
    }
    child.finish_clean()?;
    drop(remote);
    Ok(ran(step, pages))
}

/// FOLL_GET, not FOLL_PIN: /proc/<pid>/mem copies page by page through access_remote_vm,
/// which takes a plain reference on each page (get_user_pages_remote) and drops it again.
fn proc_mem_step(pages: usize, page: usize) -> Result<StepReport> {
    if pages == 0 {
        return Ok(skipped(STEP_PROC_MEM, "0 pages requested"));
    }
    let remote = AnonBuf::new(pages, page)?;
    let len = remote.len;
    let mut local = vec![0u8; len];
    let mut child = Child::spawn(&remote, false)?;
    let pid = child.pid;
    let path = format!("/proc/{pid}/mem");
    let c = CString::new(path.clone()).expect("no NUL in a /proc path");
    // SAFETY: c is a valid NUL-terminated string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        let e = errno();
        let err = os_error(format!("open({path}, O_RDONLY)"));
        child.finish()?;
        return match e {
            libc::EACCES | libc::EPERM => Ok(skipped(
                STEP_PROC_MEM,
                format!("{path} not readable (ptrace policy / LSM): {err:#}"),
            )),
            _ => Err(err),
        };
    }
    // SAFETY: fd was just returned by open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let addr = remote.ptr as usize;
    let mut done = 0usize;
    while done < len {
        // SAFETY: local[done..] is writable; the offset is an address in the child.
        let n = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                local.as_mut_ptr().add(done).cast(),
                len - done,
                (addr + done) as libc::off_t,
            )
        };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(os_error(format!(
                "pread({path}, {} bytes at {:#x})",
                len - done,
                addr + done
            )));
        }
        if n == 0 {
            bail!("pread({path}) read {done} of {len} bytes, then end of file");
        }
        done += n as usize;
    }
    drop(fd);
    check_pattern(&local, VM_PATTERN, &format!("pread({path})"))?;
    child.finish_clean()?;
    drop(remote);
    Ok(ran(STEP_PROC_MEM, pages))
}

// ---------------------------------------------------------------------------------------------
// Steps 8-10: mmap_lock dropped inside GUP, zero-page pins, folio_add_pin
// ---------------------------------------------------------------------------------------------

/// A file-backed MAP_PRIVATE mapping, unmapped when dropped.
struct FileMap {
    ptr: *mut u8,
    len: usize,
}

impl FileMap {
    /// `len` bytes of `fd` from `offset`, readable and writable (copy-on-write).
    fn private(fd: RawFd, len: usize, offset: usize, what: &str) -> Result<Self> {
        // SAFETY: a new mapping of a file we hold open; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                fd,
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(os_error(format!(
                "mmap({len} bytes of {what} at offset {offset}, MAP_PRIVATE)"
            )));
        }
        Ok(FileMap { ptr: p.cast(), len })
    }

    /// Pages of the mapping whose file page is in the page cache (mincore).
    fn resident(&self, page: usize) -> Result<usize> {
        let mut vec = vec![0u8; self.len.div_ceil(page)];
        // SAFETY: the range is our mapping; vec has one byte per page.
        if unsafe { libc::mincore(self.ptr.cast(), self.len, vec.as_mut_ptr()) } != 0 {
            return Err(os_error(format!("mincore({} bytes)", self.len)));
        }
        Ok(vec.iter().filter(|&&b| b & 1 != 0).count())
    }
}

impl Drop for FileMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created by `private`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Evicts the file pages behind `map` (offset `offset` of `fd`) from the page cache, so that
/// faulting them in needs I/O. `Ok(Err(why))` when some stay cached.
fn make_cold(
    fd: RawFd,
    map: &FileMap,
    offset: usize,
    page: usize,
    what: &str,
) -> Result<std::result::Result<(), String>> {
    // Clean, unmapped page-cache folios go. The whole file, not just the range: on a 6.18
    // host (ext4), DONTNEED of the range alone left all 64 pages of a freshly written
    // temporary file cached (large folios reaching past the range, presumably).
    // SAFETY: plain syscall; posix_fadvise returns the error number instead of setting errno.
    let e = unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) };
    if e != 0 {
        return Err(anyhow::Error::new(io::Error::from_raw_os_error(e))
            .context(format!("posix_fadvise({what}, POSIX_FADV_DONTNEED)")));
    }
    // Pages that are dirty, locked or mapped elsewhere survive it. (drop_caches would get
    // more of them, but it empties the whole machine's page cache: not a selftest's business.)
    let resident = map.resident(page)?;
    if resident > 0 {
        return Ok(Err(format!(
            "{resident} of {} pages of {what} at offset {offset} stay in the page cache after \
             POSIX_FADV_DONTNEED: faulting them in would need no I/O, so GUP would not drop \
             mmap_lock",
            map.len / page,
        )));
    }
    Ok(Ok(()))
}

/// Step 8: O_DIRECT read into a cold MAP_PRIVATE file mapping, whose faults drop mmap_lock.
/// The target is the `o_direct_read` one: it is read from offset 0, and the part mapped (the
/// destination) is its last `pages` whole pages (holding at least twice that, the two never
/// overlap; the end of a disk is also the part least likely to hold a file system's busy
/// metadata, which would stay cached).
fn lock_drop_step(opts: &WorkloadOptions, page: usize) -> Result<StepReport> {
    let name = STEP_LOCK_DROP;
    let pages = opts.lock_drop_pages;
    if pages == 0 {
        return Ok(skipped(name, "0 pages requested"));
    }
    let bytes = byte_len(pages, page)?;
    let need = bytes
        .checked_mul(2)
        .ok_or_else(|| anyhow!("{pages} pages of {page} bytes, twice, overflow usize"))?;
    let target = match direct_io_target(opts.direct_io_path.as_deref(), need)? {
        Ok(t) => t,
        Err(why) => return Ok(skipped(name, why)),
    };
    // O_DIRECT applies to read() and write(), not to mmap: the same fd maps through the page
    // cache.
    let fd = target.fd.as_raw_fd();
    // SAFETY: plain syscall on an owned fd (the reads use pread, the position is irrelevant).
    let end = unsafe { libc::lseek(fd, 0, libc::SEEK_END) };
    if end < 0 {
        return Err(os_error(format!("lseek({}, 0, SEEK_END)", target.what)));
    }
    let offset = (end as usize / page) * page - bytes;
    let map = FileMap::private(fd, bytes, offset, &target.what)?;
    // No read-around: every page's fault reads that page (and drops the lock) itself.
    // SAFETY: the range is the mapping just created.
    if unsafe { libc::madvise(map.ptr.cast(), bytes, libc::MADV_RANDOM) } != 0 {
        return Err(os_error(format!("madvise({bytes} bytes, MADV_RANDOM)")));
    }
    if let Err(why) = make_cold(fd, &map, offset, page, &target.what)? {
        return Ok(skipped(name, why));
    }
    // SAFETY: the mapping is `bytes` long, writable, and outlives the reads.
    unsafe { read_direct(&target, map.ptr, bytes, page) }?;
    drop(map);
    Ok(ran(name, pages))
}

/// Step 9: process_vm_readv of our own untouched anonymous memory: GUP faults in (read) and
/// pins the shared zero page. The copy must come back as zeroes.
fn zero_page_step(pages: usize, page: usize) -> Result<StepReport> {
    let name = STEP_ZERO_PAGE;
    if pages == 0 {
        return Ok(skipped(name, "0 pages requested"));
    }
    let remote = AnonBuf::untouched(pages, page)?;
    let len = remote.len;
    let mut local = vec![0xa5u8; len];
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let n = process_vm_copy(VmCopy::Read, pid, &mut local, remote.ptr);
    if n < 0 {
        let e = errno();
        let err = os_error(format!("process_vm_readv(own pid {pid}, {len} bytes)"));
        return vm_rw_failure(name, e, err);
    }
    if n as usize != len {
        bail!("process_vm_readv(own pid {pid}) copied {n} of {len} bytes");
    }
    if let Some(i) = local.iter().position(|&b| b != 0) {
        bail!(
            "process_vm_readv of untouched memory read {:#04x} at byte {i}, not 0",
            local[i]
        );
    }
    drop(remote);
    Ok(ran(name, pages))
}

/// FAT (msdos, vfat) reads and writes O_DIRECT through fs/direct-io.c. exFAT, UDF, HFS+ and a
/// few others do too, but only FAT was measured here.
const LEGACY_DIO_FS: [(i64, &str); 1] = [(libc::MSDOS_SUPER_MAGIC as i64, "FAT")];

/// Step 10: O_DIRECT read of a temporary file in `opts.legacy_dio_dir` (a FAT file system):
/// the legacy direct I/O code, which adds pins with `folio_add_pin`.
fn legacy_dio_step(opts: &WorkloadOptions, page: usize) -> Result<StepReport> {
    let name = STEP_LEGACY_DIO;
    let pages = opts.legacy_dio_pages;
    let Some(dir) = opts.legacy_dio_dir.as_deref() else {
        return Ok(skipped(
            name,
            "no directory on a FAT file system given (--legacy-dio-dir)",
        ));
    };
    if pages == 0 {
        return Ok(skipped(name, "0 pages requested"));
    }
    let bytes = byte_len(pages, page)?;
    let c = cpath(dir)?;
    // SAFETY: statfs is plain data; statfs fills it from a valid NUL-terminated path.
    let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut sfs) } != 0 {
        return Err(os_error(format!("statfs({})", dir.display())));
    }
    // f_type has different integer types on different targets.
    #[allow(clippy::unnecessary_cast)]
    let f_type = sfs.f_type as i64;
    if !LEGACY_DIO_FS.iter().any(|&(magic, _)| magic == f_type) {
        return Ok(skipped(
            name,
            format!(
                "{} is not on a file system known to use fs/direct-io.c ({}; its f_type is \
                 {f_type:#x})",
                dir.display(),
                LEGACY_DIO_FS.map(|(_, n)| n).join(", ")
            ),
        ));
    }
    // An 8.3 name: the msdos flavour of FAT takes no other.
    let file = dir.join(format!("GT{:06}.TMP", std::process::id() % 1_000_000));
    let target = match probe_temp_file(&file, bytes)? {
        Probe::Ready(t) => t,
        Probe::Unusable(why) => return Ok(skipped(name, why)),
    };
    let buf = AnonBuf::new(pages, page)?;
    // SAFETY: buf is `bytes` long and outlives the reads.
    unsafe { read_direct(&target, buf.ptr, bytes, page) }?;
    Ok(ran(name, pages))
}
