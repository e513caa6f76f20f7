//! Checks before anything is started: which program runs, and that no
//! other server serves the instance (its unit, upstream's unit, a stranger
//! on the port).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::RunSettings;
use crate::error::{Error, Result};
use crate::probe::Prober;
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
    /// is 127 with nothing touched.
    pub fn resolve(settings: &RunSettings) -> Result<Self> {
        Ok(match &settings.command {
            Some(cmd) => ServerCommand {
                program: program::resolve(&cmd[0])?,
                args: cmd[1..].to_vec(),
                is_default: false,
            },
            None => ServerCommand {
                program: paperclip::default_program()?,
                args: paperclip::run_args(&settings.probe.instance.id),
                is_default: true,
            },
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

/// Paperclip's default command runs on the Node.js its shim finds: refuse
/// (78, nothing spawned) when that is missing or older than the package's
/// `engines.node`, so that a service manager does not restart-loop on it.
/// A chosen node (`--node`, `PAPERCLIP_NODE`) goes first on the server's
/// PATH. Commands of one's own are not checked.
pub fn check_runtime(command: &ServerCommand, settings: &mut RunSettings) -> Result<()> {
    if !command.is_default {
        return Ok(());
    }
    let path = settings
        .env
        .get("PATH")
        .map(OsString::from)
        .or_else(|| std::env::var_os("PATH"));
    let rt = runtime::resolve(&command.program, path.as_deref(), settings.node.as_deref());
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
        log::info(&rt.describe());
    }
    Ok(())
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
    let deadline = std::time::Instant::now() + UNSEEN_LISTENER_GRACE;
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
