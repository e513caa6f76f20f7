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

mod exec;
mod file;
pub(crate) use file::de_size_by;
pub use file::{FileConfig, load_file_config, parse_file_config};

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
/// The start limit, the same under every manager: this many failed
/// starts within [`START_LIMIT_INTERVAL_SECS`] and the instance stays down.
/// The systemd units' `StartLimitBurst=`/`StartLimitIntervalSec=` are
/// rendered from these (`@START_LIMIT_BURST@`, `@START_LIMIT_INTERVAL@`),
/// and launchd's crash-loop guard (`launchd::guard`) counts with them.
pub const START_LIMIT_BURST: u32 = 5;
pub const START_LIMIT_INTERVAL_SECS: u64 = 300;
pub const START_LIMIT_INTERVAL: Duration = Duration::from_secs(START_LIMIT_INTERVAL_SECS);
/// Longest timeouts we accept: beyond these a typo is likelier than intent.
const MAX_READY_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
const MAX_STOP_TIMEOUT: Duration = Duration::from_secs(3600);
/// `reap_adopted_after`: from 1 s to a year.
const REAP_ADOPTED_AFTER_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(365 * 24 * 3600);
/// `min_free`: 0 (off) to 1 EiB, more than any filesystem holds.
pub const MAX_MIN_FREE: u64 = 1 << 60;
/// `start_limit_burst`: failed runs before launchd's guard pauses.
const START_LIMIT_BURST_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;

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
    /// `--onboard-bind`: a new instance is onboarded without questions.
    pub onboard_bind: Option<crate::cli::OnboardBind>,
}

pub fn resolve_instance(target: &Target) -> Result<Instance> {
    let id = InstanceId::parse(&target.instance)?;
    let home = resolve_home(target.home.as_deref())?;
    Ok(Instance::new(id, home))
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
    let join = |p: &str, what: &str| {
        let joined = url.join(p).map_err(|e| {
            Error::config(format!(
                "cannot build the probe URL from {url} and {p:?}: {e}"
            ))
        })?;
        // `//host/x` (and `/\host/x`) is a URL of another host, not a path.
        if joined.origin() != url.origin() {
            return Err(Error::config(format!(
                "invalid {what} path {p:?}: it leads to another host ({joined}); expected a path on \
                 {url} such as /api/health (start it with a single /)"
            )));
        }
        Ok(joined)
    };
    let api_url = join(&api_path, "API probe")?;
    let ui_url = join(&ui_path, "UI probe")?;
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
    let (file, path) = load_file_config(&Selection::default(), instance)?;
    let stop_timeout = file.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT);
    check_stop_timeout(stop_timeout, &from_file("stop_timeout", path.as_deref()))?;
    Ok(stop_timeout)
}

/// `KEY in FILE`, for messages about a key of the config file.
fn from_file(key: &str, path: Option<&std::path::Path>) -> String {
    match path {
        Some(p) => format!("{key} in {}", crate::untrusted::path(p)),
        None => key.to_string(),
    }
}

fn check_stop_timeout(stop_timeout: Duration, from: &str) -> Result<()> {
    if stop_timeout > MAX_STOP_TIMEOUT {
        return Err(Error::config(format!(
            "{from} is {}, out of range: expected at most 1h",
            humantime::format_duration(stop_timeout)
        )));
    }
    Ok(())
}

/// The instance's ready timeout as its `run` will see it (its
/// `paperclipd.toml`, else the default), for how long a start job may take.
pub fn instance_ready_timeout(instance: &Instance) -> Result<Duration> {
    let (file, _) = load_file_config(&Selection::default(), instance)?;
    Ok(file.ready_timeout.unwrap_or(DEFAULT_READY_TIMEOUT))
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
    let burst_bad = file
        .start_limit_burst
        .is_some_and(|b| !START_LIMIT_BURST_RANGE.contains(&b));
    if burst_bad || interval_bad {
        return Err(Error::config(format!(
            "{where_} / start_limit_interval is out of range: expected a burst of {} to {} and an \
             interval above 0 and at most 24h (defaults: 5 in 60s)",
            START_LIMIT_BURST_RANGE.start(),
            START_LIMIT_BURST_RANGE.end()
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
    check_min_free(args, &mut probe, &in_file)?;
    let (ready_timeout, stop_timeout) = run_timeouts(args, &file, &in_file)?;
    check_start_limits(&file, &in_file("start_limit_burst"))?;
    let command = exec::command(args, &file, &in_file)?;
    let env = exec::environment(&file, &in_file)?;
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
        onboard_bind: args.onboard_bind,
    })
}

/// `--min-free` over the file's `min_free`, within [`MAX_MIN_FREE`].
fn check_min_free(
    args: &crate::cli::RunArgs,
    probe: &mut ProbeSettings,
    in_file: &dyn Fn(&str) -> String,
) -> Result<()> {
    if let Some(m) = args.min_free {
        probe.min_free = m;
    }
    if probe.min_free > MAX_MIN_FREE {
        let from = match args.min_free {
            Some(_) => "--min-free".to_string(),
            None => in_file("min_free"),
        };
        return Err(Error::config(format!(
            "{from} is {} bytes, out of range: expected 0 (no check) to 1EiB, e.g. 1GiB",
            probe.min_free
        )));
    }
    Ok(())
}

/// `run`'s ready and stop timeouts: flags over the file over the
/// defaults, each within its bounds.
fn run_timeouts(
    args: &crate::cli::RunArgs,
    file: &FileConfig,
    in_file: &dyn Fn(&str) -> String,
) -> Result<(Duration, Duration)> {
    let ready_timeout = args
        .ready_timeout
        .or(file.ready_timeout)
        .unwrap_or(DEFAULT_READY_TIMEOUT);
    if ready_timeout.is_zero() || ready_timeout > MAX_READY_TIMEOUT {
        let from = match args.ready_timeout {
            Some(_) => "--ready-timeout".to_string(),
            None => in_file("ready_timeout"),
        };
        return Err(Error::config(format!(
            "ready timeout ({from}) {} is out of range: expected more than 0 and at most 24h",
            humantime::format_duration(ready_timeout)
        )));
    }
    let stop_timeout = args
        .stop_timeout
        .or(file.stop_timeout)
        .unwrap_or(DEFAULT_STOP_TIMEOUT);
    let from = match args.stop_timeout {
        Some(_) => "stop timeout (--stop-timeout)".to_string(),
        None => format!("stop timeout ({})", in_file("stop_timeout")),
    };
    check_stop_timeout(stop_timeout, &from)?;
    Ok((ready_timeout, stop_timeout))
}

/// `--reap-adopted-after` or `reap_adopted_after`: 1 s to a year.
fn reap_adopted_after(
    args: &crate::cli::RunArgs,
    file: &FileConfig,
    file_path: Option<&std::path::Path>,
) -> Result<Option<Duration>> {
    let d = args.reap_adopted_after.or(file.reap_adopted_after);
    if let Some(d) = d.filter(|d| !REAP_ADOPTED_AFTER_RANGE.contains(d)) {
        let from = match (&args.reap_adopted_after, file_path) {
            (None, Some(p)) => format!("reap_adopted_after in {}", p.display()),
            _ => "--reap-adopted-after".to_string(),
        };
        return Err(Error::config(format!(
            "{from} is {}, out of range: expected 1s to 365d, how long an adopted process may \
             live, such as 30m or 2h",
            humantime::format_duration(d)
        )));
    }
    Ok(d)
}

#[cfg(test)]
mod tests;
