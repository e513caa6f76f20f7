//! The systemd client: the manager over D-Bus (zbus), or `systemctl`
//! where no bus is reachable (it reaches the manager over its private
//! socket).
//!
//! Jobs are followed through the `JobRemoved` signal (subscribed before the
//! job is queued, so its end cannot be missed); for a `Type=notify` unit a
//! start job ends when paperclipd sends `READY=1`, so `start` returns only
//! when the instance is ready.

use std::time::Duration;

use futures_util::StreamExt;
use zbus::OwnedObjectPath;
use zbus::proxy::CacheProperties;

use super::{Change, Client, Job, JobResult, Scope, UnitInfo};
use crate::error::{Error, Kind, Result};

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub trait Manager {
    fn subscribe(&self) -> zbus::Result<()>;
    fn reload(&self) -> zbus::Result<()>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<(String, String, String)>)>;
    fn disable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
    ) -> zbus::Result<Vec<(String, String, String)>>;
    fn get_unit_file_state(&self, file: &str) -> zbus::Result<String>;
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
pub trait Unit {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn unit_file_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn state_change_timestamp(&self) -> zbus::Result<u64>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1"
)]
pub trait Service {
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn status_text(&self) -> zbus::Result<String>;
    #[zbus(property, name = "NRestarts")]
    fn n_restarts(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn result(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn exec_main_status(&self) -> zbus::Result<i32>;
}

/// How we reach the manager.
enum Backend {
    Bus(zbus::Connection),
    /// No bus was reachable: `systemctl` reaches the manager over its
    /// private socket.
    Systemctl,
}

/// A connected systemd client.
pub struct Systemd {
    scope: Scope,
    backend: Backend,
}

/// How long we wait for a bus connection before saying no bus is reachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `run` and `status` wait for a bus before doing without.
const QUIET_CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

impl Systemd {
    /// Connects to the user bus (`$DBUS_SESSION_BUS_ADDRESS`, else
    /// `$XDG_RUNTIME_DIR/bus`) or the system bus.
    async fn connect_bus(scope: Scope, timeout: Duration) -> Result<zbus::Connection> {
        let fut = async {
            match scope {
                Scope::User => zbus::Connection::session().await,
                Scope::System => zbus::Connection::system().await,
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(no_bus(scope, &e.to_string())),
            Err(_) => Err(no_bus(scope, "timed out")),
        }
    }

    /// Connects over D-Bus, or, when no bus is reachable, says so and
    /// falls back to `systemctl`.
    pub async fn connect(scope: Scope) -> Result<Self> {
        Self::connect_within(scope, CONNECT_TIMEOUT, true).await
    }

    /// Like [`Systemd::connect`], briefly and without the warning: for
    /// checks that can do without a manager.
    pub async fn connect_quietly(scope: Scope) -> Result<Self> {
        Self::connect_within(scope, QUIET_CONNECT_TIMEOUT, false).await
    }

    async fn connect_within(scope: Scope, timeout: Duration, warn: bool) -> Result<Self> {
        let backend = match Self::connect_bus(scope, timeout).await {
            Ok(c) => Backend::Bus(c),
            // systemctl talks to the manager over its private socket, which
            // exists whenever the manager runs, bus or no bus.
            Err(e) if private_socket(scope).is_some_and(|p| p.exists()) => {
                if warn {
                    crate::log::warn(&format!(
                        "{}\nfalling back to `systemctl{}`",
                        e.message,
                        scope.systemctl_flag()
                    ));
                }
                Backend::Systemctl
            }
            Err(e) => return Err(e),
        };
        Ok(Systemd { scope, backend })
    }

    async fn manager(conn: &zbus::Connection) -> Result<ManagerProxy<'_>> {
        ManagerProxy::new(conn)
            .await
            .map_err(|e| dbus_err("reach systemd's manager", e))
    }

    /// `systemctl [--user] ARGS…` (the fallback without a bus).
    async fn systemctl(&self, args: &[&str], timeout: Duration) -> Result<std::process::Output> {
        let mut cmd = tokio::process::Command::new("systemctl");
        if self.scope == Scope::User {
            cmd.arg("--user");
            // After `sudo -u`/`su` XDG_RUNTIME_DIR is unset and systemctl
            // would not find the manager: tell it where we found it.
            if std::env::var_os("XDG_RUNTIME_DIR").is_none_or(|d| d.is_empty()) {
                cmd.env("XDG_RUNTIME_DIR", user_runtime_dir());
            }
        }
        cmd.args(args).kill_on_drop(true);
        tokio::time::timeout(timeout, cmd.output())
            .await
            .map_err(|_| {
                Error::new(
                    Kind::Unavailable,
                    format!(
                        "`systemctl {}` did not finish within {}",
                        args.join(" "),
                        humantime::format_duration(timeout)
                    ),
                )
            })?
            .map_err(|e| Error::os(format!("cannot run systemctl: {e}")))
    }

    async fn systemctl_ok(&self, args: &[&str]) -> Result<()> {
        let out = self.systemctl(args, Duration::from_secs(60)).await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::new(
                Kind::Failed,
                format!(
                    "`systemctl{} {}` failed: {}",
                    self.scope.systemctl_flag(),
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ))
        }
    }

    /// A job over the bus: subscribe, listen, queue, wait for `JobRemoved`.
    async fn bus_job(
        &self,
        conn: &zbus::Connection,
        job: Job,
        unit: &str,
        timeout: Duration,
    ) -> Result<JobResult> {
        let m = Self::manager(conn).await?;
        // A second job on the same connection is already subscribed.
        match m.subscribe().await {
            Ok(()) => {}
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str().ends_with("AlreadySubscribed") => {}
            Err(e) => return Err(dbus_err("subscribe to systemd's signals", e)),
        }
        // Listen before queueing the job, so its end cannot slip by.
        let mut removed = m
            .receive_job_removed()
            .await
            .map_err(|e| dbus_err("listen for systemd's job signals", e))?;
        if job != Job::Stop {
            // A unit that failed before must be reset, or a start limit
            // hit earlier would refuse the new start.
            let _ = m.reset_failed_unit(unit).await;
        }
        let path = match job {
            Job::Start => m.start_unit(unit, "replace").await,
            Job::Stop => m.stop_unit(unit, "replace").await,
            Job::Restart => m.restart_unit(unit, "replace").await,
        }
        .map_err(|e| dbus_err(&format!("{} {unit}", job.verb()), e))?;
        let wait = async {
            while let Some(sig) = removed.next().await {
                if let Ok(args) = sig.args() {
                    if args.job == path {
                        return Ok(JobResult::from_systemd(&args.result));
                    }
                }
            }
            Err(Error::os(
                "the connection to systemd closed while waiting for the job".to_string(),
            ))
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            Error::new(
                Kind::Unavailable,
                format!(
                    "systemd's {} job for {unit} did not finish within {}; see `systemctl{} status {unit}`",
                    job.verb(),
                    humantime::format_duration(timeout),
                    self.scope.systemctl_flag()
                ),
            )
        })?
    }

    async fn bus_unit_info(&self, conn: &zbus::Connection, unit: &str) -> Result<Option<UnitInfo>> {
        let m = Self::manager(conn).await?;
        let path = match m.load_unit(unit).await {
            Ok(p) => p,
            Err(zbus::Error::MethodError(name, _, _)) if name.as_str().ends_with("NoSuchUnit") => {
                return Ok(None);
            }
            Err(e) => return Err(dbus_err(&format!("look up {unit}"), e)),
        };
        let u = UnitProxy::builder(conn)
            .path(path.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| dbus_err("build a unit proxy", e))?;
        let s = ServiceProxy::builder(conn)
            .path(path)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| dbus_err("build a service proxy", e))?;
        let load_state = u.load_state().await.unwrap_or_default();
        if load_state == "not-found" {
            return Ok(None);
        }
        Ok(Some(UnitInfo {
            unit: unit.to_string(),
            load_state,
            active_state: u.active_state().await.unwrap_or_default(),
            sub_state: u.sub_state().await.unwrap_or_default(),
            unit_file_state: u.unit_file_state().await.unwrap_or_default(),
            since_usec: u.state_change_timestamp().await.unwrap_or_default(),
            main_pid: s.main_pid().await.unwrap_or_default(),
            status_text: s.status_text().await.unwrap_or_default(),
            n_restarts: s.n_restarts().await.unwrap_or_default(),
            result: s.result().await.unwrap_or_default(),
            exec_main_status: s.exec_main_status().await.unwrap_or_default(),
        }))
    }

    /// The fallback's `unit_info`: `systemctl show` with explicit
    /// properties, one `KEY=VALUE` per line.
    async fn systemctl_unit_info(&self, unit: &str) -> Result<Option<UnitInfo>> {
        let props = "LoadState,ActiveState,SubState,UnitFileState,StateChangeTimestampMonotonic,MainPID,StatusText,NRestarts,Result,ExecMainStatus";
        let out = self
            .systemctl(&["show", "-p", props, unit], Duration::from_secs(10))
            .await?;
        let text = String::from_utf8_lossy(&out.stdout);
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                .unwrap_or("")
                .to_string()
        };
        let load_state = get("LoadState");
        if load_state.is_empty() || load_state == "not-found" {
            return Ok(None);
        }
        Ok(Some(UnitInfo {
            unit: unit.to_string(),
            load_state,
            active_state: get("ActiveState"),
            sub_state: get("SubState"),
            unit_file_state: get("UnitFileState"),
            main_pid: get("MainPID").parse().unwrap_or(0),
            status_text: get("StatusText"),
            n_restarts: get("NRestarts").parse().unwrap_or(0),
            result: get("Result"),
            exec_main_status: get("ExecMainStatus").parse().unwrap_or(0),
            since_usec: 0,
        }))
    }
}

impl Client for Systemd {
    fn scope(&self) -> Scope {
        self.scope
    }

    async fn reload(&self) -> Result<()> {
        match &self.backend {
            Backend::Systemctl => self.systemctl_ok(&["daemon-reload"]).await,
            Backend::Bus(conn) => Self::manager(conn)
                .await?
                .reload()
                .await
                .map_err(|e| dbus_err("reload systemd", e)),
        }
    }

    async fn enable(&self, unit: &str) -> Result<Vec<Change>> {
        match &self.backend {
            Backend::Systemctl => self
                .systemctl_ok(&["enable", unit])
                .await
                .map(|_| Vec::new()),
            Backend::Bus(conn) => Self::manager(conn)
                .await?
                .enable_unit_files(&[unit], false, true)
                .await
                .map(|(_, changes)| changes)
                .map_err(|e| dbus_err(&format!("enable {unit}"), e)),
        }
    }

    async fn disable(&self, unit: &str) -> Result<Vec<Change>> {
        match &self.backend {
            Backend::Systemctl => self
                .systemctl_ok(&["disable", unit])
                .await
                .map(|_| Vec::new()),
            Backend::Bus(conn) => Self::manager(conn)
                .await?
                .disable_unit_files(&[unit], false)
                .await
                .map_err(|e| dbus_err(&format!("disable {unit}"), e)),
        }
    }

    async fn unit_file_state(&self, unit: &str) -> Option<String> {
        match &self.backend {
            Backend::Systemctl => {
                let out = self
                    .systemctl(&["is-enabled", unit], Duration::from_secs(10))
                    .await
                    .ok()?;
                Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
            }
            Backend::Bus(conn) => Self::manager(conn)
                .await
                .ok()?
                .get_unit_file_state(unit)
                .await
                .ok(),
        }
    }

    async fn job(&self, job: Job, unit: &str, timeout: Duration) -> Result<JobResult> {
        match &self.backend {
            Backend::Bus(conn) => self.bus_job(conn, job, unit, timeout).await,
            Backend::Systemctl => {
                if job != Job::Stop {
                    let _ = self
                        .systemctl(&["reset-failed", unit], Duration::from_secs(10))
                        .await;
                }
                // `systemctl start` of a Type=notify unit also blocks until READY=1.
                let out = self.systemctl(&[job.verb(), unit], timeout).await?;
                Ok(JobResult::from_systemd(if out.status.success() {
                    "done"
                } else {
                    "failed"
                }))
            }
        }
    }

    async fn unit_info(&self, unit: &str) -> Result<Option<UnitInfo>> {
        match &self.backend {
            Backend::Bus(conn) => self.bus_unit_info(conn, unit).await,
            Backend::Systemctl => self.systemctl_unit_info(unit).await,
        }
    }
}

/// The user's runtime directory: `$XDG_RUNTIME_DIR`, else logind's
/// `/run/user/<uid>` (unset after `sudo -u` or `su`).
fn user_runtime_dir() -> std::path::PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| format!("/run/user/{}", crate::sys::euid()).into())
}

/// The manager's private socket (what systemctl uses).
fn private_socket(scope: Scope) -> Option<std::path::PathBuf> {
    match scope {
        Scope::System => Some("/run/systemd/private".into()),
        Scope::User => Some(user_runtime_dir().join("systemd/private")),
    }
}

fn no_bus(scope: Scope, why: &str) -> Error {
    match scope {
        Scope::User => {
            let uid = crate::sys::euid();
            let user = super::logind::login_name(uid).unwrap_or_else(|| uid.to_string());
            let socket = user_runtime_dir().join("systemd/private");
            Error::new(
                Kind::Unavailable,
                format!(
                    "no systemd user manager runs for {user} (uid {uid}): neither the D-Bus user bus \
                     ($DBUS_SESSION_BUS_ADDRESS or $XDG_RUNTIME_DIR/bus: {why}) nor the manager's own socket {} \
                     is there. A user manager runs while {user} is logged in, or always once {user} lingers; \
                     `sudo -u` and `su` start none. Run `sudo loginctl enable-linger {user}` (the instance then \
                     also starts at boot and survives logout), then retry",
                    socket.display()
                ),
            )
        }
        Scope::System => Error::new(
            Kind::Unavailable,
            format!(
                "cannot reach systemd through the system D-Bus bus: {why}, and /run/systemd/private is missing; \
                 expected a system booted with systemd. Use the user unit (without --system), or `paperclipd run` \
                 under another supervisor"
            ),
        ),
    }
}

fn dbus_err(what: &str, e: zbus::Error) -> Error {
    let detail = match &e {
        zbus::Error::MethodError(name, Some(msg), _) => format!("{msg} ({})", name.as_str()),
        other => other.to_string(),
    };
    let kind =
        if detail.contains("AccessDenied") || detail.contains("InteractiveAuthorizationRequired") {
            Kind::Config
        } else {
            Kind::Unavailable
        };
    Error::new(kind, format!("cannot {what}: {detail}"))
}
