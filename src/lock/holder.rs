//! Who holds an instance's lock, read without taking it: only `run` ever
//! takes the lock, so a `status` or a launchd wait polling in a loop can
//! never make a starting `run` find it taken (exit 75).
//!
//! Linux: the kernel's word, from `/proc/locks`. Elsewhere (macOS), or when
//! `/proc/locks` cannot be read: the record in the file, believed only when
//! its process still runs and started when the record says (a reused pid
//! has another start time). A record whose process is gone was left by a
//! holder killed before it could clear it: its server may have survived.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use serde::Serialize;

use super::Record;
use crate::instance::Instance;
use crate::procfs;

/// Who holds an instance's lock.
#[derive(Debug, Clone, Serialize)]
pub struct Holder {
    /// The kernel's word (`/proc/locks`) where it can be asked, else the
    /// record's pid after its start-time check.
    pub pid: Option<i32>,
    /// The record in the file, when it parses and belongs to the holder.
    pub record: Option<Record>,
}

/// What an instance's lock file says now.
#[derive(Debug, Default)]
pub struct Observation {
    pub holder: Option<Holder>,
    /// Nobody holds the lock, yet the last holder's record is still there:
    /// that holder died without clearing it (SIGKILL).
    pub left_behind: Option<Record>,
}

/// What the kernel says of the flock on a file.
enum Kernel {
    Held(i32),
    Free,
    /// No `/proc/locks` (macOS, no /proc).
    Unknown,
}

/// Reads who holds an instance's lock, and what a dead holder left behind.
pub fn observe(instance: &Instance) -> Observation {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(instance.lock_path())
    {
        Ok(mut file) => observe_file(&mut file),
        Err(_) => Observation::default(),
    }
}

/// Who holds an instance's lock: `None` when nobody does, whatever the
/// file says.
pub fn probe_holder(instance: &Instance) -> Option<Holder> {
    observe(instance).holder
}

/// The record is read before the kernel is asked: a holder that arrives
/// in between is then seen by the kernel, and a record read from a holder
/// that leaves in between still belongs to a live process, so neither is
/// mistaken for one left behind.
pub(super) fn observe_file(file: &mut File) -> Observation {
    let record = read_record(file);
    match kernel_holder(file) {
        Kernel::Held(pid) => Observation {
            holder: Some(Holder {
                pid: Some(pid),
                record: record.filter(|r| r.pid == pid && runs(r)),
            }),
            left_behind: None,
        },
        Kernel::Free => Observation {
            holder: None,
            left_behind: record.filter(|r| !runs(r)),
        },
        Kernel::Unknown => match record {
            Some(r) if runs(&r) => Observation {
                holder: Some(Holder {
                    pid: Some(r.pid),
                    record: Some(r),
                }),
                left_behind: None,
            },
            r => Observation {
                holder: None,
                left_behind: r,
            },
        },
    }
}

/// The record in the file (empty when the last holder stopped cleanly).
fn read_record(file: &mut File) -> Option<Record> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(64 * 1024).read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn kernel_holder(file: &File) -> Kernel {
    let Ok(meta) = file.metadata() else {
        return Kernel::Unknown;
    };
    match procfs::flock_holder(meta.dev(), meta.ino()) {
        Ok(Some(pid)) => Kernel::Held(pid),
        Ok(None) => Kernel::Free,
        Err(_) => Kernel::Unknown,
    }
}

/// Does the record's process still run (the same process, not a later one
/// with its pid)?
fn runs(r: &Record) -> bool {
    match (start_token(r.pid), r.pid_start_ticks) {
        (None, _) => false,
        (Some(now), Some(then)) => now == then,
        // A record without a start time (older versions): the pid exists.
        (Some(_), None) => true,
    }
}

/// When `pid` started, as an opaque token that tells it from a later
/// process reusing the pid: clock ticks after boot (Linux), microseconds
/// since the epoch (macOS). `None` when no such process runs.
#[cfg(target_os = "macos")]
pub fn start_token(pid: i32) -> Option<u64> {
    crate::sys::process_start_usec(pid)
}

/// When `pid` started, as an opaque token that tells it from a later
/// process reusing the pid: clock ticks after boot (Linux), microseconds
/// since the epoch (macOS). `None` when no such process runs.
#[cfg(not(target_os = "macos"))]
pub fn start_token(pid: i32) -> Option<u64> {
    procfs::proc_info(pid).map(|p| p.start_ticks)
}

impl Holder {
    /// "pid 123 (`paperclipd run …`), started …, under systemd unit …".
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let pid = self.pid.or(self.record.as_ref().map(|r| r.pid));
        match pid {
            Some(p) => s.push_str(&procfs::describe(p)),
            None => s.push_str("another process"),
        }
        if let Some(r) = &self.record {
            s.push_str(&format!(", running since {}", r.started_at));
            match (&r.manager[..], &r.unit) {
                ("foreground", _) => s.push_str(", started by hand"),
                (m, Some(u)) => s.push_str(&format!(", under {m} ({u})")),
                (m, None) => s.push_str(&format!(", under {m}")),
            }
            if let Some(c) = r.child_pid {
                s.push_str(&format!("; its server is pid {c}"));
            }
        }
        s
    }

    /// How to stop the holder.
    pub fn how_to_stop(&self) -> String {
        let pid = self.pid.or(self.record.as_ref().map(|r| r.pid));
        match self
            .record
            .as_ref()
            .map(|r| (r.manager.as_str(), r.unit.as_deref()))
        {
            Some(("systemd", Some(unit))) => {
                let user = if crate::sys::euid() == 0 && !unit.contains('@') {
                    ""
                } else {
                    " --user"
                };
                format!("stop it with `systemctl{user} stop {unit}`")
            }
            Some(("launchd", Some(label))) => {
                format!("stop it with `launchctl bootout gui/$(id -u)/{label}`")
            }
            _ => match pid {
                Some(p) => format!("stop it with Ctrl-C in its terminal or `kill -TERM {p}`"),
                None => "stop the other paperclipd first".to_string(),
            },
        }
    }
}
