//! Which Node.js runs Paperclip, and whether it is new enough.
//!
//! [`resolve`] follows the `paperclipai` shim as the kernel and `env`
//! would (its `#!` line, then `node` through a PATH), asks that node for its
//! version and compares it with the installed package's `engines.node`.
//! [`Runtime::check`] is what `install` and `run` refuse on (exit 78);
//! [`pin`] writes the choice into units and plists, and [`view`] reads it
//! back for `status`.

pub mod interpreter;
pub mod pin;
pub mod range;
pub mod record;
pub mod view;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::paperclip::{self, Engines};
use interpreter::Interpreter;
use range::{Range, Version};

/// How a Node.js was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Choice {
    /// `--node` or `PAPERCLIP_NODE` (which `install` pins in the service).
    Explicit,
    /// The shim's `#!` line names it.
    Shebang,
    /// `#!/usr/bin/env node`: the first `node` in PATH.
    Path,
}

/// The Node.js a shim will run.
#[derive(Debug)]
pub enum Node {
    Found {
        path: PathBuf,
        choice: Choice,
        /// Its `--version`, or why it could not be told.
        version: std::result::Result<Version, String>,
    },
    /// Nothing at the chosen place, or no `node` in PATH.
    Missing { wanted: PathBuf, choice: Choice },
    /// The shim is not a Node.js script (a binary such as Volta's, a shell
    /// wrapper): it chooses its runtime itself, so nothing is checked.
    Unknown(String),
}

/// What the installed package requires.
#[derive(Debug)]
pub enum Requirement {
    Range {
        raw: String,
        range: Range,
        package: PathBuf,
    },
    /// Not known (no package.json found, none declared, unparsable): only
    /// "a node exists and runs" is checked. Says why.
    Unknown(String),
}

/// Who asks: the advice differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Install,
    Run,
}

/// The shim, the node it runs, and what the package requires.
#[derive(Debug)]
pub struct Runtime {
    pub shim: PathBuf,
    pub interpreter: Interpreter,
    pub node: Node,
    pub required: Requirement,
    /// The PATH the shim sees (before any override).
    pub path: Option<OsString>,
    /// An explicit node that the shim's `env node` would not find first:
    /// the server's PATH, with that node's directory first.
    pub path_override: Option<OsString>,
}

/// An explicit `--node` may name the node or its `bin` directory.
fn explicit_node(p: &Path) -> PathBuf {
    let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    if p.is_dir() { p.join("node") } else { p }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn node_at(path: PathBuf, choice: Choice) -> Node {
    if path.exists() {
        let version = interpreter::version_of(&path);
        Node::Found {
            path,
            choice,
            version,
        }
    } else {
        Node::Missing {
            wanted: path,
            choice,
        }
    }
}

fn requirement(shim: &Path) -> Requirement {
    match paperclip::engines(shim) {
        Engines::Node { range, package } => match Range::parse(&range) {
            Ok(r) => Requirement::Range {
                raw: range,
                range: r,
                package,
            },
            Err(e) => Requirement::Unknown(format!(
                "engines.node in {} is not a range paperclipd understands: {e}",
                package.display()
            )),
        },
        Engines::Undeclared(p) => {
            Requirement::Unknown(format!("{} declares no engines.node", p.display()))
        }
        Engines::Unreadable(p, e) => {
            Requirement::Unknown(format!("cannot read {}: {e}", p.display()))
        }
        Engines::NoPackage => Requirement::Unknown(format!(
            "no paperclipai package.json found for {}",
            shim.display()
        )),
    }
}

/// Follows `shim` as it would run with `path`, or with the `explicit` node.
pub fn resolve(shim: &Path, path: Option<&OsStr>, explicit: Option<&Path>) -> Runtime {
    let interp = interpreter::of_shim(shim).unwrap_or_else(Interpreter::Other);
    let looked_up = |name: &str| interpreter::lookup(name, path);
    let node = match (explicit, &interp) {
        (Some(p), _) => node_at(explicit_node(p), Choice::Explicit),
        (None, Interpreter::EnvLookup(name)) => match looked_up(name) {
            Some(p) => node_at(p, Choice::Path),
            None => Node::Missing {
                wanted: PathBuf::from(name),
                choice: Choice::Path,
            },
        },
        (None, Interpreter::Fixed(p)) => node_at(p.clone(), Choice::Shebang),
        (None, Interpreter::Other(what)) => Node::Unknown(what.clone()),
    };
    // A chosen node reaches an `env node` shim (or a wrapper that runs
    // `node`) only if it is the first `node` in the server's PATH.
    let path_override = match &node {
        Node::Found {
            path: chosen,
            choice: Choice::Explicit,
            ..
        } => {
            let name = match &interp {
                Interpreter::EnvLookup(name) => Some(name.as_str()),
                Interpreter::Other(_) => Some("node"),
                Interpreter::Fixed(_) => None,
            };
            name.filter(|n| !looked_up(n).is_some_and(|first| same_file(&first, chosen)))
                .and_then(|_| chosen.parent())
                .map(|dir| interpreter::prepend(dir, path))
        }
        _ => None,
    };
    Runtime {
        shim: shim.to_path_buf(),
        interpreter: interp,
        node,
        required: requirement(shim),
        path: path.map(OsStr::to_os_string),
        path_override,
    }
}

/// The shim as it runs in this process's environment (`--node` or
/// `PAPERCLIP_NODE` given as `explicit`).
pub fn resolve_here(shim: &Path, explicit: Option<&Path>) -> Runtime {
    resolve(shim, std::env::var_os("PATH").as_deref(), explicit)
}

impl Runtime {
    /// The node's path, when there is one to name.
    pub fn node_path(&self) -> Option<&Path> {
        match &self.node {
            Node::Found { path, .. } => Some(path),
            Node::Missing { .. } | Node::Unknown(_) => None,
        }
    }

    pub fn version(&self) -> Option<&Version> {
        match &self.node {
            Node::Found { version: Ok(v), .. } => Some(v),
            _ => None,
        }
    }

    fn needs(&self) -> String {
        match &self.required {
            Requirement::Range { raw, package, .. } => {
                format!("Node.js {raw} (engines.node in {})", package.display())
            }
            Requirement::Unknown(_) => "a working Node.js".to_string(),
        }
    }

    /// Where the node came from, for a person.
    fn origin(&self, choice: Choice) -> String {
        let path = self
            .path
            .as_deref()
            .map_or("(unset)".into(), OsStr::to_string_lossy);
        match choice {
            Choice::Explicit => "chosen with --node or PAPERCLIP_NODE (which `paperclipd install` pins in the service)".to_string(),
            Choice::Shebang => format!("named by the #! line of {}", self.shim.display()),
            Choice::Path => format!(
                "the first `node` in PATH={path}, which {} runs through its `#!/usr/bin/env node` line",
                self.shim.display()
            ),
        }
    }

    /// What is wrong with this runtime, or `None` when it will do (or
    /// cannot be known: a shim that is not a Node.js script).
    pub fn problem(&self) -> Option<String> {
        if let (
            Interpreter::Fixed(fixed),
            Node::Found {
                path,
                choice: Choice::Explicit,
                ..
            },
        ) = (&self.interpreter, &self.node)
        {
            if !same_file(fixed, path) {
                return Some(format!(
                    "{} always runs {} (its #! line names it), not the chosen {}",
                    self.shim.display(),
                    fixed.display(),
                    path.display()
                ));
            }
        }
        match &self.node {
            Node::Unknown(_) => None,
            Node::Missing { wanted, choice } => Some(match choice {
                Choice::Path => format!(
                    "Paperclip needs {}, but there is no `{}` in PATH={} ({} starts with `#!/usr/bin/env node`)",
                    self.needs(),
                    wanted.display(),
                    self.path
                        .as_deref()
                        .map_or("(unset)".into(), OsStr::to_string_lossy),
                    self.shim.display()
                ),
                _ => format!(
                    "Paperclip needs {}, but the Node.js {} ({}) does not exist; a Node.js upgrade or uninstall may have removed it",
                    self.needs(),
                    wanted.display(),
                    self.origin(*choice)
                ),
            }),
            Node::Found {
                path,
                choice,
                version: Err(e),
            } => Some(format!(
                "Paperclip needs {}, but the Node.js at {} ({}) cannot tell its version: {e}",
                self.needs(),
                path.display(),
                self.origin(*choice)
            )),
            Node::Found {
                path,
                choice,
                version: Ok(v),
            } => match &self.required {
                Requirement::Range { range, .. } if !range.matches(v) => Some(format!(
                    "Paperclip needs {}, but it would run Node.js {v} ({}: {})",
                    self.needs(),
                    path.display(),
                    self.origin(*choice)
                )),
                _ => None,
            },
        }
    }

    /// Exit 78 with what was found, where, and how to choose another.
    pub fn check(&self, context: Context) -> Result<()> {
        let Some(problem) = self.problem() else {
            return Ok(());
        };
        let how = match context {
            Context::Install => {
                "Choose another Node.js with `paperclipd install --node /path/to/node` (or PAPERCLIP_NODE=/path/to/node), \
                 or make a new enough `node` the first in your PATH (e.g. `nvm use 24`) and run `paperclipd install` again"
            }
            Context::Run => {
                "Choose another Node.js with `--node /path/to/node` or PAPERCLIP_NODE=/path/to/node; \
                 for the service, run `paperclipd install` again from a shell whose `node` is new enough (or with --node)"
            }
        };
        Err(Error::config(format!("{problem}. {how}")))
    }

    /// One line for a person: which node, which version, which shim.
    pub fn describe(&self) -> String {
        let needs = match &self.required {
            Requirement::Range { raw, .. } => format!("; Paperclip needs {raw}"),
            Requirement::Unknown(why) => format!("; version not checked: {why}"),
        };
        let node = match &self.node {
            Node::Found {
                path,
                choice,
                version,
            } => format!(
                "Node.js {} at {} ({}){needs}",
                version
                    .as_ref()
                    .map_or("of unknown version".to_string(), ToString::to_string),
                path.display(),
                match choice {
                    Choice::Explicit => "--node/PAPERCLIP_NODE",
                    Choice::Shebang => "its #! line",
                    Choice::Path => "first `node` in PATH",
                }
            ),
            Node::Missing { wanted, .. } => {
                format!("no Node.js ({} not found){needs}", wanted.display())
            }
            Node::Unknown(what) => format!("Node.js not checked: the shim is {what}"),
        };
        format!("runtime: {node}; paperclipai {}", self.shim.display())
    }
}

#[cfg(test)]
mod tests;
