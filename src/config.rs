//! Flags + config file + Paperclip's `config.json` + defaults → one validated
//! set of settings. Nothing is created or touched here: a bad id, URL or
//! config file is rejected (exit 78) before any side effect.
//!
//! Precedence: flags override the config file, the file overrides what the
//! instance's `config.json` implies, which overrides the built-in defaults.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::cli::{Mode, Selection, Target};
use crate::error::{Error, Result};
use crate::instance::{Instance, InstanceId, resolve_home};
use crate::paperclip;

pub const DEFAULT_URL: &str = "http://127.0.0.1:3100";
pub const DEFAULT_API_PATH: &str = "/api/health";
pub const DEFAULT_UI_PATH: &str = "/";
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// What a manager must wait beyond `stop_timeout` before its own SIGKILL:
/// after the grace period paperclipd SIGKILLs the server's group, waits up
/// to 5 s to reap it, gives leftovers 0.1 s + 5 s, drains output up to 1 s
/// (see `supervise::stop`): 11.1 s at most, rounded up.
pub const STOP_MARGIN: Duration = Duration::from_secs(15);
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
    /// Under launchd: this many failed runs within `start_limit_interval`
    /// pause the instance (see `launchd::guard`).
    pub start_limit_burst: Option<u32>,
    #[serde(default, deserialize_with = "de_duration")]
    pub start_limit_interval: Option<Duration>,
    pub env: Option<BTreeMap<String, String>>,
    /// `"1GiB"`, `"500MiB"`, or a number of bytes; 0 disables.
    #[serde(default, deserialize_with = "de_size")]
    pub min_free: Option<u64>,
    #[serde(default, deserialize_with = "de_duration")]
    pub reap_adopted_after: Option<Duration>,
    pub log_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "crate::log_file::de_size")]
    pub log_max_size: Option<u64>,
    pub log_keep: Option<u32>,
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    crate::cli::parse_duration(&s)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
}

/// A size as text (`"1GiB"`) or a plain number of bytes.
fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bytes(n) => Ok(Some(n)),
        Raw::Text(s) => crate::disk::parse_size(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
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
    /// The free space the instance's filesystem needs (`run` refuses to
    /// start below it, `status` warns); 0 disables.
    pub min_free: u64,
}

impl ProbeSettings {
    /// The settings as a lock record carries them. Never credentials: a
    /// URL with `user:password@` is refused before anything runs.
    pub fn spec(&self) -> ProbeSpec {
        let path = |u: &Url| match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        };
        ProbeSpec {
            url: self.url.to_string(),
            mode: self.mode,
            api_path: path(&self.api_url),
            ui_path: path(&self.ui_url),
        }
    }
}

/// Where and how to probe, before validation: what flags and files choose,
/// and what the holder's lock record tells `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSpec {
    pub url: String,
    pub mode: Mode,
    pub api_path: String,
    pub ui_path: String,
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
    /// Stop adopted processes once adopted this long; `None`: report only.
    pub reap_adopted_after: Option<Duration>,
    /// `--log-file`: our own log file instead of stdout and stderr.
    pub log: Option<crate::log_file::LogFileSettings>,
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
/// connect. Wildcards and empty hosts are probed on loopback. `localhost`
/// stays a name: a server bound through it may listen on `::1` as well as
/// on `127.0.0.1` (Node takes the resolver's first answer), so every
/// address it names is probed (see [`connect_addrs`]).
fn probe_host(bind: &str) -> String {
    match bind.trim() {
        "" | "0.0.0.0" | "*" | "loopback" => "127.0.0.1".to_string(),
        "::" | "[::]" => "[::1]".to_string(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_string(),
    }
}

/// Every address the URL's host names, in the resolver's order. A
/// `localhost` name (RFC 6761: `localhost` and `*.localhost`) also names
/// both loopback addresses even where `/etc/hosts` lists only one, since a
/// server bound through another resolver (Node's) may have picked the other.
fn connect_addrs(url: &Url, port: u16) -> Result<Vec<SocketAddr>> {
    let loopback_name = url.domain().is_some_and(|d| {
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        d == "localhost" || d.ends_with(".localhost")
    });
    let mut addrs = match url.socket_addrs(|| None) {
        Ok(a) => a,
        Err(_) if loopback_name => Vec::new(),
        Err(e) => {
            return Err(Error::config(format!(
                "cannot resolve the host of {url}: {e}; expected a resolvable host name or an IP address"
            )));
        }
    };
    if loopback_name {
        for ip in [
            IpAddr::from(Ipv4Addr::LOCALHOST),
            IpAddr::from(Ipv6Addr::LOCALHOST),
        ] {
            let a = SocketAddr::new(ip, port);
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
    }
    if addrs.is_empty() {
        return Err(Error::config(format!(
            "the host of {url} resolves to no address"
        )));
    }
    Ok(addrs)
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
    let mode = sel
        .mode
        .or(file.mode)
        .unwrap_or(if pc.serve_ui == Some(false) {
            Mode::ApiOnly
        } else {
            Mode::Full
        });
    let spec = ProbeSpec {
        url: url_text,
        mode,
        api_path: sel
            .api_path
            .clone()
            .or(file.api_path.clone())
            .unwrap_or(DEFAULT_API_PATH.to_string()),
        ui_path: sel
            .ui_path
            .clone()
            .or(file.ui_path.clone())
            .unwrap_or(DEFAULT_UI_PATH.to_string()),
    };
    let mut settings = probe_settings(instance, &spec)?;
    settings.min_free = file.min_free.unwrap_or(crate::disk::DEFAULT_MIN_FREE);
    Ok(settings)
}

/// Validates probe settings as given (flags and files, or a lock record).
pub fn probe_settings(instance: Instance, spec: &ProbeSpec) -> Result<ProbeSettings> {
    let url = parse_base_url(&spec.url)?;
    let api_path = parse_probe_path(&spec.api_path, "API probe")?;
    let ui_path = parse_probe_path(&spec.ui_path, "UI probe")?;
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
    let addrs = connect_addrs(&url, port)?;
    Ok(ProbeSettings {
        instance,
        mode: spec.mode,
        url,
        api_url,
        ui_url,
        port,
        addrs,
        min_free: crate::disk::DEFAULT_MIN_FREE,
    })
}

/// The whole time a manager should give `run` to stop: `TimeoutStopSec=`,
/// launchd's `ExitTimeOut`.
pub fn stop_budget(stop_timeout: Duration) -> Duration {
    stop_timeout + STOP_MARGIN
}

/// The instance's stop timeout as its `run` will see it (its
/// `paperclipd.toml`, else the default), for the manager's own timeout.
pub fn instance_stop_timeout(instance: &Instance) -> Result<Duration> {
    let (file, _) = load_file_config(&Selection::default(), instance)?;
    Ok(file.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT))
}

pub fn resolve_probe_settings(sel: &Selection) -> Result<ProbeSettings> {
    let instance = resolve_instance(&sel.target)?;
    let (file, _) = load_file_config(sel, &instance)?;
    resolve_probe(sel, instance, &file)
}

/// The crash-loop guard's limits (launchd), when the file sets them.
fn check_start_limits(file: &FileConfig, where_: &str) -> Result<()> {
    let interval_bad = file
        .start_limit_interval
        .is_some_and(|i| i.is_zero() || i > MAX_READY_TIMEOUT);
    if file.start_limit_burst == Some(0) || interval_bad {
        return Err(Error::config(format!(
            "{where_} / start_limit_interval is out of range: expected a burst of at least 1 and an \
             interval above 0 and at most 24h (defaults: 5 in 60s)"
        )));
    }
    Ok(())
}

pub fn resolve_run_settings(args: &crate::cli::RunArgs) -> Result<RunSettings> {
    let sel = &args.selection;
    let instance = resolve_instance(&sel.target)?;
    let (file, file_path) = load_file_config(sel, &instance)?;
    if let Some(p) = &file_path {
        crate::lock::refuse_foreign_as_root(p, "the config file")?;
    }
    let in_file = |key: &str| match &file_path {
        Some(p) => format!("{key} in {}", p.display()),
        None => format!("--{key}"),
    };
    let mut probe = resolve_probe(sel, instance, &file)?;
    if let Some(m) = args.min_free {
        probe.min_free = m;
    }

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

    check_start_limits(&file, &in_file("start_limit_burst"))?;
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
    let reap_adopted_after = reap_adopted_after(args, &file, file_path.as_deref())?;
    let log = crate::log_file::resolve(args, &file, &in_file)?;
    Ok(RunSettings {
        probe,
        ready_timeout,
        stop_timeout,
        command,
        env,
        reap_adopted_after,
        log,
        node: args.node.clone().filter(|p| !p.as_os_str().is_empty()),
    })
}

/// `--reap-adopted-after` or `reap_adopted_after`: at least 1 s.
fn reap_adopted_after(
    args: &crate::cli::RunArgs,
    file: &FileConfig,
    file_path: Option<&std::path::Path>,
) -> Result<Option<Duration>> {
    let d = args.reap_adopted_after.or(file.reap_adopted_after);
    if d.is_some_and(|d| d < Duration::from_secs(1)) {
        let from = match (&args.reap_adopted_after, file_path) {
            (None, Some(p)) => format!("reap_adopted_after in {}", p.display()),
            _ => "--reap-adopted-after".to_string(),
        };
        return Err(Error::config(format!(
            "{from} is below 1s: expected how long an adopted process may live, such as 30m or 2h"
        )));
    }
    Ok(d)
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
    fn file_config_min_free_and_reaping() {
        let c = parse_file_config("min_free = \"2GiB\"\nreap_adopted_after = \"30m\"\n").unwrap();
        assert_eq!(c.min_free, Some(2 << 30));
        assert_eq!(c.reap_adopted_after, Some(Duration::from_secs(1800)));
        assert_eq!(
            parse_file_config("min_free = 0\n").unwrap().min_free,
            Some(0)
        );
        let e = parse_file_config("min_free = \"lots\"\n").unwrap_err();
        assert!(e.contains("invalid size"), "{e}");
    }

    #[test]
    fn wildcard_binds_probe_loopback() {
        assert_eq!(probe_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(probe_host("::"), "[::1]");
        assert_eq!(probe_host("::1"), "[::1]");
        assert_eq!(probe_host("10.1.2.3"), "10.1.2.3");
    }

    #[test]
    fn localhost_names_both_loopbacks() {
        for host in ["localhost", "LocalHost.", "app.localhost"] {
            let url = parse_base_url(&format!("http://{host}:3100")).unwrap();
            let addrs = connect_addrs(&url, 3100).unwrap();
            for a in ["127.0.0.1:3100", "[::1]:3100"] {
                assert!(addrs.contains(&a.parse().unwrap()), "{host}: {addrs:?}");
            }
        }
        let url = parse_base_url("http://127.0.0.1:3100").unwrap();
        assert_eq!(connect_addrs(&url, 3100).unwrap().len(), 1);
        assert_eq!(probe_host("localhost"), "localhost");
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
