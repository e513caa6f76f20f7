//! `install` and `uninstall` for systemd: the unit and the instance's
//! drop-in, the old template's migration, upstream's own unit, and the
//! warnings `install` gives (linger, a stop budget beyond the manager's).

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::{JobTimeouts, USER_MANAGER_STOP_TIMEOUT, start};
use crate::error::{Error, Kind, Result};
use crate::instance::Instance;
use crate::systemd::{Client, Job, JobResult, Scope, TEMPLATE_NAME, UnitInfo, unit, unit_name};
use crate::{config, log, owned_file, runtime};

/// For units that are not ours (upstream's): systemd's defaults, 90 s each.
const FOREIGN_JOB_TIMEOUT: Duration = Duration::from_secs(120);

pub struct InstallOptions {
    pub now: bool,
    pub replace_upstream: bool,
    /// The instance's `stop_timeout`, for its drop-in's `TimeoutStopSec=`.
    pub stop_timeout: Duration,
    /// The instance's own variables, for its drop-in (never the template).
    pub env: Vec<(&'static str, String)>,
    pub timeouts: JobTimeouts,
}

/// The instance's own variables: the Node.js the user's shell runs (or
/// the service user's, for the system unit), checked and pinned; and its
/// home when it was chosen explicitly (flag or env).
pub(super) fn instance_environment(
    scope: Scope,
    instance: &Instance,
    explicit_home: bool,
    node: Option<&Path>,
) -> Result<Vec<(&'static str, String)>> {
    let mut env = Vec::new();
    if scope == Scope::User && explicit_home {
        env.push((
            "PAPERCLIP_HOME",
            instance.home.to_string_lossy().into_owned(),
        ));
    }
    env.extend(runtime::pin::systemd_environment(scope, instance, node)?);
    Ok(env)
}

/// A stop budget beyond user@.service's own is cut short at logout and
/// shutdown, when the user manager stops with every instance in it.
pub(super) fn warn_stop_budget(stop_timeout: Duration) {
    let budget = config::stop_budget(stop_timeout);
    if budget <= USER_MANAGER_STOP_TIMEOUT {
        return;
    }
    let most = USER_MANAGER_STOP_TIMEOUT - config::STOP_MARGIN;
    log::warn(&format!(
        "stop_timeout {} plus paperclipd's {} s margin ({} s) is longer than user@.service's own \
         TimeoutStopSec={} s: at logout and shutdown systemd stops the whole user manager within {} s, so \
         the instance is killed before its ordered stop ends (`systemctl --user stop` still waits the full {} s). \
         Lower stop_timeout to {} s at most, or give the user manager more time: \
         `sudo systemctl edit user@.service` → [Service] TimeoutStopSec={}s",
        humantime::format_duration(stop_timeout),
        config::STOP_MARGIN.as_secs(),
        budget.as_secs(),
        USER_MANAGER_STOP_TIMEOUT.as_secs(),
        USER_MANAGER_STOP_TIMEOUT.as_secs(),
        budget.as_secs(),
        most.as_secs(),
        budget.as_secs() + 5
    ));
}

/// `install --dry-run`: the files and the calls, nothing done.
pub(super) fn print_plan(
    instance: &Instance,
    path: &Path,
    content: &str,
    opts: &InstallOptions,
) -> Result<()> {
    let unit = unit_name(&instance.id);
    log::out(&format!("# would write {}:", path.display()));
    log::out(content);
    let dropin = unit::dropin_path(path.parent().unwrap_or(Path::new("/")), &instance.id);
    log::out(&format!("# would write {}:", dropin.display()));
    log::out(&unit::render_dropin(opts.stop_timeout, &opts.env)?);
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
    Ok(())
}

/// An old template (paperclipd before per-instance drop-ins) carried the
/// last-installed instance's home, Node.js and PATH for every instance.
/// Before it is replaced, every other enabled instance gets those lines in
/// a drop-in of its own, so that it runs as before; the instance being
/// installed gets its own settings.
fn migrate_old_template(dir: &Path, path: &Path, new: &str, installing: &str) -> Result<()> {
    let Ok(old) = fs::read_to_string(path) else {
        return Ok(());
    };
    if !old.contains(owned_file::MARKER) {
        return Ok(());
    }
    let keep: Vec<String> = unit::legacy_instance_lines(new);
    let lines: Vec<String> = unit::legacy_instance_lines(&old)
        .into_iter()
        .filter(|l| !keep.contains(l))
        .collect();
    if lines.is_empty() {
        return Ok(());
    }
    let others = other_enabled_instances(dir, installing);
    let mut moved = Vec::new();
    for name in &others {
        let Some(id) = name
            .strip_prefix("paperclip@")
            .and_then(|n| n.strip_suffix(".service"))
            .and_then(|n| crate::instance::InstanceId::parse(n).ok())
        else {
            continue;
        };
        let file = unit::migrated_path(dir, &id);
        owned_file::write(&file, &unit::render_migrated(&lines))?;
        moved.push(file.display().to_string());
    }
    log::warn(&format!(
        "{} was written by an older paperclipd and carried one instance's settings for every instance ({}); \
         the template now holds none. {}Run `paperclipd install -i <id>` for each instance to give it its own",
        path.display(),
        lines.join(" "),
        if moved.is_empty() {
            String::new()
        } else {
            format!(
                "So that the other instances keep running as before, they are now in {}. ",
                moved.join(", ")
            )
        }
    ));
    Ok(())
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
    let dir = path.parent().unwrap_or(Path::new("/"));
    let dropin = unit::dropin_path(dir, &instance.id);
    let dropin_text = unit::render_dropin(opts.stop_timeout, &opts.env)?;
    migrate_old_template(dir, path, content, &unit)?;
    let migrated = unit::migrated_path(dir, &instance.id);
    if owned_file::remove(&migrated)? {
        log::info(&format!(
            "removed {} (the old template's settings; {unit} has its own now)",
            migrated.display()
        ));
    }
    for (file, text) in [(path, content.to_string()), (dropin.as_path(), dropin_text)] {
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
        return start(sd, instance, Job::Start, &opts.timeouts).await;
    }
    log::out(&format!(
        "installed {unit}; start it with `paperclipd start -i {}` or `systemctl{} start {unit}`",
        instance.id,
        scope.systemctl_flag()
    ));
    Ok(0)
}

/// Without linger the user manager, and every instance in it, stops at
/// the user's last logout and does not start at boot, whatever
/// `RemoveIPC=` says; with `RemoveIPC=yes` the logout also removes
/// PostgreSQL's IPC objects (upstream #2862). Warn whenever it is off.
pub(super) async fn advise_linger() {
    let v =
        crate::systemd::logind::check(crate::sys::euid(), &crate::procfs::Scan::default()).await;
    match v.linger_warning() {
        Some(w) => log::warn(&w),
        None => log::info(&format!("logind: {}", v.describe())),
    }
}

/// Upstream's own unit for the same instance would start a second server.
async fn check_upstream<C: Client>(sd: &C, instance: &Instance, replace: bool) -> Result<()> {
    let up = crate::systemd::upstream(&instance.id, sd.scope());
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
    let r = sd.job(Job::Stop, &up.name, FOREIGN_JOB_TIMEOUT).await?;
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
pub async fn uninstall<C: Client>(
    sd: &C,
    instance: &Instance,
    dir: &Path,
    timeouts: &JobTimeouts,
) -> Result<u8> {
    let unit = unit_name(&instance.id);
    if sd.unit_info(&unit).await?.is_some_and(|i| i.is_running()) {
        let r = sd
            .job(Job::Stop, &unit, timeouts.for_job(Job::Stop))
            .await?;
        log::info(&format!("stopped {unit} ({r})"));
    }
    for (kind, from, _) in sd.disable(&unit).await? {
        log::info(&format!("{kind} {from}"));
    }
    let dropin = unit::dropin_path(dir, &instance.id);
    for file in [dropin.clone(), unit::migrated_path(dir, &instance.id)] {
        if owned_file::remove(&file)? {
            log::info(&format!("removed {}", file.display()));
        }
    }
    // Only if empty: a drop-in of the user's own stays.
    let _ = fs::remove_dir(dropin.parent().unwrap_or(dir));
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
