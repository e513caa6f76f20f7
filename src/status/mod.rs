//! `paperclipd status`: the truth from every source at once — the lock
//! holder, the service manager, who owns the port, and both probes now.
//!
//! [`gather`] asks every source (I/O); [`state::decide`] turns what it
//! learned into a state (pure, tested as a table); [`render`] words it.

pub mod all;
pub mod hazards;
mod reason;
pub mod render;
pub mod state;

use serde::Serialize;

use crate::config::ProbeSettings;
use crate::error::Result;
use crate::instance::Instance;
use crate::lock::{self, Holder, Observation, Record};
use crate::probe::{ProbeResult, Prober};
use crate::procfs;
use crate::systemd::UnitInfo;
use reason::{describe_owners, reason, stopping_message};
use state::{Facts, State, UnitFact, Why};

#[derive(Debug, Serialize)]
pub struct Status {
    pub instance: String,
    pub state: State,
    /// Why the state is what it is, in words.
    pub reason: String,
    /// Whose probe settings were used.
    pub settings: SettingsView,
    pub manager: ManagerView,
    pub lock: Option<Holder>,
    /// Why the lock file could not be read (a FIFO at its path, …): the
    /// holder is unknown.
    pub lock_error: Option<String>,
    /// The record of a holder killed before it could clear it.
    pub left_behind: Option<Record>,
    pub port: PortView,
    pub probes: ProbesView,
    /// Free space, adopted processes, logind's RemoveIPC (`status/hazards.rs`).
    #[serde(flatten)]
    pub hazards: hazards::Hazards,
    /// Why launchd no longer starts the instance (crash-loop guard).
    pub paused: Option<crate::launchd::guard::Pause>,
    /// launchd's job waits for another run of the instance to end.
    pub waiting: Option<crate::launchd::guard::Waiting>,
    /// The Node.js the service runs and the one this shell runs (`None`
    /// when the instance runs a command of its own).
    pub runtime: Option<crate::runtime::view::View>,
    /// Whether the running paperclipd and server are still what is
    /// installed, and whether the next start would fail.
    pub upgrade: crate::installed::View,
    /// The running supervisor's reload in progress, or its last one: the
    /// processes carried over and the new server's report.
    pub reload: Option<crate::hot_restart::State>,
}

/// Whose probe settings `status` used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SettingsFrom {
    /// This command's flags and files.
    Own,
    /// The lock holder's record: it judges its server by these.
    Holder,
    /// The record of a holder that died without clearing it, whose port
    /// still accepts connections.
    LastRun,
}

#[derive(Debug, Serialize)]
pub struct SettingsView {
    pub from: SettingsFrom,
    pub url: String,
    pub mode: &'static str,
    pub api_url: String,
    pub ui_url: String,
    /// Says so when this command's own settings differ from those used.
    pub note: Option<String>,
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

/// `scan`: /proc as this command saw it (`status --all` shares one).
pub async fn gather(own: ProbeSettings, system: bool, scan: &procfs::Scan) -> Result<Status> {
    let instance = own.instance.clone();
    let seen = lock::observe(&instance);
    let (settings, from) = choose_settings(&own, &seen).await;
    let holder = seen.holder;
    let lock_error = seen.problem;
    let left_behind = seen.left_behind.filter(|_| from == SettingsFrom::LastRun);
    let m = manager_view(&instance, system).await;
    let guard = crate::launchd::guard::load(&instance);
    let (paused, waiting) = (guard.paused, guard.waiting);
    let prober = Prober::new(settings.clone(), crate::probe::REQUEST_TIMEOUT)?;
    let snap = prober.snapshot().await;
    let (listening, probes_ready) = (snap.listening(), snap.ready());
    let owner_pids = if listening {
        scan.port_owners(settings.port)
    } else {
        Vec::new()
    };
    let facts = facts_of(
        holder.as_ref(),
        &m,
        listening,
        probes_ready,
        &owner_pids,
        left_behind.is_some(),
        paused.is_some(),
    );
    let (mut state, why) = state::decide(&facts);
    // --- reload (hot restart): only the running supervisor's own record
    let reload = crate::hot_restart::State::read(&instance)
        .filter(|r| facts.holder_pid == Some(r.supervisor_pid));
    let reloading = reload
        .as_ref()
        .is_some_and(|r| r.phase == crate::hot_restart::Phase::Reloading);
    if reloading {
        state = State::Reloading;
    }
    let hazards = hazards::gather(&settings, holder.as_ref(), scan).await;
    let runtime = crate::runtime::view::status_view(&instance, system);
    let upgrade = upgrade_view(holder.as_ref(), runtime.as_ref(), system);
    Ok(Status {
        instance: instance.id.to_string(),
        state,
        reason: match (why, &paused) {
            _ if reloading => reload
                .as_ref()
                .map(|r| r.message.clone())
                .unwrap_or_default(),
            (Why::Paused, Some(p)) => crate::launchd::guard::paused_message(&instance, p),
            (Why::Stopping, _) => stopping_message(holder.as_ref()),
            _ => reason(why, &m, &settings, &owner_pids, left_behind.as_ref()),
        },
        settings: SettingsView::new(&settings, &own, from),
        manager: m.view(),
        lock: holder,
        lock_error,
        left_behind,
        port: PortView::new(&settings, listening, &owner_pids),
        probes: ProbesView {
            mode: settings.mode.as_str(),
            ready: probes_ready,
            api: snap.api,
            ui: snap.ui,
        },
        hazards,
        paused,
        waiting,
        runtime,
        upgrade,
        reload,
    })
}

/// What the decision needs, from what every source said.
fn facts_of(
    holder: Option<&Holder>,
    m: &ManagerState,
    listening: bool,
    probes_ready: bool,
    owner_pids: &[i32],
    left_behind: bool,
    paused: bool,
) -> Facts {
    let holder_pid = holder.and_then(|h| h.pid.or(h.record.as_ref().map(|r| r.pid)));
    let record = holder.and_then(|h| h.record.as_ref());
    Facts {
        locked: holder.is_some(),
        holder_pid,
        ever_ready: record.is_some_and(|r| r.ready_at.is_some()),
        unit: m.unit.as_ref().map_or(UnitFact::Unknown, |u| {
            UnitFact::from_active_state(&u.active_state, u.main_pid)
        }),
        upstream_running: m.upstream.as_ref().is_some_and(UnitInfo::is_running),
        listening,
        owners_foreign: holder_pid.is_some_and(|h| {
            !owner_pids.is_empty() && !owner_pids.iter().any(|p| procfs::is_descendant(*p, h))
        }),
        left_behind,
        probes_ready,
        paused,
        stopping: record.is_some_and(|r| r.stopping.is_some()),
    }
}

/// Whether the running paperclipd and server are what is installed now.
fn upgrade_view(
    holder: Option<&Holder>,
    runtime: Option<&crate::runtime::view::View>,
    system: bool,
) -> crate::installed::View {
    match holder.and_then(|h| h.record.as_ref()) {
        Some(r) => crate::installed::view(
            r,
            &restart_hint(r, system),
            runtime.map_or(&[][..], |rt| &rt.warnings[..]),
        ),
        None => crate::installed::View::default(),
    }
}

/// How to restart the holder's instance, for the upgrade warnings.
fn restart_hint(r: &Record, system: bool) -> String {
    match (r.manager.as_str(), r.unit.as_deref()) {
        ("systemd", Some(unit)) => {
            let user = if system { "" } else { " --user" };
            format!("restart it (`systemctl{user} restart {unit}`)")
        }
        ("launchd", _) => "restart it (`paperclipd restart`)".to_string(),
        _ => "restart it (stop it and run it again)".to_string(),
    }
}

impl SettingsView {
    fn new(used: &ProbeSettings, own: &ProbeSettings, from: SettingsFrom) -> Self {
        SettingsView {
            from,
            url: used.url.to_string(),
            mode: used.mode.as_str(),
            api_url: used.api_url.to_string(),
            ui_url: used.ui_url.to_string(),
            note: settings_note(used, own, from),
        }
    }
}

impl PortView {
    fn new(settings: &ProbeSettings, listening: bool, owner_pids: &[i32]) -> Self {
        PortView {
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
        }
    }
}

impl ManagerState {
    fn view(self) -> ManagerView {
        let u = self.unit.as_ref();
        ManagerView {
            kind: self.kind,
            unit: self.name.clone(),
            active_state: u.map(|u| u.active_state.clone()),
            sub_state: u.map(|u| u.sub_state.clone()),
            main_pid: u.map(|u| u.main_pid),
            status_text: u.map(|u| u.status_text.clone()),
            n_restarts: u.map(|u| u.n_restarts),
            since_usec: u.map(|u| u.since_usec),
            error: self.error,
            upstream: self.upstream,
        }
    }
}

/// The settings to judge the instance by: the holder's whenever there is a
/// holder (a run started with `--url` is probed where it serves); with
/// none, those of a last run that was killed before clearing its record,
/// when its port still accepts connections (its server may have survived
/// it); else this command's own.
async fn choose_settings(own: &ProbeSettings, seen: &Observation) -> (ProbeSettings, SettingsFrom) {
    let recorded = |r: &Record| r.probe_settings(&own.instance);
    if let Some(h) = &seen.holder {
        return match h.record.as_ref().and_then(recorded) {
            Some(s) => (s, SettingsFrom::Holder),
            None => (own.clone(), SettingsFrom::Own),
        };
    }
    if let Some(s) = seen.left_behind.as_ref().and_then(recorded) {
        if crate::probe::listening(&s.addrs, crate::probe::CONNECT_TIMEOUT)
            .await
            .is_ok()
        {
            return (s, SettingsFrom::LastRun);
        }
    }
    (own.clone(), SettingsFrom::Own)
}

/// Says whose settings were used when this command's own differ.
fn settings_note(used: &ProbeSettings, own: &ProbeSettings, from: SettingsFrom) -> Option<String> {
    let whose = match from {
        SettingsFrom::Own => return None,
        SettingsFrom::Holder => "the holder's settings",
        SettingsFrom::LastRun => "the settings of the last run, which was killed",
    };
    (used.spec() != own.spec()).then(|| {
        format!(
            "probed with {whose} ({}), not this command's own ({})",
            describe_settings(used),
            describe_settings(own)
        )
    })
}

/// `http://127.0.0.1:3100/, full mode, API /api/health, UI /`.
fn describe_settings(s: &ProbeSettings) -> String {
    let spec = s.spec();
    match s.mode {
        crate::cli::Mode::Full => format!(
            "{}, full mode, API {}, UI {}",
            spec.url, spec.api_path, spec.ui_path
        ),
        crate::cli::Mode::ApiOnly => format!("{}, api-only mode, API {}", spec.url, spec.api_path),
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
    // Both domains: an SSH install and a GUI login load two copies.
    match a.loaded_all() {
        Ok(all) => m.unit = launchd::launchctl::status_view(&all, &label),
        Err(e) => m.error = Some(e.message),
    }
    m
}

/// `paperclipd status [--json]`.
pub async fn command(settings: ProbeSettings, system: bool, json: bool) -> Result<u8> {
    let s = gather(settings, system, &procfs::Scan::default()).await?;
    if json {
        crate::log::out_json(&s)?;
    } else {
        crate::log::out(&render::render_text(&s));
    }
    Ok(s.state.exit_code())
}
