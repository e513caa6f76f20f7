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
    isolate(&mut c, w);
    c
}

/// The environment every command here runs with: HOME in the world, no
/// reachable bus, no inherited instance or notify settings.
fn isolate(c: &mut Command, w: &World) {
    c.env("HOME", w.dir.path())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID")
        .env_remove("INVOCATION_ID")
        .env("XDG_RUNTIME_DIR", w.dir.path())
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}/nobus", w.dir.path().display()),
        );
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
    // /bin/echo exits 0 before it was ever ready: run says 70 (EX_SOFTWARE).
    // A panic was 101 (134 in a release build, which aborts).
    assert_eq!(o.status.code(), Some(70), "{err}");
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

#[test]
fn a_control_character_in_a_unit_value_is_refused_not_rendered() {
    // Not under /tmp: `install` refuses to pin a paperclipai there.
    let w = World::new_in(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("inputs"));
    let home = w.dir.path().join("h\nExecStartPre=/bin/touch /tmp/pwned");
    let o = paperclipd(&w)
        .args(["install", "--dry-run", "--home"])
        .arg(&home)
        .env("XDG_RUNTIME_DIR", w.dir.path().join("run"))
        .env("PAPERCLIP_SHIM_PATH", wrapper_shim(&w))
        .output()
        .expect("run paperclipd install");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(
        !out.lines().any(|l| l.starts_with("ExecStartPre=")),
        "a directive was injected:\n{out}"
    );
    assert_eq!(o.status.code(), Some(78), "{err}\n{out}");
    assert!(
        err.contains("PAPERCLIP_HOME") && err.contains("control character"),
        "{err}"
    );
}

#[test]
fn a_dollar_in_paperclipds_path_is_escaped_in_exec_start() {
    // Not under /tmp: `install` refuses to pin a paperclipai there.
    let w = World::new_in(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("inputs"));
    let dir = w.dir.path().join("a$HOME b");
    fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("paperclipd");
    copy_executable(bin(), &exe);
    let o = Command::new(&exe)
        .args(["install", "--dry-run"])
        .env("HOME", w.dir.path())
        .env_remove("PAPERCLIP_HOME")
        .env("PAPERCLIP_SHIM_PATH", wrapper_shim(&w))
        .output()
        .expect("run the copied paperclipd");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let exec = out
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("an ExecStart line");
    // systemd expands $HOME in ExecStart; $$ is a literal dollar.
    assert!(exec.contains("a$$HOME b/paperclipd"), "{exec}");
    assert!(!exec.replace("$$", "").contains('$'), "{exec}");
}

/// `run` of a plain HTTP server bound to `::1` only (api-only, probe `/`),
/// with extra flags; the run must become ready, then stop with 0.
fn ready_on_ipv6_loopback_only(w: &World, flags: &[&str]) {
    assert!(
        std::net::TcpListener::bind(("::1", 0)).is_ok(),
        "this test needs IPv6 on the loopback interface (::1)"
    );
    let port = w.port.to_string();
    let mut n = w.notify_socket("notify");
    let mut cmd = paperclipd(w);
    cmd.arg("run").arg("--home").arg(w.home());
    cmd.args(flags).args([
        "--mode",
        "api-only",
        "--api-path",
        "/",
        "--ready-timeout",
        "10s",
        "--",
        "python3",
        "-m",
        "http.server",
        &port,
        "--bind",
        "::1",
        "--directory",
    ]);
    cmd.arg(w.dir.path()).env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "run");
    wait_until(DEADLINE, "READY=1 or the end of the run", || {
        n.drain();
        n.count("READY=1") > 0 || r.child.try_wait().ok().flatten().is_some()
    });
    assert_eq!(n.count("READY=1"), 1, "{}", r.stderr());
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
}

#[test]
fn localhost_is_probed_on_every_loopback_address_it_names() {
    let w = World::new();
    let url = format!("http://localhost:{}", w.port);
    ready_on_ipv6_loopback_only(&w, &["--url", &url]);
}

#[test]
fn a_config_json_host_of_localhost_is_not_narrowed_to_127_0_0_1() {
    let w = World::new();
    let root = w.home().join("instances/default");
    fs::create_dir_all(&root).unwrap();
    fs::write(
        root.join("config.json"),
        format!(r#"{{"server":{{"host":"localhost","port":{}}}}}"#, w.port),
    )
    .unwrap();
    ready_on_ipv6_loopback_only(&w, &[]);
}

const NOBODY: u32 = 65534;

fn require_root() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test arranges ownership and other users' processes and needs root; CI runs as root"
    );
}

/// paperclipd as user `nobody`, from a copy of the binary in the world's
/// directory (the checkout may be unreachable for nobody); the world's
/// directory is opened up so that nobody can reach the copy.
fn paperclipd_as_nobody(w: &World) -> Command {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(w.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let exe = w.dir.path().join("paperclipd");
    copy_executable(bin(), &exe);
    let id = NOBODY.to_string();
    let mut c = Command::new("setpriv");
    c.args(["--reuid", &id, "--regid", &id, "--clear-groups", "--"])
        .arg(exe);
    isolate(&mut c, w);
    c
}

fn chown_nobody(p: &std::path::Path) {
    fs::create_dir_all(p).unwrap();
    std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
}

#[test]
fn a_listener_of_another_user_that_cannot_be_inspected_is_foreign() {
    require_root();
    let w = World::new();
    chown_nobody(&w.home());
    chown_nobody(&w.state());
    let started = w.state().join("started");
    let mut cmd = paperclipd_as_nobody(&w);
    cmd.arg("run").arg("--home").arg(w.home()).args([
        "--url",
        &w.url(),
        "--mode",
        "api-only",
        "--api-path",
        "/",
        "--ready-timeout",
        "20s",
        "--",
        "/bin/sh",
        "-c",
        "touch \"$0\" && exec sleep 60",
    ]);
    cmd.arg(&started);
    let mut r = w.spawn(cmd, "run");
    wait_until(DEADLINE, "our server (as nobody) to start", || {
        started.exists()
    });
    // Now root takes the port, as if our server had drifted elsewhere and a
    // stranger answered: nobody cannot read root's descriptors.
    let mut stranger = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &w.port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--directory")
        .arg(w.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start root's server");
    wait_until(DEADLINE, "paperclipd to decide", || {
        r.stderr().contains("ready after") || r.child.try_wait().ok().flatten().is_some()
    });
    let _ = stranger.kill();
    let _ = stranger.wait();
    let err = r.stderr();
    assert!(
        !err.contains("ready after"),
        "root's server was reported ready:\n{err}"
    );
    assert_eq!(r.code(), 75, "{err}");
    assert!(err.contains("root (uid 0)"), "{err}");
}

/// `run` as root against an instance or config file of `nobody`'s must
/// refuse before anything of theirs runs: its server command (here, one
/// that leaves a marker) would run with root's privileges.
fn root_refuses(w: &World, extra: &[&str], needle: &str) {
    let marker = w.dir.path().join("ran-as-root");
    let o = paperclipd(w)
        .arg("run")
        .arg("--home")
        .arg(w.home())
        .args(["--url", &w.url()])
        .args(extra)
        .args(["--", "/bin/sh", "-c", "touch \"$0\""])
        .arg(&marker)
        .output()
        .expect("run paperclipd");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!marker.exists(), "the server ran as root:\n{err}");
    assert_eq!(o.status.code(), Some(78), "{err}");
    assert!(err.contains(needle), "{err}");
    assert!(err.contains("nobody (uid 65534)"), "{err}");
}

#[test]
fn root_refuses_to_run_another_users_instance() {
    require_root();
    let w = World::new();
    let root = w.home().join("instances/default");
    for d in [w.home(), w.home().join("instances"), root.clone()] {
        chown_nobody(&d);
    }
    root_refuses(&w, &[], "instances/default");
    assert!(
        !root.join("paperclipd.lock").exists(),
        "nothing was created"
    );
}

#[test]
fn root_refuses_to_create_an_instance_in_another_users_home() {
    require_root();
    let w = World::new();
    chown_nobody(&w.home());
    root_refuses(&w, &[], "belongs to nobody");
    assert!(!w.home().join("instances").exists(), "nothing was created");
}

#[test]
fn root_refuses_another_users_config_file() {
    require_root();
    let w = World::new();
    let cfg = w.dir.path().join("theirs.toml");
    fs::write(&cfg, "stop_timeout = \"5s\"\n").unwrap();
    std::os::unix::fs::chown(&cfg, Some(NOBODY), Some(NOBODY)).unwrap();
    root_refuses(&w, &["--config", cfg.to_str().unwrap()], "theirs.toml");
}

/// `install` needs Paperclip installed; a wrapper script (not a Node.js
/// script) is pinned as it is, without a Node.js check (tests/runtime.rs
/// covers that).
fn wrapper_shim(w: &World) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let shim = w.dir.path().join("bin/paperclipai");
    fs::create_dir_all(shim.parent().unwrap()).unwrap();
    fs::write(&shim, "#!/bin/sh\nexit 9\n").unwrap();
    fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).unwrap();
    shim
}
