//! An io_uring whose pins outlive the process that took them: it registers fixed buffers (the
//! kernel pins them with FOLL_LONGTERM), passes the ring's fd to a child and exits. The ring,
//! and the pins, live on with the child until it closes the fd; then io_uring's exit work (a
//! kworker) releases them.
//!
//! The ring goes over a unix socket (SCM_RIGHTS) where the kernel allows it. Kernels with the
//! 2024 unix-GC rework refuse io_uring fds in SCM_RIGHTS (sendmsg: EINVAL); there the child uses
//! its inherited copy instead: the same ring, the same pins, handed over at fork. `gup-trace
//! check` must report the pins as orphaned while the child holds them past the grace period, and
//! nothing when the child lets go in time.

use std::{
    io::Write as _,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    os::unix::process::CommandExt as _,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use super::memory::AnonBuf;
use crate::kernel::page_size;

/// The child's end of the socket.
const HOLDER_FD: RawFd = 3;
/// The ring, inherited by the child, for kernels that refuse it over the socket.
const INHERITED_RING_FD: RawFd = 4;

/// How the child got the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handover {
    ScmRights,
    /// sendmsg refused the io_uring fd (EINVAL): the child kept its inherited copy.
    Inherited,
}

/// Pins `pages` pages as io_uring fixed buffers, hands the ring to a child that holds it for
/// `hold`, and returns (the caller exits) once the child has it.
pub fn hand_off(pages: usize, hold: Duration) -> Result<(u32, Handover)> {
    let page = page_size();
    let buf = AnonBuf::new(pages, page)?;
    let ring = io_uring::IoUring::new(8).context("io_uring_setup(8 entries)")?;
    let iovec = libc::iovec {
        iov_base: buf.ptr.cast(),
        iov_len: buf.len,
    };
    // SAFETY: the iovec describes `buf`; the kernel pins its pages, so they stay valid for the
    // ring even after `buf` is unmapped.
    unsafe { ring.submitter().register_buffers(&[iovec]) }
        .context("io_uring_register(IORING_REGISTER_BUFFERS)")?;

    let (ours, theirs) = socket_pair()?;
    let exe = std::env::current_exe().context("cannot find gup-trace's own executable")?;
    let (theirs_fd, ring_fd) = (theirs.as_raw_fd(), ring.as_raw_fd());
    let mut holder = Command::new(exe);
    holder
        .args(["workload", "ring-holder", "--hold"])
        .arg(hold.as_secs_f64().to_string())
        .stdin(Stdio::null());
    // SAFETY: dup2 is async-signal-safe.
    unsafe {
        holder.pre_exec(move || {
            for (from, to) in [(theirs_fd, HOLDER_FD), (ring_fd, INHERITED_RING_FD)] {
                if libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = holder.spawn().context("cannot start the ring holder")?;
    drop(theirs);
    let handover = match send_fd(&ours, Some(ring_fd)) {
        Ok(()) => Handover::ScmRights,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            send_fd(&ours, None).context("cannot tell the ring holder to keep its copy")?;
            Handover::Inherited
        }
        Err(e) => return Err(e).context("sendmsg(SCM_RIGHTS) of the ring"),
    };
    // The holder acknowledges once it has the ring: only then may our copy go.
    let mut ack = [0u8; 1];
    // SAFETY: reading one byte into a valid buffer from our socket.
    if unsafe { libc::read(ours.as_raw_fd(), ack.as_mut_ptr().cast(), 1) } != 1 {
        bail!("the ring holder did not take the ring");
    }
    drop(ring);
    drop(buf);
    Ok((child.id(), handover))
}

/// The child's side: takes the ring, acknowledges, holds it for `hold`, closes it.
pub fn hold_ring(hold: Duration) -> Result<()> {
    // SAFETY: the parent put our end of the socket at HOLDER_FD before exec.
    let socket = unsafe { OwnedFd::from_raw_fd(HOLDER_FD) };
    // SAFETY: the parent put the ring at INHERITED_RING_FD before exec.
    let inherited = unsafe { OwnedFd::from_raw_fd(INHERITED_RING_FD) };
    let ring = recv_fd(&socket)?.unwrap_or(inherited);
    // SAFETY: one byte from a valid buffer.
    if unsafe { libc::write(socket.as_raw_fd(), [1u8].as_ptr().cast(), 1) } != 1 {
        bail!("cannot acknowledge the ring");
    }
    let _ = writeln!(
        std::io::stdout(),
        "ring-holder: holding the ring for {:.1} s",
        hold.as_secs_f64()
    );
    std::thread::sleep(hold);
    drop(ring);
    Ok(())
}

fn socket_pair() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills two fds on success.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error()).context("socketpair(AF_UNIX)");
    }
    // SAFETY: fresh fds, owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Room for one fd in a control message.
#[repr(C)]
union FdControl {
    buf: [u8; 64],
    _align: libc::cmsghdr,
}

fn one_byte(byte: &mut [u8; 1]) -> libc::iovec {
    libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    }
}

/// A message of the one `iov`, without control data yet.
fn message(iov: &mut libc::iovec) -> libc::msghdr {
    // SAFETY: msghdr is plain data, all-zero is its empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg
}

/// Sends one byte, with `fd` attached when given.
fn send_fd(socket: &OwnedFd, fd: Option<RawFd>) -> std::io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = one_byte(&mut byte);
    let mut control = FdControl { buf: [0; 64] };
    // SAFETY: the cmsg macros write inside `control`, which is big enough and aligned for one
    // cmsghdr with one int.
    unsafe {
        let mut msg = message(&mut iov);
        if let Some(fd) = fd {
            msg.msg_control = control.buf.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as usize;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
        if libc::sendmsg(socket.as_raw_fd(), &msg, 0) != 1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receives one byte and the fd attached to it, if any.
fn recv_fd(socket: &OwnedFd) -> Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = one_byte(&mut byte);
    let mut control = FdControl { buf: [0; 64] };
    // SAFETY: as in send_fd; the fd read out of the message is ours to own.
    unsafe {
        let mut msg = message(&mut iov);
        msg.msg_control = control.buf.as_mut_ptr().cast();
        msg.msg_controllen = control.buf.len();
        if libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) != 1 {
            return Err(std::io::Error::last_os_error()).context("recvmsg(SCM_RIGHTS)");
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Ok(None);
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
        Ok(Some(OwnedFd::from_raw_fd(fd)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_descriptor_crosses_the_socket() {
        let (a, b) = socket_pair().unwrap();
        let file = std::fs::File::open("/proc/self/status").unwrap();
        send_fd(&a, Some(file.as_raw_fd())).unwrap();
        let got = recv_fd(&b).unwrap().expect("an fd");
        let mut text = String::new();
        use std::io::Read as _;
        std::fs::File::from(got).read_to_string(&mut text).unwrap();
        assert!(text.starts_with("Name:"), "{text}");
        send_fd(&a, None).unwrap();
        assert!(recv_fd(&b).unwrap().is_none(), "a plain byte carries no fd");
    }
}
