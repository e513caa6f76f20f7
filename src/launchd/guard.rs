//! The crash-loop guard of `run` under launchd, which has no start limit:
//! `KeepAlive{SuccessfulExit=false}` respawns any non-zero exit every
//! `ThrottleInterval`, for ever (~8,600 runs a day).
//!
//! Under our own launchd job (`$XPC_SERVICE_NAME` is the instance's label)
//! `run` pauses the instance, by exiting 0 (which that `KeepAlive` does not
//! restart) and recording why in `<instance root>/paperclipd-launchd.json`:
//! * at once for exits a restart cannot fix (73, 75, 78, 126, 127: the unit's
//!   `RestartPreventExitStatus=`);
//! * after `start_limit_burst` failed runs within `start_limit_interval`
//!   (5 in 300 s: the systemd units' own start limit, `config::START_LIMIT_*`).
//!
//! "Already running" (75 while another run holds the instance lock) is
//! mostly temporary (a run still stopping after a logout, a run by hand, the
//! copy in the other launchd domain): the job waits until the lock is free
//! and runs then, recording the wait for `status`; SIGTERM ends the wait
//! with exit 0.
//!
//! A paused instance's job exits 0 at once, also at the next login, until
//! `paperclipd start`/`restart`/`install` clears the file, or the Mac
//! boots again: each pause records its boot ([`crate::sys::boot_id`]).
//! `status` shows the pause and its reason. The file is portable (tested on
//! Linux with `XPC_SERVICE_NAME` set); only launchd acts on the exit.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::cli::Selection;
use crate::config;
use crate::error::{Error, Result};
use crate::instance::Instance;
use crate::log;

/// The systemd units' start limit (`StartLimitBurst=`,
/// `StartLimitIntervalSec=`): one constant for both managers.
pub const DEFAULT_BURST: u32 = config::START_LIMIT_BURST;
pub const DEFAULT_INTERVAL: Duration = config::START_LIMIT_INTERVAL;
/// Exits a restart cannot fix (`RestartPreventExitStatus=` of the units).
pub const TERMINAL_CODES: [u8; 5] = [73, 75, 78, 126, 127];

/// What the guard remembers between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardState {
    /// When recent runs failed (seconds since the epoch).
    #[serde(default)]
    pub failures: Vec<f64>,
    #[serde(default)]
    pub paused: Option<Pause>,
    /// The job waits for another run of the instance to end.
    #[serde(default)]
    pub waiting: Option<Waiting>,
}

/// Our launchd job waits because another run holds the instance's lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    /// RFC 3339.
    pub since: String,
    /// The waiting paperclipd (the job's process).
    pub pid: i32,
    /// The lock holder when the wait began, if known.
    pub holder: Option<i32>,
}

impl Waiting {
    /// For `status`.
    pub fn describe(&self) -> String {
        format!(
            "launchd's job (paperclipd pid {}) waits since {} for the run that holds the lock{} to \
             end, then starts the instance",
            self.pid,
            self.since,
            self.holder
                .map(|h| format!(" (pid {h})"))
                .unwrap_or_default()
        )
    }
}

/// Why the instance is paused, for `status` and the job's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    /// RFC 3339.
    pub since: String,
    /// The exit code `run` would have had.
    pub code: u8,
    pub reason: String,
    /// The boot it belongs to ([`crate::sys::boot_id`]); a pause of
    /// another boot (or of none recorded) is forgotten.
    #[serde(default)]
    pub boot: Option<String>,
}

/// How many failed runs within which interval pause the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub burst: u32,
    pub interval: Duration,
}

/// What a run's end means under launchd.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Exit with this code (launchd restarts a non-zero one).
    Exit(u8),
    /// Exit 0 and stay paused.
    Pause(Pause),
}

/// The state file of an instance.
pub fn path(instance: &Instance) -> PathBuf {
    instance.root().join("paperclipd-launchd.json")
}

/// The file as it is; nothing recorded (or unreadable) is empty.
fn load_raw(instance: &Instance) -> GuardState {
    crate::regular_file::read_to_string(&path(instance))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// The instance's guard state as it holds now: a pause of another boot and
/// a wait whose process is gone are left out.
pub fn load(instance: &Instance) -> GuardState {
    current(load_raw(instance), crate::sys::boot_id().as_deref())
}

/// `state` for this `boot` (pure).
pub fn current(mut state: GuardState, boot: Option<&str>) -> GuardState {
    state.paused = state.paused.filter(|p| p.boot.as_deref() == boot);
    state.waiting = state.waiting.filter(|w| crate::sys::process_exists(w.pid));
    state
}

/// Forgets failures and the pause (`start`, `restart`, `install --now`).
pub fn clear(instance: &Instance) -> Result<()> {
    match std::fs::remove_file(path(instance)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::config(format!(
            "cannot remove {} (the crash-loop pause): {e}; remove it by hand",
            path(instance).display()
        ))),
        _ => Ok(()),
    }
}

/// Writes the state atomically (temp file + rename), mode 0600.
fn save(instance: &Instance, state: &GuardState) -> Result<()> {
    crate::lock::prepare_root(instance)?;
    let p = path(instance);
    let tmp = p.with_extension(format!("json.{}", std::process::id()));
    let text = serde_json::to_string_pretty(state).unwrap_or_default();
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &p)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::config(format!("cannot write {}: {e}", p.display()))
    })
}

/// The decision (pure): `code` is how the run ended, `what` says why in
/// one line.
pub fn decide(state: &mut GuardState, code: u8, what: &str, now: f64, limits: Limits) -> Decision {
    if code == 0 {
        return Decision::Exit(0);
    }
    let since =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs_f64(now.max(0.0)))
            .to_string();
    if TERMINAL_CODES.contains(&code) {
        return Decision::Pause(Pause {
            since,
            code,
            reason: format!("exit {code}, which a restart cannot fix: {what}"),
            boot: None,
        });
    }
    let window = limits.interval.as_secs_f64();
    state
        .failures
        .retain(|t| t.is_finite() && *t <= now && now - *t <= window);
    state.failures.push(now);
    if state.failures.len() < limits.burst as usize {
        return Decision::Exit(code);
    }
    Decision::Pause(Pause {
        since,
        code,
        reason: format!(
            "{} failed starts within {}; the last one: exit {code}: {what}",
            state.failures.len(),
            humantime::format_duration(limits.interval)
        ),
        boot: None,
    })
}

/// Runs `run` (the whole `paperclipd run`) under the guard when launchd
/// runs our job ([`super::our_job`]).
pub fn supervised(sel: &Selection, mut run: impl FnMut() -> Result<u8>) -> Result<u8> {
    let Some(job) = super::our_job() else {
        return run();
    };
    let instance = match config::resolve_instance(&sel.target) {
        Ok(i) if job == super::label(&i.id) => i,
        Ok(_) => return run(),
        Err(e) => {
            // Nothing to record without an instance; a restart cannot help.
            crate::print_error(&e);
            log::error(
                "launchd will not start this job again: fix its plist, then `paperclipd install`",
            );
            return Ok(0);
        }
    };
    super::early_errors::truncate_own_stderr();
    let boot = crate::sys::boot_id();
    let state = state_at_start(&instance, boot.as_deref());
    if let Some(p) = &state.paused {
        log::error(&paused_message(&instance, p));
        return Ok(0);
    }
    let limits = limits(sel, &instance);
    let result = loop {
        let result = run();
        // `run` reports its own errors and returns their code.
        let busy = match &result {
            Ok(c) => *c == 75,
            Err(e) => e.exit_code() == 75,
        };
        match crate::lock::probe_holder(&instance) {
            Some(holder) if busy => {
                if let Err(e) = &result {
                    log::info(e.message.lines().next().unwrap_or(""));
                }
                match wait_for_instance(&instance, &holder)? {
                    Waited::Free => continue,
                    Waited::Terminated => return Ok(0),
                }
            }
            _ => break result,
        }
    };
    record_run(&instance, result, boot, limits)
}

/// The guard's state as this run starts: a pause of an earlier boot is
/// forgotten (and the file says so).
fn state_at_start(instance: &Instance, boot: Option<&str>) -> GuardState {
    let raw = load_raw(instance);
    let mut state = current(raw.clone(), boot);
    if let (Some(old), None) = (&raw.paused, &state.paused) {
        log::info(&format!(
            "forgetting the pause of an earlier boot (since {}: {})",
            old.since, old.reason
        ));
        state.waiting = None;
        if let Err(e) = save(instance, &state) {
            log::warn(&format!("cannot forget the old pause: {}", e.message));
        }
    }
    state
}

/// Records how the run ended (a failure counts towards the start limit)
/// and ends the job: with the run's result, or paused (exit 0).
fn record_run(
    instance: &Instance,
    result: Result<u8>,
    boot: Option<String>,
    limits: Limits,
) -> Result<u8> {
    // Only the file's own fields may have changed while waiting.
    let mut state = current(load_raw(instance), boot.as_deref());
    state.waiting = None;
    let (code, what) = match &result {
        Ok(c) => (*c, format!("the server exited with code {c}")),
        Err(e) => (
            e.exit_code(),
            e.message.lines().next().unwrap_or("").to_string(),
        ),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut decision = decide(&mut state, code, &what, now, limits);
    if let Decision::Pause(p) = &mut decision {
        p.boot = boot;
        state.paused = Some(p.clone());
    }
    if code != 0 {
        if let Err(e) = save(instance, &state) {
            log::warn(&format!(
                "the crash-loop guard cannot record this run: {}",
                e.message
            ));
        }
    }
    match decision {
        Decision::Exit(_) => result,
        Decision::Pause(p) => {
            if let Err(e) = result {
                crate::print_error(&e);
            }
            log::error(&paused_message(instance, &p));
            Ok(0)
        }
    }
}

/// How a wait for the instance ended.
enum Waited {
    /// The lock is free: run now.
    Free,
    /// SIGTERM or SIGINT (`paperclipd stop`, a logout): exit 0.
    Terminated,
}

/// Waits until nobody holds the instance's lock, recording the wait for
/// `status`; a SIGTERM or SIGINT ends it.
fn wait_for_instance(instance: &Instance, holder: &crate::lock::Holder) -> Result<Waited> {
    let holder_pid = holder.pid.or(holder.record.as_ref().map(|r| r.pid));
    let mut state = load_raw(instance);
    state.waiting = Some(Waiting {
        since: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        pid: crate::sys::pid(),
        holder: holder_pid,
    });
    if let Err(e) = save(instance, &state) {
        log::warn(&format!("cannot record the wait for status: {}", e.message));
    }
    log::info(&format!(
        "instance {:?} already runs{}: waiting until that run ends, then starting it (SIGTERM \
         stops the wait)",
        instance.id.as_str(),
        holder_pid
            .map(|p| format!(" (lock held by pid {p})"))
            .unwrap_or_default()
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::os(format!("cannot start the async runtime: {e}")))?;
    let waited = rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| Error::os(format!("cannot watch for SIGTERM: {e}")))?;
        let mut int = signal(SignalKind::interrupt())
            .map_err(|e| Error::os(format!("cannot watch for SIGINT: {e}")))?;
        loop {
            if crate::lock::probe_holder(instance).is_none() {
                return Ok(Waited::Free);
            }
            tokio::select! {
                _ = term.recv() => return Ok(Waited::Terminated),
                _ = int.recv() => return Ok(Waited::Terminated),
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    });
    let mut state = load_raw(instance);
    state.waiting = None;
    let _ = save(instance, &state);
    match &waited {
        Ok(Waited::Free) => log::info("the other run ended: starting the instance"),
        Ok(Waited::Terminated) => log::info("stopped while waiting for the other run: exit 0"),
        Err(_) => {}
    }
    waited
}

/// The guard's limits from the instance's config file (defaults if it
/// cannot be read: the run itself reports a broken file).
fn limits(sel: &Selection, instance: &Instance) -> Limits {
    let file = config::load_file_config(sel, instance)
        .map(|(f, _)| f)
        .unwrap_or_default();
    Limits {
        burst: file.start_limit_burst.unwrap_or(DEFAULT_BURST).max(1),
        interval: file.start_limit_interval.unwrap_or(DEFAULT_INTERVAL),
    }
}

/// "paused since …: why; what to do".
pub fn paused_message(instance: &Instance, p: &Pause) -> String {
    format!(
        "instance {:?} is paused since {}: {}. launchd does not start it again until you fix the \
         cause and run `paperclipd start -i {}`",
        instance.id.as_str(),
        p.since,
        p.reason,
        instance.id
    )
}

#[cfg(test)]
mod tests;
