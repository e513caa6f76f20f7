//! The group guard: a small fork of paperclipd that never executes
//! anything, joins the server's process group and, when paperclipd dies
//! (its pipe reaches end of file), stops that group.
//!
//! It is forked before the server, and the server's child process names
//! itself to it (its pid, written between fork and exec): so there is no
//! moment after the server's exec when a dead paperclipd leaves it
//! unguarded.
//!
//! The server's own parent-death signal is not enough: the kernel clears
//! it when the server executes a binary that grants privileges (file
//! capabilities, setuid), as `setcap cap_net_bind_service=+ep node` does.
//! The guard's membership also keeps the group id (and the server's pid,
//! the same number) from being given to anyone else while it acts: a
//! process group id is not reused while the group has a member.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::{check, is_unreaped_child, kill, pipe, reap_pid, witness::close_between};

/// The guard's process name (`comm`, Linux), by which the adopted-process
/// scans know it as paperclipd's own helper, not an orphan it adopted.
pub const GUARD_COMM: &str = "paperclipd-grd";

/// How often the guard looks whether the server is gone after SIGTERM.
const GUARD_POLL: Duration = Duration::from_millis(50);

/// A running guard. Dropping it ends it (SIGKILL, then reaped), before
/// its pipe closes: only paperclipd's death makes it act.
#[derive(Debug)]
pub struct Guard {
    pid: i32,
    /// The write end of its pipe; never written, closed by our exit.
    _alive: OwnedFd,
}

impl Guard {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The descriptor the server's child writes its pid to
    /// ([`announce_to_guard`]); close-on-exec.
    pub fn announce_fd(&self) -> RawFd {
        self._alive.as_raw_fd()
    }

    /// After the spawn: puts the guard into the server's group from this
    /// side too (as shells do), whoever runs first.
    pub fn join(&self, pgid: i32) {
        // SAFETY: setpgid takes plain integers.
        unsafe { libc::setpgid(self.pid, pgid) };
    }
}

/// In the server's child, between fork and exec (async-signal-safe, no
/// allocation): tells the guard on `fd` our pid. A failure leaves the
/// guard waiting for nothing; the parent-death signal still covers an
/// unprivileged server.
pub fn announce_to_guard(fd: RawFd) {
    if fd < 0 {
        return;
    }
    // SAFETY: getpid has no preconditions; write reads 4 bytes of a local.
    unsafe {
        let pid = libc::getpid().to_ne_bytes();
        libc::write(fd, pid.as_ptr().cast(), pid.len());
    }
}

impl Guard {
    /// Ends the guard (once the server's run is over). Idempotent: only
    /// while it is our unreaped child can its pid not be reused.
    pub fn end(&self) {
        if is_unreaped_child(self.pid) {
            let _ = kill(self.pid, libc::SIGKILL);
            reap_pid(self.pid);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.end();
    }
}

/// Forks the guard of the server about to be spawned, which leads its own
/// process group and announces its pid through [`Guard::announce_fd`]. The
/// guard joins that group; when paperclipd dies, it sends SIGTERM to the
/// server (as the parent-death signal did: Paperclip then stops its
/// PostgreSQL in order), waits up to `grace` for it to go, then SIGKILLs
/// the whole group, itself included. If paperclipd dies before any server
/// announced itself, it just ends.
///
/// The child never returns into Rust: between fork and `_exit` it calls
/// only async-signal-safe functions, since other threads' locks may be
/// held forever in the copy.
pub fn start_guard(grace: Duration) -> io::Result<Guard> {
    let (read_end, write_end) = pipe()?;
    let rd = read_end.as_raw_fd();
    let polls = (grace.as_millis() / GUARD_POLL.as_millis()).min(u32::MAX as u128) as u32;
    // SAFETY: fork has no preconditions; see the function doc for the child.
    let child = check(unsafe { libc::fork() })?;
    if child > 0 {
        drop(read_end);
        return Ok(Guard {
            pid: child,
            _alive: write_end,
        });
    }
    // SAFETY: we are the fresh child, which owns every descriptor and
    // calls only async-signal-safe functions from here on.
    unsafe { guard_child(rd, polls) }
}

/// The guard's life in the fresh child of [`start_guard`], reading the
/// pipe's read end `rd`; never returns.
///
/// # Safety
/// Only in the fresh child of a fork: it owns every descriptor, and only
/// async-signal-safe calls may follow.
// SAFETY (the whole child): only async-signal-safe calls (close,
// close_range, sigaction, sigprocmask, prctl, setpgid, read, kill,
// nanosleep, _exit) on descriptors and locals we own; never returns.
unsafe fn guard_child(rd: RawFd, polls: u32) -> ! {
    // SAFETY: see the function contract and the note above.
    unsafe {
        // Keep only the read end: not the instance lock (a flock would
        // outlive paperclipd with us), not the write end (its end of file
        // is the news), not paperclipd's stdio.
        close_between(0, rd - 1);
        close_between(rd + 1, i32::MAX);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        ignore_group_signals();
        #[cfg(target_os = "linux")]
        {
            const NAME: &[u8; 15] = b"paperclipd-grd\0";
            let _ = libc::prctl(libc::PR_SET_NAME, NAME.as_ptr() as libc::c_ulong, 0, 0, 0);
        }
        let server = read_server_pid(rd);
        let pgid = server;
        // The group exists: the child set it before announcing itself.
        if server <= 0 || libc::setpgid(0, pgid) != 0 {
            libc::_exit(2);
        }
        wait_until_closed(rd);
        // paperclipd is gone.
        end_server(server, pgid, polls)
    }
}

/// paperclipd's handlers write to its own wake-up pipe; the group's
/// signals (Ctrl-C, Ctrl-Z, SIGTERM from a stop, SIGWINCH) must not end or
/// stop the guard. SIGKILL still does.
///
/// # Safety
/// Only in the guard's child ([`guard_child`]).
// SAFETY: sigaction with a zeroed, SIG_IGN action; async-signal-safe.
unsafe fn ignore_group_signals() {
    for sig in 1..32 {
        let keep_default = matches!(
            sig,
            libc::SIGKILL
                | libc::SIGSTOP
                | libc::SIGSEGV
                | libc::SIGBUS
                | libc::SIGILL
                | libc::SIGFPE
                | libc::SIGABRT
        );
        if !keep_default {
            // SAFETY: sigaction is plain data; the pointers are valid for
            // the calls.
            unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = libc::SIG_IGN;
                libc::sigemptyset(&mut act.sa_mask);
                libc::sigaction(sig, &act, std::ptr::null_mut());
            }
        }
    }
}

/// The server's pid (which is its group's id), from its child, on `rd`;
/// ends the guard when paperclipd ended before any server.
///
/// # Safety
/// Only in the guard's child ([`guard_child`]).
// SAFETY: read into a local buffer within its bounds, and _exit.
unsafe fn read_server_pid(rd: RawFd) -> i32 {
    let mut pid = [0u8; 4];
    let mut got = 0;
    while got < pid.len() {
        // SAFETY: the pointer and length stay within `pid`.
        let n = unsafe { libc::read(rd, pid[got..].as_mut_ptr().cast(), pid.len() - got) };
        if n == 0 {
            // SAFETY: _exit has no preconditions.
            unsafe { libc::_exit(0) }; // paperclipd ended before any server
        }
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // SAFETY: _exit has no preconditions.
            unsafe { libc::_exit(3) };
        }
        got += n as usize;
    }
    i32::from_ne_bytes(pid)
}

/// Returns at the end of file on `rd`: paperclipd is gone.
///
/// # Safety
/// Only in the guard's child ([`guard_child`]).
// SAFETY: read into a local byte, and _exit.
unsafe fn wait_until_closed(rd: RawFd) {
    loop {
        let mut byte = 0u8;
        // SAFETY: the pointer names a local byte, and the length is 1.
        let n = unsafe { libc::read(rd, (&mut byte as *mut u8).cast(), 1) };
        if n == 0 {
            break;
        }
        if n < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // SAFETY: _exit has no preconditions.
            unsafe { libc::_exit(3) };
        }
    }
}

/// SIGTERM to the server, up to `polls` polls for it to go, then SIGKILL
/// for its whole group, the guard included.
///
/// # Safety
/// Only in the guard's child ([`guard_child`]).
// SAFETY: kill, nanosleep with a local timespec, and _exit.
unsafe fn end_server(server: i32, pgid: i32, polls: u32) -> ! {
    // SAFETY: kill takes plain integers; nanosleep reads a local.
    unsafe {
        libc::kill(server, libc::SIGTERM);
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: GUARD_POLL.as_nanos() as libc::c_long,
        };
        for _ in 0..polls {
            if libc::kill(server, 0) != 0 {
                break;
            }
            libc::nanosleep(&pause, std::ptr::null_mut());
        }
        libc::kill(-pgid, libc::SIGKILL);
        libc::_exit(0);
    }
}
