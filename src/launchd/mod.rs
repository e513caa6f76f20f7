//! launchd (macOS): the instance as a LaunchAgent.
//!
//! * [`plist`] — the embedded plist template and its rendering;
//! * [`launchctl`] — the `launchctl` calls over a runner trait;
//! * [`print`] — what `launchctl print` says, read defensively;
//! * [`commands`] — install, uninstall, start, stop, restart, logs;
//! * [`guard`] — `run`'s crash-loop guard and pause under launchd;
//! * [`early_errors`] — the job's `StandardErrorPath`, kept small.
//!
//! Everything but the real `launchctl` runner and the dispatch is portable,
//! so it is compiled and tested on Linux.

pub mod commands;
pub mod early_errors;
pub mod guard;
pub mod launchctl;
pub mod plist;
pub mod print;
#[cfg(test)]
pub(crate) mod standin;
pub mod upstream;

use std::path::{Path, PathBuf};

use crate::instance::InstanceId;

/// Every label of ours starts so.
pub const LABEL_PREFIX: &str = "ai.paperclip.paperclipd.";

/// The launchd label of an instance.
pub fn label(id: &InstanceId) -> String {
    format!("{LABEL_PREFIX}{id}")
}

/// The launchd job running us, when launchd runs one of our jobs:
/// `$XPC_SERVICE_NAME` is launchd's job label. A shell in an app that
/// launchd started has another name there, and interactive shells have
/// `0` (notes/upstream.md, B).
pub fn our_job() -> Option<String> {
    std::env::var("XPC_SERVICE_NAME")
        .ok()
        .filter(|n| n.starts_with(LABEL_PREFIX))
}

/// Does launchd run `instance`'s own job (not another instance's)?
pub fn runs_job_of(instance: &crate::instance::Instance) -> bool {
    our_job().is_some_and(|job| job == label(&instance.id))
}

/// The job's log file (`run --log-file`): the server's output and
/// paperclipd's lines, rotated by paperclipd; `paperclipd logs` reads it.
pub fn log_file(instance: &crate::instance::Instance) -> PathBuf {
    instance.log_dir().join("paperclipd.log")
}

/// `~/Library/LaunchAgents/<label>.plist`.
pub fn plist_path(home: &Path, id: &InstanceId) -> PathBuf {
    home.join("Library/LaunchAgents")
        .join(format!("{}.plist", label(id)))
}

/// The launchd domains to try, in order: the GUI session, then the
/// background user domain (e.g. over SSH, where there is no GUI session).
pub fn domains(uid: u32) -> [String; 2] {
    [format!("gui/{uid}"), format!("user/{uid}")]
}
