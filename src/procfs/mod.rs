//! What /proc tells about processes, sockets and locks.
//!
//! Only plain file reads: on systems without /proc (macOS) every function
//! answers "unknown" (`None` or empty), and callers treat that as "cannot
//! tell", never as "nobody".

mod locks;
mod sockets;

pub use locks::*;
pub use sockets::*;

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::fs;

/// One process as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    /// Start time in clock ticks after boot: with the pid, it names a
    /// process uniquely (pids are reused, start times are not).
    pub start_ticks: u64,
    pub comm: String,
    /// Exited, waiting for its parent to reap it.
    pub zombie: bool,
    /// Resident memory in pages (`rss`, field 24: the same count as
    /// `VmRSS` in `status`, which costs a second and slower read).
    pub rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name is in parentheses and may
/// itself contain spaces and parentheses, so split at the *last* `)`.
pub fn parse_stat(text: &str) -> Option<ProcInfo> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    Some(ProcInfo {
        pid,
        ppid: rest.get(1)?.parse().ok()?,
        pgid: rest.get(2)?.parse().ok()?,
        start_ticks: rest.get(19)?.parse().ok()?,
        comm,
        zombie: rest.first()? == &"Z",
        rss_pages: rest.get(21)?.parse().ok()?,
    })
}

pub fn proc_info(pid: i32) -> Option<ProcInfo> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Why a process may not be dying: its state letter (`/proc/PID/stat`:
/// `D` is an uninterruptible sleep, which even SIGKILL waits out) and
/// where in the kernel it waits (`wchan`), e.g. `state D, waiting in
/// __refrigerator` (a frozen cgroup) or `state D, waiting in nfs_wait_bit`.
pub fn kernel_wait(pid: i32) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = text
        .rfind(')')
        .and_then(|i| text[i + 1..].split_whitespace().next())
        .unwrap_or("unknown");
    let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    match wchan.trim() {
        "" | "0" => format!("state {state}"),
        w => format!("state {state}, waiting in {w}"),
    }
}

/// The command line, arguments joined by spaces (NULs in /proc).
pub fn cmdline(pid: i32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let parts: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    if parts.is_empty() {
        // Kernel threads and zombies have no command line; use the name.
        return proc_info(pid).map(|p| format!("[{}]", p.comm));
    }
    Some(parts.join(" "))
}

// Whole-/proc scans this thread made (the process table, every
// process's descriptors): tests count them.
#[cfg(test)]
thread_local! {
    pub static SCANS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn count_scan() {
    #[cfg(test)]
    SCANS.with(|c| c.set(c.get() + 1));
}

/// Every process we can see. One buffer serves every `stat` file, read
/// without the size query and growing reads of `read_to_string`: this
/// scan runs at the end of every stop, over every process of the host.
pub fn all_processes() -> Vec<ProcInfo> {
    use std::io::Read;
    count_scan();
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut buf = vec![0u8; 1024];
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let mut f = fs::File::open(format!("/proc/{pid}/stat")).ok()?;
            let mut len = 0;
            loop {
                if len == buf.len() {
                    buf.resize(len * 2, 0);
                }
                match f.read(&mut buf[len..]) {
                    Ok(0) => break,
                    Ok(n) => len += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return None,
                }
            }
            parse_stat(std::str::from_utf8(&buf[..len]).ok()?)
        })
        .collect()
}

/// One look at /proc shared by the questions one command asks: the
/// process table, the TCP listeners and who holds which socket, each read
/// at most once however many instances are asked about. `status --all`
/// asked each instance's questions of all of /proc again, and the
/// processes and sockets grow with the instances that run: quadratic.
/// A listener missing from the tables (one that started since they were
/// read) has them read again.
#[derive(Default)]
pub struct Scan {
    processes: OnceCell<Vec<ProcInfo>>,
    tables: std::cell::RefCell<Option<Tables>>,
}

/// The TCP listeners and the socket holders, read together.
struct Tables {
    /// Listening socket inodes by port.
    listeners: HashMap<u16, HashSet<u64>>,
    /// The processes holding each socket inode (whose fds we may read).
    holders: HashMap<u64, Vec<i32>>,
}

impl Scan {
    /// Every process we can see, read on the first call.
    pub fn processes(&self) -> &[ProcInfo] {
        self.processes.get_or_init(all_processes)
    }

    /// Who listens on `port` (as [`port_owners`]).
    pub fn port_owners(&self, port: u16) -> Vec<i32> {
        let mut tables = self.tables.borrow_mut();
        let fresh = tables.is_none();
        let t = tables.get_or_insert_with(Tables::read);
        if !fresh && !t.listeners.contains_key(&port) {
            *t = Tables::read();
        }
        let mut owners: Vec<i32> = t
            .listeners
            .get(&port)
            .into_iter()
            .flatten()
            .filter_map(|inode| t.holders.get(inode))
            .flatten()
            .copied()
            .collect();
        owners.sort_unstable();
        owners.dedup();
        owners
    }
}

impl Tables {
    fn read() -> Tables {
        let mut listeners: HashMap<u16, HashSet<u64>> = HashMap::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(text) = fs::read_to_string(table) {
                for (port, inode) in parse_all_listeners(&text) {
                    listeners.entry(port).or_default().insert(inode);
                }
            }
        }
        Tables {
            listeners,
            holders: socket_holders(),
        }
    }
}

/// Every listening socket of a `/proc/net/tcp{,6}` table: (port, inode).
fn parse_all_listeners(text: &str) -> Vec<(u16, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (_, p) = f.get(1)?.rsplit_once(':')?;
            let port = u16::from_str_radix(p, 16).ok()?;
            let inode: u64 = f.get(9)?.parse().ok()?;
            (*f.get(3)? == "0A" && inode != 0).then_some((port, inode))
        })
        .collect()
}

/// Socket inode → the processes holding it open, from every process's
/// fds (those we may read: our own user's, or all as root).
fn socket_holders() -> HashMap<u64, Vec<i32>> {
    let mut out: HashMap<u64, Vec<i32>> = HashMap::new();
    count_scan();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for pid in dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.filter_map(|e| e.ok()) {
            let inode = fs::read_link(fd.path()).ok().and_then(|t| {
                t.to_str()?
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse::<u64>()
                    .ok()
            });
            if let Some(inode) = inode {
                let pids = out.entry(inode).or_default();
                if pids.last() != Some(&pid) {
                    pids.push(pid);
                }
            }
        }
    }
    out
}

/// Our own children (adopted ones too), from each of our threads'
/// `children` list: no scan of every process. Falls back to the scan where
/// those lists are missing (a kernel without CONFIG_PROC_CHILDREN).
#[cfg_attr(target_os = "macos", allow(dead_code))] // macOS asks libproc (sys)
pub fn own_children() -> Vec<i32> {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.filter_map(|t| t.ok()) {
        match fs::read_to_string(task.path().join("children")) {
            Ok(text) => out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            ),
            Err(_) => return children_of(std::process::id() as i32),
        }
    }
    out
}

/// Direct children of `parent` (after a subreaper adoption too).
#[cfg_attr(target_os = "macos", allow(dead_code))] // macOS asks libproc (sys)
pub fn children_of(parent: i32) -> Vec<i32> {
    all_processes()
        .into_iter()
        .filter(|p| p.ppid == parent)
        .map(|p| p.pid)
        .collect()
}

/// Is `pid` `ancestor` itself or one of its descendants?
pub fn is_descendant(pid: i32, ancestor: i32) -> bool {
    let mut cur = pid;
    for _ in 0..4096 {
        if cur == ancestor {
            return true;
        }
        match proc_info(cur) {
            Some(p) if p.ppid > 0 && p.ppid != cur => cur = p.ppid,
            _ => return false,
        }
    }
    false
}

/// Describes a process for an error message: `pid 123 (node server.js)`.
pub fn describe(pid: i32) -> String {
    match cmdline(pid) {
        Some(c) => format!(
            "pid {pid} ({})",
            truncate(&crate::untrusted::escape(&c), 160)
        ),
        None => format!("pid {pid}"),
    }
}

/// Describes several processes, comma-separated.
pub fn describe_all(pids: &[i32]) -> String {
    pids.iter()
        .map(|p| describe(*p))
        .collect::<Vec<_>>()
        .join(", ")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// A field of `/proc/<pid>/status` (`Uid:`), after its name.
#[cfg(not(target_os = "macos"))]
fn status_field(pid: i32, name: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

#[cfg(not(target_os = "macos"))]
/// The effective uid of a process.
pub fn euid(pid: i32) -> Option<u32> {
    status_field(pid, "Uid")?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(not(target_os = "macos"))]
/// Device and inode of a process's working directory (readable for our
/// own processes, or all as root).
pub fn cwd_dev_ino(pid: i32) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(format!("/proc/{pid}/cwd"))?;
    Ok((m.dev(), m.ino()))
}

#[cfg(not(target_os = "macos"))]
/// The file name of a process's executable (`postgres`), when readable.
pub fn exe_name(pid: i32) -> Option<String> {
    let target = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

#[cfg(target_os = "linux")]
/// Seconds since boot, from `/proc/uptime`.
pub fn uptime_secs() -> Option<f64> {
    fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(not(target_os = "macos"))]
/// Whether a process runs an executable that was deleted or replaced since
/// it started (the kernel marks the link `… (deleted)`); `None` when not
/// readable (another user's process, gone).
pub fn exe_deleted(pid: i32) -> Option<bool> {
    let target = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(target.to_string_lossy().ends_with(" (deleted)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_hostile_comm() {
        let s = "42 (a) b (c)) S 7 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 98765 5000 1234 0";
        let p = parse_stat(s).unwrap();
        assert_eq!((p.pid, p.ppid, p.pgid, p.start_ticks), (42, 7, 42, 98765));
        assert_eq!(p.rss_pages, 1234);
        assert!(!p.zombie);
        assert_eq!(p.comm, "a) b (c)");
    }

    #[test]
    fn own_children_are_listed() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(own_children().contains(&pid));
        assert!(children_of(std::process::id() as i32).contains(&pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!own_children().contains(&pid));
    }

    #[test]
    fn own_process_is_visible() {
        let me = std::process::id() as i32;
        let p = proc_info(me).unwrap();
        assert_eq!(p.pid, me);
        assert!(cmdline(me).is_some());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn own_identity_and_memory() {
        use std::os::unix::fs::MetadataExt;
        let me = std::process::id() as i32;
        assert_eq!(euid(me), Some(crate::sys::euid()));
        assert!(proc_info(me).unwrap().rss_pages > 0);
        let here = std::fs::metadata(".").unwrap();
        assert_eq!(cwd_dev_ino(me).unwrap(), (here.dev(), here.ino()));
        assert_eq!(
            exe_name(me).as_deref().map(|e| e.starts_with("paperclipd")),
            Some(true)
        );
        assert!(uptime_secs().unwrap() > 0.0);
    }

    #[test]
    fn listeners_table() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:0C1C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:0C1C 0100007F:9999 01 00000000:00000000 00:00000000 00000000     0        0 555 1\n";
        assert_eq!(parse_listeners(t, 3100), vec![12345]);
        assert_eq!(parse_listener_uids(t, 3100), vec![0]);
        assert!(parse_listeners(t, 3101).is_empty());
    }

    #[test]
    fn real_listener_is_attributed_to_us() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let me = std::process::id() as i32;
        assert!(port_owners(port).contains(&me));
        // The shared scan says the same, and sees a listener that came
        // after it first read the tables.
        let scan = Scan::default();
        assert_eq!(scan.port_owners(port), port_owners(port));
        let later = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let later_port = later.local_addr().unwrap().port();
        assert!(scan.port_owners(later_port).contains(&me));
        assert!(scan.processes().iter().any(|p| p.pid == me));
    }

    #[test]
    fn locks_table() {
        let t = "1: POSIX  ADVISORY  WRITE 99 fd:01:777 0 EOF\n2: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF\n\
                 2: -> FLOCK  ADVISORY  WRITE 4321 fd:01:5678 0 EOF\n3: FLOCK  ADVISORY  READ 55 fd:01:999 0 EOF\n\
                 4: FLOCK  ADVISORY  WRITE 77 00:28:5678 0 EOF\n";
        let e = |pid, major, minor| FlockEntry { pid, major, minor };
        assert_eq!(
            parse_flock_candidates(t, 5678),
            [e(1234, 0xfd, 1), e(77, 0, 0x28)],
            "by inode alone, whatever the device; no waiter"
        );
        assert!(e(1234, 0xfd, 1).on_device(libc::makedev(0xfd, 0x01) as u64));
        assert!(!e(77, 0, 0x28).on_device(libc::makedev(0, 0x2a) as u64));
        assert_eq!(
            parse_flock_candidates(t, 777),
            [],
            "a POSIX lock is no flock"
        );
        assert_eq!(
            parse_flock_candidates(t, 999),
            [],
            "a shared flock is no holder"
        );
    }

    #[test]
    fn own_open_file_is_found_by_its_descriptor() {
        use std::os::unix::fs::MetadataExt;
        let f = tempfile::NamedTempFile::new().unwrap();
        let m = f.as_file().metadata().unwrap();
        let me = std::process::id() as i32;
        assert_eq!(holds_open(me, m.dev(), m.ino()), Some(true));
        assert_eq!(holds_open(me, m.dev(), m.ino() + 1_000_000), Some(false));
    }
}
