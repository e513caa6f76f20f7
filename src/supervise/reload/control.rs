//! The control socket of a hot restart: `<instance>/paperclipd.sock`, who
//! may connect, the one request a client sends, and the answers it hears.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::error::Kind;
use crate::hot_restart::wire::{self, Message, Request};
use crate::instance::Instance;
use crate::{log, sys};

/// How long a client may take to send its request.
const REQUEST_WAIT: Duration = Duration::from_secs(5);

/// The listening control socket; removed when dropped.
pub struct Control {
    listener: UnixListener,
    path: PathBuf,
}

impl Control {
    /// Binds `<instance>/paperclipd.sock`. We hold the instance's lock, so
    /// a socket already there is a dead run's. Without it, `reload` is
    /// unavailable and says why; the run goes on.
    pub fn bind(instance: &Instance) -> Option<Control> {
        let path = wire::socket_path(instance);
        if path.as_os_str().len() > wire::SUN_PATH_MAX {
            log::warn(&format!(
                "the control socket path {} is longer than a socket address may be; \
                 `paperclipd reload` is unavailable for this instance (use a shorter PAPERCLIP_HOME)",
                path.display()
            ));
            return None;
        }
        if let Ok(m) = std::fs::symlink_metadata(&path) {
            if m.file_type().is_socket() {
                let _ = std::fs::remove_file(&path);
            }
        }
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => {
                log::warn(&format!(
                    "cannot listen on {} ({e}); `paperclipd reload` is unavailable for this run",
                    path.display()
                ));
                return None;
            }
        };
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        Some(Control { listener, path })
    }

    /// The next connection from a peer we trust (our uid or root); others
    /// are closed at once.
    pub async fn accept(&self) -> UnixStream {
        loop {
            let Ok((conn, _)) = self.listener.accept().await else {
                continue;
            };
            let uid = conn.peer_cred().map(|c| c.uid()).ok();
            if uid.is_some_and(|u| u == sys::euid() || u == 0) {
                return conn;
            }
            log::warn(&format!(
                "refused a control connection from uid {}: only uid {} or root may reload this instance",
                uid.map_or_else(|| "?".to_string(), |u| u.to_string()),
                sys::euid()
            ));
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `accept` when there is a control socket; never, otherwise.
pub async fn accept(control: Option<&Control>) -> UnixStream {
    match control {
        Some(c) => c.accept().await,
        None => std::future::pending().await,
    }
}

/// The client's end, to tell it how things go.
pub struct Client {
    pub(super) conn: UnixStream,
}

impl Client {
    /// Sends one message; a client that went away (a cancelled
    /// `systemctl reload`) does not stop the reload.
    pub async fn send(&mut self, msg: &Message) {
        let _ =
            tokio::time::timeout(Duration::from_secs(1), self.conn.write_all(&msg.line())).await;
    }
    pub async fn progress(&mut self, text: &str) {
        log::info(text);
        self.send(&Message::Progress { text: text.into() }).await;
    }
}

/// Answers a request that cannot be served now.
pub async fn refuse(conn: UnixStream, why: String) {
    let mut c = Client { conn };
    c.send(&Message::Failed {
        code: Kind::Busy.exit_code(),
        error: why,
    })
    .await;
}

/// A request as it arrived, with the connection to answer on.
pub type Incoming = (UnixStream, Request);

/// Reads one request from a new connection (as a task of its own, so a
/// client that sends nothing, or only probes the socket, holds nothing
/// up) and hands it to the loop; a request not understood is answered.
pub async fn read_request(mut conn: UnixStream, to: tokio::sync::mpsc::Sender<Incoming>) {
    let mut line = String::new();
    let read = {
        let mut r = BufReader::new(&mut conn);
        tokio::time::timeout(REQUEST_WAIT, r.read_line(&mut line)).await
    };
    match read {
        // Connected and closed without a word: nothing to answer.
        Ok(Ok(0)) => {}
        Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Ok(req) => {
                let _ = to.send((conn, req)).await;
            }
            Err(e) => {
                let mut c = Client { conn };
                c.send(&Message::Failed {
                    code: 2,
                    error: format!(
                        "the control request was not understood ({e}); expected one JSON line"
                    ),
                })
                .await;
            }
        },
        _ => {}
    }
}
