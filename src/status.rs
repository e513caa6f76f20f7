//! `paperclipd status`: the truth from every source at once — the lock
//! holder, the service manager, who owns the port, and both probes now.

use serde::Serialize;

use crate::config::ProbeSettings;
use crate::error::{Error, Result};
use crate::lock::{self, Holder};
use crate::manager::systemd::{Scope, UnitInfo};
use crate::probe::{ProbeResult, Prober};
use crate::procfs;

#[derive(Debug, Serialize)]
pub struct Status {
    pub instance: String,
    /// `ready`, `starting`, `degraded`, `stopped` or `conflict`.
    pub state: &'static str,
    /// Why the state is what it is, in words.
    pub reason: String,
    pub manager: ManagerView,
    pub lock: Option<Holder>,
    pub port: PortView,
    pub probes: ProbesView,
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

pub async fn gather(settings: ProbeSettings, scope: Scope) -> Result<Status> {
    let instance = settings.instance.clone();
    let holder = lock::probe_holder(&instance);
    #[cfg(not(target_os = "macos"))]
    let (kind, unit_name) = ("systemd", instance.unit_name());
    #[cfg(not(target_os = "macos"))]
    let (unit, upstream, error) = systemd_view(&instance, scope).await;
    #[cfg(target_os = "macos")]
    let (kind, unit_name) = ("launchd", instance.launchd_label());
    #[cfg(target_os = "macos")]
    let (unit, upstream, error) = launchd_view(&instance, scope);
    let prober = Prober::new(settings.clone(), crate::probe::REQUEST_TIMEOUT)?;
    let snap = prober.snapshot().await;
    let (listening, probes_ready) = (snap.listening(), snap.ready());
    let (api, ui) = (snap.api, snap.ui);
    let owner_pids = if listening {
        procfs::port_owners(settings.port)
    } else {
        Vec::new()
    };

    let holder_pid = holder
        .as_ref()
        .and_then(|h| h.pid.or(h.record.as_ref().map(|r| r.pid)));
    let unit_running = unit.as_ref().is_some_and(UnitInfo::is_running);
    let unit_active = unit.as_ref().is_some_and(|u| u.active_state == "active");
    let upstream_running = upstream.as_ref().is_some_and(UnitInfo::is_running);
    let ever_ready = holder
        .as_ref()
        .and_then(|h| h.record.as_ref())
        .is_some_and(|r| r.ready_at.is_some());
    let owners_foreign = match holder_pid {
        Some(h) => {
            !owner_pids.is_empty() && !owner_pids.iter().any(|p| procfs::is_descendant(*p, h))
        }
        None => false,
    };
    let flag = scope.systemctl_flag();

    let (state, reason): (&'static str, String) = if upstream_running
        && (holder.is_some() || unit_running)
    {
        (
            "conflict",
            format!(
                "upstream's {} runs too: two servers for one instance; disable it with `systemctl{flag} disable --now {}`",
                instance.upstream_unit_name(),
                instance.upstream_unit_name()
            ),
        )
    } else if let (true, Some(h), Some(u)) = (unit_active, holder_pid, unit.as_ref()) {
        if u.main_pid != 0 && u.main_pid as i32 != h {
            (
                "conflict",
                format!(
                    "{unit_name} runs pid {} but the lock is held by pid {h}",
                    u.main_pid
                ),
            )
        } else {
            classify(probes_ready, owners_foreign, false, true)
        }
    } else if holder.is_none() && !unit_running {
        if listening {
            (
                "conflict",
                format!(
                    "nothing of ours runs, yet port {} accepts connections ({}); another server answers for this instance",
                    settings.port,
                    describe_owners(&owner_pids)
                ),
            )
        } else if upstream_running {
            (
                "conflict",
                format!(
                    "only upstream's {} runs this instance",
                    instance.upstream_unit_name()
                ),
            )
        } else {
            (
                "stopped",
                "no lock holder, no running unit, nothing listening".to_string(),
            )
        }
    } else {
        let starting = unit
            .as_ref()
            .is_some_and(|u| u.active_state == "activating")
            || !ever_ready;
        classify(probes_ready, owners_foreign, starting, holder.is_some())
    };

    Ok(Status {
        instance: instance.id.to_string(),
        state,
        reason,
        manager: ManagerView {
            kind,
            unit: unit_name,
            active_state: unit.as_ref().map(|u| u.active_state.clone()),
            sub_state: unit.as_ref().map(|u| u.sub_state.clone()),
            main_pid: unit.as_ref().map(|u| u.main_pid),
            status_text: unit.as_ref().map(|u| u.status_text.clone()),
            n_restarts: unit.as_ref().map(|u| u.n_restarts),
            since_usec: unit.as_ref().map(|u| u.since_usec),
            error,
            upstream,
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
            api,
            ui,
        },
    })
}

type ManagerState = (Option<UnitInfo>, Option<UnitInfo>, Option<String>);

#[cfg(not(target_os = "macos"))]
async fn systemd_view(instance: &crate::instance::Instance, scope: Scope) -> ManagerState {
    use crate::manager::systemd::Systemd;
    match Systemd::connect_or_systemctl_within(scope, std::time::Duration::from_secs(5), false)
        .await
    {
        Ok(sd) => {
            let unit = sd.unit_info(&instance.unit_name()).await;
            let upstream = sd
                .unit_info(&instance.upstream_unit_name())
                .await
                .ok()
                .flatten();
            match unit {
                Ok(u) => (u, upstream, None),
                Err(e) => (None, upstream, Some(e.message)),
            }
        }
        Err(e) => (None, None, Some(e.message)),
    }
}

/// launchd's view, mapped onto the same fields (`active` when running).
#[cfg(target_os = "macos")]
fn launchd_view(instance: &crate::instance::Instance, _scope: Scope) -> ManagerState {
    use crate::manager::launchd::{Agent, SystemLaunchctl, plist_path};
    let Some(home) = std::env::var_os("HOME").map(std::path::PathBuf::from) else {
        return (None, None, Some("HOME is not set".into()));
    };
    let l = SystemLaunchctl;
    let a = Agent {
        instance,
        plist: plist_path(&home, instance),
        uid: unsafe { libc::getuid() },
        launchctl: &l,
    };
    match a.loaded() {
        Ok(Some(loaded)) => {
            let running = loaded.state.as_deref() == Some("running");
            let info = UnitInfo {
                unit: instance.launchd_label(),
                load_state: "loaded".into(),
                active_state: if running { "active" } else { "inactive" }.into(),
                sub_state: loaded.state.unwrap_or_default(),
                main_pid: loaded.pid.unwrap_or(0),
                ..Default::default()
            };
            (Some(info), None, None)
        }
        Ok(None) => (None, None, None),
        Err(e) => (None, None, Some(e.message)),
    }
}

fn classify(
    probes_ready: bool,
    owners_foreign: bool,
    starting: bool,
    locked: bool,
) -> (&'static str, String) {
    if owners_foreign {
        (
            "conflict",
            "the port is held by a process outside the lock holder's tree".to_string(),
        )
    } else if probes_ready {
        ("ready", "both probes pass".to_string())
    } else if starting {
        (
            "starting",
            "the server is starting; probes do not pass yet".to_string(),
        )
    } else if locked {
        (
            "degraded",
            "the server was ready but its probes fail now".to_string(),
        )
    } else {
        (
            "starting",
            "the unit is running but holds no lock yet".to_string(),
        )
    }
}

fn describe_owners(pids: &[i32]) -> String {
    if pids.is_empty() {
        "owner unknown".to_string()
    } else {
        procfs::describe_all(pids)
    }
}

pub fn exit_code(state: &str) -> u8 {
    match state {
        "ready" => 0,
        "stopped" => 3,
        _ => 1,
    }
}

pub fn render_text(s: &Status) -> String {
    let mut out = format!(
        "paperclip instance {}: {} ({})\n",
        s.instance, s.state, s.reason
    );
    match &s.lock {
        Some(h) => out.push_str(&format!("  lock:   held by {}\n", h.describe())),
        None => out.push_str("  lock:   free\n"),
    }
    let m = &s.manager;
    match (&m.active_state, &m.error) {
        (Some(a), _) => out.push_str(&format!(
            "  unit:   {} {} ({}), main pid {}, {} restart(s){}\n",
            m.unit,
            a,
            m.sub_state.as_deref().unwrap_or(""),
            m.main_pid.unwrap_or(0),
            m.n_restarts.unwrap_or(0),
            m.status_text
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(|t| format!(": {t}"))
                .unwrap_or_default()
        )),
        (None, Some(e)) => out.push_str(&format!("  unit:   unknown ({e})\n")),
        (None, None) => out.push_str(&format!("  unit:   {} not installed\n", m.unit)),
    }
    if let Some(up) = &m.upstream {
        out.push_str(&format!(
            "  upstream unit: {} {}\n",
            up.unit, up.active_state
        ));
    }
    out.push_str(&format!(
        "  port:   {} {}{}\n",
        s.port.port,
        if s.port.listening {
            "listening"
        } else {
            "not listening"
        },
        if s.port.owners.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                describe_owners(&s.port.owners.iter().map(|o| o.pid).collect::<Vec<_>>())
            )
        }
    ));
    match (&s.probes.api, &s.probes.ui) {
        (None, _) => out.push_str("  probes: not sent (nothing listens)\n"),
        (Some(a), u) => {
            out.push_str(&format!("  {a}\n"));
            if let Some(u) = u {
                out.push_str(&format!("  {u}\n"));
            }
        }
    }
    out
}

pub async fn status(settings: ProbeSettings, scope: Scope, json: bool) -> Result<u8> {
    let s = gather(settings, scope).await?;
    if json {
        crate::log::out(
            &serde_json::to_string_pretty(&s)
                .map_err(|e| Error::os(e.to_string()))?
                .to_string(),
        );
    } else {
        crate::log::out(&render_text(&s));
    }
    Ok(exit_code(s.state))
}
