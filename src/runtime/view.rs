//! What `status` reads back from a service's pinned runtime (its unit or
//! plist, else the terminal run's record, else its PATH) and compares with
//! the shell's.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::pin::{NODE_VAR, PREPEND_VAR, SHIM_VAR, SYSTEM_MANAGER_PATH, join_dirs, own_command};
use super::{Choice, Node, Requirement, Runtime, resolve, resolve_here, same_file};
use crate::error::{Error, Result};
use crate::instance::Instance;
use crate::paperclip;

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
    /// Where the service's runtime comes from: pinned by `install`,
    /// recorded by a terminal run, or the service's PATH.
    pub source: Option<String>,
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
            source: None,
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
            source: None,
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
    status_view_with(instance, system, service_environment(instance, system))
}

/// [`status_view`] for a service environment read already (the unit's or
/// the LaunchAgent's), so both are tested on Linux.
pub fn status_view_with(
    instance: &Instance,
    system: bool,
    service_env: Option<(PathBuf, Vec<(String, String)>)>,
) -> Option<View> {
    if own_command(instance).ok().flatten().is_some() {
        return None;
    }
    let node_flag = std::env::var_os(NODE_VAR).filter(|v| !v.is_empty());
    let shell = paperclip::default_program()
        .map(|shim| resolve_here(&shim, node_flag.as_deref().map(Path::new)));
    let service = service_env
        .as_ref()
        .map(|(file, env)| service_runtime(instance, system, file, env));
    let mut warnings = Vec::new();
    if let (Some((Ok(svc), _)), Ok(sh)) = (&service, &shell) {
        warnings.extend(compare(svc, sh));
    }
    if let Some((Ok(svc), _)) = &service {
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
        service: service.map(|(r, source)| {
            let mut side = r.map_or_else(Side::failed, |rt| Side::of(&rt));
            side.source = Some(source);
            side
        }),
        shell: shell.map_or_else(Side::failed, |rt| Side::of(&rt)),
        warnings,
    })
}

/// The service's runtime as its `run` will resolve it, and why: the pin
/// in its unit or plist, else the terminal run's record, else its PATH
/// (the pinned directories first, then the manager's).
fn service_runtime(
    instance: &Instance,
    system: bool,
    file: &Path,
    env: &[(String, String)],
) -> (Result<Runtime>, String) {
    let var = |k: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let base = var("PATH").unwrap_or_else(|| manager_path(system).to_string());
    let path = match var(PREPEND_VAR) {
        Some(pre) => join_dirs(pre.split(':').map(str::to_string).collect(), &base),
        None => base,
    };
    let recorded = var(NODE_VAR)
        .is_none()
        .then(|| super::record::load(instance))
        .flatten()
        .filter(super::record::usable);
    let source = match (&var(NODE_VAR), &recorded) {
        (Some(_), _) => format!("pinned in {}", file.display()),
        (None, Some(rec)) => rec.reason(),
        (None, None) => format!("the first `node` in the service's PATH={path}"),
    };
    let home = std::env::var_os("HOME");
    let shim_var = var(SHIM_VAR)
        .map(PathBuf::from)
        .or_else(|| recorded.as_ref().map(|r| r.shim.clone()));
    let home_var = var("HOME");
    let shim_env = paperclip::ShimEnv {
        shim_path: shim_var.as_deref().map(Path::as_os_str),
        home: home_var.as_deref().map(OsStr::new).or(home.as_deref()),
        path: Some(OsStr::new(&path)),
    };
    let node = var(NODE_VAR)
        .map(PathBuf::from)
        .or_else(|| recorded.as_ref().map(|r| r.node.clone()));
    let rt = paperclip::find_program(&shim_env)
        .map(|shim| resolve(&shim, Some(OsStr::new(&path)), node.as_deref()));
    (rt, source)
}

/// What the manager itself puts on a service's PATH (before the unit's
/// prepend), as far as it can be known from here.
fn manager_path(system: bool) -> &'static str {
    if system {
        SYSTEM_MANAGER_PATH
    } else {
        "/usr/local/bin:/usr/bin:/bin"
    }
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

/// The service's environment as its unit file and drop-ins set it, and
/// the unit file.
#[cfg(not(target_os = "macos"))]
fn service_environment(
    instance: &Instance,
    system: bool,
) -> Option<(PathBuf, Vec<(String, String)>)> {
    use crate::systemd::{Scope, unit};
    let home = std::env::var("HOME").unwrap_or_default();
    unit::instance_environment(Scope::from_system_flag(system), &instance.id, &home)
}

/// The service's environment as its LaunchAgent sets it, and the file.
#[cfg(target_os = "macos")]
fn service_environment(
    instance: &Instance,
    _system: bool,
) -> Option<(PathBuf, Vec<(String, String)>)> {
    let home = PathBuf::from(std::env::var_os("HOME")?);
    crate::launchd::plist::service_environment(&home, instance)
}
