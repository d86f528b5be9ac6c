//! Memory the workloads hand to the kernel: private anonymous buffers (small pages, transparent
//! huge pages or hugetlb pages), faulted in or deliberately left untouched, and private file
//! mappings whose pages can be evicted from the page cache.

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::RawFd;
use std::ptr;

use anyhow::{Result, anyhow};

use super::error::{Outcome, unavailable};
use super::sys::{byte_len, errno, os_error};

/// `len` bytes at `ptr`, inside the mapping `map_ptr .. map_ptr + map_len` that drop unmaps.
pub(super) struct AnonBuf {
    pub(super) ptr: *mut u8,
    pub(super) len: usize,
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
    pub(super) fn new(pages: usize, page: usize) -> Result<Self> {
        let buf = Self::untouched(pages, page)?;
        buf.touch(page);
        Ok(buf)
    }

    /// mmap `pages` private anonymous pages and ask for small pages, without touching them:
    /// a read fault maps the shared zero page.
    pub(super) fn untouched(pages: usize, page: usize) -> Result<Self> {
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
    /// Unavailable when the kernel refuses MADV_HUGEPAGE.
    pub(super) fn thp(len: usize, hp: usize, page: usize) -> Outcome<Self> {
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
                return unavailable(
                    "madvise(MADV_HUGEPAGE) fails with EINVAL: kernel without transparent huge \
                     pages",
                );
            }
            return Err(os_error(format!("madvise({len} bytes, MADV_HUGEPAGE)")).into());
        }
        buf.touch(page);
        Ok(buf)
    }

    /// `len` bytes (a multiple of 2 MiB) of MAP_HUGETLB memory from the 2 MiB pool, written to.
    /// Unavailable when the kernel cannot provide them.
    pub(super) fn hugetlb(len: usize, page: usize) -> Outcome<Self> {
        let p = match mmap_anon(len, libc::MAP_HUGETLB | libc::MAP_HUGE_2MB) {
            Ok(p) => p,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOMEM) | Some(libc::EINVAL)) => {
                return unavailable(format!(
                    "mmap({len} bytes, MAP_HUGETLB|MAP_HUGE_2MB) fails: {e} \
                     (no hugetlb support, or too few free 2 MiB huge pages)"
                ));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!(
                        "mmap({len} bytes, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|MAP_HUGE_2MB)"
                    ))
                    .into());
            }
        };
        // Private hugetlb mappings reserve their pages at mmap, so these faults cannot fail.
        let buf = AnonBuf::whole(p, len);
        buf.touch(page);
        Ok(buf)
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

/// A file-backed MAP_PRIVATE mapping, unmapped when dropped.
pub(super) struct FileMap {
    pub(super) ptr: *mut u8,
    len: usize,
}

impl FileMap {
    /// `len` bytes of `fd` from `offset`, readable and writable (copy-on-write).
    pub(super) fn private(fd: RawFd, len: usize, offset: usize, what: &str) -> Result<Self> {
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
/// faulting them in needs I/O. Unavailable when some stay cached.
pub(super) fn make_cold(
    fd: RawFd,
    map: &FileMap,
    offset: usize,
    page: usize,
    what: &str,
) -> Outcome<()> {
    // Clean, unmapped page-cache folios go. The whole file, not just the range: on a 6.18
    // host (ext4), DONTNEED of the range alone left all 64 pages of a freshly written
    // temporary file cached (large folios reaching past the range, presumably).
    // SAFETY: plain syscall; posix_fadvise returns the error number instead of setting errno.
    let e = unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) };
    if e != 0 {
        return Err(anyhow::Error::new(io::Error::from_raw_os_error(e))
            .context(format!("posix_fadvise({what}, POSIX_FADV_DONTNEED)"))
            .into());
    }
    // Pages that are dirty, locked or mapped elsewhere survive it. (drop_caches would get
    // more of them, but it empties the whole machine's page cache: not a selftest's business.)
    let resident = map.resident(page)?;
    if resident > 0 {
        return unavailable(format!(
            "{resident} of {} pages of {what} at offset {offset} stay in the page cache after \
             POSIX_FADV_DONTNEED: faulting them in would need no I/O, so GUP would not drop \
             mmap_lock",
            map.len / page,
        ));
    }
    Ok(())
}
