//! Safe wrappers over every libc call paperclipd makes, one SAFETY note each
//! (filesystem space in [`fs`], the terminal witness in [`witness`], the
//! group guard in [`guard`], the server's notify socket in
//! [`notify_socket`], waiting for children in [`process`]).
//!
//! Only the `pre_exec` closure in `supervise::child` calls into the OS
//! outside this module, and it calls the async-signal-safe wrappers marked
//! below. Callers get `io::Result`s or plain values, never raw `-1`s.

mod fs;
mod guard;
#[cfg(target_os = "linux")]
pub mod notify_socket;
mod process;
mod witness;

use std::io;
use std::os::fd::RawFd;

pub use fs::*;
pub use guard::*;
pub use process::*;
pub use witness::*;

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

/// The memory page size: the unit of `rss` in /proc/PID/stat (Linux).
pub fn page_size() -> u64 {
    // SAFETY: sysconf takes a constant and reads no memory of ours.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
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
        comm: fs::c_chars(&bsd.pbi_comm),
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
/// Ignores `sig` (`true`) or restores its default action. Async-signal-
/// safe (sigaction): the child calls it between fork and exec, because an
/// ignored signal stays ignored across exec.
pub fn set_signal_ignored(sig: i32, ignored: bool) -> io::Result<()> {
    set_signal_handler(
        sig,
        if ignored {
            libc::SIG_IGN
        } else {
            libc::SIG_DFL
        },
    )
}

/// Installs a raw handler (`SIG_IGN`, `SIG_DFL` or a function address).
fn set_signal_handler(sig: i32, handler: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: sigaction is plain data, zeroed then filled; sigemptyset
    // initialises the mask; sigaction gets valid pointers. The handler is
    // SIG_IGN, SIG_DFL or an `extern "C" fn(c_int)` of this file.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler;
        libc::sigemptyset(&mut act.sa_mask);
        check(libc::sigaction(sig, &act, std::ptr::null_mut())).map(drop)
    }
}

/// Stops this whole process with `sig` (SIGTSTP, SIGTTIN, SIGTTOU or
/// SIGSTOP), as the shell's job would stop; returns once something (the
/// shell's `fg` or `bg`) sends SIGCONT, or at once where the kernel
/// discards the stop (an orphaned process group, PID 1).
pub fn stop_self(sig: i32) {
    // An ignored stop signal would not stop us.
    let _ = set_signal_ignored(sig, false);
    // SAFETY: kill with our own pid has no memory effects; the pending
    // signal stops the process on the way back from the call.
    unsafe { libc::kill(libc::getpid(), sig) };
}

/// A terminal's settings (termios), kept to put them back.
#[derive(Clone, Copy)]
pub struct TerminalMode(libc::termios);

/// The settings of the terminal on `fd`.
pub fn terminal_mode(fd: RawFd) -> Option<TerminalMode> {
    // SAFETY: termios is plain data; tcgetattr fills the zeroed local.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: see above; the pointer is valid for the call.
    (unsafe { libc::tcgetattr(fd, &mut t) } == 0).then_some(TerminalMode(t))
}

impl TerminalMode {
    /// Does the terminal echo control characters (Ctrl-C shows as `^C`)?
    pub fn echoes_control(&self) -> bool {
        let l = self.0.c_lflag;
        l & libc::ECHO != 0 && l & libc::ECHOCTL != 0
    }
}

/// Puts back settings read by [`terminal_mode`].
pub fn set_terminal_mode(fd: RawFd, mode: &TerminalMode) -> io::Result<()> {
    // SAFETY: tcsetattr reads the termios we own; a bad fd gives -1.
    check(unsafe { libc::tcsetattr(fd, libc::TCSADRAIN, &mode.0) }).map(drop)
}

/// This boot's identity, so that what belongs to one boot (the launchd
/// guard's pause) is forgotten at the next: the kernel's random boot id.
#[cfg(target_os = "linux")]
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// This boot's identity: `sysctl kern.bootsessionuuid`, a new UUID at
/// every boot.
#[cfg(target_os = "macos")]
pub fn boot_id() -> Option<String> {
    let mut buf = [0u8; 128];
    let mut len: libc::size_t = buf.len();
    // SAFETY: the name is NUL-terminated; `buf` and `len` describe a
    // writable buffer of `len` bytes that sysctlbyname fills and whose
    // used length it stores in `len`; no new value is set (null, 0).
    let r = unsafe {
        libc::sysctlbyname(
            c"kern.bootsessionuuid".as_ptr(),
            buf.as_mut_ptr().cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if r != 0 {
        return None;
    }
    let bytes = &buf[..len.min(buf.len())];
    let text = String::from_utf8_lossy(bytes);
    let id = text.trim_end_matches('\0').trim();
    (!id.is_empty()).then(|| id.to_string())
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn boot_id() -> Option<String> {
    None
}

/// Empties the file open on `fd` when it is a regular file (and rewinds,
/// in case it was not opened with `O_APPEND`); returns whether it was one.
pub fn truncate_if_regular(fd: RawFd) -> io::Result<bool> {
    // SAFETY: an all-zero `stat` is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a writable stat buffer; a bad fd gives -1 (EBADF).
    check(unsafe { libc::fstat(fd, &mut st) })?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(false);
    }
    // SAFETY: ftruncate and lseek take plain integers and only act on `fd`.
    check(unsafe { libc::ftruncate(fd, 0) })?;
    // SAFETY: as above.
    if unsafe { libc::lseek(fd, 0, libc::SEEK_SET) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}
