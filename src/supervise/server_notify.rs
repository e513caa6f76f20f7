//! The server's own notify socket: the `NOTIFY_SOCKET` the server gets is
//! ours, never the manager's, and what the server's tree says on it
//! (`READY=1`, `STOPPING=1`, `STATUS=`) is read here and nowhere passed on.
//!
//! Paperclip runs `systemd-notify --ready --status=…` the moment its
//! startup recovery is done, and `systemd-notify --stopping` when its
//! shutdown begins. A `READY=1` only wakes the probes (they stay the only
//! judge of readiness); `STOPPING=1` shows as `stopping` in `status` and
//! keeps the watchdog from taking a stopping server for a hung one;
//! `STATUS=` is quoted (escaped, one line, bounded) in our own `STATUS=`.
//!
//! Trust: the kernel names each datagram's sender (`SO_PASSCRED`), and only
//! a sender in our process tree (the server, what it runs, what it left
//! that we adopted) is heard; the socket file is also ours alone (0600).
//! `systemd-notify` waits for the receiver to close the descriptor it
//! sends with `BARRIER=1`: every datagram's descriptors are closed as soon
//! as it has been handled, so a server never waits on us.
//!
//! Linux only: macOS has no `systemd-notify` and no `SCM_CREDENTIALS`;
//! there (and for any server that never notifies) the probes poll.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Instant;

use tokio::sync::watch;

use crate::instance::Instance;

#[cfg(target_os = "linux")]
/// Longer datagrams are dropped whole (Paperclip's are under 100 bytes).
pub const MAX_DATAGRAM: usize = 4096;
#[cfg(target_os = "linux")]
/// A server's `STATUS=` text is cut to this many bytes.
pub const MAX_STATUS: usize = 200;

/// What the server has said so far (its current life: a reload forgets
/// the old server's words, see [`ServerNotify::new_server`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Said {
    /// How many `READY=1` it sent since it started; each one wakes the
    /// probes.
    pub ready_count: u64,
    /// When it first said `STOPPING=1`.
    pub stopping_since: Option<Instant>,
    /// Its last `STATUS=`, escaped and cut to one short line.
    pub status: Option<String>,
}

#[cfg(target_os = "linux")]
/// What one datagram says that we read; everything else in it is ignored.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub ready: bool,
    pub stopping: bool,
    pub status: Option<String>,
}

#[cfg(target_os = "linux")]
/// Parses one datagram (`KEY=VALUE` lines, sd_notify(3)). Pure, so it is
/// unit-tested. Only `READY=1`, `STOPPING=1` and `STATUS=` are read.
pub fn parse(bytes: &[u8]) -> Message {
    let text = String::from_utf8_lossy(bytes);
    let mut m = Message::default();
    for line in text.split('\n') {
        match line.split_once('=') {
            Some(("READY", "1")) => m.ready = true,
            Some(("STOPPING", "1")) => m.stopping = true,
            Some(("STATUS", s)) => m.status = Some(quote(s)),
            _ => {}
        }
    }
    m
}

#[cfg(target_os = "linux")]
/// The server's words as we repeat them: control characters escaped, one
/// line, at most [`MAX_STATUS`] bytes.
fn quote(s: &str) -> String {
    let mut q = crate::untrusted::escape(s.trim()).into_owned();
    if q.len() > MAX_STATUS {
        let mut cut = MAX_STATUS;
        while !q.is_char_boundary(cut) {
            cut -= 1;
        }
        q.truncate(cut);
        q.push('…');
    }
    q
}

/// The socket, the task that reads it, and what it has heard.
pub struct ServerNotify {
    /// `NOTIFY_SOCKET` for the server: a path, or `@name` (abstract).
    env_value: OsString,
    /// Removed when dropped (abstract names vanish by themselves).
    path: Option<PathBuf>,
    said: watch::Sender<Said>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerNotify {
    /// Binds the socket for `instance` and starts reading it. `None` (with
    /// a warning saying what is lost) when it cannot be bound; the probes
    /// then poll, as for a server that never notifies.
    pub fn open(instance: &Instance) -> Option<ServerNotify> {
        #[cfg(target_os = "linux")]
        {
            linux::open(instance)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = instance;
            None
        }
    }

    /// The value of the server's `NOTIFY_SOCKET`.
    pub fn env_value(&self) -> &OsStr {
        &self.env_value
    }

    pub fn subscribe(&self) -> watch::Receiver<Said> {
        self.said.subscribe()
    }

    /// A new server replaced the old one (a reload): the old one's words
    /// no longer describe the instance, and the new one's `READY=1` are
    /// counted from zero.
    pub fn new_server(&self) {
        self.said.send_replace(Said::default());
    }
}

impl Drop for ServerNotify {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The next `READY=1` the server sends after the `seen`-th (at once if it
/// already did), which it records in `seen`; never, without a socket.
pub async fn next_ready(said: Option<&mut watch::Receiver<Said>>, seen: &mut u64) {
    let Some(rx) = said else {
        return std::future::pending().await;
    };
    let after = *seen;
    match rx.wait_for(|s| s.ready_count > after).await {
        Ok(s) => *seen = s.ready_count,
        Err(_) => std::future::pending::<()>().await,
    }
}

/// The next change of what the server said; never, without a socket.
pub async fn next_change(said: Option<&mut watch::Receiver<Said>>) -> Said {
    let Some(rx) = said else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        return std::future::pending().await;
    }
    rx.borrow_and_update().clone()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::fd::AsFd;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::os::unix::net::UnixDatagram as StdDatagram;

    use tokio::io::Interest;
    use tokio::net::UnixDatagram;

    use super::*;
    use crate::log;
    use crate::sys::{self, notify_socket as ns};

    use crate::notify::SUN_PATH_MAX;
    /// How many ignored datagrams are logged one by one; the rest are
    /// ignored silently.
    const LOGGED_REFUSALS: u32 = 5;

    /// `<instance>/paperclipd-notify.sock`, or an abstract name of ours
    /// when that path is too long or cannot be bound.
    pub(super) fn open(instance: &Instance) -> Option<ServerNotify> {
        let path = instance.root().join("paperclipd-notify.sock");
        let (sock, env_value, kept) = match bind_path(&path) {
            Ok(sock) => (sock, path.clone().into_os_string(), Some(path)),
            Err(why) => match bind_abstract() {
                Ok((sock, name)) => {
                    log::info(&format!(
                        "the server's notify socket is the abstract name {name} ({why})"
                    ));
                    (sock, OsString::from(name), None)
                }
                Err(e) => {
                    log::warn(&format!(
                        "cannot open a notify socket for the server ({why}; an abstract one: {e}); \
                         readiness is found by polling alone"
                    ));
                    return None;
                }
            },
        };
        let ready = (|| {
            ns::pass_credentials(sock.as_fd())?;
            sock.set_nonblocking(true)?;
            UnixDatagram::from_std(sock)
        })();
        let sock = match ready {
            Ok(s) => s,
            Err(e) => {
                if let Some(p) = &kept {
                    let _ = std::fs::remove_file(p);
                }
                log::warn(&format!(
                    "cannot set up the server's notify socket ({e}); readiness is found by polling alone"
                ));
                return None;
            }
        };
        let (said, _) = watch::channel(Said::default());
        let task = tokio::spawn(receive(sock, said.clone()));
        Some(ServerNotify {
            env_value,
            path: kept,
            said,
            task,
        })
    }

    /// We hold the instance's lock: a socket already at `path` is a dead
    /// run's. Anything else there is not ours to remove.
    fn bind_path(path: &std::path::Path) -> Result<StdDatagram, String> {
        let shown = crate::untrusted::path(path);
        if path.as_os_str().len() > SUN_PATH_MAX {
            return Err(format!(
                "{shown} is longer than the {SUN_PATH_MAX} bytes a socket address holds"
            ));
        }
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if !m.file_type().is_socket() {
                return Err(format!(
                    "{shown} exists and is not a socket; it was left alone"
                ));
            }
            let _ = std::fs::remove_file(path);
        }
        let sock = StdDatagram::bind(path).map_err(|e| format!("cannot bind {shown}: {e}"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot restrict {shown} to its owner: {e}"))?;
        Ok(sock)
    }

    fn bind_abstract() -> std::io::Result<(StdDatagram, String)> {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("paperclipd/{}/notify", sys::pid());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        Ok((StdDatagram::bind_addr(&addr)?, format!("@{name}")))
    }

    /// Reads datagrams until the run ends; each one's descriptors close as
    /// soon as it has been handled.
    async fn receive(sock: UnixDatagram, said: watch::Sender<Said>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut refusals = 0u32;
        loop {
            if let Err(e) = sock.readable().await {
                log::warn(&format!(
                    "the server's notify socket failed ({e}); polling alone"
                ));
                return;
            }
            let got = sock.try_io(Interest::READABLE, || {
                ns::recv_datagram(sock.as_fd(), &mut buf)
            });
            match got {
                Ok(d) => {
                    let verdict = judge(&d);
                    match verdict {
                        Ok(pid) => apply(&said, pid, parse(&buf[..d.len])),
                        Err(why) => {
                            refusals += 1;
                            if refusals <= LOGGED_REFUSALS {
                                log::warn(&format!(
                                    "ignored a notification on the server's notify socket: {why}{}",
                                    if refusals == LOGGED_REFUSALS {
                                        " (further ones are ignored without a word)"
                                    } else {
                                        ""
                                    }
                                ));
                            }
                        }
                    }
                    drop(d); // a waiting `systemd-notify --ready` goes on
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn(&format!(
                        "cannot read the server's notify socket ({e}); polling alone"
                    ));
                    return;
                }
            }
        }
    }

    /// Whom to hear: a datagram of bounded size from our process tree.
    fn judge(d: &ns::Datagram) -> Result<i32, String> {
        let Some(sender) = d.sender else {
            return Err("the kernel did not say who sent it".into());
        };
        let who = || {
            format!(
                "{}, uid {}",
                crate::procfs::describe(sender.pid),
                sender.uid
            )
        };
        if d.len > MAX_DATAGRAM {
            return Err(format!(
                "{} bytes from {}, more than the {MAX_DATAGRAM} a notification may have; dropped",
                d.len,
                who()
            ));
        }
        let me = sys::pid();
        if sender.pid <= 0 {
            return Err("its sender exited before it could be told apart from a stranger".into());
        }
        if sender.pid == me || !crate::procfs::is_descendant(sender.pid, me) {
            return Err(format!(
                "{} is not part of the server's process tree",
                who()
            ));
        }
        Ok(sender.pid)
    }

    fn apply(said: &watch::Sender<Said>, pid: i32, m: Message) {
        said.send_if_modified(|s| {
            let mut changed = false;
            if let Some(text) = m.status {
                if s.status.as_ref() != Some(&text) {
                    s.status = Some(text);
                    changed = true;
                }
            }
            if m.stopping && s.stopping_since.is_none() {
                s.stopping_since = Some(Instant::now());
                changed = true;
            }
            if m.ready {
                if s.ready_count == 0 {
                    log::info(&format!(
                        "the server notified READY=1{} (sent by pid {pid}); probing now",
                        s.status
                            .as_ref()
                            .map(|t| format!(" with STATUS={t:?}"))
                            .unwrap_or_default()
                    ));
                }
                s.ready_count += 1;
                changed = true;
            }
            changed
        });
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn reads_only_ready_stopping_and_status() {
        let m = parse(b"READY=1\nSTATUS=Listening on 127.0.0.1:3100\nMAINPID=1\nWATCHDOG=1\n");
        assert_eq!(
            m,
            Message {
                ready: true,
                stopping: false,
                status: Some("Listening on 127.0.0.1:3100".into()),
            }
        );
        assert!(parse(b"STOPPING=1").stopping);
        assert_eq!(parse(b"READY=0\nBARRIER=1\nREADY"), Message::default());
    }

    #[test]
    fn a_status_is_escaped_one_line_and_bounded() {
        let m = parse(b"STATUS=a\x1b[31mred\rb");
        assert_eq!(m.status.as_deref(), Some("a\\x1b[31mred\\rb"));
        let long = format!("STATUS={}", "é".repeat(400));
        let s = parse(long.as_bytes()).status.unwrap_or_default();
        assert!(s.len() <= MAX_STATUS + '…'.len_utf8(), "{}", s.len());
        assert!(s.ends_with('…'));
        let bad = parse(b"STATUS=\xff\xfe ok");
        assert_eq!(bad.status.as_deref(), Some("\u{fffd}\u{fffd} ok"));
    }
}
