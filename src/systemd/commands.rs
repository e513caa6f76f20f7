//! `install`, `uninstall`, `start`, `stop`, `restart`, `logs` for systemd:
//! the flows, written against [`Client`] so that unit tests drive them with
//! a fake manager (the real-manager tests live in `tests/systemd.rs`).

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::{Client, Job, JobResult, Scope, Systemd, TEMPLATE_NAME, UnitInfo, unit, unit_name};
use crate::cli::Command;
use crate::error::{Error, Kind, Result};
use crate::instance::Instance;
use crate::{config, log, owned_file, runtime};

/// Long enough for the slowest real start (the default ready timeout is 5
/// minutes; systemd's own start timeout ends the job earlier if progress
/// stops).
const JOB_TIMEOUT: Duration = Duration::from_secs(330);

/// The lifecycle commands of the CLI, through systemd.
pub fn dispatch(rt: &tokio::runtime::Runtime, command: Command) -> Result<u8> {
    let (target, system) = match &command {
        Command::Install(a) => (&a.managed.target, a.managed.system),
        Command::Uninstall(a) | Command::Start(a) | Command::Stop(a) | Command::Restart(a) => {
            (&a.target, a.system)
        }
        Command::Logs(a) => (&a.managed.target, a.managed.system),
        _ => return Err(Error::os("not a lifecycle command".to_string())),
    };
    let instance = config::resolve_instance(target)?;
    let scope = Scope::from_system_flag(system);
    if let Command::Logs(a) = &command {
        return logs(&instance, scope, a.follow, a.lines);
    }
    let plan = match &command {
        Command::Install(a) => {
            if !a.dry_run {
                crate::service_exe::pin(scope == Scope::System)?;
            }
            if scope == Scope::System {
                if let Err(e) = super::reach::check_system_unit(&crate::service_exe::path(true)?) {
                    if !a.dry_run {
                        return Err(e);
                    }
                    log::warn(&format!("install --system would refuse: {}", e.message));
                }
            }
            let opts = InstallOptions {
                now: a.now,
                replace_upstream: a.replace_upstream,
                explicit_home: a.managed.target.home.is_some(),
                stop_timeout: config::instance_stop_timeout(&instance)?,
            };
            let node = a.node.as_deref().filter(|p| !p.as_os_str().is_empty());
            let content = rendered_unit(scope, &instance, &opts, node)?;
            let path = unit::unit_dir(scope)?.join(TEMPLATE_NAME);
            if a.dry_run {
                print_plan(&instance, &path, &content, &opts);
                return Ok(0);
            }
            Some((opts, path, content))
        }
        _ => None,
    };
    rt.block_on(async {
        let sd = Systemd::connect(scope).await?;
        match command {
            Command::Install(_) => {
                let (opts, path, content) = plan.ok_or_else(|| Error::os("no plan"))?;
                let code = install(&sd, &instance, &opts, &path, &content).await?;
                if scope == Scope::User {
                    advise_linger().await;
                }
                Ok(code)
            }
            Command::Uninstall(_) => uninstall(&sd, &instance, &unit::unit_dir(scope)?).await,
            Command::Start(_) => start(&sd, &instance, Job::Start).await,
            Command::Restart(_) => start(&sd, &instance, Job::Restart).await,
            _ => stop(&sd, &instance).await,
        }
    })
}

pub struct InstallOptions {
    pub now: bool,
    pub replace_upstream: bool,
    /// The home was chosen explicitly (flag or env): record it in the unit.
    pub explicit_home: bool,
    /// The instance's `stop_timeout`, for its drop-in's `TimeoutStopSec=`.
    pub stop_timeout: Duration,
}

/// The unit file for this instance and manager, with paperclipd's own path.
fn rendered_unit(
    scope: Scope,
    instance: &Instance,
    opts: &InstallOptions,
    node: Option<&Path>,
) -> Result<String> {
    let exe = crate::service_exe::path(scope == Scope::System)?;
    // The Node.js the user's shell runs, checked and pinned (PATH, shim, node).
    let mut env = runtime::pin::systemd_environment(scope, instance, node)?;
    if scope == Scope::User && opts.explicit_home {
        env.push((
            "PAPERCLIP_HOME",
            instance.home.to_string_lossy().into_owned(),
        ));
    }
    unit::render(unit::template(scope), &exe, &env)
}

/// `install --dry-run`: the file and the calls, nothing done.
fn print_plan(instance: &Instance, path: &Path, content: &str, opts: &InstallOptions) {
    let unit = unit_name(&instance.id);
    log::out(&format!("# would write {}:", path.display()));
    log::out(content);
    let dropin = unit::dropin_path(path.parent().unwrap_or(Path::new("/")), &instance.id);
    log::out(&format!("# would write {}:", dropin.display()));
    log::out(&unit::render_dropin(opts.stop_timeout));
    log::out("# would call over D-Bus (org.freedesktop.systemd1.Manager):");
    log::out("#   Reload()");
    log::out(&format!(
        "#   EnableUnitFiles([\"{unit}\"], runtime=false, force=true)"
    ));
    if opts.now {
        log::out(&format!(
            "#   StartUnit(\"{unit}\", \"replace\") and wait for JobRemoved (returns after READY=1)"
        ));
    }
}

/// Writes the unit to `path`, enables the instance, and with `now` starts it.
pub async fn install<C: Client>(
    sd: &C,
    instance: &Instance,
    opts: &InstallOptions,
    path: &Path,
    content: &str,
) -> Result<u8> {
    let unit = unit_name(&instance.id);
    check_upstream(sd, instance, opts.replace_upstream).await?;
    let dropin = unit::dropin_path(path.parent().unwrap_or(Path::new("/")), &instance.id);
    for (file, text) in [
        (path, content.to_string()),
        (dropin.as_path(), unit::render_dropin(opts.stop_timeout)),
    ] {
        let changed = owned_file::write(file, &text)?;
        log::info(&format!(
            "{} {}",
            if changed { "wrote" } else { "unchanged:" },
            file.display()
        ));
    }
    sd.reload().await?;
    for (kind, from, to) in sd.enable(&unit).await? {
        log::info(&format!("{kind} {from} → {to}"));
    }
    // As `systemctl enable` does: reload again so the running manager sees
    // the new `WantedBy=` link (otherwise a stopped unit is unloaded at once
    // and its last result is lost).
    sd.reload().await?;
    let scope = sd.scope();
    log::info(&format!(
        "enabled {unit} (starts with your {} session)",
        if scope == Scope::User {
            "user"
        } else {
            "system"
        }
    ));
    if opts.now {
        return start(sd, instance, Job::Start).await;
    }
    log::out(&format!(
        "installed {unit}; start it with `paperclipd start -i {}` or `systemctl{} start {unit}`",
        instance.id,
        scope.systemctl_flag()
    ));
    Ok(0)
}

/// A user unit's PostgreSQL loses its IPC objects at the user's last
/// logout unless the user lingers (logind's `RemoveIPC=`, upstream #2862):
/// say so, with the exact command.
async fn advise_linger() {
    let v = super::logind::check(crate::sys::euid()).await;
    if v.state.exposed() {
        log::warn(&format!(
            "{}. Without linger the instance is not a background service: it stops when you log out",
            v.describe()
        ));
    } else {
        log::info(&format!("logind: {}", v.describe()));
    }
}

/// Upstream's own unit for the same instance would start a second server.
async fn check_upstream<C: Client>(sd: &C, instance: &Instance, replace: bool) -> Result<()> {
    let up = super::upstream(&instance.id, sd.scope());
    let info = sd.unit_info(&up.name).await.ok().flatten();
    let enabled = sd
        .unit_file_state(&up.name)
        .await
        .is_some_and(|s| s.starts_with("enabled"));
    let running = info.as_ref().is_some_and(UnitInfo::is_running);
    if !enabled && !running {
        return Ok(());
    }
    if !replace {
        let state = if running { "running" } else { "enabled" };
        return Err(Error::busy(format!(
            "{}, or rerun with --replace-upstream",
            up.conflict(&instance.id, state)
        )));
    }
    log::info(&format!("stopping and disabling upstream's {}", up.name));
    let r = sd.job(Job::Stop, &up.name, JOB_TIMEOUT).await?;
    if r != JobResult::Done {
        return Err(Error::new(
            Kind::Failed,
            format!(
                "stopping {} ended with {r:?}; see `systemctl{} status {}`",
                up.name,
                sd.scope().systemctl_flag(),
                up.name
            ),
        ));
    }
    sd.disable(&up.name).await?;
    Ok(())
}

/// Stops and disables the instance; removes the template (from `dir`)
/// with the last instance.
pub async fn uninstall<C: Client>(sd: &C, instance: &Instance, dir: &Path) -> Result<u8> {
    let unit = unit_name(&instance.id);
    if sd.unit_info(&unit).await?.is_some_and(|i| i.is_running()) {
        let r = sd.job(Job::Stop, &unit, JOB_TIMEOUT).await?;
        log::info(&format!("stopped {unit} ({r})"));
    }
    for (kind, from, _) in sd.disable(&unit).await? {
        log::info(&format!("{kind} {from}"));
    }
    let dropin = unit::dropin_path(dir, &instance.id);
    if owned_file::remove(&dropin)? {
        log::info(&format!("removed {}", dropin.display()));
        // Only if empty: a drop-in of the user's own stays.
        let _ = fs::remove_dir(dropin.parent().unwrap_or(dir));
    }
    let path = dir.join(TEMPLATE_NAME);
    let others = other_enabled_instances(dir, &unit);
    if others.is_empty() {
        if owned_file::remove(&path)? {
            log::info(&format!("removed {}", path.display()));
        }
    } else {
        log::info(&format!(
            "kept {} (still used by {})",
            path.display(),
            others.join(", ")
        ));
    }
    sd.reload().await?;
    log::out(&format!("uninstalled {unit}"));
    Ok(0)
}

/// `paperclip@*.service` links in any `*.wants` directory, except `unit`.
fn other_enabled_instances(dir: &Path, unit: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().ends_with(".wants") {
            continue;
        }
        for l in fs::read_dir(e.path()).into_iter().flatten().flatten() {
            let name = l.file_name().to_string_lossy().into_owned();
            if name.starts_with("paperclip@") && name != unit && !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// `start` / `restart`: returns after READY=1, or explains the failure.
pub async fn start<C: Client>(sd: &C, instance: &Instance, job: Job) -> Result<u8> {
    let unit = unit_name(&instance.id);
    let result = sd.job(job, &unit, JOB_TIMEOUT).await?;
    let info = sd.unit_info(&unit).await?.unwrap_or_default();
    if result == JobResult::Done && info.active_state == "active" {
        log::out(&format!(
            "{unit} is ready (pid {}): {}",
            info.main_pid, info.status_text
        ));
        return Ok(0);
    }
    Err(Error::new(
        Kind::Failed,
        failure_report(sd.scope(), &unit, &result, &info),
    ))
}

pub async fn stop<C: Client>(sd: &C, instance: &Instance) -> Result<u8> {
    let unit = unit_name(&instance.id);
    let result = sd.job(Job::Stop, &unit, JOB_TIMEOUT).await?;
    let info = sd.unit_info(&unit).await?.unwrap_or_default();
    if result == JobResult::Done && info.active_state != "failed" {
        log::out(&format!("{unit} stopped ({})", info.active_state));
        return Ok(0);
    }
    Err(Error::new(
        Kind::Failed,
        failure_report(sd.scope(), &unit, &result, &info),
    ))
}

fn failure_report(scope: Scope, unit: &str, result: &JobResult, info: &UnitInfo) -> String {
    let flag = scope.systemctl_flag();
    let mut msg = format!(
        "{unit}: job {result}; the unit is {} ({}), result {:?}, exit status {}",
        info.active_state, info.sub_state, info.result, info.exec_main_status
    );
    if !info.status_text.is_empty() {
        msg.push_str(&format!("\n  status: {}", info.status_text));
    }
    let lines = journal_tail(scope, unit, 15);
    if !lines.is_empty() {
        msg.push_str("\n  last journal lines:");
        for l in lines {
            msg.push_str("\n  | ");
            msg.push_str(&l);
        }
    }
    msg.push_str(&format!(
        "\nSee `paperclipd logs` or `systemctl{flag} status {unit}`."
    ));
    msg
}

fn journalctl_args(scope: Scope, unit: &str) -> [String; 2] {
    match scope {
        // `--user-unit` works for root (whose user units log to the system
        // journal) and for other users alike.
        Scope::User => ["--user-unit".into(), unit.into()],
        Scope::System => ["-u".into(), unit.into()],
    }
}

fn journal_tail(scope: Scope, unit: &str, n: usize) -> Vec<String> {
    let out = std::process::Command::new("journalctl")
        .args(journalctl_args(scope, unit))
        .args(["-n", &n.to_string(), "--no-pager", "-o", "cat", "-q"])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// `paperclipd logs`: the unit's journal, through journalctl.
fn logs(instance: &Instance, scope: Scope, follow: bool, lines: Option<usize>) -> Result<u8> {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("journalctl");
    cmd.args(journalctl_args(scope, &unit_name(&instance.id)));
    cmd.args(["-n", &lines.unwrap_or(50).to_string(), "--no-pager"]);
    if follow {
        cmd.arg("-f");
    }
    let e = cmd.exec();
    Err(Error::new(
        if e.kind() == std::io::ErrorKind::NotFound {
            Kind::NotFound
        } else {
            Kind::Os
        },
        format!("cannot run journalctl: {e}; the logs are in systemd's journal"),
    ))
}

#[cfg(test)]
mod tests;
