//! How `run` ends without a terminal: which signal the server gets for each
//! stop signal, the exit code of a server that gives up before it is ready,
//! and our lines never continuing a line the server left open.

mod support;

use std::fs;

use support::*;

fn ready_run(w: &World, name: &str) -> Running {
    let mut n = w.notify_socket(name);
    let mut cmd = w.run_cmd(&[], &[]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let r = w.spawn(cmd, name);
    n.wait_for("READY=1", DEADLINE);
    r
}

#[test]
fn sighup_and_sigquit_reach_the_server_as_sigterm() {
    // Paperclip stops in order only on SIGTERM/SIGINT; on SIGHUP or SIGQUIT
    // its Node dies at once and orphans PostgreSQL.
    for sig in [libc::SIGHUP, libc::SIGQUIT] {
        let w = World::new();
        let mut r = ready_run(&w, "run");
        signal(r.pid(), sig);
        assert_eq!(r.code(), 0, "a requested stop exits 0: {}", r.stderr());
        let got = w.state_file("signals").unwrap();
        assert!(
            got.starts_with("SIGTERM"),
            "signal {sig}: the server got {got}"
        );
        assert!(!got.contains("SIGHUP") && !got.contains("SIGQUIT"), "{got}");
        assert_eq!(w.state_file("stopped").as_deref(), Some("1"));
    }
}

#[test]
fn a_server_exiting_0_before_it_was_ready_exits_70() {
    let w = World::new();
    let cmd = w.run_cmd(
        &[],
        &[
            "--api-mode",
            "starting-forever",
            "--exit-after",
            "0.3",
            "--exit-code",
            "0",
        ],
    );
    let mut r = w.spawn(cmd, "run");
    assert_eq!(r.code(), 70, "{}", r.stderr());
    let err = r.stderr();
    assert!(err.contains("exited with code 0"), "{err}");
    assert!(err.contains("before it became ready"), "{err}");
    assert!(err.contains("exit 70 (EX_SOFTWARE)"), "{err}");
}

#[test]
fn our_line_never_continues_a_line_the_server_left_open() {
    let w = World::new();
    let both = w.dir.path().join("both.log");
    let file = fs::File::create(&both).unwrap();
    let mut cmd = w.run_cmd(&[], &["--partial-line", "30"]);
    cmd.stdout(file.try_clone().unwrap()).stderr(file);
    let mut child = cmd.spawn().unwrap();
    wait_until(DEADLINE, "the server's open line", || {
        read(&both).contains("first half, ")
    });
    signal(child.id(), libc::SIGTERM);
    let st = wait_exit(&mut child, DEADLINE);
    let out = read(&both);
    assert_eq!(st.code(), Some(0), "{out}");
    let open = out.lines().find(|l| l.contains("first half, ")).unwrap();
    assert!(!open.contains("paperclipd:"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("paperclipd: received SIGTERM")),
        "{out}"
    );
}

/// Issue 19 item 4: exit 0 on its own after ready is not a stop anybody
/// asked for; `Restart=on-failure` and launchd's KeepAlive ignore exit 0,
/// so paperclipd exits 70 and says why.
#[test]
fn a_server_exiting_0_after_it_was_ready_exits_70() {
    let w = World::new();
    // Ready at once; exits 0 on its own 3 s later. Ready well before on a
    // loaded machine; the message below tells the two paths apart.
    let cmd = w.run_cmd(&[], &["--exit-after", "3", "--exit-code", "0"]);
    let mut r = w.spawn(cmd, "run");
    assert_eq!(r.code(), 70, "{}", r.stderr());
    let err = r.stderr();
    assert!(err.contains("ready after"), "{err}");
    assert!(err.contains("exited with code 0 after"), "{err}");
    assert!(err.contains("of service"), "{err}");
    assert!(err.contains("on its own after it was ready"), "{err}");
    assert!(err.contains("exit 70 (EX_SOFTWARE)"), "{err}");
}
