//! The server process: spawn it, signal it, reap it and what it leaves.
//!
//! Spawning happens on the main thread, which lives as long as the process:
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
//! not the process, so forking from a tokio blocking-pool thread (which
//! exits when idle) would kill the server at a random moment.
//!
//! Only processes known to be ours are signalled. The server's exit is
//! seen without reaping it: its zombie keeps its pid, and so its process
//! group id, from being given to anyone else, so the group may be signalled
//! by id until [`release`] reaps it at the very end. Other processes are
//! signalled by pid only while they are our unreaped children, whose pids
//! cannot be reused either.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Kind, Result};
use crate::instance::Instance;
use crate::{paperclip, procfs, sys};

use super::signals::signal_name;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Code(i32),
    Signal(i32),
}

impl From<sys::Ended> for ExitKind {
    fn from(e: sys::Ended) -> Self {
        match e {
            sys::Ended::Exited(c) => ExitKind::Code(c),
            sys::Ended::Killed(n) => ExitKind::Signal(n),
        }
    }
}

impl ExitKind {
    /// The shell convention: the code itself, or 128+N for signal N.
    pub fn shell_code(self) -> u8 {
        match self {
            ExitKind::Code(c) => (c & 0xff) as u8,
            ExitKind::Signal(n) => (128 + n).clamp(0, 255) as u8,
        }
    }

    pub fn describe(self) -> String {
        match self {
            ExitKind::Code(c) => format!("exited with code {c}"),
            ExitKind::Signal(n) => format!("was killed by {}", signal_name(n)),
        }
    }
}

/// Which process group the server runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// A group of its own (its pid): a terminal's Ctrl-C or a group kill
    /// aimed at us does not hit it behind our back, it can own the
    /// terminal, and one `killpg` reaches all of it.
    Own,
    /// Ours, which we lead. Under launchd: when a job ends, launchd kills
    /// what is left of the job's process group (`AbandonProcessGroup`
    /// unset, launchd.plist(5)), so a paperclipd killed outright (a crash,
    /// `launchctl kill SIGKILL`) does not orphan the server, its
    /// PostgreSQL and agents (macOS has no parent-death signal). We then
    /// signal the group's members one by one, never ourselves.
    Ours,
}

impl Group {
    /// Where the server of `instance` runs: in our group only when launchd
    /// runs the instance's own job, nothing needs a terminal, and we lead
    /// our group (launchd starts a job as its group's leader; a group we
    /// do not lead holds others, such as a shell, that are not ours to
    /// signal).
    pub fn for_server(instance: &Instance, interactive: bool) -> Group {
        if interactive || !crate::launchd::runs_job_of(instance) {
            return Group::Own;
        }
        if sys::own_group() != sys::pid() {
            crate::log::warn(
                "launchd runs this job, but paperclipd does not lead its process group: the server \
                 runs in a group of its own, which launchd cannot reach if paperclipd is killed",
            );
            return Group::Own;
        }
        Group::Ours
    }
}

/// A started server.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    /// The server's process group: its own pid ([`Group::Own`]) or ours.
    pub pgid: i32,
    pub group: Group,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// The server has been reaped: its pid and group id may name someone
    /// else now, so nothing is signalled by them any more.
    released: Cell<bool>,
    /// Stops the server's group if we die ([`Group::Own`] only: launchd
    /// stops our own group). `None` if it could not be started.
    guard: Option<sys::Guard>,
}

impl Spawned {
    /// The guard's pid: our child, but none of the server's.
    fn guard_pid(&self) -> Option<i32> {
        self.guard.as_ref().map(sys::Guard::pid)
    }
}

/// What to start and how.
pub struct SpawnSpec<'a> {
    pub program: &'a Path,
    pub args: &'a [OsString],
    pub instance: &'a Instance,
    pub extra_env: &'a BTreeMap<String, String>,
    /// Give the server the terminal (foreground process group) and our
    /// stdio; otherwise pipe its output through us.
    pub interactive: bool,
    /// [`Group::Own`] whenever `interactive`.
    pub group: Group,
    /// How long the server gets after SIGTERM if we die (the guard's wait).
    pub grace: std::time::Duration,
    /// The server's own `NOTIFY_SOCKET` (ours, see `server_notify`), if any.
    pub notify_socket: Option<&'a std::ffi::OsStr>,
}

/// Applies the server's environment: the manager's protocol variables
/// removed, `[env]`, then our `PAPERCLIP_*`, then our own notify socket
/// (never the manager's) when there is one.
pub fn server_environment(
    cmd: &mut Command,
    instance: &Instance,
    extra: &BTreeMap<String, String>,
    notify_socket: Option<&std::ffi::OsStr>,
) {
    for k in paperclip::REMOVED_ENV {
        cmd.env_remove(k);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    for (k, v) in paperclip::server_env(instance) {
        cmd.env(k, v);
    }
    if let Some(v) = notify_socket {
        cmd.env("NOTIFY_SOCKET", v);
    }
}

pub fn spawn(spec: &SpawnSpec<'_>) -> Result<Spawned> {
    let mut cmd = Command::new(spec.program);
    cmd.args(spec.args);
    server_environment(&mut cmd, spec.instance, spec.extra_env, spec.notify_socket);
    let piped = if spec.interactive {
        Stdio::inherit
    } else {
        Stdio::piped
    };
    cmd.stdin(Stdio::inherit()).stdout(piped()).stderr(piped());
    // std sets the group before the closure below runs.
    let group = if spec.interactive {
        Group::Own
    } else {
        spec.group
    };
    if group == Group::Own {
        cmd.process_group(0);
    }
    let parent = std::process::id() as i32;
    let interactive = spec.interactive;
    // The guard exists before the server execs, so a paperclipd killed at
    // any moment after leaves no unguarded server ([`Group::Own`] only:
    // launchd stops our own group).
    let guard = match group {
        Group::Own => match sys::start_guard(spec.grace) {
            Ok(g) => Some(g),
            Err(e) => {
                crate::log::warn(&format!(
                    "cannot start the guard of the server's process group ({e}); if paperclipd \
                     is killed, a server whose binary grants privileges (setcap, setuid) \
                     outlives it"
                ));
                None
            }
        },
        Group::Ours => None,
    };
    let announce = guard.as_ref().map_or(-1, sys::Guard::announce_fd);
    // SAFETY: between fork and exec the closure runs `before_exec`, which
    // only calls async-signal-safe wrappers (tcsetpgrp with SIGTTOU
    // blocked, sigaction, prctl, getpid, getppid, write) and never
    // allocates.
    unsafe {
        cmd.pre_exec(move || before_exec(interactive, parent, announce));
    }
    let mut child = cmd.spawn().map_err(|e| {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => Kind::NotFound,
            std::io::ErrorKind::PermissionDenied => Kind::NotExecutable,
            _ => Kind::Os,
        };
        Error::new(
            kind,
            format!("cannot start the server {}: {e}", spec.program.display()),
        )
    })?;
    let pid = child.id() as i32;
    let stdout = child.stdout.take().map(OwnedFd::from);
    let stderr = child.stderr.take().map(OwnedFd::from);
    // `child` is dropped without waiting: we reap with waitpid(-1) ourselves
    // because, as a subreaper, we also reap what the server leaves behind.
    if let Some(g) = &guard {
        g.join(pid);
    }
    Ok(Spawned {
        pid,
        pgid: match group {
            Group::Own => pid,
            Group::Ours => sys::own_group(),
        },
        group,
        stdout,
        stderr,
        released: Cell::new(false),
        guard,
    })
}

/// Set (to anything) only by tests: no subreaper, as on macOS, where the
/// server's orphans move to launchd and only its process group finds them.
#[cfg(target_os = "linux")]
const NO_SUBREAPER_ENV: &str = "PAPERCLIPD_NO_SUBREAPER";

/// The child's part between fork and exec. It must not allocate (another
/// thread may have held the allocator's lock at the fork) and may call only
/// async-signal-safe functions: tcsetpgrp with SIGTTOU blocked, prctl,
/// getpid, getppid. Errors are errno values (`io::Error` without a
/// payload), which std hands to the parent through its exec pipe.
fn before_exec(interactive: bool, parent: i32, guard: std::os::fd::RawFd) -> std::io::Result<()> {
    // Our group is set (std does it first): the guard may join it now.
    sys::announce_to_guard(guard);
    if interactive {
        // Take the terminal (as tini does).
        sys::give_terminal_to(0, sys::pid())?;
    }
    // We ignore these (`signals::ignore_terminal_stops`), and an ignored
    // signal stays ignored across exec.
    sys::set_signal_ignored(libc::SIGTTOU, false)?;
    sys::set_signal_ignored(libc::SIGTTIN, false)?;
    #[cfg(target_os = "linux")]
    {
        // SIGTERM, not SIGKILL: Paperclip then stops its PostgreSQL in
        // order instead of orphaning it.
        sys::set_parent_death_signal(libc::SIGTERM)?;
        // We may have died between fork and prctl.
        if sys::parent_pid() != parent {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = parent;
    Ok(())
}

/// Becomes a subreaper: orphans of the server (PostgreSQL after its Node
/// parent is SIGKILLed, agents, their children) are re-parented to us
/// instead of to PID 1, so we can see and stop them.
pub fn become_subreaper() {
    #[cfg(target_os = "linux")]
    if std::env::var_os(NO_SUBREAPER_ENV).is_some() {
        crate::log::warn(&format!(
            "{NO_SUBREAPER_ENV} is set: not a subreaper (as on macOS); only the server's process \
             group finds what it leaves behind"
        ));
    } else if let Err(e) = sys::become_subreaper() {
        crate::log::warn(&format!(
            "cannot become a subreaper ({e}); processes the server orphans will be re-parented \
             to PID 1 and may outlive it"
        ));
    }
}

/// Reaps every child of ours that has exited, except the server: when it
/// has exited, its status is returned and its zombie is kept (see the
/// module doc) until [`release`].
pub fn reap(server: i32) -> Option<ExitKind> {
    // Our first exited child, not reaped yet; children are listed oldest
    // first, so once the server has exited it is the one found.
    while let Some((pid, ended)) = sys::peek_exited(None) {
        if pid != server {
            sys::reap(pid);
            continue;
        }
        for child in own_children() {
            if child != server {
                sys::reap(child);
            }
        }
        return Some(ended.into());
    }
    // The server may still be a zombie the scan above did not reach.
    sys::peek_exited(Some(server)).map(|(_, ended)| ended.into())
}

/// Reaps the server at the end, after everything it left is gone: from now
/// on its pid and group id are never signalled.
pub fn release(server: &Spawned) {
    server.released.set(true);
    // The guard first: it is a member of the server's group, so while it
    // lives the group id stays taken after the server's pid is free (a
    // stranger could get neither, but the id would outlive the run).
    if let Some(g) = &server.guard {
        g.end();
    }
    sys::reap(server.pid);
}

/// Sends `sig` to the server process; a process that is already gone is
/// fine, a released one is never signalled.
pub fn signal(server: &Spawned, sig: i32) {
    if !server.released.get() {
        let _ = sys::kill(server.pid, sig);
    }
}

/// Our children (the server and adopted orphans). Their pids stay ours
/// until we reap them, which only this thread does.
fn own_children() -> Vec<i32> {
    #[cfg(target_os = "macos")]
    let children = sys::children_of(sys::pid());
    #[cfg(not(target_os = "macos"))]
    let children = procfs::own_children();
    children
}

/// What the server left behind: the rest of its process group (while the
/// server's zombie holds the group id) and every other child of ours
/// (adopted orphans on Linux). Empty when all is gone.
pub fn leftovers(server: &Spawned) -> Vec<i32> {
    // Our own group's id stays ours after the server is released.
    let in_group = !server.released.get() || server.group == Group::Ours;
    let me = sys::pid();
    #[cfg(target_os = "macos")]
    let mut found = {
        let mut found = own_children();
        if in_group {
            found.extend(sys::group_members(server.pgid));
        }
        found
    };
    // One pass over /proc. A zombie that is not our child is for its
    // parent to reap; there is nothing to stop.
    #[cfg(not(target_os = "macos"))]
    let mut found: Vec<i32> = {
        procfs::all_processes()
            .into_iter()
            .filter(|p| p.ppid == me || (in_group && p.pgid == server.pgid && !p.zombie))
            .map(|p| p.pid)
            .collect()
    };
    let guard = server.guard_pid();
    found.retain(|p| *p != server.pid && *p != me && Some(*p) != guard);
    found.sort_unstable();
    found.dedup();
    found
}

/// The live members of process group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    #[cfg(target_os = "macos")]
    let members = sys::group_members(pgid);
    #[cfg(not(target_os = "macos"))]
    let members = procfs::all_processes()
        .into_iter()
        .filter(|p| p.pgid == pgid && !p.zombie)
        .map(|p| p.pid)
        .collect();
    members
}

/// Every descendant of ours that /proc shows (Linux), nearest first.
pub fn descendants() -> Vec<i32> {
    descendants_in(&procfs::all_processes(), std::process::id() as i32)
}

/// The descendants of `root` in a process table, nearest first: one pass
/// to index the table by parent, then each process once (a pass over the
/// table per generation was quadratic in a deep tree).
fn descendants_in(procs: &[procfs::ProcInfo], root: i32) -> Vec<i32> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut seen: HashSet<i32> = HashSet::from([root]);
    let mut out = Vec::new();
    let mut next = 0;
    let mut parent = root;
    loop {
        for c in children.get(&parent).into_iter().flatten() {
            if seen.insert(*c) {
                out.push(*c);
            }
        }
        let Some(p) = out.get(next) else { break };
        parent = *p;
        next += 1;
    }
    out
}

/// Signals the server's process group (by id only while its zombie holds
/// the id) and every child of ours (adopted orphans, which may have left
/// the group). A polite signal thus reaches an adopted PostgreSQL, which
/// stops its own backends in order; SIGKILL is repeated by the caller, as
/// a killed parent's children are adopted next.
pub fn signal_everything(server: &Spawned, sig: i32) {
    match server.group {
        Group::Own if !server.released.get() => {
            let _ = sys::kill_group(server.pgid, sig);
        }
        Group::Own => {}
        Group::Ours => {
            let me = sys::pid();
            for pid in group_members(server.pgid) {
                if pid != me {
                    let _ = sys::kill(pid, sig);
                }
            }
        }
    }
    // The guard stays until the end (a group SIGKILL above ends it).
    let guard = server.guard_pid();
    for pid in own_children() {
        if pid != server.pid && Some(pid) != guard {
            let _ = sys::kill(pid, sig);
        }
    }
}

#[cfg(test)]
mod tests;
