//! The server's notify socket at the system-call level (Linux): the
//! kernel's word on who sent each datagram (`SO_PASSCRED`), and the
//! descriptors a sender passes along (`systemd-notify`'s barrier).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::check;

/// Who sent a datagram, as the kernel tells it (`SCM_CREDENTIALS`), in our
/// PID namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender {
    /// 0 when the sender has already been reaped: it cannot be attributed.
    pub pid: i32,
    pub uid: u32,
}

/// One datagram taken off the socket.
#[derive(Debug)]
pub struct Datagram {
    /// Its whole length, even when longer than the buffer (`MSG_TRUNC`).
    pub len: usize,
    pub sender: Option<Sender>,
    /// Descriptors it carried, closed when dropped. `systemd-notify` waits
    /// until the receiver closes the one it sends with `BARRIER=1`.
    pub fds: Vec<OwnedFd>,
}

/// Descriptors kept from one datagram; the kernel closes any beyond
/// (`MSG_CTRUNC`).
const MAX_FDS: usize = 8;

/// Asks the kernel to attach the sender's credentials to every datagram.
pub fn pass_credentials(fd: BorrowedFd<'_>) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `&on`, a
    // valid c_int for the duration of the call; the descriptor is borrowed
    // and open.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Takes one datagram without waiting (`WouldBlock` when none is queued):
/// its bytes into `buf` (cut to the buffer), its whole length, its sender,
/// and the descriptors it passed (close-on-exec).
pub fn recv_datagram(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Datagram> {
    // u64 elements keep the control buffer aligned for cmsghdr.
    const CONTROL_WORDS: usize = 64;
    let mut control = [0u64; CONTROL_WORDS];
    // SAFETY: CMSG_SPACE is a pure size computation.
    let needed = unsafe {
        libc::CMSG_SPACE(std::mem::size_of::<libc::ucred>() as u32)
            + libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32)
    } as usize;
    debug_assert!(needed <= std::mem::size_of_val(&control));
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = needed.min(std::mem::size_of_val(&control)) as _;
    // SAFETY: `msg` points at one iovec over `buf` and at `control`, both
    // live and writable for the call, with their true lengths; recvmsg
    // writes within them and returns the datagram's whole length
    // (MSG_TRUNC) or -1.
    let n = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            libc::MSG_DONTWAIT | libc::MSG_TRUNC | libc::MSG_CMSG_CLOEXEC,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Datagram {
        len: n as usize,
        sender: None,
        fds: Vec::new(),
    };
    // SAFETY: the CMSG_* macros walk the control buffer recvmsg filled,
    // bounded by msg_controllen; each header's data is read with
    // read_unaligned at its CMSG_DATA address, within the header's length.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let h = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            let len = h.cmsg_len as usize - (data as usize - cmsg as usize);
            if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_CREDENTIALS {
                if len >= std::mem::size_of::<libc::ucred>() {
                    let c: libc::ucred = std::ptr::read_unaligned(data.cast());
                    out.sender = Some(Sender {
                        pid: c.pid,
                        uid: c.uid,
                    });
                }
            } else if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    let raw: RawFd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    // The kernel installed it in our table for us: we own it.
                    out.fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(out)
}
