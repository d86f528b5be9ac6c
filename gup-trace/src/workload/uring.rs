//! io_uring fixed buffers: registering a buffer with a new ring (the kernel pins it with
//! FOLL_LONGTERM) and unregistering it again before returning.

use std::ffi::c_void;

use anyhow::Context;

use super::error::{Outcome, unavailable};
use super::memory::AnonBuf;

/// io_uring refuses registered buffers larger than 1 GiB each.
const MAX_URING_IOVEC_BYTES: usize = 1 << 30;

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
/// `buf` belongs to the caller and outlives the ring. Unavailable without io_uring.
pub(super) fn uring_register_cycle(buf: &AnonBuf, pages: usize) -> Outcome<()> {
    let ring = match io_uring::IoUring::new(8) {
        Ok(r) => r,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) => {
            return unavailable(format!(
                "io_uring unavailable: io_uring_setup: {e} \
                 (CONFIG_IO_URING off, kernel.io_uring_disabled, or seccomp)"
            ));
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context("io_uring_setup(8 entries)")
                .into());
        }
    };
    let registered = register_unregister(&ring, buf, pages);
    drop(ring);
    Ok(registered?)
}

/// Registers `buf` (`pages` small pages) as the fixed buffers of `ring` (the kernel pins them
/// with FOLL_LONGTERM) and unregisters them (unpinned before the call returns).
pub(super) fn register_unregister(
    ring: &io_uring::IoUring,
    buf: &AnonBuf,
    pages: usize,
) -> anyhow::Result<()> {
    let iovecs: Vec<libc::iovec> = (0..buf.len)
        .step_by(MAX_URING_IOVEC_BYTES)
        .map(|off| libc::iovec {
            // SAFETY: off < buf.len.
            iov_base: unsafe { buf.ptr.add(off) }.cast::<c_void>(),
            iov_len: (buf.len - off).min(MAX_URING_IOVEC_BYTES),
        })
        .collect();
    // SAFETY: the iovecs describe `buf`, which the caller keeps mapped while it is registered.
    if let Err(e) = unsafe { ring.submitter().register_buffers(&iovecs) } {
        let hint = if e.raw_os_error() == Some(libc::ENOMEM) {
            " (without CAP_IPC_LOCK the pages count against RLIMIT_MEMLOCK)"
        } else {
            ""
        };
        return Err(anyhow::Error::new(e).context(format!(
            "io_uring_register(IORING_REGISTER_BUFFERS, {} iovec(s), {pages} pages){hint}",
            iovecs.len()
        )));
    }
    ring.submitter()
        .unregister_buffers()
        .context("io_uring_register(IORING_UNREGISTER_BUFFERS)")
}
