//! Black-box tests of `paperclipd run` against the fixture HTTP server and
//! a real NOTIFY_SOCKET.

mod support;

use std::fs;
use std::process::Command;
use support::*;

fn ready_world(extra_fixture: &[&str]) -> (World, NotifySocket, Running) {
    let w = World::new();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd(&[], extra_fixture);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    (w, n, r)
}

#[test]
fn ready_only_after_api_ok_and_ui_html_never_during_starting() {
    let w = World::new();
    let mut n = NotifySocket::bind(w.dir.path());
    // Listen at 0.3 s, API says "starting" (HTTP 200) until 1.2 s, UI 404
    // until 0.8 s: READY=1 must wait for the API's "ok".
    let mut cmd = w.run_cmd(
        &[],
        &[
            "--listen-after",
            "0.3",
            "--ui-after",
            "0.8",
            "--api-ok-after",
            "1.2",
        ],
    );
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "run");
    let ready_t = n.wait_for("READY=1", DEADLINE);
    let api_ok_at: f64 = w.state_file("api_ok_at").unwrap().trim().parse().unwrap();
    assert!(
        ready_t >= api_ok_at,
        "READY=1 at {ready_t} before the API said ok at {api_ok_at}"
    );
    assert_eq!(n.count("READY=1"), 1, "READY=1 exactly once");
    // Progress was reported while starting, including the "starting" phase.
    let text = n.all_text();
    assert!(text.contains("EXTEND_TIMEOUT_USEC="), "{text}");
    assert!(
        text.contains("status=\\\"starting\\\"") || text.contains("status=\"starting\""),
        "{text}"
    );
    assert!(text.contains("STATUS=ready after"), "{text}");
    // The fixture was probed before readiness (it got requests for both).
    let reqs = w.state_file("requests.log").unwrap();
    assert!(
        reqs.contains("/api/health") && reqs.contains(" /\n"),
        "{reqs}"
    );
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
}

#[test]
fn no_http_request_before_the_port_listens() {
    let w = World::new();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd(&[], &["--listen-after", "0.8"]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    let listening_at: f64 = w
        .state_file("listening_at")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let first: f64 = w
        .state_file("requests.log")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        first >= listening_at,
        "a request at {first} before listening at {listening_at}"
    );
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0);
}

#[test]
fn api_only_mode_ignores_the_ui() {
    let w = World::new();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd(&["--mode", "api-only"], &["--ui-mode", "404"]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0);
}

#[test]
fn api_only_mode_from_paperclip_config_serve_ui_false() {
    let w = World::new();
    let root = w.home().join("instances/default");
    fs::create_dir_all(&root).unwrap();
    fs::write(
        root.join("config.json"),
        format!(
            r#"{{"server":{{"host":"0.0.0.0","port":{},"serveUi":false}}}}"#,
            w.port
        ),
    )
    .unwrap();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["run", "--home"])
        .arg(w.home())
        .arg("--")
        .arg("python3")
        .arg(fixture());
    cmd.arg("--port")
        .arg(w.port.to_string())
        .arg("--state-dir")
        .arg(w.state())
        .args(["--ui-mode", "404"]);
    cmd.env("NOTIFY_SOCKET", &n.path)
        .env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID");
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
}

#[test]
fn readiness_timeout_exits_69_with_each_probes_last_result_and_output() {
    let w = World::new();
    let cmd = w.run_cmd(
        &["--ready-timeout", "3s"],
        &["--ui-mode", "404", "--print-lines", "30"],
    );
    let mut r = w.spawn(cmd, "run");
    assert_eq!(r.code(), 69);
    let err = r.stderr();
    assert!(
        err.contains(&format!(
            "UI http://127.0.0.1:{}/ → 404 application/json",
            w.port
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("API http://127.0.0.1:{}/api/health → 200", w.port)),
        "{err}"
    );
    assert!(
        err.contains("last 20 lines of the server's output"),
        "{err}"
    );
    assert!(err.contains("| fixture output line 29"), "{err}");
    assert!(
        !err.contains("| fixture output line 5\n"),
        "only the last 20 lines: {err}"
    );
    // The server was stopped, politely.
    assert!(
        w.state_file("signals")
            .unwrap_or_default()
            .contains("SIGTERM")
    );
    let pid = w.fixture_pid().unwrap();
    assert!(!pid_alive(pid));
}

#[test]
fn readiness_timeout_when_nothing_ever_listens() {
    let w = World::new();
    let cmd = w.run_cmd(&["--ready-timeout", "700ms"], &["--listen-after", "600"]);
    let mut r = w.spawn(cmd, "run");
    assert_eq!(r.code(), 69);
    let err = r.stderr();
    assert!(
        err.contains(&format!("port {} never accepted a connection", w.port)),
        "{err}"
    );
    assert!(
        !w.state().join("requests.log").exists(),
        "no HTTP request was sent"
    );
}

#[test]
fn server_exiting_before_ready_passes_its_code_with_diagnostics() {
    let w = World::new();
    let cmd = w.run_cmd(
        &[],
        // Exits once its second API answer ("starting") was sent, not after
        // a fixed delay: on a loaded machine 0.2 s of listening was not
        // always long enough for a probe to get an answer. A second request
        // means the prober has taken in the first answer.
        &[
            "--exit-after-api-answers",
            "2",
            "--exit-code",
            "3",
            "--listen-after",
            "0.1",
            "--api-ok-after",
            "60",
        ],
    );
    let mut r = w.spawn(cmd, "run");
    assert_eq!(r.code(), 3);
    let err = r.stderr();
    assert!(err.contains("exited with code 3"), "{err}");
    assert!(err.contains("before it became ready"), "{err}");
    assert!(err.contains("| fixture: exiting on my own with 3"), "{err}");
    assert!(err.contains("status=\"starting\""), "{err}");
}

#[test]
fn sigterm_forwards_to_the_server_exits_0_and_frees_the_lock() {
    let (w, mut n, mut r) = ready_world(&[]);
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(w.state_file("signals").unwrap().starts_with("SIGTERM"));
    assert_eq!(
        w.state_file("stopped").as_deref(),
        Some("1"),
        "the server shut down on its own terms"
    );
    n.wait_for("STOPPING=1", DEADLINE);
    // The lock is free: a second run starts and becomes ready.
    let mut n2 = w.notify_socket("n2");
    let mut cmd = w.run_cmd(&[], &[]);
    cmd.env("NOTIFY_SOCKET", &n2.path);
    let mut r2 = w.spawn(cmd, "run2");
    n2.wait_for("READY=1", DEADLINE);
    signal(r2.pid(), libc::SIGINT);
    assert_eq!(r2.code(), 0);
    assert!(
        w.state_file("signals").unwrap().contains("SIGINT"),
        "SIGINT is forwarded as SIGINT"
    );
}

/// systemd's default `WatchdogSignal=` is SIGABRT: it must stop the server
/// in order (SIGTERM to it), not dump core and leave PostgreSQL to SIGKILL.
#[test]
fn sigabrt_stops_the_server_with_sigterm_and_exits_0() {
    let (w, _n, mut r) = ready_world(&[]);
    signal(r.pid(), libc::SIGABRT);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(
        w.state_file("signals").unwrap().starts_with("SIGTERM"),
        "{:?}",
        w.state_file("signals")
    );
    assert_eq!(w.state_file("stopped").as_deref(), Some("1"));
}

#[test]
fn a_server_ignoring_sigterm_is_killed_after_the_stop_timeout() {
    let w = World::new();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd(&["--stop-timeout", "500ms"], &["--ignore-sigterm"]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    let pid = w.fixture_pid().unwrap();
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0);
    assert!(!pid_alive(pid));
    assert!(r.stderr().contains("killed with SIGKILL"), "{}", r.stderr());
}

#[test]
fn twenty_simultaneous_runs_start_exactly_one_server() {
    let w = World::new();
    let mut n = NotifySocket::bind(w.dir.path());
    // Every loser exits 75 on its own; the winner keeps running.
    let (winner, mut runs) = w.race(20, &mut n, "run");
    let winners = [winner];
    let starts = w.state_file("starts").unwrap();
    assert_eq!(
        starts.lines().count(),
        1,
        "exactly one server was started: {starts}"
    );
    // A loser names the holder's pid.
    let loser = runs.iter().find(|r| r.pid() != winners[0]).unwrap();
    assert!(
        loser.stderr().contains(&format!("pid {}", winners[0])),
        "{}",
        loser.stderr()
    );
    signal(winners[0], libc::SIGTERM);
    for r in runs.iter_mut() {
        r.wait();
    }
    assert_eq!(n.count("READY=1"), 1);
}

#[test]
fn a_stale_lock_record_does_not_block_a_start() {
    let w = World::new();
    let lock = w.lock_path("default");
    fs::create_dir_all(lock.parent().unwrap()).unwrap();
    fs::write(
        &lock,
        r#"{"pid":999999,"pid_start_ticks":1,"child_pid":999998,"manager":"foreground","unit":null,"command":["paperclipd","run"],"version":"0","started_at":"2020-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd(&[], &[]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    let rec = fs::read_to_string(&lock).unwrap();
    assert!(rec.contains(&format!("\"pid\": {}", r.pid())), "{rec}");
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0);
}

#[test]
fn a_corrupt_lock_record_does_not_block_a_start() {
    let w = World::new();
    let lock = w.lock_path("default");
    fs::create_dir_all(lock.parent().unwrap()).unwrap();
    fs::write(&lock, b"\xff\x00 not json").unwrap();
    let (_w2, _n, mut r) = {
        let mut n = NotifySocket::bind(w.dir.path());
        let mut cmd = w.run_cmd(&[], &[]);
        cmd.env("NOTIFY_SOCKET", &n.path);
        let r = w.spawn(cmd, "run");
        n.wait_for("READY=1", DEADLINE);
        ((), n, r)
    };
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0);
}

#[test]
fn a_foreign_listener_on_the_port_is_refused_with_75() {
    let w = World::new();
    let listener = std::net::TcpListener::bind(("127.0.0.1", w.port)).unwrap();
    let mut r = w.spawn(w.run_cmd(&[], &[]), "run");
    assert_eq!(r.code(), 75);
    let err = r.stderr();
    assert!(err.contains(&format!("port {}", w.port)), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "names the owner: {err}"
    );
    assert!(w.state_file("starts").is_none(), "no server was started");
    drop(listener);
}

#[test]
fn a_port_taken_by_a_stranger_during_startup_is_not_probed() {
    let w = World::new();
    // Our server listens only after 2 s; a stranger takes the port first.
    let mut r = w.spawn(w.run_cmd(&[], &["--listen-after", "2"]), "run");
    wait_until(DEADLINE, "the server to start", || {
        w.fixture_pid().is_some()
    });
    let listener = std::net::TcpListener::bind(("127.0.0.1", w.port)).unwrap();
    assert_eq!(r.code(), 75, "{}", r.stderr());
    assert!(r.stderr().contains("not by our server"), "{}", r.stderr());
    let pid = w.fixture_pid().unwrap();
    assert!(!pid_alive(pid), "our server was stopped");
    drop(listener);
}

#[test]
fn sigkill_of_the_wrapper_takes_the_server_down() {
    let (w, _n, mut r) = ready_world(&[]);
    let pid = w.fixture_pid().unwrap();
    signal(r.pid(), libc::SIGKILL);
    r.wait();
    wait_until(
        DEADLINE,
        "the server to exit after the wrapper died",
        || !pid_alive(pid),
    );
    assert!(
        w.state_file("signals")
            .unwrap_or_default()
            .contains("SIGTERM"),
        "parent-death signal is SIGTERM"
    );
}

#[test]
fn sigkill_of_the_server_reaps_its_grandchild_and_exits_137() {
    let (w, _n, mut r) = ready_world(&["--grandchild"]);
    let gc: i32 = w
        .state_file("grandchild.pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(gc));
    signal(w.fixture_pid().unwrap() as u32, libc::SIGKILL);
    assert_eq!(r.code(), 137, "{}", r.stderr());
    assert!(!pid_alive(gc), "the grandchild was left running");
    assert!(
        r.stderr().contains("was killed by SIGKILL"),
        "{}",
        r.stderr()
    );
}

#[test]
fn the_server_exiting_after_ready_passes_its_code() {
    let (w, _n, mut r) = ready_world(&["--exit-after", "1.0", "--exit-code", "42"]);
    assert_eq!(r.code(), 42, "{}", r.stderr());
    drop(w);
}

#[test]
fn the_servers_environment_is_clean_and_names_the_instance() {
    let w = World::new();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd(&["--instance", "env-test"], &[]);
    cmd.env("NOTIFY_SOCKET", &n.path)
        .env("WATCHDOG_USEC", "1000000")
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", "1");
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    let env: serde_json::Value = serde_json::from_str(&w.state_file("env.json").unwrap()).unwrap();
    // The server gets a notify socket of paperclipd's own, never the manager's.
    let own = w
        .home()
        .join("instances/env-test/paperclipd-notify.sock")
        .display()
        .to_string();
    assert_eq!(env["NOTIFY_SOCKET"], own.as_str(), "{env}");
    assert_ne!(env["NOTIFY_SOCKET"], n.path.display().to_string().as_str());
    for gone in ["WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID"] {
        assert!(
            env.get(gone).is_none(),
            "{gone} leaked into the server's environment"
        );
    }
    assert_eq!(env["PAPERCLIP_SERVICE_MANAGED"], "1");
    assert_eq!(env["PAPERCLIP_INSTANCE_ID"], "env-test");
    assert_eq!(env["PAPERCLIP_HOME"], w.home().to_str().unwrap());
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0);
}

#[test]
fn config_env_table_reaches_the_server() {
    let w = World::new();
    let cfg = w.dir.path().join("p.toml");
    fs::write(
        &cfg,
        "stop_timeout = \"5s\"\n[env]\nMY_SETTING = \"hello\"\n",
    )
    .unwrap();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd(&["--config", cfg.to_str().unwrap()], &[]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    let env: serde_json::Value = serde_json::from_str(&w.state_file("env.json").unwrap()).unwrap();
    assert_eq!(env["MY_SETTING"], "hello");
    assert!(
        !r.stderr().contains("hello"),
        "config env values are not logged"
    );
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0);
}

#[test]
fn the_command_from_the_config_file_is_used() {
    let w = World::new();
    let cfg_dir = w.home().join("instances/default");
    fs::create_dir_all(&cfg_dir).unwrap();
    let fx = fixture();
    fs::write(
        cfg_dir.join("paperclipd.toml"),
        format!(
            "command = [\"python3\", {:?}, \"--port\", \"{}\", \"--state-dir\", {:?}]\nurl = \"{}\"\n",
            fx.to_str().unwrap(),
            w.port,
            w.state().to_str().unwrap(),
            w.url()
        ),
    )
    .unwrap();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["run", "--home"])
        .arg(w.home())
        .env("NOTIFY_SOCKET", &n.path);
    cmd.env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID");
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0);
}

#[test]
fn watchdog_is_fed_only_while_the_api_passes() {
    let w = World::new();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd(&[], &["--health-fail-after", "2.5"]);
    cmd.env("NOTIFY_SOCKET", &n.path)
        .env("WATCHDOG_USEC", "600000");
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    n.wait_for("WATCHDOG=1", DEADLINE);
    let failing_t = n.wait_for("STATUS=watchdog: API probe failing", DEADLINE);
    // Let a few more watchdog periods pass: no WATCHDOG=1 after the failure.
    let until = wall_now() + 1.0;
    wait_until(DEADLINE, "1 s of watchdog periods", || {
        n.drain();
        wall_now() > until
    });
    let late: Vec<_> = n
        .messages
        .iter()
        .filter(|(t, m)| *t > failing_t + 0.05 && m.contains("WATCHDOG=1"))
        .collect();
    assert!(
        late.is_empty(),
        "WATCHDOG=1 sent while the API fails: {late:?}"
    );
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0);
}

#[test]
fn watchdog_pid_of_another_process_is_not_ours() {
    let w = World::new();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd(&[], &[]);
    cmd.env("NOTIFY_SOCKET", &n.path)
        .env("WATCHDOG_USEC", "300000")
        .env("WATCHDOG_PID", "1");
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    let until = wall_now() + 0.5;
    wait_until(DEADLINE, "0.5 s after ready", || {
        n.drain();
        wall_now() > until
    });
    assert_eq!(n.count("WATCHDOG=1"), 0);
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0);
}

#[test]
fn a_notify_socket_pointing_at_nothing_is_a_warning_not_a_failure() {
    let w = World::new();
    w.notify_socket_warns_but_runs(
        w.dir.path().join("nobody-listens.sock").as_os_str(),
        "NOTIFY_SOCKET",
    );
}

#[cfg(target_os = "linux")] // abstract sockets exist only on Linux
#[test]
fn abstract_notify_socket_is_supported() {
    use std::os::linux::net::SocketAddrExt;
    let w = World::new();
    let name = format!("paperclipd-test-{}-{}", std::process::id(), w.port);
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut cmd = w.run_cmd(&[], &[]);
    cmd.env("NOTIFY_SOCKET", format!("@{name}"));
    let mut r = w.spawn(cmd, "run");
    let mut buf = [0u8; 4096];
    let mut got = String::new();
    while !got.contains("READY=1") {
        let n = sock
            .recv(&mut buf)
            .expect("a notification before the deadline");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0);
}

#[test]
fn status_tells_starting_ready_and_conflict_apart() {
    let w = World::new();
    let mut n = NotifySocket::bind(w.dir.path());
    let mut cmd = w.run_cmd(&[], &["--listen-after", "1.5"]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "run");
    wait_until(DEADLINE, "the server to start", || {
        w.fixture_pid().is_some()
    });
    let (code, v, _) = w.status_json();
    if v["probes"]["ready"] == false {
        assert_eq!((code, v["state"].as_str()), (1, Some("starting")), "{v}");
        assert_eq!(v["lock"]["pid"], r.pid(), "{v}");
    }
    n.wait_for("READY=1", DEADLINE);
    let (code, v, _) = w.status_json();
    assert_eq!((code, v["state"].as_str()), (0, Some("ready")), "{v}");
    assert_eq!(
        v["lock"]["record"]["child_pid"],
        w.fixture_pid().unwrap(),
        "{v}"
    );
    assert_eq!(
        v["port"]["owners"][0]["pid"],
        w.fixture_pid().unwrap(),
        "{v}"
    );
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0);
    // A stranger on the port with nothing of ours running: conflict.
    let stranger = std::net::TcpListener::bind(("127.0.0.1", w.port)).unwrap();
    let (code, v, _) = w.status_json();
    assert_eq!((code, v["state"].as_str()), (1, Some("conflict")), "{v}");
    drop(stranger);
    let (code, v, _) = w.status_json();
    assert_eq!((code, v["state"].as_str()), (3, Some("stopped")), "{v}");
}

/// `paperclipd probe` without probe flags checks the running server where
/// it serves (the lock holder's settings, as `status` does): a run started
/// with `--url` on another port was "not ready" to a bare `probe`, which
/// container HEALTHCHECKs and Kubernetes exec probes run. Flags given to
/// `probe` still win.
#[test]
fn probe_without_flags_checks_the_running_server_where_it_serves() {
    let w = World::new();
    let mut n = w.notify_socket("n");
    let mut cmd = w.run_cmd(&[], &[]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut r = w.spawn(cmd, "run");
    n.wait_for("READY=1", DEADLINE);
    let probe = |args: &[&str]| {
        Command::new(bin())
            .arg("probe")
            .arg("--home")
            .arg(w.home())
            .args(args)
            .env_remove("PAPERCLIP_HOME")
            .env_remove("PAPERCLIP_INSTANCE_ID")
            .output()
            .unwrap()
    };
    let o = probe(&[]);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains(&w.url()), "{out}");
    assert!(err.contains("the running server's settings"), "{err}");
    let elsewhere = format!("http://127.0.0.1:{}", free_port());
    let o = probe(&["--url", &elsewhere]);
    assert_eq!(o.status.code(), Some(1), "explicit flags win");
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
}

/// The tests' ports never come from the kernel's ephemeral range: every
/// outgoing connection on the machine (the probes of other tests, each on a
/// fresh connection) takes its local port from there, and one that took a
/// test's port between its pick and its use made the bind fail
/// (`a_foreign_listener_on_the_port_is_refused_with_75`: EADDRINUSE, seen
/// with two CPU hogs beside a CI run).
#[test]
fn test_ports_are_outside_the_ephemeral_range() {
    let range = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let low: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let p = free_port();
        assert!(p < low, "port {p} is in the ephemeral range ({range:?})");
        assert!(
            ![3100, 54329].contains(&p),
            "Paperclip's own ports are never handed out"
        );
        assert!(seen.insert(p), "port {p} handed out twice");
    }
}
