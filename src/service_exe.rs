//! The paperclipd path a unit's `ExecStart=` or a plist's
//! `ProgramArguments` names: our own path, except for an npm install, whose
//! binary lives in a `node_modules` tree that the next `npm uninstall`, a
//! new npm prefix or an nvm switch of Node versions removes or hides; such
//! a binary is pinned as a copy at a stable path (as Homebrew's `opt/`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where an npm-installed paperclipd is pinned for the system manager.
const SYSTEM_PIN: &str = "/usr/local/lib/paperclipd/bin/paperclipd";

/// The path to write into a unit or plist (nothing is written here).
pub fn path(system: bool) -> Result<PathBuf> {
    let own = crate::program::own_path()?;
    if is_npm_install(&own) {
        pin_path(system)
    } else {
        Ok(own)
    }
}

/// For an npm install: copies our binary to [`path`] (atomically, only
/// when it differs) and says so. Returns the pinned path, or `None` when
/// paperclipd is not an npm install (then nothing is copied).
pub fn pin(system: bool) -> Result<Option<PathBuf>> {
    let own = crate::program::own_path()?;
    if !is_npm_install(&own) {
        return Ok(None);
    }
    let dest = pin_path(system)?;
    if copy_if_changed(&own, &dest)? {
        crate::log::info(&format!(
            "installed from npm: the service runs a copy of {} at {}, which npm and nvm do not move \
             (after `npm update -g paperclipd`, run `paperclipd install` again to refresh it)",
            own.display(),
            dest.display()
        ));
    }
    Ok(Some(dest))
}

/// A binary inside a `node_modules` tree: npm, pnpm and yarn installs.
pub fn is_npm_install(p: &Path) -> bool {
    p.components().any(|c| c.as_os_str() == "node_modules")
}

fn pin_path(system: bool) -> Result<PathBuf> {
    if system {
        return Ok(PathBuf::from(SYSTEM_PIN));
    }
    let data = match std::env::var_os("XDG_DATA_HOME").filter(|d| Path::new(d).is_absolute()) {
        Some(d) => PathBuf::from(d),
        None => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".local/share"))
            .ok_or_else(|| {
                Error::config(
                    "HOME is not set; an npm-installed paperclipd is pinned under ~/.local/share/paperclipd \
                     for the service. Set HOME and retry",
                )
            })?,
    };
    Ok(data.join("paperclipd/bin/paperclipd"))
}

/// Copies `src` to `dest` (temp file + fsync + rename, mode 0755) unless
/// `dest` already has the same bytes. Returns whether it copied. The
/// rename leaves a running copy's file alone: a service picks up the new
/// one at its next start.
pub fn copy_if_changed(src: &Path, dest: &Path) -> Result<bool> {
    let bytes = fs::read(src).map_err(|e| {
        Error::os(format!(
            "cannot read paperclipd's own binary {}: {e}",
            src.display()
        ))
    })?;
    if fs::read(dest).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    let dir = dest
        .parent()
        .ok_or_else(|| Error::config(format!("{} has no parent directory", dest.display())))?;
    let fail = |what: &str, e: std::io::Error| {
        Error::config(format!(
            "cannot pin paperclipd at {}: {what}: {e}; expected a writable directory \
             (fix its permissions, or install paperclipd another way: see the README)",
            dest.display()
        ))
    };
    fs::create_dir_all(dir).map_err(|e| fail("creating the directory", e))?;
    let tmp = dir.join(format!(".paperclipd.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, dest)?;
        fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        fail("writing it", e)
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_node_modules_path_is_an_npm_install() {
        assert!(is_npm_install(Path::new(
            "/home/u/.nvm/versions/node/v24.11.0/lib/node_modules/paperclipd/node_modules/@paperclipd/linux-x64/bin/paperclipd"
        )));
        assert!(is_npm_install(Path::new(
            "/usr/local/lib/node_modules/@paperclipd/darwin-arm64/bin/paperclipd"
        )));
        assert!(!is_npm_install(Path::new("/usr/bin/paperclipd")));
        assert!(!is_npm_install(Path::new(
            "/opt/node_modules_backup/paperclipd"
        )));
    }

    #[test]
    fn a_pin_is_copied_once_and_replaced_when_the_binary_changes() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        let dest = d.path().join("share/paperclipd/bin/paperclipd");
        fs::write(&src, b"v1").unwrap();
        assert!(copy_if_changed(&src, &dest).unwrap());
        assert!(!copy_if_changed(&src, &dest).unwrap());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o755
        );
        // A running service keeps its file: the new one is another inode.
        let before = fs::File::open(&dest).unwrap();
        fs::write(&src, b"v2").unwrap();
        assert!(copy_if_changed(&src, &dest).unwrap());
        assert_eq!(fs::read(&dest).unwrap(), b"v2");
        drop(before);
        // No temp file left behind.
        assert_eq!(fs::read_dir(dest.parent().unwrap()).unwrap().count(), 1);
    }
}
