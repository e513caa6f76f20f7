//! Tests only: a stand-in for `launchctl` that keeps the state a real
//! launchd would (is the GUI domain there, which jobs are loaded in which
//! domain, running, how often they ran, how the last run ended, which labels
//! are disabled), plays launchd's timing, and records every call, so the
//! flows are checked for argument shapes and order. Nothing here runs a
//! real job.
//!
//! The timing is launchd's own (launchd-842, and the unified logs quoted
//! in d-inference#1102 and Opendray#211):
//! * `bootout` returns at once; the job (and its process, which got
//!   SIGTERM) lingers for a few seconds: `print` still knows it, and a
//!   `bootstrap` of the label meanwhile fails with 37, then 5;
//! * `KeepAlive{SuccessfulExit=false}` spawns a run that ended non-zero or
//!   by a signal again after `ThrottleInterval`;
//! * a label can be loaded in `gui/UID` and `user/UID` at once.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use super::launchctl::Launchctl;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Code(i32),
    Signal(i32),
}

/// One job as the stand-in keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub domain: String,
    pub running: bool,
    pub runs: u32,
    pub last_exit: Option<End>,
    /// Booted out: gone from launchd at this moment.
    pub leaving: Option<Instant>,
    /// `KeepAlive`: the next run after a failed one.
    pub respawn_at: Option<Instant>,
}

/// What happens when the stand-in spawns our job: given the run number,
/// `Some(end)` makes the run end at once.
pub type OnSpawn = Box<dyn Fn(u32) -> Option<End>>;

pub struct StandIn {
    pub calls: RefCell<Vec<Vec<String>>>,
    /// A GUI login session exists (`gui/<uid>` answers `print`).
    pub gui: bool,
    /// Loaded jobs by label.
    pub jobs: RefCell<Vec<(String, Job)>>,
    pub disabled: RefCell<Vec<String>>,
    pub on_spawn: OnSpawn,
    /// Called when a running job gets SIGTERM (`kill SIGTERM`, `bootout`):
    /// the job's ordered stop.
    pub on_term: Box<dyn Fn()>,
    /// How long a booted-out job lingers (real: about 3–5 s).
    pub linger: Duration,
    /// The plist's `ThrottleInterval`.
    pub throttle: Duration,
    /// `bootstrap` refusals while a job lingers, for the error's number.
    pub refusals: Cell<u32>,
}

impl Default for StandIn {
    fn default() -> Self {
        StandIn {
            calls: RefCell::default(),
            gui: true,
            jobs: RefCell::default(),
            disabled: RefCell::default(),
            on_spawn: Box::new(|_| None),
            on_term: Box::new(|| {}),
            linger: Duration::from_secs(3),
            throttle: Duration::from_secs(10),
            refusals: Cell::new(0),
        }
    }
}

impl StandIn {
    /// Every call, each joined with spaces.
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().iter().map(|c| c.join(" ")).collect()
    }

    /// The position of the first call starting with `prefix`.
    pub fn position(&self, prefix: &str) -> Option<usize> {
        self.calls().iter().position(|c| c.starts_with(prefix))
    }

    /// How many calls start with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    }

    pub fn load(&self, label: &str, domain: &str, running: bool) {
        self.jobs.borrow_mut().push((
            label.to_string(),
            Job {
                domain: domain.to_string(),
                running,
                runs: u32::from(running),
                last_exit: None,
                leaving: None,
                respawn_at: None,
            },
        ));
    }

    /// Is `label` loaded in `domain` (lingering included)?
    pub fn knows(&self, domain: &str, label: &str) -> bool {
        self.tick();
        self.job(&format!("{domain}/{label}")).is_some()
    }

    fn job(&self, target: &str) -> Option<Job> {
        let (domain, label) = split(target);
        self.jobs
            .borrow()
            .iter()
            .find(|(l, j)| l == label && j.domain == domain)
            .map(|(_, j)| j.clone())
    }

    fn update(&self, target: &str, f: impl FnOnce(&mut Job)) {
        let (domain, label) = split(target);
        if let Some((_, j)) = self
            .jobs
            .borrow_mut()
            .iter_mut()
            .find(|(l, j)| l == label && j.domain == domain)
        {
            f(j);
        }
    }

    /// launchd's clock: lingering jobs leave, failed runs are spawned again.
    fn tick(&self) {
        let now = Instant::now();
        self.jobs
            .borrow_mut()
            .retain(|(_, j)| j.leaving.is_none_or(|t| t > now));
        let due: Vec<String> = self
            .jobs
            .borrow()
            .iter()
            .filter(|(_, j)| !j.running && j.leaving.is_none())
            .filter(|(_, j)| j.respawn_at.is_some_and(|t| t <= now))
            .map(|(l, j)| format!("{}/{l}", j.domain))
            .collect();
        for target in due {
            self.spawn(&target);
        }
    }

    fn spawn(&self, target: &str) {
        let runs = self.job(target).map_or(0, |j| j.runs) + 1;
        let end = (self.on_spawn)(runs);
        let throttle = self.throttle;
        self.update(target, |j| {
            j.runs = runs;
            j.running = end.is_none();
            j.respawn_at = None;
            if let Some(e) = end {
                j.last_exit = Some(e);
                // KeepAlive{SuccessfulExit=false}: anything but exit 0.
                if e != End::Code(0) {
                    j.respawn_at = Some(crate::deadline::Later::later(Instant::now(), throttle));
                }
            }
        });
    }

    fn print(&self, target: &str) -> (bool, String, String) {
        match self.job(target) {
            None => (
                false,
                String::new(),
                format!(
                    "Bad request.\nCould not find service \"{}\" in domain for port",
                    split(target).1
                ),
            ),
            Some(j) => {
                let state = if j.running {
                    "running"
                } else if j.respawn_at.is_some() {
                    "spawn scheduled"
                } else {
                    "not running"
                };
                let end = match j.last_exit {
                    None => "\tlast exit code = (never exited)\n".to_string(),
                    Some(End::Code(c)) => format!("\tlast exit code = {c}\n"),
                    Some(End::Signal(s)) => format!(
                        "\tlast exit code = (never exited)\n\tlast terminating signal = {}: {s}\n",
                        signal_name(s)
                    ),
                };
                (
                    true,
                    format!(
                        "{target} = {{\n\tactive count = {}\n\tstate = {state}\n{}\truns = {}\n{end}}}\n",
                        u32::from(j.running),
                        if j.running { "\tpid = 4242\n" } else { "" },
                        j.runs,
                    ),
                    String::new(),
                )
            }
        }
    }

    /// launchd refuses a disabled label with 5, a label still loaded or
    /// leaving with 37 (then 5, as launchctl reports it on later tries), and
    /// a missing GUI domain with 125; otherwise it loads and runs the job.
    fn bootstrap(&self, domain: &str, plist: &str) -> (bool, String, String) {
        let label = plist
            .rsplit('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".plist");
        let target = format!("{domain}/{label}");
        let refuse = |msg: &str| (false, String::new(), msg.to_string());
        if domain.starts_with("gui/") && !self.gui {
            refuse("Bootstrap failed: 125: Domain does not support specified action")
        } else if self.disabled.borrow().iter().any(|l| l == label) {
            refuse("Bootstrap failed: 5: Input/output error")
        } else if self.job(&target).is_some() {
            let n = self.refusals.get();
            self.refusals.set(n + 1);
            if n % 2 == 0 {
                refuse("Bootstrap failed: 37: Operation already in progress")
            } else {
                refuse(
                    "Bootstrap failed: 5: Input/output error\nTry re-running the command as root for richer errors.",
                )
            }
        } else {
            self.load(label, domain, false);
            self.spawn(&target);
            ok()
        }
    }

    fn bootout(&self, t: &str) -> (bool, String, String) {
        match self.job(t) {
            None => (
                false,
                String::new(),
                "Boot-out failed: 3: No such process".into(),
            ),
            Some(j) if j.leaving.is_some() => (
                false,
                String::new(),
                "Boot-out failed: 37: Operation already in progress".into(),
            ),
            Some(j) => {
                if j.running {
                    (self.on_term)();
                }
                let gone = crate::deadline::Later::later(Instant::now(), self.linger);
                self.update(t, |j| {
                    j.leaving = Some(gone);
                    j.respawn_at = None;
                });
                ok()
            }
        }
    }
}

fn signal_name(s: i32) -> &'static str {
    match s {
        9 => "Killed",
        11 => "Segmentation fault",
        15 => "Terminated",
        6 => "Abort trap",
        _ => "Signal",
    }
}

/// `gui/501/label` → (`gui/501`, `label`).
fn split(target: &str) -> (&str, &str) {
    let mut parts = target.splitn(3, '/');
    let kind = parts.next().unwrap_or("");
    let uid = parts.next().unwrap_or("");
    let label = parts.next().unwrap_or("");
    (&target[..kind.len() + 1 + uid.len()], label)
}

fn ok() -> (bool, String, String) {
    (true, String::new(), String::new())
}

impl Launchctl for StandIn {
    fn run(&self, args: &[String]) -> std::io::Result<(bool, String, String)> {
        self.calls.borrow_mut().push(args.to_vec());
        self.tick();
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        Ok(match a.as_slice() {
            ["print", t] if t.matches('/').count() == 1 => {
                if t.starts_with("gui/") && !self.gui {
                    (
                        false,
                        String::new(),
                        format!("Could not find domain for {t}"),
                    )
                } else {
                    ok()
                }
            }
            ["print", t] => self.print(t),
            ["print-disabled", _] => {
                let mut out = "disabled services = {\n".to_string();
                for l in self.disabled.borrow().iter() {
                    out.push_str(&format!("\t\"{l}\" => disabled\n"));
                }
                (true, out + "}\n", String::new())
            }
            ["enable", t] => {
                let (_, label) = split(t);
                self.disabled.borrow_mut().retain(|l| l != label);
                ok()
            }
            ["disable", t] => {
                self.disabled.borrow_mut().push(split(t).1.to_string());
                ok()
            }
            ["bootstrap", domain, plist] => self.bootstrap(domain, plist),
            ["bootout", t] => self.bootout(t),
            ["kickstart", t] => match self.job(t) {
                Some(j) if j.leaving.is_some() => (
                    false,
                    String::new(),
                    "Kickstart failed: 37: Operation already in progress".into(),
                ),
                Some(j) if !j.running => {
                    self.spawn(t);
                    ok()
                }
                Some(_) => ok(),
                None => (false, String::new(), "Could not find service".into()),
            },
            ["kill", "SIGTERM", t] => match self.job(t) {
                Some(j) if j.running && j.leaving.is_none() => {
                    (self.on_term)();
                    self.update(t, |j| {
                        j.running = false;
                        j.last_exit = Some(End::Code(0));
                    });
                    ok()
                }
                _ => (false, String::new(), "No process to signal".into()),
            },
            _ => (
                false,
                String::new(),
                format!("stand-in: unexpected call {a:?}"),
            ),
        })
    }
}
