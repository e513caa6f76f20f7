//! The systemd flows against a fake manager: which calls, in which order,
//! and what reaches the disk and the exit code.

use std::cell::RefCell;
use std::collections::HashMap;
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
    async fn job(&self, job: Job, unit: &str, _timeout: Duration) -> Result<JobResult> {
        self.calls
            .borrow_mut()
            .push(format!("{} {unit}", job.verb()));
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

fn opts(now: bool, replace_upstream: bool) -> InstallOptions {
    InstallOptions {
        now,
        replace_upstream,
        explicit_home: false,
        stop_timeout: Duration::from_secs(100),
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
    block(uninstall(&sd, &instance("a"), d.path())).unwrap();
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
    let e = block(start(&sd, &instance("a"), Job::Start)).unwrap_err();
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
    assert_eq!(block(start(&sd, &instance("a"), Job::Restart)).unwrap(), 0);
    assert_eq!(sd.calls(), ["restart paperclip@a.service"]);
}

#[test]
fn stop_succeeds_when_the_unit_ends_inactive() {
    let sd = Fake::default();
    sd.unit("paperclip@a.service", "active");
    assert_eq!(block(stop(&sd, &instance("a"))).unwrap(), 0);
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
    block(uninstall(&sd, &instance("a"), d.path())).unwrap();
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
    block(uninstall(&sd, &instance("b"), d.path())).unwrap();
    assert!(!path.exists(), "the last instance takes the template along");
}
