//! Finding the program to run: a path checked as is, a bare name searched
//! in `PATH`, and an executable check whose errors map to 126 and 127.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Kind, Result};

/// Resolves the program of a given command: a path is checked as is, a
/// bare name is searched in `PATH`.
pub fn resolve(program: &OsStr) -> Result<PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 || program.as_encoded_bytes().contains(&b'/') {
        check_executable(p, "the command").map(|_| p.to_path_buf())
    } else {
        match search_path(program) {
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

/// The first executable file called `name` in `PATH`.
pub fn search_path(name: &OsStr) -> Option<PathBuf> {
    search_in(name, &std::env::var_os("PATH")?)
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
