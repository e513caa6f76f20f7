//! Checks before anything is started: which program runs, and that no
//! other server serves the instance (its unit, upstream's unit, a stranger
//! on the port).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::RunSettings;
use crate::error::{Error, Result};
use crate::probe::Prober;
use crate::runtime::record::{self, Recorded};
use crate::{invoker, log, paperclip, procfs, program, runtime};

/// The server command: the given one, or Paperclip's default.
pub struct ServerCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Paperclip's own `paperclipai run` (which may need onboarding first).
    pub is_default: bool,
}

impl ServerCommand {
    /// Resolves the command before anything is created: a missing program
    /// is 127 with nothing touched. Looked up in the server's PATH; the
    /// default `paperclipai` as `PAPERCLIP_SHIM_PATH` names it, else as a
    /// terminal run recorded it, else the usual places.
    pub fn resolve(settings: &RunSettings, recorded: Option<&Recorded>) -> Result<Self> {
        let path = server_path(settings);
        Ok(match &settings.command {
            Some(cmd) => ServerCommand {
                program: program::resolve_in(&cmd[0], path.as_deref())?,
                args: cmd[1..].to_vec(),
                is_default: false,
            },
            None => {
                let shim_var = std::env::var_os("PAPERCLIP_SHIM_PATH").filter(|v| !v.is_empty());
                let home = std::env::var_os("HOME");
                let env = paperclip::ShimEnv {
                    shim_path: shim_var.as_deref().or(recorded.map(|r| r.shim.as_os_str())),
                    home: home.as_deref(),
                    path: path.as_deref(),
                };
                ServerCommand {
                    program: paperclip::find_program(&env)?,
                    args: paperclip::run_args(&settings.probe.instance.id),
                    is_default: true,
                }
            }
        })
    }

    /// The command line, for messages (control characters escaped).
    pub fn display(&self) -> String {
        std::iter::once(crate::untrusted::path(&self.program))
            .chain(
                self.args
                    .iter()
                    .map(|a| crate::untrusted::escape(&a.to_string_lossy()).into_owned()),
            )
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The PATH the server gets: `[env]`'s (with the unit's prepend), else ours.
fn server_path(settings: &RunSettings) -> Option<OsString> {
    settings
        .env
        .get("PATH")
        .map(OsString::from)
        .or_else(|| std::env::var_os("PATH"))
}

/// Under a service manager, with no pin (`--node`, `PAPERCLIP_NODE`) and
/// Paperclip's default command: the runtime a terminal run recorded, when
/// it still exists (the packaged unit, for nvm, fnm and Volta users).
pub fn recorded_runtime(settings: &RunSettings, invoker: &invoker::Invoker) -> Option<Recorded> {
    let managed = matches!(
        invoker.kind,
        invoker::ManagerKind::Systemd | invoker::ManagerKind::Launchd
    );
    if !managed || settings.node.is_some() || settings.command.is_some() {
        return None;
    }
    let rec = record::load(&settings.probe.instance)?;
    if record::usable(&rec) {
        return Some(rec);
    }
    log::warn(&format!(
        "the runtime recorded by the run at {} (Node.js {} at {}, paperclipai {}) no longer exists; \
         using the service's PATH instead. Run `paperclipd run` once in a terminal to record the current one, \
         or pin one with `paperclipd install`",
        rec.recorded_at,
        rec.version,
        rec.node.display(),
        rec.shim.display()
    ));
    None
}

/// Paperclip's default command runs on the Node.js its shim finds: refuse
/// (78, nothing spawned) when that is missing or older than the package's
/// `engines.node`, so that a service manager does not restart-loop on it.
/// A chosen node (`--node`, `PAPERCLIP_NODE`, else a terminal run's
/// record under a manager) goes first on the server's PATH. A run in a
/// terminal records what it found. Commands of one's own are not checked.
pub fn check_runtime(
    command: &ServerCommand,
    settings: &mut RunSettings,
    recorded: Option<&Recorded>,
) -> Result<Option<runtime::Runtime>> {
    if !command.is_default {
        return Ok(None);
    }
    let path = server_path(settings);
    let (explicit, source) = match (&settings.node, recorded) {
        (Some(n), _) => (
            Some(n.clone()),
            "pinned: --node or PAPERCLIP_NODE".to_string(),
        ),
        (None, Some(rec)) => (Some(rec.node.clone()), rec.reason()),
        (None, None) => (None, "no pin: the server's PATH".to_string()),
    };
    let rt = runtime::resolve(&command.program, path.as_deref(), explicit.as_deref());
    rt.check(runtime::Context::Run)?;
    if let Some(p) = rt.path_override.clone() {
        let p = p.into_string().map_err(|p| {
            Error::config(format!(
                "PATH is not valid UTF-8 ({}); paperclipd cannot put the chosen Node.js first on it; fix PATH",
                p.to_string_lossy()
            ))
        })?;
        settings.env.insert("PATH".to_string(), p);
    }
    if rt.node_path().is_some() {
        log::info(&format!("{} ({source})", rt.describe()));
    }
    Ok(Some(rt))
}

/// A run in a terminal records the runtime it checked (once it holds the
/// instance's lock), for a service with no pin.
pub fn record_runtime(
    rt: Option<&runtime::Runtime>,
    settings: &RunSettings,
    invoker: &invoker::Invoker,
) {
    let Some(rt) = rt.filter(|_| invoker.kind == invoker::ManagerKind::Foreground) else {
        return;
    };
    let instance = &settings.probe.instance;
    match record::save(instance, rt) {
        Ok(true) => log::info(&format!(
            "recorded this runtime in {}: a service with no pinned runtime (the packaged unit) will use it",
            record::path(instance).display()
        )),
        Ok(false) => {}
        Err(e) => log::warn(&format!("could not record the runtime: {}", e.message)),
    }
}

/// A hand-started `run` must not start a second server next to the
/// instance's unit (active or still activating, which holds no lock yet
/// for a moment), nor next to upstream's own unit. Without a reachable
/// user bus this check is skipped; the lock still protects the instance.
#[cfg(not(target_os = "macos"))]
pub async fn refuse_running_units(
    instance: &crate::instance::Instance,
    invoker: &invoker::Invoker,
) -> Result<()> {
    use crate::systemd::{self, Client, Scope, Systemd};
    let Ok(sd) = Systemd::connect_quietly(Scope::User).await else {
        return Ok(());
    };
    let ours = systemd::unit_name(&instance.id);
    if invoker.unit.as_deref() != Some(ours.as_str()) {
        if let Ok(Some(info)) = sd.unit_info(&ours).await {
            if info.is_running() {
                return Err(Error::busy(format!(
                    "instance {:?} is already run by the systemd unit {ours} ({}, main pid {}); \
                     stop it with `paperclipd stop -i {}` or `systemctl --user stop {ours}`",
                    instance.id.as_str(),
                    info.active_state,
                    info.main_pid,
                    instance.id
                )));
            }
        }
    }
    let upstream = systemd::upstream(&instance.id, Scope::User);
    if let Ok(Some(info)) = sd.unit_info(&upstream.name).await {
        if info.is_running() {
            return Err(Error::busy(
                upstream.conflict(&instance.id, &info.active_state),
            ));
        }
    }
    Ok(())
}

/// launchd jobs hold the lock from their first moment; the lock suffices.
#[cfg(target_os = "macos")]
pub async fn refuse_running_units(
    _instance: &crate::instance::Instance,
    _invoker: &invoker::Invoker,
) -> Result<()> {
    Ok(())
}

/// How long a port that accepts connections with no listener in our
/// socket tables is watched before it is refused.
const UNSEEN_LISTENER_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Something already listens on our port: starting would either fail or,
/// worse, make Paperclip drift to the next port while we probe a stranger.
pub async fn refuse_taken_port(prober: &Prober) -> Result<()> {
    let port = prober.settings.port;
    // A listener that no socket table of ours shows may be closing as we
    // look: a SIGKILLed server whose main thread is already a zombie while
    // its last thread still tears down, holding the socket. It gets a
    // moment; a listener in another network namespace stays and is refused.
    let deadline = crate::deadline::Later::later(std::time::Instant::now(), UNSEEN_LISTENER_GRACE);
    loop {
        if prober.listening().await.is_err() {
            return Ok(());
        }
        if !procfs::listening_uids(port).is_empty() || std::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let who = procfs::describe_listener(port);
    Err(Error::busy(format!(
        "port {port} ({}) already accepts connections, held by {who}. The server would not be ours to probe \
         (Paperclip silently moves to the next free port). Stop that process, or give this instance another port \
         (server.port in config.json, or --url)",
        prober.settings.url
    )))
}
