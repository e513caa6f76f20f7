//! systemd's notification protocol (`sd_notify(3)`): datagrams to
//! `$NOTIFY_SOCKET`. Without a socket (launchd, containers, a terminal)
//! every call is a no-op.
//!
//! Messages are formatted by the `sd-notify` crate; the socket is ours
//! because we also accept abstract addresses (`@name`, used by containers
//! and `systemd-nspawn`), which that crate does not, and because we want to
//! tell the user once, clearly, when the socket is unusable.

use std::os::unix::net::UnixDatagram;

pub use sd_notify::NotifyState;

/// The longest path `sun_path` holds (108 bytes with the NUL on Linux).
pub const SUN_PATH_MAX: usize = 107;

#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
    /// Warn once per run, not once per message.
    warned: std::cell::Cell<bool>,
}

#[derive(Debug)]
struct Target {
    raw: String,
    sock: UnixDatagram,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Notifier {
            target: None,
            warned: false.into(),
        }
    }

    /// Reads `$NOTIFY_SOCKET`. An unusable value is reported (as a warning
    /// on stderr) and disables notifications rather than failing the run:
    /// the server can still be supervised, and the manager's own start
    /// timeout tells the rest.
    pub fn from_env() -> Self {
        let Some(raw) = std::env::var_os("NOTIFY_SOCKET") else {
            return Self::disabled();
        };
        let raw = raw.to_string_lossy().into_owned();
        match Self::open(&raw) {
            Ok(sock) => Notifier {
                target: Some(Target { raw, sock }),
                warned: false.into(),
            },
            Err(why) => {
                crate::log::warn(&format!(
                    "NOTIFY_SOCKET={raw:?} is unusable ({why}); not sending readiness notifications. \
                     Expected a datagram socket path or @abstract name from the service manager"
                ));
                Self::disabled()
            }
        }
    }

    fn open(raw: &str) -> Result<UnixDatagram, String> {
        if raw.is_empty() {
            return Err("it is empty".into());
        }
        let sock = UnixDatagram::unbound().map_err(|e| e.to_string())?;
        if let Some(name) = raw.strip_prefix('@') {
            #[cfg(target_os = "linux")]
            {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .map_err(|e| e.to_string())?;
                sock.connect_addr(&addr).map_err(|e| e.to_string())?;
                return Ok(sock);
            }
            #[cfg(not(target_os = "linux"))]
            {
                let _ = name;
                return Err("abstract sockets exist only on Linux".into());
            }
        }
        if !raw.starts_with('/') {
            return Err("it is neither an absolute path nor an @abstract name".into());
        }
        if raw.len() > SUN_PATH_MAX {
            return Err(format!(
                "the path is {} bytes, longer than sun_path's {SUN_PATH_MAX}",
                raw.len()
            ));
        }
        sock.connect(raw).map_err(|e| e.to_string())?;
        Ok(sock)
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one datagram with these states. Failures are reported once.
    pub fn send(&self, states: &[NotifyState]) {
        let Some(t) = &self.target else { return };
        let mut msg = String::new();
        for s in states {
            // NotifyState's Display is the wire format ("READY=1", ...).
            msg.push_str(&s.to_string());
            msg.push('\n');
        }
        if let Err(e) = t.sock.send(msg.as_bytes()) {
            if !self.warned.replace(true) {
                crate::log::warn(&format!(
                    "cannot notify the service manager at {}: {e}; it will not see readiness or status",
                    t.raw
                ));
            }
        }
    }

    pub fn status(&self, text: &str) {
        self.send(&[NotifyState::Status(&one_line(text))]);
    }
}

/// `STATUS=` is one line; keep it short enough for `systemctl status`.
pub fn one_line(text: &str) -> String {
    let mut s: String = text.replace(['\n', '\r'], " ");
    if s.len() > 400 {
        let mut cut = 400;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}
