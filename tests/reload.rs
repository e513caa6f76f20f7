//! `paperclipd reload`: upstream's hot restart in place, against the
//! fixture that plays the protocol (`--hot-restart --agent`: an agent run
//! in a session of its own, left alive on a matching intent, adopted by
//! the next server, which writes the report), with a real NOTIFY_SOCKET.
#![cfg(target_os = "linux")]

mod support;

use std::process::{Command, Output};

use support::*;

fn reload(w: &World, extra: &[&str]) -> Output {
    Command::new(bin())
        .arg("reload")
        .arg("--home")
        .arg(w.home())
        .args(extra)
        .env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID")
        .output()
        .expect("run paperclipd reload")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn agent(w: &World) -> i32 {
    wait_until(DEADLINE, "the agent to start", || {
        w.state_file("agent.pid").is_some()
    });
    w.state_file("agent.pid")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn instance_file(w: &World, name: &str) -> std::path::PathBuf {
    w.home().join("instances/default").join(name)
}

/// A run of the fixture that plays the protocol, ready, with its agent.
/// `ready_timeout` also bounds the new server's start after a reload.
fn start(
    w: &World,
    notify: &mut NotifySocket,
    ready_timeout: &str,
    extra_fixture: &[&str],
) -> (Running, i32) {
    let mut fixture = vec!["--hot-restart", "--agent", "--api-ok-after", "0.8"];
    fixture.extend_from_slice(extra_fixture);
    let mut cmd = w.run_cmd(&["--ready-timeout", ready_timeout], &fixture);
    cmd.env("NOTIFY_SOCKET", &notify.path);
    let r = w.spawn(cmd, "run");
    let agent = agent(w);
    notify.wait_for("READY=1", DEADLINE);
    (r, agent)
}

fn server_pid(w: &World) -> i32 {
    w.fixture_pid().unwrap_or(0)
}

#[test]
fn a_reload_keeps_the_agent_replaces_the_server_and_is_ready_only_after_both_probes() {
    let w = World::new();
    let mut notify = w.notify_socket("n");
    let (mut run, agent) = start(&w, &mut notify, "30s", &[]);
    let old = server_pid(&w);
    let before = notify.messages.len();

    let out = reload(&w, &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{stderr}\n{}",
        run.stderr()
    );
    let run_id = format!("run-{agent}");
    assert!(
        stdout.contains(&format!("1 run(s) adopted ({run_id})")),
        "{stdout}"
    );
    let new = server_pid(&w);
    assert_ne!(new, old, "the server was not replaced");
    assert!(!pid_alive(old), "the old server still runs");
    assert!(pid_alive(agent), "the agent run was ended by the reload");
    assert_eq!(
        w.state_file("adopted").unwrap_or_default().trim(),
        run_id,
        "the new server did not adopt the run"
    );
    // The server's own rule: only a matching intent leaves runs alive.
    assert_eq!(
        w.state_file("shutdown_mode").as_deref(),
        Some("hot_restart")
    );

    // RELOADING=1 with MONOTONIC_USEC, then READY=1 only once the new
    // server's API said "ok" (0.8 s after it started).
    notify.drain();
    let after: Vec<_> = notify.messages[before..].to_vec();
    let reloading = after
        .iter()
        .position(|(_, m)| m.lines().any(|l| l == "RELOADING=1"))
        .unwrap_or_else(|| panic!("no RELOADING=1 in {after:?}"));
    assert!(
        after[reloading].1.contains("MONOTONIC_USEC="),
        "{:?}",
        after[reloading]
    );
    let ready = after
        .iter()
        .position(|(_, m)| m.lines().any(|l| l == "READY=1"))
        .unwrap_or_else(|| panic!("no READY=1 after the reload in {after:?}"));
    assert!(ready > reloading, "{after:?}");
    let ready_at: f64 = w
        .state_file("ready_at")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(f64::MAX);
    assert!(
        after[ready].0 >= ready_at,
        "READY=1 at {} before the new server was ready at {ready_at}",
        after[ready].0
    );

    // status shows the last reload.
    let (_, st, _) = w.status_json();
    assert_eq!(st["reload"]["phase"], "reloaded", "{st}");
    assert_eq!(st["reload"]["report"]["adoptedRunIds"][0], run_id, "{st}");

    // A normal stop afterwards leaves nothing: the new server stops the
    // run it adopted.
    signal(run.pid(), libc::SIGTERM);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(!pid_alive(agent), "the agent outlived the stop");
    assert!(!pid_alive(new));
    assert!(!instance_file(&w, "paperclipd.sock").exists());
    assert!(!instance_file(&w, "hot-restart.lock").exists());
}

#[test]
fn a_drain_reload_ends_the_run() {
    let w = World::new();
    let mut notify = w.notify_socket("n");
    let (mut run, agent) = start(&w, &mut notify, "30s", &[]);
    let out = reload(&w, &["--drain"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("0 run(s) adopted"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        w.state_file("shutdown_mode").as_deref(),
        Some("drain_required")
    );
    wait_until(DEADLINE, "the drained agent to end", || !pid_alive(agent));
    signal(run.pid(), libc::SIGTERM);
    assert_eq!(run.code(), 0);
}

#[test]
fn an_intent_naming_another_pid_ends_the_run_on_stop() {
    let w = World::new();
    let mut notify = w.notify_socket("n");
    let (mut run, agent) = start(&w, &mut notify, "30s", &[]);
    // What upstream's CLI would write under a supervisor: the manager's
    // main pid (paperclipd's), not the server's.
    let intent = serde_json::json!({
        "version": 1, "requestedAt": "2026-12-06T00:00:00.000Z",
        "previousServerPid": run.pid(), "drainRequired": false,
    });
    std::fs::write(
        instance_file(&w, "hot-restart-intent.json"),
        intent.to_string(),
    )
    .expect("write intent");
    signal(run.pid(), libc::SIGTERM);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(
        w.state_file("shutdown_mode").as_deref(),
        Some("pid_mismatch")
    );
    assert!(!pid_alive(agent), "the agent outlived the stop");
}

#[test]
fn a_new_server_that_never_gets_ready_fails_the_reload_and_stops_the_adopted_run() {
    let w = World::new();
    let mut notify = w.notify_socket("n");
    // Long enough for the first start on a loaded machine.
    let (mut run, agent) = start(&w, &mut notify, "8s", &["--never-ready-after-hot-restart"]);
    let out = reload(&w, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("the reload failed"), "{stderr}");
    assert!(stderr.contains("not ready within"), "{stderr}");
    assert!(stderr.contains("status=\"starting\""), "{stderr}");
    assert!(stderr.contains("carried over"), "{stderr}");
    assert_eq!(run.code(), 69, "{}", run.stderr());
    assert!(
        !pid_alive(agent),
        "the adopted run outlived the failed reload"
    );
    let state =
        std::fs::read_to_string(instance_file(&w, "paperclipd-reload.json")).unwrap_or_default();
    assert!(state.contains("\"failed\""), "{state}");
}

#[test]
fn reload_of_an_instance_that_does_not_run_exits_3() {
    let w = World::new();
    std::fs::create_dir_all(w.home().join("instances/default")).expect("mkdir");
    let out = reload(&w, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not running under paperclipd"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn restart_of_a_running_instance_is_a_hot_restart_and_full_says_what_it_ends() {
    let w = World::new();
    let mut notify = w.notify_socket("n");
    let (mut run, agent) = start(&w, &mut notify, "30s", &[]);
    let old = server_pid(&w);
    let out = Command::new(bin())
        .args(["restart", "--home"])
        .arg(w.home())
        .output()
        .expect("run paperclipd restart");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("restarting in place"), "{stderr}");
    assert!(
        text(&out.stdout).contains("1 run(s) adopted"),
        "{}",
        text(&out.stdout)
    );
    assert_ne!(server_pid(&w), old);
    assert!(pid_alive(agent), "restart ended the agent run");

    // --full warns before it acts (the manager is unreachable here, so it
    // then fails: nothing was stopped).
    let out = Command::new(bin())
        .args(["restart", "--full", "--home"])
        .arg(w.home())
        .env("XDG_RUNTIME_DIR", w.dir.path())
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}/nobus", w.dir.path().display()),
        )
        .output()
        .expect("run paperclipd restart --full");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("ends its 1 running agent run(s)"),
        "{stderr}"
    );
    assert!(pid_alive(agent));
    signal(run.pid(), libc::SIGTERM);
    assert_eq!(run.code(), 0);
    assert!(!pid_alive(agent));
}

/// Regression: a connection that sends nothing (a client probing the
/// socket, or a stuck one) made a real reload right after it fail with
/// 75 "already in progress" (seen in the full suite: `restart` probed the
/// socket before reloading).
#[test]
fn a_silent_connection_does_not_hold_up_a_reload() {
    let w = World::new();
    let mut notify = w.notify_socket("n");
    let (mut run, agent) = start(&w, &mut notify, "30s", &[]);
    let silent = std::os::unix::net::UnixStream::connect(instance_file(&w, "paperclipd.sock"))
        .expect("connect");
    let out = reload(&w, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(pid_alive(agent));
    drop(silent);
    signal(run.pid(), libc::SIGTERM);
    assert_eq!(run.code(), 0);
}
