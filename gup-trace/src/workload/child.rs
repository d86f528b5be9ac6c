//! Other processes' memory: a forked child that fills its copy of a buffer with a known
//! pattern and waits, and process_vm_readv/writev between this process and another.

use std::ffi::c_int;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

use anyhow::{Result, bail};

use super::memory::AnonBuf;
use super::sys::{errno, os_error};

/// Pattern the forked children write: word i holds `VM_PATTERN ^ i`.
pub(super) const VM_PATTERN: u64 = 0x6775_702d_7472_6163; // "gup-trac"
/// Pattern process_vm_writev writes into the child: word i holds `VM_WRITE_PATTERN ^ i`.
pub(super) const VM_WRITE_PATTERN: u64 = !VM_PATTERN;
/// Exit status of a child that found something else than `VM_WRITE_PATTERN` in its buffer.
const CHILD_MISMATCH: c_int = 3;

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
pub(super) struct Child {
    pub(super) pid: libc::pid_t,
    go_w: Option<OwnedFd>,
    reaped: bool,
}

impl Child {
    /// Forks a child running [`child_main`] on its copy of `remote` and waits until it has
    /// written its pattern.
    pub(super) fn spawn(remote: &AnonBuf, check_written: bool) -> Result<Child> {
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
    pub(super) fn finish(&mut self) -> Result<c_int> {
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
    pub(super) fn finish_clean(&mut self) -> Result<()> {
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
pub(super) fn check_pattern(bytes: &[u8], pattern: u64, what: &str) -> Result<()> {
    for (i, w) in bytes.as_chunks::<8>().0.iter().enumerate() {
        let got = u64::from_ne_bytes(*w);
        let want = pattern ^ i as u64;
        if got != want {
            bail!("{what}: word {i} is {got:#018x}, the child wrote {want:#018x}");
        }
    }
    Ok(())
}

/// Which way process_vm_{readv,writev} copies.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum VmCopy {
    Read,
    Write,
}

/// One process_vm_readv (into `local`) or process_vm_writev (from it) of `local.len()` bytes
/// at `remote` in process `pid`; the syscall's return value.
pub(super) fn process_vm_copy(
    way: VmCopy,
    pid: libc::pid_t,
    local: &mut [u8],
    remote: *mut u8,
) -> isize {
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
