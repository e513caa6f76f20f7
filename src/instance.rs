//! Instance identity: the id, its home, and every name derived from it.
//!
//! Every path other parts use (root, lock, config files, logs) comes from
//! here; the names a service manager gives it come from `systemd` and
//! `launchd`, each from the id alone, so two parts never disagree about
//! which instance they mean.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The longest instance id we accept. Paperclip itself has no bound; ours
/// keeps unit names and paths well inside their limits.
pub const MAX_ID_LEN: usize = 64;

/// A validated instance id: `^[A-Za-z0-9_-]{1,64}$`, not starting with `-`
/// (it would read as a flag in `paperclipai run --instance <id>` and in
/// `systemctl` command lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceId(String);

impl InstanceId {
    pub fn parse(raw: &str) -> Result<Self> {
        let problem = if raw.is_empty() {
            Some("it is empty".to_string())
        } else if raw.chars().count() > MAX_ID_LEN {
            Some(format!(
                "it is {} characters long (at most {MAX_ID_LEN})",
                raw.chars().count()
            ))
        } else if raw.starts_with('-') {
            Some("it starts with '-'".to_string())
        } else {
            raw.chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
                .map(|c| format!("it contains {c:?}"))
        };
        match problem {
            None => Ok(InstanceId(raw.to_string())),
            Some(why) => Err(Error::config(format!(
                "invalid instance id {raw:?}: {why}; expected 1 to {MAX_ID_LEN} ASCII letters, \
                 digits, '_' or '-' (not starting with '-'), for example `default` or `staging-2`"
            ))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An instance located in a Paperclip home directory.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: InstanceId,
    /// `$PAPERCLIP_HOME` or `~/.paperclip`.
    pub home: PathBuf,
}

impl Instance {
    pub fn new(id: InstanceId, home: PathBuf) -> Self {
        Instance { id, home }
    }

    /// `<home>/instances/<id>`: Paperclip's own layout.
    pub fn root(&self) -> PathBuf {
        self.home.join("instances").join(self.id.as_str())
    }
    /// Paperclip's own instance configuration (written by `paperclipai onboard`).
    pub fn paperclip_config(&self) -> PathBuf {
        self.root().join("config.json")
    }
    /// Our optional configuration file for this instance.
    pub fn wrapper_config(&self) -> PathBuf {
        self.root().join("paperclipd.toml")
    }
    /// The fallback lock: held by every `paperclipd run` of this instance.
    pub fn lock_path(&self) -> PathBuf {
        self.root().join("paperclipd.lock")
    }
    /// Where paperclipd's own log files go (launchd, `--log-file`).
    pub fn log_dir(&self) -> PathBuf {
        self.root().join("logs")
    }
}

/// `$PAPERCLIP_HOME`, else `~/.paperclip`. A relative home is resolved
/// against the working directory once, here, so the child and the lock agree.
pub fn resolve_home(flag: Option<&Path>) -> Result<PathBuf> {
    let home = match flag {
        Some(p) if p.as_os_str().is_empty() => {
            return Err(Error::config(
                "the Paperclip home directory is empty; give a directory with --home or PAPERCLIP_HOME, or unset PAPERCLIP_HOME to use ~/.paperclip",
            ));
        }
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(h) => PathBuf::from(h).join(".paperclip"),
            None => {
                return Err(Error::config(
                    "cannot find the Paperclip home: HOME is not set; set PAPERCLIP_HOME or pass --home DIR",
                ));
            }
        },
    };
    if home.is_absolute() {
        Ok(home)
    } else {
        let cwd = std::env::current_dir().map_err(|e| {
            Error::config(format!(
                "cannot resolve the relative home {}: the working directory is unreadable ({e}); pass an absolute --home",
                home.display()
            ))
        })?;
        Ok(cwd.join(home))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_paperclip_ids() {
        for ok in ["default", "a", "staging-2", "A_b-9", &"x".repeat(64)] {
            assert!(InstanceId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_ids_with_reason() {
        for bad in ["", "..", "a/b", "-x", "é", "a b", &"x".repeat(65), "a\0b"] {
            let e = InstanceId::parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 78, "{bad:?}");
            assert!(e.message.contains("expected"), "{}", e.message);
        }
    }

    #[test]
    fn derived_names() {
        let i = Instance::new(InstanceId::parse("dev").unwrap(), "/h".into());
        assert_eq!(i.lock_path(), Path::new("/h/instances/dev/paperclipd.lock"));
    }
}
