//! The launchd flows against the recording stand-in: which `launchctl`
//! calls, in which order, what reaches the disk, and how fast a start that
//! cannot succeed fails.

use std::time::{Duration, Instant};

use super::*;
use crate::cli::Selection;
use crate::instance::InstanceId;
use crate::launchd::guard::{self, GuardState, Pause};
use crate::launchd::standin::{End, StandIn};

const LABEL: &str = "ai.paperclip.paperclipd.mac";

struct World {
    dir: tempfile::TempDir,
    instance: Instance,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let instance = Instance::new(
            InstanceId::parse("mac").unwrap(),
            dir.path().join(".paperclip"),
        );
        std::fs::create_dir_all(instance.root()).unwrap();
        World { dir, instance }
    }
    fn env<'a>(&'a self, l: &'a StandIn) -> Env<'a, StandIn> {
        Env {
            home: self.dir.path(),
            uid: 501,
            launchctl: l,
            exe: Path::new("/opt/homebrew/opt/paperclipd/bin/paperclipd"),
        }
    }
    fn plist(&self) -> std::path::PathBuf {
        self.dir
            .path()
            .join(format!("Library/LaunchAgents/{LABEL}.plist"))
    }
    /// Writes a plist that differs from what `install` renders.
    fn old_plist(&self) {
        std::fs::create_dir_all(self.plist().parent().unwrap()).unwrap();
        std::fs::write(self.plist(), "<!-- supervised by paperclipd -->").unwrap();
    }
    /// Holds the instance's lock as the job's paperclipd would.
    fn hold_lock(&self) -> crate::lock::InstanceLock {
        let invoker = crate::invoker::Invoker {
            kind: crate::invoker::ManagerKind::Launchd,
            unit: Some(LABEL.into()),
        };
        match crate::lock::try_acquire(
            &self.instance,
            crate::lock::Record::for_this_process(&invoker, &self.settings()),
        )
        .unwrap()
        {
            crate::lock::Acquire::Acquired(lock) => lock,
            crate::lock::Acquire::Held(_) => panic!("lock held"),
        }
    }
    /// A stand-in whose running job holds the instance lock and lets go of
    /// it `after` the SIGTERM (its ordered stop); every later run fails.
    fn job_with_lock(&self, after: Duration) -> StandIn {
        let held = std::cell::RefCell::new(Some(self.hold_lock()));
        StandIn {
            on_term: Box::new(move || {
                let lock = held.borrow_mut().take();
                std::thread::spawn(move || {
                    std::thread::sleep(after);
                    drop(lock);
                });
            }),
            on_spawn: Box::new(|_| Some(End::Code(1))),
            ..Default::default()
        }
    }
    /// Probe settings for a port nobody listens on.
    fn settings(&self) -> ProbeSettings {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sel = Selection {
            url: Some(format!("http://127.0.0.1:{port}")),
            ..Default::default()
        };
        config::resolve_probe(&sel, self.instance.clone(), &Default::default()).unwrap()
    }
}

#[test]
fn install_writes_the_plist_with_the_instances_stop_budget_and_uninstall_removes_it() {
    let w = World::new();
    std::fs::write(w.instance.wrapper_config(), "stop_timeout = \"2m\"\n").unwrap();
    let l = StandIn::default();
    assert_eq!(
        install(&w.env(&l), &w.instance, &[], None, false, false).unwrap(),
        0
    );
    let v: ::plist::Value = ::plist::from_file(w.plist()).unwrap();
    let d = v.as_dictionary().unwrap();
    assert_eq!(d["Label"].as_string(), Some(LABEL));
    assert_eq!(
        d["ExitTimeOut"].as_unsigned_integer(),
        Some(135),
        "stop_timeout 120 s + 15 s"
    );
    assert!(w.instance.log_dir().is_dir(), "the log directory exists");
    // Upstream's job was looked for in both domains before writing.
    assert!(
        l.position("print gui/501/ing.paperclip.paperclipai.mac")
            .is_some()
    );
    assert!(
        l.position("print user/501/ing.paperclip.paperclipai.mac")
            .is_some()
    );
    assert!(
        l.position("bootstrap").is_none(),
        "without --now nothing is loaded"
    );
    assert_eq!(uninstall(&w.env(&l), &w.instance).unwrap(), 0);
    assert!(!w.plist().exists());
}

/// A job that pauses itself (here: exit 78, "not set up") makes
/// `install --now` fail in about a second, not after 330 s.
#[test]
fn install_now_fails_fast_when_the_job_pauses_itself() {
    let w = World::new();
    let inst = w.instance.clone();
    let l = StandIn {
        on_spawn: Box::new(move |_| {
            let state = GuardState {
                failures: vec![],
                paused: Some(Pause {
                    since: "2026-11-29T00:00:00Z".into(),
                    code: 78,
                    reason:
                        "exit 78, which a restart cannot fix: instance \"mac\" is not set up yet"
                            .into(),
                    boot: crate::sys::boot_id(),
                }),
                ..Default::default()
            };
            let text = serde_json::to_string(&state).unwrap();
            std::fs::write(guard::path(&inst), text).unwrap();
            Some(End::Code(0))
        }),
        ..Default::default()
    };
    let started = Instant::now();
    let e = install(
        &w.env(&l),
        &w.instance,
        &[],
        Some(&w.settings()),
        false,
        false,
    )
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(e.exit_code(), 1);
    assert!(
        e.message.contains("paperclipd paused it: exit 78"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("paperclipd logs -i mac"),
        "{}",
        e.message
    );
    assert!(
        l.position(&format!("enable gui/501/{LABEL}")) < l.position("bootstrap gui/501"),
        "{:?}",
        l.calls()
    );
}

/// `start` clears the pause, kickstarts (no `-k`), and fails fast when
/// launchd's `print` shows the run ended with a non-zero code.
#[test]
fn start_clears_the_pause_and_fails_fast_on_a_failed_run() {
    let w = World::new();
    std::fs::create_dir_all(w.plist().parent().unwrap()).unwrap();
    std::fs::write(w.plist(), "<!-- supervised by paperclipd -->").unwrap();
    std::fs::write(
        guard::path(&w.instance),
        r#"{"failures":[1.0],"paused":{"since":"x","code":1,"reason":"5 failed starts"}}"#,
    )
    .unwrap();
    let paused_at_kickstart = std::rc::Rc::new(std::cell::Cell::new(true));
    let seen = paused_at_kickstart.clone();
    let inst = w.instance.clone();
    let l = StandIn {
        on_spawn: Box::new(move |_| {
            seen.set(guard::path(&inst).exists());
            Some(End::Code(1))
        }),
        ..Default::default()
    };
    l.load(LABEL, "gui/501", false);
    let started = Instant::now();
    let e = start(&w.env(&l), &w.settings(), false).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        !paused_at_kickstart.get(),
        "the pause was cleared before the start"
    );
    assert!(
        e.message.contains("exited with code 1 (launchd run 1)"),
        "{}",
        e.message
    );
    assert!(l.position(&format!("kickstart gui/501/{LABEL}")).is_some());
    assert!(
        l.calls().iter().all(|c| !c.contains("-k")),
        "{:?}",
        l.calls()
    );
}

/// `restart` of a running job: `kill SIGTERM`, wait until the old
/// paperclipd released the lock, then `kickstart` — never `kickstart -k`.
#[test]
fn restart_stops_in_order_waits_for_the_lock_then_starts() {
    let w = World::new();
    std::fs::create_dir_all(w.plist().parent().unwrap()).unwrap();
    std::fs::write(w.plist(), "<!-- supervised by paperclipd -->").unwrap();
    // The running job's lock, released 300 ms after SIGTERM (its stop).
    let invoker = crate::invoker::Invoker {
        kind: crate::invoker::ManagerKind::Launchd,
        unit: Some(LABEL.into()),
    };
    let held = match crate::lock::try_acquire(
        &w.instance,
        crate::lock::Record::for_this_process(&invoker, &w.settings()),
    )
    .unwrap()
    {
        crate::lock::Acquire::Acquired(lock) => lock,
        crate::lock::Acquire::Held(_) => panic!("lock held"),
    };
    let held = std::cell::RefCell::new(Some(held));
    let free_at_kickstart = std::rc::Rc::new(std::cell::Cell::new(false));
    let seen = free_at_kickstart.clone();
    let inst = w.instance.clone();
    let l = StandIn {
        on_term: Box::new(move || {
            let lock = held.borrow_mut().take();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                drop(lock);
            });
        }),
        on_spawn: Box::new(move |_| {
            seen.set(crate::lock::probe_holder(&inst).is_none());
            Some(End::Code(1))
        }),
        ..Default::default()
    };
    l.load(LABEL, "gui/501", true);
    let e = start(&w.env(&l), &w.settings(), true).unwrap_err();
    assert!(e.message.contains("exited with code 1"), "{}", e.message);
    let term = l
        .position(&format!("kill SIGTERM gui/501/{LABEL}"))
        .unwrap();
    let kick = l.position(&format!("kickstart gui/501/{LABEL}")).unwrap();
    assert!(term < kick, "{:?}", l.calls());
    assert!(
        free_at_kickstart.get(),
        "kickstart came before the old run let go"
    );
    assert!(
        l.calls().iter().all(|c| !c.contains("-k")),
        "{:?}",
        l.calls()
    );
}

#[test]
fn upstreams_agent_on_disk_is_a_conflict_and_replace_disables_it() {
    let w = World::new();
    let up = w
        .dir
        .path()
        .join("Library/LaunchAgents/ing.paperclip.paperclipai.mac.plist");
    std::fs::create_dir_all(up.parent().unwrap()).unwrap();
    std::fs::write(&up, "<plist/>").unwrap();
    let l = StandIn::default();
    let e = install(&w.env(&l), &w.instance, &[], None, false, false).unwrap_err();
    assert_eq!(e.exit_code(), 75);
    assert!(e.message.contains("loads at every login"), "{}", e.message);
    assert!(e.message.contains("--replace-upstream"), "{}", e.message);
    assert!(!w.plist().exists(), "nothing written");

    l.load("ing.paperclip.paperclipai.mac", "gui/501", true);
    install(&w.env(&l), &w.instance, &[], None, false, true).unwrap();
    let bootout = l
        .position("bootout gui/501/ing.paperclip.paperclipai.mac")
        .unwrap();
    let disable = l
        .position("disable gui/501/ing.paperclip.paperclipai.mac")
        .unwrap();
    assert!(bootout < disable, "{:?}", l.calls());
    assert!(
        up.exists(),
        "upstream's plist is left in place (and reported)"
    );
    // Disabled and not loaded: no longer a conflict.
    install(&w.env(&l), &w.instance, &[], None, false, false).unwrap();
}

/// Issue 20, item 1: `bootout` returns before launchd is done with the job;
/// a `bootstrap` meanwhile fails with 37 or 5. `install --now` with a
/// changed plist waits until `print` no longer knows the job and the old
/// run let go of the lock, then loads the new plist (trying again while
/// launchd refuses).
#[test]
fn install_now_with_a_changed_plist_waits_for_the_bootout_then_loads_it() {
    let w = World::new();
    w.old_plist();
    let l = w.job_with_lock(Duration::from_millis(300));
    l.load(LABEL, "gui/501", true);
    let e = install(
        &w.env(&l),
        &w.instance,
        &[],
        Some(&w.settings()),
        false,
        false,
    )
    .unwrap_err();
    // The new run was loaded and started (and failed: the stand-in's run).
    assert!(
        e.message.contains("exited with code 1 (launchd run 1)"),
        "{}",
        e.message
    );
    let calls = l.calls();
    let bootout = l.position(&format!("bootout gui/501/{LABEL}")).unwrap();
    let loaded = calls
        .iter()
        .rposition(|c| c.starts_with("bootstrap gui/501"))
        .unwrap();
    assert!(bootout < loaded, "{calls:?}");
    assert!(crate::lock::probe_holder(&w.instance).is_none());
}

/// `paperclipd stop && paperclipd start`: `stop` returns once the job is
/// gone from launchd and its lock is free, so `start` loads it again.
#[test]
fn stop_and_start_back_to_back() {
    let w = World::new();
    w.old_plist();
    let l = w.job_with_lock(Duration::from_millis(300));
    l.load(LABEL, "gui/501", true);
    assert_eq!(stop(&w.env(&l), &w.instance).unwrap(), 0);
    assert!(
        !l.knows("gui/501", LABEL),
        "stop returned before launchd let go"
    );
    assert!(crate::lock::probe_holder(&w.instance).is_none());
    let e = start(&w.env(&l), &w.settings(), false).unwrap_err();
    assert!(
        e.message.contains("exited with code 1 (launchd run 1)"),
        "{}",
        e.message
    );
}

/// Plain `install` with a changed plist never leaves a running instance
/// down: the running job is loaded again with the new plist.
#[test]
fn plain_install_with_a_changed_plist_restarts_a_running_job() {
    let w = World::new();
    w.old_plist();
    let l = w.job_with_lock(Duration::from_millis(300));
    l.load(LABEL, "gui/501", true);
    install(&w.env(&l), &w.instance, &[], None, false, false).unwrap();
    assert!(l.knows("gui/501", LABEL), "{:?}", l.calls());
    let calls = l.calls();
    let bootout = l.position(&format!("bootout gui/501/{LABEL}")).unwrap();
    let loaded = calls
        .iter()
        .rposition(|c| c.starts_with("bootstrap gui/501"))
        .unwrap();
    assert!(bootout < loaded, "{calls:?}");
}

/// Issue 20, item 5: plain `install` runs `launchctl enable`, so a label
/// left disabled loads at the next login.
#[test]
fn plain_install_enables_the_label() {
    let w = World::new();
    let l = StandIn::default();
    l.disabled.borrow_mut().push(LABEL.into());
    install(&w.env(&l), &w.instance, &[], None, false, false).unwrap();
    assert!(
        l.position(&format!("enable gui/501/{LABEL}")).is_some(),
        "{:?}",
        l.calls()
    );
    assert!(l.disabled.borrow().is_empty());
    assert!(l.position("bootstrap").is_none(), "{:?}", l.calls());
}

/// Issue 20, item 2: an SSH install (`user/UID`) and a GUI login
/// (`gui/UID`) load two copies; `stop` and `uninstall` unload both.
#[test]
fn stop_and_uninstall_unload_both_domains() {
    let w = World::new();
    w.old_plist();
    let l = StandIn {
        linger: Duration::from_millis(500),
        ..Default::default()
    };
    l.load(LABEL, "gui/501", false);
    l.load(LABEL, "user/501", true);
    stop(&w.env(&l), &w.instance).unwrap();
    assert!(!l.knows("gui/501", LABEL) && !l.knows("user/501", LABEL));
    assert!(l.position(&format!("bootout user/501/{LABEL}")).is_some());
    l.load(LABEL, "gui/501", true);
    l.load(LABEL, "user/501", true);
    uninstall(&w.env(&l), &w.instance).unwrap();
    assert!(!l.knows("gui/501", LABEL) && !l.knows("user/501", LABEL));
}

/// `stop` says "still running (pid N)" and fails when the lock is still
/// held at its deadline (the stop budget), instead of "stopped".
#[test]
fn stop_fails_naming_the_pid_when_the_lock_stays_held() {
    let w = World::new();
    std::fs::write(w.instance.wrapper_config(), "stop_timeout = \"1s\"\n").unwrap();
    let _held = w.hold_lock();
    let l = StandIn {
        linger: Duration::from_millis(200),
        ..Default::default()
    };
    l.load(LABEL, "gui/501", true);
    let started = Instant::now();
    let e = stop(&w.env(&l), &w.instance).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(40));
    assert_ne!(e.exit_code(), 0);
    assert!(
        e.message
            .contains(&format!("still running (pid {})", std::process::id())),
        "{}",
        e.message
    );
}

/// Issue 20, item 5: a run ended by a signal shows as "last terminating
/// signal" (its exit code line says "never exited"): `start` fails at once
/// instead of waiting 330 s.
#[test]
fn start_fails_fast_after_a_crash_by_signal() {
    let w = World::new();
    w.old_plist();
    let l = StandIn {
        on_spawn: Box::new(|_| Some(End::Signal(11))),
        ..Default::default()
    };
    l.load(LABEL, "gui/501", false);
    let started = Instant::now();
    let e = start(&w.env(&l), &w.settings(), false).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        e.message.contains("Segmentation fault: 11"),
        "{}",
        e.message
    );
}

/// `KeepAlive` ran the failed job again after `ThrottleInterval` before
/// `start` looked: the failure is still reported, with its run number.
#[test]
fn start_reports_a_failure_that_keepalive_already_retried() {
    let w = World::new();
    w.old_plist();
    let l = StandIn {
        throttle: Duration::ZERO,
        on_spawn: Box::new(|run| (run == 1).then_some(End::Code(3))),
        ..Default::default()
    };
    l.load(LABEL, "gui/501", false);
    let e = start(&w.env(&l), &w.settings(), false).unwrap_err();
    assert!(e.message.contains("exited with code 3"), "{}", e.message);
}
