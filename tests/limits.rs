//! Every duration and size a user gives (flags and `paperclipd.toml`
//! keys) has a range checked before anything runs, and nothing a program
//! cannot receive (a NUL byte in an argument or the environment) gets past
//! validation: exit 78, naming the setting, with the lock never taken.

mod support;

use std::fs;
use std::process::Output;

use support::*;

/// `run` with these flags (and the fixture as the server), as far as it
/// gets; it must not start anything. A run that was accepted is stopped
/// (SIGTERM) and fails the test, rather than hanging it.
fn run(w: &World, flags: &[&str]) -> Output {
    let mut cmd = w.run_cmd(flags, &[]);
    cmd.env("XDG_RUNTIME_DIR", w.dir.path())
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent");
    finish(w, cmd, &flags.join(" "))
}

/// Runs `cmd` to its end (at most [`DEADLINE`]).
fn finish(w: &World, cmd: std::process::Command, what: &str) -> Output {
    let mut r = w.spawn(cmd, "run");
    let start = std::time::Instant::now();
    while r.child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > DEADLINE || w.fixture_pid().is_some() {
            signal(r.pid(), libc::SIGTERM);
            let _ = r.wait();
            panic!(
                "{what}: accepted, the run started its server:\n{}",
                r.stderr()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let status = r.wait();
    Output {
        status,
        stdout: r.stdout().into_bytes(),
        stderr: r.stderr().into_bytes(),
    }
}

/// The instance's `paperclipd.toml`.
fn config_file(w: &World, text: &str) {
    let root = w.home().join("instances/default");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("paperclipd.toml"), text).unwrap();
}

fn assert_config_error(out: &Output, needles: &[&str], what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{what}: {err}");
    for n in needles {
        assert!(err.contains(n), "{what}: no {n:?} in: {err}");
    }
}

const HUGE_DURATION: &str = "18446744073709551615s";

/// Regression (issue 18, defect 4): `--reap-adopted-after
/// 18446744073709551615s` was accepted, and the run panicked at its first
/// scan of adopted processes (`overflow when adding duration to instant`).
#[test]
fn absurd_duration_and_size_flags_are_refused_with_their_range() {
    let w = World::new();
    let log = w.dir.path().join("p.log");
    let log = log.to_str().unwrap();
    for (flags, needles) in [
        (
            vec!["--reap-adopted-after", HUGE_DURATION],
            vec!["--reap-adopted-after", "out of range", "1s to 365d"],
        ),
        (
            vec!["--ready-timeout", HUGE_DURATION],
            vec!["--ready-timeout", "out of range", "24h"],
        ),
        (
            vec!["--stop-timeout", HUGE_DURATION],
            vec!["--stop-timeout", "out of range", "1h"],
        ),
        (
            vec!["--min-free", "2000000T"],
            vec!["--min-free", "out of range", "1EiB"],
        ),
        (
            vec!["--log-file", log, "--log-max-size", "15000000000000000000"],
            vec!["log-max-size", "out of range", "1TiB"],
        ),
        (
            vec!["--log-file", log, "--log-keep", "4294967295"],
            vec!["log-keep", "out of range"],
        ),
    ] {
        let out = run(&w, &flags);
        assert_config_error(&out, &needles, &flags.join(" "));
    }
}

#[test]
fn absurd_duration_and_size_keys_are_refused_with_their_range() {
    let w = World::new();
    let log = w.dir.path().join("p.log");
    for (text, needles) in [
        (
            format!("reap_adopted_after = \"{HUGE_DURATION}\"\n"),
            vec!["reap_adopted_after in", "out of range", "1s to 365d"],
        ),
        (
            format!("ready_timeout = \"{HUGE_DURATION}\"\n"),
            vec!["ready_timeout in", "out of range", "24h"],
        ),
        (
            format!("stop_timeout = \"{HUGE_DURATION}\"\n"),
            vec!["stop_timeout in", "out of range", "1h"],
        ),
        (
            format!("start_limit_interval = \"{HUGE_DURATION}\"\n"),
            vec!["start_limit_interval", "out of range"],
        ),
        (
            "start_limit_burst = 4294967295\n".to_string(),
            vec!["start_limit_burst", "out of range", "1 to 1000"],
        ),
        (
            "min_free = 18446744073709551615\n".to_string(),
            vec!["min_free in", "out of range", "1EiB"],
        ),
        (
            format!(
                "log_file = {:?}\nlog_max_size = 18446744073709551615\n",
                log.display().to_string()
            ),
            vec!["log_max_size", "out of range", "1TiB"],
        ),
        (
            format!(
                "log_file = {:?}\nlog_keep = 4294967295\n",
                log.display().to_string()
            ),
            vec!["log_keep", "out of range"],
        ),
    ] {
        config_file(&w, &text);
        let out = run(&w, &[]);
        assert_config_error(&out, &needles, &text);
    }
}

/// `install` reads the stop timeout to give the manager its own budget:
/// an absurd one is refused there too, not added up until it overflows.
#[test]
fn install_refuses_an_absurd_stop_timeout_key() {
    let w = World::new();
    config_file(&w, &format!("stop_timeout = \"{HUGE_DURATION}\"\n"));
    // Paperclip "installed": a wrapper script is pinned without a Node.js check.
    let shim = w.dir.path().join("bin/paperclipai");
    fs::create_dir_all(shim.parent().unwrap()).unwrap();
    fs::write(&shim, "#!/bin/sh\nexit 9\n").unwrap();
    fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(bin())
        .args(["install", "--dry-run", "--home"])
        .arg(w.home())
        .env("XDG_RUNTIME_DIR", w.dir.path())
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .env("HOME", w.dir.path())
        .env("PAPERCLIP_SHIM_PATH", &shim)
        .env_remove("PAPERCLIP_NODE")
        .env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID")
        .output()
        .unwrap();
    assert_config_error(&out, &["stop_timeout in", "out of range", "1h"], "install");
}

/// Regression (issue 18, defect 7): a NUL byte in an `[env]` value or in
/// the config's `command` passed validation, and the spawn failed after the
/// lock was taken: exit 71 (`nul byte found in provided data`), which a
/// unit's `RestartPreventExitStatus=` does not stop from looping.
#[test]
fn a_nul_byte_in_the_environment_or_the_command_is_a_config_error() {
    let w = World::new();
    for (text, needles) in [
        (
            "command = [\"/bin/sleep\", \"1000\"]\n[env]\nSECRET = \"s3cr\\u0000t3\"\n",
            vec!["env in", "SECRET", "NUL"],
        ),
        (
            "command = [\"/bin/sleep\", \"1000\"]\n[env]\n\"A\\u0000B\" = \"x\"\n",
            vec!["env in", "NUL"],
        ),
        (
            "command = [\"python3\", \"-c\", \"1\\u0000\"]\n",
            vec!["command in", "word 3", "NUL"],
        ),
    ] {
        config_file(&w, text);
        // No `--` command: the file's `command` is the server.
        let mut cmd = std::process::Command::new(bin());
        cmd.args(["run", "--url", &w.url(), "--home"])
            .arg(w.home())
            .env("XDG_RUNTIME_DIR", w.dir.path())
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
            .env_remove("PAPERCLIP_HOME")
            .env_remove("PAPERCLIP_INSTANCE_ID")
            .env_remove("NOTIFY_SOCKET");
        let out = finish(&w, cmd, text);
        assert_config_error(&out, &needles, text);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("s3cr"), "the value was shown: {err}");
        assert!(
            fs::read_to_string(w.lock_path("default"))
                .unwrap_or_default()
                .is_empty(),
            "{text}: the lock was taken"
        );
    }
}
