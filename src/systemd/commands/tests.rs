//! The systemd flows against a fake manager: which calls, in which order,
//! and what reaches the disk and the exit code.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs;
use std::time::Duration;

use super::*;
use crate::instance::InstanceId;
use crate::systemd::Change;

/// A scripted manager that records every call.
#[derive(Default)]
struct Fake {
    calls: RefCell<Vec<String>>,
    units: RefCell<HashMap<String, UnitInfo>>,
    enabled: RefCell<Vec<String>>,
    /// What a start job of our unit does: `Some(state)` sets it.
    start_leaves: Option<&'static str>,
    /// The timeout of every job, in order.
    timeouts: RefCell<Vec<Duration>>,
}

impl Fake {
    fn unit(&self, name: &str, state: &str) {
        self.units.borrow_mut().insert(
            name.to_string(),
            UnitInfo {
                unit: name.into(),
                load_state: "loaded".into(),
                active_state: state.into(),
                main_pid: if state == "active" { 4242 } else { 0 },
                status_text: if state == "active" {
                    "ready after 1.00s".into()
                } else {
                    String::new()
                },
                result: if state == "failed" {
                    "exit-code".into()
                } else {
                    "success".into()
                },
                exec_main_status: if state == "failed" { 78 } else { 0 },
                ..Default::default()
            },
        );
    }
    fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

impl Client for Fake {
    fn scope(&self) -> Scope {
        Scope::User
    }
    async fn reload(&self) -> Result<()> {
        self.calls.borrow_mut().push("reload".into());
        Ok(())
    }
    async fn enable(&self, unit: &str) -> Result<Vec<Change>> {
        self.calls.borrow_mut().push(format!("enable {unit}"));
        self.enabled.borrow_mut().push(unit.into());
        Ok(vec![("symlink".into(), "wants/x".into(), "x".into())])
    }
    async fn disable(&self, unit: &str) -> Result<Vec<Change>> {
        self.calls.borrow_mut().push(format!("disable {unit}"));
        self.enabled.borrow_mut().retain(|u| u != unit);
        Ok(Vec::new())
    }
    async fn unit_file_state(&self, unit: &str) -> Option<String> {
        let on = self.enabled.borrow().iter().any(|u| u == unit);
        Some(if on { "enabled" } else { "disabled" }.into())
    }
    async fn job(&self, job: Job, unit: &str, timeout: Duration) -> Result<JobResult> {
        self.calls
            .borrow_mut()
            .push(format!("{} {unit}", job.verb()));
        self.timeouts.borrow_mut().push(timeout);
        match job {
            Job::Stop => {
                self.unit(unit, "inactive");
                Ok(JobResult::Done)
            }
            Job::Start | Job::Restart => match self.start_leaves {
                Some("failed") => {
                    self.unit(unit, "failed");
                    Ok(JobResult::Not("failed".into()))
                }
                Some(state) => {
                    self.unit(unit, state);
                    Ok(JobResult::Done)
                }
                None => Ok(JobResult::Done),
            },
        }
    }
    async fn unit_info(&self, unit: &str) -> Result<Option<UnitInfo>> {
        Ok(self.units.borrow().get(unit).cloned())
    }
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn instance(id: &str) -> Instance {
    Instance::new(InstanceId::parse(id).unwrap(), "/home/u/.paperclip".into())
}

const TIMEOUTS: JobTimeouts = JobTimeouts {
    ready: Duration::from_secs(300),
    stop_budget: Duration::from_secs(45),
};

fn opts(now: bool, replace_upstream: bool) -> InstallOptions {
    InstallOptions {
        now,
        replace_upstream,
        stop_timeout: Duration::from_secs(100),
        env: vec![("PAPERCLIP_HOME", "/srv/a".to_string())],
        timeouts: TIMEOUTS,
    }
}

const UNIT: &str = "# supervised by paperclipd\n[Service]\nExecStart=/bin/paperclipd run\n";

#[test]
fn install_writes_reloads_enables_reloads() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join(TEMPLATE_NAME);
    let sd = Fake::default();
    let code = block(install(
        &sd,
        &instance("a"),
        &opts(false, false),
        &path,
        UNIT,
    ))
    .unwrap();
    assert_eq!(code, 0);
    assert_eq!(fs::read_to_string(&path).unwrap(), UNIT);
    let dropin = d.path().join("paperclip@a.service.d/paperclipd.conf");
    assert!(
        fs::read_to_string(&dropin)
            .unwrap()
            .contains("\nTimeoutStopSec=115\n"),
        "the instance's stop_timeout (100 s) plus the margin"
    );
    block(uninstall(&sd, &instance("a"), d.path(), &TIMEOUTS)).unwrap();
    assert!(!dropin.exists() && !dropin.parent().unwrap().exists());
    assert_eq!(
        &sd.calls()[..3],
        ["reload", "enable paperclip@a.service", "reload"],
        "systemctl enable's order: reload, enable, reload"
    );
}

#[test]
fn install_now_returns_after_the_start_job_and_reports_ready() {
    let d = tempfile::tempdir().unwrap();
    let sd = Fake {
        start_leaves: Some("active"),
        ..Default::default()
    };
    let path = d.path().join(TEMPLATE_NAME);
    let code = block(install(
        &sd,
        &instance("a"),
        &opts(true, false),
        &path,
        UNIT,
    ))
    .unwrap();
    assert_eq!(code, 0);
    assert_eq!(sd.calls().last().unwrap(), "start paperclip@a.service");
}

#[test]
fn install_beside_upstreams_unit_is_refused_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join(TEMPLATE_NAME);
    let sd = Fake::default();
    sd.enabled.borrow_mut().push("paperclipai.service".into());
    let e = block(install(
        &sd,
        &instance("default"),
        &opts(false, false),
        &path,
        UNIT,
    ))
    .unwrap_err();
    assert_eq!(e.exit_code(), 75);
    assert!(e.message.contains("--replace-upstream"), "{}", e.message);
    assert!(e.message.contains("disable --now paperclipai.service"));
    assert!(!path.exists(), "nothing written");
    assert!(sd.calls().is_empty(), "nothing asked of the manager");
}

#[test]
fn replace_upstream_stops_and_disables_it_first() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join(TEMPLATE_NAME);
    let sd = Fake::default();
    sd.unit("paperclipai.service", "active");
    let code = block(install(
        &sd,
        &instance("default"),
        &opts(false, true),
        &path,
        UNIT,
    ))
    .unwrap();
    assert_eq!(code, 0);
    assert_eq!(
        &sd.calls()[..2],
        ["stop paperclipai.service", "disable paperclipai.service"]
    );
}

#[test]
fn a_failed_start_exits_1_with_the_units_state() {
    let sd = Fake {
        start_leaves: Some("failed"),
        ..Default::default()
    };
    let e = block(start(&sd, &instance("a"), Job::Start, &TIMEOUTS)).unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(e.message.contains("job failed"), "{}", e.message);
    assert!(e.message.contains("exit status 78"), "{}", e.message);
    assert!(
        e.message
            .contains("systemctl --user status paperclip@a.service")
    );
}

#[test]
fn restart_runs_a_restart_job() {
    let sd = Fake {
        start_leaves: Some("active"),
        ..Default::default()
    };
    assert_eq!(
        block(start(&sd, &instance("a"), Job::Restart, &TIMEOUTS)).unwrap(),
        0
    );
    assert_eq!(sd.calls(), ["restart paperclip@a.service"]);
}

#[test]
fn stop_succeeds_when_the_unit_ends_inactive() {
    let sd = Fake::default();
    sd.unit("paperclip@a.service", "active");
    assert_eq!(block(stop(&sd, &instance("a"), &TIMEOUTS)).unwrap(), 0);
    assert_eq!(sd.calls(), ["stop paperclip@a.service"]);
}

#[test]
fn uninstall_keeps_the_template_while_another_instance_uses_it() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join(TEMPLATE_NAME);
    fs::write(&path, UNIT).unwrap();
    let wants = d.path().join("default.target.wants");
    fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(&path, wants.join("paperclip@b.service")).unwrap();
    let sd = Fake::default();
    sd.unit("paperclip@a.service", "active");
    block(uninstall(&sd, &instance("a"), d.path(), &TIMEOUTS)).unwrap();
    assert!(path.exists(), "b still uses the template");
    assert_eq!(
        sd.calls(),
        [
            "stop paperclip@a.service",
            "disable paperclip@a.service",
            "reload"
        ]
    );
    fs::remove_file(wants.join("paperclip@b.service")).unwrap();
    block(uninstall(&sd, &instance("b"), d.path(), &TIMEOUTS)).unwrap();
    assert!(!path.exists(), "the last instance takes the template along");
}

/// Issue 19 item 8: the client waits as long as the instance's own budget
/// (ready_timeout for a start, the stop budget for a stop), not a fixed 330 s.
#[test]
fn job_timeouts_follow_the_instances_budgets() {
    let sd = Fake {
        start_leaves: Some("active"),
        ..Default::default()
    };
    let t = JobTimeouts {
        ready: Duration::from_secs(900),
        stop_budget: Duration::from_secs(75),
    };
    block(start(&sd, &instance("a"), Job::Start, &t)).unwrap();
    block(start(&sd, &instance("a"), Job::Restart, &t)).unwrap();
    block(stop(&sd, &instance("a"), &t)).unwrap();
    assert_eq!(
        *sd.timeouts.borrow(),
        [
            Duration::from_secs(930),
            Duration::from_secs(1005),
            Duration::from_secs(105)
        ]
    );
    let d = tempfile::tempdir().unwrap();
    let inst = Instance::new(InstanceId::parse("b").unwrap(), d.path().to_path_buf());
    fs::create_dir_all(inst.root()).unwrap();
    fs::write(
        inst.root().join("paperclipd.toml"),
        "ready_timeout = \"20m\"\nstop_timeout = \"100s\"\n",
    )
    .unwrap();
    assert_eq!(
        JobTimeouts::of(&inst).unwrap(),
        JobTimeouts {
            ready: Duration::from_secs(1200),
            stop_budget: Duration::from_secs(115)
        }
    );
}

/// Issue 19 item 1: an instance's settings live in its own drop-in; the
/// template written is the one given, untouched by any instance.
#[test]
fn install_puts_instance_settings_in_its_own_dropin() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join(TEMPLATE_NAME);
    let sd = Fake::default();
    block(install(
        &sd,
        &instance("a"),
        &opts(false, false),
        &path,
        UNIT,
    ))
    .unwrap();
    let mut b = opts(false, false);
    b.env = vec![("PAPERCLIP_HOME", "/srv/b".to_string())];
    block(install(&sd, &instance("b"), &b, &path, UNIT)).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), UNIT);
    let a_dropin =
        fs::read_to_string(d.path().join("paperclip@a.service.d/paperclipd.conf")).unwrap();
    let b_dropin =
        fs::read_to_string(d.path().join("paperclip@b.service.d/paperclipd.conf")).unwrap();
    assert!(
        a_dropin.contains("\nEnvironment=PAPERCLIP_HOME=/srv/a\n"),
        "{a_dropin}"
    );
    assert!(
        b_dropin.contains("\nEnvironment=PAPERCLIP_HOME=/srv/b\n"),
        "{b_dropin}"
    );
    block(uninstall(&sd, &instance("b"), d.path(), &TIMEOUTS)).unwrap();
    assert!(!d.path().join("paperclip@b.service.d").exists());
    assert_eq!(
        fs::read_to_string(d.path().join("paperclip@a.service.d/paperclipd.conf")).unwrap(),
        a_dropin
    );
}

/// Issue 19 item 1, an old install: the template carries the last
/// install's settings for every instance. Installing another instance
/// moves them into the drop-ins of the instances that ran with them.
#[test]
fn an_old_template_with_instance_settings_is_migrated() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join(TEMPLATE_NAME);
    let old = format!(
        "{UNIT}Environment=PATH=/old/node/bin:/usr/bin:/bin\nEnvironment=PAPERCLIP_HOME=/srv/old\n"
    );
    fs::write(&path, &old).unwrap();
    let wants = d.path().join("default.target.wants");
    fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(&path, wants.join("paperclip@old.service")).unwrap();
    let sd = Fake::default();
    block(install(
        &sd,
        &instance("new"),
        &opts(false, false),
        &path,
        UNIT,
    ))
    .unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        UNIT,
        "the template holds nothing of an instance"
    );
    let moved = fs::read_to_string(
        d.path()
            .join("paperclip@old.service.d/paperclipd-migrated.conf"),
    )
    .unwrap();
    assert!(
        moved.contains("\nEnvironment=PAPERCLIP_HOME=/srv/old\n"),
        "{moved}"
    );
    assert!(
        moved.contains("\nEnvironment=PATH=/old/node/bin:/usr/bin:/bin\n"),
        "{moved}"
    );
    assert!(
        !d.path()
            .join("paperclip@new.service.d/paperclipd-migrated.conf")
            .exists()
    );
    // Its own install replaces the migrated settings with its own.
    std::os::unix::fs::symlink(&path, wants.join("paperclip@new.service")).unwrap();
    block(install(
        &sd,
        &instance("old"),
        &opts(false, false),
        &path,
        UNIT,
    ))
    .unwrap();
    assert!(
        !d.path()
            .join("paperclip@old.service.d/paperclipd-migrated.conf")
            .exists()
    );
}
