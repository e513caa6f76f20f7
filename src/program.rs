//! Finding the program to run: a path checked as is, a bare name searched
//! in `PATH`, and an executable check whose errors map to 126 and 127; and
//! paperclipd's own path as a unit or plist should name it.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Kind, Result};

/// Resolves the program of a given command: a path is checked as is, a
/// bare name is searched in `path` (the server's PATH).
pub fn resolve_in(program: &OsStr, path: Option<&OsStr>) -> Result<PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 || program.as_encoded_bytes().contains(&b'/') {
        check_executable(p, "the command").map(|_| p.to_path_buf())
    } else {
        match path.and_then(|path| search_in(program, path)) {
            Some(found) => check_executable(&found, "PATH").map(|_| found),
            None => Err(Error::new(
                Kind::NotFound,
                format!(
                    "the server command {:?} was not found in PATH; expected an installed program; give its full path or fix PATH",
                    program.to_string_lossy()
                ),
            )),
        }
    }
}

/// The first executable file called `name` in a PATH-style list, as
/// `execvp` (and so `env`) searches it.
pub fn search_in(name: &OsStr, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|cand| {
            cand.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Checks that `p` is an executable file; `source` says where the path
/// came from, for the message.
pub fn check_executable(p: &Path, source: &str) -> Result<()> {
    match p.metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::new(
            Kind::NotFound,
            format!(
                "the server program {} (from {source}) does not exist; install it or fix the path",
                p.display()
            ),
        )),
        Err(e) => Err(Error::new(
            Kind::NotExecutable,
            format!(
                "the server program {} (from {source}) cannot be inspected: {e}; fix its permissions",
                p.display()
            ),
        )),
        Ok(m) if m.is_dir() => Err(Error::new(
            Kind::NotExecutable,
            format!(
                "the server program {} (from {source}) is a directory, expected an executable file",
                p.display()
            ),
        )),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err(Error::new(
            Kind::NotExecutable,
            format!(
                "the server program {} (from {source}) is not executable; fix it with `chmod +x {}`",
                p.display(),
                p.display()
            ),
        )),
        Ok(_) => Ok(()),
    }
}

/// paperclipd's own path, for `ExecStart=` and `ProgramArguments`: the
/// canonical path, except that a Homebrew keg (`…/Cellar/<formula>/<version>/…`,
/// which the next `brew upgrade` deletes) becomes the formula's stable opt
/// path (`…/opt/<formula>/…`) when that leads to this very file. Homebrew
/// documents opt_prefix as "the preferred way to refer to a formula in plists"
/// (see /work/notes/upstream.md, E); the same holds for Linuxbrew.
pub fn own_path() -> Result<PathBuf> {
    let canonical = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| Error::os(format!("cannot find paperclipd's own path: {e}")))?;
    Ok(stable_path(&canonical, |p| p.canonicalize().ok()))
}

/// The keg → opt mapping of [`own_path`]; `resolve` canonicalizes a path
/// (`None` when it does not exist).
pub fn stable_path(canonical: &Path, resolve: impl Fn(&Path) -> Option<PathBuf>) -> PathBuf {
    let parts: Vec<_> = canonical.components().collect();
    let Some(i) = parts.iter().rposition(|c| c.as_os_str() == "Cellar") else {
        return canonical.to_path_buf();
    };
    // Cellar/<formula>/<version>/<at least one more>
    if parts.len() < i + 4 {
        return canonical.to_path_buf();
    }
    let mut opt: PathBuf = parts[..i].iter().collect();
    opt.push("opt");
    opt.push(parts[i + 1]);
    opt.extend(&parts[i + 3..]);
    if resolve(&opt).as_deref() == Some(canonical) {
        opt
    } else {
        canonical.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_homebrew_keg_path_becomes_the_opt_path() {
        let d = tempfile::tempdir().unwrap();
        let prefix = d.path().canonicalize().unwrap();
        let keg = prefix.join("Cellar/paperclipd/0.1.0");
        std::fs::create_dir_all(keg.join("bin")).unwrap();
        std::fs::write(keg.join("bin/paperclipd"), "").unwrap();
        std::fs::create_dir_all(prefix.join("opt")).unwrap();
        std::os::unix::fs::symlink("../Cellar/paperclipd/0.1.0", prefix.join("opt/paperclipd"))
            .unwrap();
        let canonical = keg.join("bin/paperclipd");
        let resolve = |p: &Path| p.canonicalize().ok();
        assert_eq!(
            stable_path(&canonical, resolve),
            prefix.join("opt/paperclipd/bin/paperclipd")
        );
        // A keg that is not the linked one (opt points at another version)
        // stays as it is: the opt path would run something else.
        let old = prefix.join("Cellar/paperclipd/0.0.9/bin/paperclipd");
        std::fs::create_dir_all(old.parent().unwrap()).unwrap();
        std::fs::write(&old, "").unwrap();
        assert_eq!(stable_path(&old, resolve), old);
        // Not Homebrew: unchanged.
        let plain = Path::new("/usr/local/bin/paperclipd");
        assert_eq!(stable_path(plain, resolve), plain);
    }
}
