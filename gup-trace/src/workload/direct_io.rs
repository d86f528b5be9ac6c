//! O_DIRECT read targets: a block device or a file whose reads really go to disk (and so pin
//! the destination pages), chosen automatically or given, probed, and read page by page.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};

use super::error::{Outcome, unavailable};
use super::sys::{cpath, errno, os_error};

/// Block devices tried, in order, when no `direct_io_path` is given.
const AUTO_DEVICES: [&str; 3] = ["/dev/nvme0n1", "/dev/vda", "/dev/sda"];
/// Directories tried, in order, for a temporary O_DIRECT file when no device is usable.
const AUTO_TEMP_DIRS: [&str; 2] = [".", "/var/tmp"];
/// Largest single O_DIRECT read; the default 1024 pages are one read.
const MAX_READ_BYTES: usize = 64 << 20;

/// An open O_DIRECT read target.
pub(super) struct DirectTarget {
    pub(super) fd: OwnedFd,
    /// The path, for messages.
    pub(super) what: String,
}

impl DirectTarget {
    /// One O_DIRECT pread of `want` bytes at `offset` into `dst`, again when interrupted; the
    /// bytes it read.
    ///
    /// # Safety
    /// `dst .. dst + want` must be writable memory of this process.
    pub(super) unsafe fn pread(&self, dst: *mut u8, want: usize, offset: u64) -> Result<usize> {
        loop {
            // SAFETY: the caller's promise.
            let n = unsafe {
                libc::pread(self.fd.as_raw_fd(), dst.cast(), want, offset as libc::off_t)
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            if errno() != libc::EINTR {
                return Err(os_error(format!(
                    "pread(O_DIRECT, {want} bytes at offset {offset}) from {}",
                    self.what
                )));
            }
        }
    }

    /// The error for a [`DirectTarget::pread`] of `want` bytes at `offset` that read `n` bytes,
    /// which its caller did not expect.
    pub(super) fn short_read(&self, want: usize, offset: u64, n: usize) -> anyhow::Error {
        anyhow!(
            "pread(O_DIRECT, {want} bytes at offset {offset}) from {} returned {n} bytes",
            self.what
        )
    }
}

/// O_DIRECT reads of `bytes` bytes from offset 0 of `target` into `dst`, in whole pages.
///
/// # Safety
/// `dst .. dst + bytes` must be writable memory of this process.
pub(super) unsafe fn read_direct(
    target: &DirectTarget,
    dst: *mut u8,
    bytes: usize,
    page: usize,
) -> Result<()> {
    let mut done = 0usize;
    while done < bytes {
        let want = (bytes - done).min(MAX_READ_BYTES);
        // SAFETY: dst + done .. + want lies inside the caller's buffer.
        let n = unsafe { target.pread(dst.add(done), want, done as u64) }?;
        if n == 0 || !n.is_multiple_of(page) {
            return Err(target.short_read(want, done as u64, n));
        }
        done += n;
    }
    Ok(())
}

/// Opens an O_DIRECT read target holding at least `bytes` bytes, chosen as for the
/// `o_direct_read` step ([`super::WorkloadOptions::direct_io_path`]). Unavailable when there is
/// none.
pub(super) fn direct_io_target(path: Option<&Path>, bytes: usize) -> Outcome<DirectTarget> {
    match path {
        Some(p) if p.is_dir() => probe_temp_dir(p, bytes),
        Some(p) => probe_existing(p, bytes),
        None => auto_target(bytes),
    }
}

/// The first usable of [`AUTO_DEVICES`], else a temporary file in one of [`AUTO_TEMP_DIRS`];
/// unavailable (saying why each was not) when there is none.
fn auto_target(bytes: usize) -> Outcome<DirectTarget> {
    let mut tried = Vec::new();
    for dev in AUTO_DEVICES {
        let path = Path::new(dev);
        if !path.exists() {
            continue;
        }
        match probe_existing(path, bytes) {
            Ok(t) => return Ok(t),
            Err(e) => tried.push(e.into_reason()),
        }
    }
    if tried.is_empty() {
        tried.push(format!("none of {} exists", AUTO_DEVICES.join(", ")));
    }
    for dir in AUTO_TEMP_DIRS {
        match probe_temp_dir(Path::new(dir), bytes) {
            Ok(t) => return Ok(t),
            Err(e) => tried.push(e.into_reason()),
        }
    }
    unavailable(format!("no O_DIRECT-capable target: {}", tried.join("; ")))
}

/// Opens `path` read-only with O_DIRECT. Unavailable when O_DIRECT is refused (EINVAL).
fn open_direct(path: &Path) -> Outcome<OwnedFd> {
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
            return unavailable(format!(
                "{}: open with O_DIRECT fails with EINVAL",
                path.display()
            ));
        }
        return Err(os_error(format!("open({}, O_RDONLY|O_DIRECT)", path.display())).into());
    }
    // SAFETY: fd was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Refuses targets whose O_DIRECT reads would not pin: tmpfs (6.6+ accepts O_DIRECT but copies).
fn check_fs(fd: RawFd, what: &str) -> Outcome<()> {
    // SAFETY: statfs is plain data; fstatfs fills it.
    let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(fd, &mut sfs) } != 0 {
        return Err(os_error(format!("fstatfs({what})")).into());
    }
    // f_type and TMPFS_MAGIC have different integer types on different targets.
    #[allow(clippy::unnecessary_cast)]
    if sfs.f_type as i64 == libc::TMPFS_MAGIC as i64 {
        return unavailable(format!(
            "{what} is on tmpfs, whose O_DIRECT copies without pinning"
        ));
    }
    Ok(())
}

/// A block device or regular file that must already hold `bytes` bytes (it is only read).
fn probe_existing(path: &Path, bytes: usize) -> Outcome<DirectTarget> {
    let fd = open_direct(path)?;
    let what = path.display().to_string();
    // SAFETY: stat is plain data; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(os_error(format!("fstat({what})")).into());
    }
    let size = match st.st_mode & libc::S_IFMT {
        libc::S_IFBLK => {
            // SAFETY: plain syscall on an owned fd (pread is used later, position is irrelevant).
            let end = unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_END) };
            if end < 0 {
                return Err(os_error(format!("lseek({what}, 0, SEEK_END)")).into());
            }
            end as u64
        }
        libc::S_IFREG => {
            check_fs(fd.as_raw_fd(), &what)?;
            st.st_size as u64
        }
        _ => {
            return unavailable(format!("{what} is not a block device or regular file"));
        }
    };
    if size < bytes as u64 {
        return unavailable(format!("{what} holds {size} bytes, {bytes} needed"));
    }
    Ok(DirectTarget { fd, what })
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
fn probe_temp_dir(dir: &Path, bytes: usize) -> Outcome<DirectTarget> {
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
pub(super) fn probe_temp_file(path: &Path, bytes: usize) -> Outcome<DirectTarget> {
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
        return Err(os_error(format!("open({}, O_CREAT|O_EXCL)", path.display())).into());
    }
    let _unlink = Unlink(path.clone());
    // SAFETY: fd was just returned by open and is owned by nobody else.
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    check_fs(file.as_raw_fd(), &path.display().to_string())?;
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
    let fd = open_direct(&path)?;
    Ok(DirectTarget {
        fd,
        what: format!("temporary file {}", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::error::WorkloadError;

    #[test]
    fn a_target_too_small_is_unavailable_and_a_missing_one_an_error() {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("gup-trace-direct-io-test.{}", std::process::id()));
        std::fs::write(&path, b"abc").unwrap();
        let small = direct_io_target(Some(&path), 1 << 20);
        std::fs::remove_file(&path).unwrap();
        // "holds 3 bytes, ... needed", or where the directory is tmpfs, why that will not do.
        assert!(
            matches!(small, Err(WorkloadError::Unavailable(_))),
            "{:?}",
            small.map(|t| t.what)
        );

        let missing = direct_io_target(Some(&dir.join("gup-trace-no-such-file")), 4096);
        assert!(
            matches!(missing, Err(WorkloadError::Failed(_))),
            "{:?}",
            missing.map(|t| t.what)
        );
    }
}
