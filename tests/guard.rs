//! The server's group dies with paperclipd, whatever the server binary.
//! The kernel clears the parent-death signal when a process executes a
//! binary that grants privileges (file capabilities, setuid), so a
//! SIGKILLed paperclipd must not rely on it: its guard (a fork that never
//! executes anything) stops the group. Runs a really setcap'd binary as an
//! unprivileged user; needs root to arrange that (CI runs as root).
#![cfg(target_os = "linux")]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use support::*;

const NOBODY: u32 = 65534;

/// The effective capabilities of `pid` (`CapEff`, hex), from /proc.
fn cap_eff(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
}

/// The children of `pid`.
fn children(pid: i32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Kills `pid` if it still runs (a failed test must not leak it).
struct KillOnDrop(i32);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0 > 0 && pid_alive(self.0) {
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

/// Regression (issue 18, defect 3): a server binary with file capabilities
/// lost its parent-death signal at exec, so after `kill -KILL` of
/// paperclipd it kept running under PID 1 (and the lock was free).
#[test]
fn a_setcap_server_dies_with_a_sigkilled_paperclipd() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test sets a file capability and runs paperclipd as nobody: it needs root (CI runs as root)"
    );
    assert!(
        Command::new("setcap").arg("-v").output().is_ok(),
        "this test needs setcap (apt-get install libcap2-bin)"
    );
    let w = World::new();
    let d = w.dir.path();
    fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    // The server: a copy of sleep that grants a capability, as
    // `setcap cap_net_bind_service=+ep $(which node)` does to Node.js.
    let server = d.join("capsleep");
    copy_executable("/bin/sleep", &server);
    fs::set_permissions(&server, fs::Permissions::from_mode(0o755)).unwrap();
    let st = Command::new("setcap")
        .args(["cap_net_bind_service=+ep"])
        .arg(&server)
        .status()
        .unwrap();
    assert!(st.success(), "setcap failed on {}", server.display());
    let exe = d.join("paperclipd");
    copy_executable(bin(), &exe);
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let home = w.home();
    fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
    let run_dir = d.join("run");
    fs::create_dir_all(&run_dir).unwrap();
    std::os::unix::fs::chown(&run_dir, Some(NOBODY), Some(NOBODY)).unwrap();

    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "--",
    ])
    .arg(&exe)
    .args(["run", "--home"])
    .arg(&home)
    .args(["--url", &w.url(), "--ready-timeout", "120s", "--"])
    .arg(&server)
    .arg("1000")
    .env_remove("NOTIFY_SOCKET")
    .env_remove("PAPERCLIP_HOME")
    .env_remove("PAPERCLIP_INSTANCE_ID")
    .env_remove("INVOCATION_ID")
    .env("XDG_RUNTIME_DIR", &run_dir)
    .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
    .stdin(std::process::Stdio::null());
    let mut r = w.spawn(cmd, "run");
    let paperclipd = r.pid() as i32;
    let mut found = None;
    wait_until(DEADLINE, "the setcap'd server to run", || {
        found = children(paperclipd)
            .into_iter()
            .find(|c| fs::read_link(format!("/proc/{c}/exe")).is_ok_and(|e| e == server));
        found.is_some() || r.child.try_wait().ok().flatten().is_some()
    });
    let sleeper = found.unwrap_or_else(|| panic!("no server started:\n{}", r.stderr()));
    let _cleanup = KillOnDrop(sleeper);
    // The capability took effect: this is the exec that clears the
    // parent-death signal, not a plain one.
    assert!(
        cap_eff(sleeper).is_some_and(|c| c & (1 << 10) != 0),
        "the server runs without CAP_NET_BIND_SERVICE (is the filesystem mounted nosuid?): {:?}",
        cap_eff(sleeper)
    );
    let uid = fs::read_to_string(format!("/proc/{sleeper}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .map(str::to_string)
        .unwrap();
    assert!(uid.contains("65534"), "the server is not nobody's: {uid}");

    signal(paperclipd as u32, libc::SIGKILL);
    let _ = r.wait();
    wait_until(
        Duration::from_secs(15),
        "the server to die with paperclipd",
        || !pid_alive(sleeper),
    );
}
