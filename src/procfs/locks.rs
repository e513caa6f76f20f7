//! The kernel's lock table (/proc/locks): who holds an instance's flock,
//! and whether a process holds a given file open.

use std::fs;

/// One exclusive `flock` in the kernel's lock table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlockEntry {
    pub pid: i32,
    /// The device the table names (major, minor): on btrfs the
    /// superblock's, which is not the subvolume's that `stat` gives.
    pub major: u32,
    pub minor: u32,
}

impl FlockEntry {
    /// Is this the device `stat` gave?
    pub fn on_device(&self, dev: u64) -> bool {
        let dev = dev as libc::dev_t;
        i64::from(self.major) == i64::from(libc::major(dev))
            && i64::from(self.minor) == i64::from(libc::minor(dev))
    }
}

/// Every exclusive `flock` on a file with inode `ino`, whatever its device,
/// from `/proc/locks`; an error when the table cannot be read (no /proc,
/// macOS). The inode alone, because the table's device may not be the one
/// `stat` gives (btrfs subvolumes): callers confirm a candidate with
/// [`holds_open`]. In a PID namespace the kernel lists only holders
/// visible in it.
pub fn flock_candidates(ino: u64) -> std::io::Result<Vec<FlockEntry>> {
    Ok(parse_flock_candidates(&read_table("/proc/locks")?, ino))
}

/// A /proc table read in reads as large as the kernel gives (a page
/// each). Each read() of a seq_file restarts at an index into a list that
/// may have changed since: `read_to_string`, whose first read is a 32-byte
/// probe, let a lock vanish from the table when another was released
/// meanwhile. A table within a page comes from one read, whole.
fn read_table(path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

pub fn parse_flock_candidates(text: &str, ino: u64) -> Vec<FlockEntry> {
    // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (major:minor in hex,
    // the inode in decimal). Waiters are listed as "1: -> FLOCK …" and
    // shared (READ) flocks are not the holder's exclusive one.
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (kind, _, mode, pid, id) = (f.get(1)?, f.get(2)?, f.get(3)?, f.get(4)?, f.get(5)?);
            if *kind != "FLOCK" || *mode != "WRITE" {
                return None;
            }
            let mut parts = id.split(':');
            let major = u32::from_str_radix(parts.next()?, 16).ok()?;
            let minor = u32::from_str_radix(parts.next()?, 16).ok()?;
            let i: u64 = parts.next()?.parse().ok()?;
            (i == ino).then_some(FlockEntry {
                pid: pid.parse().ok()?,
                major,
                minor,
            })
        })
        .collect()
}

/// Does `pid` hold the file with this device and inode open? `stat` of
/// `/proc/PID/fd/N` gives the open file's own device, the subvolume's on
/// btrfs, as our `stat` of its path does. `None` when its descriptors
/// cannot be read (another user's process, no /proc).
pub fn holds_open(pid: i32, dev: u64, ino: u64) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut readable = false;
    for fd in fds.filter_map(|e| e.ok()) {
        if let Ok(m) = fs::metadata(fd.path()) {
            readable = true;
            if m.dev() == dev && m.ino() == ino {
                return Some(true);
            }
        }
    }
    // An empty list is also what a process we may not inspect shows.
    readable.then_some(false)
}
