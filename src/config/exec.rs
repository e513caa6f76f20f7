//! What `run` execs the server with: its command (the words after `--`,
//! else the config file's) and its environment (`[env]`, with a unit's
//! pinned directories before its PATH), each checked before any side effect.

use std::collections::BTreeMap;
use std::ffi::OsString;

use super::FileConfig;
use crate::error::{Error, Result};
use crate::paperclip;

/// The server command: the words after `--`, else the file's `command`
/// (`None`: Paperclip's own). A broken file is reported even when a flag
/// overrides the key: the next start without the flag would fail.
pub(super) fn command(
    args: &crate::cli::RunArgs,
    file: &FileConfig,
    in_file: &dyn Fn(&str) -> String,
) -> Result<Option<Vec<OsString>>> {
    if let Some(cmd) = &file.command {
        if cmd.is_empty() || cmd[0].trim().is_empty() {
            return Err(Error::config(format!(
                "{} is empty: expected the server command and its arguments, e.g. [\"paperclipai\", \"run\"]; remove the key to use the default",
                in_file("command")
            )));
        }
    }
    if let Some(cmd) = &file.command {
        check_no_nul(cmd.iter().map(|a| a.as_bytes()), &in_file("command"))?;
    }
    Ok(if !args.command.is_empty() {
        use std::os::unix::ffi::OsStrExt;
        check_no_nul(
            args.command.iter().map(|a| a.as_bytes()),
            "the server command after --",
        )?;
        Some(args.command.clone())
    } else {
        file.command
            .as_ref()
            .map(|cmd| cmd.iter().map(OsString::from).collect())
    })
}

/// The server's environment: the file's `[env]`, checked, with a unit's
/// pinned directories before its PATH.
pub(super) fn environment(
    file: &FileConfig,
    in_file: &dyn Fn(&str) -> String,
) -> Result<BTreeMap<String, String>> {
    let mut env = file.env.clone().unwrap_or_default();
    check_env_keys(&env, &in_file("env"))?;
    prepend_path(&mut env);
    Ok(env)
}

/// A unit's `PAPERCLIPD_PATH_PREPEND` (the pinned Node.js and paperclipai
/// directories) goes before the PATH the server would get (`[env]`'s, else
/// the manager's), which is kept: agents need `/snap/bin`, `~/.cargo/bin`
/// and whatever else the user's manager provides.
fn prepend_path(env: &mut BTreeMap<String, String>) {
    let Some(pre) = std::env::var_os(crate::runtime::pin::PREPEND_VAR).filter(|p| !p.is_empty())
    else {
        return;
    };
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let base = env
        .get("PATH")
        .cloned()
        .or_else(|| inherited.to_str().map(str::to_string));
    match (pre.to_str(), base) {
        (Some(pre), Some(base)) => {
            let path =
                crate::runtime::pin::join_dirs(pre.split(':').map(str::to_string).collect(), &base);
            env.insert("PATH".to_string(), path);
        }
        _ => crate::log::warn(&format!(
            "PAPERCLIPD_PATH_PREPEND or PATH is not valid UTF-8 ({:?}, {:?}); PATH is left as it is",
            pre, inherited
        )),
    }
}

/// The `[env]` table's names: none that paperclipd sets or removes itself,
/// none empty or with `=` or NUL. `where_` names the table for messages.
fn check_env_keys(env: &BTreeMap<String, String>, where_: &str) -> Result<()> {
    for key in env.keys() {
        if paperclip::reserved_env(key) {
            return Err(Error::config(format!(
                "{where_} sets {key}, which paperclipd sets or removes itself; remove it from [env] (use --instance/--home for the instance)"
            )));
        }
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(Error::config(format!(
                "{where_} has an invalid variable name {key:?}: expected a name without '=' or NUL"
            )));
        }
    }
    // The environment is a list of C strings: a NUL cannot be passed on.
    for (key, value) in env {
        if value.contains('\0') {
            return Err(Error::config(format!(
                "{where_} sets {} to a value with a NUL byte, which no program can receive in its \
                 environment (the value is not shown: it may be a secret); remove the NUL \
                 (\\u0000) from the value",
                crate::untrusted::escape(key)
            )));
        }
    }
    Ok(())
}

/// The server command's words are C strings at exec: none may hold NUL.
fn check_no_nul<'a>(words: impl Iterator<Item = &'a [u8]>, where_: &str) -> Result<()> {
    for (i, word) in words.enumerate() {
        if word.contains(&0) {
            return Err(Error::config(format!(
                "{where_} has a NUL byte in word {} (counting from 1; not shown: it may hold a \
                 secret), which no program can receive as an argument; remove the NUL (\\u0000)",
                i + 1
            )));
        }
    }
    Ok(())
}
