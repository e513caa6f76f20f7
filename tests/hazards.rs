//! What upstream leaves open, against the fixture server: a stale
//! `postmaster.pid`, processes the server leaks (adopted by paperclipd),
//! `status --all`. (The free-space tests need a tmpfs: `tests/disk.rs`.)
#![cfg(target_os = "linux")]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

/// A `paperclipai` stand-in for `$PAPERCLIP_SHIM_PATH`: runs the fixture
/// (ignoring `run --instance ID`), so `run` takes the default-server path.
fn shim(w: &World, fixture_args: &[&str]) -> PathBuf {
    let path = w.dir.path().join("paperclipai");
    let args: Vec<String> = fixture_args.iter().map(|a| format!("'{a}'")).collect();
    fs::write(
        &path,
        format!(
            "#!/bin/sh\nexec python3 '{}' --port {} --state-dir '{}' {}\n",
            fixture().display(),
            w.port,
            w.state().display(),
            args.join(" ")
        ),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// An onboarded instance `id` serving on the world's port.
fn onboarded(w: &World, id: &str, port: u16) -> PathBuf {
    let root = w.home().join("instances").join(id);
    fs::create_dir_all(root.join("db")).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(
        root.join("config.json"),
        format!(r#"{{"server":{{"host":"127.0.0.1","port":{port}}}}}"#),
    )
    .unwrap();
    root
}

/// `paperclipd run` of the default server (through the shim).
fn run_default(w: &World, shim: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("run").arg("--home").arg(w.home()).args(args);
    c.env("PAPERCLIP_SHIM_PATH", shim)
        .env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("INVOCATION_ID")
        .stdin(Stdio::null());
    c
}

fn stale_files(db: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(db)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("postmaster.pid.stale-"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_postmaster_pid_naming_a_live_unrelated_process_is_moved_aside_and_the_server_starts() {
    let w = World::new();
    let db = onboarded(&w, "default", w.port).join("db");
    let mut unrelated = Command::new("sleep").arg("100").spawn().unwrap();
    let content = format!(
        "{}\n{}\n1764381600\n54329\n/tmp\n",
        unrelated.id(),
        db.display()
    );
    fs::write(db.join("postmaster.pid"), &content).unwrap();
    let shim = shim(&w, &[]);
    let mut r = w.spawn(run_default(&w, &shim, &[]), "run");
    wait_until(DEADLINE, "ready", || r.stderr().contains("ready after"));
    let err = r.stderr();
    let moved: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("moved the stale"))
        .collect();
    assert_eq!(moved.len(), 1, "one line: {err}");
    assert!(
        moved[0].contains(&format!("pid {}", unrelated.id())),
        "{err}"
    );
    assert!(moved[0].contains("not PostgreSQL"), "{err}");
    assert!(!db.join("postmaster.pid").exists());
    let stale = stale_files(&db);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(
        fs::read_to_string(&stale[0]).unwrap(),
        content,
        "moved, not rewritten"
    );
    assert!(
        pid_alive(unrelated.id() as i32),
        "the unrelated process is untouched"
    );
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let _ = unrelated.kill();
    let _ = unrelated.wait();
}

#[test]
fn a_postmaster_pid_of_a_dead_process_or_garbage_is_moved_aside() {
    let w = World::new();
    let db = onboarded(&w, "default", w.port).join("db");
    let shim = shim(&w, &[]);
    let mut dead = Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    for content in [format!("{}\n", dead.id()), "garbage\n".to_string()] {
        fs::write(db.join("postmaster.pid"), &content).unwrap();
        let mut r = w.spawn(run_default(&w, &shim, &[]), "run");
        wait_until(DEADLINE, "ready", || r.stderr().contains("ready after"));
        assert!(r.stderr().contains("moved the stale"), "{}", r.stderr());
        signal(r.pid(), libc::SIGTERM);
        assert_eq!(r.code(), 0, "{}", r.stderr());
    }
    assert_eq!(stale_files(&db).len(), 2);
}

#[test]
fn a_live_postgres_serving_the_data_directory_exits_75_naming_it() {
    let w = World::new();
    let db = onboarded(&w, "default", w.port).join("db");
    // A process named postgres (a copy of sleep) working in the data
    // directory: what PostgreSQL left running looks like this.
    let pg = w.dir.path().join("postgres");
    copy_executable("/bin/sleep", &pg);
    let mut postgres = Command::new(&pg)
        .arg("100")
        .current_dir(&db)
        .spawn()
        .unwrap();
    wait_until(DEADLINE, "the fake postgres to exec", || {
        fs::read_to_string(format!("/proc/{}/comm", postgres.id()))
            .is_ok_and(|c| c.trim() == "postgres")
    });
    let content = format!("{}\n{}\n", postgres.id(), db.display());
    fs::write(db.join("postmaster.pid"), &content).unwrap();
    let shim = shim(&w, &[]);
    let mut r = w.spawn(run_default(&w, &shim, &[]), "run");
    assert_eq!(r.code(), 75, "{}", r.stderr());
    let err = r.stderr();
    assert!(
        err.contains(&format!("PostgreSQL pid {}", postgres.id())),
        "{err}"
    );
    assert!(
        err.contains(&format!("kill -INT {}", postgres.id())),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(db.join("postmaster.pid")).unwrap(),
        content
    );
    assert!(stale_files(&db).is_empty());
    assert!(w.fixture_pid().is_none(), "no server was started");
    // A garbage file does not hide it either: the data directory is
    // scanned for a PostgreSQL working in it.
    fs::write(db.join("postmaster.pid"), "garbage\n").unwrap();
    let mut r = w.spawn(run_default(&w, &shim, &[]), "run2");
    assert_eq!(r.code(), 75, "{}", r.stderr());
    assert!(db.join("postmaster.pid").exists());
    let _ = postgres.kill();
    let _ = postgres.wait();
}

#[test]
fn another_server_command_leaves_postmaster_pid_alone() {
    let w = World::new();
    let db = onboarded(&w, "default", w.port).join("db");
    fs::write(db.join("postmaster.pid"), "garbage\n").unwrap();
    let mut r = w.spawn(w.run_cmd(&[], &[]), "run");
    wait_until(DEADLINE, "ready", || r.stderr().contains("ready after"));
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(db.join("postmaster.pid").exists());
    assert!(stale_files(&db).is_empty());
}

/// Context switches of every thread of `pid`: each wake-up counts one.
fn wakeups(pid: u32) -> u64 {
    let mut n = 0;
    for t in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let s = fs::read_to_string(t.path().join("status")).unwrap_or_default();
        for l in s.lines() {
            if l.starts_with("voluntary_ctxt_switches")
                || l.starts_with("nonvoluntary_ctxt_switches")
            {
                n += l
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    n
}

#[test]
fn status_counts_adopted_processes_outside_the_servers_tree_without_waking_paperclipd() {
    let w = World::new();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd(&[], &["--leak", "3", "--grandchild"]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    let pids = w.leaked();
    assert_eq!(pids.len(), 3);
    for p in &pids {
        let ppid = fs::read_to_string(format!("/proc/{p}/stat")).unwrap();
        let ppid: u32 = ppid
            .rsplit_once(") ")
            .unwrap()
            .1
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(ppid, r.pid(), "leaked pid {p} was adopted by paperclipd");
    }
    // Idle: no wake-up for 300 ms (it has just sent READY=1 and logged).
    wait_until(DEADLINE, "paperclipd to be idle", || {
        let a = wakeups(r.pid());
        std::thread::sleep(Duration::from_millis(300));
        wakeups(r.pid()) == a
    });
    let before = wakeups(r.pid());
    let (code, v, err) = w.status_json();
    let after = wakeups(r.pid());
    assert_eq!(code, 0, "{err}");
    let a = &v["adopted"];
    // The fixture's own `sleep` grandchild is in the server's tree: not adopted.
    assert_eq!(a["count"], 3, "{v}");
    assert!(a["rss_bytes"].as_u64().unwrap() > 0, "{v}");
    assert!(a["oldest_secs"].as_u64().is_some(), "{v}");
    assert_eq!(before, after, "status woke paperclipd");
    // Text form.
    let o = Command::new(bin())
        .args(["status", "--home"])
        .arg(w.home())
        .args(["--url", &w.url()])
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("adopted: 3 process(es) outside the server's tree"),
        "{text}"
    );
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    for p in pids {
        assert!(!pid_alive(p), "leaked pid {p} outlived the run");
    }
}

#[test]
fn run_logs_once_past_ten_adopted_and_reaps_them_term_then_kill() {
    let w = World::new();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd(
        &["--reap-adopted-after", "2s"],
        &["--leak", "11", "--leak-stubborn", "1"],
    );
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    let pids = w.leaked();
    assert_eq!(pids.len(), 11);
    wait_until(DEADLINE, "the threshold line", || {
        r.stderr()
            .contains("11 adopted processes outside the server's tree")
    });
    // A scan may have caught the leaks half-way: count every SIGTERM line.
    let termed = |err: &str| -> usize {
        err.lines()
            .filter_map(|l| l.split("stopping ").nth(1))
            .filter(|rest| rest.contains("process(es) adopted more than 2s ago"))
            .filter_map(|rest| rest.split(' ').next()?.parse::<usize>().ok())
            .sum()
    };
    wait_until(DEADLINE, "SIGTERM for the adopted", || {
        termed(&r.stderr()) == 11
    });
    wait_until(Duration::from_secs(10), "the 10 polite ones to go", || {
        pids[1..].iter().all(|p| !pid_alive(*p))
    });
    assert!(pid_alive(pids[0]), "the stubborn one ignores SIGTERM");
    wait_until(DEADLINE, "SIGKILL 10s later", || !pid_alive(pids[0]));
    let err = r.stderr();
    assert!(
        err.contains("still alive 10s after SIGTERM; sent SIGKILL"),
        "{err}"
    );
    wait_until(DEADLINE, "the all-clear line", || {
        r.stderr()
            .contains("adopted processes back below the thresholds")
    });
    let err = r.stderr();
    assert_eq!(
        err.matches("adopted processes outside the server's tree")
            .count(),
        1,
        "{err}"
    );
    // The server itself was never touched.
    assert!(pid_alive(w.fixture_pid().unwrap()));
    assert!(w.state_file("signals").is_none(), "the server got a signal");
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
}

#[test]
fn status_all_lists_every_instance_sorted_and_exits_0_only_when_all_are_ready() {
    let w = World::new();
    let idle_port = free_port();
    onboarded(&w, "zz-running", w.port);
    onboarded(&w, "aa-idle", idle_port);
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd(&["-i", "zz-running"], &[]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    let all = |json: bool| {
        let mut c = Command::new(bin());
        c.args(["status", "--all", "--home"]).arg(w.home());
        if json {
            c.arg("--json");
        }
        c.env("XDG_RUNTIME_DIR", w.dir.path())
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
            .env_remove("PAPERCLIP_HOME")
            .env("PAPERCLIP_INSTANCE_ID", "ignored")
            .output()
            .unwrap()
    };
    let o = all(true);
    assert_eq!(o.status.code(), Some(1), "one instance is stopped");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    assert_eq!(rows[0]["instance"], "aa-idle");
    assert_eq!(rows[0]["state"], "stopped");
    assert_eq!(rows[0]["port"], idle_port);
    assert!(rows[0]["pid"].is_null());
    assert_eq!(rows[1]["instance"], "zz-running");
    assert_eq!(rows[1]["state"], "ready");
    assert_eq!(rows[1]["port"], w.port);
    assert_eq!(rows[1]["pid"], r.pid());
    assert!(rows[1]["since"].as_str().unwrap().ends_with('Z'), "{v}");
    let o = all(false);
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("INSTANCE"), "{text}");
    assert!(
        lines[1].starts_with("aa-idle ") && lines[1].contains("stopped"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("zz-running ") && lines[2].contains(" ready "),
        "{text}"
    );
    assert!(lines[2].contains(&r.pid().to_string()), "{text}");
    fs::remove_dir_all(w.home().join("instances/aa-idle")).unwrap();
    assert_eq!(all(false).status.code(), Some(0), "every instance is ready");
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(all(false).status.code(), Some(1));
}
