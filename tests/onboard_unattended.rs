//! `run --onboard-bind` (a container's first start): an empty home is set
//! up without a terminal and without questions (`paperclipai onboard --yes
//! --bind BIND`; `tests/fixture/paperclipai.py` stands in for Paperclip's),
//! the onboarding process is served as the server, a SIGTERM stops it in
//! order, and the next start runs `paperclipai run` without onboarding.
#![cfg(target_os = "linux")]

mod support;

use std::fs;
use std::process::{Command, Stdio};

use support::*;

fn fake_paperclipai() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture/paperclipai.py")
}

/// `paperclipd run` of the default command (the fake `paperclipai`), no
/// terminal, with `extra` args and `env`.
fn run_default(w: &World, extra: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(bin());
    c.arg("run").arg("--home").arg(w.home()).args(extra);
    c.env("PAPERCLIP_SHIM_PATH", fake_paperclipai())
        .env("FAKE_PORT", w.port.to_string())
        .env("FAKE_STATE_DIR", w.state())
        .env("XDG_RUNTIME_DIR", w.dir.path())
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent");
    for k in [
        "PAPERCLIP_HOME",
        "PAPERCLIP_INSTANCE_ID",
        "PAPERCLIPD_ONBOARD_BIND",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "INVOCATION_ID",
    ] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(Stdio::null());
    c
}

#[test]
fn onboard_bind_sets_up_an_empty_home_without_a_terminal_then_serves() {
    let w = World::new();
    let mut n = w.notify_socket("n1");
    let mut cmd = run_default(&w, &["--onboard-bind", "lan"], &[]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "first");
    n.wait_for("READY=1", DEADLINE);
    assert_eq!(
        w.state_file("onboard-args").as_deref(),
        Some("--no-install-service --yes --bind lan"),
        "{}",
        r.stderr()
    );
    let config = fs::read_to_string(w.home().join("instances/default/config.json")).unwrap();
    assert!(config.contains("0.0.0.0"), "{config}");
    assert!(
        r.stderr().contains("onboarding started the server itself"),
        "{}",
        r.stderr()
    );
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(
        w.state_file("signals")
            .unwrap_or_default()
            .starts_with("SIGTERM"),
        "the server got SIGTERM, not SIGKILL: {}",
        r.stderr()
    );

    // Second start: set up already, so `paperclipai run`, no onboarding.
    fs::remove_file(w.state().join("onboard-args")).unwrap();
    let mut n = w.notify_socket("n2");
    let mut cmd = run_default(&w, &["--onboard-bind", "lan"], &[]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "second");
    n.wait_for("READY=1", DEADLINE);
    assert!(w.state_file("onboard-args").is_none(), "onboarded again");
    assert!(!r.stderr().contains("not set up yet"), "{}", r.stderr());
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
}

#[test]
fn the_environment_variable_does_the_same_and_loopback_binds_loopback() {
    let w = World::new();
    let mut n = w.notify_socket("n");
    let mut cmd = run_default(&w, &[], &[("PAPERCLIPD_ONBOARD_BIND", "loopback")]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "env");
    n.wait_for("READY=1", DEADLINE);
    assert_eq!(
        w.state_file("onboard-args").as_deref(),
        Some("--no-install-service --yes --bind loopback")
    );
    let config = fs::read_to_string(w.home().join("instances/default/config.json")).unwrap();
    assert!(config.contains("127.0.0.1"), "{config}");
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
}

#[test]
fn without_it_and_without_a_terminal_the_error_names_it() {
    let w = World::new();
    let o = run_default(&w, &[], &[]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(78), "{err}");
    assert!(err.contains("--onboard-bind"), "{err}");
    assert!(w.state_file("onboard-args").is_none());
}

#[test]
fn a_bad_bind_is_a_usage_error() {
    let w = World::new();
    let o = run_default(&w, &["--onboard-bind", "everywhere"], &[])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("loopback") && err.contains("lan"), "{err}");
}
