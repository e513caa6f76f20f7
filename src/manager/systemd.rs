//! systemd integration over D-Bus (zbus): install, enable, start, stop,
//! restart and inspect `paperclip@<id>.service`.
//!
//! Jobs are followed through the `JobRemoved` signal (subscribed before the
//! job is queued, so its end cannot be missed); for a `Type=notify` unit a
//! start job ends when paperclipd sends `READY=1`, so `start` returns only
//! when the instance is ready.

use std::pin::Pin;
use std::time::Duration;

use zbus::OwnedObjectPath;
use zbus::proxy::CacheProperties;

use crate::error::{Error, Kind, Result};

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub trait Manager {
    fn subscribe(&self) -> zbus::Result<()>;
    fn reload(&self) -> zbus::Result<()>;
    fn get_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
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
    fn active_enter_timestamp(&self) -> zbus::Result<u64>;
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

/// Which manager: the user's (`systemctl --user`) or the system's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    System,
}

impl Scope {
    pub fn systemctl_flag(self) -> &'static str {
        match self {
            Scope::User => " --user",
            Scope::System => "",
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
    pub fn is_running(&self) -> bool {
        matches!(
            self.active_state.as_str(),
            "active" | "activating" | "reloading" | "deactivating"
        )
    }
}

pub struct Systemd {
    pub scope: Scope,
    /// `None`: no bus was reachable; lifecycle calls go through `systemctl`
    /// (which reaches the manager over its private socket).
    conn: Option<zbus::Connection>,
}

/// How long we wait for a bus connection before saying no bus is reachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Systemd {
    /// Connects to the user bus (`$DBUS_SESSION_BUS_ADDRESS`, else
    /// `$XDG_RUNTIME_DIR/bus`) or the system bus.
    pub async fn connect_within(scope: Scope, timeout: Duration) -> Result<Self> {
        let fut = async {
            match scope {
                Scope::User => zbus::Connection::session().await,
                Scope::System => zbus::Connection::system().await,
            }
        };
        let conn = match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(no_bus(scope, &e.to_string())),
            Err(_) => return Err(no_bus(scope, "timed out")),
        };
        Ok(Systemd {
            scope,
            conn: Some(conn),
        })
    }

    /// Connects over D-Bus, or — when no bus is reachable — says so and
    /// falls back to `systemctl` for lifecycle commands.
    pub async fn connect_or_systemctl(scope: Scope) -> Result<Self> {
        Self::connect_or_systemctl_within(scope, CONNECT_TIMEOUT, true).await
    }

    pub async fn connect_or_systemctl_within(
        scope: Scope,
        timeout: Duration,
        warn: bool,
    ) -> Result<Self> {
        match Self::connect_within(scope, timeout).await {
            Ok(s) => Ok(s),
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
                Ok(Systemd { scope, conn: None })
            }
            Err(e) => Err(e),
        }
    }

    async fn manager(&self) -> Result<ManagerProxy<'_>> {
        let conn = self
            .conn
            .as_ref()
            .ok_or_else(|| Error::os("no D-Bus connection".to_string()))?;
        ManagerProxy::new(conn)
            .await
            .map_err(|e| dbus_err("reach systemd's manager", e))
    }

    /// `systemctl [--user] ARGS…` (the fallback without a bus).
    async fn systemctl(&self, args: &[&str], timeout: Duration) -> Result<std::process::Output> {
        let mut cmd = tokio::process::Command::new("systemctl");
        cmd.args(scope_args(self.scope))
            .args(args)
            .kill_on_drop(true);
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

    pub async fn reload(&self) -> Result<()> {
        if self.conn.is_none() {
            return self.systemctl_ok(&["daemon-reload"]).await;
        }
        self.manager()
            .await?
            .reload()
            .await
            .map_err(|e| dbus_err("reload systemd", e))
    }

    pub async fn enable(&self, unit: &str) -> Result<Vec<(String, String, String)>> {
        if self.conn.is_none() {
            return self
                .systemctl_ok(&["enable", unit])
                .await
                .map(|_| Vec::new());
        }
        let (_, changes) = self
            .manager()
            .await?
            .enable_unit_files(&[unit], false, true)
            .await
            .map_err(|e| dbus_err(&format!("enable {unit}"), e))?;
        Ok(changes)
    }

    pub async fn disable(&self, unit: &str) -> Result<Vec<(String, String, String)>> {
        if self.conn.is_none() {
            return self
                .systemctl_ok(&["disable", unit])
                .await
                .map(|_| Vec::new());
        }
        self.manager()
            .await?
            .disable_unit_files(&[unit], false)
            .await
            .map_err(|e| dbus_err(&format!("disable {unit}"), e))
    }

    pub async fn unit_file_state(&self, unit: &str) -> Option<String> {
        if self.conn.is_none() {
            let out = self
                .systemctl(&["is-enabled", unit], Duration::from_secs(10))
                .await
                .ok()?;
            return Some(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        self.manager()
            .await
            .ok()?
            .get_unit_file_state(unit)
            .await
            .ok()
    }

    /// Runs a job (`start`, `stop`, `restart`) and waits for its end.
    /// Returns the job's result: `done`, `failed`, `timeout`, `canceled`,
    /// `dependency`, `skipped`.
    pub async fn job(&self, verb: &str, unit: &str, timeout: Duration) -> Result<String> {
        if self.conn.is_none() {
            if verb != "stop" {
                let _ = self
                    .systemctl(&["reset-failed", unit], Duration::from_secs(10))
                    .await;
            }
            // `systemctl start` of a Type=notify unit also blocks until READY=1.
            let out = self.systemctl(&[verb, unit], timeout).await?;
            return Ok(if out.status.success() {
                "done"
            } else {
                "failed"
            }
            .to_string());
        }
        let m = self.manager().await?;
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
        if verb != "stop" {
            // A unit that failed before must be reset, or a start limit
            // hit earlier would refuse the new start.
            let _ = m.reset_failed_unit(unit).await;
        }
        let job = match verb {
            "start" => m.start_unit(unit, "replace").await,
            "stop" => m.stop_unit(unit, "replace").await,
            "restart" => m.restart_unit(unit, "replace").await,
            other => return Err(Error::os(format!("unknown job {other}"))),
        }
        .map_err(|e| dbus_err(&format!("{verb} {unit}"), e))?;
        let wait = async {
            loop {
                let Some(sig) = next(&mut removed).await else {
                    return Err(Error::os(
                        "the connection to systemd closed while waiting for the job".to_string(),
                    ));
                };
                if let Ok(args) = sig.args() {
                    if args.job == job {
                        return Ok(args.result.clone());
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(Error::new(
                Kind::Unavailable,
                format!(
                    "systemd's {verb} job for {unit} did not finish within {}; see `systemctl{} status {unit}`",
                    humantime::format_duration(timeout),
                    self.scope.systemctl_flag()
                ),
            )),
        }
    }

    /// The unit's current state; `None` when systemd does not know it.
    pub async fn unit_info(&self, unit: &str) -> Result<Option<UnitInfo>> {
        let Some(conn) = self.conn.as_ref() else {
            return self.unit_info_systemctl(unit).await;
        };
        let m = self.manager().await?;
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
}

impl Systemd {
    /// The fallback's `unit_info`: `systemctl show` with explicit
    /// properties, one `KEY=VALUE` per line.
    async fn unit_info_systemctl(&self, unit: &str) -> Result<Option<UnitInfo>> {
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

/// The manager's private socket (what systemctl uses).
fn private_socket(scope: Scope) -> Option<std::path::PathBuf> {
    match scope {
        Scope::System => Some("/run/systemd/private".into()),
        Scope::User => std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|d| !d.is_empty())
            .map(|d| std::path::PathBuf::from(d).join("systemd/private")),
    }
}

fn scope_args(scope: Scope) -> &'static [&'static str] {
    match scope {
        Scope::User => &["--user"],
        Scope::System => &[],
    }
}

/// The next item of a stream, without pulling in a stream-utilities crate.
async fn next<S: futures_core_stream::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

mod futures_core_stream {
    pub use zbus::export::futures_core::Stream;
}

fn no_bus(scope: Scope, why: &str) -> Error {
    let what = match scope {
        Scope::User => {
            "the user's D-Bus session bus ($DBUS_SESSION_BUS_ADDRESS or $XDG_RUNTIME_DIR/bus)"
        }
        Scope::System => "the system D-Bus bus",
    };
    Error::new(
        Kind::Unavailable,
        format!(
            "cannot reach systemd through {what}: {why}. Is a systemd{} manager running for you (on Debian the `dbus-user-session` package provides the user bus)?",
            if scope == Scope::User { " user" } else { "" }
        ),
    )
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
