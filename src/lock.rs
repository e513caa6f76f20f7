//! The per-instance kernel lock.
//!
//! `<instance root>/paperclipd.lock`, held with `flock(LOCK_EX|LOCK_NB)`
//! by `run` and nobody else (readers see the holder through [`holder`]):
//! the kernel releases it the moment the holder dies, so there is no stale
//! lock and no guessing from a pid that may have been reused. The JSON
//! record written into the file is for diagnostics only; the flock is the
//! truth. The descriptor is close-on-exec, so the server never inherits it
//! (an inherited descriptor would keep the lock held after we die).

mod holder;

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{ProbeSettings, ProbeSpec};
use crate::error::{Error, Result};
use crate::instance::Instance;
use crate::procfs;
use crate::sys;
pub use holder::{Holder, Observation, observe, probe_holder};

/// What the holder writes into the lock file after acquiring it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub pid: i32,
    /// The holder's start time ([`holder::start_token`]: clock ticks after
    /// boot on Linux, microseconds since the epoch on macOS) to tell it
    /// from a later process that reuses the pid.
    pub pid_start_ticks: Option<u64>,
    pub child_pid: Option<i32>,
    pub manager: String,
    pub unit: Option<String>,
    /// paperclipd's own command line, converted lossily (display only).
    pub command: Vec<String>,
    pub version: String,
    pub started_at: String,
    /// When the server became ready (absent while it starts).
    #[serde(default)]
    pub ready_at: Option<String>,
    /// Where and how the holder probes its server (URL, mode, paths; never
    /// secrets), so that `status` judges the server by the same settings,
    /// and finds a server a killed holder left behind.
    #[serde(default)]
    pub probe: Option<ProbeSpec>,
    /// paperclipd's own file at the start, and what the server was started
    /// from: `status` tells an upgrade under the running instance by them.
    #[serde(default)]
    pub exe: Option<crate::installed::FileId>,
    #[serde(default)]
    pub server: Option<crate::installed::ServerOrigin>,
    /// The server is stopping (absent while it starts or serves).
    #[serde(default)]
    pub stopping: Option<Stopping>,
}

/// Who began a server's stop.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StopBy {
    /// The server said `STOPPING=1` on its own (its notify socket).
    Server,
    /// paperclipd is stopping it (a stop signal, a timeout, Ctrl-C).
    Paperclipd,
}

/// Since when, and why, the server is stopping.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stopping {
    pub since: String,
    pub by: StopBy,
    /// The server's own `STATUS=` (escaped), or paperclipd's reason.
    pub detail: Option<String>,
}

impl Stopping {
    pub fn now(by: StopBy, detail: Option<String>) -> Self {
        Stopping {
            since: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            by,
            detail,
        }
    }
}

impl Record {
    pub fn for_this_process(manager: &crate::invoker::Invoker, probe: &ProbeSettings) -> Self {
        let pid = std::process::id() as i32;
        Record {
            pid,
            pid_start_ticks: holder::start_token(pid),
            child_pid: None,
            manager: manager.kind.as_str().to_string(),
            unit: manager.unit.clone(),
            // Arguments need not be UTF-8 (paths, the server's own
            // arguments): `args()` would panic; the record is for display.
            command: std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            ready_at: None,
            probe: Some(probe.spec()),
            exe: crate::installed::this_exe(),
            server: None,
            stopping: None,
        }
    }

    /// The probe settings the record's writer used, for `instance` (none
    /// from a record without them or with settings no longer valid).
    pub fn probe_settings(&self, instance: &crate::instance::Instance) -> Option<ProbeSettings> {
        let spec = self.probe.as_ref()?;
        crate::config::probe_settings(instance.clone(), spec).ok()
    }
}

/// The probe settings of the server that runs `instance` now: its lock
/// holder's, when there is one that recorded them.
pub fn running_probe_settings(instance: &crate::instance::Instance) -> Option<ProbeSettings> {
    observe(instance).holder?.record?.probe_settings(instance)
}

/// A held instance lock. Dropping it clears the record and releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    file: File,
    path: PathBuf,
    record: Record,
}

pub enum Acquire {
    Acquired(InstanceLock),
    Held(Holder),
}

/// As root, refuses a path (when it exists) that belongs to another user:
/// whoever owns an instance's files or its config file decides the
/// server's `command` and `[env]` (`LD_PRELOAD`, …), which would then run
/// with root's privileges. paperclipd refuses rather than dropping to the
/// owner's uid: the manager (`User=`) or `sudo -u` does that completely
/// (groups, environment, files created as the user), and a half-dropped
/// process is a classic hole.
pub fn refuse_foreign_as_root(path: &Path, what: &str) -> Result<()> {
    if crate::sys::euid() != 0 {
        return Ok(());
    }
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if meta.uid() == 0 {
        return Ok(());
    }
    let owner = procfs::user_name(meta.uid());
    let name = owner.split(" (uid").next().unwrap_or("THAT_USER");
    Err(Error::config(format!(
        "paperclipd runs as root, but {what} {} belongs to {owner}: its server command and [env] \
         would run with root's privileges, so paperclipd does not run another user's instance as root. \
         Run it as that user (`sudo -u {name} paperclipd run …`, or `User={name}` in a system unit)",
        crate::untrusted::path(path)
    )))
}

/// Creates the instance root if needed (mode 0700) and checks that it is
/// a directory we own that nobody else can write to.
pub fn prepare_root(instance: &Instance) -> Result<PathBuf> {
    let root = instance.root();
    // Before anything is created: as root, the home and the instance must
    // be root's own.
    refuse_foreign_as_root(&root, "the instance directory")?;
    refuse_foreign_as_root(&instance.home.join("instances"), "the instances directory")?;
    refuse_foreign_as_root(&instance.home, "the Paperclip home")?;
    if let Err(e) = DirBuilder::new().recursive(true).mode(0o700).create(&root) {
        return Err(Error::config(format!(
            "cannot create the instance directory {}: {e}; expected a writable Paperclip home (set --home or PAPERCLIP_HOME)",
            crate::untrusted::path(&root)
        )));
    }
    let meta = std::fs::symlink_metadata(&root).map_err(|e| {
        Error::config(format!(
            "cannot inspect the instance directory {}: {e}",
            crate::untrusted::path(&root)
        ))
    })?;
    if !meta.is_dir() {
        return Err(Error::config(format!(
            "the instance directory {} is not a directory; expected Paperclip's instance directory; move it aside",
            crate::untrusted::path(&root)
        )));
    }
    let euid = crate::sys::euid();
    if meta.uid() != euid && euid != 0 {
        return Err(Error::config(format!(
            "the instance directory {} belongs to uid {}, not to you (uid {euid}); run paperclipd as that user, or fix the owner",
            crate::untrusted::path(&root),
            meta.uid()
        )));
    }
    if meta.mode() & 0o002 != 0 {
        return Err(Error::config(format!(
            "the instance directory {} is writable by everyone (mode {:o}); anyone could replace its lock or config. Fix it with `chmod o-w {}`",
            crate::untrusted::path(&root),
            meta.mode() & 0o7777,
            crate::untrusted::path(&root)
        )));
    }
    Ok(root)
}

/// Tries to take the lock without waiting.
pub fn try_acquire(instance: &Instance, record: Record) -> Result<Acquire> {
    prepare_root(instance)?;
    let path = instance.lock_path();
    let file = open_lock_file(&path)?;
    match sys::try_flock_exclusive(file.as_raw_fd()) {
        Ok(true) => {}
        Ok(false) => {
            let holder = holder::observe_file(&file).holder;
            // The holder left between our attempt and the look: unknown.
            return Ok(Acquire::Held(holder.unwrap_or(Holder {
                pid: None,
                record: None,
            })));
        }
        Err(err) => {
            return Err(Error::os(format!(
                "cannot lock {}: {err}",
                crate::untrusted::path(&path)
            )));
        }
    }
    let mut lock = InstanceLock { file, path, record };
    lock.write_record()?;
    Ok(Acquire::Acquired(lock))
}

/// Opens (creating) the lock file without blocking: a FIFO or another
/// kind of file at its path is refused, naming what it is.
fn open_lock_file(path: &Path) -> Result<File> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600);
    crate::regular_file::open(path, &mut options, libc::O_NOFOLLOW).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::ELOOP) => "it is a symbolic link, which paperclipd refuses to follow".to_string(),
            Some(libc::EISDIR) => "it is a directory".to_string(),
            Some(libc::EROFS) => "the file system is read-only".to_string(),
            _ => e.to_string(),
        };
        Error::config(format!(
            "cannot open the instance lock {}: {why}; expected a regular file that paperclipd may create and write. Remove or fix it and retry",
            crate::untrusted::path(path)
        ))
    })
}

impl InstanceLock {
    pub fn set_child(&mut self, pid: Option<i32>) -> Result<()> {
        self.record.child_pid = pid;
        self.write_record()
    }

    /// Records where the server is probed after it changed (onboarding
    /// writes `config.json`). A failed write only costs `status` accuracy,
    /// so it is a warning, not a reason to stop.
    pub fn set_probe(&mut self, probe: &ProbeSettings) {
        self.record.probe = Some(probe.spec());
        if let Err(e) = self.write_record() {
            crate::log::warn(&e.message);
        }
    }

    /// What the record says now.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// Records that the server is stopping (or, `None`, that a new one
    /// runs). Like [`set_probe`](Self::set_probe), a failed write is a
    /// warning.
    pub fn set_stopping(&mut self, stopping: Option<Stopping>) {
        if self.record.stopping == stopping {
            return;
        }
        self.record.stopping = stopping;
        if let Err(e) = self.write_record() {
            crate::log::warn(&e.message);
        }
    }

    pub fn set_ready(&mut self) -> Result<()> {
        self.record.ready_at =
            Some(humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string());
        self.write_record()
    }

    /// Readers never see a torn record: the whole record goes in one write
    /// at offset 0, over the old one, and only then is the file cut to its
    /// length. A reader in between sees the new record and the old one's
    /// tail, and reads only the first JSON value; a reader that meets a
    /// growing write half done, or the file before the first write, sees
    /// no whole record while the kernel names a holder, and looks again
    /// (`holder::observe_file`). Truncating first, then writing, showed
    /// readers an empty record.
    fn write_record(&mut self) -> Result<()> {
        let mut json = serde_json::to_string_pretty(&self.record)
            .map_err(|e| Error::os(format!("cannot encode the lock record: {e}")))?;
        json.push('\n');
        let path = crate::untrusted::path(&self.path);
        self.file
            .write_all_at(json.as_bytes(), 0)
            .and_then(|_| self.file.set_len(json.len() as u64))
            .map_err(|e| Error::os(format!("cannot write the lock record to {path}: {e}")))
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Clear the record before the kernel releases the lock on close, so
        // nobody reads a departed holder's details as current.
        let _ = self.file.set_len(0);
    }
}

// Linux: the witness is the kernel's lock table, /proc/locks.
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::instance::InstanceId;

    fn record() -> Record {
        Record {
            pid: std::process::id() as i32,
            pid_start_ticks: None,
            child_pid: None,
            manager: "foreground".into(),
            unit: None,
            command: vec!["paperclipd".into(), "run".into()],
            version: "test".into(),
            started_at: "now".into(),
            ready_at: None,
            probe: None,
            exe: None,
            server: None,
            stopping: None,
        }
    }

    /// A reader never sees a torn record while the holder rewrites it (as
    /// `run` does at each child and readiness change): each read of a held
    /// lock gives the holder's whole record. Before the fix the holder
    /// truncated the file, then wrote: readers saw empty records.
    #[test]
    fn readers_never_see_a_torn_record() {
        let d = tempfile::tempdir().unwrap();
        let inst = Instance::new(InstanceId::parse("x").unwrap(), d.path().into());
        let Acquire::Acquired(mut lock) = try_acquire(&inst, record()).unwrap() else {
            panic!("the lock is free");
        };
        use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let reads = std::sync::Arc::new(AtomicU32::new(0));
        let reader = {
            let (inst, stop, reads) = (inst.clone(), stop.clone(), reads.clone());
            std::thread::spawn(move || {
                let mut torn = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let seen = observe(&inst);
                    reads.fetch_add(1, Ordering::Relaxed);
                    if seen.holder.as_ref().is_none_or(|h| h.record.is_none()) {
                        torn.push(format!("{seen:?}"));
                    }
                }
                torn
            })
        };
        // Records of alternating lengths (shorter and longer rewrites), at
        // least 20,000 of them and until the reader has read 1,000 times:
        // on a loaded machine the reader may get little time.
        let deadline = crate::deadline::Later::later(
            std::time::Instant::now(),
            std::time::Duration::from_secs(60),
        );
        let mut i = 0u32;
        while i < 20_000
            || (reads.load(Ordering::Relaxed) < 1000 && std::time::Instant::now() < deadline)
        {
            lock.set_child(Some(if i % 2 == 0 { 7 } else { 1_234_567_890 }))
                .unwrap();
            i += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let torn = reader.join().unwrap();
        let reads = reads.load(Ordering::Relaxed);
        assert!(reads >= 1000, "only {reads} reads in 60 s");
        assert!(
            torn.is_empty(),
            "{} torn reads of {reads}, e.g. {:?}",
            torn.len(),
            torn.first()
        );
    }

    /// Only `run` may take the lock: a reader looking for the holder (as
    /// `status` and the launchd waits do, in loops) must never lock the
    /// file, not even shared for a moment, or a concurrent `run` finds it
    /// taken and exits 75. The kernel's lock table is the witness: an
    /// acquire refused here can also come from a sibling test forking while
    /// we hold the lock (the child keeps the descriptor until it execs), so
    /// refusals alone would not tell readers apart.
    #[test]
    fn reading_the_holder_never_locks_the_file() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let inst = Instance::new(InstanceId::parse("x").unwrap(), d.path().into());
        prepare_root(&inst).unwrap();
        drop(open_lock_file(&inst.lock_path()).unwrap());
        let meta = std::fs::metadata(inst.lock_path()).unwrap();
        let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
        let id = format!(" {major:02x}:{minor:02x}:{} ", meta.ino());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (inst, stop) = (inst.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let _ = probe_holder(&inst);
                    }
                })
            })
            .collect();
        let (mut shared_seen, mut refused_while_shared) = (0, 0);
        for _ in 0..3000 {
            let refused = match try_acquire(&inst, record()).unwrap() {
                Acquire::Acquired(l) => {
                    drop(l);
                    false
                }
                Acquire::Held(_) => true,
            };
            let table = std::fs::read_to_string("/proc/locks").unwrap();
            if table
                .lines()
                .any(|l| l.contains(" READ ") && l.contains(&id))
            {
                shared_seen += 1;
                refused_while_shared += usize::from(refused);
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(
            (shared_seen, refused_while_shared),
            (0, 0),
            "readers took a shared lock (times seen, acquires refused meanwhile)"
        );
    }
}
