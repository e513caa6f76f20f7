//! A FIFO (or anything else that is not a regular file) where paperclipd
//! expects a file: nothing hangs. `run` refuses it with 78 naming it;
//! `status`, `probe` and `status --all` answer, `status` with a line of
//! its own for that instance, `--all` with the other instances too.
//! Opening a FIFO for reading blocks until a writer comes: before the fix
//! every one of these waited for ever.
#![cfg(target_os = "linux")]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

/// Longer than any of these commands takes on a loaded machine, far
/// shorter than for ever.
const HANG: Duration = Duration::from_secs(20);

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(st.success(), "mkfifo {}", path.display());
}

/// An instance directory with a `config.json` naming `port`.
fn instance(w: &World, id: &str, port: u16) -> PathBuf {
    let root = w.home().join("instances").join(id);
    fs::create_dir_all(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(
        root.join("config.json"),
        format!(r#"{{"server":{{"host":"127.0.0.1","port":{port}}}}}"#),
    )
    .unwrap();
    root
}

/// Runs `paperclipd SUB --home HOME ARGS`, failing the test if it has not
/// exited within [`HANG`]: (exit code, stdout, stderr).
fn paperclipd(w: &World, name: &str, sub: &str, args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(bin());
    c.arg(sub).arg("--home").arg(w.home()).args(args);
    c.env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("INVOCATION_ID")
        .env("XDG_RUNTIME_DIR", w.dir.path())
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}/nobus", w.dir.path().display()),
        )
        .stdin(Stdio::null());
    finish(w, c, name)
}

fn finish(w: &World, c: Command, name: &str) -> (i32, String, String) {
    let mut r = w.spawn(c, name);
    let start = std::time::Instant::now();
    loop {
        if let Some(st) = r.child.try_wait().expect("try_wait") {
            let code = st.code().unwrap_or(-1);
            return (code, r.stdout(), r.stderr());
        }
        if start.elapsed() > HANG {
            let _ = r.child.kill();
            panic!(
                "`paperclipd {name}` hangs (still running after {HANG:?})\n--- stdout:\n{}\n--- stderr:\n{}",
                r.stdout(),
                r.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_fifo_at_the_lock_path_hangs_no_status_and_no_probe() {
    let w = World::new();
    let root = instance(&w, "default", w.port);
    let lock = root.join("paperclipd.lock");
    mkfifo(&lock);
    let named = |s: &str| s.contains(&lock.display().to_string()) && s.contains("FIFO");

    let (code, out, err) = paperclipd(&w, "status", "status", &[]);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("lock:"))
        .unwrap_or_else(|| panic!("no lock line: {out}{err}"));
    assert!(named(line), "the lock line does not name the FIFO: {out}");
    assert_eq!(code, 3, "{out}{err}");

    let (_, out, err) = paperclipd(&w, "status-json", "status", &["--json"]);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert!(
        v["lock_error"].as_str().is_some_and(named),
        "no lock_error naming the FIFO: {out}"
    );

    let (code, out, err) = paperclipd(&w, "probe", "probe", &[]);
    assert_eq!(code, 1, "nothing listens: {out}{err}");

    let mut run = w.run_cmd(&[], &[]);
    run.stdout(Stdio::null());
    let (code, _, err) = finish(&w, run, "run");
    assert_eq!(code, 78, "{err}");
    assert!(named(&err), "{err}");
}

#[test]
fn one_instance_with_fifos_neither_hangs_nor_hides_the_others_in_status_all() {
    let w = World::new();
    mkfifo(&instance(&w, "bad-lock", free_port()).join("paperclipd.lock"));
    let bad_config = instance(&w, "bad-config", free_port()).join("config.json");
    fs::remove_file(&bad_config).unwrap();
    mkfifo(&bad_config);
    let bad_toml = instance(&w, "bad-toml", free_port()).join("paperclipd.toml");
    mkfifo(&bad_toml);
    mkfifo(&instance(&w, "bad-guard", free_port()).join("paperclipd-launchd.json"));
    instance(&w, "good", free_port());

    let (code, out, err) = paperclipd(&w, "all", "status", &["--all"]);
    assert_eq!(code, 1, "{out}{err}");
    let row = |id: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no row for {id}: {out}{err}"))
            .to_string()
    };
    for id in ["bad-lock", "bad-config", "bad-toml"] {
        let r = row(id);
        assert!(r.contains("FIFO"), "{id}: {r}");
        assert!(!r.contains('\n'));
    }
    assert!(row("bad-guard").contains("stopped"), "{out}");
    assert!(row("good").contains("stopped"), "{out}");

    let (_, out, err) = paperclipd(&w, "all-json", "status", &["--all", "--json"]);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert_eq!(v.as_array().map(Vec::len), Some(5), "{out}");
    let bad_config = bad_config.display().to_string();
    assert!(
        out.contains(&bad_config) && out.contains("FIFO"),
        "the rows name the FIFOs: {out}"
    );

    // One instance by itself: a config file that is a FIFO is a config
    // error, named.
    for (id, path) in [
        ("bad-config", &bad_config),
        ("bad-toml", &bad_toml.display().to_string()),
    ] {
        let (code, out, err) = paperclipd(&w, id, "status", &["-i", id]);
        assert_eq!(code, 78, "{out}{err}");
        assert!(err.contains(path.as_str()) && err.contains("FIFO"), "{err}");
    }
}

#[test]
fn run_refuses_fifos_for_its_files_with_78() {
    let w = World::new();
    let fifo = w.dir.path().join("fifo");
    mkfifo(&fifo);
    let f = fifo.display().to_string();
    for (name, args) in [
        ("log-file", vec!["--log-file", f.as_str()]),
        ("config", vec!["--config", f.as_str()]),
    ] {
        let mut run = w.run_cmd(&args, &[]);
        run.stdout(Stdio::null());
        let (code, _, err) = finish(&w, run, name);
        assert_eq!(code, 78, "{name}: {err}");
        assert!(err.contains(&f) && err.contains("FIFO"), "{name}: {err}");
        assert!(w.fixture_pid().is_none(), "{name}: the server was started");
    }
}

/// A `paperclipai` stand-in that runs the fixture, so that `run` takes the
/// default server's path (which checks `postmaster.pid`).
fn shim(w: &World) -> PathBuf {
    let path = w.dir.path().join("paperclipai");
    fs::write(
        &path,
        format!(
            "#!/bin/sh\nexec python3 '{}' --port {} --state-dir '{}'\n",
            fixture().display(),
            w.port,
            w.state().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_fifo_as_postmaster_pid_is_78_before_the_server_starts() {
    let w = World::new();
    let db = instance(&w, "default", w.port).join("db");
    fs::create_dir(&db).unwrap();
    let pm = db.join("postmaster.pid");
    mkfifo(&pm);
    let mut c = Command::new(bin());
    c.arg("run").arg("--home").arg(w.home());
    c.env("PAPERCLIP_SHIM_PATH", shim(&w))
        .env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("INVOCATION_ID")
        .stdin(Stdio::null());
    let (code, _, err) = finish(&w, c, "run");
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains(&pm.display().to_string()) && err.contains("FIFO"),
        "{err}"
    );
    assert!(w.fixture_pid().is_none(), "the server was started");
}
