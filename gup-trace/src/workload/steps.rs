//! The selftest's ten steps ([`super::plan`] lists them, in order, with what each makes the
//! kernel do): each builds its memory and target from the modules beside it, makes the kernel
//! pin (or reference) a known number of pages, releases them, and returns that number, or why
//! it could not run here.

use std::ffi::{CString, c_int};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::anyhow;

use super::child::{Child, VM_PATTERN, VM_WRITE_PATTERN, VmCopy, check_pattern, process_vm_copy};
use super::direct_io::{direct_io_target, probe_temp_file, read_direct};
use super::error::{Outcome, WorkloadError, unavailable};
use super::huge_pages::{HUGETLB_DIR, HUGETLB_SIZE, HugetlbPool, check_thp_backed, thp_size};
use super::memory::{AnonBuf, FileMap, make_cold};
use super::plan::{STEP_VM_READV, STEP_VM_WRITEV, STEP_ZERO_PAGE, WorkloadOptions};
use super::sys::{byte_len, cpath, errno, os_error};
use super::uring::uring_register_cycle;

/// Step 1: O_DIRECT read into fresh anonymous memory.
pub(super) fn direct_io_step(opts: &WorkloadOptions, page: usize) -> Outcome<usize> {
    let pages = opts.direct_io_pages;
    if pages == 0 {
        return unavailable("0 pages requested");
    }
    let bytes = byte_len(pages, page)?;

    let target = direct_io_target(opts.direct_io_path.as_deref(), bytes)?;

    let buf = AnonBuf::new(pages, page)?;
    // SAFETY: buf is `bytes` long and outlives the reads.
    unsafe { read_direct(&target, buf.ptr, bytes, page) }?;
    Ok(pages)
}

/// Step 2: io_uring fixed buffers on small pages.
pub(super) fn uring_step(pages: usize, page: usize) -> Outcome<usize> {
    if pages == 0 {
        return unavailable("0 pages requested");
    }
    let buf = AnonBuf::new(pages, page)?;
    uring_register_cycle(&buf, pages)?;
    Ok(pages)
}

/// Step 3: io_uring fixed buffers on PMD-sized transparent huge pages, when they all form.
pub(super) fn uring_thp_step(hugepages: usize, page: usize) -> Outcome<usize> {
    if hugepages == 0 {
        return unavailable("0 huge pages requested");
    }
    let hp = thp_size(page)?;
    let len = hugepages
        .checked_mul(hp)
        .ok_or_else(|| anyhow!("{hugepages} huge pages of {hp} bytes overflow usize"))?;
    let buf = AnonBuf::thp(len, hp, page)?;
    check_thp_backed(&buf)?;
    uring_register_cycle(&buf, len / page)?;
    Ok(len / page)
}

/// Step 4: io_uring fixed buffers on 2 MiB hugetlb pages, the pool grown for the step if need
/// be.
pub(super) fn uring_hugetlb_step(hugepages: usize, page: usize) -> Outcome<usize> {
    if hugepages == 0 {
        return unavailable("0 huge pages requested");
    }
    if !Path::new(HUGETLB_DIR).is_dir() {
        return unavailable(format!(
            "no 2 MiB hugetlb pool: {HUGETLB_DIR} does not exist (CONFIG_HUGETLBFS off?)"
        ));
    }
    let len = hugepages
        .checked_mul(HUGETLB_SIZE)
        .ok_or_else(|| anyhow!("{hugepages} huge pages of 2 MiB overflow usize"))?;
    let pool = HugetlbPool::ensure(hugepages as u64)?;
    let pages = AnonBuf::hugetlb(len, page).and_then(|buf| {
        uring_register_cycle(&buf, len / page)?;
        drop(buf); // back to the pool before the pool shrinks
        Ok(len / page)
    });
    let restored = pool.restore();
    // A failure wins over a failure to shrink the pool back, which wins over a skip.
    if let Err(WorkloadError::Failed(_)) = pages {
        return pages;
    }
    restored?;
    pages
}

/// Turns a failed process_vm_readv/writev of step `name` (errno `e`, error `err`) into a skip
/// or an error.
fn vm_rw_failure(name: &str, e: c_int, err: anyhow::Error) -> WorkloadError {
    match e {
        libc::ENOSYS => WorkloadError::Unavailable(format!(
            "{name} not available (CONFIG_CROSS_MEMORY_ATTACH off)"
        )),
        libc::EPERM => WorkloadError::Unavailable(format!(
            "{name} not permitted (ptrace policy / LSM): {err:#}"
        )),
        _ => WorkloadError::Failed(err),
    }
}

/// process_vm_readv or process_vm_writev of a child's buffer. Only the child's pages are
/// pinned: the local side is copied with copy_{to,from}_user. A read is checked here; a write
/// is checked by the child itself, since reading it back through the kernel would pin the
/// pages once more. Steps 5 and 6.
pub(super) fn vm_copy_step(way: VmCopy, pages: usize, page: usize) -> Outcome<usize> {
    let (step, syscall) = match way {
        VmCopy::Read => (STEP_VM_READV, "process_vm_readv"),
        VmCopy::Write => (STEP_VM_WRITEV, "process_vm_writev"),
    };
    if pages == 0 {
        return unavailable("0 pages requested");
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
        return Err(vm_rw_failure(step, e, err));
    }
    if n as usize != len {
        return Err(anyhow!("{syscall}(pid {pid}) copied {n} of {len} bytes").into());
    }
    if way == VmCopy::Read {
        check_pattern(&local, VM_PATTERN, &format!("{syscall}(pid {pid})"))?;
    }
    child.finish_clean()?;
    drop(remote);
    Ok(pages)
}

/// FOLL_GET, not FOLL_PIN: `/proc/<pid>/mem` copies page by page through access_remote_vm,
/// which takes a plain reference on each page (get_user_pages_remote) and drops it again.
/// Step 7.
pub(super) fn proc_mem_step(pages: usize, page: usize) -> Outcome<usize> {
    if pages == 0 {
        return unavailable("0 pages requested");
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
            libc::EACCES | libc::EPERM => unavailable(format!(
                "{path} not readable (ptrace policy / LSM): {err:#}"
            )),
            _ => Err(err.into()),
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
            ))
            .into());
        }
        if n == 0 {
            return Err(
                anyhow!("pread({path}) read {done} of {len} bytes, then end of file").into(),
            );
        }
        done += n as usize;
    }
    drop(fd);
    check_pattern(&local, VM_PATTERN, &format!("pread({path})"))?;
    child.finish_clean()?;
    drop(remote);
    Ok(pages)
}

/// Step 8: O_DIRECT read into a cold MAP_PRIVATE file mapping, whose faults drop mmap_lock.
/// The target is the `o_direct_read` one: it is read from offset 0, and the part mapped (the
/// destination) is its last `pages` whole pages (holding at least twice that, the two never
/// overlap; the end of a disk is also the part least likely to hold a file system's busy
/// metadata, which would stay cached).
pub(super) fn lock_drop_step(opts: &WorkloadOptions, page: usize) -> Outcome<usize> {
    let pages = opts.lock_drop_pages;
    if pages == 0 {
        return unavailable("0 pages requested");
    }
    let bytes = byte_len(pages, page)?;
    let need = bytes
        .checked_mul(2)
        .ok_or_else(|| anyhow!("{pages} pages of {page} bytes, twice, overflow usize"))?;
    let target = direct_io_target(opts.direct_io_path.as_deref(), need)?;
    // O_DIRECT applies to read() and write(), not to mmap: the same fd maps through the page
    // cache.
    let fd = target.fd.as_raw_fd();
    // SAFETY: plain syscall on an owned fd (the reads use pread, the position is irrelevant).
    let end = unsafe { libc::lseek(fd, 0, libc::SEEK_END) };
    if end < 0 {
        return Err(os_error(format!("lseek({}, 0, SEEK_END)", target.what)).into());
    }
    let offset = (end as usize / page) * page - bytes;
    let map = FileMap::private(fd, bytes, offset, &target.what)?;
    // No read-around: every page's fault reads that page (and drops the lock) itself.
    // SAFETY: the range is the mapping just created.
    if unsafe { libc::madvise(map.ptr.cast(), bytes, libc::MADV_RANDOM) } != 0 {
        return Err(os_error(format!("madvise({bytes} bytes, MADV_RANDOM)")).into());
    }
    make_cold(fd, &map, offset, page, &target.what)?;
    // SAFETY: the mapping is `bytes` long, writable, and outlives the reads.
    unsafe { read_direct(&target, map.ptr, bytes, page) }?;
    drop(map);
    Ok(pages)
}

/// Step 9: process_vm_readv of our own untouched anonymous memory: GUP faults in (read) and
/// pins the shared zero page. The copy must come back as zeroes.
pub(super) fn zero_page_step(pages: usize, page: usize) -> Outcome<usize> {
    if pages == 0 {
        return unavailable("0 pages requested");
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
        return Err(vm_rw_failure(STEP_ZERO_PAGE, e, err));
    }
    if n as usize != len {
        return Err(anyhow!("process_vm_readv(own pid {pid}) copied {n} of {len} bytes").into());
    }
    if let Some(i) = local.iter().position(|&b| b != 0) {
        return Err(anyhow!(
            "process_vm_readv of untouched memory read {:#04x} at byte {i}, not 0",
            local[i]
        )
        .into());
    }
    drop(remote);
    Ok(pages)
}

/// FAT (msdos, vfat) reads and writes O_DIRECT through fs/direct-io.c. exFAT, UDF, HFS+ and a
/// few others do too, but only FAT was measured here.
// MSDOS_SUPER_MAGIC has different integer types on different targets.
#[allow(clippy::unnecessary_cast)]
const LEGACY_DIO_FS: [(i64, &str); 1] = [(libc::MSDOS_SUPER_MAGIC as i64, "FAT")];

/// Step 10: O_DIRECT read of a temporary file in `opts.legacy_dio_dir` (a FAT file system):
/// the legacy direct I/O code, which adds pins with `folio_add_pin`.
pub(super) fn legacy_dio_step(opts: &WorkloadOptions, page: usize) -> Outcome<usize> {
    let pages = opts.legacy_dio_pages;
    let Some(dir) = opts.legacy_dio_dir.as_deref() else {
        return unavailable("no directory on a FAT file system given (--legacy-dio-dir)");
    };
    if pages == 0 {
        return unavailable("0 pages requested");
    }
    let bytes = byte_len(pages, page)?;
    let c = cpath(dir)?;
    // SAFETY: statfs is plain data; statfs fills it from a valid NUL-terminated path.
    let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut sfs) } != 0 {
        return Err(os_error(format!("statfs({})", dir.display())).into());
    }
    // f_type has different integer types on different targets.
    #[allow(clippy::unnecessary_cast)]
    let f_type = sfs.f_type as i64;
    if !LEGACY_DIO_FS.iter().any(|&(magic, _)| magic == f_type) {
        return unavailable(format!(
            "{} is not on a file system known to use fs/direct-io.c ({}; its f_type is \
             {f_type:#x})",
            dir.display(),
            LEGACY_DIO_FS.map(|(_, n)| n).join(", ")
        ));
    }
    // An 8.3 name: the msdos flavour of FAT takes no other.
    let file = dir.join(format!("GT{:06}.TMP", std::process::id() % 1_000_000));
    let target = probe_temp_file(&file, bytes)?;
    let buf = AnonBuf::new(pages, page)?;
    // SAFETY: buf is `bytes` long and outlives the reads.
    unsafe { read_direct(&target, buf.ptr, bytes, page) }?;
    Ok(pages)
}
