//! Safe wrappers over every libc call paperclipd makes, one SAFETY note each.
//!
//! Only the `pre_exec` closure in `supervise::child` calls into the OS
//! outside this file, and it calls the async-signal-safe wrappers marked
//! below. Callers get `io::Result`s or plain values, never raw `-1`s.

use std::io;
use std::os::fd::RawFd;

/// Maps a libc return value of `-1` to the current `errno`.
fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Our effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Our real uid (launchd domains are per uid).
#[cfg(target_os = "macos")]
pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Our pid (async-signal-safe: usable between fork and exec).
pub fn pid() -> i32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// Our parent's pid (async-signal-safe).
pub fn parent_pid() -> i32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() }
}

/// Is `fd` a terminal?
pub fn isatty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor; a bad fd gives 0.
    unsafe { libc::isatty(fd) == 1 }
}

/// The foreground process group of the terminal on `fd`.
pub fn foreground_group(fd: RawFd) -> Option<i32> {
    // SAFETY: tcgetpgrp only reads terminal state; errors give -1.
    let g = unsafe { libc::tcgetpgrp(fd) };
    (g > 0).then_some(g)
}

/// Our own process group.
pub fn own_group() -> i32 {
    // SAFETY: getpgrp has no preconditions and cannot fail.
    unsafe { libc::getpgrp() }
}

/// Makes `pgid` the terminal's foreground group. A background group that
/// calls `tcsetpgrp` gets SIGTTOU unless it blocks it, so SIGTTOU is
/// blocked around the call. Async-signal-safe and allocation-free: the
/// child calls it between fork and exec.
pub fn give_terminal_to(fd: RawFd, pgid: i32) -> io::Result<()> {
    // SAFETY: the sigset_t values are plain data initialised by
    // sigemptyset before use; sigprocmask and tcsetpgrp get valid pointers
    // and only change this thread's mask and the terminal's foreground
    // group; the old mask is restored on every path.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        let r = check(libc::tcsetpgrp(fd, pgid));
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        r.map(drop)
    }
}

/// The width of the terminal on `fd`, in columns.
pub fn terminal_width(fd: RawFd) -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes one winsize into the zeroed struct we own.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: see above; the pointer is valid for the call.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

/// Device and inode of the file open on `fd`.
pub fn dev_ino(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: fstat writes one stat into the zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: see above; the pointer is valid for the call.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ by platform
    Some((st.st_dev as u64, st.st_ino as u64))
}

/// Takes an exclusive `flock` on `fd` without waiting. `Ok(false)` when
/// another holder has it. Only `run` calls this: whoever else took even a
/// shared lock for a moment would make a concurrent `run` exit 75.
pub fn try_flock_exclusive(fd: RawFd) -> io::Result<bool> {
    // SAFETY: flock only acts on the descriptor, which the caller owns.
    match check(unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// When process `pid` started, in microseconds since the epoch (macOS):
/// with the pid, it names a process uniquely. `None` when none runs.
#[cfg(target_os = "macos")]
pub fn process_start_usec(pid: i32) -> Option<u64> {
    // SAFETY: proc_bsdinfo is plain data; zeroed is a valid value.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: the pointer and size describe `info`, which we own;
    // proc_pidinfo writes at most `size` bytes and returns how many.
    let n = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    (n == size).then(|| {
        info.pbi_start_tvsec
            .saturating_mul(1_000_000)
            .saturating_add(info.pbi_start_tvusec)
    })
}

/// Becomes a child subreaper (Linux): orphans below us are re-parented to
/// us instead of to PID 1.
#[cfg(target_os = "linux")]
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and no pointers.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }).map(drop)
}

/// Asks for `sig` when the thread that forked us exits (Linux).
/// Async-signal-safe: the child calls it between fork and exec.
#[cfg(target_os = "linux")]
pub fn set_parent_death_signal(sig: i32) -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and no pointers.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) }).map(drop)
}

/// Reaps one exited child without waiting: `Some((pid, wait status))`, or
/// `None` when no child has exited (or there are none).
pub fn reap_one() -> Option<(i32, libc::c_int)> {
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid writes the status into a valid local.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid, status))
}

/// True when we have no children left at all. `WNOWAIT`: nothing is reaped.
pub fn no_children() -> bool {
    // SAFETY: siginfo_t is plain data; waitid fills the zeroed local.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: see above; the pointer is valid for the call.
    let r = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD)
}

/// Sends `sig` to process `pid` (never to a group: `pid` must be > 0).
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: kill takes plain integers; pid > 0 names one process.
    check(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Sends `sig` to every process of group `pgid` (must be > 1).
pub fn kill_group(pgid: i32, sig: i32) -> io::Result<()> {
    if pgid <= 1 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: killpg takes plain integers; pgid > 1 names one group.
    check(unsafe { libc::killpg(pgid, sig) }).map(drop)
}
