#![cfg(target_os = "linux")]
//! `paperclipd run` as PID 1 of a container (a new PID namespace made with
//! `unshare --pid --fork --mount-proc`): PID 1 has no default signal
//! actions and inherits every orphan, so it must handle SIGTERM itself and
//! reap every zombie. Needs root (CI runs as root); fails clearly otherwise.

mod support;

use support::*;

/// A new PID namespace with its own /proc: paperclipd is PID 1 inside.
const UNSHARE_PID: &[&str] = &["unshare", "--pid", "--fork", "--mount-proc", "--"];

fn require_root() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the PID 1 tests need root to create a PID namespace (unshare --pid); CI runs them as root"
    );
}

/// The process of `unshare` is the namespace's parent; paperclipd is its
/// only child, PID 1 inside.
fn pid1_of(unshare_pid: u32) -> Option<i32> {
    let children =
        std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

fn zombies_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                let rest = s.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
                let f: Vec<&str> = rest.split_whitespace().collect();
                f.first() == Some(&"Z")
                    && f.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(parent)
            })
        })
        .collect()
}

#[test]
fn as_pid1_it_reaps_orphans_and_stops_on_sigterm() {
    require_root();
    let w = World::new();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd_via(UNSHARE_PID, &[], &["--orphans", "5"]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "pid1");
    n.wait_for("READY=1", DEADLINE);
    let pid1 = pid1_of(r.pid()).expect("paperclipd runs inside the namespace");
    // The orphans exit 0.3 s after they were made; as PID 1 we must reap
    // them (a zombie whose parent is our PID 1 would stay forever).
    let orphans: Vec<String> = w
        .state_file("orphans")
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(orphans.len(), 5);
    wait_until(DEADLINE, "the orphans to exit and be reaped", || {
        zombies_of(pid1).is_empty() && only_the_server_left(pid1)
    });
    // The record says it runs as PID 1 of a container.
    let rec = std::fs::read_to_string(w.lock_path("default")).unwrap();
    assert!(rec.contains("\"manager\": \"container\""), "{rec}");
    // SIGTERM reaches PID 1 (it has a handler; PID 1 ignores default actions).
    signal(pid1 as u32, libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(
        w.state_file("signals")
            .unwrap_or_default()
            .starts_with("SIGTERM")
    );
    // It says how long the engine must wait before its SIGKILL.
    assert!(
        r.stderr()
            .contains("SIGTERM may take up to 45s (the stop timeout 30s plus cleanup)")
            && r.stderr().contains("`--stop-timeout 45`"),
        "{}",
        r.stderr()
    );
}

/// PID 1 has one child left: the server (orphans, alive or zombie, are
/// children too until they exit and are reaped), besides its group guard.
fn only_the_server_left(pid1: i32) -> bool {
    let children =
        std::fs::read_to_string(format!("/proc/{pid1}/task/{pid1}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter(|c| {
            std::fs::read_to_string(format!("/proc/{c}/comm"))
                .map_or(true, |comm| comm.trim() != "paperclipd-grd")
        })
        .count()
        <= 1
}

#[test]
fn as_pid1_the_servers_exit_code_is_passed_on() {
    require_root();
    let w = World::new();
    let cmd = w.run_cmd_via(
        UNSHARE_PID,
        &[],
        &["--exit-after", "0.5", "--exit-code", "7"],
    );
    let mut r = w.spawn(cmd, "pid1");
    assert_eq!(r.code(), 7, "{}", r.stderr());
}

#[test]
fn as_a_subreaper_it_reaps_the_servers_orphans() {
    let w = World::new();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd(&[], &["--orphans", "5"]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    let me = r.pid() as i32;
    wait_until(DEADLINE, "the adopted orphans to be reaped", || {
        zombies_of(me).is_empty() && only_the_server_left(me)
    });
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0);
}
