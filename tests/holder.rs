//! Who holds an instance, as `status` sees it: reading the holder never
//! disturbs a `run` (only `run` takes the lock), `status` probes with the
//! holder's settings, and a server left behind by a killed wrapper is a
//! conflict, not "stopped".

mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use support::*;

/// `paperclipd SUBCOMMAND --home H …` for this world, with no reachable bus.
fn paperclipd(w: &World, sub: &str) -> Command {
    let mut c = Command::new(bin());
    c.arg(sub)
        .arg("--home")
        .arg(w.home())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID")
        .env_remove("INVOCATION_ID")
        .env("XDG_RUNTIME_DIR", w.dir.path())
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}/nobus", w.dir.path().display()),
        )
        .stdin(Stdio::null());
    c
}

/// How many runs the stress test makes: `PAPERCLIPD_LOCK_RUNS`, default
/// 150 (CI time is bounded; the README reports a manual run of 2,000).
fn stress_runs() -> usize {
    std::env::var("PAPERCLIPD_LOCK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
}

#[test]
fn status_loops_never_make_a_run_exit_75() {
    let w = World::new();
    let stop = Arc::new(AtomicBool::new(false));
    let statuses = Arc::new(AtomicUsize::new(0));
    let loops: Vec<_> = (0..2)
        .map(|_| {
            let mut cmd = paperclipd(&w, "status");
            cmd.args(["--url", &w.url(), "--json"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let (stop, statuses) = (stop.clone(), statuses.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = cmd.status();
                    statuses.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let runs = stress_runs();
    let start = Instant::now();
    let mut codes = std::collections::BTreeMap::<i32, usize>::new();
    let mut first_75 = None;
    for _ in 0..runs {
        let o = paperclipd(&w, "run")
            // Exits 1 at once: `run` passes 1 on (an exit 0 before ready is
            // 70); only a 75 would be the defect.
            .args(["--url", &w.url(), "--", "/bin/false"])
            .output()
            .expect("run paperclipd");
        let code = o.status.code().unwrap_or(-1);
        *codes.entry(code).or_default() += 1;
        if code == 75 && first_75.is_none() {
            first_75 = Some(String::from_utf8_lossy(&o.stderr).into_owned());
        }
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.join().expect("status loop");
    }
    eprintln!(
        "{runs} runs in {:.1}s beside {} status calls: exit codes {codes:?}",
        start.elapsed().as_secs_f64(),
        statuses.load(Ordering::Relaxed)
    );
    assert_eq!(
        codes.get(&75),
        None,
        "runs exited 75 with only status loops beside them; the first said:\n{}",
        first_75.unwrap_or_default()
    );
    assert_eq!(codes.get(&1), Some(&runs), "{codes:?}");
}

/// `status --json --url URL ARGS…`: this command's own settings.
fn status_with_url(w: &World, url: &str, args: &[&str]) -> (i32, serde_json::Value) {
    let o = paperclipd(w, "status")
        .args(["--url", url, "--json"])
        .args(args)
        .output()
        .expect("run paperclipd status");
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code().unwrap_or(-1), v)
}

/// A URL where nothing listens: status's own settings, unlike the run's.
fn elsewhere() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

#[test]
fn status_probes_with_the_holders_settings_and_says_so() {
    let w = World::new();
    let mut n = w.notify_socket("notify");
    let same = ["--mode", "api-only", "--ui-path", "/not-probed"];
    let mut cmd = w.run_cmd(&same, &[]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    let own = elsewhere();
    let (code, v) = status_with_url(&w, &own, &[]);
    assert_eq!((code, v["state"].as_str()), (0, Some("ready")), "{v}");
    assert_eq!(v["settings"]["from"], "holder", "{v}");
    assert_eq!(v["port"]["url"], format!("{}/", w.url()), "{v}");
    // The holder's mode and paths, not this command's defaults (full, /).
    assert_eq!(v["probes"]["mode"], "api-only", "{v}");
    assert!(v["probes"]["ui"].is_null(), "{v}");
    assert_eq!(
        v["settings"]["ui_url"],
        format!("{}/not-probed", w.url()),
        "{v}"
    );
    let note = v["settings"]["note"].as_str().unwrap_or_default();
    assert!(note.contains(&own) && note.contains(&w.url()), "{v}");
    // The same words for a person.
    let text = paperclipd(&w, "status")
        .args(["--url", &own])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("the holder's settings"), "{text}");
    // With the same settings as the holder there is nothing to say.
    let (_, v) = status_with_url(&w, &w.url(), &same);
    assert!(v["settings"]["note"].is_null(), "{v}");
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
}

/// Kills a process left behind by a test, whatever the test's outcome.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        signal(self.0 as u32, libc::SIGKILL);
    }
}

#[test]
fn a_server_left_behind_by_a_killed_wrapper_is_a_conflict() {
    let w = World::new();
    let mut n = w.notify_socket("notify");
    // The server ignores the SIGTERM it gets when its parent dies.
    let mut cmd = w.run_cmd(&[], &["--ignore-sigterm"]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    let server = w.fixture_pid().expect("the fixture's pid");
    let _cleanup = KillOnDrop(server);
    signal(r.pid(), libc::SIGKILL);
    r.wait();
    assert!(pid_alive(server), "the server survived its wrapper");
    let (code, v) = status_with_url(&w, &elsewhere(), &[]);
    assert_eq!((code, v["state"].as_str()), (1, Some("conflict")), "{v}");
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("left") && reason.contains(&server.to_string()),
        "{v}"
    );
    assert_eq!(v["settings"]["from"], "last-run", "{v}");
    assert!(v["lock"].is_null(), "nobody holds the lock: {v}");
}
