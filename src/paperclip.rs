//! What we know of upstream Paperclip: its command, its onboarding, its
//! `config.json`, the environment it gets, and its own service names.
//!
//! Everything that would change when Paperclip changes lives here.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::cli::OnboardBind;
use crate::error::{Error, Kind, Result};
use crate::instance::{Instance, InstanceId};
use crate::program;

/// Variables of the service manager's protocol that must not reach the
/// server: with them, a server (or anything it runs) could send `READY=1`
/// or `STOPPING=1` on our behalf, or take over our watchdog.
pub const REMOVED_ENV: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    // paperclipd's own: `run` has already put it before PATH.
    "PAPERCLIPD_PATH_PREPEND",
];

/// The variables we set for the server (see [`server_env`]).
pub const PAPERCLIP_ENV: &[&str] = &[
    "PAPERCLIP_SERVICE_MANAGED",
    "PAPERCLIP_INSTANCE_ID",
    "PAPERCLIP_HOME",
];

/// Variables a config `[env]` table may not set: they belong to the
/// service manager or to us.
pub fn reserved_env(key: &str) -> bool {
    REMOVED_ENV.contains(&key) || PAPERCLIP_ENV.contains(&key)
}

/// The `PAPERCLIP_*` variables that tell the server which instance it is
/// and that a service manager supervises it.
pub fn server_env(instance: &Instance) -> [(&'static str, OsString); 3] {
    [
        ("PAPERCLIP_SERVICE_MANAGED", "1".into()),
        ("PAPERCLIP_INSTANCE_ID", instance.id.as_str().into()),
        ("PAPERCLIP_HOME", instance.home.clone().into_os_string()),
    ]
}

/// Where the default server program is looked for: the variables of
/// whoever will run it (this process, or a unit's `Environment=`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ShimEnv<'a> {
    /// `PAPERCLIP_SHIM_PATH`.
    pub shim_path: Option<&'a OsStr>,
    /// `HOME`, for `~/.local/bin/paperclipai`.
    pub home: Option<&'a OsStr>,
    pub path: Option<&'a OsStr>,
}

/// Finds the default server program `paperclipai`:
/// `$PAPERCLIP_SHIM_PATH`, `~/.local/bin/paperclipai`, then `PATH`.
pub fn default_program() -> Result<PathBuf> {
    let (shim, home, path) = (
        std::env::var_os("PAPERCLIP_SHIM_PATH"),
        std::env::var_os("HOME"),
        std::env::var_os("PATH"),
    );
    find_program(&ShimEnv {
        shim_path: shim.as_deref(),
        home: home.as_deref(),
        path: path.as_deref(),
    })
}

/// [`default_program`] in a given environment.
pub fn find_program(env: &ShimEnv<'_>) -> Result<PathBuf> {
    if let Some(shim) = env.shim_path.filter(|s| !s.is_empty()) {
        let p = PathBuf::from(shim);
        return program::check_executable(&p, "PAPERCLIP_SHIM_PATH").map(|_| p);
    }
    if let Some(home) = env.home.filter(|h| !h.is_empty()) {
        let p = Path::new(home).join(".local/bin/paperclipai");
        if p.exists() {
            return program::check_executable(&p, "~/.local/bin/paperclipai").map(|_| p);
        }
    }
    match env
        .path
        .and_then(|path| program::search_in(OsStr::new("paperclipai"), path))
    {
        Some(p) => program::check_executable(&p, "PATH").map(|_| p),
        None => Err(Error::new(
            Kind::NotFound,
            "the Paperclip server `paperclipai` was not found: not in $PAPERCLIP_SHIM_PATH, ~/.local/bin/paperclipai or PATH. \
             Install it with `npm install -g paperclipai` (it needs Node.js 24), set PAPERCLIP_SHIM_PATH, \
             or run another server with `paperclipd run -- COMMAND ARGS...`",
        )),
    }
}

/// What the installed paperclipai package says about the Node.js it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engines {
    /// `engines.node` of the package.json at `package`.
    Node { range: String, package: PathBuf },
    /// The package.json declares no `engines.node`.
    Undeclared(PathBuf),
    /// The package.json could not be read or parsed.
    Unreadable(PathBuf, String),
    /// No paperclipai package.json was found around the shim.
    NoPackage,
}

/// The `engines.node` of the paperclipai package a shim runs.
///
/// npm links `<prefix>/bin/paperclipai` to
/// `../lib/node_modules/paperclipai/dist/index.js` (global install) and
/// `node_modules/.bin/paperclipai` to `../paperclipai/dist/index.js` (local),
/// so the package.json is the nearest one named `paperclipai` above the
/// link's target. A shim that is a copy or a wrapper in `<prefix>/bin` falls
/// back to `<prefix>/lib/node_modules/paperclipai/package.json`.
pub fn engines(shim: &Path) -> Engines {
    let target = shim.canonicalize().unwrap_or_else(|_| shim.to_path_buf());
    let above_target = target
        .ancestors()
        .skip(1)
        .take(6)
        .map(|d| d.join("package.json"));
    let beside_prefix = shim
        .parent()
        .and_then(Path::parent)
        .map(|prefix| prefix.join("lib/node_modules/paperclipai/package.json"));
    for candidate in above_target.chain(beside_prefix) {
        let Ok(text) = crate::regular_file::read_to_string(&candidate) else {
            continue;
        };
        let v: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return Engines::Unreadable(candidate, e.to_string()),
        };
        if v.get("name").and_then(|n| n.as_str()) != Some("paperclipai") {
            continue;
        }
        return match v.pointer("/engines/node") {
            Some(serde_json::Value::String(range)) => Engines::Node {
                range: range.clone(),
                package: candidate,
            },
            None | Some(serde_json::Value::Null) => Engines::Undeclared(candidate),
            Some(other) => Engines::Unreadable(
                candidate,
                format!("engines.node is {other}, expected a version range string"),
            ),
        };
    }
    Engines::NoPackage
}

/// The arguments that run the server of an instance.
pub fn run_args(id: &InstanceId) -> Vec<OsString> {
    vec!["run".into(), "--instance".into(), id.as_str().into()]
}

/// The arguments of the first start. `paperclipai onboard` has no
/// `--instance`: the instance comes from `PAPERCLIP_INSTANCE_ID` (and the
/// home from `PAPERCLIP_HOME`), which [`server_env`] sets. With `bind`, it
/// asks nothing (`--yes`: Quickstart, then it starts the server itself).
pub fn onboard_args(bind: Option<OnboardBind>) -> Vec<&'static str> {
    let mut args = vec!["onboard", "--no-install-service"];
    if let Some(b) = bind {
        args.extend(["--yes", "--bind", b.as_str()]);
    }
    args
}

/// The onboarding command as a user would type it.
pub fn onboard_command_line(
    program: &Path,
    instance: &Instance,
    bind: Option<OnboardBind>,
) -> String {
    format!(
        "PAPERCLIP_HOME={} PAPERCLIP_INSTANCE_ID={} {} {}",
        instance.home.display(),
        instance.id,
        program.display(),
        onboard_args(bind).join(" "),
    )
}

/// What the instance's own `config.json` says about where it serves.
#[derive(Debug, Default, PartialEq)]
pub struct PaperclipConfig {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub serve_ui: Option<bool>,
}

/// Reads `<instance root>/config.json`. A missing file is not an error (a
/// fresh instance); a malformed one is, because guessing would probe the
/// wrong server.
pub fn load_config(path: &Path) -> Result<Option<PaperclipConfig>> {
    let text = match crate::regular_file::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::config(format!(
                "cannot read Paperclip's config {}: {e}; fix its permissions or pass --url",
                crate::untrusted::path(path)
            )));
        }
    };
    parse_config(&text).map(Some).map_err(|e| {
        Error::config(format!(
            "Paperclip's config {} is not valid: {e}; expected the JSON that `paperclipai onboard` writes; fix it, or pass --url and --mode",
            crate::untrusted::path(path)
        ))
    })
}

/// Parses `config.json` text (only `server.host`, `server.port`,
/// `server.serveUi` matter to us).
pub fn parse_config(text: &str) -> std::result::Result<PaperclipConfig, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Some(server) = v.get("server") else {
        return Ok(PaperclipConfig::default());
    };
    let host = match server.get("host") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(format!("server.host is {other}, expected a string")),
    };
    let port = match server.get("port") {
        None | Some(serde_json::Value::Null) => None,
        Some(p) => match p.as_u64().and_then(|n| u16::try_from(n).ok()) {
            Some(n) if n > 0 => Some(n),
            _ => {
                return Err(format!(
                    "server.port is {p}, expected a port number 1-65535"
                ));
            }
        },
    };
    let serve_ui = match server.get("serveUi") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Bool(b)) => Some(*b),
        Some(other) => return Err(format!("server.serveUi is {other}, expected true or false")),
    };
    Ok(PaperclipConfig {
        host,
        port,
        serve_ui,
    })
}

/// Upstream's own systemd unit for an instance (`paperclipai service install`).
pub fn upstream_unit_name(id: &InstanceId) -> String {
    if id.as_str() == "default" {
        "paperclipai.service".to_string()
    } else {
        format!("paperclipai-{id}.service")
    }
}

/// Upstream's own launchd label for an instance.
pub fn upstream_label(id: &InstanceId) -> String {
    if id.as_str() == "default" {
        "ing.paperclip.paperclipai".to_string()
    } else {
        format!("ing.paperclip.paperclipai.{id}")
    }
}

/// Upstream's own service for an instance, as one service manager sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamService {
    /// The unit or label.
    pub name: String,
    /// The command that disables it for good.
    pub disable_with: String,
}

impl UpstreamService {
    /// The one rule: upstream's own service next to ours means two servers
    /// for one instance. `state` says what we saw ("running", "enabled").
    pub fn conflict(&self, id: &InstanceId, state: &str) -> String {
        format!(
            "upstream's own service {} ({state}) serves the same instance {:?}; two services would run two servers. \
             Disable it with `{}`",
            self.name,
            id.as_str(),
            self.disable_with
        )
    }
}

/// The data directory of the instance's embedded PostgreSQL:
/// `database.embeddedPostgresDataDir` of `config.json`, else
/// `<instance root>/db` (what `onboard` writes). `None` when the instance
/// uses an external database (`database.mode` other than
/// `embedded-postgres`), so there is no postmaster of ours to worry about.
/// An unreadable `config.json` is reported by `config`, not here.
pub fn embedded_postgres_dir(instance: &Instance) -> Option<PathBuf> {
    let default = instance.root().join("db");
    let Ok(text) = crate::regular_file::read_to_string(&instance.paperclip_config()) else {
        return Some(default);
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Some(default);
    };
    let db = v.get("database");
    match db.and_then(|d| d.get("mode")).and_then(|m| m.as_str()) {
        None | Some("embedded-postgres") => {}
        Some(_) => return None,
    }
    match db
        .and_then(|d| d.get("embeddedPostgresDataDir"))
        .and_then(|d| d.as_str())
    {
        Some(dir) if Path::new(dir).is_absolute() => Some(PathBuf::from(dir)),
        _ => Some(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_fields() {
        let c =
            parse_config(r#"{"server":{"host":"0.0.0.0","port":3200,"serveUi":false}}"#).unwrap();
        assert_eq!(
            c,
            PaperclipConfig {
                host: Some("0.0.0.0".into()),
                port: Some(3200),
                serve_ui: Some(false)
            }
        );
        assert!(parse_config(r#"{"server":{"port":"x"}}"#).is_err());
        assert!(parse_config(r#"{"server":{"port":70000}}"#).is_err());
        assert!(parse_config("{").is_err());
        assert_eq!(parse_config("{}").unwrap(), PaperclipConfig::default());
    }

    #[test]
    fn upstream_names() {
        let d = InstanceId::parse("default").unwrap();
        let x = InstanceId::parse("x").unwrap();
        assert_eq!(upstream_unit_name(&d), "paperclipai.service");
        assert_eq!(upstream_unit_name(&x), "paperclipai-x.service");
        assert_eq!(upstream_label(&d), "ing.paperclip.paperclipai");
        assert_eq!(upstream_label(&x), "ing.paperclip.paperclipai.x");
    }

    #[test]
    fn the_conflict_names_the_service_and_the_cure() {
        let u = UpstreamService {
            name: "paperclipai.service".into(),
            disable_with: "systemctl --user disable --now paperclipai.service".into(),
        };
        let m = u.conflict(&InstanceId::parse("default").unwrap(), "running");
        assert!(m.contains("paperclipai.service (running)"), "{m}");
        assert!(m.contains("disable --now"), "{m}");
    }
}
