//! Upstream's hot-restart protocol, files only (paperclipai 2026.916.1:
//! the CLI's `restartManagedService` and `@paperclipai/server`'s
//! `services/hot-restart.js`), and paperclipd's own record of a reload.
//!
//! - `<instance>/hot-restart.lock`: the CLI's lock around a whole restart,
//!   a file created exclusively (mode 0600) holding `pid:ms:hex`; stale
//!   once that pid is gone. paperclipd takes the same lock, so upstream's
//!   CLI and paperclipd never restart one instance at the same time.
//! - `<instance>/hot-restart-intent.json`: the request, written atomically
//!   (`<path>.<pid>.<ms>.tmp`, then rename) under the server's own path
//!   lock, the directory `<path>.lock` with `owner.json`. The server whose
//!   pid it names and that need not drain adds its `shutdownSnapshot` on
//!   SIGTERM and leaves its agent runs alive.
//! - `<instance>/hot-restart-report.json`: the next server's account of
//!   what it adopted, matched to the request by `requestedAt`.
//! - `<instance>/paperclipd-reload.json`: ours, for `status`: the reload
//!   in progress or the last one, the processes carried over, the report.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::instance::Instance;
use crate::sys;

mod lock;
pub use lock::RestartLock;

pub const INTENT_FILE: &str = "hot-restart-intent.json";
pub const REPORT_FILE: &str = "hot-restart-report.json";
pub const LOCK_FILE: &str = "hot-restart.lock";
pub const STATE_FILE: &str = "paperclipd-reload.json";

/// How long the server's path lock may be held before it counts as
/// abandoned, and how long we wait for it (upstream's constants).
const PATH_LOCK_STALE: Duration = Duration::from_secs(30);
const PATH_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(25);

pub fn intent_path(instance: &Instance) -> PathBuf {
    instance.root().join(INTENT_FILE)
}
pub fn report_path(instance: &Instance) -> PathBuf {
    instance.root().join(REPORT_FILE)
}
pub fn lock_path(instance: &Instance) -> PathBuf {
    instance.root().join(LOCK_FILE)
}
pub fn state_path(instance: &Instance) -> PathBuf {
    instance.root().join(STATE_FILE)
}

/// `new Date(ms).toISOString()`: `2026-12-06T04:37:42.123Z`.
pub fn iso(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The request, as `@paperclipai/server`'s `writeHotRestartIntent` writes
/// it (a superset of what the CLI writes; the server parses both).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Intent {
    pub version: u32,
    pub requested_at: String,
    pub recovery_request_id: Option<String>,
    pub previous_server_pid: i32,
    pub previous_server_identity: Option<String>,
    pub previous_server_started_at: Option<String>,
    pub previous_server_version: Option<String>,
    pub drain_required: bool,
    pub drain_reason: Option<String>,
    pub requested_by_run_id: Option<String>,
    pub preflight_active_run_ids: Vec<String>,
}

impl Intent {
    pub fn new(server_pid: i32, version: Option<String>, drain: bool) -> Self {
        Intent {
            version: 1,
            requested_at: iso(SystemTime::now()),
            recovery_request_id: None,
            previous_server_pid: server_pid,
            previous_server_identity: None,
            previous_server_started_at: process_started_at(server_pid),
            previous_server_version: version,
            drain_required: drain,
            drain_reason: drain.then(|| "requested".to_string()),
            requested_by_run_id: None,
            preflight_active_run_ids: Vec::new(),
        }
    }
}

/// The next server's report (the fields we read; the rest is kept as is
/// in [`State::report`]).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Report {
    pub requested_at: String,
    pub new_server_pid: Option<i64>,
    pub previous_server_version: Option<String>,
    pub new_server_version: Option<String>,
    pub adopted_run_ids: Vec<String>,
    pub finalized_while_down_run_ids: Vec<String>,
    pub lost_run_ids: Vec<String>,
    pub skipped_run_ids: Vec<String>,
}

impl Report {
    /// `2 runs adopted (run-1, run-2), 1 lost (run-3)`.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!(
            "{} run(s) adopted{}",
            self.adopted_run_ids.len(),
            list(&self.adopted_run_ids)
        )];
        for (ids, what) in [
            (&self.lost_run_ids, "lost"),
            (&self.skipped_run_ids, "skipped (drained)"),
            (&self.finalized_while_down_run_ids, "finished meanwhile"),
        ] {
            if !ids.is_empty() {
                parts.push(format!("{} {what}{}", ids.len(), list(ids)));
            }
        }
        parts.join(", ")
    }
}

fn list(ids: &[String]) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        format!(" ({})", ids.join(", "))
    }
}

/// How upstream identifies a process's start on Linux
/// (`readProcessStartedAt`): the ctime of `/proc/<pid>`, to the ms.
pub fn process_started_at(pid: i32) -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(format!("/proc/{pid}")).ok()?;
        let ms = u64::try_from(m.ctime()).ok()? * 1000 + (m.ctime_nsec() as u64) / 1_000_000;
        Some(iso(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// `JSON.stringify(value, null, 2) + "\n"` to `<path>.<pid>.<ms>.tmp`,
/// then renamed over `path` (`writeJsonFileAtomic`).
fn write_json_atomic(path: &Path, json: &str) -> std::io::Result<()> {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let tmp = PathBuf::from(format!("{}.{}.{ms}.tmp", path.display(), sys::pid()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(json.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Runs `f` under the server's path lock `<path>.lock` (a directory with
/// `owner.json`), as `withHotRestartPathLock` does: one that is older
/// than 30 s or whose owner is gone is removed; we wait up to 10 s.
fn with_path_lock<T>(path: &Path, f: impl FnOnce() -> std::io::Result<T>) -> Result<T> {
    let dir = PathBuf::from(format!("{}.lock", path.display()));
    let deadline = Instant::now() + PATH_LOCK_TIMEOUT;
    loop {
        match fs::create_dir(&dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if path_lock_stale(&dir) {
                    let _ = fs::remove_dir_all(&dir);
                    continue;
                }
                if Instant::now() >= deadline {
                    return Err(Error::busy(format!(
                        "timed out after {}s waiting for the hot-restart lock {} (held by the Paperclip \
                         server or its CLI); retry, or remove it if no Paperclip process is running",
                        PATH_LOCK_TIMEOUT.as_secs(),
                        dir.display()
                    )));
                }
                std::thread::sleep(POLL);
            }
            Err(e) => return Err(Error::os(format!("cannot create {}: {e}", dir.display()))),
        }
    }
    let owner = serde_json::json!({"pid": sys::pid(), "createdAt": iso(SystemTime::now())});
    let result = fs::write(dir.join("owner.json"), format!("{owner}\n")).and_then(|()| f());
    let _ = fs::remove_dir_all(&dir);
    result.map_err(|e| Error::os(format!("cannot write {}: {e}", path.display())))
}

fn path_lock_stale(dir: &Path) -> bool {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Owner {
        pid: Option<i32>,
        created_at: Option<String>,
    }
    let owner = fs::read_to_string(dir.join("owner.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Owner>(&t).ok());
    match owner {
        Some(o) => {
            let age = o
                .created_at
                .and_then(|c| humantime::parse_rfc3339_weak(c.trim_end_matches('Z')).ok())
                .and_then(|t| SystemTime::now().duration_since(t).ok());
            !o.pid.is_some_and(alive) || age.is_none_or(|a| a > PATH_LOCK_STALE)
        }
        None => fs::metadata(dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_none_or(|a| a > PATH_LOCK_STALE),
    }
}

/// `process.kill(pid, 0)` succeeds or fails with EPERM.
fn alive(pid: i32) -> bool {
    pid > 0 && sys::process_exists(pid)
}

/// Removes the previous report and writes `intent` (as the CLI does
/// before it restarts the service).
pub fn write_intent(instance: &Instance, intent: &Intent) -> Result<()> {
    let report = report_path(instance);
    if let Err(e) = fs::remove_file(&report) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(Error::os(format!(
                "cannot remove {}: {e}",
                report.display()
            )));
        }
    }
    let json = serde_json::to_string_pretty(intent)
        .map_err(|e| Error::os(format!("cannot encode the hot-restart intent: {e}")))?;
    let path = intent_path(instance);
    with_path_lock(&path, || write_json_atomic(&path, &json))
}

/// Removes the intent if it is still `intent` (a server that never read
/// it must not act on it later).
pub fn remove_intent(instance: &Instance, intent: &Intent) {
    let path = intent_path(instance);
    let _ = with_path_lock(&path, || {
        let current = fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        let same = current.is_some_and(|v| {
            v["requestedAt"] == intent.requested_at.as_str()
                && v["previousServerPid"] == intent.previous_server_pid
        });
        if same {
            fs::remove_file(&path)?;
        }
        Ok(())
    });
}

/// The snapshot the old server added to the intent: the runs it left
/// alive (`None` when it did not write one: a drain, another pid).
pub fn snapshot_runs(instance: &Instance, intent: &Intent) -> Option<Vec<String>> {
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(intent_path(instance)).ok()?).ok()?;
    if v["requestedAt"] != intent.requested_at.as_str() {
        return None;
    }
    let runs = v["shutdownSnapshot"]["activeRuns"].as_array()?;
    Some(
        runs.iter()
            .filter_map(|r| r["runId"].as_str().map(str::to_string))
            .collect(),
    )
}

/// The report for `intent`, if the new server has written it: the parsed
/// fields and the whole document.
pub fn read_report(instance: &Instance, intent: &Intent) -> Option<(Report, serde_json::Value)> {
    let text = fs::read_to_string(report_path(instance)).ok()?;
    let raw: serde_json::Value = serde_json::from_str(&text).ok()?;
    let report: Report = serde_json::from_value(raw.clone()).ok()?;
    (report.requested_at == intent.requested_at).then_some((report, raw))
}

/// Where a reload is, as `status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The old server is stopping or the new one is starting.
    Reloading,
    /// The new server passed both probes.
    Reloaded,
    /// The new server did not come back; the instance stopped.
    Failed,
}

/// A process the old server left running for the next one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CarriedOver {
    pub pid: i32,
    pub command: String,
    /// Its start time (clock ticks after boot), to tell it from a later
    /// process with its pid.
    #[serde(default)]
    pub start_ticks: Option<u64>,
}

/// Drops from `procs` (adopted processes of the `run` with pid
/// `supervisor`) the runs its reloads carried over to the new server:
/// they are the server's runs, not leaks, so `--reap-adopted-after`
/// spares them and `status` does not count them.
pub fn spare_carried_over(
    instance: &Instance,
    supervisor: i32,
    procs: &mut Vec<crate::adopted::Adopted>,
) {
    let Some(state) = State::read(instance) else {
        return;
    };
    if state.supervisor_pid != supervisor || state.phase == Phase::Failed {
        return;
    }
    spare(&state.carried_over, procs);
}

/// Drops from `procs` those `carried` names.
fn spare(carried: &[CarriedOver], procs: &mut Vec<crate::adopted::Adopted>) {
    // By pid, so that each adopted process is looked up once.
    let mut starts: std::collections::HashMap<i32, Vec<Option<u64>>> =
        std::collections::HashMap::new();
    for c in carried {
        starts.entry(c.pid).or_default().push(c.start_ticks);
    }
    procs.retain(|p| {
        !starts
            .get(&p.pid)
            .is_some_and(|s| s.iter().any(|t| t.is_none_or(|t| t == p.start_ticks)))
    });
}

/// `<instance>/paperclipd-reload.json`: the reload in progress, or the last.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub phase: Phase,
    /// The pid of the `run` that did it (the state is stale without it).
    pub supervisor_pid: i32,
    pub requested_at: String,
    pub drain: bool,
    pub previous_server_pid: i32,
    pub new_server_pid: Option<i32>,
    pub carried_over: Vec<CarriedOver>,
    /// The runs the old server handed over (its snapshot).
    pub handed_over_run_ids: Vec<String>,
    pub report: Option<serde_json::Value>,
    pub message: String,
}

impl State {
    pub fn write(&self, instance: &Instance) {
        let path = state_path(instance);
        let res = serde_json::to_string_pretty(self)
            .map_err(std::io::Error::other)
            .and_then(|j| write_json_atomic(&path, &j));
        if let Err(e) = res {
            crate::log::warn(&format!(
                "cannot record the reload in {}: {e}",
                path.display()
            ));
        }
    }

    pub fn read(instance: &Instance) -> Option<State> {
        serde_json::from_str(&fs::read_to_string(state_path(instance)).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reload may carry thousands of runs over while thousands of
    /// leaks are adopted: sparing the runs must not compare each adopted
    /// process with each run (that took seconds here).
    #[test]
    fn sparing_many_carried_over_runs_takes_one_pass() {
        use crate::adopted::Adopted;
        let n = 40_000;
        let carried: Vec<CarriedOver> = (0..n)
            .map(|i| CarriedOver {
                pid: 2 * i,
                command: String::new(),
                // one without a start time: spared whatever its start
                start_ticks: (i != 0).then_some(2 * i as u64),
            })
            .collect();
        let adopted = |pid: i32, start: u64| Adopted {
            pid,
            start_ticks: start,
            rss_bytes: 0,
            age: Duration::ZERO,
        };
        // Every even pid is a carried-over run, but pid 2's start time
        // names another process; every odd pid is a leak.
        let mut procs: Vec<Adopted> = (0..2 * n)
            .map(|pid| adopted(pid, if pid == 2 { 99 } else { pid as u64 }))
            .collect();
        let started = Instant::now();
        spare(&carried, &mut procs);
        let took = started.elapsed();
        let left: Vec<i32> = procs.iter().map(|p| p.pid).collect();
        assert_eq!(left.len(), n as usize + 1);
        assert_eq!(&left[..3], [1, 2, 3]);
        assert!(took < Duration::from_secs(1), "{n} runs took {took:?}");
    }

    #[test]
    fn the_intent_has_upstreams_field_names() {
        let i = Intent::new(42, Some("2026.916.1".into()), false);
        let v = serde_json::to_value(&i).unwrap_or_default();
        for k in [
            "version",
            "requestedAt",
            "previousServerPid",
            "previousServerStartedAt",
            "previousServerVersion",
            "drainRequired",
            "requestedByRunId",
            "preflightActiveRunIds",
        ] {
            assert!(v.get(k).is_some(), "{k} missing in {v}");
        }
        assert_eq!(v["drainRequired"], false);
        assert_eq!(v["drainReason"], serde_json::Value::Null);
        assert!(i.requested_at.ends_with('Z') && i.requested_at.len() == 24);
    }

    #[test]
    fn a_report_summary_counts_each_class() {
        let r: Report = serde_json::from_str(
            r#"{"requestedAt":"x","adoptedRunIds":["a","b"],"lostRunIds":["c"],"runs":[]}"#,
        )
        .unwrap_or_default();
        assert_eq!(r.summary(), "2 run(s) adopted (a, b), 1 lost (c)");
    }
}

pub mod wire;
