//! Files paperclipd writes onto the user's disk (unit files, plists):
//! atomic writes, exactly 0644, that never replace a file paperclipd did
//! not write, never follow a link, and never touch another user's file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Marks a file as ours: only such a file is ever replaced or removed.
pub const MARKER: &str = "supervised by paperclipd";

/// Writes `content` to `path` atomically (temp file + fsync + rename),
/// refusing symlinks, foreign files and files that are not ours. Returns
/// whether the file changed.
pub fn write(path: &Path, content: &str) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(Error::config(format!(
                "{} is a symbolic link; paperclipd does not write through links. Remove it and retry",
                path.display()
            )));
        }
        Ok(m) if !m.is_file() => {
            return Err(Error::config(format!(
                "{} exists and is not a regular file; remove it and retry",
                path.display()
            )));
        }
        Ok(m) => {
            let euid = crate::sys::euid();
            if m.uid() != euid {
                return Err(Error::config(format!(
                    "{} belongs to uid {}, not to you; refusing to replace it",
                    path.display(),
                    m.uid()
                )));
            }
            let old = crate::regular_file::read_to_string(path).unwrap_or_default();
            if old == content {
                return Ok(false);
            }
            if !old.contains(MARKER) {
                return Err(Error::config(format!(
                    "{} exists and was not written by paperclipd; refusing to overwrite it. Move it aside and retry",
                    path.display()
                )));
            }
        }
        Err(_) => {}
    }
    let dir = path
        .parent()
        .ok_or_else(|| Error::config(format!("{} has no parent directory", path.display())))?;
    fs::create_dir_all(dir)
        .map_err(|e| Error::config(format!("cannot create {}: {e}", dir.display())))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.paperclipd-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        // Exactly 0644 whatever the umask: managers and users must read it.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::config(format!("cannot write {}: {e}", path.display()))
    })?;
    Ok(true)
}

/// Refuses a value about to be rendered into a unit file or a plist when
/// it carries a control character: in a unit file a newline starts a new
/// directive (a `PAPERCLIP_HOME` of `/x\nExecStartPre=…` would add one),
/// and XML cannot carry most of them. Both renderers call this, so both
/// refuse the same values (exit 78) instead of writing something else.
pub fn check_rendered_value(what: &str, value: &str) -> Result<()> {
    match value.char_indices().find(|(_, c)| c.is_control()) {
        None => Ok(()),
        Some((at, c)) => Err(Error::config(format!(
            "{what} {value:?} contains a control character (U+{:04X} at byte {at}), which a unit file or \
             plist cannot carry; expected a value without control characters: rename the directory \
             or choose another one",
            c as u32
        ))),
    }
}

/// Removes `path` if paperclipd wrote it. Returns whether it was removed.
pub fn remove(path: &Path) -> Result<bool> {
    match crate::regular_file::read_to_string(path) {
        Ok(text) if text.contains(MARKER) => {
            fs::remove_file(path)
                .map_err(|e| Error::config(format!("cannot remove {}: {e}", path.display())))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_foreign_and_linked_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("paperclip@.service");
        fs::write(&p, "[Service]\nExecStart=/bin/mine\n").unwrap();
        assert_eq!(write(&p, "x").unwrap_err().exit_code(), 78);
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "[Service]\nExecStart=/bin/mine\n"
        );
        assert!(!remove(&p).unwrap(), "a foreign file is never removed");
        fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &p).unwrap();
        assert_eq!(write(&p, "x").unwrap_err().exit_code(), 78);
        fs::remove_file(&p).unwrap();
        let content = format!("# {MARKER}\n");
        assert!(write(&p, &content).unwrap());
        assert!(
            !write(&p, &content).unwrap(),
            "unchanged content is not rewritten"
        );
        assert!(remove(&p).unwrap());
        assert!(!p.exists());
    }

    #[test]
    fn rendered_values_without_control_characters() {
        assert!(check_rendered_value("x", "/h/a b/$%\"é").is_ok());
        for bad in ["a\nb", "a\rb", "a\tb", "\u{7f}", "\u{85}", "\0"] {
            let e = check_rendered_value("PAPERCLIP_HOME", bad).unwrap_err();
            assert_eq!(e.exit_code(), 78, "{bad:?}");
            assert!(e.message.starts_with("PAPERCLIP_HOME "), "{}", e.message);
        }
    }
}
