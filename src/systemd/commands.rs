//! `install`, `uninstall`, `start`, `stop`, `restart`, `logs` for systemd:
//! the flows (install and uninstall in [`install`]), written against
//! [`Client`] so that unit tests drive them with a fake manager (the
//! real-manager tests live in `tests/systemd.rs`).

use std::time::Duration;

use super::{Client, Job, JobResult, Scope, Systemd, TEMPLATE_NAME, UnitInfo, unit, unit_name};
use crate::cli::Command;
use crate::error::{Error, Kind, Result};
use crate::instance::Instance;
use crate::{config, log};

mod install;
pub use install::{InstallOptions, install, uninstall};
use install::{advise_linger, instance_environment, print_plan, warn_stop_budget};

/// How long we wait for a job beyond the instance's own budget for it:
/// systemd's start timeout (extended by paperclipd while progress is real)
/// or its stop timeout ends the job first; this only bounds our wait.
const JOB_MARGIN: Duration = Duration::from_secs(30);

/// user@.service's own `TimeoutStopSec=` (systemd's default unit file):
/// at logout and shutdown the whole user manager, with every instance in
/// it, is stopped within this.
pub const USER_MANAGER_STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long our client waits for each job on one instance: its
/// `ready_timeout` for a start, its stop budget for a stop, both for a
/// restart; plus [`JOB_MARGIN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobTimeouts {
    pub ready: Duration,
    pub stop_budget: Duration,
}

impl JobTimeouts {
    /// The instance's budgets as its `run` will see them.
    pub fn of(instance: &Instance) -> Result<Self> {
        Ok(JobTimeouts {
            ready: config::instance_ready_timeout(instance)?,
            stop_budget: config::stop_budget(config::instance_stop_timeout(instance)?),
        })
    }

    pub fn for_job(&self, job: Job) -> Duration {
        JOB_MARGIN
            + match job {
                Job::Start => self.ready,
                Job::Stop => self.stop_budget,
                Job::Restart => self.ready + self.stop_budget,
            }
    }
}

/// The lifecycle commands of the CLI, through systemd.
pub fn dispatch(rt: &tokio::runtime::Runtime, command: Command) -> Result<u8> {
    let (target, system) = match &command {
        Command::Install(a) => (&a.managed.target, a.managed.system),
        Command::Uninstall(a) | Command::Start(a) | Command::Stop(a) => (&a.target, a.system),
        Command::Restart(r) => (&r.managed.target, r.managed.system),
        Command::Logs(a) => (&a.managed.target, a.managed.system),
        _ => return Err(Error::os("not a lifecycle command".to_string())),
    };
    let instance = config::resolve_instance(target)?;
    let scope = Scope::from_system_flag(system);
    if let Command::Logs(a) = &command {
        return logs(&instance, scope, a.follow, a.lines);
    }
    let timeouts = JobTimeouts::of(&instance)?;
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
            let stop_timeout = config::instance_stop_timeout(&instance)?;
            if scope == Scope::User {
                warn_stop_budget(stop_timeout);
            }
            let node = a.node.as_deref().filter(|p| !p.as_os_str().is_empty());
            let opts = InstallOptions {
                now: a.now,
                replace_upstream: a.replace_upstream,
                stop_timeout,
                env: instance_environment(scope, &instance, a.managed.target.home.is_some(), node)?,
                timeouts,
            };
            let content = unit::render(
                unit::template(scope),
                &crate::service_exe::path(scope == Scope::System)?,
            )?;
            // Refuses a value the drop-in cannot carry before anything is done.
            unit::render_dropin(opts.stop_timeout, &opts.env)?;
            let path = unit::unit_dir(scope)?.join(TEMPLATE_NAME);
            if a.dry_run {
                print_plan(&instance, &path, &content, &opts)?;
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
                if scope == Scope::User {
                    advise_linger().await;
                }
                install(&sd, &instance, &opts, &path, &content).await
            }
            Command::Uninstall(_) => {
                uninstall(&sd, &instance, &unit::unit_dir(scope)?, &timeouts).await
            }
            Command::Start(_) => start(&sd, &instance, Job::Start, &timeouts).await,
            Command::Restart(_) => start(&sd, &instance, Job::Restart, &timeouts).await,
            _ => stop(&sd, &instance, &timeouts).await,
        }
    })
}

/// `start` / `restart`: returns after READY=1, or explains the failure.
pub async fn start<C: Client>(
    sd: &C,
    instance: &Instance,
    job: Job,
    timeouts: &JobTimeouts,
) -> Result<u8> {
    let unit = unit_name(&instance.id);
    let result = sd.job(job, &unit, timeouts.for_job(job)).await?;
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

pub async fn stop<C: Client>(sd: &C, instance: &Instance, timeouts: &JobTimeouts) -> Result<u8> {
    let unit = unit_name(&instance.id);
    let result = sd
        .job(Job::Stop, &unit, timeouts.for_job(Job::Stop))
        .await?;
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
