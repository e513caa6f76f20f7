//! `install`, `uninstall`, `start`, `stop`, `restart`, `logs` under
//! launchd. Generic over the launchctl runner, so the flows compile and are
//! tested on Linux with a recording stand-in; only [`dispatch`] and the real
//! runner are macOS-only.
//!
//! `install`, `start` and `restart` clear the crash-loop pause
//! ([`super::guard`]), then wait until the instance is ready, or fail as
//! soon as launchd tells that the job ended (`runs`, `last exit code`) or
//! the job paused itself.

use std::path::Path;
use std::time::{Duration, Instant};

use super::launchctl::{Agent, Launchctl, Loaded};
use super::print::LastExit;
use super::{early_errors, guard, plist, plist_path, upstream};
use crate::config::{self, ProbeSettings};
use crate::error::{Error, Kind, Result};
use crate::instance::Instance;
use crate::probe::Prober;
use crate::{log, owned_file};

/// The longest wait for readiness (the default ready timeout is 5 minutes).
const READY_WAIT: Duration = Duration::from_secs(330);
/// How often launchd is asked whether the job already ended.
const ASK_EVERY: Duration = Duration::from_millis(500);

pub struct Env<'a, L: Launchctl> {
    pub home: &'a Path,
    pub uid: u32,
    pub launchctl: &'a L,
    pub exe: &'a Path,
}

fn agent<'a, L: Launchctl>(e: &Env<'a, L>, instance: &'a Instance) -> Agent<'a, L> {
    Agent {
        instance,
        plist: plist_path(e.home, &instance.id),
        uid: e.uid,
        launchctl: e.launchctl,
    }
}

pub fn install<L: Launchctl>(
    e: &Env<'_, L>,
    instance: &Instance,
    env: &[(&str, String)],
    now: Option<&ProbeSettings>,
    dry_run: bool,
    replace_upstream: bool,
) -> Result<u8> {
    let a = agent(e, instance);
    // A pinned runtime brings its own PATH (see `runtime::pin`).
    let mut vars = Vec::new();
    if !env.iter().any(|(k, _)| *k == "PATH") {
        vars.push(("PATH", plist::default_path(e.home)));
    }
    vars.extend(env.iter().cloned());
    let budget = config::stop_budget(config::instance_stop_timeout(instance)?);
    let errors = early_errors::path(e.home, &instance.id);
    let xml = plist::render(instance, e.exe, &vars, budget, &errors)?;
    if dry_run {
        log::out(&format!("# would write {}:", a.plist.display()));
        log::out(&xml);
        log::out(&format!(
            "# would run: launchctl enable gui/{uid}/{label}; launchctl bootstrap gui/{uid} {} \
             (user/{uid} when there is no GUI login session)",
            a.plist.display(),
            uid = e.uid,
            label = a.label(),
        ));
        return Ok(0);
    }
    upstream::check(e.launchctl, e.home, e.uid, instance, replace_upstream)?;
    // launchd opens StandardErrorPath but does not create its directory.
    for dir in [instance.log_dir(), early_errors::dir(e.home)] {
        std::fs::create_dir_all(&dir)
            .map_err(|err| Error::config(format!("cannot create {}: {err}", dir.display())))?;
    }
    let changed = owned_file::write(&a.plist, &xml)?;
    log::info(&format!(
        "{} {}",
        if changed { "wrote" } else { "unchanged:" },
        a.plist.display()
    ));
    // launchd read the plist when it loaded the job: a changed one takes
    // effect only after a bootout and a new bootstrap. `bootout` returns
    // before the job is gone, so wait for that before loading it again.
    let loaded = if changed { a.loaded_all()? } else { Vec::new() };
    let was_running = loaded.iter().any(|l| l.job.running());
    if !loaded.is_empty() {
        log::info(&format!(
            "unloading {} (launchctl bootout) so that the new plist applies",
            a.label()
        ));
        a.bootout_and_wait(stop_deadline(instance)?)?;
    }
    load_installed(&a, instance, now, was_running)?;
    Ok(0)
}

/// After `install` wrote the plist: starts the job (`--now`), loads it
/// again when it was running, or enables it for the next login.
fn load_installed<L: Launchctl>(
    a: &Agent<'_, L>,
    instance: &Instance,
    now: Option<&ProbeSettings>,
    was_running: bool,
) -> Result<()> {
    // Installing is the user's word too: an old pause would otherwise keep
    // the new job from starting at the next login.
    guard::clear(instance)?;
    match now {
        Some(settings) => start_job(a, settings, false)?,
        // Never leave a running instance down: load it again at once.
        None if was_running => {
            let domain = a.bootstrap()?;
            log::out(&format!(
                "installed {}; {domain}/{} was running and was loaded again with it \
                 (`paperclipd status -i {}` shows when it is ready)",
                a.plist.display(),
                a.label(),
                instance.id
            ));
        }
        None => {
            // A label left disabled would not load at the next login.
            let domain = a.enable()?;
            log::out(&format!(
                "installed {} (enabled in {domain}); it starts at login, or now with \
                 `paperclipd start -i {}`",
                a.plist.display(),
                instance.id
            ));
        }
    }
    Ok(())
}

/// How long a stop may take: launchd SIGKILLs the job at its `ExitTimeOut`
/// (the stop budget), then needs a moment to let go of it.
fn stop_deadline(instance: &Instance) -> Result<Duration> {
    Ok(
        config::stop_budget(config::instance_stop_timeout(instance)?)
            .saturating_add(Duration::from_secs(5)),
    )
}

pub fn uninstall<L: Launchctl>(e: &Env<'_, L>, instance: &Instance) -> Result<u8> {
    let a = agent(e, instance);
    a.bootout_and_wait(stop_deadline(instance)?)?;
    guard::clear(instance)?;
    if owned_file::remove(&a.plist)? {
        log::info(&format!("removed {}", a.plist.display()));
    }
    log::out(&format!("uninstalled {}", a.label()));
    Ok(0)
}

/// `start` / `restart`: un-pauses the instance and returns once it is ready.
pub fn start<L: Launchctl>(e: &Env<'_, L>, settings: &ProbeSettings, restart: bool) -> Result<u8> {
    let a = agent(e, &settings.instance);
    if !a.plist.exists() {
        return Err(Error::config(format!(
            "{} does not exist; install it first with `paperclipd install -i {}`",
            a.plist.display(),
            settings.instance.id
        )));
    }
    guard::clear(&settings.instance)?;
    start_job(&a, settings, restart)?;
    Ok(0)
}

/// Starts the job (or, with `restart`, stops a running one in order
/// first) and waits until it is ready.
fn start_job<L: Launchctl>(
    a: &Agent<'_, L>,
    settings: &ProbeSettings,
    restart: bool,
) -> Result<()> {
    let before = a.loaded()?;
    let runs_before = before.as_ref().map_or(0, |l| l.job.runs);
    match before {
        None => {
            let domain = a.bootstrap()?;
            log::info(&format!("loaded {domain}/{}", a.label()));
        }
        Some(Loaded { domain, job }) if job.running() && restart => {
            // Not `kickstart -k` (SIGKILL, orphans on macOS): the job's own
            // ordered stop, then a start once everything of it is gone.
            a.terminate(&domain)?;
            wait_stopped(settings)?;
            a.kickstart(&domain)?;
        }
        Some(Loaded { job, .. }) if job.running() => {}
        Some(Loaded { domain, .. }) => a.kickstart(&domain)?,
    }
    wait_ready(settings, READY_WAIT, || start_failed(a, runs_before))?;
    log::out(&format!("{} is ready", a.label()));
    Ok(())
}

/// Why the job we started will not become ready, as soon as launchd or the
/// job itself tells: it paused itself, or a run ended since we started it.
fn start_failed<L: Launchctl>(a: &Agent<'_, L>, runs_before: u32) -> Result<Option<String>> {
    if let Some(p) = guard::load(a.instance).paused {
        return Ok(Some(format!("paperclipd paused it: {}", p.reason)));
    }
    let Some(l) = a.loaded()? else {
        return Ok(Some("launchd no longer has it loaded".into()));
    };
    let ended = (!l.job.running() && l.job.runs > runs_before) || l.job.runs > runs_before + 1;
    if !ended {
        return Ok(None);
    }
    Ok(match l.job.last_exit {
        LastExit::Never => None,
        LastExit::Code(0) => Some("its paperclipd exited 0 before it was ready".into()),
        LastExit::Code(c) => Some(format!(
            "its paperclipd exited with code {c} (launchd run {}); {}",
            l.job.runs,
            again()
        )),
        LastExit::Signal(s) => Some(format!(
            "its paperclipd was killed by a signal ({s}; launchd run {}); {}",
            l.job.runs,
            again()
        )),
        LastExit::Other(s) => Some(format!("its paperclipd ended: {s}")),
    })
}

/// What launchd does after a failed run, with the guard's default limits.
fn again() -> String {
    format!(
        "launchd starts it again every 10 s until {} failures within {} pause it",
        guard::DEFAULT_BURST,
        humantime::format_duration(guard::DEFAULT_INTERVAL)
    )
}

/// Unloads the job from both domains and returns once launchd let go of
/// it and its paperclipd released the instance lock; fails naming the pid
/// when it still runs at the deadline.
pub fn stop<L: Launchctl>(e: &Env<'_, L>, instance: &Instance) -> Result<u8> {
    let a = agent(e, instance);
    let was = a.bootout_and_wait(stop_deadline(instance)?)?;
    log::out(&format!(
        "{} {}",
        a.label(),
        if was { "stopped" } else { "was not loaded" }
    ));
    Ok(0)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| Error::os(format!("cannot start the async runtime: {err}")))
}

/// After `kill SIGTERM`: waits until the old paperclipd released the lock
/// (it does so after every process of its server is gone) and nothing
/// listens on the port, within the instance's stop budget.
fn wait_stopped(settings: &ProbeSettings) -> Result<()> {
    let instance = &settings.instance;
    let budget = config::stop_budget(config::instance_stop_timeout(instance)?);
    runtime()?.block_on(async {
        let start = Instant::now();
        loop {
            let locked = crate::lock::probe_holder(instance).is_some();
            let listening =
                crate::probe::listening(&settings.addrs, Duration::from_millis(500)).await.is_ok();
            if !locked && !listening {
                return Ok(());
            }
            if start.elapsed() > budget {
                return Err(Error::new(
                    Kind::Failed,
                    format!(
                        "instance {} did not stop within {} after SIGTERM ({}); not starting a second \
                         server beside it. See its log in {}",
                        instance.id,
                        humantime::format_duration(budget),
                        if locked { "its lock is still held" } else { "its port still listens" },
                        instance.log_dir().display()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// Ready = the instance's lock is held (paperclipd runs it) and both
/// probes pass. `failed` is asked every [`ASK_EVERY`]: `Some(why)` ends
/// the wait at once.
pub fn wait_ready(
    settings: &ProbeSettings,
    timeout: Duration,
    mut failed: impl FnMut() -> Result<Option<String>>,
) -> Result<()> {
    let label = super::label(&settings.instance.id);
    let log_hint = format!(
        "see its log in {} (`paperclipd logs -i {}`)",
        settings.instance.log_dir().display(),
        settings.instance.id
    );
    runtime()?.block_on(async {
        let prober = Prober::new(settings.clone(), crate::probe::REQUEST_TIMEOUT)?;
        let start = Instant::now();
        let mut asked = start;
        let mut last = String::from("no probe yet");
        while start.elapsed() < timeout {
            if crate::lock::probe_holder(&settings.instance).is_some() {
                let snap = prober.snapshot().await;
                if snap.ready() {
                    return Ok(());
                }
                if let Some(api) = &snap.api {
                    last = format!(
                        "{api}{}",
                        snap.ui.map(|u| format!("; {u}")).unwrap_or_default()
                    );
                }
            }
            if asked.elapsed() >= ASK_EVERY {
                asked = Instant::now();
                if let Some(why) = failed()? {
                    return Err(Error::new(
                        Kind::Failed,
                        format!("{label} did not become ready: {why}; {log_hint}"),
                    ));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::new(
            Kind::Unavailable,
            format!(
                "instance {} was not ready within {}: {last}; {log_hint}",
                settings.instance.id,
                humantime::format_duration(timeout),
            ),
        ))
    })
}

/// The lifecycle commands of the CLI, through launchd (macOS).
#[cfg(target_os = "macos")]
pub fn dispatch(_rt: &tokio::runtime::Runtime, cmd: crate::cli::Command) -> Result<u8> {
    use super::launchctl::SystemLaunchctl;
    use crate::cli::Command;
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from)
        .ok_or_else(|| {
            Error::config("HOME is not set; launchd agents live in ~/Library/LaunchAgents")
        })?;
    if let Command::Install(a) = &cmd {
        if !a.dry_run {
            crate::service_exe::pin(false)?;
        }
    }
    let exe = crate::service_exe::path(false)?;
    let l = SystemLaunchctl;
    let env = Env {
        home: &home,
        uid: crate::sys::uid(),
        launchctl: &l,
        exe: &exe,
    };
    let probe_settings = |a: &crate::cli::ManagedArgs| {
        config::resolve_probe_settings(&crate::cli::Selection {
            target: a.target.clone(),
            ..Default::default()
        })
    };
    match cmd {
        Command::Install(a) => {
            let inst = config::resolve_instance(&a.managed.target)?;
            // The Node.js the user's shell runs, checked and pinned.
            let node = a.node.as_deref().filter(|p| !p.as_os_str().is_empty());
            let mut vars = crate::runtime::pin::launchd_environment(&home, &inst, node)?;
            if a.managed.target.home.is_some() {
                vars.push(("PAPERCLIP_HOME", inst.home.to_string_lossy().into_owned()));
            }
            let settings = if a.now {
                Some(probe_settings(&a.managed)?)
            } else {
                None
            };
            install(
                &env,
                &inst,
                &vars,
                settings.as_ref(),
                a.dry_run,
                a.replace_upstream,
            )
        }
        Command::Uninstall(a) => uninstall(&env, &config::resolve_instance(&a.target)?),
        Command::Start(a) => start(&env, &probe_settings(&a)?, false),
        Command::Restart(r) => start(&env, &probe_settings(&r.managed)?, true),
        Command::Stop(a) => stop(&env, &config::resolve_instance(&a.target)?),
        Command::Logs(a) => {
            use std::os::unix::process::CommandExt;
            let inst = config::resolve_instance(&a.managed.target)?;
            // What the job printed before its log was open, first.
            if let Some(text) = early_errors::show(&home, &inst.id) {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                // exec replaces us: nothing may stay in the buffer.
                let _ = writeln!(out, "{text}").and_then(|_| out.flush());
            }
            let mut tail = std::process::Command::new("tail");
            tail.args(["-n", &a.lines.unwrap_or(50).to_string()]);
            if a.follow {
                tail.arg("-F");
            }
            // -F follows the file across paperclipd's rotations.
            tail.arg(super::log_file(&inst));
            let e = tail.exec();
            Err(Error::os(format!("cannot run tail: {e}")))
        }
        _ => Err(Error::os("not a lifecycle command".to_string())),
    }
}

#[cfg(test)]
#[path = "commands_tests.rs"]
mod tests;
