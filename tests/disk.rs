//! The free-space preflight on a real small filesystem: a tmpfs mounted in
//! a private mount namespace (`unshare -m`), so nothing outlives the test.
//! Needs root; CI runs as root.
#![cfg(target_os = "linux")]

mod support;

use std::fs;
use std::process::Command;

use support::*;

fn require_root() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests mount a tmpfs and need root; CI runs as root"
    );
}

/// `sh -c SCRIPT` in a new mount namespace where the world's home is an
/// 8 MiB tmpfs; `$PCD` is paperclipd, `$HOME_DIR` the home.
fn on_small_tmpfs(w: &World, script: &str) -> Command {
    fs::create_dir_all(w.home()).unwrap();
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size=8m tmpfs \"$HOME_DIR\" && {script}"
        ))
        .env("PCD", bin())
        .env("HOME_DIR", w.home())
        .env("XDG_RUNTIME_DIR", w.dir.path())
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID")
        .env_remove("NOTIFY_SOCKET");
    c
}

fn fixture_cmd(w: &World) -> String {
    format!(
        "-- python3 {} --port {} --state-dir {}",
        fixture().display(),
        w.port,
        w.state().display()
    )
}

#[test]
fn below_the_minimum_run_exits_73_naming_the_filesystem_free_and_required() {
    require_root();
    let w = World::new();
    let o = on_small_tmpfs(
        &w,
        &format!(
            "exec \"$PCD\" run --home \"$HOME_DIR\" --url {} {}",
            w.url(),
            fixture_cmd(&w)
        ),
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(73), "{err}");
    assert!(err.contains("tmpfs filesystem mounted on"), "{err}");
    assert!(err.contains(&w.home().display().to_string()), "{err}");
    assert!(err.contains("free on"), "{err}");
    assert!(err.contains("at least 1.0 GiB"), "{err}");
    assert!(err.contains("--min-free"), "{err}");
    assert!(w.fixture_pid().is_none(), "no server was started");
    assert!(!w.lock_path("default").exists(), "refused before the lock");
}

#[test]
fn status_warns_below_the_minimum() {
    require_root();
    let w = World::new();
    let o = on_small_tmpfs(
        &w,
        &format!(
            "\"$PCD\" status --home \"$HOME_DIR\" --url {} --json; echo; exec \"$PCD\" status --home \"$HOME_DIR\" --url {}",
            w.url(),
            w.url()
        ),
    )
    .output()
    .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "stopped: {out}");
    let json_end = out.find("\n}\n").expect("the JSON document") + 2;
    let v: serde_json::Value = serde_json::from_str(&out[..json_end]).unwrap();
    assert_eq!(v["disk"]["low"], true, "{v}");
    assert_eq!(v["disk"]["fs_type"], "tmpfs", "{v}");
    assert_eq!(v["disk"]["min_free_bytes"], 1u64 << 30, "{v}");
    assert!(v["disk"]["free_bytes"].as_u64().unwrap() <= 8 << 20, "{v}");
    let text = &out[json_end..];
    assert!(text.contains("disk:   warning: only"), "{text}");
    assert!(text.contains("below the minimum of 1.0 GiB"), "{text}");
}

#[test]
fn a_lower_minimum_or_0_lets_it_start() {
    require_root();
    for (flag, toml) in [("--min-free 1MiB", None), ("", Some("min_free = 0\n"))] {
        let w = World::new();
        let mut n = w.notify_socket("n");
        let write_toml = match toml {
            Some(t) => format!(
                "mkdir -p \"$HOME_DIR/instances/default\" && chmod 700 \"$HOME_DIR/instances/default\" && printf '{}' > \"$HOME_DIR/instances/default/paperclipd.toml\" && ",
                t.replace('\n', "\\n")
            ),
            None => String::new(),
        };
        let mut c = on_small_tmpfs(
            &w,
            &format!(
                "{write_toml}exec \"$PCD\" run --home \"$HOME_DIR\" --url {} {flag} {}",
                w.url(),
                fixture_cmd(&w)
            ),
        );
        c.env("NOTIFY_SOCKET", &n.path);
        let mut r = w.spawn(c, "run");
        n.wait_for("READY=1", DEADLINE);
        signal(r.pid(), libc::SIGTERM);
        assert_eq!(r.code(), 0, "{flag:?} {toml:?}: {}", r.stderr());
    }
}
