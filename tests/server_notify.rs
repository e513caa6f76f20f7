//! The server's own notify socket (issue 23): what the server's tree says
//! (READY, STOPPING, STATUS through the real `systemd-notify` or an
//! sd_notify library) reaches paperclipd, and only paperclipd; strangers
//! and oversized datagrams are ignored; the probes stay the only judge.
#![cfg(target_os = "linux")]

mod support;

use std::os::unix::net::UnixDatagram;

use support::*;

/// The server's NOTIFY_SOCKET, as the fixture recorded its environment.
fn servers_socket(w: &World) -> String {
    wait_until(DEADLINE, "the fixture's environment", || {
        w.state_file("env.json").is_some()
    });
    let env: serde_json::Value =
        serde_json::from_str(&w.state_file("env.json").unwrap_or_default()).expect("env.json");
    env["NOTIFY_SOCKET"]
        .as_str()
        .expect("the server has a NOTIFY_SOCKET")
        .to_string()
}

fn run_with(w: &World, fixture: &[&str], n: &NotifySocket) -> Running {
    let mut cmd = w.run_cmd(&["--stop-timeout", "10s"], fixture);
    cmd.env("NOTIFY_SOCKET", &n.path);
    w.spawn(cmd, "run")
}

fn wait_log(r: &Running, needle: &str) {
    wait_until(DEADLINE, needle, || r.stderr().contains(needle));
}

fn stop(r: &mut Running) {
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
}

#[test]
fn a_ready_from_a_grandchild_is_accepted_and_its_status_passed_on() {
    let w = World::new();
    let mut n = w.notify_socket("mgr");
    // `sh -c systemd-notify …`: the sender is not the server's main process.
    let mut r = run_with(
        &w,
        &[
            "--listen-after",
            "0.2",
            "--api-ok-after",
            "0.5",
            "--notify",
            "grandchild",
        ],
        &n,
    );
    n.wait_for("READY=1", DEADLINE);
    wait_log(&r, "notified READY=1 with STATUS=\"Listening on 127.0.0.1:");
    // The server's words reach the manager only inside our own STATUS=.
    let said = format!("Listening on 127.0.0.1:{}", w.port);
    wait_until(DEADLINE, "the server's status in ours", || {
        n.drain();
        n.all_text().contains(&said)
    });
    assert!(
        n.messages
            .iter()
            .filter(|(_, m)| m.contains(&said))
            .all(|(_, m)| m.contains("STATUS=ready")),
        "{:?}",
        n.messages
    );
    assert!(
        !r.stderr().contains("ignored a notification"),
        "{}",
        r.stderr()
    );
    stop(&mut r);
    // systemd-notify's STOPPING=1 waited for its barrier descriptor to be
    // closed: it fails after 5 s when the receiver keeps it.
    let stopping = w.state_file("stopping_notified").unwrap_or_default();
    assert!(
        stopping.starts_with("ok "),
        "stopping_notified: {stopping:?}"
    );
    assert_eq!(n.count("READY=1"), 1, "{:?}", n.messages);
}

#[test]
fn a_ready_from_a_stranger_is_ignored() {
    let w = World::new();
    let mut n = w.notify_socket("mgr");
    // The server never gets ready by itself: nothing but a forged READY=1
    // could make paperclipd say so.
    let mut r = run_with(&w, &["--api-mode", "starting-forever"], &n);
    let sock = servers_socket(&w);
    let me = UnixDatagram::unbound().expect("socket");
    me.send_to(b"READY=1\nSTOPPING=1\nSTATUS=forged by a stranger", &sock)
        .expect("send to the server's notify socket");
    wait_log(&r, "is not part of the server's process tree");
    let err = r.stderr();
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "the stranger is named: {err}"
    );
    n.drain();
    assert!(!n.all_text().contains("forged"), "{:?}", n.messages);
    assert_eq!(n.count("READY=1"), 0, "{:?}", n.messages);
    let (_, status, _) = w.status_json();
    assert_eq!(status["state"], "starting", "{status}");
    assert!(!err.contains("notified READY=1"), "{err}");
    stop(&mut r);
}

#[test]
fn an_oversized_datagram_is_dropped() {
    let w = World::new();
    let mut n = w.notify_socket("mgr");
    let mut r = run_with(
        &w,
        &[
            "--api-ok-after",
            "0.3",
            "--notify",
            "direct",
            "--notify-oversized",
        ],
        &n,
    );
    wait_log(&r, "more than the 4096 a notification may have; dropped");
    n.wait_for("READY=1", DEADLINE);
    // The real READY=1 that followed was heard.
    wait_log(&r, "notified READY=1");
    n.drain();
    assert!(!n.all_text().contains("OVERSIZED"), "{:?}", n.messages);
    assert!(!r.stderr().contains("OVERSIZED"), "{}", r.stderr());
    stop(&mut r);
}

#[test]
fn a_ready_while_the_ui_answers_503_is_not_reported_ready() {
    let w = World::new();
    let mut n = w.notify_socket("mgr");
    // The API says "ok" (and the server notifies) at 0.3 s; the UI answers
    // 503 until 1.5 s.
    let mut r = run_with(
        &w,
        &[
            "--api-ok-after",
            "0.3",
            "--ui-after",
            "1.5",
            "--ui-early-status",
            "503",
            "--notify",
            "direct",
        ],
        &n,
    );
    let ready_t = n.wait_for("READY=1", DEADLINE);
    wait_log(&r, "notified READY=1");
    let notified: f64 = w
        .state_file("notified_at")
        .and_then(|t| t.trim().parse().ok())
        .expect("notified_at");
    let ui_ok: f64 = w
        .state_file("ready_at")
        .and_then(|t| t.trim().parse().ok())
        .expect("ready_at");
    assert!(
        ui_ok - notified > 1.0,
        "the fixture notified at {notified}, the UI passes at {ui_ok}"
    );
    assert!(
        ready_t >= ui_ok,
        "READY=1 at {ready_t} before the UI passed at {ui_ok}"
    );
    stop(&mut r);
}

#[test]
fn a_stopping_from_the_server_shows_in_status_and_the_managers_status() {
    let w = World::new();
    let mut n = w.notify_socket("mgr");
    let mut r = run_with(
        &w,
        &["--notify", "direct", "--notify-stopping-after", "1.0"],
        &n,
    );
    n.wait_for("READY=1", DEADLINE);
    n.wait_for(
        "STATUS=stopping: the server said so (Stopping after drain)",
        DEADLINE,
    );
    wait_until(DEADLINE, "status to say stopping", || {
        w.status_json().1["state"] == "stopping"
    });
    let (code, status, _) = w.status_json();
    assert_eq!(code, 1, "{status}");
    let reason = status["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("the server said it is stopping")
            && reason.contains("Stopping after drain"),
        "{reason}"
    );
    assert_eq!(
        status["lock"]["record"]["stopping"]["by"], "server",
        "{status}"
    );
    let (_, out) = w.status_text();
    assert!(out.contains(": stopping ("), "{out}");
    stop(&mut r);
}

#[test]
fn a_stopping_server_keeps_the_watchdog_fed_within_its_stop_budget() {
    let w = World::new();
    let mut n = w.notify_socket("mgr");
    // After STOPPING=1 the fixture's API answers 503: a hung server for a
    // watchdog that does not listen.
    let mut cmd = w.run_cmd(
        &["--stop-timeout", "20s"],
        &["--notify", "direct", "--notify-stopping-after", "1.0"],
    );
    cmd.env("NOTIFY_SOCKET", &n.path)
        .env("WATCHDOG_USEC", "600000");
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    let said = n.wait_for("STATUS=stopping: the server said so", DEADLINE);
    let fed_after = |n: &NotifySocket| {
        n.messages
            .iter()
            .filter(|(t, m)| *t > said && m.contains("WATCHDOG=1"))
            .count()
    };
    wait_until(DEADLINE, "5 watchdog feeds after STOPPING=1", || {
        n.drain();
        fed_after(&n) >= 5
    });
    assert!(
        !n.all_text().contains("API probe failing"),
        "{:?}",
        n.messages
    );
    stop(&mut r);
}

#[test]
fn status_says_stopping_while_paperclipd_stops_the_server() {
    let w = World::new();
    let mut n = w.notify_socket("mgr");
    let mut r = run_with(&w, &["--term-delay", "3"], &n);
    n.wait_for("READY=1", DEADLINE);
    signal(r.pid(), libc::SIGTERM);
    n.wait_for("STOPPING=1", DEADLINE);
    wait_until(DEADLINE, "status to say stopping", || {
        w.status_json().1["state"] == "stopping"
    });
    let (_, status, _) = w.status_json();
    let reason = status["reason"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("paperclipd is stopping the server") && reason.contains("SIGTERM"),
        "{reason}"
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
}
