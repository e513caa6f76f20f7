#![cfg(target_os = "linux")]
//! Black-box tests of `paperclipd` under a REAL `systemd --user` manager.
//!
//! Each test runs one scenario script (`tests/systemd/<name>.sh`, helpers in
//! `tests/systemd/lib.sh`) inside its own invocation of
//! `tests/support/with-user-manager`, which starts a private, isolated user
//! manager (own cgroup and mount namespaces, fresh HOME, private journald)
//! and tears it down afterwards, so the tests can run in parallel threads.
//! The script does the systemd-side work and checks (polling with
//! deadlines, never fixed sleeps), prints `RESULT key=value` lines, and
//! exits 0 only when every check held; the test asserts on its exit code and
//! on the reported values.
//!
//! They need root and systemd (`/lib/systemd/systemd`); without them they
//! FAIL (CI runs as root), they do not skip. To debug one scenario, keep the
//! harness's temp dir (manager log, journal copy):
//! `WUM_KEEP=1 cargo test --test systemd watchdog -- --nocapture`.

mod support;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Per scenario, harness start-up and teardown included. The scenarios aim
/// at < 30 s; the rest is for a loaded machine.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(120);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn harness() -> PathBuf {
    repo().join("tests/support/with-user-manager")
}

fn python3() -> PathBuf {
    // The manager's PATH is minimal: the server command needs an absolute path.
    for p in ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("python3 not found in /usr/bin, /usr/local/bin or /bin (the fixture server needs it)");
}

/// Root and a systemd to start, or a clear failure (never a silent skip).
fn require_root_and_systemd() {
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "the systemd tests must run as root (they start a private `systemd --user` in new \
         cgroup and mount namespaces via tests/support/with-user-manager); euid is {euid}. \
         CI runs them as root: `sudo -E cargo test --test systemd`"
    );
    assert!(
        Path::new("/lib/systemd/systemd").exists(),
        "/lib/systemd/systemd is missing: the systemd tests need systemd installed \
         (apt-get install systemd dbus-user-session)"
    );
}

struct Outcome {
    name: String,
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Outcome {
    fn transcript(&self) -> String {
        format!(
            "scenario {} exited {} after {:.1?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.name, self.code, self.took, self.stdout, self.stderr
        )
    }

    /// The scenario passed all its own checks.
    fn assert_passed(&self) {
        assert_ne!(
            self.code,
            125,
            "with-user-manager itself failed (no manager?)\n{}",
            self.transcript()
        );
        assert_eq!(self.code, 0, "scenario failed\n{}", self.transcript());
    }

    /// The value of `key` from the scenario's `RESULT k=v k2=v2` lines
    /// (values without spaces) or `RESULT_TEXT key=free text` lines.
    fn result(&self, key: &str) -> String {
        for line in self.stdout.lines() {
            if let Some(rest) = line.strip_prefix("RESULT_TEXT ") {
                if let Some(v) = rest.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
                    return v.trim_end().to_string();
                }
            } else if let Some(rest) = line.strip_prefix("RESULT ") {
                for tok in rest.split_whitespace() {
                    if let Some(v) = tok.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
                        return v.to_string();
                    }
                }
            }
        }
        panic!("the scenario reported no {key}\n{}", self.transcript());
    }

    fn result_f64(&self, key: &str) -> f64 {
        let v = self.result(key);
        v.parse()
            .unwrap_or_else(|_| panic!("{key}={v:?} is not a number\n{}", self.transcript()))
    }
}

/// Runs `tests/systemd/<name>.sh` inside one with-user-manager invocation.
fn scenario(name: &str) -> Outcome {
    scenario_in(name, None)
}

/// [`scenario`], with the harness's temp dir (and so the user's HOME)
/// under `tmpdir` when given.
fn scenario_in(name: &str, tmpdir: Option<&Path>) -> Outcome {
    require_root_and_systemd();
    let script = repo().join("tests/systemd").join(format!("{name}.sh"));
    assert!(script.exists(), "{} is missing", script.display());
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut cmd = Command::new(harness());
    cmd.arg("--")
        .arg("bash")
        .arg(&script)
        .env("PAPERCLIPD", bin())
        .env("FIXTURE", fixture())
        .env("PYTHON3", python3())
        .env("REPO", repo())
        .env("PORT", free_port().to_string())
        .env("PORT2", free_port().to_string())
        // The real `paperclipd install` always; a fresh HOME per scenario;
        // nothing from the caller's instance selection.
        .env_remove("PCD_TEST_HANDWRITTEN_UNIT")
        .env_remove("WUM_HOME")
        .env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID")
        .env_remove("PAPERCLIP_SHIM_PATH")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("create stdout"))
        .stderr(fs::File::create(&err_path).expect("create stderr"));
    if let Some(dir) = tmpdir {
        cmd.env("TMPDIR", dir);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn with-user-manager");
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if start.elapsed() > SCENARIO_DEADLINE {
            // SIGTERM lets the harness stop the manager and clean up.
            signal(child.id(), libc::SIGTERM);
            let grace = Instant::now();
            while child.try_wait().expect("try_wait").is_none() {
                if grace.elapsed() > Duration::from_secs(30) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!(
                "scenario {name} did not finish within {SCENARIO_DEADLINE:?}\n--- stdout:\n{}\n--- stderr:\n{}",
                read(&out_path),
                read(&err_path)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let o = Outcome {
        name: name.to_string(),
        code: status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        stdout: read(&out_path),
        stderr: read(&err_path),
        took: start.elapsed(),
    };
    // Shown with --nocapture or when the test fails.
    eprintln!("{}", o.transcript());
    o
}

/// 1. `systemctl --user start` blocks until the server is really ready.
#[test]
fn systemctl_start_returns_only_when_ready() {
    let o = scenario("start-blocks-until-ready");
    o.assert_passed();
    // Listening after 1 s, API "ok" after 2 s.
    let secs = o.result_f64("start_seconds");
    assert!(secs >= 1.9, "start took {secs}s\n{}", o.transcript());
    assert!(
        o.result_f64("ready_to_return_seconds") >= 0.0,
        "{}",
        o.transcript()
    );
    assert!(
        o.result("status_text").contains("ready"),
        "{}",
        o.transcript()
    );
}

/// 2. Starting an active instance again changes nothing.
#[test]
fn second_systemctl_start_keeps_the_same_process() {
    let o = scenario("second-start-is-noop");
    o.assert_passed();
    assert_eq!(o.result("fixture_starts"), "1", "{}", o.transcript());
}

/// 3. `paperclipd run` by hand while the unit is active: exit 75, names it.
#[test]
fn manual_run_while_unit_active_exits_75_naming_the_unit() {
    let o = scenario("manual-run-refused");
    o.assert_passed();
    assert_eq!(o.result("manual_exit"), "75", "{}", o.transcript());
    assert!(
        o.stderr.contains("paperclip@t1.service"),
        "{}",
        o.transcript()
    );
}

/// 4. A server whose health fails stops feeding the watchdog; systemd restarts it.
#[test]
fn failing_health_trips_the_watchdog_and_restarts() {
    let o = scenario("watchdog-restarts");
    o.assert_passed();
    assert_eq!(o.result("saw_result_watchdog"), "yes", "{}", o.transcript());
    assert!(o.result_f64("nrestarts") >= 1.0, "{}", o.transcript());
    assert!(o.result_f64("fixture_starts") >= 2.0, "{}", o.transcript());
}

/// Issue 19 item 4: a server that exits 0 on its own after it was ready
/// makes paperclipd exit 70 (not 0), so Restart=on-failure restarts it.
#[test]
fn server_exiting_zero_after_ready_is_restarted() {
    let o = scenario("exit-zero-after-ready-restarts");
    o.assert_passed();
    assert!(o.result_f64("nrestarts") >= 1.0, "{}", o.transcript());
    assert_eq!(o.result("first_exit"), "70", "{}", o.transcript());
    assert!(o.result("why").contains("exit 70"), "{}", o.transcript());
}

/// 5. `systemctl --user stop`: inactive (not failed), SIGTERM first, nothing left.
#[test]
fn systemctl_stop_is_clean() {
    let o = scenario("stop-terminates-cleanly");
    o.assert_passed();
    assert_eq!(o.result("service_result"), "success", "{}", o.transcript());
    assert_eq!(o.result("exit_code"), "exited", "{}", o.transcript());
    assert_eq!(o.result("exit_status"), "0", "{}", o.transcript());
    assert!(
        o.result("fixture_signals").starts_with("SIGTERM"),
        "{}",
        o.transcript()
    );
}

/// 6. Readiness timeout: the start job fails with 69, no restart loop.
#[test]
fn readiness_timeout_fails_the_start_with_69() {
    let o = scenario("ready-timeout-fails");
    o.assert_passed();
    assert_ne!(o.result("start_exit"), "0", "{}", o.transcript());
    assert_eq!(o.result("result"), "exit-code", "{}", o.transcript());
    assert_eq!(o.result("exec_main_status"), "69", "{}", o.transcript());
    assert_eq!(o.result("nrestarts"), "0", "{}", o.transcript());
}

/// 7. install --now, status --json, stop, start, restart, uninstall.
#[test]
fn cli_install_status_stop_uninstall() {
    let o = scenario("cli-lifecycle");
    o.assert_passed();
    assert_eq!(o.result("status_ready_exit"), "0", "{}", o.transcript());
    assert_eq!(o.result("state"), "ready", "{}", o.transcript());
    assert_eq!(o.result("active_state"), "active", "{}", o.transcript());
    assert!(o.result_f64("main_pid") > 0.0, "{}", o.transcript());
    assert_eq!(o.result("status_stopped_exit"), "3", "{}", o.transcript());
}

/// 8. `systemd-analyze verify` accepts the user unit and the system unit.
#[test]
fn units_pass_systemd_analyze_verify() {
    let o = scenario("verify-units");
    o.assert_passed();
    for k in [
        "verify_user_template",
        "verify_user_instance",
        "verify_system_template",
        "verify_system_instance",
    ] {
        assert_eq!(o.result(k), "ok", "{k}\n{}", o.transcript());
    }
}

/// 9. Upstream's own unit for the instance: refused, reported, replaced.
#[test]
fn upstream_unit_is_detected_and_replaced() {
    let o = scenario("upstream-conflict");
    o.assert_passed();
    assert_eq!(o.result("run_exit"), "75", "{}", o.transcript());
    assert_eq!(o.result("install_exit"), "75", "{}", o.transcript());
    assert_eq!(o.result("status_state"), "conflict", "{}", o.transcript());
}

/// 10. A failing start explains itself; `logs` shows the journal.
#[test]
fn failed_start_reports_status_and_journal() {
    let o = scenario("failure-report-and-logs");
    o.assert_passed();
    assert_eq!(o.result("start_exit"), "1", "{}", o.transcript());
}

/// 11. No D-Bus: fall back to systemctl, say so, keep working.
#[test]
fn without_a_bus_lifecycle_falls_back_to_systemctl() {
    let o = scenario("no-bus-fallback");
    o.assert_passed();
    assert_eq!(o.result("status_exit"), "0", "{}", o.transcript());
}

/// 12. A hand-started run racing `systemctl --user start`: one server.
#[test]
fn run_racing_systemctl_start_yields_one_server() {
    let o = scenario("race-run-vs-start");
    o.assert_passed();
    assert_eq!(o.result("rounds"), "5", "{}", o.transcript());
}

/// Like [`scenario`], with the harness's temp dir (and so HOME) outside
/// /tmp: `install` never pins a runtime under /tmp, which is wiped at boot.
fn scenario_with_stable_home(name: &str) -> Outcome {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wum");
    fs::create_dir_all(&base).expect("create the stable temp dir");
    scenario_in(name, Some(&base))
}

/// Issue 19, items 1, 2, 6: two instances keep their own home and node
/// across a daemon-reload and a restart of both; fnm's per-shell link is
/// never pinned; the server's PATH is the pinned dirs, then the manager's.
#[test]
fn two_instances_keep_their_own_settings() {
    let o = scenario_with_stable_home("two-instances-own-settings");
    o.assert_passed();
}

/// Issue 19, item 5: the packaged unit with no pin starts on the runtime
/// the first terminal `run` recorded.
#[test]
fn packaged_unit_uses_the_runtime_the_terminal_run_recorded() {
    let o = scenario_with_stable_home("packaged-unit-recorded-runtime");
    o.assert_passed();
    assert!(
        o.result("status").contains("recorded by the run at"),
        "{}",
        o.transcript()
    );
}

/// Issue 19, item 7: no XDG_RUNTIME_DIR and no bus: /run/user/$UID.
#[test]
fn without_xdg_runtime_dir_the_fallback_finds_run_user_uid() {
    let o = scenario("no-runtime-dir-fallback");
    o.assert_passed();
    assert_eq!(o.result("start_exit"), "0", "{}", o.transcript());
}
/// `systemctl --user reload` is a hot restart: the agent run survives, the
/// server is replaced, the unit stays active.
#[test]
fn systemctl_reload_keeps_the_agent_and_the_unit_active() {
    let o = scenario("reload-keeps-agents");
    o.assert_passed();
}
