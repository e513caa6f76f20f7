//! The filesystem holding a path: free and total space, and (macOS) where
//! it is mounted (`statvfs`/`statfs`).

use std::io;

use super::check;

/// What `statvfs`/`statfs` says of the filesystem holding a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsStat {
    /// Bytes available to an unprivileged user (`f_bavail`, not `f_bfree`:
    /// the root reserve is not ours to use).
    pub avail: u64,
    pub total: u64,
    /// Where it is mounted and its type, when the call tells (macOS);
    /// on Linux `disk` reads them from /proc/self/mountinfo.
    pub mount: Option<String>,
    pub fs_type: Option<String>,
}

fn c_path(path: &std::path::Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// The filesystem holding `path` (Linux: `statvfs`).
#[cfg(not(target_os = "macos"))]
pub fn fs_stat(path: &std::path::Path) -> io::Result<FsStat> {
    let c = c_path(path)?;
    // SAFETY: statvfs writes one struct into the zeroed local we own.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path alive for the call; `st` is valid.
    check(unsafe { libc::statvfs(c.as_ptr(), &mut st) })?;
    #[allow(clippy::unnecessary_cast)] // the field types differ by platform
    let (bavail, blocks, frsize) = (st.f_bavail as u64, st.f_blocks as u64, st.f_frsize as u64);
    Ok(FsStat {
        avail: bavail.saturating_mul(frsize),
        total: blocks.saturating_mul(frsize),
        mount: None,
        fs_type: None,
    })
}

/// The filesystem holding `path` (macOS: `statfs`, whose counts are 64-bit,
/// unlike its `statvfs`, and which names the mount point and type).
#[cfg(target_os = "macos")]
pub fn fs_stat(path: &std::path::Path) -> io::Result<FsStat> {
    let c = c_path(path)?;
    // SAFETY: statfs writes one struct into the zeroed local we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path alive for the call; `st` is valid.
    check(unsafe { libc::statfs(c.as_ptr(), &mut st) })?;
    let bsize = u64::from(st.f_bsize);
    Ok(FsStat {
        avail: st.f_bavail.saturating_mul(bsize),
        total: st.f_blocks.saturating_mul(bsize),
        mount: Some(c_chars(&st.f_mntonname)),
        fs_type: Some(c_chars(&st.f_fstypename)),
    })
}

/// A fixed-size, NUL-terminated C string field as text.
#[cfg(target_os = "macos")]
pub(super) fn c_chars(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}
