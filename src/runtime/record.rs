//! The runtime a terminal `run` resolved, recorded in the instance's own
//! state (`<instance root>/paperclipd-runtime.json`), so that a `run`
//! under a service manager with no pin (the packaged unit, no `paperclipd
//! install`) finds the nvm, fnm or Volta Node.js the user's shell found.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::Runtime;
use crate::error::Result;
use crate::instance::Instance;
use crate::owned_file;

const FILE_NAME: &str = "paperclipd-runtime.json";

/// What a terminal run found and ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// paperclipd's ownership marker (this file is replaced, never a stranger's).
    pub written_by: String,
    pub shim: PathBuf,
    pub node: PathBuf,
    pub version: String,
    /// RFC 3339, UTC.
    pub recorded_at: String,
}

impl Recorded {
    /// Why this runtime is used, for the log and `status`.
    pub fn reason(&self) -> String {
        format!(
            "recorded by the run at {} in a terminal ({})",
            self.recorded_at,
            path_hint()
        )
    }
}

fn path_hint() -> &'static str {
    "no pin in the unit; pin one with `paperclipd install`"
}

pub fn path(instance: &Instance) -> PathBuf {
    instance.root().join(FILE_NAME)
}

/// The record, when there is one that still names existing files.
pub fn load(instance: &Instance) -> Option<Recorded> {
    // Never blocks on a FIFO planted in its place.
    let text = crate::regular_file::read_to_string(&path(instance)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Records `rt` (already resolved and checked) when it is worth it: a
/// Node.js that is found, at paths that survive a reboot. Returns whether
/// it wrote.
pub fn save(instance: &Instance, rt: &Runtime) -> Result<bool> {
    let (Some(node), Some(version)) = (rt.node_path(), rt.version()) else {
        return Ok(false);
    };
    let (node, shim) = (super::pin::stable(node), super::pin::stable(&rt.shim));
    if [&node, &shim]
        .iter()
        .any(|p| super::pin::volatile_root(p).is_some())
    {
        return Ok(false);
    }
    let previous = load(instance);
    if previous
        .as_ref()
        .is_some_and(|r| r.node == node && r.shim == shim && r.version == version.to_string())
    {
        return Ok(false);
    }
    let rec = Recorded {
        written_by: owned_file::MARKER.to_string(),
        shim,
        node,
        version: version.to_string(),
        recorded_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    };
    let text = serde_json::to_string_pretty(&rec)
        .map_err(|e| crate::error::Error::os(format!("cannot encode the runtime record: {e}")))?;
    owned_file::write(&path(instance), &(text + "\n"))
}

/// Whether both recorded files still exist.
pub fn usable(rec: &Recorded) -> bool {
    Path::new(&rec.node).exists() && Path::new(&rec.shim).exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::InstanceId;

    #[test]
    fn a_record_round_trips_and_is_ours() {
        // Not /tmp: a runtime there is volatile and never recorded.
        let d = tempfile::tempdir_in("/var/tmp").unwrap();
        let inst = Instance::new(InstanceId::parse("r").unwrap(), d.path().to_path_buf());
        let bin = d.path().join("nvm/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let node = bin.join("node");
        std::fs::write(&node, "#!/bin/sh\necho v24.11.1\n").unwrap();
        std::fs::set_permissions(&node, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let shim = bin.join("paperclipai");
        std::fs::write(&shim, "#!/usr/bin/env node\n").unwrap();
        std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let rt = super::super::resolve(&shim, Some(bin.as_os_str()), None);
        assert!(save(&inst, &rt).unwrap());
        let rec = load(&inst).unwrap();
        assert_eq!(rec.node, node.canonicalize().unwrap());
        assert_eq!(rec.version, "v24.11.1");
        assert!(usable(&rec));
        assert!(rec.reason().contains("recorded by the run at"));
        // The same runtime again: unchanged.
        assert!(!save(&inst, &rt).unwrap());
    }
}
