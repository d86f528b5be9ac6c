//! Built-in pin workload run by `gup-trace selftest` while tracing.
//!
//! Each step makes the kernel take FOLL_PIN pins on a known number of user pages and release
//! them again before the step returns, so a tracer (and the kernel's own `/proc/vmstat`
//! counters `nr_foll_pin_acquired` / `nr_foll_pin_released`) should see exactly
//! `StepReport::pages` acquisitions and as many releases per step that ran:
//!
//! 1. `o_direct_read`: O_DIRECT read into freshly faulted private anonymous memory
//!    (block layer, `iov_iter_extract_pages` -> `pin_user_pages_fast`). Block O_DIRECT pins
//!    with FOLL_PIN on kernels newer than 6.1; 6.1 and older take plain references (FOLL_GET),
//!    which the vmstat pin counters do not see.
//! 2. `io_uring_register_buffers`: IORING_REGISTER_BUFFERS + IORING_UNREGISTER_BUFFERS
//!    (`io_pin_pages` -> `pin_user_pages_fast(FOLL_WRITE | FOLL_LONGTERM)`).
//! 3. `process_vm_readv`: read a forked child's buffer (`pin_user_pages_remote`).
//!
//! "Pages" are kernel pages (`sysconf(_SC_PAGESIZE)`, 4 KiB on x86-64). All buffers are
//! `MAP_PRIVATE | MAP_ANONYMOUS`, marked `MADV_NOHUGEPAGE` (so they are small folios, one pin
//! per page) and written to before use, so no page is the shared zero page (zero-page pins are
//! not counted by vmstat).
//!
//! Caveats for exact counting:
//! - FOLL_LONGTERM (io_uring) pins of pages in ZONE_MOVABLE or CMA are migrated first
//!   (unpin, migrate, repin), which adds extra acquire/release pairs.
//! - O_DIRECT on file systems that do not go through the block layer (NFS, FUSE, 9p, ...)
//!   may take references instead of pins. tmpfs accepts O_DIRECT from 6.6 on but copies
//!   through the page cache without pinning, so a tmpfs target is skipped.
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

pub const STEP_DIRECT_IO: &str = "o_direct_read";
pub const STEP_URING: &str = "io_uring_register_buffers";
pub const STEP_VM_READV: &str = "process_vm_readv";

/// Block devices tried, in order, when no `direct_io_path` is given.
const AUTO_DEVICES: [&str; 3] = ["/dev/nvme0n1", "/dev/vda", "/dev/sda"];
/// Directories tried, in order, for a temporary O_DIRECT file when no device is usable.
const AUTO_TEMP_DIRS: [&str; 2] = [".", "/var/tmp"];
/// Largest single O_DIRECT read; the default 1024 pages are one read.
const MAX_READ_BYTES: usize = 64 << 20;
/// io_uring refuses registered buffers larger than 1 GiB each.
const MAX_URING_IOVEC_BYTES: usize = 1 << 30;
/// Pattern the process_vm_readv child writes: word i holds `VM_PATTERN ^ i`.
const VM_PATTERN: u64 = 0x6775_702d_7472_6163; // "gup-trac"

#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    /// O_DIRECT target: a block device or regular file (read only, must hold enough data), or
    /// a directory to create a temporary file in. `None` picks one automatically.
    pub direct_io_path: Option<PathBuf>,
    /// Pages read with O_DIRECT (0 skips the step).
    pub direct_io_pages: usize,
    /// Pages registered as an io_uring fixed buffer (0 skips the step).
    pub uring_pages: usize,
    /// Pages read from a child with process_vm_readv (0 skips the step).
    pub vm_pages: usize,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        Self {
            direct_io_path: None,
            direct_io_pages: 1024,
            uring_pages: 64,
            vm_pages: 64,
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
    /// Pages the step asked the kernel to pin (0 when skipped).
    pub pages: u64,
    pub outcome: StepOutcome,
}

#[derive(Debug, Clone)]
pub struct WorkloadReport {
    pub steps: Vec<StepReport>,
}

impl WorkloadReport {
    /// Sum of `pages` over the steps that ran: the expected pin (and unpin) count.
    pub fn pinned_pages(&self) -> u64 {
        self.steps
            .iter()
            .filter(|s| s.outcome == StepOutcome::Ran)
            .map(|s| s.pages)
            .sum()
    }
}

/// Runs the three steps in order. A step that cannot run here is reported as skipped; a step
/// that fails midway is an error (with the step, the syscall and the errno in its context).
/// Every pin a step takes is released before the step returns.
pub fn run(opts: &WorkloadOptions) -> Result<WorkloadReport> {
    let page = page_size()?;
    let steps = vec![
        direct_io_step(opts, page).with_context(|| format!("workload step {STEP_DIRECT_IO}"))?,
        uring_step(opts.uring_pages, page)
            .with_context(|| format!("workload step {STEP_URING}"))?,
        vm_readv_step(opts.vm_pages, page)
            .with_context(|| format!("workload step {STEP_VM_READV}"))?,
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
fn os_error(what: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(io::Error::last_os_error()).context(what.into())
}

fn errno() -> c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn page_size() -> Result<usize> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v <= 0 {
        return Err(os_error("sysconf(_SC_PAGESIZE)"));
    }
    Ok(v as usize)
}

// ---------------------------------------------------------------------------------------------
// Anonymous, page-aligned, faulted-in buffer
// ---------------------------------------------------------------------------------------------

struct AnonBuf {
    ptr: *mut u8,
    len: usize,
}

impl AnonBuf {
    /// mmap `pages` private anonymous pages, ask for small pages, and write to every page so
    /// each one is a distinct private page (not the shared zero page).
    fn new(pages: usize, page: usize) -> Result<Self> {
        let len = pages
            .checked_mul(page)
            .ok_or_else(|| anyhow!("{pages} pages of {page} bytes overflow usize"))?;
        // SAFETY: fresh anonymous mapping, no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(os_error(format!(
                "mmap({len} bytes, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS)"
            )));
        }
        let buf = AnonBuf { ptr: p.cast(), len };
        // EINVAL means a kernel without transparent huge pages: small pages anyway.
        // SAFETY: the range is the mapping just created.
        if unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) } != 0 && errno() != libc::EINVAL {
            return Err(os_error(format!("madvise({len} bytes, MADV_NOHUGEPAGE)")));
        }
        for i in 0..pages {
            // SAFETY: i * page < len, inside the mapping.
            unsafe { ptr::write_volatile(buf.ptr.add(i * page), 0x5a) };
        }
        Ok(buf)
    }
}

impl Drop for AnonBuf {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in new().
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

// ---------------------------------------------------------------------------------------------
// Step 1: O_DIRECT read
// ---------------------------------------------------------------------------------------------

struct DirectTarget {
    fd: OwnedFd,
    what: String,
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
    let bytes = pages
        .checked_mul(page)
        .ok_or_else(|| anyhow!("{pages} pages of {page} bytes overflow usize"))?;

    let target = match &opts.direct_io_path {
        Some(p) if p.is_dir() => probe_temp_dir(p, bytes)?,
        Some(p) => probe_existing(p, bytes)?,
        None => auto_target(bytes),
    };
    let target = match target {
        Probe::Ready(t) => t,
        Probe::Unusable(why) => return Ok(skipped(STEP_DIRECT_IO, why)),
    };

    let buf = AnonBuf::new(pages, page)?;
    let fd = target.fd.as_raw_fd();
    let mut done = 0usize;
    while done < bytes {
        let want = (bytes - done).min(MAX_READ_BYTES);
        // SAFETY: buf.ptr + done .. + want lies inside buf, which outlives the call.
        let n = unsafe { libc::pread(fd, buf.ptr.add(done).cast(), want, done as libc::off_t) };
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
    Ok(ran(STEP_DIRECT_IO, pages))
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
    let path = dir.join(format!(
        ".gup-trace-workload.{}.{nanos}",
        std::process::id()
    ));
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
// Step 2: io_uring fixed buffers
// ---------------------------------------------------------------------------------------------

// When are the pins released? IORING_UNREGISTER_BUFFERS is synchronous on every kernel with
// the opcode: 5.13-6.x quiesce the buffer table (wait for in-flight users and the rsrc put
// work) and 6.x newer kernels free the table inline, and either way the pages are unpinned
// (unpin_user_pages / unpin_user_folio) before the syscall returns. What is asynchronous is
// ring teardown: close() of the ring fd only queues io_ring_exit_work on a workqueue, and that
// work unpins whatever is still registered, possibly after we return. So we unregister
// explicitly (after which the ring holds no user pages: the SQ/CQ rings are kernel memory, the
// crate does not use IORING_SETUP_NO_MMAP) and then drop the ring, which munmaps the rings and
// closes the fd before this step returns. If unregistering fails, the step fails; the pins are
// then released by the kernel's exit work at some later time.
fn uring_step(pages: usize, page: usize) -> Result<StepReport> {
    if pages == 0 {
        return Ok(skipped(STEP_URING, "0 pages requested"));
    }
    // Declared before the ring so it outlives it on every path.
    let buf = AnonBuf::new(pages, page)?;
    let ring = match io_uring::IoUring::new(8) {
        Ok(r) => r,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) => {
            return Ok(skipped(
                STEP_URING,
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
    drop(buf);
    Ok(ran(STEP_URING, pages))
}

// ---------------------------------------------------------------------------------------------
// Step 3: process_vm_readv from a forked child
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

/// The forked child. The parent may be a multi-threaded program, so only async-signal-safe
/// calls are allowed here: plain memory writes, close, read, write, _exit. No allocation, no
/// Rust std I/O, nothing that can panic.
unsafe fn child_main(
    words: *mut u64,
    nwords: usize,
    ready_w: RawFd,
    go_r: RawFd,
    go_w: RawFd,
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
        libc::_exit(0);
    }
}

/// Releases and reaps the child on every path.
struct Child {
    pid: libc::pid_t,
    go_w: Option<OwnedFd>,
    reaped: bool,
}

impl Child {
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
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.finish();
        }
    }
}

fn vm_readv_step(pages: usize, page: usize) -> Result<StepReport> {
    if pages == 0 {
        return Ok(skipped(STEP_VM_READV, "0 pages requested"));
    }
    // Allocated and faulted in before fork: same address in the child, which then gets its
    // own copies of the pages when it writes the pattern.
    let remote = AnonBuf::new(pages, page)?;
    let len = remote.len;
    let nwords = len / 8;
    let mut local = vec![0u8; len];
    let (ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let words = remote.ptr.cast::<u64>();
    let (ready_w_raw, go_r_raw, go_w_raw) =
        (ready_w.as_raw_fd(), go_r.as_raw_fd(), go_w.as_raw_fd());

    // SAFETY: the child only runs child_main, which is async-signal-safe.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(os_error("fork()"));
    }
    if pid == 0 {
        // SAFETY: words..words+nwords is the (copied) mapping; the fds are inherited.
        unsafe { child_main(words, nwords, ready_w_raw, go_r_raw, go_w_raw) };
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
            break;
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

    let liov = libc::iovec {
        iov_base: local.as_mut_ptr().cast(),
        iov_len: len,
    };
    let riov = libc::iovec {
        iov_base: remote.ptr.cast(),
        iov_len: len,
    };
    // SAFETY: liov describes `local`; riov is an address in the child, checked by the kernel.
    let n = unsafe { libc::process_vm_readv(pid, &liov, 1, &riov, 1, 0) };
    if n < 0 {
        let e = errno();
        let err = os_error(format!(
            "process_vm_readv(pid {pid}, {len} bytes at {:p})",
            remote.ptr
        ));
        child.finish()?;
        return match e {
            libc::ENOSYS => Ok(skipped(
                STEP_VM_READV,
                "process_vm_readv not available (CONFIG_CROSS_MEMORY_ATTACH off)",
            )),
            libc::EPERM => Ok(skipped(
                STEP_VM_READV,
                format!("process_vm_readv not permitted (ptrace policy / LSM): {err:#}"),
            )),
            _ => Err(err),
        };
    }
    if n as usize != len {
        bail!("process_vm_readv(pid {pid}) read {n} of {len} bytes");
    }
    for (i, w) in local.chunks_exact(8).enumerate() {
        let got = u64::from_ne_bytes(w.try_into().expect("8-byte chunk"));
        let want = VM_PATTERN ^ i as u64;
        if got != want {
            bail!("process_vm_readv(pid {pid}): word {i} is {got:#018x}, child wrote {want:#018x}");
        }
    }
    let status = child.finish()?;
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("child {pid} did not exit cleanly (wait status {status:#x})");
    }
    drop(remote);
    Ok(ran(STEP_VM_READV, pages))
}
