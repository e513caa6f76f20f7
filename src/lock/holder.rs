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
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::{Duration, Instant};

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
    /// Why the lock file could not be read (it is a FIFO, unreadable, …),
    /// naming it: the holder is then unknown, not "nobody".
    pub problem: Option<String>,
}

/// How long a reader waits for a holder's record to appear or to be
/// whole: the holder writes it right after taking the lock, and a reader
/// may come in between, or meet a rewrite that grows the record.
const RECORD_WAIT: Duration = Duration::from_millis(250);

/// What the kernel says of the flock on a file.
enum Kernel {
    Held(i32),
    Free,
    /// No `/proc/locks` (macOS, no /proc).
    Unknown,
}

/// Reads who holds an instance's lock, and what a dead holder left behind.
/// The lock file is opened without blocking and must be a regular file:
/// a FIFO there would otherwise hang `status` for ever.
pub fn observe(instance: &Instance) -> Observation {
    let path = instance.lock_path();
    let opened = crate::regular_file::open(&path, OpenOptions::new().read(true), libc::O_NOFOLLOW);
    match opened {
        Ok(file) => observe_file(&file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Observation::default(),
        Err(e) => Observation {
            problem: Some(format!(
                "cannot read the instance lock {}: {}; remove it (`run` creates a new one)",
                crate::untrusted::path(&path),
                match e.raw_os_error() {
                    Some(libc::ELOOP) =>
                        "it is a symbolic link, which paperclipd refuses to follow".to_string(),
                    _ => e.to_string(),
                }
            )),
            ..Observation::default()
        },
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
/// mistaken for one left behind. While the kernel names a holder whose
/// record is not there (yet) or not whole, or (no kernel to ask: macOS)
/// the file holds something that is not a whole record, the reader looks
/// again for a moment ([`RECORD_WAIT`]).
pub(super) fn observe_file(file: &File) -> Observation {
    let deadline = crate::deadline::Later::later(Instant::now(), RECORD_WAIT);
    loop {
        let (record, written) = read_record(file);
        let kernel = kernel_holder(file, record.as_ref());
        let incomplete = match kernel {
            Kernel::Held(pid) => record.as_ref().map(|r| r.pid) != Some(pid),
            Kernel::Unknown => record.is_none() && written,
            // A live holder's record with no lock in the table: the holder
            // clears its record before it lets go, so this is a table read
            // that missed the lock (`/proc/locks` larger than a page,
            // changing between reads), or the holder leaving right now.
            Kernel::Free => record.as_ref().is_some_and(runs),
        };
        if incomplete && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        return judge(record, kernel);
    }
}

fn judge(record: Option<Record>, kernel: Kernel) -> Observation {
    match kernel {
        Kernel::Held(pid) => Observation {
            holder: Some(Holder {
                pid: Some(pid),
                record: record.filter(|r| r.pid == pid && runs(r)),
            }),
            ..Observation::default()
        },
        Kernel::Free => Observation {
            left_behind: record.filter(|r| !runs(r)),
            ..Observation::default()
        },
        Kernel::Unknown => match record {
            Some(r) if runs(&r) => Observation {
                holder: Some(Holder {
                    pid: Some(r.pid),
                    record: Some(r),
                }),
                ..Observation::default()
            },
            r => Observation {
                left_behind: r,
                ..Observation::default()
            },
        },
    }
}

/// The record in the file (empty when the last holder stopped cleanly).
/// The holder writes a new record over the old one, then cuts the file to
/// its length ([`super::InstanceLock`]): a reader in between sees the new
/// record followed by the old one's tail, so only the first JSON value
/// counts. Also says whether the file held anything.
fn read_record(file: &File) -> (Option<Record>, bool) {
    let mut bytes = Vec::new();
    let mut at = 0u64;
    let mut chunk = [0u8; 4096];
    while bytes.len() < 64 * 1024 {
        let Ok(n) = file.read_at(&mut chunk, at) else {
            break;
        };
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..n]);
        at += n as u64;
    }
    let record = serde_json::Deserializer::from_slice(&bytes)
        .into_iter::<Record>()
        .next()
        .and_then(|r| r.ok());
    (record, !bytes.is_empty())
}

/// The kernel's lock table names the holder by inode and device, but on a
/// btrfs subvolume its device is the superblock's while `stat` gives the
/// subvolume's: a candidate on the device `stat` gives is the holder; any
/// other with the same inode (inodes repeat across subvolumes) is the
/// holder only if it holds this very file open. When its descriptors may
/// not be read (another user's process), the record naming the same pid
/// confirms it. `F_GETLK`/`F_OFD_GETLK` cannot help: they do not see
/// `flock` locks.
fn kernel_holder(file: &File, record: Option<&Record>) -> Kernel {
    let Ok(meta) = file.metadata() else {
        return Kernel::Unknown;
    };
    let candidates = match procfs::flock_candidates(meta.ino()) {
        Ok(c) => c,
        Err(_) => return Kernel::Unknown,
    };
    if let Some(c) = candidates.iter().find(|c| c.on_device(meta.dev())) {
        return Kernel::Held(c.pid);
    }
    candidates
        .iter()
        .find(
            |c| match procfs::holds_open(c.pid, meta.dev(), meta.ino()) {
                Some(open) => open,
                None => record.is_some_and(|r| r.pid == c.pid),
            },
        )
        .map_or(Kernel::Free, |c| Kernel::Held(c.pid))
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
            use crate::untrusted::escape;
            s.push_str(&format!(", running since {}", escape(&r.started_at)));
            match (&r.manager[..], &r.unit) {
                ("foreground", _) => s.push_str(", started by hand"),
                (m, Some(u)) => s.push_str(&format!(", under {} ({})", escape(m), escape(u))),
                (m, None) => s.push_str(&format!(", under {}", escape(m))),
            }
            if let Some(c) = r.child_pid {
                s.push_str(&format!("; its server is pid {c}"));
            }
        }
        s
    }

    /// How to stop the holder.
    pub fn how_to_stop(&self) -> String {
        use crate::untrusted::escape;
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
                format!("stop it with `systemctl{user} stop {}`", escape(unit))
            }
            Some(("launchd", Some(label))) => {
                format!(
                    "stop it with `launchctl bootout gui/$(id -u)/{}`",
                    escape(label)
                )
            }
            _ => match pid {
                Some(p) => format!("stop it with Ctrl-C in its terminal or `kill -TERM {p}`"),
                None => "stop the other paperclipd first".to_string(),
            },
        }
    }
}
