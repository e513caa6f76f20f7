//! Files that paperclipd reads or writes and that must be regular files:
//! the instance lock, the config files, `config.json`, `postmaster.pid`,
//! the log file, launchd's guard state. They are opened without blocking
//! (`O_NONBLOCK`; opening a FIFO waits for its other end, for ever) and
//! anything else — a FIFO, a socket, a device, a directory — is refused
//! with an error that says what it is.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Opens `path` with `options` and `flags` (`O_NOFOLLOW`, …), adding
/// `O_NONBLOCK | O_CLOEXEC`; refuses what is not a regular file. A regular
/// file ignores `O_NONBLOCK`.
pub fn open(path: &Path, options: &mut OpenOptions, flags: i32) -> io::Result<File> {
    let file = match options
        .custom_flags(flags | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        // A FIFO without a reader refuses a non-blocking writer (ENXIO):
        // say what it is rather than "no such device or address". Links
        // (ELOOP) and directories (EISDIR) keep the kernel's word.
        Err(e) => {
            let special = std::fs::symlink_metadata(path)
                .ok()
                .filter(|m| !m.file_type().is_symlink() && !m.is_dir());
            return Err(special.and_then(|m| refusal(&m)).unwrap_or(e));
        }
    };
    match file.metadata() {
        Ok(m) => match refusal(&m) {
            Some(e) => Err(e),
            None => Ok(file),
        },
        Err(e) => Err(e),
    }
}

/// The whole file at `path`, which must be a regular file.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = open(path, OpenOptions::new().read(true), 0)?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    Ok(buf)
}

/// The whole file at `path` as text (must be UTF-8, as with
/// `std::fs::read_to_string`).
pub fn read_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read(path)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not valid UTF-8"))
}

/// What a file is, when it is not a regular file.
pub fn kind(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_symlink() {
        Some("a symbolic link")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else {
        Some("not a regular file")
    }
}

fn refusal(meta: &Metadata) -> Option<io::Error> {
    kind(meta).map(|k| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {k}, not a regular file"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_and_directories_are_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        let ok = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(ok.is_ok_and(|s| s.success()), "mkfifo");
        for p in [fifo.as_path(), d.path()] {
            let e = read(p).unwrap_err();
            assert_eq!(
                e.kind(),
                io::ErrorKind::InvalidInput,
                "{}: {e}",
                p.display()
            );
        }
        assert!(read(&fifo).unwrap_err().to_string().contains("FIFO"));
        let e = open(&fifo, OpenOptions::new().append(true), 0).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "a writer too: {e}");
        let file = d.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(read_to_string(&file).unwrap(), "x");
    }
}
