//! What a shim's `#!` line runs (`#!/usr/bin/env node` looks `node` up in
//! a PATH), and what `node --version` says.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::range::Version;
use crate::program;

/// The kernel reads at most this much of a `#!` line (Linux's BINPRM_BUF_SIZE).
const SHEBANG_MAX: usize = 256;
/// `node --version` answers in milliseconds; a loaded machine gets slack.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// What a shim's first line says runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interpreter {
    /// `#!/usr/bin/env node`: the first `node` in PATH.
    EnvLookup(String),
    /// `#!/opt/node/bin/node`: exactly that file.
    Fixed(PathBuf),
    /// Not a Node.js script (a binary, a shell wrapper, another runtime):
    /// it chooses its runtime itself. Says what it is.
    Other(String),
}

/// Whether a program name is Node.js (`node`, `nodejs`).
fn is_node(name: &str) -> bool {
    matches!(name, "node" | "nodejs")
}

/// Reads and parses the `#!` line of `shim` (symlinks followed).
pub fn of_shim(shim: &Path) -> Result<Interpreter, String> {
    let mut buf = Vec::with_capacity(SHEBANG_MAX);
    crate::regular_file::open(shim, std::fs::OpenOptions::new().read(true), 0)
        .and_then(|f| f.take(SHEBANG_MAX as u64).read_to_end(&mut buf))
        .map_err(|e| format!("cannot read {}: {e}", shim.display()))?;
    Ok(parse_shebang(&buf))
}

/// Parses the start of a file into what runs it.
pub fn parse_shebang(head: &[u8]) -> Interpreter {
    let Some(rest) = head.strip_prefix(b"#!") else {
        return Interpreter::Other("not a script (no #! line)".to_string());
    };
    let line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let line = line.trim();
    let mut words = line.split_whitespace();
    let Some(interp) = words.next() else {
        return Interpreter::Other("an empty #! line".to_string());
    };
    let base = interp.rsplit('/').next().unwrap_or(interp);
    if is_node(base) {
        return Interpreter::Fixed(PathBuf::from(interp));
    }
    if base != "env" {
        return Interpreter::Other(format!("a script run by {interp}"));
    }
    // env's own options (`-S` splits the rest) and NAME=value assignments
    // come before the program.
    let program = words.find(|w| !w.starts_with('-') && !w.contains('='));
    match program {
        Some(p) if p.contains('/') && is_node(p.rsplit('/').next().unwrap_or(p)) => {
            Interpreter::Fixed(PathBuf::from(p))
        }
        Some(p) if is_node(p) => Interpreter::EnvLookup(p.to_string()),
        Some(p) => Interpreter::Other(format!("a script run by {p} (#!{line})")),
        None => Interpreter::Other(format!("an #! line without a program (#!{line})")),
    }
}

/// The program `env` would run: the first executable `name` in `path`.
pub fn lookup(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    program::search_in(OsStr::new(name), path?)
}

/// `dir` first, then `path` without it: the PATH that makes `env node`
/// find the node in `dir`.
pub fn prepend(dir: &Path, path: Option<&OsStr>) -> OsString {
    let rest = path
        .map(|p| {
            std::env::split_paths(p)
                .filter(|d| d != dir)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    std::env::join_paths(std::iter::once(dir.to_path_buf()).chain(rest))
        .unwrap_or_else(|_| dir.as_os_str().to_os_string())
}

/// Runs `node --version` and parses the answer.
pub fn version_of(node: &Path) -> Result<Version, String> {
    let spawn = || {
        Command::new(node)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    // ETXTBSY: the file is being written right now (an upgrade, or a
    // descriptor that another thread's fork inherited for a moment).
    let mut attempt = spawn();
    for _ in 0..5 {
        match &attempt {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(20));
                attempt = spawn();
            }
            _ => break,
        }
    }
    let mut child =
        attempt.map_err(|e| format!("`{} --version` could not start: {e}", node.display()))?;
    let start = Instant::now();
    // `--version` prints one short line, so the pipes cannot fill up while
    // we wait; a hung or chatty program is killed at the deadline.
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() < VERSION_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{} --version` did not answer within {}s",
                    node.display(),
                    VERSION_TIMEOUT.as_secs()
                ));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("`{} --version`: {e}", node.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or("").trim();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "`{} --version` failed ({}): {}",
            node.display(),
            out.status,
            err.lines().next().unwrap_or("").trim()
        ));
    }
    Version::parse(first).ok_or_else(|| {
        format!(
            "`{} --version` printed {first:?}, expected a version such as v24.11.1",
            node.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebangs() {
        use Interpreter::*;
        let env = |s: &str| EnvLookup(s.to_string());
        for (head, want) in [
            ("#!/usr/bin/env node\nimport x", env("node")),
            ("#! /usr/bin/env node\r\n", env("node")),
            ("#!/usr/bin/env -S node --no-warnings\n", env("node")),
            ("#!/usr/bin/env NODE_OPTIONS=x nodejs\n", env("nodejs")),
            ("#!/opt/n/bin/node\n", Fixed("/opt/n/bin/node".into())),
            (
                "#!/usr/bin/env /opt/n/bin/node\n",
                Fixed("/opt/n/bin/node".into()),
            ),
        ] {
            assert_eq!(parse_shebang(head.as_bytes()), want, "{head}");
        }
        for head in [
            &b"#!/bin/sh\nexec node x"[..],
            b"#!/usr/bin/env bun\n",
            b"\x7fELF\x02\x01",
            b"#!\n",
            b"#!/usr/bin/env\n",
            b"",
        ] {
            assert!(matches!(parse_shebang(head), Other(_)), "{head:?}");
        }
    }

    #[test]
    fn prepend_puts_the_dir_first_once() {
        let p = prepend(Path::new("/n/bin"), Some(OsStr::new("/a:/n/bin:/b")));
        assert_eq!(p, "/n/bin:/a:/b");
        assert_eq!(prepend(Path::new("/n/bin"), None), "/n/bin");
    }
}
