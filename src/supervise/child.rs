//! The server process: resolve, spawn, signal, reap, and clean up its tree.
//!
//! Spawning happens on the main thread, which lives as long as the process:
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
//! not the process, so forking from a tokio blocking-pool thread (which
//! exits when idle) would kill the server at a random moment.

use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Kind, Result};
use crate::instance::Instance;
use crate::procfs;

/// Variables of the service manager's protocol that must not reach the
/// server: with them, a server (or anything it runs) could send `READY=1`
/// or `STOPPING=1` on our behalf, or take over our watchdog.
pub const REMOVED_ENV: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// The variables we set for the server (see [`paperclip_env`]).
pub const PAPERCLIP_ENV: &[&str] = &[
    "PAPERCLIP_SERVICE_MANAGED",
    "PAPERCLIP_INSTANCE_ID",
    "PAPERCLIP_HOME",
];

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Code(i32),
    Signal(i32),
}

impl ExitKind {
    fn from_wait_status(status: libc::c_int) -> Option<Self> {
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

pub fn signal_name(n: i32) -> String {
    let name = match n {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGBUS => "SIGBUS",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => return format!("signal {n}"),
    };
    name.to_string()
}

/// Finds the default server program `paperclipai`:
/// `$PAPERCLIP_SHIM_PATH`, `~/.local/bin/paperclipai`, then `PATH`.
pub fn default_program() -> Result<PathBuf> {
    if let Some(shim) = std::env::var_os("PAPERCLIP_SHIM_PATH").filter(|s| !s.is_empty()) {
        let p = PathBuf::from(&shim);
        return check_executable(&p, "PAPERCLIP_SHIM_PATH").map(|_| p);
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let p = Path::new(&home).join(".local/bin/paperclipai");
        if p.exists() {
            return check_executable(&p, "~/.local/bin/paperclipai").map(|_| p);
        }
    }
    match search_path(OsStr::new("paperclipai")) {
        Some(p) => check_executable(&p, "PATH").map(|_| p),
        None => Err(Error::new(
            Kind::NotFound,
            "the Paperclip server `paperclipai` was not found: not in $PAPERCLIP_SHIM_PATH, ~/.local/bin/paperclipai or PATH. \
             Install it with `npm install -g paperclipai` (it needs Node.js 24), set PAPERCLIP_SHIM_PATH, \
             or run another server with `paperclipd run -- COMMAND ARGS...`",
        )),
    }
}

/// Resolves the program of a given command: a path is checked as is, a
/// bare name is searched in `PATH`.
pub fn resolve_program(program: &OsStr) -> Result<PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 || program.as_encoded_bytes().contains(&b'/') {
        check_executable(p, "the command").map(|_| p.to_path_buf())
    } else {
        match search_path(program) {
            Some(found) => check_executable(&found, "PATH").map(|_| found),
            None => Err(Error::new(
                Kind::NotFound,
                format!(
                    "the server command {:?} was not found in PATH; expected an installed program; give its full path or fix PATH",
                    program.to_string_lossy()
                ),
            )),
        }
    }
}

fn search_path(name: &OsStr) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|cand| {
            cand.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn check_executable(p: &Path, source: &str) -> Result<()> {
    match p.metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::new(
            Kind::NotFound,
            format!(
                "the server program {} (from {source}) does not exist; install it or fix the path",
                p.display()
            ),
        )),
        Err(e) => Err(Error::new(
            Kind::NotExecutable,
            format!(
                "the server program {} (from {source}) cannot be inspected: {e}; fix its permissions",
                p.display()
            ),
        )),
        Ok(m) if m.is_dir() => Err(Error::new(
            Kind::NotExecutable,
            format!(
                "the server program {} (from {source}) is a directory, expected an executable file",
                p.display()
            ),
        )),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err(Error::new(
            Kind::NotExecutable,
            format!(
                "the server program {} (from {source}) is not executable; fix it with `chmod +x {}`",
                p.display(),
                p.display()
            ),
        )),
        Ok(_) => Ok(()),
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

/// The `PAPERCLIP_*` variables that tell the server which instance it is
/// and that a service manager supervises it.
pub fn paperclip_env(instance: &Instance) -> [(&'static str, OsString); 3] {
    [
        ("PAPERCLIP_SERVICE_MANAGED", "1".into()),
        ("PAPERCLIP_INSTANCE_ID", instance.id.as_str().into()),
        ("PAPERCLIP_HOME", instance.home.clone().into_os_string()),
    ]
}

pub fn spawn(spec: &SpawnSpec<'_>) -> Result<Spawned> {
    let mut cmd = Command::new(spec.program);
    cmd.args(spec.args);
    for k in REMOVED_ENV {
        cmd.env_remove(k);
    }
    for (k, v) in spec.extra_env {
        cmd.env(k, v);
    }
    for (k, v) in paperclip_env(spec.instance) {
        cmd.env(k, v);
    }
    if spec.interactive {
        cmd.stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
    } else {
        cmd.stdin(Stdio::inherit())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }
    let parent = std::process::id() as libc::pid_t;
    let interactive = spec.interactive;
    // SAFETY: between fork and exec only async-signal-safe calls
    // (setpgid, sigprocmask, tcsetpgrp, prctl, getppid) and no allocation.
    unsafe {
        cmd.pre_exec(move || {
            // Own process group: a terminal's Ctrl-C or a group kill aimed
            // at us does not hit the server behind our back, and we can kill
            // its whole group at the end.
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if interactive {
                // Take the terminal (as tini does). A background group
                // calling tcsetpgrp gets SIGTTOU unless it blocks it.
                let mut set: libc::sigset_t = std::mem::zeroed();
                let mut old: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGTTOU);
                libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old);
                libc::tcsetpgrp(0, libc::getpid());
                libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            }
            #[cfg(target_os = "linux")]
            {
                // SIGTERM, not SIGKILL: Paperclip then stops its PostgreSQL
                // in order instead of orphaning it.
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGTERM as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // We may have died between fork and prctl.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other(
                        "paperclipd exited while starting the server",
                    ));
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
    // Also from the parent, so the group exists whoever runs first.
    unsafe { libc::setpgid(pid, pid) };
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
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// Reaps every child that has exited. Returns the server's status if it
/// was among them.
pub fn reap(server: i32) -> Option<ExitKind> {
    let mut server_exit = None;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid with a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
        if pid == server {
            server_exit = ExitKind::from_wait_status(status);
        }
    }
    server_exit
}

/// True when we have no children left (neither the server nor adopted
/// ones). Uses `WNOWAIT`, so nothing is reaped here.
pub fn no_children() -> bool {
    // SAFETY: waitid with a valid siginfo out-pointer.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD)
}

/// Sends `sig` to one process; a process that is already gone is fine.
pub fn signal(pid: i32, sig: i32) {
    if pid > 0 {
        unsafe { libc::kill(pid, sig) };
    }
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
    if pgid > 0 {
        unsafe { libc::killpg(pgid, sig) };
    }
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
