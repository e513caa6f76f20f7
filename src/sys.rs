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
#[cfg(target_os = "linux")]
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

/// What `statvfs`/`statfs` says of the filesystem holding a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsStat {
    /// Bytes available to an unprivileged user (`f_bavail`, not `f_bfree`:
    /// the root reserve is not ours to use).
    pub avail: u64,
    pub total: u64,
    /// Where it is mounted and its type, when the call tells (macOS);
    /// on Linux `disk` reads them from /proc/self/mountinfo.
    pub mount: Option<String>,
    pub fs_type: Option<String>,
}

fn c_path(path: &std::path::Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// The filesystem holding `path` (Linux: `statvfs`).
#[cfg(not(target_os = "macos"))]
pub fn fs_stat(path: &std::path::Path) -> io::Result<FsStat> {
    let c = c_path(path)?;
    // SAFETY: statvfs writes one struct into the zeroed local we own.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path alive for the call; `st` is valid.
    check(unsafe { libc::statvfs(c.as_ptr(), &mut st) })?;
    #[allow(clippy::unnecessary_cast)] // the field types differ by platform
    let (bavail, blocks, frsize) = (st.f_bavail as u64, st.f_blocks as u64, st.f_frsize as u64);
    Ok(FsStat {
        avail: bavail.saturating_mul(frsize),
        total: blocks.saturating_mul(frsize),
        mount: None,
        fs_type: None,
    })
}

/// The filesystem holding `path` (macOS: `statfs`, whose counts are 64-bit,
/// unlike its `statvfs`, and which names the mount point and type).
#[cfg(target_os = "macos")]
pub fn fs_stat(path: &std::path::Path) -> io::Result<FsStat> {
    let c = c_path(path)?;
    // SAFETY: statfs writes one struct into the zeroed local we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path alive for the call; `st` is valid.
    check(unsafe { libc::statfs(c.as_ptr(), &mut st) })?;
    let bsize = u64::from(st.f_bsize);
    Ok(FsStat {
        avail: st.f_bavail.saturating_mul(bsize),
        total: st.f_blocks.saturating_mul(bsize),
        mount: Some(c_chars(&st.f_mntonname)),
        fs_type: Some(c_chars(&st.f_fstypename)),
    })
}

/// A fixed-size, NUL-terminated C string field as text.
#[cfg(target_os = "macos")]
fn c_chars(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Clock ticks per second: the unit of start times in /proc (Linux).
#[cfg(target_os = "linux")]
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf takes a constant and reads no memory of ours.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Who a process is, as macOS's libproc tells it (Linux reads /proc).
#[cfg(target_os = "macos")]
#[derive(Debug, Clone)]
pub struct ProcIdentity {
    /// The executable's name (up to 16 bytes, as `comm` on Linux).
    pub comm: String,
    pub euid: u32,
    /// Device and inode of its working directory, when readable.
    pub cwd: Option<(u64, u64)>,
}

/// A process's name, owner and working directory (macOS: `proc_pidinfo`).
/// `None` when it does not exist or may not be inspected.
#[cfg(target_os = "macos")]
pub fn proc_identity(pid: i32) -> Option<ProcIdentity> {
    if pid <= 0 {
        return None;
    }
    // SAFETY: plain-data structs, zero-initialised, owned by us.
    let mut bsd: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: proc_pidinfo writes at most `size` bytes into `bsd`.
    let n = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut bsd as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    if n != size {
        return None;
    }
    // SAFETY: as above, for the vnode path info.
    let mut vp: libc::proc_vnodepathinfo = unsafe { std::mem::zeroed() };
    let vsize = std::mem::size_of::<libc::proc_vnodepathinfo>() as libc::c_int;
    // SAFETY: proc_pidinfo writes at most `vsize` bytes into `vp`.
    let vn = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDVNODEPATHINFO,
            0,
            (&mut vp as *mut libc::proc_vnodepathinfo).cast(),
            vsize,
        )
    };
    let cwd = (vn == vsize).then(|| {
        let st = &vp.pvi_cdir.vip_vi.vi_stat;
        (u64::from(st.vst_dev), st.vst_ino)
    });
    Some(ProcIdentity {
        comm: c_chars(&bsd.pbi_comm),
        euid: bsd.pbi_uid,
        cwd,
    })
}

/// Does process `pid` exist? `kill(pid, 0)`: EPERM means it exists but
/// belongs to someone else; only ESRCH means it is gone.
pub fn process_exists(pid: i32) -> bool {
    match kill(pid, 0) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() != Some(libc::ESRCH),
    }
}
