//! The terminal witness: a close-on-exec pipe and the small fork of
//! paperclipd that joins the server's process group and reports the
//! terminal's signals (`supervise::terminal`).

use std::io;

use super::{check, pid, set_signal_handler};
use std::os::fd::RawFd;

/// A pipe whose two ends are close-on-exec: (read end, write end).
pub fn pipe() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe writes two descriptors into the array we own.
    check(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (r, w) = unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    for fd in [fds[0], fds[1]] {
        // SAFETY: fcntl on descriptors we own, integer arguments only.
        check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    }
    Ok((r, w))
}

/// The descriptor the witness's signal handler writes to (set in the child
/// only, after fork).
static WITNESS_REPORTS: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// The witness's handler: reports the signal number as one byte. Only
/// async-signal-safe calls. A failed write means paperclipd is gone, and
/// the witness's loop then ends on its own.
extern "C" fn witness_report(sig: libc::c_int) {
    let fd = WITNESS_REPORTS.load(std::sync::atomic::Ordering::Relaxed);
    let byte = sig as u8;
    // SAFETY: write is async-signal-safe; the buffer is a valid local.
    unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
}

/// The witness's process name (`comm`, Linux), by which the adopted-process
/// scans know it as paperclipd's own helper, not an orphan it adopted.
pub const WITNESS_COMM: &str = "paperclipd-tty";

/// The reply to a sync request: every signal that arrived before the
/// request was reported before it.
pub const WITNESS_SYNCED: u8 = b'S';

/// Forks the terminal witness: a process that joins process group `pgid`
/// (the server's, the terminal's foreground) and reports each of `report`
/// that reaches the group as one byte on `reports`. For each byte read on
/// `requests` it writes [`WITNESS_SYNCED`] after handling any pending
/// signal. It ends when `requests` reaches end of file (paperclipd is
/// gone) or, on Linux, when paperclipd dies (parent-death signal).
///
/// The child never returns into Rust: between fork and `_exit` it calls
/// only async-signal-safe functions, since other threads' locks may be
/// held forever in the copy.
pub fn fork_witness(pgid: i32, report: &[i32], requests: RawFd, reports: RawFd) -> io::Result<i32> {
    let parent = pid();
    // SAFETY: fork has no preconditions; see the function doc for the child.
    let child = check(unsafe { libc::fork() })?;
    if child > 0 {
        // Both sides set the group (as shells do), whoever runs first.
        // SAFETY: setpgid takes plain integers.
        unsafe { libc::setpgid(child, pgid) };
        return Ok(child);
    }
    // SAFETY (the whole child): only async-signal-safe calls (close,
    // close_range, sigaction, sigprocmask, prctl, getppid, setpgid, read,
    // write, _exit) on descriptors and locals we own; never returns.
    unsafe {
        // Keep only the terminal and our two pipe ends: not the instance
        // lock, nor any socket or pipe of paperclipd's.
        let (a, b) = (requests.min(reports), requests.max(reports));
        close_between(3, a - 1);
        close_between(a + 1, b - 1);
        close_between(b + 1, i32::MAX);
        WITNESS_REPORTS.store(reports, std::sync::atomic::Ordering::Relaxed);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // The handlers inherited from paperclipd write to its own wake-up
        // pipe: replace every one of them.
        for sig in [libc::SIGTERM, libc::SIGCHLD, libc::SIGCONT, libc::SIGPIPE] {
            let _ = set_signal_handler(sig, libc::SIG_DFL);
        }
        for sig in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
            let _ = set_signal_handler(sig, libc::SIG_IGN);
        }
        for &sig in report {
            let handler: extern "C" fn(libc::c_int) = witness_report;
            let _ = set_signal_handler(sig, handler as libc::sighandler_t);
        }
        #[cfg(target_os = "linux")]
        {
            const NAME: &[u8; 15] = b"paperclipd-tty\0";
            let _ = libc::prctl(libc::PR_SET_NAME, NAME.as_ptr() as libc::c_ulong, 0, 0, 0);
        }
        #[cfg(target_os = "linux")]
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
            || libc::getppid() != parent
        {
            libc::_exit(1);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = parent;
        if libc::setpgid(0, pgid) != 0 {
            libc::_exit(2);
        }
        loop {
            let mut byte = 0u8;
            let n = libc::read(requests, (&mut byte as *mut u8).cast(), 1);
            if n == 0 {
                libc::_exit(0);
            }
            if n < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                libc::_exit(3);
            }
            // Pending signals are handled on the way back from read, so
            // their reports precede this reply.
            let reply = WITNESS_SYNCED;
            if libc::write(reports, (&reply as *const u8).cast(), 1) != 1 {
                libc::_exit(4);
            }
        }
    }
}

/// Closes descriptors `from..=to` in the witness child (async-signal-safe:
/// close_range, else close in a loop over the usual range).
///
/// # Safety
/// Only for a process that owns every descriptor in the range (the fresh
/// witness child).
// SAFETY: an unsafe fn because of the contract above; its one caller is
// the fresh witness child.
pub(super) unsafe fn close_between(from: i32, to: i32) {
    if from > to {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: close_range takes plain integers; see the function contract.
    if unsafe {
        libc::syscall(
            libc::SYS_close_range,
            from as libc::c_uint,
            to as libc::c_uint,
            0,
        )
    } == 0
    {
        return;
    }
    for fd in from..=to.min(65_535) {
        // SAFETY: see the function contract.
        unsafe { libc::close(fd) };
    }
}

/// Is `pid` a child of ours that is not reaped yet (running, stopped or a
/// zombie)? Then its pid cannot name another process. Nothing is reaped.
pub fn is_unreaped_child(pid: i32) -> bool {
    super::peek_child(pid).is_some()
}
