//! logind's `RemoveIPC=` and linger: may logind remove the IPC objects of
//! the instance's PostgreSQL when its user logs out (upstream #2862)?
//!
//! logind removes a user's System V and POSIX IPC objects only in
//! `user_finalize()`, when it garbage-collects the user, and never for
//! system users (uid ≤ 999). `user_may_gc()` keeps a lingering user while
//! its user manager runs (systemd `src/login/logind-user.c`). So linger
//! protects; without it the last logout (ssh, su, cron) removes them, and
//! the user manager stops the user's units too.
//!
//! Asked over D-Bus (`org.freedesktop.login1`: `Manager.RemoveIPC`,
//! `User.Linger`); without a system bus, from logind's own files
//! (`/var/lib/systemd/linger/<user>`, `logind.conf`).

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use zbus::OwnedObjectPath;

use crate::procfs;

/// logind's compile-time `SYSTEM_UID_MAX` on Debian, Fedora and Arch.
pub const SYSTEM_UID_MAX: u32 = 999;
const BUS_TIMEOUT: Duration = Duration::from_millis(1500);

#[zbus::proxy(
    interface = "org.freedesktop.login1.Manager",
    default_service = "org.freedesktop.login1",
    default_path = "/org/freedesktop/login1"
)]
trait LoginManager {
    fn get_user(&self, uid: u32) -> zbus::Result<OwnedObjectPath>;
    #[zbus(property, name = "RemoveIPC")]
    fn remove_ipc(&self) -> zbus::Result<bool>;
}

#[zbus::proxy(
    interface = "org.freedesktop.login1.User",
    default_service = "org.freedesktop.login1"
)]
trait LoginUser {
    #[zbus(property)]
    fn linger(&self) -> zbus::Result<bool>;
}

/// Whether a user's IPC objects survive its logouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protection {
    /// The user lingers: logind keeps it (and its IPC) while its manager runs.
    Lingering,
    /// logind never removes a system user's IPC.
    SystemUser,
    /// `RemoveIPC=no`: nothing is removed (units still stop at logout
    /// without linger).
    RemoveIpcOff,
    /// No logind runs here: nobody removes anything at logout.
    NoLogind,
    /// `RemoveIPC=yes`, no linger, a regular user: the last logout removes
    /// PostgreSQL's shared memory and semaphores.
    Exposed,
}

impl Protection {
    pub fn exposed(self) -> bool {
        self == Protection::Exposed
    }
}

/// What logind says, and where it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub logind_runs: bool,
    pub linger: Option<bool>,
    /// `None` when unknown (logind's default is yes).
    pub remove_ipc: Option<bool>,
    /// `"logind"` (D-Bus) or `"files"`.
    pub source: &'static str,
}

/// The decision (pure: unit-tested as a table).
pub fn assess(uid: u32, f: &Facts) -> Protection {
    if uid <= SYSTEM_UID_MAX {
        Protection::SystemUser
    } else if !f.logind_runs {
        Protection::NoLogind
    } else if f.linger == Some(true) {
        Protection::Lingering
    } else if f.remove_ipc == Some(false) {
        Protection::RemoveIpcOff
    } else {
        Protection::Exposed
    }
}

/// The check, as `status --json` shows it under `"ipc"`.
#[derive(Debug, Clone, Serialize)]
pub struct IpcView {
    pub state: Protection,
    pub user: String,
    pub uid: u32,
    #[serde(flatten)]
    pub facts: Facts,
    /// The command that protects it, when exposed.
    pub fix: Option<String>,
}

impl IpcView {
    /// One line for `status` and `install`.
    pub fn describe(&self) -> String {
        let u = &self.user;
        match self.state {
            Protection::Lingering => {
                format!("protected: {u} lingers, so logind keeps its IPC objects")
            }
            Protection::SystemUser => format!(
                "protected: {u} (uid {}) is a system user, whose IPC objects logind never removes",
                self.uid
            ),
            Protection::RemoveIpcOff => format!(
                "IPC kept: logind's RemoveIPC=no; but {u} does not linger, so {u}'s services stop at \
                 {u}'s last logout and do not start at boot"
            ),
            Protection::NoLogind => "protected: no logind runs here".to_string(),
            Protection::Exposed => format!(
                "EXPOSED: logind's RemoveIPC=yes and {u} does not linger, so {u}'s last logout \
                 (ssh, su, cron) removes PostgreSQL's shared memory and semaphores and stops {u}'s services; \
                 run `{}`",
                self.fix.as_deref().unwrap_or("")
            ),
        }
    }
}

impl IpcView {
    /// For `install`: linger is off for a regular user, so the instance is
    /// not a background service. What it costs, and the command.
    pub fn linger_warning(&self) -> Option<String> {
        let off =
            self.uid > SYSTEM_UID_MAX && self.facts.logind_runs && self.facts.linger != Some(true);
        if !off {
            return None;
        }
        let u = &self.user;
        let ipc = if self.state.exposed() {
            " and, as logind's RemoveIPC=yes, that logout also removes PostgreSQL's shared memory and semaphores"
        } else {
            ""
        };
        Some(format!(
            "{u} does not linger: the instance stops at {u}'s last logout (including the end of an ssh or su \
             session) and does not start at boot{ipc}. Make it a background service with \
             `sudo loginctl enable-linger {u}`"
        ))
    }
}

/// Checks `uid`: logind over the system bus, else logind's files.
/// (`scan`: the processes, when the bus cannot be asked.)
pub async fn check(uid: u32, scan: &procfs::Scan) -> IpcView {
    let user = login_name(uid).unwrap_or_else(|| uid.to_string());
    let facts = match tokio::time::timeout(BUS_TIMEOUT, bus_facts(uid)).await {
        Ok(Ok(f)) => f,
        _ => file_facts(&user, Path::new("/"), logind_running(scan)),
    };
    let state = assess(uid, &facts);
    IpcView {
        state,
        fix: state
            .exposed()
            .then(|| format!("sudo loginctl enable-linger {user}")),
        user,
        uid,
        facts,
    }
}

async fn bus_facts(uid: u32) -> zbus::Result<Facts> {
    let conn = zbus::Connection::system().await?;
    let m = LoginManagerProxy::new(&conn).await?;
    let remove_ipc = m.remove_ipc().await.ok();
    // logind knows every user with a session or linger; an unknown user
    // does not linger.
    let linger = match m.get_user(uid).await {
        Ok(path) => LoginUserProxy::builder(&conn)
            .path(path)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?
            .linger()
            .await
            .ok(),
        Err(zbus::Error::MethodError(name, _, _)) if name.as_str().ends_with("NoSuchUser") => {
            Some(false)
        }
        Err(e) => return Err(e),
    };
    Ok(Facts {
        logind_runs: true,
        linger,
        remove_ipc,
        source: "logind",
    })
}

/// The login name of `uid`, from /etc/passwd.
pub fn login_name(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.get(2)?.parse::<u32>().ok()? == uid).then(|| f[0].to_string())
    })
}

/// Without a bus: does a `systemd-logind` process run (in our PID
/// namespace; a host's logind does not clean a container's IPC namespace)?
fn logind_running(scan: &procfs::Scan) -> bool {
    scan.processes().iter().any(|p| p.comm == "systemd-logind")
}

/// From logind's files under `root`: the linger flag file, and
/// `RemoveIPC=` in `logind.conf` and its drop-ins.
pub fn file_facts(user: &str, root: &Path, logind_runs: bool) -> Facts {
    let linger = root.join("var/lib/systemd/linger").join(user).exists();
    let mut remove_ipc = None;
    let mut files = vec![root.join("etc/systemd/logind.conf")];
    let mut dropins: Vec<(std::ffi::OsString, std::path::PathBuf)> = Vec::new();
    // Drop-ins apply in file-name order; /etc overrides /run and /usr.
    for dir in [
        "usr/lib/systemd/logind.conf.d",
        "run/systemd/logind.conf.d",
        "etc/systemd/logind.conf.d",
    ] {
        for e in std::fs::read_dir(root.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name();
            if name.to_string_lossy().ends_with(".conf") {
                dropins.retain(|(n, _)| *n != name);
                dropins.push((name, e.path()));
            }
        }
    }
    dropins.sort();
    files.extend(dropins.into_iter().map(|(_, p)| p));
    for f in files {
        if let Some(v) = std::fs::read_to_string(&f)
            .ok()
            .and_then(|t| parse_remove_ipc(&t))
        {
            remove_ipc = Some(v);
        }
    }
    Facts {
        logind_runs,
        linger: Some(linger),
        remove_ipc,
        source: "files",
    }
}

/// The last `RemoveIPC=` of the `[Login]` section, as a boolean.
pub fn parse_remove_ipc(text: &str) -> Option<bool> {
    let mut in_login = false;
    let mut value = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_login = line == "[Login]";
        } else if let Some(v) = line.strip_prefix("RemoveIPC").map(str::trim_start) {
            if let (true, Some(v)) = (in_login, v.strip_prefix('=')) {
                value = match v.trim().to_ascii_lowercase().as_str() {
                    "yes" | "true" | "on" | "1" => Some(true),
                    "no" | "false" | "off" | "0" => Some(false),
                    _ => value,
                };
            }
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(logind_runs: bool, linger: Option<bool>, remove_ipc: Option<bool>) -> Facts {
        Facts {
            logind_runs,
            linger,
            remove_ipc,
            source: "test",
        }
    }

    #[test]
    fn decision_table() {
        use Protection::*;
        let t = [
            (1000, facts(true, Some(false), Some(true)), Exposed),
            (1000, facts(true, Some(false), None), Exposed),
            (1000, facts(true, Some(true), Some(true)), Lingering),
            (1000, facts(true, Some(false), Some(false)), RemoveIpcOff),
            (1000, facts(false, Some(false), Some(true)), NoLogind),
            (999, facts(true, Some(false), Some(true)), SystemUser),
            (0, facts(true, Some(false), Some(true)), SystemUser),
        ];
        for (uid, f, want) in t {
            assert_eq!(assess(uid, &f), want, "{uid} {f:?}");
        }
    }

    #[test]
    fn logind_conf() {
        assert_eq!(parse_remove_ipc("[Login]\n#RemoveIPC=yes\n"), None);
        assert_eq!(parse_remove_ipc("[Login]\nRemoveIPC=no\n"), Some(false));
        assert_eq!(parse_remove_ipc("[Login]\nRemoveIPC = yes\n"), Some(true));
        assert_eq!(parse_remove_ipc("[Other]\nRemoveIPC=no\n"), None);
    }

    #[test]
    fn files_drop_ins_override_in_name_order() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("etc/systemd/logind.conf.d")).unwrap();
        std::fs::create_dir_all(r.join("usr/lib/systemd/logind.conf.d")).unwrap();
        std::fs::create_dir_all(r.join("var/lib/systemd/linger")).unwrap();
        std::fs::write(r.join("etc/systemd/logind.conf"), "[Login]\nRemoveIPC=no\n").unwrap();
        std::fs::write(
            r.join("usr/lib/systemd/logind.conf.d/10-a.conf"),
            "[Login]\nRemoveIPC=yes\n",
        )
        .unwrap();
        let f = file_facts("alice", r, true);
        assert_eq!(
            (f.logind_runs, f.linger, f.remove_ipc),
            (true, Some(false), Some(true))
        );
        assert_eq!(assess(1000, &f), Protection::Exposed);
        std::fs::write(
            r.join("etc/systemd/logind.conf.d/20-b.conf"),
            "[Login]\nRemoveIPC=no\n",
        )
        .unwrap();
        std::fs::write(r.join("var/lib/systemd/linger/alice"), "").unwrap();
        let f = file_facts("alice", r, true);
        assert_eq!((f.linger, f.remove_ipc), (Some(true), Some(false)));
    }

    /// Issue 19 item 7: linger off is a warning whatever RemoveIPC= says
    /// (the instance stops at logout and does not start at boot); it was
    /// "protected", at info level, with RemoveIPC=no.
    #[test]
    fn linger_off_is_warned_with_its_cost() {
        let view = |uid: u32, f: Facts| IpcView {
            state: assess(uid, &f),
            user: "alice".into(),
            uid,
            fix: None,
            facts: f,
        };
        let off = view(1000, facts(true, Some(false), Some(false)));
        assert!(
            !off.describe().starts_with("protected"),
            "{}",
            off.describe()
        );
        let w = off
            .linger_warning()
            .expect("a warning with RemoveIPC=no too");
        assert!(w.contains("stops at alice's last logout"), "{w}");
        assert!(w.contains("does not start at boot"), "{w}");
        assert!(w.contains("sudo loginctl enable-linger alice"), "{w}");
        assert!(!w.contains("semaphores"), "{w}");
        let exposed = view(1000, facts(true, Some(false), Some(true)));
        assert!(exposed.linger_warning().unwrap().contains("semaphores"));
        for quiet in [
            view(1000, facts(true, Some(true), Some(true))),
            view(998, facts(true, Some(false), Some(true))),
            view(1000, facts(false, Some(false), Some(true))),
        ] {
            assert_eq!(quiet.linger_warning(), None, "{quiet:?}");
        }
    }
}
