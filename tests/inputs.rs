//! Inputs that must not break a run or leak into what paperclipd writes:
//! arguments that are not UTF-8, control characters and `$` in values
//! rendered into unit files and plists, hosts that resolve to several
//! addresses, and instances that belong to someone else.

mod support;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use support::*;

/// `paperclipd ARGS…` with no bus, no inherited instance settings.
fn paperclipd(w: &World) -> Command {
    let mut c = Command::new(bin());
    c.env_remove("NOTIFY_SOCKET")
        .env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID")
        .env_remove("INVOCATION_ID")
        .env("XDG_RUNTIME_DIR", w.dir.path())
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}/nobus", w.dir.path().display()),
        );
    c
}

#[test]
fn a_non_utf8_server_argument_does_not_panic() {
    let w = World::new();
    let o = paperclipd(&w)
        .arg("run")
        .arg("--home")
        .arg(w.home())
        .args(["--url", &w.url(), "--", "/bin/echo"])
        .arg(OsStr::from_bytes(b"caf\xe9"))
        .output()
        .expect("run paperclipd");
    let err = String::from_utf8_lossy(&o.stderr);
    // /bin/echo exits 0 on its own: so does run. A panic was 101 (134 in a
    // release build, which aborts).
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        o.stdout, b"caf\xe9\n",
        "the argument reached the server unchanged"
    );
}

#[test]
fn a_non_utf8_home_is_shown_lossily_in_the_lock_record() {
    let w = World::new();
    let home = w.dir.path().join(OsStr::from_bytes(b"h\xff"));
    let mut n = w.notify_socket("notify");
    let mut cmd = paperclipd(&w);
    cmd.arg("run")
        .arg("--home")
        .arg(&home)
        .args(["--url", &w.url(), "--", "python3"])
        .arg(fixture())
        .args(["--port", &w.port.to_string(), "--state-dir"])
        .arg(w.state())
        .env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    let record: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(home.join("instances/default/paperclipd.lock")).expect("lock record"),
    )
    .expect("the record is JSON");
    let command: Vec<&str> = record["command"]
        .as_array()
        .expect("command is a list")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(
        command.iter().any(|a| a.ends_with("/h\u{FFFD}")),
        "{record}"
    );
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
}
