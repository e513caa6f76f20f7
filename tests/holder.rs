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
            .args(["--url", &w.url(), "--", "/bin/true"])
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
    assert_eq!(codes.get(&0), Some(&runs), "{codes:?}");
}
