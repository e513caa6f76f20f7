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

/// How to take a `flock`.
#[derive(Debug, Clone, Copy)]
pub enum Flock {
    /// Exclusive, without waiting.
    TryExclusive,
    /// Shared, without waiting.
    TryShared,
    Unlock,
}

/// Takes a `flock` on `fd`. `Ok(false)` when another holder has it.
pub fn flock(fd: RawFd, how: Flock) -> io::Result<bool> {
    let op = match how {
        Flock::TryExclusive => libc::LOCK_EX | libc::LOCK_NB,
        Flock::TryShared => libc::LOCK_SH | libc::LOCK_NB,
        Flock::Unlock => libc::LOCK_UN,
    };
    // SAFETY: flock only acts on the descriptor, which the caller owns.
    match check(unsafe { libc::flock(fd, op) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
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

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// With this exit code.
    Exited(i32),
    /// By this signal.
    Killed(i32),
}

/// An exited child, left unreaped (`WNOWAIT`): `pid` itself, or (`None`)
/// the first of our children that has exited. `None` when none has.
pub fn peek_exited(pid: Option<i32>) -> Option<(i32, Ended)> {
    let (idtype, id) = match pid {
        Some(p) if p > 0 => (libc::P_PID, p as libc::id_t),
        Some(_) => return None,
        None => (libc::P_ALL, 0),
    };
    // SAFETY: siginfo_t is plain data; waitid fills the zeroed local.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: see above; the pointer is valid for the call.
    let r = unsafe {
        libc::waitid(
            idtype,
            id,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    let (child, status) = child_of(&info);
    if r != 0 || child <= 0 {
        // An error (no children), or WNOHANG found none (si_pid stays 0).
        return None;
    }
    let ended = if info.si_code == libc::CLD_EXITED {
        Ended::Exited(status)
    } else {
        Ended::Killed(status)
    };
    Some((child, ended))
}

/// The pid and status of a `waitid` result.
#[cfg(target_os = "linux")]
fn child_of(info: &libc::siginfo_t) -> (i32, i32) {
    // SAFETY: waitid filled the SIGCHLD fields (or left the zeroed ones).
    unsafe { (info.si_pid(), info.si_status()) }
}

#[cfg(target_os = "macos")]
fn child_of(info: &libc::siginfo_t) -> (i32, i32) {
    (info.si_pid, info.si_status)
}

/// Reaps child `pid` if it has exited, without waiting.
pub fn reap(pid: i32) {
    if pid <= 0 {
        return;
    }
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid writes the status into a valid local; pid > 0 names
    // one child.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

/// The members of process group `pgid` (macOS; /proc tells on Linux).
#[cfg(target_os = "macos")]
pub fn group_members(pgid: i32) -> Vec<i32> {
    // SAFETY: the buffer holds `cap` pids and its size in bytes is passed.
    list_pids(|buf, bytes| unsafe { libc::proc_listpgrppids(pgid, buf, bytes) })
}

/// The children of `parent` (macOS; /proc tells on Linux).
#[cfg(target_os = "macos")]
pub fn children_of(parent: i32) -> Vec<i32> {
    // SAFETY: as for group_members.
    list_pids(|buf, bytes| unsafe { libc::proc_listchildpids(parent, buf, bytes) })
}

/// Calls a libproc lister with a growing buffer; it returns a count of pids.
#[cfg(target_os = "macos")]
fn list_pids(list: impl Fn(*mut libc::c_void, libc::c_int) -> libc::c_int) -> Vec<i32> {
    let mut cap = 256usize;
    loop {
        let mut buf = vec![0 as libc::pid_t; cap];
        let bytes = (cap * std::mem::size_of::<libc::pid_t>()) as libc::c_int;
        let n = list(buf.as_mut_ptr().cast(), bytes);
        if n < 0 {
            return Vec::new();
        }
        let n = n as usize;
        if n < cap || cap >= 1 << 20 {
            buf.truncate(n.min(cap));
            buf.retain(|p| *p > 0);
            return buf;
        }
        cap *= 4;
    }
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
