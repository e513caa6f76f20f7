//! The job's early errors: launchd's `StandardErrorPath`,
//! `~/Library/Logs/paperclipd/<label>.err`. It catches what paperclipd
//! prints before its own log file is open (a bad config, the guard's "will
//! not start this job again"), which would otherwise go to /dev/null.
//! launchd never rotates it, so paperclipd empties it at each start of the
//! job: it holds the last run's early errors only. `paperclipd logs` shows
//! it first when it is not empty.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::instance::InstanceId;

/// At most this much of the file is shown by `logs` (its end).
const SHOW_AT_MOST: u64 = 16 * 1024;

/// `~/Library/Logs/paperclipd`.
pub fn dir(home: &Path) -> PathBuf {
    home.join("Library/Logs/paperclipd")
}

/// `~/Library/Logs/paperclipd/<label>.err`.
pub fn path(home: &Path, id: &InstanceId) -> PathBuf {
    dir(home).join(format!("{}.err", super::label(id)))
}

/// Empties our stderr when it is a regular file (launchd's
/// `StandardErrorPath`; a terminal or a pipe is left alone), so that it
/// never grows past one run's early errors.
pub fn truncate_own_stderr() {
    if let Err(e) = crate::sys::truncate_if_regular(2) {
        crate::log::warn(&format!(
            "cannot empty the job's early-error file (stderr): {e}"
        ));
    }
}

/// The file's text for `paperclipd logs`, when it has any: a heading, then
/// at most its last [`SHOW_AT_MOST`] bytes.
pub fn show(home: &Path, id: &InstanceId) -> Option<String> {
    let p = path(home, id);
    // Never block on a FIFO someone put there.
    let mut f = crate::regular_file::open(&p, std::fs::OpenOptions::new().read(true), 0).ok()?;
    let len = f.metadata().ok()?.len();
    let skip = len.saturating_sub(SHOW_AT_MOST);
    if skip > 0 {
        use std::io::{Seek, SeekFrom};
        f.seek(SeekFrom::Start(skip)).ok()?;
    }
    let mut bytes = Vec::new();
    f.take(SHOW_AT_MOST).read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim_end();
    if text.trim().is_empty() {
        return None;
    }
    Some(format!(
        "==> {} (the job's last early errors{}) <==\n{text}\n",
        p.display(),
        if skip > 0 { ", its end" } else { "" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_file_only_when_it_has_text() {
        let d = tempfile::tempdir().unwrap();
        let id = InstanceId::parse("dev").unwrap();
        assert_eq!(show(d.path(), &id), None, "no file");
        std::fs::create_dir_all(dir(d.path())).unwrap();
        let p = path(d.path(), &id);
        assert!(p.ends_with("Library/Logs/paperclipd/ai.paperclip.paperclipd.dev.err"));
        std::fs::write(&p, "\n  \n").unwrap();
        assert_eq!(show(d.path(), &id), None, "blank");
        std::fs::write(&p, "paperclipd: error: bad config\n").unwrap();
        let s = show(d.path(), &id).unwrap();
        assert!(s.starts_with(&format!("==> {}", p.display())), "{s}");
        assert!(s.contains("bad config"), "{s}");
        let big = "x".repeat(40 * 1024) + "\nthe end\n";
        std::fs::write(&p, big).unwrap();
        let s = show(d.path(), &id).unwrap();
        assert!(s.len() < 17 * 1024 && s.contains("the end") && s.contains("its end"));
    }
}
