//! logind's `RemoveIPC=` and linger, asked over D-Bus: `status` against a
//! fake `org.freedesktop.login1` on a private bus (a real `dbus-daemon`,
//! named by `DBUS_SYSTEM_BUS_ADDRESS`). Needs root (the instance directory
//! is given to a regular user, uid 1000); CI runs as root.
#![cfg(target_os = "linux")]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use support::*;
use zbus::OwnedObjectPath;

const UID: u32 = 1000;

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.freedesktop.login1")]
enum LoginError {
    #[zbus(error)]
    ZBus(zbus::Error),
    NoSuchUser(String),
}

struct FakeManager {
    remove_ipc: Arc<AtomicBool>,
    /// Users logind knows (with a session or linger).
    known: Arc<AtomicBool>,
}

#[zbus::interface(name = "org.freedesktop.login1.Manager")]
impl FakeManager {
    fn get_user(&self, uid: u32) -> Result<OwnedObjectPath, LoginError> {
        if uid == UID && self.known.load(Ordering::SeqCst) {
            Ok(
                OwnedObjectPath::try_from(format!("/org/freedesktop/login1/user/_{uid}"))
                    .map_err(LoginError::ZBus)?,
            )
        } else {
            Err(LoginError::NoSuchUser(format!(
                "User ID {uid} is not logged in or lingering"
            )))
        }
    }
    #[zbus(property, name = "RemoveIPC")]
    fn remove_ipc(&self) -> bool {
        self.remove_ipc.load(Ordering::SeqCst)
    }
}

struct FakeUser {
    linger: Arc<AtomicBool>,
}

#[zbus::interface(name = "org.freedesktop.login1.User")]
impl FakeUser {
    #[zbus(property)]
    fn linger(&self) -> bool {
        self.linger.load(Ordering::SeqCst)
    }
}

/// A private `dbus-daemon` (killed on drop) and its address.
struct Bus {
    daemon: Child,
    address: String,
}

impl Bus {
    fn start(dir: &std::path::Path) -> Self {
        let mut daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!("--address=unix:path={}/bus", dir.display()))
            .stdout(Stdio::piped())
            .spawn()
            .expect("dbus-daemon (apt-get install dbus)");
        let mut line = String::new();
        BufReader::new(daemon.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Bus {
            daemon,
            address: line.trim().to_string(),
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// Serves the fake logind on `address` from a thread of its own.
fn serve(
    address: String,
    remove_ipc: Arc<AtomicBool>,
    known: Arc<AtomicBool>,
    linger: Arc<AtomicBool>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let conn = zbus::connection::Builder::address(address.as_str())
                .name("org.freedesktop.login1")
                .serve_at("/org/freedesktop/login1", FakeManager { remove_ipc, known })
                .serve_at(
                    format!("/org/freedesktop/login1/user/_{UID}"),
                    FakeUser { linger },
                )
                .build()
                .await
                .unwrap();
            tx.send(()).unwrap();
            std::future::pending::<()>().await;
            drop(conn);
        });
    });
    rx.recv_timeout(DEADLINE)
        .expect("the fake logind is on the bus");
}

fn user_name() -> String {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(2) == Some(&UID.to_string().as_str())).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| UID.to_string())
}

#[test]
fn status_asks_logind_whether_the_instance_owner_is_exposed_to_remove_ipc() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "needs root (chown); CI runs as root"
    );
    let w = World::new();
    let root = w.home().join("instances/default");
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::chown(&root, Some(UID), Some(UID)).unwrap();
    let bus = Bus::start(w.dir.path());
    let (remove_ipc, known, linger) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicBool::new(false)),
    );
    serve(
        bus.address.clone(),
        remove_ipc.clone(),
        known.clone(),
        linger.clone(),
    );
    let status = || {
        let o = Command::new(bin())
            .args(["status", "--home"])
            .arg(w.home())
            .args(["--url", &w.url(), "--json"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
            .env_remove("PAPERCLIP_HOME")
            .env_remove("PAPERCLIP_INSTANCE_ID")
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
        v["ipc"].clone()
    };
    let user = user_name();

    let ipc = status();
    assert_eq!(ipc["state"], "exposed", "{ipc}");
    assert_eq!(ipc["source"], "logind", "{ipc}");
    assert_eq!(ipc["uid"], UID, "{ipc}");
    assert_eq!(
        ipc["fix"],
        format!("sudo loginctl enable-linger {user}"),
        "{ipc}"
    );

    linger.store(true, Ordering::SeqCst);
    let ipc = status();
    assert_eq!(ipc["state"], "lingering", "{ipc}");
    assert!(ipc["fix"].is_null(), "{ipc}");

    linger.store(false, Ordering::SeqCst);
    remove_ipc.store(false, Ordering::SeqCst);
    assert_eq!(status()["state"], "remove-ipc-off");

    // logind does not know the user at all: no session, no linger.
    remove_ipc.store(true, Ordering::SeqCst);
    known.store(false, Ordering::SeqCst);
    let ipc = status();
    assert_eq!(ipc["state"], "exposed", "{ipc}");
    assert_eq!(ipc["linger"], false, "{ipc}");
}
