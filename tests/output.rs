//! Where `run` writes: a destination that stops taking output (a stdout
//! nobody reads, a stalled journald) must never block the supervisor, and
//! `--log-file` keeps the output on disk within its bound.
#![cfg(target_os = "linux")]

mod support;

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

/// The marker of a gap in the output.
const DROPPED: &str = "bytes of output were dropped here";
/// Bulk output: more than the 1 MiB queue and the 64 KiB pipe together.
const BULK: usize = 3_000_000;

/// A pipe: (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two valid descriptors we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both are fresh descriptors owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Starts `cmd` with stdout into `stdout` and stderr into a file.
fn spawn_with_stdout(w: &World, mut cmd: Command, stdout: OwnedFd) -> Running {
    let err = w.dir.path().join("run.err");
    cmd.stdout(Stdio::from(stdout));
    cmd.stderr(std::fs::File::create(&err).unwrap());
    let child = cmd.spawn().expect("spawn paperclipd");
    Running {
        child,
        out: w.dir.path().join("no-stdout-file"),
        err,
    }
}

/// Regression (issue 11, defect 1): with a stdout nobody reads and 3 MB
/// of server output, paperclipd sat in a pipe write: no READY=1, and
/// SIGTERM was acted on only when the pipe moved.
#[test]
fn a_stdout_nobody_reads_never_blocks_readiness_or_the_stop() {
    let w = World::new();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd(&[], &["--print-bytes", &BULK.to_string()]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let (_unread, stdout) = pipe();
    let mut r = spawn_with_stdout(&w, cmd, stdout);
    n.wait_for("READY=1", DEADLINE);
    let t = Instant::now();
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the stop took {:?}",
        t.elapsed()
    );
    n.wait_for("STOPPING=1", DEADLINE);
    assert_eq!(w.state_file("stopped").as_deref(), Some("1"));
}

/// The same stuck stdout, read again later: what was queued arrives, then
/// one line says how much was dropped, then the output goes on.
#[test]
fn a_gap_in_the_output_is_reported_once_where_it_happened() {
    let w = World::new();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd(&[], &["--print-bytes", &BULK.to_string()]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let (unread, stdout) = pipe();
    let mut r = spawn_with_stdout(&w, cmd, stdout);
    n.wait_for("READY=1", DEADLINE);
    let got = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let got = got.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::from(unread);
            let mut buf = [0u8; 65536];
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let text = || String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
    wait_until(DEADLINE, "the report of the gap", || {
        text().contains(DROPPED)
    });
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    reader.join().unwrap();
    let text = text();
    let reports: Vec<&str> = text.lines().filter(|l| l.contains(DROPPED)).collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let dropped: usize = reports[0]
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap();
    let kept = text
        .lines()
        .filter(|l| l.starts_with("fixture bulk"))
        .count()
        * 100;
    assert!(
        (BULK..BULK + 1000).contains(&(kept + dropped)),
        "kept {kept} + dropped {dropped} bytes of {BULK}: {}",
        reports[0]
    );
    let after = text.split(reports[0]).nth(1).unwrap();
    assert!(
        after.contains("fixture: stopped on request"),
        "the output goes on after the gap: {after:?}"
    );
}

/// Issue 12: `--log-file` takes 50 MB and keeps at most (N+1) × SIZE on
/// disk, the newest lines in PATH; nothing goes to stdout or stderr.
#[test]
fn a_log_file_keeps_50_mb_within_n_plus_1_times_its_size() {
    let w = World::new();
    let log = w.dir.path().join("logs/paperclipd.log");
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd(
        &[
            "--log-file",
            log.to_str().unwrap(),
            "--log-max-size",
            "1MiB",
            "--log-keep",
            "3",
        ],
        &["--print-bytes", "50000000"],
    );
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", Duration::from_secs(120));
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", read(&log));
    assert_eq!((r.stdout(), r.stderr()), (String::new(), String::new()));
    let mut total = 0;
    for name in ["", ".1", ".2", ".3"] {
        let f = w.dir.path().join(format!("logs/paperclipd.log{name}"));
        let size = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        assert!(size <= 1 << 20, "{} has {size} bytes", f.display());
        total += size;
    }
    assert!(total <= 4 << 20, "{total} bytes on disk");
    assert!(
        !w.dir.path().join("logs/paperclipd.log.4").exists(),
        "only 3 rotated files"
    );
    let current = read(&log);
    let last_lines: Vec<&str> = current.lines().rev().take(10).collect();
    assert!(
        current.contains("fixture: stopped on request"),
        "{last_lines:?}"
    );
    let last = last_lines[0];
    assert!(
        last.contains(" paperclipd: ") && last.contains("stopped"),
        "our own last line, with a timestamp: {last:?}"
    );
}

/// Bad log settings exit 78 before anything runs, naming the fix.
#[test]
fn bad_log_settings_are_configuration_errors() {
    let w = World::new();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--log-max-size".into(), "1MiB".into()],
            "--log-max-size set without a log file",
        ),
        (
            vec![
                "--log-file".into(),
                "/tmp/x.log".into(),
                "--log-max-size".into(),
                "1k".into(),
            ],
            "out of range: expected 4KiB to 1TiB",
        ),
        (
            vec![
                "--log-file".into(),
                w.dir.path().join("link.log").display().to_string(),
            ],
            "not a symbolic link",
        ),
    ];
    std::os::unix::fs::symlink("/etc/hostname", w.dir.path().join("link.log")).unwrap();
    for (args, expect) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut r = w.spawn(w.run_cmd(&args, &[]), "bad");
        assert_eq!(r.code(), 78, "{args:?}: {}", r.stderr());
        assert!(r.stderr().contains(expect), "{args:?}: {}", r.stderr());
        assert!(w.state_file("starts").is_none(), "no server was started");
    }
}
