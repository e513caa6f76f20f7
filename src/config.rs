//! Flags + config file + Paperclip's `config.json` + defaults → one validated
//! set of settings. Nothing is created or touched here: a bad id, URL or
//! config file is rejected (exit 78) before any side effect.
//!
//! Precedence: flags override the config file, the file overrides what the
//! instance's `config.json` implies, which overrides the built-in defaults.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::cli::{Mode, Selection, Target};
use crate::error::{Error, Result};
use crate::instance::{Instance, InstanceId, resolve_home};
use crate::paperclip;

pub const DEFAULT_URL: &str = "http://127.0.0.1:3100";
pub const DEFAULT_API_PATH: &str = "/api/health";
pub const DEFAULT_UI_PATH: &str = "/";
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest timeouts we accept: beyond these a typo is likelier than intent.
const MAX_READY_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
const MAX_STOP_TIMEOUT: Duration = Duration::from_secs(3600);

/// `paperclipd.toml`: flat keys mirroring the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub command: Option<Vec<String>>,
    pub url: Option<String>,
    pub mode: Option<Mode>,
    pub api_path: Option<String>,
    pub ui_path: Option<String>,
    #[serde(default, deserialize_with = "de_duration")]
    pub ready_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub stop_timeout: Option<Duration>,
    pub env: Option<BTreeMap<String, String>>,
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    crate::cli::parse_duration(&s)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
}

/// What `probe`, `status` and `run` need to find and judge a server.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub instance: Instance,
    pub mode: Mode,
    /// The base URL (scheme, host, port).
    pub url: Url,
    pub api_url: Url,
    pub ui_url: Url,
    /// The port the server must listen on.
    pub port: u16,
    /// Where connect checks go (the URL's host, resolved).
    pub addrs: Vec<SocketAddr>,
}

/// Everything `run` needs, validated.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub probe: ProbeSettings,
    pub ready_timeout: Duration,
    pub stop_timeout: Duration,
    /// The server command; `None` means the default `paperclipai run`.
    pub command: Option<Vec<OsString>>,
    /// Extra environment for the server, from the config's `[env]`.
    pub env: BTreeMap<String, String>,
    /// The Node.js chosen for the default command (`--node`, `PAPERCLIP_NODE`).
    pub node: Option<PathBuf>,
}

pub fn resolve_instance(target: &Target) -> Result<Instance> {
    let id = InstanceId::parse(&target.instance)?;
    let home = resolve_home(target.home.as_deref())?;
    Ok(Instance::new(id, home))
}

/// Reads the config file: `--config FILE` (must exist), else the instance's
/// `paperclipd.toml` when present.
pub fn load_file_config(
    sel: &Selection,
    instance: &Instance,
) -> Result<(FileConfig, Option<PathBuf>)> {
    let (path, required) = match &sel.config {
        Some(p) => (p.clone(), true),
        None => (instance.wrapper_config(), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok((FileConfig::default(), None));
        }
        Err(e) => {
            return Err(Error::config(format!(
                "cannot read config file {}: {e}; expected a readable TOML file (see `paperclipd run --help`)",
                path.display()
            )));
        }
    };
    let cfg = parse_file_config(&text).map_err(|e| {
        Error::config(format!(
            "config file {}: {e}fix the file, or move it aside to use the defaults",
            path.display()
        ))
    })?;
    Ok((cfg, Some(path)))
}

/// Parses `paperclipd.toml` text. The error names line, column and key.
pub fn parse_file_config(text: &str) -> std::result::Result<FileConfig, String> {
    toml::from_str::<FileConfig>(text).map_err(|e| {
        let mut msg = e.to_string();
        if !msg.ends_with('\n') {
            msg.push('\n');
        }
        msg
    })
}

/// A bind address names where the server listens; a probe needs where to
/// connect. Wildcards and empty hosts are probed on loopback.
fn probe_host(bind: &str) -> String {
    match bind.trim() {
        "" | "0.0.0.0" | "*" | "loopback" | "localhost" => "127.0.0.1".to_string(),
        "::" | "[::]" => "[::1]".to_string(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_string(),
    }
}

/// Validates a base URL: http (https with the `tls` feature), a host, no
/// credentials, no query or fragment.
pub fn parse_base_url(raw: &str) -> Result<Url> {
    let bad = |why: &str| {
        Error::config(format!(
            "invalid server URL {raw:?}: {why}; expected http://HOST:PORT, for example http://127.0.0.1:3100"
        ))
    };
    let url = Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        "http" => {}
        "https" if cfg!(feature = "tls") => {}
        "https" => {
            return Err(bad(
                "https probes need paperclipd built with `--features tls`",
            ));
        }
        other => return Err(bad(&format!("scheme {other:?} is not http"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo the credentials back.
        return Err(Error::config(
            "invalid server URL: it contains credentials (user:password@); paperclipd probes without credentials and does not store secrets in URLs; remove them".to_string(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it has a query or fragment"));
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err(bad(
            "it has a path; give probe paths with --api-path and --ui-path",
        ));
    }
    if url.port_or_known_default().is_none() {
        return Err(bad("it has no port"));
    }
    Ok(url)
}

fn parse_probe_path(raw: &str, what: &str) -> Result<String> {
    if !raw.starts_with('/') || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::config(format!(
            "invalid {what} path {raw:?}: expected an absolute path such as /api/health, without spaces"
        )));
    }
    Ok(raw.to_string())
}

pub fn resolve_probe(
    sel: &Selection,
    instance: Instance,
    file: &FileConfig,
) -> Result<ProbeSettings> {
    let pc = paperclip::load_config(&instance.paperclip_config())?.unwrap_or_default();
    let url_text = match (&sel.url, &file.url) {
        (Some(u), _) | (None, Some(u)) => u.clone(),
        (None, None) => match (&pc.host, pc.port) {
            (None, None) => DEFAULT_URL.to_string(),
            (host, port) => format!(
                "http://{}:{}",
                probe_host(host.as_deref().unwrap_or("127.0.0.1")),
                port.unwrap_or(3100)
            ),
        },
    };
    let url = parse_base_url(&url_text)?;
    let mode = sel
        .mode
        .or(file.mode)
        .unwrap_or(if pc.serve_ui == Some(false) {
            Mode::ApiOnly
        } else {
            Mode::Full
        });
    let api_path = parse_probe_path(
        sel.api_path
            .as_deref()
            .or(file.api_path.as_deref())
            .unwrap_or(DEFAULT_API_PATH),
        "API probe",
    )?;
    let ui_path = parse_probe_path(
        sel.ui_path
            .as_deref()
            .or(file.ui_path.as_deref())
            .unwrap_or(DEFAULT_UI_PATH),
        "UI probe",
    )?;
    let join = |p: &str| {
        url.join(p).map_err(|e| {
            Error::config(format!(
                "cannot build the probe URL from {url} and {p:?}: {e}"
            ))
        })
    };
    let api_url = join(&api_path)?;
    let ui_url = join(&ui_path)?;
    // Validated above: http(s) URLs with a host always have a known port.
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs = url.socket_addrs(|| None).map_err(|e| {
        Error::config(format!(
            "cannot resolve the host of {url}: {e}; expected a resolvable host name or an IP address"
        ))
    })?;
    if addrs.is_empty() {
        return Err(Error::config(format!(
            "the host of {url} resolves to no address"
        )));
    }
    Ok(ProbeSettings {
        instance,
        mode,
        url,
        api_url,
        ui_url,
        port,
        addrs,
    })
}

pub fn resolve_probe_settings(sel: &Selection) -> Result<ProbeSettings> {
    let instance = resolve_instance(&sel.target)?;
    let (file, _) = load_file_config(sel, &instance)?;
    resolve_probe(sel, instance, &file)
}

pub fn resolve_run_settings(args: &crate::cli::RunArgs) -> Result<RunSettings> {
    let sel = &args.selection;
    let instance = resolve_instance(&sel.target)?;
    let (file, file_path) = load_file_config(sel, &instance)?;
    let in_file = |key: &str| match &file_path {
        Some(p) => format!("{key} in {}", p.display()),
        None => format!("--{key}"),
    };
    let probe = resolve_probe(sel, instance, &file)?;

    let ready_timeout = args
        .ready_timeout
        .or(file.ready_timeout)
        .unwrap_or(DEFAULT_READY_TIMEOUT);
    if ready_timeout.is_zero() || ready_timeout > MAX_READY_TIMEOUT {
        return Err(Error::config(format!(
            "ready timeout {} is out of range: expected more than 0 and at most 24h",
            humantime::format_duration(ready_timeout)
        )));
    }
    let stop_timeout = args
        .stop_timeout
        .or(file.stop_timeout)
        .unwrap_or(DEFAULT_STOP_TIMEOUT);
    if stop_timeout > MAX_STOP_TIMEOUT {
        return Err(Error::config(format!(
            "stop timeout {} is out of range: expected at most 1h",
            humantime::format_duration(stop_timeout)
        )));
    }

    // A broken file is reported even when a flag overrides the key: the
    // next start without the flag would fail.
    if let Some(cmd) = &file.command {
        if cmd.is_empty() || cmd[0].trim().is_empty() {
            return Err(Error::config(format!(
                "{} is empty: expected the server command and its arguments, e.g. [\"paperclipai\", \"run\"]; remove the key to use the default",
                in_file("command")
            )));
        }
    }
    let command = if !args.command.is_empty() {
        Some(args.command.clone())
    } else {
        file.command
            .as_ref()
            .map(|cmd| cmd.iter().map(OsString::from).collect())
    };

    let env = file.env.clone().unwrap_or_default();
    for key in env.keys() {
        if paperclip::reserved_env(key) {
            return Err(Error::config(format!(
                "{} sets {key}, which paperclipd sets or removes itself; remove it from [env] (use --instance/--home for the instance)",
                in_file("env")
            )));
        }
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(Error::config(format!(
                "{} has an invalid variable name {key:?}: expected a name without '=' or NUL",
                in_file("env")
            )));
        }
    }
    Ok(RunSettings {
        probe,
        ready_timeout,
        stop_timeout,
        command,
        env,
        node: args.node.clone().filter(|p| !p.as_os_str().is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_config_errors_name_line_and_key() {
        let e = parse_file_config("url = \"http://x:1\"\nbogus = 1\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("bogus"), "{e}");
        let e = parse_file_config("ready_timeout = 5\n").unwrap_err();
        assert!(e.contains("ready_timeout") || e.contains("line 1"), "{e}");
        let e = parse_file_config("stop_timeout = \"-5s\"\n").unwrap_err();
        assert!(e.contains("invalid duration"), "{e}");
        let e = parse_file_config("url = \n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn file_config_full() {
        let c = parse_file_config(
            "command = [\"srv\", \"-p\", \"1\"]\nmode = \"api-only\"\nready_timeout = \"90s\"\n[env]\nA = \"b\"\n",
        )
        .unwrap();
        assert_eq!(c.mode, Some(Mode::ApiOnly));
        assert_eq!(c.ready_timeout, Some(Duration::from_secs(90)));
        assert_eq!(c.env.unwrap()["A"], "b");
    }

    #[test]
    fn wildcard_binds_probe_loopback() {
        assert_eq!(probe_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(probe_host("::"), "[::1]");
        assert_eq!(probe_host("::1"), "[::1]");
        assert_eq!(probe_host("10.1.2.3"), "10.1.2.3");
    }

    #[test]
    fn urls() {
        assert!(parse_base_url("http://127.0.0.1:3100").is_ok());
        assert!(parse_base_url("http://localhost:3100/").is_ok());
        for bad in [
            "ftp://x:1",
            "http://u:p@x:1",
            "http://x:1/base",
            "http://x:1/?q",
            "nonsense",
            "http://:1",
        ] {
            let e = parse_base_url(bad).unwrap_err();
            assert_eq!(e.exit_code(), 78, "{bad}");
        }
        let e = parse_base_url("http://user:hunter2@x:1").unwrap_err();
        assert!(!e.message.contains("hunter2"));
    }
}
