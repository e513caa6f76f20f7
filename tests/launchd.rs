//! Black-box tests of `paperclipd run` as launchd runs it: an environment
//! that looks like launchd's (`XPC_SERVICE_NAME` = the job's label, no
//! terminal, no notify socket). launchd's `KeepAlive{SuccessfulExit=false}`
//! restarts every non-zero exit for ever, so a run that a restart cannot
//! help, and the 5th failure within 300 s, must exit 0 and pause the
//! instance, with the reason where `status` shows it; "already running"
//! waits for the other run instead. The KeepAlive loop
//! itself is played by the test: run again while the exit is non-zero.

mod support;

use std::process::Command;

use support::*;

const LABEL: &str = "ai.paperclip.paperclipd.default";

/// `cmd` as our launchd job runs: launchd's variable, no user bus.
fn as_launchd_job(w: &World, mut cmd: Command, label: &str) -> Command {
    cmd.env("XPC_SERVICE_NAME", label)
        .env("XDG_RUNTIME_DIR", w.dir.path())
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}/nobus", w.dir.path().display()),
        );
    cmd
}

fn fixture_starts(w: &World) -> usize {
    w.state_file("starts").map_or(0, |s| s.lines().count())
}

/// KeepAlive{SuccessfulExit=false}: runs `cmd()` again while it exits
/// non-zero, at most `max` times. Returns every exit code.
fn keep_alive(w: &World, max: usize, cmd: impl Fn() -> Command) -> Vec<i32> {
    let mut codes = Vec::new();
    for i in 0..max {
        let mut r = w.spawn(cmd(), &format!("job{i}"));
        let code = r.code();
        codes.push(code);
        if code == 0 {
            break;
        }
    }
    codes
}

#[test]
fn five_failed_starts_within_300s_pause_the_job_until_start() {
    let w = World::new();
    let job = || {
        as_launchd_job(
            &w,
            w.run_cmd(&[], &["--exit-after", "0.2", "--exit-code", "3"]),
            LABEL,
        )
    };
    let codes = keep_alive(&w, 8, job);
    assert_eq!(
        codes,
        [3, 3, 3, 3, 0],
        "launchd restarts 4 times, not for ever"
    );
    assert_eq!(fixture_starts(&w), 5);
    let last = w.dir.path().join("job4.err");
    let err = std::fs::read_to_string(last).unwrap();
    assert!(err.contains("is paused since"), "{err}");
    assert!(err.contains("paperclipd start -i default"), "{err}");

    // At the next login launchd starts the job again: it stays paused and
    // does not start the server.
    let mut again = w.spawn(job(), "login");
    assert_eq!(again.code(), 0);
    assert!(
        again.stderr().contains("is paused since"),
        "{}",
        again.stderr()
    );
    assert_eq!(fixture_starts(&w), 5, "a paused job starts no server");

    let (code, v, err) = w.status_json();
    assert_eq!(code, 3, "{err}");
    assert_eq!(v["state"], "paused", "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("5 failed starts within 5m; the last one: exit 3"),
        "{reason}"
    );
    assert_eq!(v["paused"]["code"], 3);
}

#[test]
fn the_limits_come_from_the_config_file() {
    let w = World::new();
    let root = w.home().join("instances/default");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("paperclipd.toml"),
        "start_limit_burst = 2\nstart_limit_interval = \"10m\"\n",
    )
    .unwrap();
    let job = || {
        as_launchd_job(
            &w,
            w.run_cmd(&[], &["--exit-after", "0.2", "--exit-code", "4"]),
            LABEL,
        )
    };
    assert_eq!(keep_alive(&w, 5, job), [4, 0]);
    let (_, v, _) = w.status_json();
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("2 failed starts within 10m"),
        "{v}"
    );
}

/// 78 (not set up, no terminal for onboarding) cannot be fixed by a
/// restart: the job exits 0 at once, and `status` says why.
#[test]
fn exit_78_ends_the_job_with_0_and_records_why() {
    let w = World::new();
    let job = || {
        let mut c = Command::new(bin());
        c.args(["run", "--home"])
            .arg(w.home())
            .env("PAPERCLIP_SHIM_PATH", "/bin/true")
            .env_remove("PAPERCLIP_HOME")
            .env_remove("PAPERCLIP_INSTANCE_ID")
            .env_remove("INVOCATION_ID")
            .env_remove("NOTIFY_SOCKET")
            .stdin(std::process::Stdio::null());
        as_launchd_job(&w, c, LABEL)
    };
    assert_eq!(keep_alive(&w, 3, job), [0]);
    let err = std::fs::read_to_string(w.dir.path().join("job0.err")).unwrap();
    assert!(err.contains("not set up"), "{err}");
    assert!(err.contains("exit 78, which a restart cannot fix"), "{err}");
    let (code, v, _) = w.status_json();
    assert_eq!((code, v["state"].as_str()), (3, Some("paused")), "{v}");
    assert_eq!(v["paused"]["code"], 78);
}

/// Issue 20, item 2: 75 (the instance already runs, here by hand) is
/// mostly temporary. The job used to pause the instance for good; now it
/// waits, `status` says what for, and it starts the instance when the
/// other run ends, with no user action.
#[test]
fn already_running_waits_for_the_other_run_then_starts() {
    let w = World::new();
    let mut n = w.notify_socket("n");
    let mut cmd = w.run_cmd(&[], &[]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut by_hand = w.spawn(cmd, "by-hand");
    n.wait_for("READY=1", DEADLINE);

    let mut job = w.spawn(as_launchd_job(&w, w.run_cmd(&[], &[]), LABEL), "job");
    let job_pid = job.pid();
    wait_until(DEADLINE, "status to show the job's wait", || {
        w.status_json().1["waiting"]["pid"] == job_pid
    });
    let (code, v, _) = w.status_json();
    assert_eq!((code, v["state"].as_str()), (0, Some("ready")), "{v}");
    assert!(v["paused"].is_null(), "{v}");
    assert_eq!(v["waiting"]["holder"], by_hand.pid(), "{v}");
    let text = Command::new(bin())
        .args(["status", "--home"])
        .arg(w.home())
        .args(["--url", &w.url()])
        .env("XDG_RUNTIME_DIR", w.dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("launchd's job (paperclipd pid {job_pid}) waits")),
        "{text}"
    );

    signal(by_hand.pid(), libc::SIGTERM);
    assert_eq!(by_hand.code(), 0);
    wait_until(DEADLINE, "the job to start the server", || {
        fixture_starts(&w) == 2
    });
    wait_until(DEADLINE, "the job's run to be ready", || {
        let (_, v, _) = w.status_json();
        v["state"] == "ready" && v["lock"]["pid"] == job_pid && v["waiting"].is_null()
    });
    signal(job_pid, libc::SIGTERM);
    assert_eq!(job.code(), 0, "{}", job.stderr());
    assert!(
        job.stderr().contains("the other run ended"),
        "{}",
        job.stderr()
    );
}

/// A SIGTERM while the job waits (`paperclipd stop`, a logout) is a clean
/// exit 0, which `KeepAlive{SuccessfulExit=false}` does not restart; no
/// pause is left behind.
#[test]
fn sigterm_while_waiting_is_a_clean_exit() {
    let w = World::new();
    let mut n = w.notify_socket("n");
    let mut cmd = w.run_cmd(&[], &[]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut by_hand = w.spawn(cmd, "by-hand");
    n.wait_for("READY=1", DEADLINE);
    let mut job = w.spawn(as_launchd_job(&w, w.run_cmd(&[], &[]), LABEL), "job");
    let job_pid = job.pid();
    wait_until(DEADLINE, "status to show the job's wait", || {
        w.status_json().1["waiting"]["pid"] == job_pid
    });
    signal(job_pid, libc::SIGTERM);
    assert_eq!(job.code(), 0, "{}", job.stderr());
    assert!(
        job.stderr().contains("stopped while waiting"),
        "{}",
        job.stderr()
    );
    let (_, v, _) = w.status_json();
    assert!(v["paused"].is_null() && v["waiting"].is_null(), "{v}");
    assert_eq!(fixture_starts(&w), 1, "the job started no server");
    signal(by_hand.pid(), libc::SIGTERM);
    assert_eq!(by_hand.code(), 0);
}

/// Issue 20, item 2: a pause belongs to the boot it was recorded in. At
/// the next boot (another boot id in the file) the job forgets it and
/// runs; within the same boot it stays paused.
#[test]
fn a_pause_of_an_earlier_boot_is_forgotten() {
    let w = World::new();
    let root = w.home().join("instances/default");
    std::fs::create_dir_all(&root).unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let pause = |boot: &str| {
        let v = serde_json::json!({
            "failures": [],
            "paused": {
                "since": "2026-12-01T00:00:00Z",
                "code": 78,
                "reason": "exit 78, which a restart cannot fix: not set up",
                "boot": boot,
            }
        });
        std::fs::write(root.join("paperclipd-launchd.json"), v.to_string()).unwrap();
    };
    let job = || {
        as_launchd_job(
            &w,
            w.run_cmd(&[], &["--exit-after", "0.2", "--exit-code", "3"]),
            LABEL,
        )
    };
    pause(boot.trim());
    let mut r = w.spawn(job(), "same-boot");
    assert_eq!(r.code(), 0);
    assert!(r.stderr().contains("is paused since"), "{}", r.stderr());
    assert_eq!(fixture_starts(&w), 0);
    assert_eq!(w.status_json().1["state"], "paused");

    pause("an-earlier-boot");
    assert_eq!(w.status_json().1["paused"], serde_json::Value::Null);
    let mut r = w.spawn(job(), "next-boot");
    assert_eq!(r.code(), 3, "{}", r.stderr());
    assert!(
        r.stderr()
            .contains("forgetting the pause of an earlier boot"),
        "{}",
        r.stderr()
    );
    assert_eq!(fixture_starts(&w), 1);
}

/// Issue 20, item 4: launchd's `StandardErrorPath` (opened for appending
/// at each spawn, never rotated) is emptied at each start of the job, so
/// it holds the last run's early errors only.
#[test]
fn the_early_error_file_is_emptied_at_each_start() {
    use std::os::unix::fs::OpenOptionsExt;
    let w = World::new();
    let errors = w.dir.path().join("ai.paperclip.paperclipd.default.err");
    std::fs::write(&errors, "old early errors of an earlier run\n".repeat(1000)).unwrap();
    for _ in 0..2 {
        let f = std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&errors)
            .unwrap();
        let mut cmd = as_launchd_job(
            &w,
            w.run_cmd(&[], &["--exit-after", "0.1", "--exit-code", "3"]),
            LABEL,
        );
        cmd.stdout(std::process::Stdio::null()).stderr(f);
        let st = cmd.status().unwrap();
        assert_eq!(st.code(), Some(3));
    }
    let text = std::fs::read_to_string(&errors).unwrap();
    assert!(!text.contains("old early errors"), "{text}");
    assert!(
        text.contains("code 3"),
        "this run's own lines are kept: {text}"
    );
    assert!(text.len() < 4096, "{} bytes: {text}", text.len());
}

/// Without launchd's variable, or with another job's name (a shell in an
/// app launchd started; `0` in an interactive shell), nothing is paused:
/// the run's own exit code passes through.
#[test]
fn runs_that_are_not_our_launchd_job_are_not_guarded() {
    let w = World::new();
    for name in [
        "0",
        "application.com.microsoft.VSCode.1234",
        "ai.paperclip.paperclipd.other",
    ] {
        let job = as_launchd_job(
            &w,
            w.run_cmd(&[], &["--exit-after", "0.1", "--exit-code", "78"]),
            name,
        );
        let mut r = w.spawn(job, "other");
        assert_eq!(r.code(), 78, "{name}: {}", r.stderr());
    }
    let (_, v, _) = w.status_json();
    assert_eq!(v["state"], "stopped", "{v}");
    assert!(v["paused"].is_null(), "{v}");
}

/// `cmd` as launchd starts our job: the leader of a process group of its
/// own (launchd calls setsid(2) for a job), with no subreaper (macOS has
/// none, so the server's orphans would move to launchd).
fn as_launchd_spawns(w: &World, cmd: Command) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = as_launchd_job(w, cmd, LABEL);
    cmd.process_group(0).env("PAPERCLIPD_NO_SUBREAPER", "1");
    cmd
}

fn pgid_of(pid: i32) -> Option<i32> {
    // SAFETY: getpgid takes a plain integer; an unknown pid gives -1.
    let g = unsafe { libc::getpgid(pid) };
    (g > 0).then_some(g)
}

/// Issue 15, item 2: `launchctl kill SIGKILL` (or a crash) ends paperclipd
/// at once, and macOS has no parent-death signal: a server in a group of
/// its own survived with its PostgreSQL and kept the port. launchd, once
/// a job is dead, sends SIGTERM to the job's process group (job_reap,
/// `AbandonProcessGroup` unset), so the server must run in that group.
/// The test plays launchd's part: the kill, the reap, the group's SIGTERM.
#[test]
fn under_launchd_the_server_runs_in_the_jobs_group_so_a_killed_job_orphans_nothing() {
    let w = World::new();
    let cmd = as_launchd_spawns(&w, w.run_cmd(&[], &["--grandchild-term-delay", "0.5"]));
    let mut r = w.spawn(cmd, "job");
    let gc = w.grandchild_ready();
    wait_until(DEADLINE, "the server to start", || {
        w.fixture_pid().is_some()
    });
    let server = w.fixture_pid().unwrap_or_default();
    let job = r.pid() as i32;
    let groups = (pgid_of(server), pgid_of(gc));
    if groups != (Some(job), Some(job)) {
        signal(job as u32, libc::SIGTERM);
        r.wait();
    }
    assert_eq!(
        groups,
        (Some(job), Some(job)),
        "the server and its PostgreSQL stand-in are not in the job's group {job}: {}",
        r.stderr()
    );

    signal(job as u32, libc::SIGKILL);
    r.wait();
    // SAFETY: killpg takes plain integers; `job` led the group it names
    // and its members are ours to stop (launchd's part).
    unsafe { libc::killpg(job, libc::SIGTERM) };
    wait_until(DEADLINE, "the job's group to empty", || {
        !pid_alive(server) && !pid_alive(gc)
    });
    assert_eq!(
        w.state_file("grandchild.stopped").as_deref(),
        Some("SIGTERM"),
        "the PostgreSQL stand-in was not stopped in order"
    );
}

/// In the job's group, paperclipd's own ordered stop still reaches
/// everything the server started (an agent that ignores SIGTERM gets
/// SIGKILL at the stop timeout), and never paperclipd itself: the job
/// exits 0, not killed by its own signals.
#[test]
fn under_launchd_an_ordered_stop_reaches_the_whole_group_but_not_paperclipd() {
    let w = World::new();
    let cmd = as_launchd_spawns(
        &w,
        w.run_cmd(
            &["--stop-timeout", "2s"],
            &[
                "--leak",
                "2",
                "--leak-stubborn",
                "1",
                "--grandchild-term-delay",
                "0.3",
            ],
        ),
    );
    let mut r = w.spawn(cmd, "job");
    let gc = w.grandchild_ready();
    wait_until(DEADLINE, "the agents to leak", || w.leaked().len() == 2);
    let job = r.pid() as i32;
    for p in w.leaked() {
        assert_eq!(pgid_of(p), Some(job), "{}", r.stderr());
    }
    signal(job as u32, libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    for p in w.leaked().into_iter().chain([gc]) {
        assert!(!pid_alive(p), "pid {p} outlived the job: {}", r.stderr());
    }
    assert_eq!(
        w.state_file("grandchild.stopped").as_deref(),
        Some("SIGTERM"),
        "{}",
        r.stderr()
    );
}

/// Issue 19 item 4: a server that exits 0 on its own after it was ready
/// makes the job exit 70, which KeepAlive{SuccessfulExit=false} restarts
/// and the crash-loop guard counts as a failure (exit 0 would end it).
#[test]
fn a_server_exiting_0_after_ready_is_a_failure_launchd_restarts() {
    let w = World::new();
    let job = || {
        as_launchd_job(
            &w,
            w.run_cmd(&[], &["--exit-after", "3", "--exit-code", "0"]),
            LABEL,
        )
    };
    let codes = keep_alive(&w, 2, job);
    assert_eq!(codes, [70, 70], "each run restarted by KeepAlive");
    assert_eq!(fixture_starts(&w), 2);
    let err = std::fs::read_to_string(w.dir.path().join("job0.err")).unwrap();
    assert!(err.contains("on its own after it was ready"), "{err}");
}
