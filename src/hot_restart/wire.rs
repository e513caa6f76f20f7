//! The control socket between `paperclipd reload` and the `run` that
//! supervises the instance: `<instance>/paperclipd.sock`, mode 0600, peers
//! checked by their credentials; one JSON object per line.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::instance::Instance;

pub const SOCKET_FILE: &str = "paperclipd.sock";
/// The longest path `sun_path` holds (with its NUL).
pub const SUN_PATH_MAX: usize = 103;

pub fn socket_path(instance: &Instance) -> PathBuf {
    instance.root().join(SOCKET_FILE)
}

/// What the client asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub op: Op,
    /// Ask the server to drain its runs (upstream's `drainRequired`).
    #[serde(default)]
    pub drain: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    Reload,
}

/// What the run answers: progress lines, then one `Done` or `Failed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Message {
    Progress {
        text: String,
    },
    Done {
        summary: String,
        new_server_pid: i32,
        report: Option<serde_json::Value>,
    },
    Failed {
        /// The exit code the client exits with.
        code: u8,
        error: String,
    },
}

impl Message {
    pub fn line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        v.push(b'\n');
        v
    }
}
