//! The runtime inside a service: what `install` pins in a unit or plist
//! (PATH with the node's and the shim's directories first,
//! `PAPERCLIP_SHIM_PATH`, `PAPERCLIP_NODE`), and what `status` reads back
//! and compares with the shell's.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Choice, Context, Node, Requirement, Runtime, resolve, resolve_here, same_file};
use crate::cli::Selection;
use crate::error::{Error, Result};
use crate::instance::Instance;
use crate::{config, log, paperclip};

/// The variable that carries the chosen node (also `--node`'s env).
pub const NODE_VAR: &str = "PAPERCLIP_NODE";
const SHIM_VAR: &str = "PAPERCLIP_SHIM_PATH";

/// The `command` an instance's `paperclipd.toml` sets instead of Paperclip's.
fn own_command(instance: &Instance) -> Result<Option<PathBuf>> {
    let (file, path) = config::load_file_config(&Selection::default(), instance)?;
    Ok(file.command.and(path))
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

/// The variables that make a service reach `rt`: `PATH` (the node's
/// directory, the shim's, then `rest`), the shim, and the node.
pub fn environment(rt: &Runtime, rest: &str) -> Vec<(&'static str, String)> {
    let mut dirs: Vec<String> = Vec::new();
    let firsts = [rt.node_path(), Some(rt.shim.as_path())];
    for dir in firsts.into_iter().flatten().filter_map(Path::parent) {
        dirs.push(dir.to_string_lossy().into_owned());
    }
    dirs.extend(rest.split(':').map(str::to_string));
    let mut path: Vec<String> = Vec::new();
    for d in dirs {
        if !d.is_empty() && !path.contains(&d) {
            path.push(d);
        }
    }
    let mut env = vec![
        ("PATH", path.join(":")),
        (SHIM_VAR, rt.shim.to_string_lossy().into_owned()),
    ];
    if let Some(node) = rt.node_path() {
        env.push((NODE_VAR, node.to_string_lossy().into_owned()));
    }
    env
}

/// Directories the system unit cannot see (`ProtectHome=yes`).
#[cfg_attr(target_os = "macos", allow(dead_code))]
const HIDDEN_FROM_SYSTEM_UNIT: [&str; 3] = ["/home", "/root", "/run/user"];

/// `install`'s runtime variables for a systemd unit.
#[cfg_attr(target_os = "macos", allow(dead_code))]
pub fn systemd_environment(
    scope: crate::systemd::Scope,
    instance: &Instance,
    node: Option<&Path>,
) -> Result<Vec<(&'static str, String)>> {
    use crate::systemd::{Scope, unit};
    let Some(rt) = for_install(instance, node)? else {
        return Ok(Vec::new());
    };
    if scope == Scope::System {
        let pinned = [Some(rt.shim.as_path()), rt.node_path()];
        for p in pinned.into_iter().flatten() {
            let real = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
            if let Some(hidden) = HIDDEN_FROM_SYSTEM_UNIT
                .iter()
                .find(|h| p.starts_with(h) || real.starts_with(h))
            {
                return Err(Error::config(format!(
                    "the system unit cannot run {}: it is under {hidden}, which the unit hides (ProtectHome=yes) from its user `paperclip`. \
                     Install Node.js and paperclipai outside home directories (e.g. under /usr/local or /opt) and pass --node, \
                     or use the user unit (without --system)",
                    p.display()
                )));
            }
        }
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let rest = unit::environment(unit::template(scope), &home)
        .into_iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v)
        .unwrap_or_default();
    Ok(environment(&rt, &rest))
}

/// `install`'s runtime variables for a LaunchAgent.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
pub fn launchd_environment(
    home: &Path,
    instance: &Instance,
    node: Option<&Path>,
) -> Result<Vec<(&'static str, String)>> {
    Ok(match for_install(instance, node)? {
        Some(rt) => environment(&rt, &crate::launchd::plist::default_path(home)),
        None => Vec::new(),
    })
}

/// One side of the comparison `status` shows.
#[derive(Debug, Serialize)]
pub struct Side {
    pub shim: Option<String>,
    pub node: Option<String>,
    pub version: Option<String>,
    pub chosen_by: Option<Choice>,
    /// `engines.node` of the installed package.
    pub required: Option<String>,
    /// Why this runtime will not run Paperclip.
    pub problem: Option<String>,
}

impl Side {
    fn of(rt: &Runtime) -> Side {
        Side {
            shim: Some(rt.shim.display().to_string()),
            node: rt.node_path().map(|p| p.display().to_string()),
            version: rt.version().map(ToString::to_string),
            chosen_by: match &rt.node {
                Node::Found { choice, .. } | Node::Missing { choice, .. } => Some(*choice),
                Node::Unknown(_) => None,
            },
            required: match &rt.required {
                Requirement::Range { raw, .. } => Some(raw.clone()),
                Requirement::Unknown(_) => None,
            },
            problem: rt.problem(),
        }
    }

    fn failed(e: Error) -> Side {
        Side {
            shim: None,
            node: None,
            version: None,
            chosen_by: None,
            required: None,
            problem: Some(e.message),
        }
    }
}

/// `status`'s runtime section: the service's and the shell's, and warnings.
#[derive(Debug, Serialize)]
pub struct View {
    /// The unit file or plist the service's runtime was read from.
    pub service_file: Option<String>,
    pub service: Option<Side>,
    pub shell: Side,
    pub warnings: Vec<String>,
}

/// The service's runtime (from its unit or plist) next to this shell's.
/// `None` when the instance runs its own command.
pub fn status_view(instance: &Instance, system: bool) -> Option<View> {
    if own_command(instance).ok().flatten().is_some() {
        return None;
    }
    let node_flag = std::env::var_os(NODE_VAR).filter(|v| !v.is_empty());
    let shell = paperclip::default_program()
        .map(|shim| resolve_here(&shim, node_flag.as_deref().map(Path::new)));
    let service_env = service_environment(instance, system);
    let service = service_env.as_ref().map(|(_, env)| {
        let var = |k: &str| {
            env.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| OsStr::new(v.as_str()))
        };
        let home = std::env::var_os("HOME");
        let shim_env = paperclip::ShimEnv {
            shim_path: var(SHIM_VAR),
            home: var("HOME").or(home.as_deref()),
            path: var("PATH"),
        };
        paperclip::find_program(&shim_env)
            .map(|shim| resolve(&shim, var("PATH"), var(NODE_VAR).map(Path::new)))
    });
    let mut warnings = Vec::new();
    if let (Some(Ok(svc)), Ok(sh)) = (&service, &shell) {
        warnings.extend(compare(svc, sh));
    }
    if let Some(Ok(svc)) = &service {
        if let Some(p) = svc.problem() {
            let fix = if matches!(
                svc.node,
                Node::Missing {
                    choice: Choice::Explicit,
                    ..
                }
            ) {
                "the pinned runtime no longer exists; "
            } else {
                ""
            };
            warnings.push(format!(
                "{fix}the service will not start: {p}. Run `paperclipd install` again (from a shell whose `node` is the one to use, or with --node)"
            ));
        }
    }
    Some(View {
        service_file: service_env.map(|(f, _)| f.display().to_string()),
        service: service.map(|r| r.map_or_else(Side::failed, |rt| Side::of(&rt))),
        shell: shell.map_or_else(Side::failed, |rt| Side::of(&rt)),
        warnings,
    })
}

/// A warning when the service and the shell run different things.
fn compare(svc: &Runtime, sh: &Runtime) -> Option<String> {
    let differ = |a: Option<&Path>, b: Option<&Path>| match (a, b) {
        (Some(a), Some(b)) => !same_file(a, b),
        (a, b) => a.is_some() != b.is_some(),
    };
    let node_differs = differ(svc.node_path(), sh.node_path()) || svc.version() != sh.version();
    let shim_differs = differ(Some(&svc.shim), Some(&sh.shim));
    if !node_differs && !shim_differs {
        return None;
    }
    let show = |rt: &Runtime| {
        format!(
            "Node.js {} at {} with paperclipai {}",
            rt.version().map_or("?".to_string(), ToString::to_string),
            rt.node_path()
                .map_or("(none)".to_string(), |p| p.display().to_string()),
            rt.shim.display()
        )
    };
    Some(format!(
        "the service runs {}, but your shell runs {}; to give the service your shell's, run `paperclipd install` again",
        show(svc),
        show(sh)
    ))
}

/// The service's environment as its unit file sets it, and the file.
#[cfg(not(target_os = "macos"))]
fn service_environment(
    _instance: &Instance,
    system: bool,
) -> Option<(PathBuf, Vec<(String, String)>)> {
    use crate::systemd::{Scope, TEMPLATE_NAME, unit};
    let scope = Scope::from_system_flag(system);
    let packaged = match scope {
        Scope::User => "/usr/lib/systemd/user",
        Scope::System => "/usr/lib/systemd/system",
    };
    let candidates = [unit::unit_dir(scope).ok(), Some(PathBuf::from(packaged))];
    let home = std::env::var("HOME").unwrap_or_default();
    candidates.into_iter().flatten().find_map(|dir| {
        let file = dir.join(TEMPLATE_NAME);
        let text = crate::regular_file::read_to_string(&file).ok()?;
        Some((file, unit::environment(&text, &home)))
    })
}

/// The service's environment as its LaunchAgent sets it, and the file.
#[cfg(target_os = "macos")]
fn service_environment(
    instance: &Instance,
    _system: bool,
) -> Option<(PathBuf, Vec<(String, String)>)> {
    let home = PathBuf::from(std::env::var_os("HOME")?);
    let file = crate::launchd::plist_path(&home, &instance.id);
    let text = crate::regular_file::read_to_string(&file).ok()?;
    Some((file, crate::launchd::plist::environment(&text)))
}
