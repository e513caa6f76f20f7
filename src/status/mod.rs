//! `paperclipd status`: the truth from every source at once — the lock
//! holder, the service manager, who owns the port, and both probes now.
//!
//! [`gather`] asks every source (I/O); [`state::decide`] turns what it
//! learned into a state (pure, tested as a table); [`render`] words it.

pub mod render;
pub mod state;

use serde::Serialize;

use crate::config::ProbeSettings;
use crate::error::Result;
use crate::instance::Instance;
use crate::lock::{self, Holder};
use crate::probe::{ProbeResult, Prober};
use crate::procfs;
use crate::systemd::UnitInfo;
use state::{Facts, State, UnitFact, Why};

#[derive(Debug, Serialize)]
pub struct Status {
    pub instance: String,
    pub state: State,
    /// Why the state is what it is, in words.
    pub reason: String,
    pub manager: ManagerView,
    pub lock: Option<Holder>,
    pub port: PortView,
    pub probes: ProbesView,
    /// The Node.js the service runs and the one this shell runs (`None`
    /// when the instance runs a command of its own).
    pub runtime: Option<crate::runtime::pin::View>,
}

#[derive(Debug, Serialize)]
pub struct ManagerView {
    pub kind: &'static str,
    pub unit: String,
    pub active_state: Option<String>,
    pub sub_state: Option<String>,
    pub main_pid: Option<u32>,
    pub status_text: Option<String>,
    pub n_restarts: Option<u32>,
    pub since_usec: Option<u64>,
    /// Why the manager could not be asked, when it could not.
    pub error: Option<String>,
    /// Upstream's own unit for this instance, when it is loaded.
    pub upstream: Option<UnitInfo>,
}

#[derive(Debug, Serialize)]
pub struct PortView {
    pub url: String,
    pub port: u16,
    pub listening: bool,
    pub owners: Vec<Owner>,
}

#[derive(Debug, Serialize)]
pub struct Owner {
    pub pid: i32,
    pub command: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ProbesView {
    pub mode: &'static str,
    pub ready: bool,
    pub api: Option<ProbeResult>,
    pub ui: Option<ProbeResult>,
}

/// What the service manager says: our unit (or job), upstream's, and why
/// the manager could not be asked.
struct ManagerState {
    kind: &'static str,
    name: String,
    unit: Option<UnitInfo>,
    upstream: Option<UnitInfo>,
    error: Option<String>,
    /// How to disable upstream's service, for the reason text.
    upstream_name: String,
    upstream_disable: String,
}

pub async fn gather(settings: ProbeSettings, system: bool) -> Result<Status> {
    let instance = settings.instance.clone();
    let holder = lock::probe_holder(&instance);
    let m = manager_view(&instance, system).await;
    let prober = Prober::new(settings.clone(), crate::probe::REQUEST_TIMEOUT)?;
    let snap = prober.snapshot().await;
    let (listening, probes_ready) = (snap.listening(), snap.ready());
    let owner_pids = if listening {
        procfs::port_owners(settings.port)
    } else {
        Vec::new()
    };
    let holder_pid = holder
        .as_ref()
        .and_then(|h| h.pid.or(h.record.as_ref().map(|r| r.pid)));
    let facts = Facts {
        locked: holder.is_some(),
        holder_pid,
        ever_ready: holder
            .as_ref()
            .and_then(|h| h.record.as_ref())
            .is_some_and(|r| r.ready_at.is_some()),
        unit: m.unit.as_ref().map_or(UnitFact::Unknown, |u| {
            UnitFact::from_active_state(&u.active_state, u.main_pid)
        }),
        upstream_running: m.upstream.as_ref().is_some_and(UnitInfo::is_running),
        listening,
        owners_foreign: holder_pid.is_some_and(|h| {
            !owner_pids.is_empty() && !owner_pids.iter().any(|p| procfs::is_descendant(*p, h))
        }),
        probes_ready,
    };
    let (state, why) = state::decide(&facts);
    let runtime = crate::runtime::pin::status_view(&instance, system);
    Ok(Status {
        instance: instance.id.to_string(),
        state,
        reason: reason(why, &m, &settings, &owner_pids),
        manager: ManagerView {
            kind: m.kind,
            unit: m.name.clone(),
            active_state: m.unit.as_ref().map(|u| u.active_state.clone()),
            sub_state: m.unit.as_ref().map(|u| u.sub_state.clone()),
            main_pid: m.unit.as_ref().map(|u| u.main_pid),
            status_text: m.unit.as_ref().map(|u| u.status_text.clone()),
            n_restarts: m.unit.as_ref().map(|u| u.n_restarts),
            since_usec: m.unit.as_ref().map(|u| u.since_usec),
            error: m.error,
            upstream: m.upstream,
        },
        lock: holder,
        port: PortView {
            url: settings.url.to_string(),
            port: settings.port,
            listening,
            owners: owner_pids
                .iter()
                .map(|p| Owner {
                    pid: *p,
                    command: procfs::cmdline(*p),
                })
                .collect(),
        },
        probes: ProbesView {
            mode: settings.mode.as_str(),
            ready: probes_ready,
            api: snap.api,
            ui: snap.ui,
        },
        runtime,
    })
}

/// The reason, in words, with the names that go with it.
fn reason(why: Why, m: &ManagerState, settings: &ProbeSettings, owners: &[i32]) -> String {
    match why {
        Why::UpstreamToo => format!(
            "upstream's {} runs too: two servers for one instance; disable it with `{}`",
            m.upstream_name, m.upstream_disable
        ),
        Why::PidMismatch {
            unit_pid,
            holder_pid,
        } => format!(
            "{} runs pid {unit_pid} but the lock is held by pid {holder_pid}",
            m.name
        ),
        Why::Stranger => format!(
            "nothing of ours runs, yet port {} accepts connections ({}); another server answers for this instance",
            settings.port,
            describe_owners(owners)
        ),
        Why::OnlyUpstream => format!("only upstream's {} runs this instance", m.upstream_name),
        Why::NothingRuns => "no lock holder, no running unit, nothing listening".to_string(),
        Why::ForeignOwner => {
            "the port is held by a process outside the lock holder's tree".to_string()
        }
        Why::ProbesPass => "both probes pass".to_string(),
        Why::NotReadyYet => "the server is starting; probes do not pass yet".to_string(),
        Why::FailingAfterReady => "the server was ready but its probes fail now".to_string(),
        Why::UnitWithoutLock => "the unit is running but holds no lock yet".to_string(),
    }
}

#[cfg(not(target_os = "macos"))]
async fn manager_view(instance: &Instance, system: bool) -> ManagerState {
    use crate::systemd::{self, Client, Scope, Systemd};
    let scope = Scope::from_system_flag(system);
    let up = systemd::upstream(&instance.id, scope);
    let mut m = ManagerState {
        kind: "systemd",
        name: systemd::unit_name(&instance.id),
        unit: None,
        upstream: None,
        error: None,
        upstream_name: up.name,
        upstream_disable: up.disable_with,
    };
    match Systemd::connect_quietly(scope).await {
        Ok(sd) => {
            m.upstream = sd.unit_info(&m.upstream_name).await.ok().flatten();
            match sd.unit_info(&m.name).await {
                Ok(u) => m.unit = u,
                Err(e) => m.error = Some(e.message),
            }
        }
        Err(e) => m.error = Some(e.message),
    }
    m
}

/// launchd's view, mapped onto the same fields (`active` when running).
#[cfg(target_os = "macos")]
async fn manager_view(instance: &Instance, _system: bool) -> ManagerState {
    use crate::launchd::{self, launchctl::Agent, launchctl::SystemLaunchctl, plist_path};
    let label = launchd::label(&instance.id);
    let upstream_name = crate::paperclip::upstream_label(&instance.id);
    let mut m = ManagerState {
        kind: "launchd",
        name: label.clone(),
        unit: None,
        upstream: None,
        error: None,
        upstream_disable: format!("launchctl bootout gui/$(id -u)/{upstream_name}"),
        upstream_name,
    };
    let Some(home) = std::env::var_os("HOME").map(std::path::PathBuf::from) else {
        m.error = Some("HOME is not set".into());
        return m;
    };
    let l = SystemLaunchctl;
    let a = Agent {
        instance,
        plist: plist_path(&home, &instance.id),
        uid: crate::sys::uid(),
        launchctl: &l,
    };
    match a.loaded() {
        Ok(Some(loaded)) => {
            let running = loaded.state.as_deref() == Some("running");
            m.unit = Some(UnitInfo {
                unit: label,
                load_state: "loaded".into(),
                active_state: if running { "active" } else { "inactive" }.into(),
                sub_state: loaded.state.unwrap_or_default(),
                main_pid: loaded.pid.unwrap_or(0),
                ..Default::default()
            });
        }
        Ok(None) => {}
        Err(e) => m.error = Some(e.message),
    }
    m
}

fn describe_owners(pids: &[i32]) -> String {
    if pids.is_empty() {
        "owner unknown".to_string()
    } else {
        procfs::describe_all(pids)
    }
}

/// `paperclipd status [--json]`.
pub async fn command(settings: ProbeSettings, system: bool, json: bool) -> Result<u8> {
    let s = gather(settings, system).await?;
    if json {
        crate::log::out_json(&s)?;
    } else {
        crate::log::out(&render::render_text(&s));
    }
    Ok(s.state.exit_code())
}
