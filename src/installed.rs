//! Whether what runs is still what is installed: what `run` started from
//! (paperclipd's own file, Paperclip's package and Node.js), recorded in
//! the lock record, compared by `status` with the files now, so that an
//! upgrade under a running instance, and a start that would now fail, are
//! said before the next restart.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::lock::Record;
use crate::runtime::{self, Choice, Node, Runtime};

/// A file as it was: its path and which inode that path named.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileId {
    pub path: String,
    pub dev: u64,
    pub ino: u64,
}

/// What the server was started from (Paperclip's default command only).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerOrigin {
    /// The `paperclipai` shim.
    pub shim: String,
    /// Its package.json, and the version it said at the start.
    pub package: Option<String>,
    pub package_version: Option<String>,
    /// The Node.js that runs it, its version then, and how it was chosen.
    pub node: Option<String>,
    pub node_version: Option<String>,
    pub node_choice: Option<Choice>,
}

/// This process's executable: the inode that runs (Linux:
/// `/proc/self/exe`, which still names it after a rename over its path)
/// and the path it was started from.
pub fn this_exe() -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    let path = std::env::current_exe().ok()?;
    #[cfg(target_os = "linux")]
    let meta = std::fs::metadata("/proc/self/exe").ok()?;
    #[cfg(not(target_os = "linux"))]
    let meta = std::fs::metadata(&path).ok()?;
    let path = path.to_string_lossy();
    Some(FileId {
        path: path.strip_suffix(" (deleted)").unwrap_or(&path).to_string(),
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// The `version` of a package.json.
fn package_version(package: &Path) -> Option<String> {
    let text = std::fs::read_to_string(package).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("version")?.as_str().map(str::to_string)
}

impl ServerOrigin {
    /// From the runtime `run` checked before it started the server.
    pub fn of(rt: &Runtime) -> ServerOrigin {
        let package = match crate::paperclip::engines(&rt.shim) {
            crate::paperclip::Engines::Node { package, .. }
            | crate::paperclip::Engines::Undeclared(package)
            | crate::paperclip::Engines::Unreadable(package, _) => Some(package),
            crate::paperclip::Engines::NoPackage => None,
        };
        ServerOrigin {
            shim: rt.shim.display().to_string(),
            package_version: package.as_deref().and_then(package_version),
            package: package.map(|p| p.display().to_string()),
            node: rt.node_path().map(|p| p.display().to_string()),
            node_version: rt.version().map(ToString::to_string),
            node_choice: match &rt.node {
                Node::Found { choice, .. } | Node::Missing { choice, .. } => Some(*choice),
                Node::Unknown(_) => None,
            },
        }
    }
}

/// paperclipd's file now, next to the one that runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExeState {
    /// The path still names the running file.
    Current,
    /// Another file is at the path now (an upgrade renamed one over it).
    Replaced,
    /// Nothing is at the path now.
    Removed,
}

#[derive(Debug, Serialize)]
pub struct ExeView {
    pub path: String,
    pub state: ExeState,
}

/// `status`'s `upgrade` section.
#[derive(Debug, Default, Serialize)]
pub struct View {
    /// The running paperclipd's file (absent with no holder, or a record
    /// from an older version).
    pub paperclipd: Option<ExeView>,
    /// What the server was started from.
    pub server: Option<ServerOrigin>,
    /// An upgrade under the running instance, or a next start that would
    /// fail, in words; empty when all is current.
    pub warnings: Vec<String>,
}

/// Compares the holder's record with the files now. `known` are warnings
/// already given (the runtime section's): one about the same node is not
/// repeated.
pub fn view(record: &Record, restart: &str, known: &[String]) -> View {
    let mut v = View {
        server: record.server.clone(),
        ..View::default()
    };
    if let Some(exe) = &record.exe {
        let state = exe_state(exe);
        match state {
            ExeState::Current => {}
            ExeState::Replaced => v.warnings.push(format!(
                "the running paperclipd (pid {}) was started from {}, which was replaced since (an upgrade?): \
                 it still runs the old binary; {restart} to run the new one",
                record.pid, exe.path
            )),
            ExeState::Removed => v.warnings.push(format!(
                "the running paperclipd (pid {}) was started from {}, which no longer exists (removed or moved): \
                 it runs a deleted binary; {restart} from the installed one",
                record.pid, exe.path
            )),
        }
        v.paperclipd = Some(ExeView {
            path: exe.path.clone(),
            state,
        });
    }
    if let Some(s) = &record.server {
        v.warnings.extend(package_changed(s, restart));
        if let Some(w) = node_replaced(record.child_pid, s, restart) {
            v.warnings.push(w);
        }
        if let Some(w) = next_start(s) {
            let same_node = s
                .node
                .as_deref()
                .is_some_and(|n| known.iter().any(|k| k.contains(n)));
            if !same_node {
                v.warnings.push(w);
            }
        }
    }
    v
}

fn exe_state(exe: &FileId) -> ExeState {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(&exe.path) {
        Ok(m) if m.dev() == exe.dev && m.ino() == exe.ino => ExeState::Current,
        Ok(_) => ExeState::Replaced,
        Err(_) => ExeState::Removed,
    }
}

/// `npm i -g paperclipai@latest` under the running server.
fn package_changed(s: &ServerOrigin, restart: &str) -> Option<String> {
    let (package, then) = (s.package.as_deref()?, s.package_version.as_deref()?);
    match package_version(Path::new(package)) {
        Some(now) if now == then => None,
        Some(now) => Some(format!(
            "the server runs paperclipai {then}, but {now} is installed now ({package}): its files were replaced \
             under the running server; {restart} to run {now}"
        )),
        None => Some(format!(
            "the server runs paperclipai {then}, whose package ({package}) is no longer readable \
             (uninstalled or moved); {restart} once it is installed again"
        )),
    }
}

/// The server's Node.js binary replaced or deleted under it (Linux).
#[cfg(not(target_os = "macos"))]
fn node_replaced(child: Option<i32>, s: &ServerOrigin, restart: &str) -> Option<String> {
    let pid = child?;
    crate::procfs::exe_deleted(pid)?.then(|| {
        format!(
            "the server (pid {pid}) runs a Node.js binary that was replaced or deleted since it started ({}); \
             {restart} to run the installed one",
            s.node.as_deref().unwrap_or("its node")
        )
    })
}

#[cfg(target_os = "macos")]
fn node_replaced(_child: Option<i32>, _s: &ServerOrigin, _restart: &str) -> Option<String> {
    None
}

/// Whether `run` would refuse (78) with what is installed now: the same
/// check `run` makes, for the node the server was started with when that
/// was chosen for it (pinned, or named by the shim's `#!` line). A node
/// found through PATH is found again at the next start: only said gone.
fn next_start(s: &ServerOrigin) -> Option<String> {
    let node = s.node.as_deref().map(PathBuf::from)?;
    let shim = PathBuf::from(&s.shim);
    let rt = match s.node_choice? {
        Choice::Explicit => runtime::resolve(&shim, None, Some(&node)),
        Choice::Shebang => runtime::resolve(&shim, None, None),
        Choice::Path => {
            return (!node.exists()).then(|| {
                format!(
                    "the server's Node.js {} no longer exists; the next start runs the first `node` in the service's PATH",
                    node.display()
                )
            });
        }
    };
    let problem = rt.problem()?;
    Some(if node.exists() {
        format!("the next start will fail (exit 78): {problem}")
    } else {
        format!(
            "the next start will fail (exit 78): the Node.js the server was started with, {}, no longer exists ({problem})",
            node.display()
        )
    })
}
