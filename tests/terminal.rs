//! `paperclipd run` in a real terminal (tmux, an interactive bash): the
//! first run with onboarding (`tests/fixture/paperclipai.py` stands in for
//! Paperclip's), job control, `stty tostop`, Ctrl-C, and a screen where our
//! lines and the server's never share a line.
#![cfg(target_os = "linux")]

mod support;

use std::fs;

use support::tmux::{Tmux, pgid_of, proc_state};
use support::*;

/// A bash in tmux with this world's environment: the fake `paperclipai`
/// (serving the fixture with `server_args`) and a notify socket.
fn terminal(w: &World, notify: &NotifySocket, server_args: &str, rc: &[&str]) -> Tmux {
    let fake =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture/paperclipai.py");
    let mut lines = vec![
        "unset PAPERCLIP_HOME PAPERCLIP_INSTANCE_ID WATCHDOG_USEC WATCHDOG_PID INVOCATION_ID"
            .to_string(),
        format!("export PAPERCLIP_SHIM_PATH={}", fake.display()),
        format!("export FAKE_PORT={}", w.port),
        format!("export FAKE_STATE_DIR={}", w.state().display()),
        format!("export FAKE_SERVER_ARGS='{server_args}'"),
        format!("export NOTIFY_SOCKET={}", notify.path.display()),
        // No user bus: the unit checks are skipped quickly.
        format!(
            "export XDG_RUNTIME_DIR={} DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent",
            w.dir.path().display()
        ),
    ];
    lines.extend(rc.iter().map(|l| l.to_string()));
    Tmux::start(w.dir.path(), &lines)
}

/// `paperclipd run` for the default instance (Paperclip's command).
fn run_default(w: &World, args: &str) -> String {
    format!("{} run --home {} {args}", bin(), w.home().display())
}

/// `paperclipd run` of the fixture server itself.
fn run_fixture(w: &World, fixture_args: &str) -> String {
    format!(
        "{} run --home {} --url {} -- python3 {} --port {} --state-dir {} {fixture_args}",
        bin(),
        w.home().display(),
        w.url(),
        fixture().display(),
        w.port,
        w.state().display()
    )
}

/// The pids in the lock record: (paperclipd, its server).
fn lock_pids(w: &World) -> (i32, Option<i32>) {
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(w.lock_path("default")).unwrap()).unwrap();
    (
        v["pid"].as_i64().unwrap() as i32,
        v["child_pid"].as_i64().map(|p| p as i32),
    )
}

/// Every paperclipd line starts at column 0, and no line holds both our
/// text and the server's.
fn assert_clean_lines(screen: &str) {
    for line in screen.lines() {
        let ours = line.find("paperclipd:");
        assert!(
            ours.is_none_or(|i| i == 0),
            "paperclipd text not at column 0: {line:?}\n--- screen:\n{screen}"
        );
        let theirs = line.contains("fixture: ") || line.contains("fixture output line");
        assert!(
            !(ours.is_some() && theirs),
            "our text and the server's on one line: {line:?}\n--- screen:\n{screen}"
        );
    }
}

/// After paperclipd exited: nothing it started is left.
fn assert_nothing_left(w: &World, server: i32) {
    assert!(!pid_alive(server), "the server {server} is still there");
    if let Some(gc) = w.state_file("grandchild.pid") {
        let gc: i32 = gc.trim().parse().unwrap();
        assert!(!pid_alive(gc), "the server's child {gc} is still there");
    }
    assert!(
        read(&w.lock_path("default")).is_empty(),
        "the lock record was not cleared"
    );
}

#[test]
fn first_run_yes_the_onboarding_process_is_the_supervised_server() {
    let w = World::new();
    let mut n = w.notify_socket("n");
    let t = terminal(&w, &n, "--grandchild --print-lines 3", &[]);
    t.type_line(&run_default(&w, ""));
    t.wait_for("Choose setup path");
    t.keys(&["Enter"]);
    t.wait_for("Start Paperclip now?");
    t.keys(&["y"]);
    n.wait_for("READY=1", DEADLINE);
    let server = w.fixture_pid().unwrap();
    assert_eq!(w.state_file("starts").unwrap().lines().count(), 1);
    assert_eq!(
        lock_pids(&w).1,
        Some(server),
        "the lock names the onboarding process"
    );
    let (code, v, err) = w.status_json();
    assert_eq!(
        (code, v["state"].as_str()),
        (0, Some("ready")),
        "{v}\n{err}"
    );
    t.keys(&["C-c"]);
    assert_eq!(t.status_of(1), 0, "{}", t.screen());
    assert_nothing_left(&w, server);
    let screen = t.screen();
    assert!(
        screen.contains("onboarding started the server itself"),
        "{screen}"
    );
    assert!(!screen.contains("error:"), "{screen}");
    assert_clean_lines(&screen);
}

#[test]
fn first_run_no_then_paperclipai_run_starts() {
    let w = World::new();
    let mut n = w.notify_socket("n");
    let t = terminal(&w, &n, "", &[]);
    t.type_line(&run_default(&w, ""));
    t.wait_for("Choose setup path");
    t.keys(&["Enter"]);
    t.wait_for("Start Paperclip now?");
    t.keys(&["n"]);
    n.wait_for("READY=1", DEADLINE);
    let server = w.fixture_pid().unwrap();
    let screen = t.screen();
    assert!(screen.contains("You're all set!"), "{screen}");
    assert!(screen.contains("run --instance default (pid"), "{screen}");
    t.keys(&["C-c"]);
    assert_eq!(t.status_of(1), 0, "{}", t.screen());
    assert_nothing_left(&w, server);
}

/// Regression (issue 18, defect 2): after onboarding, a lock record that
/// could not be written (ENOSPC, injected with strace into every record
/// write after the first) made `run` exit 71 with the lock free, while the
/// `paperclipai run` it had just spawned kept running. It is a warning
/// now, as on the main path.
#[test]
fn a_failed_lock_record_write_after_onboarding_is_a_warning() {
    assert!(
        std::process::Command::new("strace")
            .arg("-V")
            .output()
            .is_ok(),
        "this test needs strace (apt install strace)"
    );
    let w = World::new();
    let mut n = w.notify_socket("n");
    let t = terminal(&w, &n, "", &[]);
    t.type_line(&format!(
        "strace -qq -o /dev/null -e trace=ftruncate -e inject=ftruncate:error=ENOSPC:when=2+ {}",
        run_default(&w, "")
    ));
    t.wait_for("Choose setup path");
    t.keys(&["Enter"]);
    t.wait_for("Start Paperclip now?");
    t.keys(&["n"]);
    wait_until(DEADLINE, "READY=1 or the end of the run", || {
        n.drain();
        n.count("READY=1") > 0 || t.statuses().len() > 1
    });
    let server = w.fixture_pid();
    assert_eq!(n.count("READY=1"), 1, "{}", t.screen());
    let server = server.unwrap();
    assert!(
        t.screen().contains("cannot write the lock record"),
        "{}",
        t.screen()
    );
    t.keys(&["C-c"]);
    assert_eq!(t.status_of(1), 0, "{}", t.screen());
    assert!(!pid_alive(server), "the server {server} is still there");
}

#[test]
fn ctrl_c_at_the_first_question_leaves_nothing() {
    let w = World::new();
    let n = w.notify_socket("n");
    let t = terminal(&w, &n, "", &[]);
    t.type_line(&run_default(&w, ""));
    t.wait_for("Choose setup path");
    t.keys(&["C-c"]);
    assert_eq!(t.status_of(1), 0, "{}", t.screen());
    let screen = t.screen();
    assert!(screen.contains("Setup cancelled."), "{screen}");
    assert!(screen.contains("onboarding was cancelled"), "{screen}");
    assert!(!w.home().join("instances/default/config.json").exists());
    assert!(w.fixture_pid().is_none(), "a server was started");
}

#[test]
fn flags_and_paperclipd_toml_survive_onboarding() {
    // config.json will say port `wrong` and serveUi true; --url and the
    // file's api-only mode must win (the fixture's UI answers 404).
    let w = World::new();
    let root = w.home().join("instances/default");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("paperclipd.toml"), "mode = \"api-only\"\n").unwrap();
    let mut n = w.notify_socket("n");
    let wrong = free_port();
    let rc = [format!("export FAKE_CONFIG_PORT={wrong}")];
    let rc: Vec<&str> = rc.iter().map(String::as_str).collect();
    let t = terminal(&w, &n, "--ui-mode 404", &rc);
    t.type_line(&run_default(&w, &format!("--url {}", w.url())));
    t.wait_for("Choose setup path");
    t.keys(&["Enter"]);
    t.wait_for("Start Paperclip now?");
    t.keys(&["y"]);
    n.wait_for("READY=1", DEADLINE);
    t.keys(&["C-c"]);
    assert_eq!(t.status_of(1), 0, "{}", t.screen());
}

#[test]
fn serve_ui_false_written_by_onboarding_means_api_only() {
    let w = World::new();
    let mut n = w.notify_socket("n");
    let t = terminal(&w, &n, "--ui-mode 404", &["export FAKE_SERVE_UI=false"]);
    t.type_line(&run_default(&w, ""));
    t.wait_for("Choose setup path");
    t.keys(&["Enter"]);
    t.wait_for("Start Paperclip now?");
    t.keys(&["n"]);
    n.wait_for("READY=1", DEADLINE);
    t.keys(&["C-c"]);
    assert_eq!(t.status_of(1), 0, "{}", t.screen());
}

#[test]
fn the_terminal_shows_whole_lines_while_the_server_prints() {
    let w = World::new();
    let mut n = w.notify_socket("n");
    let t = terminal(&w, &n, "", &[]);
    t.type_line(&run_fixture(&w, "--listen-after 1 --print-lines 5"));
    n.wait_for("READY=1", DEADLINE);
    t.wait_for("ready after");
    t.keys(&["C-c"]);
    assert_eq!(t.status_of(1), 0, "{}", t.screen());
    let screen = t.screen();
    assert!(screen.contains("fixture: listening on"), "{screen}");
    assert_clean_lines(&screen);
}

#[test]
fn ctrl_z_suspends_both_and_fg_resumes_both() {
    let w = World::new();
    let mut n = w.notify_socket("n");
    let t = terminal(&w, &n, "", &[]);
    let shell = t.shell_pid();
    t.type_line(&run_fixture(&w, ""));
    n.wait_for("READY=1", DEADLINE);
    let (wrapper, _) = lock_pids(&w);
    let server = w.fixture_pid().unwrap();
    let server_group = pgid_of(server).unwrap();
    t.keys(&["C-z"]);
    wait_until(
        DEADLINE,
        "both stopped and the shell in the foreground",
        || {
            let (ws, tpgid) = proc_state(wrapper).unwrap_or(('?', 0));
            let (ss, _) = proc_state(server).unwrap_or(('?', 0));
            ws == 'T' && ss == 'T' && tpgid == shell
        },
    );
    assert_eq!(t.status_of(1), 148, "{}", t.screen());
    t.type_line("fg");
    wait_until(
        DEADLINE,
        "both running and the server in the foreground",
        || {
            let (ws, tpgid) = proc_state(wrapper).unwrap_or(('?', 0));
            let (ss, _) = proc_state(server).unwrap_or(('?', 0));
            ws != 'T' && ss != 'T' && tpgid == server_group
        },
    );
    let (code, v, err) = w.status_json();
    assert_eq!(
        (code, v["state"].as_str()),
        (0, Some("ready")),
        "{v}\n{err}"
    );
    t.keys(&["C-c"]);
    assert_eq!(t.status_of(2), 0, "{}", t.screen());
    assert_nothing_left(&w, server);
}

#[test]
fn with_stty_tostop_paperclipd_is_never_stopped() {
    let w = World::new();
    let mut n = w.notify_socket("n");
    let t = terminal(&w, &n, "", &["stty tostop"]);
    t.type_line(&run_fixture(&w, "--print-lines 3"));
    n.wait_for("READY=1", DEADLINE);
    let (wrapper, _) = lock_pids(&w);
    let server = w.fixture_pid().unwrap();
    t.wait_for("ready after");
    assert_ne!(proc_state(wrapper).map(|s| s.0), Some('T'));
    t.keys(&["C-c"]);
    assert_eq!(t.status_of(1), 0, "{}", t.screen());
    assert!(t.screen().contains("stopped"), "{}", t.screen());
    assert_nothing_left(&w, server);
}

#[test]
fn ctrl_c_while_starting_is_a_stop_not_a_failure() {
    let w = World::new();
    let n = w.notify_socket("n");
    let t = terminal(&w, &n, "", &[]);
    t.type_line(&run_fixture(&w, "--listen-after 60"));
    wait_until(DEADLINE, "the server to start", || {
        w.fixture_pid().is_some()
    });
    t.wait_for("fixture: a line on stderr");
    t.keys(&["C-c"]);
    assert_eq!(t.status_of(1), 0, "{}", t.screen());
    let screen = t.screen();
    assert!(screen.contains("Ctrl-C"), "{screen}");
    assert!(!screen.contains("error:"), "{screen}");
}

#[test]
fn a_server_exiting_0_before_ready_in_a_terminal_exits_70() {
    let w = World::new();
    let n = w.notify_socket("n");
    let t = terminal(&w, &n, "", &[]);
    t.type_line(&run_fixture(
        &w,
        "--api-mode starting-forever --exit-after 0.5 --exit-code 0",
    ));
    assert_eq!(t.status_of(1), 70, "{}", t.screen());
}

/// paperclipd's child named `comm` (its helpers name themselves).
fn helper(children: &str, comm: &str) -> i32 {
    let found: Vec<i32> = children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|p| fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{comm} among the children of paperclipd: {children}"
    );
    found[0]
}

#[test]
fn the_terminal_witness_holds_nothing_of_ours() {
    // The forks that watch the server's group (the terminal witness and the
    // group guard) keep only the terminal and their pipes: not the instance
    // lock, nor any other descriptor; and `status` does not count them as
    // adopted.
    let w = World::new();
    let mut n = w.notify_socket("n");
    let t = terminal(&w, &n, "", &[]);
    t.type_line(&run_fixture(&w, ""));
    n.wait_for("READY=1", DEADLINE);
    let (wrapper, _) = lock_pids(&w);
    let server = w.fixture_pid().unwrap();
    let children = fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children")).unwrap();
    assert_eq!(
        children.split_whitespace().count(),
        3,
        "children of paperclipd (server, witness, guard): {children}"
    );
    let witness = helper(&children, "paperclipd-tty");
    let guard = helper(&children, "paperclipd-grd");
    assert_eq!(
        pgid_of(guard),
        pgid_of(server),
        "the guard is in the server's group"
    );
    let guard_fds: Vec<String> = fs::read_dir(format!("/proc/{guard}/fd"))
        .unwrap()
        .flatten()
        .map(|e| {
            fs::read_link(e.path())
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(
        guard_fds.len() == 1 && guard_fds[0].starts_with("pipe:"),
        "the guard's descriptors: {guard_fds:?}"
    );
    assert_eq!(
        pgid_of(witness),
        pgid_of(server),
        "the witness is in the server's group"
    );
    let fds: Vec<String> = fs::read_dir(format!("/proc/{witness}/fd"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut fds: Vec<i32> = fds.iter().filter_map(|f| f.parse().ok()).collect();
    fds.sort();
    assert_eq!(fds.len(), 5, "the witness's descriptors: {fds:?}");
    for fd in &fds[3..] {
        let target = fs::read_link(format!("/proc/{witness}/fd/{fd}")).unwrap();
        assert!(
            target.to_string_lossy().starts_with("pipe:"),
            "fd {fd} → {target:?}"
        );
    }
    // It is paperclipd's own helper, not a process it adopted.
    let (code, v, err) = w.status_json();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        v["adopted"]["count"], 0,
        "the witness counted as adopted: {v}"
    );
    t.keys(&["C-c"]);
    assert_eq!(t.status_of(1), 0, "{}", t.screen());
    assert!(!pid_alive(witness), "the witness outlived paperclipd");
    assert!(!pid_alive(guard), "the guard outlived paperclipd");
}
