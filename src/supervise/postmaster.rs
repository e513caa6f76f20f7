//! The stale `postmaster.pid` check: before Paperclip's default server
//! starts (under the instance lock), a `postmaster.pid` whose pid is not a
//! live PostgreSQL serving the instance's data directory is moved aside;
//! a live one, which cannot be ours yet, stops the run (75).
//!
//! Why: after a power loss or a SIGKILL of everything, the pid recorded in
//! `<data dir>/postmaster.pid` may belong to an unrelated live process.
//! Paperclip (2026.916.1) then exits 1 with "Refusing to reuse PostgreSQL:
//! its data directory belongs to another instance", and a service manager
//! restarts it until it gives up (upstream #6597, #2333). The file is
//! never deleted: it is renamed to `postmaster.pid.stale-<UTC time>`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::instance::Instance;
use crate::{log, paperclip, procfs, sys};

/// What the `postmaster.pid` of a data directory says, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// There is no `postmaster.pid`.
    Absent,
    /// Nothing of it runs: its pid is gone, or is not a PostgreSQL serving
    /// this directory. `why` says which.
    Stale { why: String },
    /// A live PostgreSQL serves this directory.
    Live { pid: i32 },
    /// It could not be told (the process may not be inspected); the file
    /// is left alone and PostgreSQL decides.
    Unknown { why: String },
    /// It is not a regular file (a FIFO, a directory): PostgreSQL cannot
    /// use it, and reading a FIFO would hang.
    NotAFile { why: String },
}

/// `run`'s step: judge the instance's `postmaster.pid` and act on it.
pub fn check(instance: &Instance) -> Result<()> {
    let Some(dir) = paperclip::embedded_postgres_dir(instance) else {
        return Ok(());
    };
    let file = dir.join("postmaster.pid");
    match judge(&dir) {
        Verdict::Absent => Ok(()),
        Verdict::Stale { why } => {
            let aside = move_aside(&file)?;
            log::info(&format!(
                "moved the stale {} aside to {}: {why} (Paperclip would refuse to start with it)",
                crate::untrusted::path(&file),
                aside.file_name().unwrap_or_default().to_string_lossy()
            ));
            Ok(())
        }
        Verdict::Live { pid } => Err(Error::busy(format!(
            "instance {:?}: PostgreSQL {} already serves its data directory {} (named in {}), \
             but no server of this instance runs: it was left behind, probably when its server was killed. \
             A new server would refuse to start or to reuse it. Stop it with `kill -INT {pid}` \
             (PostgreSQL's fast shutdown), then start again",
            instance.id.as_str(),
            procfs::describe(pid),
            crate::untrusted::path(&dir),
            crate::untrusted::path(&file)
        ))),
        Verdict::NotAFile { why } => Err(Error::config(format!(
            "instance {:?}: PostgreSQL's lock file {} cannot be checked: {why}; \
             expected the file PostgreSQL writes, or none. Move it aside and retry",
            instance.id.as_str(),
            crate::untrusted::path(&file)
        ))),
        Verdict::Unknown { why } => {
            log::warn(&format!(
                "cannot tell whether {} is stale ({why}); leaving it for PostgreSQL to judge",
                crate::untrusted::path(&file)
            ));
            Ok(())
        }
    }
}

/// Reads and judges `<dir>/postmaster.pid` (its first line is the pid).
pub fn judge(dir: &Path) -> Verdict {
    let file = dir.join("postmaster.pid");
    let text = match crate::regular_file::read(&file) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Verdict::Absent,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            return Verdict::NotAFile { why: e.to_string() };
        }
        Err(e) => return Verdict::Unknown { why: e.to_string() },
    };
    let first = text.lines().next().unwrap_or("").trim();
    let verdict = match first.parse::<i32>() {
        Ok(pid) if pid > 0 => judge_pid(dir, pid),
        _ => Verdict::Stale {
            why: format!("its first line {first:?} is not a pid"),
        },
    };
    // Whatever the file says, a PostgreSQL that serves the directory must
    // not have its lock file taken away.
    if let Verdict::Stale { .. } = verdict {
        if let Some(pid) = serving_postgres(dir).into_iter().next() {
            return Verdict::Live { pid };
        }
    }
    verdict
}

/// Is `pid` a live PostgreSQL serving `dir`? PostgreSQL runs only as the
/// owner of its data directory and works inside it (its cwd).
fn judge_pid(dir: &Path, pid: i32) -> Verdict {
    use std::os::unix::fs::MetadataExt;
    if !sys::process_exists(pid) {
        return Verdict::Stale {
            why: format!("no process has pid {pid}"),
        };
    }
    let Ok(meta) = std::fs::metadata(dir) else {
        return Verdict::Unknown {
            why: format!("cannot read {}", crate::untrusted::path(dir)),
        };
    };
    let Some(p) = inspect(pid) else {
        return Verdict::Unknown {
            why: format!("pid {pid} is alive but may not be inspected"),
        };
    };
    if !p.is_postgres() {
        let what = procfs::cmdline(pid).unwrap_or_else(|| p.comm.clone());
        return Verdict::Stale {
            why: format!("pid {pid} is `{what}`, not PostgreSQL"),
        };
    }
    if p.euid.is_some_and(|u| u != meta.uid()) {
        return Verdict::Stale {
            why: format!(
                "pid {pid} is a PostgreSQL of uid {}, and only the directory's owner (uid {}) can serve it",
                p.euid.unwrap_or_default(),
                meta.uid()
            ),
        };
    }
    match p.cwd {
        Some(cwd) if same_dir(cwd, (meta.dev(), meta.ino())) => Verdict::Live { pid },
        Some(_) => Verdict::Stale {
            why: format!("pid {pid} is a PostgreSQL serving another directory"),
        },
        None => Verdict::Unknown {
            why: format!("the working directory of PostgreSQL pid {pid} is unreadable"),
        },
    }
}

/// A process as far as this check cares.
struct Seen {
    comm: String,
    exe: Option<String>,
    euid: Option<u32>,
    /// Device and inode of its working directory.
    cwd: Option<(u64, u64)>,
}

impl Seen {
    fn is_postgres(&self) -> bool {
        self.comm == "postgres" || self.exe.as_deref() == Some("postgres")
    }
}

#[cfg(not(target_os = "macos"))]
fn inspect(pid: i32) -> Option<Seen> {
    let info = procfs::proc_info(pid)?;
    Some(Seen {
        comm: info.comm,
        exe: procfs::exe_name(pid),
        euid: procfs::euid(pid),
        cwd: procfs::cwd_dev_ino(pid).ok(),
    })
}

#[cfg(target_os = "macos")]
fn inspect(pid: i32) -> Option<Seen> {
    let p = sys::proc_identity(pid)?;
    Some(Seen {
        comm: p.comm,
        exe: None,
        euid: Some(p.euid),
        cwd: p.cwd,
    })
}

/// Device numbers are 32 bits wide on macOS and 64 on Linux; compare
/// them at the narrower width the platform reports.
fn same_dir(a: (u64, u64), b: (u64, u64)) -> bool {
    a.1 == b.1 && (a.0 == b.0 || a.0 as u32 == b.0 as u32)
}

/// Every PostgreSQL process whose working directory is `dir` (Linux; the
/// postmaster and its backends), lowest pid first.
#[cfg(not(target_os = "macos"))]
fn serving_postgres(dir: &Path) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = procfs::all_processes()
        .into_iter()
        .filter(|p| p.comm == "postgres")
        .filter(|p| procfs::cwd_dev_ino(p.pid).is_ok_and(|c| same_dir(c, (meta.dev(), meta.ino()))))
        .map(|p| p.pid)
        .collect();
    pids.sort_unstable();
    pids
}

/// macOS has no /proc to scan; the pid in the file is checked alone.
#[cfg(target_os = "macos")]
fn serving_postgres(_dir: &Path) -> Vec<i32> {
    Vec::new()
}

/// Renames `file` to `<file>.stale-<UTC time>` in the same directory
/// (a suffix `-N` if that name is taken). Never deletes anything.
fn move_aside(file: &Path) -> Result<PathBuf> {
    let stamp: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let base = format!("{}.stale-{stamp}", file.display());
    let mut target = PathBuf::from(&base);
    let mut n = 2;
    while target.symlink_metadata().is_ok() {
        target = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    std::fs::rename(file, &target).map_err(|e| {
        Error::config(format!(
            "cannot move the stale {} aside to {}: {e}; Paperclip would refuse to start with it. \
             Move it yourself (`mv {} {}`) and start again",
            crate::untrusted::path(file),
            crate::untrusted::path(&target),
            crate::untrusted::path(file),
            crate::untrusted::path(&target)
        ))
    })?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(content: Option<&str>) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        if let Some(c) = content {
            std::fs::write(d.path().join("postmaster.pid"), c).unwrap();
        }
        d
    }

    #[test]
    fn verdicts() {
        assert_eq!(judge(dir_with(None).path()), Verdict::Absent);
        let garbage = judge(dir_with(Some("hello\n")).path());
        assert!(matches!(garbage, Verdict::Stale { .. }), "{garbage:?}");
        // A live process that is not PostgreSQL: the test itself.
        let me = std::process::id();
        let v = judge(dir_with(Some(&format!("{me}\n/x\n1\n54329\n"))).path());
        match v {
            Verdict::Stale { why } => assert!(why.contains("not PostgreSQL"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A pid nobody has (beyond pid_max).
        let v = judge(dir_with(Some("2147483646\n")).path());
        assert!(matches!(v, Verdict::Stale { .. }), "{v:?}");
    }

    #[test]
    fn moved_aside_never_deleted() {
        let d = dir_with(Some("1\n"));
        let f = d.path().join("postmaster.pid");
        let a = move_aside(&f).unwrap();
        std::fs::write(&f, "2\n").unwrap();
        let b = move_aside(&f).unwrap();
        assert_ne!(a, b);
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "1\n");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "2\n");
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("postmaster.pid.stale-2"), "{name}");
        assert!(name.ends_with('Z'), "{name}");
        assert!(!f.exists());
    }
}
