//! The server process: spawn it, signal it, reap it and what it leaves.
//!
//! Spawning happens on the main thread, which lives as long as the process:
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
//! not the process, so forking from a tokio blocking-pool thread (which
//! exits when idle) would kill the server at a random moment.

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

impl ExitKind {
    pub fn from_wait_status(status: libc::c_int) -> Option<Self> {
        if libc::WIFEXITED(status) {
            Some(ExitKind::Code(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(ExitKind::Signal(libc::WTERMSIG(status)))
        } else {
            None
        }
    }

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

/// A started server.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    /// The server's process group (its own pid).
    pub pgid: i32,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
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
}

/// Applies the server's environment: the manager's protocol variables
/// removed, `[env]`, then our `PAPERCLIP_*`.
pub fn server_environment(
    cmd: &mut Command,
    instance: &Instance,
    extra: &BTreeMap<String, String>,
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
}

pub fn spawn(spec: &SpawnSpec<'_>) -> Result<Spawned> {
    let mut cmd = Command::new(spec.program);
    cmd.args(spec.args);
    server_environment(&mut cmd, spec.instance, spec.extra_env);
    let piped = if spec.interactive {
        Stdio::inherit
    } else {
        Stdio::piped
    };
    cmd.stdin(Stdio::inherit()).stdout(piped()).stderr(piped());
    // Own process group: a terminal's Ctrl-C or a group kill aimed at us
    // does not hit the server behind our back, and we can kill its whole
    // group at the end. std sets it before the closure below runs.
    cmd.process_group(0);
    let parent = std::process::id() as i32;
    let interactive = spec.interactive;
    // SAFETY: between fork and exec the closure calls only async-signal-
    // safe, allocation-free wrappers (tcsetpgrp with SIGTTOU blocked,
    // sigaction, prctl, getpid, getppid); errors are plain `io::Error`s
    // from errno.
    unsafe {
        cmd.pre_exec(move || {
            if interactive {
                // Take the terminal (as tini does).
                sys::give_terminal_to(0, sys::pid())?;
            }
            // We ignore these (`signals::ignore_terminal_stops`), and an
            // ignored signal stays ignored across exec.
            sys::set_signal_ignored(libc::SIGTTOU, false)?;
            sys::set_signal_ignored(libc::SIGTTIN, false)?;
            #[cfg(target_os = "linux")]
            {
                // SIGTERM, not SIGKILL: Paperclip then stops its PostgreSQL
                // in order instead of orphaning it.
                sys::set_parent_death_signal(libc::SIGTERM)?;
                // We may have died between fork and prctl.
                if sys::parent_pid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
            }
            #[cfg(not(target_os = "linux"))]
            let _ = parent;
            Ok(())
        });
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
    Ok(Spawned {
        pid,
        pgid: pid,
        stdout,
        stderr,
    })
}

/// Becomes a subreaper: orphans of the server (PostgreSQL after its Node
/// parent is SIGKILLed, agents, their children) are re-parented to us
/// instead of to PID 1, so we can see and stop them.
pub fn become_subreaper() {
    #[cfg(target_os = "linux")]
    if let Err(e) = sys::become_subreaper() {
        crate::log::warn(&format!(
            "cannot become a subreaper ({e}); processes the server orphans will be re-parented \
             to PID 1 and may outlive it"
        ));
    }
}

/// Reaps every child that has exited. Returns the server's status if it
/// was among them.
pub fn reap(server: i32) -> Option<ExitKind> {
    let mut server_exit = None;
    while let Some((pid, status)) = sys::reap_one() {
        if pid == server {
            server_exit = ExitKind::from_wait_status(status);
        }
    }
    server_exit
}

/// True when we have no children left (neither the server nor adopted
/// ones). Nothing is reaped here.
pub fn no_children() -> bool {
    sys::no_children()
}

/// Sends `sig` to one process; a process that is already gone is fine.
pub fn signal(pid: i32, sig: i32) {
    let _ = sys::kill(pid, sig);
}

/// Every descendant of ours that /proc shows (Linux), nearest first.
pub fn descendants() -> Vec<i32> {
    let me = std::process::id() as i32;
    let procs = procfs::all_processes();
    let mut tree: HashSet<i32> = HashSet::from([me]);
    let mut out = Vec::new();
    // Parents come before children in the result; iterate to a fixpoint
    // because /proc order is by pid, not by ancestry.
    loop {
        let before = out.len();
        for p in &procs {
            if !tree.contains(&p.pid) && tree.contains(&p.ppid) {
                tree.insert(p.pid);
                out.push(p.pid);
            }
        }
        if out.len() == before {
            break;
        }
    }
    out
}

/// Signals the server's process group and every process we adopted.
pub fn signal_everything(pgid: i32, sig: i32) {
    let _ = sys::kill_group(pgid, sig);
    let me = std::process::id() as i32;
    if sig == libc::SIGKILL {
        for pid in descendants() {
            signal(pid, sig);
        }
    } else {
        // A polite signal goes to direct children only: an adopted
        // PostgreSQL stops its own backends in order.
        for pid in procfs::children_of(me) {
            signal(pid, sig);
        }
    }
}
