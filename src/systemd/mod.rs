//! systemd: the instance as `paperclip@<id>.service`, for the user's or the
//! system's manager.
//!
//! * [`unit`] — the embedded unit templates and their rendering;
//! * [`bus`] — the client: D-Bus (zbus), or `systemctl` without a bus;
//! * [`reach`] — whether the system unit's user can run paperclipd at all;
//! * [`commands`] — install, uninstall, start, stop, restart, logs, written
//!   against the [`Client`] trait so that they are unit-tested with a fake;
//! * [`logind`] — does linger protect the user's IPC from `RemoveIPC=`?

pub mod bus;
pub mod commands;
pub mod logind;
pub mod reach;
pub mod unit;

use std::time::Duration;

pub use bus::Systemd;

use crate::error::Result;
use crate::instance::InstanceId;
use crate::paperclip::{self, UpstreamService};

/// Which manager: the user's (`systemctl --user`) or the system's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    System,
}

impl Scope {
    pub fn from_system_flag(system: bool) -> Self {
        if system { Scope::System } else { Scope::User }
    }

    /// ` --user` or nothing, for command lines in messages.
    pub fn systemctl_flag(self) -> &'static str {
        match self {
            Scope::User => " --user",
            Scope::System => "",
        }
    }
}

/// The home of the system unit's instances (its `PAPERCLIP_HOME`, the
/// `paperclip` user's home).
pub const SYSTEM_HOME: &str = "/var/lib/paperclip";

/// The unit template's file name.
pub const TEMPLATE_NAME: &str = "paperclip@.service";

/// The unit of an instance (template `paperclip@.service`).
pub fn unit_name(id: &InstanceId) -> String {
    format!("paperclip@{id}.service")
}

/// Upstream's own unit for an instance, and how to disable it.
pub fn upstream(id: &InstanceId, scope: Scope) -> UpstreamService {
    let name = paperclip::upstream_unit_name(id);
    UpstreamService {
        disable_with: format!("systemctl{} disable --now {name}", scope.systemctl_flag()),
        name,
    }
}

/// A job systemd runs on a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Start,
    Stop,
    Restart,
}

impl Job {
    pub fn verb(self) -> &'static str {
        match self {
            Job::Start => "start",
            Job::Stop => "stop",
            Job::Restart => "restart",
        }
    }
}

/// How a job ended: `done`, or systemd's word for why not (`failed`,
/// `timeout`, `canceled`, `dependency`, `skipped`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    Done,
    Not(String),
}

impl JobResult {
    pub fn from_systemd(result: &str) -> Self {
        if result == "done" {
            JobResult::Done
        } else {
            JobResult::Not(result.to_string())
        }
    }
}

impl std::fmt::Display for JobResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobResult::Done => f.write_str("done"),
            JobResult::Not(r) => f.write_str(r),
        }
    }
}

/// A unit's state as the manager reports it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UnitInfo {
    pub unit: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    pub unit_file_state: String,
    pub main_pid: u32,
    pub status_text: String,
    pub n_restarts: u32,
    pub result: String,
    pub exec_main_status: i32,
    /// Microseconds since the epoch of the last state change (0 = never).
    pub since_usec: u64,
}

impl UnitInfo {
    /// Active, or on its way in or out: a server may be running.
    pub fn is_running(&self) -> bool {
        matches!(
            self.active_state.as_str(),
            "active" | "activating" | "reloading" | "deactivating"
        )
    }
}

/// One change `enable`/`disable` made: (kind, link, target).
pub type Change = (String, String, String);

/// What the flows need from a systemd manager. The real client is
/// [`Systemd`]; the flows' unit tests drive a fake.
#[allow(async_fn_in_trait)] // used within the crate only, never as `dyn`
pub trait Client {
    fn scope(&self) -> Scope;
    async fn reload(&self) -> Result<()>;
    async fn enable(&self, unit: &str) -> Result<Vec<Change>>;
    async fn disable(&self, unit: &str) -> Result<Vec<Change>>;
    /// `enabled`, `disabled`, … or `None` when it cannot be told.
    async fn unit_file_state(&self, unit: &str) -> Option<String>;
    /// Runs a job and waits for its end.
    async fn job(&self, job: Job, unit: &str, timeout: Duration) -> Result<JobResult>;
    /// The unit's current state; `None` when systemd does not know it.
    async fn unit_info(&self, unit: &str) -> Result<Option<UnitInfo>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let id = InstanceId::parse("dev").unwrap();
        assert_eq!(unit_name(&id), "paperclip@dev.service");
        let up = upstream(&id, Scope::User);
        assert_eq!(up.name, "paperclipai-dev.service");
        assert_eq!(
            up.disable_with,
            "systemctl --user disable --now paperclipai-dev.service"
        );
        assert_eq!(
            upstream(&id, Scope::System).disable_with,
            "systemctl disable --now paperclipai-dev.service"
        );
    }
}
