//! Listening TCP sockets from /proc/net/tcp{,6}, and which processes hold
//! them (their descriptors in /proc/PID/fd).

use std::collections::HashSet;
use std::fs;

use super::{count_scan, describe_all};

/// Socket inodes listening on TCP `port` (IPv4 and IPv6, any address).
pub fn listening_inodes(port: u16) -> HashSet<u64> {
    let mut out = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(table) {
            out.extend(parse_listeners(&text, port));
        }
    }
    out
}

/// Parses a `/proc/net/tcp{,6}` table: rows whose local port is `port` and
/// state is `0A` (LISTEN); column 10 is the inode.
pub fn parse_listeners(text: &str, port: u16) -> Vec<u64> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1)?;
            let (_, p) = local.rsplit_once(':')?;
            let p = u16::from_str_radix(p, 16).ok()?;
            (p == port && *f.get(3)? == "0A").then(|| f.get(9)?.parse().ok())?
        })
        .filter(|inode| *inode != 0)
        .collect()
}

/// The uids owning listening sockets on TCP `port` (column 8 of
/// `/proc/net/tcp{,6}`), readable even when the owner's fds are not.
pub fn listening_uids(port: u16) -> Vec<u32> {
    let mut uids = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(table) {
            for uid in parse_listener_uids(&text, port) {
                if !uids.contains(&uid) {
                    uids.push(uid);
                }
            }
        }
    }
    uids
}

pub fn parse_listener_uids(text: &str, port: u16) -> Vec<u32> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (_, p) = f.get(1)?.rsplit_once(':')?;
            let p = u16::from_str_radix(p, 16).ok()?;
            (p == port && *f.get(3)? == "0A").then(|| f.get(7)?.parse().ok())?
        })
        .collect()
}

/// Who listens on `port`, in words for a message: the processes when we
/// may inspect them, else the users the kernel names as the sockets'
/// owners (`a process of root (uid 0) that paperclipd may not inspect`).
pub fn describe_listener(port: u16) -> String {
    let owners = port_owners(port);
    if !owners.is_empty() {
        return describe_all(&owners);
    }
    describe_uninspectable(&listening_uids(port), port)
}

/// The listener's users, for when its processes cannot be inspected.
pub fn describe_uninspectable(uids: &[u32], port: u16) -> String {
    if uids.is_empty() {
        return "a process paperclipd cannot identify (in another network namespace?)".to_string();
    }
    format!(
        "a process of {} that paperclipd may not inspect (find it with `sudo ss -ltnp 'sport = :{port}'`)",
        uids.iter()
            .map(|u| user_name(*u))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `root (uid 0)`, or just the uid when it has no name.
pub fn user_name(uid: u32) -> String {
    let name = fs::read_to_string("/etc/passwd").ok().and_then(|t| {
        t.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(2)? == &uid.to_string().as_str()).then(|| f[0].to_string())
        })
    });
    match name {
        Some(n) => format!("{n} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// Processes holding one of these socket inodes open (only those whose fds
/// we may read: our own user's, or all as root).
pub fn socket_owners(inodes: &HashSet<u64>) -> Vec<i32> {
    count_scan();
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let pids = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok());
    socket_owners_among(inodes, pids)
}

/// Like [`socket_owners`], looking only at these pids.
pub fn socket_owners_among(inodes: &HashSet<u64>, pids: impl IntoIterator<Item = i32>) -> Vec<i32> {
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut owners: Vec<i32> = pids
        .into_iter()
        .filter(|pid| {
            let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
                return false;
            };
            fds.filter_map(|e| e.ok()).any(|fd| {
                fs::read_link(fd.path())
                    .ok()
                    .and_then(|t| {
                        t.to_str()?
                            .strip_prefix("socket:[")?
                            .strip_suffix(']')?
                            .parse::<u64>()
                            .ok()
                    })
                    .is_some_and(|ino| inodes.contains(&ino))
            })
        })
        .collect();
    owners.sort_unstable();
    owners
}

/// Who listens on `port`: pids we can attribute (may be empty when the
/// owner belongs to another user and we are not root).
pub fn port_owners(port: u16) -> Vec<i32> {
    socket_owners(&listening_inodes(port))
}
