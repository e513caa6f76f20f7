//! The runtime inside a service: what `install` pins in a unit or plist
//! (PATH with the node's and the shim's directories first,
//! `PAPERCLIP_SHIM_PATH`, `PAPERCLIP_NODE`); [`super::view`] reads it back
//! for `status`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::{Context, Runtime, resolve, resolve_here};
use crate::cli::Selection;
use crate::error::{Error, Result};
use crate::instance::Instance;
use crate::{config, log, paperclip};

/// The variable that carries the chosen node (also `--node`'s env).
pub const NODE_VAR: &str = "PAPERCLIP_NODE";
pub(super) const SHIM_VAR: &str = "PAPERCLIP_SHIM_PATH";
/// Directories `run` puts before the PATH it inherits (a unit's drop-in
/// sets it, so that the manager's own PATH, with `/snap/bin`,
/// `~/.cargo/bin` and the like, still reaches the agents).
pub const PREPEND_VAR: &str = "PAPERCLIPD_PATH_PREPEND";

/// The `command` an instance's `paperclipd.toml` sets instead of Paperclip's.
pub(super) fn own_command(instance: &Instance) -> Result<Option<PathBuf>> {
    let (file, path) = config::load_file_config(&Selection::default(), instance)?;
    Ok(file.command.and(path))
}

/// `p` with the symlinks of its directory resolved, the file name kept:
/// fnm's per-shell `$XDG_RUNTIME_DIR/fnm_multishells/<pid>_<ts>/bin/node`
/// becomes its version's `…/fnm/node-versions/<v>/installation/bin/node`,
/// while `/usr/bin/node` stays itself (an alternatives link is meant to move).
pub fn stable(p: &Path) -> PathBuf {
    match (p.parent(), p.file_name()) {
        (Some(dir), Some(name)) if !dir.as_os_str().is_empty() => dir
            .canonicalize()
            .map(|d| d.join(name))
            .unwrap_or_else(|_| p.to_path_buf()),
        _ => p.to_path_buf(),
    }
}

/// Directories emptied at reboot or logout, where nothing may be pinned:
/// `/run` (with `/run/user`), `$XDG_RUNTIME_DIR`, `/tmp`, `/dev/shm`.
pub fn volatile_root(p: &Path) -> Option<PathBuf> {
    let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let fixed = ["/run", "/tmp", "/dev/shm"].map(PathBuf::from);
    let real = p.canonicalize().ok();
    runtime_dir
        .into_iter()
        .chain(fixed)
        .find(|root| p.starts_with(root) || real.as_ref().is_some_and(|r| r.starts_with(root)))
}

/// A Node.js version manager's directory layout: the manager, the
/// components before the version.
const VERSION_MANAGERS: &[(&str, &[&str])] = &[
    ("nvm", &[".nvm", "versions", "node"]),
    ("fnm", &["fnm", "node-versions"]),
    ("Volta", &[".volta", "tools", "image", "node"]),
    ("asdf", &[".asdf", "installs", "nodejs"]),
    ("mise", &["mise", "installs", "node"]),
    ("mise", &["mise", "installs", "nodejs"]),
    ("n", &["n", "versions", "node"]),
    ("nodenv", &[".nodenv", "versions"]),
    ("nvs", &[".nvs", "node"]),
];

/// The version manager and version `p` belongs to, if it is one of a
/// version manager's versioned directories.
pub fn version_manager(p: &Path) -> Option<(&'static str, String)> {
    let parts: Vec<String> = p
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    VERSION_MANAGERS.iter().find_map(|(name, pattern)| {
        parts
            .windows(pattern.len() + 1)
            .find(|w| {
                w[..pattern.len()]
                    .iter()
                    .zip(pattern.iter())
                    .all(|(a, b)| a == b)
            })
            .map(|w| (*name, w[pattern.len()].clone()))
    })
}

/// What `install` pins: the shim and the node at paths that survive a
/// reboot, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub shim: PathBuf,
    pub node: Option<PathBuf>,
}

impl Pin {
    /// The node's directory, then the shim's: what goes first on PATH.
    pub fn dirs(&self) -> Vec<String> {
        let mut dirs: Vec<String> = Vec::new();
        for dir in [self.node.as_deref(), Some(self.shim.as_path())]
            .into_iter()
            .flatten()
            .filter_map(Path::parent)
        {
            let d = dir.to_string_lossy().into_owned();
            if !d.is_empty() && !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        dirs
    }

    fn vars(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![(SHIM_VAR, self.shim.to_string_lossy().into_owned())];
        if let Some(node) = &self.node {
            env.push((NODE_VAR, node.to_string_lossy().into_owned()));
        }
        env
    }

    /// A unit's variables: the shim, the node, and the directories `run`
    /// puts before the manager's PATH (then `default_prepend`, the
    /// template's own).
    pub fn unit_environment(&self, default_prepend: &str) -> Vec<(&'static str, String)> {
        let mut env = self.vars();
        env.push((PREPEND_VAR, join_dirs(self.dirs(), default_prepend)));
        env
    }

    /// A plist's variables: launchd has no PATH of its own to keep, so
    /// PATH is the pinned directories, then `rest`.
    pub fn path_environment(&self, rest: &str) -> Vec<(&'static str, String)> {
        let mut env = vec![("PATH", join_dirs(self.dirs(), rest))];
        env.extend(self.vars());
        env
    }
}

/// `first`, then the directories of the PATH-like `rest`, each once.
pub fn join_dirs(first: Vec<String>, rest: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for d in first.into_iter().chain(rest.split(':').map(str::to_string)) {
        if !d.is_empty() && !out.contains(&d) {
            out.push(d);
        }
    }
    out.join(":")
}

/// The command that pins again (`--node …` follows), for messages.
fn repin_command(instance: &Instance, system: bool) -> String {
    let mut cmd = String::new();
    if system {
        cmd.push_str(" --system");
    }
    if instance.id.as_str() != "default" {
        cmd.push_str(&format!(" -i {}", instance.id));
    }
    if std::env::var_os("PAPERCLIP_HOME").is_some() {
        cmd.push_str(&format!(" --home {}", instance.home.display()));
    }
    cmd
}

/// Turns the runtime `install` found into what it pins: directories
/// resolved, nothing volatile (78 with the fix), and a warning when a
/// version manager's cleanup can remove it.
fn pin_of(rt: &Runtime, instance: &Instance, system: bool) -> Result<Pin> {
    let pin = Pin {
        shim: stable(&rt.shim),
        node: rt.node_path().map(stable),
    };
    let flags = repin_command(instance, system);
    for (found, pinned) in [
        (Some(rt.shim.as_path()), Some(&pin.shim)),
        (rt.node_path(), pin.node.as_ref()),
    ] {
        if let (Some(found), Some(pinned)) = (found, pinned) {
            if found != pinned {
                log::info(&format!(
                    "pinning {} (what {} resolves to; a directory that lives only as long as a shell or a session is never pinned)",
                    pinned.display(),
                    found.display()
                ));
            }
        }
    }
    for (what, p) in [
        ("paperclipai", Some(&pin.shim)),
        ("Node.js", pin.node.as_ref()),
    ] {
        let Some(p) = p else { continue };
        if let Some(root) = volatile_root(p) {
            let fix = if what == "Node.js" {
                format!(
                    "Choose one outside it: `paperclipd install --node /path/to/bin/node{flags}` (e.g. fnm's \
                     ~/.local/share/fnm/node-versions/<version>/installation/bin/node, nvm's \
                     ~/.nvm/versions/node/<version>/bin/node)"
                )
            } else {
                format!(
                    "Install paperclipai outside it (`npm install -g paperclipai` with a Node.js installed for good), \
                     or name one with `PAPERCLIP_SHIM_PATH=/path/to/paperclipai paperclipd install{flags}`"
                )
            };
            return Err(Error::config(format!(
                "the {what} this shell runs, {}, lives under {}, which is emptied at logout or reboot \
                 (a per-shell or temporary directory), so the service would fail at its next boot; \
                 expected a {what} installed for good. {fix}",
                p.display(),
                root.display()
            )));
        }
    }
    for p in [pin.node.as_ref(), Some(&pin.shim)].into_iter().flatten() {
        if let Some((manager, version)) = version_manager(p) {
            log::warn(&format!(
                "pinned {} from {manager}'s Node.js {version} (a version manager's directory): when {manager} \
                 removes that version (an uninstall, an upgrade, a cleanup) the service stops starting (exit 78). \
                 After switching versions, pin the new one: `paperclipd install --node \"$(command -v node)\"{flags}` from a shell \
                 where `node` is the one to use",
                p.display()
            ));
            break;
        }
    }
    Ok(pin)
}

/// For `install`: the runtime this shell would run (or the one chosen with
/// `--node`), checked: exit 78 when it is missing or too old. `None` when
/// the instance's config runs its own command.
pub fn for_install(instance: &Instance, node: Option<&Path>) -> Result<Option<Runtime>> {
    if let Some(file) = own_command(instance)? {
        log::info(&format!(
            "runtime: not pinned: {} sets its own `command`",
            file.display()
        ));
        return Ok(None);
    }
    let shim = paperclip::default_program()?;
    let rt = resolve_here(&shim, node);
    rt.check(Context::Install)?;
    log::info(&rt.describe());
    Ok(Some(rt))
}

/// The system manager's PATH for services (systemd's default), after the
/// system unit's own `PAPERCLIPD_PATH_PREPEND`.
#[cfg_attr(target_os = "macos", allow(dead_code))]
pub const SYSTEM_MANAGER_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// For `install --system`: the runtime as the unit's user `paperclip`
/// finds it (its home's `.local/bin/paperclipai`, the unit's PATH), not
/// as the caller's shell would; `PAPERCLIP_SHIM_PATH` and `--node` still
/// choose explicitly.
#[cfg_attr(target_os = "macos", allow(dead_code))]
pub fn for_system_install(
    instance: &Instance,
    node: Option<&Path>,
    service_home: &Path,
    service_path: &str,
) -> Result<Option<Runtime>> {
    if let Some(file) = own_command(instance)? {
        log::info(&format!(
            "runtime: not pinned: {} sets its own `command`",
            file.display()
        ));
        return Ok(None);
    }
    let shim_var = std::env::var_os(SHIM_VAR).filter(|v| !v.is_empty());
    let env = paperclip::ShimEnv {
        shim_path: shim_var.as_deref(),
        home: Some(service_home.as_os_str()),
        path: Some(OsStr::new(service_path)),
    };
    let shim = paperclip::find_program(&env).map_err(|e| {
        if e.kind != crate::error::Kind::NotFound {
            return e;
        }
        Error::new(
            crate::error::Kind::NotFound,
            format!(
                "the system unit's user `{}` would find no `paperclipai`: not in {}/.local/bin/paperclipai \
                 nor in the unit's PATH={service_path} (paperclipd looks as that user, not as you). \
                 Install it for that user: `sudo -u {} -H npm install -g --prefix {}/.local paperclipai`, \
                 or name one it can reach with PAPERCLIP_SHIM_PATH=/path/to/paperclipai (and --node)",
                crate::systemd::reach::SYSTEM_USER,
                service_home.display(),
                crate::systemd::reach::SYSTEM_USER,
                service_home.display()
            ),
        )
    })?;
    let rt = resolve(&shim, Some(OsStr::new(service_path)), node);
    rt.check(Context::Install)?;
    log::info(&format!(
        "{} (as the unit's user would run it)",
        rt.describe()
    ));
    Ok(Some(rt))
}

/// Refuses a pinned path the system unit's user cannot reach or execute
/// under the unit's sandbox: the same rule as its `ExecStart=`.
#[cfg_attr(target_os = "macos", allow(dead_code))]
fn check_reachable_for_system_unit(pin: &Pin) -> Result<()> {
    use crate::systemd::reach;
    use std::os::unix::fs::MetadataExt;
    // No such user yet (a dry run before the package): judge as "others".
    let account = reach::lookup(reach::SYSTEM_USER)?.unwrap_or(reach::Account {
        uid: u32::MAX,
        groups: Vec::new(),
    });
    let meta = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.uid(), m.gid(), m.mode()))
    };
    for p in [Some(&pin.shim), pin.node.as_ref()].into_iter().flatten() {
        let real = p.canonicalize().unwrap_or_else(|_| p.clone());
        for candidate in [p, &real] {
            if let Some(why) = reach::unreachable_reason(candidate, &account, meta) {
                return Err(Error::config(format!(
                    "the system unit would run {} as User={}, but {why}{}; expected Node.js and paperclipai \
                     where that user can run them. Install them for that user (under /var/lib/paperclip/.local) \
                     or system-wide (/usr/local, /opt), and pass --node (and PAPERCLIP_SHIM_PATH) to `paperclipd install --system`",
                    p.display(),
                    reach::SYSTEM_USER,
                    if candidate == p {
                        String::new()
                    } else {
                        format!(" (it resolves to {})", candidate.display())
                    }
                )));
            }
        }
    }
    Ok(())
}

/// `install`'s runtime variables for one instance's systemd drop-in.
#[cfg_attr(target_os = "macos", allow(dead_code))]
pub fn systemd_environment(
    scope: crate::systemd::Scope,
    instance: &Instance,
    node: Option<&Path>,
) -> Result<Vec<(&'static str, String)>> {
    use crate::systemd::{SYSTEM_HOME, Scope};
    match scope {
        Scope::User => {
            let Some(rt) = for_install(instance, node)? else {
                return Ok(Vec::new());
            };
            let pin = pin_of(&rt, instance, false)?;
            let home = std::env::var("HOME").unwrap_or_default();
            Ok(pin.unit_environment(&format!("{home}/.local/bin")))
        }
        Scope::System => {
            let local_bin = format!("{SYSTEM_HOME}/.local/bin");
            let path = join_dirs(vec![local_bin.clone()], SYSTEM_MANAGER_PATH);
            let Some(rt) = for_system_install(instance, node, Path::new(SYSTEM_HOME), &path)?
            else {
                return Ok(Vec::new());
            };
            let pin = Pin {
                shim: stable(&rt.shim),
                node: rt.node_path().map(stable),
            };
            check_reachable_for_system_unit(&pin)?;
            let pin = pin_of(&rt, instance, true)?;
            Ok(pin.unit_environment(&local_bin))
        }
    }
}

/// `install`'s runtime variables for a LaunchAgent.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
pub fn launchd_environment(
    home: &Path,
    instance: &Instance,
    node: Option<&Path>,
) -> Result<Vec<(&'static str, String)>> {
    Ok(match for_install(instance, node)? {
        Some(rt) => pin_of(&rt, instance, false)?
            .path_environment(&crate::launchd::plist::default_path(home)),
        None => Vec::new(),
    })
}
