//! Hostile servers: what breaks naive readiness checks must leave
//! paperclipd not ready, within its per-request timeout, with bounded
//! memory, and with a diagnostic that says what happened.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// paperclipd's own peak RSS so far (`VmHWM`, KiB), while it lives.
/// Not wait4's `ru_maxrss`: that is the largest of the process and every
/// child it reaped, here the Python fixture.
fn own_peak_rss_kib(pid: i32) -> Option<i64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Runs a command to its end and returns (exit code, stdout, stderr, its
/// own peak RSS in KiB, sampled until it exits).
fn run_measured(mut cmd: Command, w: &World, name: &str) -> (i32, String, String, i64) {
    let r = w.spawn(std::mem::replace(&mut cmd, Command::new("true")), name);
    let pid = r.pid() as i32;
    let mut status = 0;
    let mut peak = 0;
    let start = Instant::now();
    loop {
        // A zombie has no VmHWM: the last sample while alive stands.
        if let Some(kib) = own_peak_rss_kib(pid) {
            peak = peak.max(kib);
        }
        // SAFETY: wait4 on our own child with a valid status pointer; no rusage.
        let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, std::ptr::null_mut()) };
        if got == pid {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{name} did not finish: {}",
            r.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let (out, err) = (r.stdout(), r.stderr());
    std::mem::forget(r); // already reaped
    assert!(peak > 0, "{name}: no VmHWM sample of pid {pid}");
    (code, out, err, peak)
}

fn hostile(mode: &str, expect: &str) {
    let w = World::new();
    let cmd = w.run_cmd(
        &["--ready-timeout", "4s", "--mode", "api-only"],
        &["--api-mode", mode],
    );
    let start = Instant::now();
    let (code, _, err, max_rss_kib) = run_measured(cmd, &w, "run");
    assert_eq!(code, 69, "{mode}: {err}");
    assert!(
        err.contains(expect),
        "{mode}: expected {expect:?} in:\n{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{mode}: the readiness timeout did not hold"
    );
    assert!(
        max_rss_kib < 32 * 1024,
        "{mode}: paperclipd peaked at {max_rss_kib} KiB"
    );
    eprintln!("{mode}: paperclipd peaked at {max_rss_kib} KiB");
    // The probe alone: not ready, and the per-request timeout (2 s) holds.
    let mut fx = Command::new("python3")
        .arg(fixture())
        .args(["--port", &w.port.to_string(), "--state-dir"])
        .arg(w.dir.path().join("probe-state"))
        .args(["--api-mode", mode])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(DEADLINE, "the fixture to listen", || {
        w.dir.path().join("probe-state/listening_at").exists()
    });
    let mut p = Command::new(bin());
    p.args([
        "probe",
        "--url",
        &w.url(),
        "--mode",
        "api-only",
        "--json",
        "--home",
    ])
    .arg(w.home());
    let t = Instant::now();
    let (code, out, err, _) = run_measured(p, &w, "probe");
    assert_eq!(code, 1, "{mode}: {out}{err}");
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "{mode}: probe took {:?}",
        t.elapsed()
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ready"], false);
    signal(fx.id(), libc::SIGKILL);
    let _ = fx.wait();
}

#[test]
fn a_server_that_accepts_and_never_answers() {
    hostile("hang", "timed out");
}

#[test]
fn a_server_that_answers_one_byte_a_second() {
    hostile("slow", "timed out");
}

#[test]
fn a_100_mb_body_is_not_read_and_not_ready() {
    hostile("huge", "body larger than 64 KiB");
}

#[test]
fn a_redirect_to_another_host_is_not_followed() {
    hostile("redirect", "HTTP 302 is not 2xx");
}

#[test]
fn non_http_garbage_is_not_ready() {
    hostile("garbage", "request failed");
}

#[test]
fn a_status_of_the_wrong_type_is_not_ready() {
    hostile("bad-status-type", "expected the string \"ok\"");
}

#[test]
fn invalid_utf8_in_the_status_is_not_ready() {
    hostile("invalid-utf8", "not valid JSON");
}

#[test]
fn a_server_stuck_in_starting_is_not_ready() {
    hostile("starting-forever", "status is \"starting\"");
}

/// Regression (the flake of
/// `readiness_timeout_exits_69_with_each_probes_last_result_and_output`):
/// the UI probe dropped a 404 response before reading its body, so the
/// connection closed with unread data and the server saw a reset (a real
/// server logs a broken pipe for each probe). Every probe must read its
/// bounded body and close cleanly, also when it is abandoned by a stop.
/// The fixture streams each body in two parts, so every probe is still
/// reading when the stop comes.
#[test]
fn probes_close_cleanly_so_the_server_sees_no_reset() {
    let w = World::new();
    let cmd = w.run_cmd(&[], &["--ui-mode", "404", "--body-delay", "0.1"]);
    let mut r = w.spawn(cmd, "run");
    let ui_probes = || {
        let requests = w.state_file("requests.log").unwrap_or_default();
        requests.lines().filter(|l| l.ends_with(" /")).count()
    };
    wait_until(DEADLINE, "5 UI probes", || ui_probes() >= 5);
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(
        w.state_file("client_resets"),
        None,
        "{} UI probes; the server saw resets",
        ui_probes()
    );
}
