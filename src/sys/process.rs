//! Our children's ends and stops: peeking at them without reaping
//! (`waitid` with `WNOWAIT`), and reaping them.

use std::io;

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

/// What [`child_change`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildChange {
    /// It ended; it is left unreaped (its zombie keeps its pid).
    Ended(Ended),
    /// It was stopped by this signal (Ctrl-Z, SIGTTOU, SIGSTOP).
    Stopped(i32),
}

/// Has child `pid` stopped or ended? Does not wait, and reaps nothing
/// (`WNOWAIT`): an ended child stays a zombie, so its pid and group id
/// cannot be given to another process while we may still signal them. A
/// stop stays reported until the child is continued.
pub fn child_change(pid: i32) -> Option<ChildChange> {
    if pid <= 0 {
        return None;
    }
    let info = peek_child(pid)?;
    let (child, status) = child_of(&info);
    if child != pid {
        return None;
    }
    match info.si_code {
        libc::CLD_STOPPED | libc::CLD_TRAPPED => Some(ChildChange::Stopped(status)),
        libc::CLD_EXITED => Some(ChildChange::Ended(Ended::Exited(status))),
        libc::CLD_KILLED | libc::CLD_DUMPED => Some(ChildChange::Ended(Ended::Killed(status))),
        _ => None,
    }
}

/// `waitid` on child `pid` without waiting and without reaping
/// (`WNOWAIT`): `None` when `pid` is no unreaped child of ours; otherwise
/// what it reports (`si_pid` 0 while the child runs unchanged).
pub(super) fn peek_child(pid: i32) -> Option<libc::siginfo_t> {
    // SAFETY: siginfo_t is plain data; waitid fills the zeroed local.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: see above; the pointer is valid for the call.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WSTOPPED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    (r == 0).then_some(info)
}

/// Reaps child `pid`, waiting for it (use only after SIGKILL).
pub fn reap_pid(pid: i32) {
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid writes the status into a valid local.
    while unsafe { libc::waitpid(pid, &mut status, 0) } == -1
        && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
    {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::is_unreaped_child;

    /// Regression (issue 18, defect 9): `child_change` reaped an ended
    /// child (`waitpid`), so its pid, and the group id it led, could be
    /// given to another process while the supervisor still signalled them.
    #[test]
    fn child_change_leaves_an_ended_child_unreaped() {
        // Reaped below by pid, not by `Child::wait`.
        #[allow(clippy::zombie_processes)]
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .expect("spawn sh");
        let pid = child.id() as i32;
        let start = std::time::Instant::now();
        while peek_exited(Some(pid)).is_none() {
            assert!(start.elapsed().as_secs() < 30, "sh did not exit");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(
            child_change(pid),
            Some(ChildChange::Ended(Ended::Exited(7)))
        );
        assert!(is_unreaped_child(pid), "child_change reaped the child");
        reap_pid(pid);
        assert!(!is_unreaped_child(pid));
    }
}
