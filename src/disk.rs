//! Free space on the instance's filesystem: `run`'s `--min-free` preflight
//! (exit 73 below it) and the view `status` shows.
//!
//! Why: when the disk fills, embedded PostgreSQL loops in crash recovery
//! (upstream #7588, #5990) and a service manager restarts it forever.
//! Upstream's launchd supervisor refuses to start below 5 GiB; ours is
//! configurable, 1 GiB by default, and works under every manager.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::size::format_size;

use crate::error::{Error, Kind, Result};
use crate::sys;

/// The default minimum: enough for PostgreSQL's WAL segments, a checkpoint
/// and Paperclip's logs to get through a start.
pub const DEFAULT_MIN_FREE: u64 = 1 << 30;

/// The filesystem holding a path, and its free space.
#[derive(Debug, Clone, Serialize)]
pub struct Space {
    /// The path asked about (or its nearest existing ancestor).
    pub path: PathBuf,
    /// Where that filesystem is mounted, when known.
    pub mount: Option<String>,
    pub fs_type: Option<String>,
    /// Bytes available to an unprivileged user.
    pub free_bytes: u64,
    pub total_bytes: u64,
}

impl Space {
    /// `tmpfs mounted on /srv/x`, or the path when the mount is unknown.
    pub fn describe_fs(&self) -> String {
        match (&self.fs_type, &self.mount) {
            (Some(t), Some(m)) => format!("the {t} filesystem mounted on {m}"),
            (None, Some(m)) => format!("the filesystem mounted on {m}"),
            _ => format!("the filesystem of {}", self.path.display()),
        }
    }
}

/// The free space where `path` lives; a path that does not exist yet (a
/// new instance) is judged by its nearest existing ancestor.
pub fn space(path: &Path) -> std::io::Result<Space> {
    let at = nearest_existing(path);
    let st = sys::fs_stat(&at)?;
    let (mount, fs_type) = match (st.mount, st.fs_type) {
        (Some(m), t) => (Some(m), t),
        (None, _) => mount_of(&at).unzip(),
    };
    Ok(Space {
        path: at,
        mount,
        fs_type,
        free_bytes: st.avail,
        total_bytes: st.total,
    })
}

/// `path`, or its nearest ancestor that exists.
fn nearest_existing(path: &Path) -> PathBuf {
    let mut at = path;
    while !at.exists() {
        match at.parent() {
            Some(p) => at = p,
            None => break,
        }
    }
    at.to_path_buf()
}

/// `run`'s preflight: refuse to start (73) with less than `min_free` bytes
/// free on the instance's filesystem. `0` disables the check.
pub fn require_free(instance_root: &Path, min_free: u64) -> Result<()> {
    if min_free == 0 {
        return Ok(());
    }
    // The common case costs one statvfs; the mount is looked up only to
    // word the refusal.
    if sys::fs_stat(&nearest_existing(instance_root)).is_ok_and(|st| st.avail >= min_free) {
        return Ok(());
    }
    let s = match space(instance_root) {
        Ok(s) => s,
        Err(e) => {
            crate::log::warn(&format!(
                "cannot tell the free space of {} ({e}); starting without the --min-free check",
                instance_root.display()
            ));
            return Ok(());
        }
    };
    if s.free_bytes >= min_free {
        return Ok(());
    }
    Err(Error::new(
        Kind::NoSpace,
        format!(
            "only {} free on {} (holding {}); starting needs at least {} (--min-free, min_free in paperclipd.toml). \
             Embedded PostgreSQL loops in recovery when its disk fills, so the server was not started. \
             Free some space there (or move the instance), or lower --min-free (0 disables the check)",
            format_size(s.free_bytes),
            s.describe_fs(),
            instance_root.display(),
            format_size(min_free),
        ),
    ))
}

/// The mount point and type of the filesystem holding `path` (Linux:
/// /proc/self/mountinfo, the longest mount point that contains it).
#[cfg(not(target_os = "macos"))]
fn mount_of(path: &Path) -> Option<(String, String)> {
    use std::os::unix::fs::MetadataExt;
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let canon = path.canonicalize().ok()?;
    let dev = std::fs::metadata(&canon).ok()?.dev();
    best_mount(&text, &canon, dev)
}

#[cfg(target_os = "macos")]
fn mount_of(_path: &Path) -> Option<(String, String)> {
    None
}

#[cfg(not(target_os = "macos"))]
/// Picks the mountinfo entry for `path` on device `dev`: the longest mount
/// point containing the path, preferring entries of the same device (a
/// bind mount or btrfs subvolume may report another).
pub fn best_mount(mountinfo: &str, path: &Path, dev: u64) -> Option<(String, String)> {
    let (major, minor) = (
        libc::major(dev as libc::dev_t) as u64,
        libc::minor(dev as libc::dev_t) as u64,
    );
    let mut best: Option<(bool, usize, String, String)> = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mountpoint opts [optional...] - type source superopts
        let f: Vec<&str> = line.split(' ').collect();
        let (Some(mm), Some(mp)) = (f.get(2), f.get(4)) else {
            continue;
        };
        let Some(dash) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        let fs_type = f.get(dash + 1).copied().unwrap_or("").to_string();
        let mp = unescape_mount(mp);
        if !path.starts_with(&mp) {
            continue;
        }
        let same_dev = mm
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
            == Some((major, minor));
        let key = (same_dev, mp.len());
        if best.as_ref().is_none_or(|b| key > (b.0, b.1)) {
            best = Some((same_dev, mp.len(), mp, fs_type));
        }
    }
    best.map(|(_, _, m, t)| (m, t))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
#[cfg(not(target_os = "macos"))]
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(target_os = "macos"))]
    #[test]
    fn mounts() {
        let mi = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                  30 22 0:55 / /srv/my\\040disk rw - tmpfs tmpfs rw,size=8192k\n\
                  31 22 8:1 /bind /srv/bound rw - ext4 /dev/sda1 rw\n";
        let tmpfs = libc::makedev(0, 55) as u64;
        let sda = libc::makedev(8, 1) as u64;
        assert_eq!(
            best_mount(mi, Path::new("/srv/my disk/h/instances/x"), tmpfs),
            Some(("/srv/my disk".into(), "tmpfs".into()))
        );
        assert_eq!(
            best_mount(mi, Path::new("/home/a"), sda),
            Some(("/".into(), "ext4".into()))
        );
        assert_eq!(
            best_mount(mi, Path::new("/srv/bound/x"), sda),
            Some(("/srv/bound".into(), "ext4".into()))
        );
    }

    #[test]
    fn the_real_root_filesystem_has_a_mount() {
        let s = space(Path::new("/definitely/not/here")).unwrap();
        assert_eq!(s.path, Path::new("/"));
        assert!(s.total_bytes > 0);
    }
}
