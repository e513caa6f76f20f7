//! paperclipd's own log file (`run --log-file PATH`): written only by the
//! output thread, rotated by size to PATH.1 … PATH.N, so the disk holds at
//! most (N+1) × the maximum size. Where no journal keeps the output
//! (launchd), this is what keeps it bounded.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::log_file::LogFileSettings;

use super::sink::Target;

/// The log file being written.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    file: File,
    /// Bytes in the current file.
    size: u64,
}

impl RotatingFile {
    /// Opens (appends to) the log file, creating its directory (0700) and
    /// the file (0600) if needed. Refuses a symbolic link or a non-file.
    pub fn open(settings: &LogFileSettings) -> io::Result<Self> {
        if let Some(dir) = settings.path.parent() {
            DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let (file, size) = open_append(&settings.path)?;
        let mut f = RotatingFile {
            path: settings.path.clone(),
            max_size: settings.max_size,
            keep: settings.keep,
            file,
            size,
        };
        if f.size >= f.max_size {
            f.rotate()?;
        }
        Ok(f)
    }

    /// `PATH.n`.
    fn generation(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    /// PATH.N goes, PATH.n becomes PATH.n+1, PATH becomes PATH.1, and a new
    /// PATH is opened. Names are renamed or removed, never followed.
    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            ignore_missing(std::fs::remove_file(&self.path))?;
        } else {
            ignore_missing(std::fs::remove_file(self.generation(self.keep)))?;
            for n in (1..self.keep).rev() {
                ignore_missing(std::fs::rename(self.generation(n), self.generation(n + 1)))?;
            }
            ignore_missing(std::fs::rename(&self.path, self.generation(1)))?;
        }
        let (file, size) = open_append(&self.path)?;
        self.file = file;
        self.size = size;
        Ok(())
    }

    /// Writes `data`, rotating whenever the next bytes would not fit. A
    /// file ends at a line boundary when one fits; a line longer than a
    /// whole file is split.
    fn write_rotating(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let room =
                usize::try_from(self.max_size.saturating_sub(self.size)).unwrap_or(usize::MAX);
            if data.len() <= room {
                self.file.write_all(data)?;
                self.size += data.len() as u64;
                return Ok(());
            }
            let cut = match data[..room].iter().rposition(|b| *b == b'\n') {
                Some(i) => i + 1,
                None if self.size > 0 => 0,
                None => room,
            };
            self.file.write_all(&data[..cut])?;
            self.size += cut as u64;
            data = &data[cut..];
            self.rotate()?;
        }
        Ok(())
    }
}

impl Target for RotatingFile {
    fn write_chunk(&mut self, data: &[u8]) -> io::Result<()> {
        if self.size >= self.max_size {
            // A rotation failed earlier: retry before writing past the bound.
            self.rotate()?;
        }
        self.write_rotating(data)
    }

    fn report(&self, msg: &str) -> Vec<u8> {
        crate::log::format_line(crate::log::Level::Warn, msg, true)
    }

    fn name(&self) -> String {
        format!("the log file {}", self.path.display())
    }
}

/// Opens `path` for appending; returns it and its current size.
fn open_append(path: &Path) -> io::Result<(File, u64)> {
    let file = crate::regular_file::open(
        path,
        OpenOptions::new().append(true).create(true).mode(0o600),
        libc::O_NOFOLLOW,
    )?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, max_size: u64, keep: u32) -> LogFileSettings {
        LogFileSettings {
            path: dir.join("logs/paperclipd.log"),
            max_size,
            keep,
        }
    }

    fn sizes(s: &LogFileSettings) -> Vec<u64> {
        let mut out = vec![std::fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0)];
        for n in 1.. {
            let mut p = s.path.clone().into_os_string();
            p.push(format!(".{n}"));
            match std::fs::metadata(PathBuf::from(p)) {
                Ok(m) => out.push(m.len()),
                Err(_) => break,
            }
        }
        out
    }

    #[test]
    fn rotates_at_line_boundaries_and_keeps_n_generations() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), 4096, 2);
        let mut f = RotatingFile::open(&s).unwrap();
        for i in 0..1000 {
            f.write_chunk(format!("line {i:04} of the server\n").as_bytes())
                .unwrap();
        }
        let sizes = sizes(&s);
        assert_eq!(sizes.len(), 3, "PATH, PATH.1, PATH.2: {sizes:?}");
        assert!(sizes.iter().all(|n| *n <= 4096), "{sizes:?}");
        let current = std::fs::read_to_string(&s.path).unwrap();
        assert!(current.ends_with("line 0999 of the server\n"));
        assert!(current.starts_with("line "), "files start at a line");
    }

    #[test]
    fn a_line_longer_than_a_file_is_split_and_bounds_hold() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), 4096, 1);
        let mut f = RotatingFile::open(&s).unwrap();
        f.write_chunk(&vec![b'x'; 10_000]).unwrap();
        f.write_chunk(b"\nlast\n").unwrap();
        let sizes = sizes(&s);
        assert_eq!(sizes.len(), 2, "{sizes:?}");
        assert!(sizes.iter().all(|n| *n <= 4096), "{sizes:?}");
        assert!(
            std::fs::read_to_string(&s.path)
                .unwrap()
                .ends_with("last\n")
        );
    }

    #[test]
    fn reopening_a_full_file_rotates_it_first_and_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), 4096, 3);
        std::fs::create_dir_all(s.path.parent().unwrap()).unwrap();
        std::fs::write(&s.path, vec![b'y'; 5000]).unwrap();
        let _f = RotatingFile::open(&s).unwrap();
        assert_eq!(sizes(&s), vec![0, 5000]);
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&s.path, &link).unwrap();
        let e = RotatingFile::open(&LogFileSettings {
            path: link,
            ..s.clone()
        })
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
    }
}
