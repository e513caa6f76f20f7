//! Bad environments: a read-only file system, files that belong to someone
//! else, unusable notify sockets. Each gets a clear message and a
//! documented exit code, and nothing is overwritten. Needs root to arrange
//! them (mounts, ownership); CI runs as root.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use support::*;

const NOBODY: u32 = 65534;

fn require_root() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests arrange mounts and ownership and need root; CI runs as root"
    );
}

fn chown(p: &std::path::Path, uid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(uid)).expect("chown");
}

/// paperclipd as user `nobody`. The binary is copied next to the home
/// (the checkout may live where `nobody` cannot reach, e.g. under /root).
fn as_nobody(args: &[&str], home: &std::path::Path) -> std::process::Output {
    let dir = home.parent().expect("home has a parent").join("nobody-bin");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.join("paperclipd");
    copy_executable(bin(), &exe);
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    Command::new("setpriv")
        .args([
            "--reuid",
            &NOBODY.to_string(),
            "--regid",
            &NOBODY.to_string(),
            "--clear-groups",
            "--",
        ])
        .arg(&exe)
        .args(&args[..1])
        .arg("--home")
        .arg(home)
        .args(&args[1..])
        .env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID")
        .output()
        .expect("setpriv")
}

fn open_up(w: &World) {
    fs::set_permissions(w.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn an_instance_root_owned_by_another_user_is_refused() {
    require_root();
    let w = World::new();
    open_up(&w);
    let root = w.home().join("instances/default");
    fs::create_dir_all(&root).unwrap();
    for d in [w.home(), w.home().join("instances")] {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let o = as_nobody(
        &["run", "--url", "http://127.0.0.1:9", "--", "/bin/true"],
        &w.home(),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(78), "{err}");
    assert!(err.contains("belongs to uid 0"), "{err}");
}

#[test]
fn an_unreadable_lock_file_is_refused_and_kept() {
    require_root();
    let w = World::new();
    open_up(&w);
    let root = w.home().join("instances/default");
    fs::create_dir_all(&root).unwrap();
    for d in [w.home(), w.home().join("instances"), root.clone()] {
        chown(&d, NOBODY);
    }
    let lock = root.join("paperclipd.lock");
    fs::write(&lock, "root's").unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o600)).unwrap();
    let o = as_nobody(
        &["run", "--url", "http://127.0.0.1:9", "--", "/bin/true"],
        &w.home(),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(78), "{err}");
    assert!(err.contains("cannot open the instance lock"), "{err}");
    assert_eq!(fs::read_to_string(&lock).unwrap(), "root's");
}

/// Runs `script` in a private mount namespace; it must end in exit 78.
/// Returns its stderr.
fn config_error_in_mount_ns(script: &str) -> String {
    let o = Command::new("unshare")
        .args(["-m", "sh", "-c", script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(78), "{err}");
    err
}

#[test]
fn a_read_only_file_system_is_a_clear_config_error() {
    require_root();
    let w = World::new();
    let home = w.home();
    fs::create_dir_all(&home).unwrap();
    // A fresh read-only tmpfs: the instance directory cannot be created.
    let script = format!(
        "mount -t tmpfs -o ro tmpfs {h} && exec {bin} run --home {h} --url http://127.0.0.1:9 -- /bin/true",
        h = home.display(),
        bin = bin()
    );
    let err = config_error_in_mount_ns(&script);
    assert!(err.contains("Read-only file system"), "{err}");
    // The instance directory exists but its file system turned read-only:
    // the lock cannot be created.
    let script = format!(
        "mount -t tmpfs tmpfs {h} && mkdir -p -m 700 {h}/instances/default && mount -o remount,ro {h} && \
         exec {bin} run --home {h} --url http://127.0.0.1:9 -- /bin/true",
        h = home.display(),
        bin = bin()
    );
    let err = config_error_in_mount_ns(&script);
    assert!(err.contains("read-only"), "{err}");
}

#[test]
fn a_notify_socket_path_longer_than_sun_path_is_a_warning() {
    let long = format!("/tmp/{}", "n".repeat(200));
    World::new().notify_socket_warns_but_runs(long.as_ref(), "longer than sun_path");
}

#[test]
fn a_relative_notify_socket_is_a_warning() {
    World::new().notify_socket_warns_but_runs(
        "relative/notify.sock".as_ref(),
        "neither an absolute path nor an @abstract name",
    );
}

#[test]
fn secrets_in_the_environment_and_config_are_never_logged() {
    let w = World::new();
    let cfg = w.dir.path().join("secret.toml");
    fs::write(&cfg, "[env]\nAPI_TOKEN = \"hunter2-from-config\"\n").unwrap();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd(&["--config", cfg.to_str().unwrap()], &[]);
    cmd.env("NOTIFY_SOCKET", &n.path)
        .env("OPENAI_API_KEY", "hunter2-from-env");
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    // The server got both.
    let env: serde_json::Value = serde_json::from_str(&w.state_file("env.json").unwrap()).unwrap();
    assert_eq!(env["API_TOKEN"], "hunter2-from-config");
    assert_eq!(env["OPENAI_API_KEY"], "hunter2-from-env");
    let status = Command::new(bin())
        .args(["status", "--json", "--home"])
        .arg(w.home())
        .args(["--url", &w.url()])
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .output()
        .unwrap();
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0);
    let lock = fs::read_to_string(w.lock_path("default")).unwrap_or_default();
    for (what, text) in [
        ("stderr", r.stderr()),
        ("stdout", r.stdout()),
        ("notify messages", n.all_text()),
        (
            "status",
            String::from_utf8_lossy(&status.stdout).into_owned(),
        ),
        ("lock record", lock),
    ] {
        assert!(
            !text.contains("hunter2"),
            "a secret leaked into {what}: {text}"
        );
    }
}
