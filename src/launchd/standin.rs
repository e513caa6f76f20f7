//! Tests only: a recording stand-in for `launchctl` that keeps the state a
//! real launchd would (is the GUI domain there, is the job loaded, running,
//! how often it ran, its last exit code, which labels are disabled) and
//! records every call, so the flows are checked for argument shapes and
//! order. Nothing here runs a real job.

use std::cell::RefCell;

use super::launchctl::Launchctl;

/// One job as the stand-in keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub domain: String,
    pub running: bool,
    pub runs: u32,
    pub last_exit: Option<i32>,
}

/// What happens when the stand-in spawns our job.
pub type OnSpawn = Box<dyn Fn(u32) -> Option<i32>>;

pub struct StandIn {
    pub calls: RefCell<Vec<Vec<String>>>,
    /// A GUI login session exists (`gui/<uid>` answers `print`).
    pub gui: bool,
    /// Loaded jobs by label.
    pub jobs: RefCell<Vec<(String, Job)>>,
    pub disabled: RefCell<Vec<String>>,
    /// Given the run number, `Some(code)` makes the run exit at once.
    pub on_spawn: OnSpawn,
    /// Called on `kill SIGTERM` of a running job (the job's ordered stop).
    pub on_term: Box<dyn Fn()>,
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

    pub fn load(&self, label: &str, domain: &str, running: bool) {
        self.jobs.borrow_mut().push((
            label.to_string(),
            Job {
                domain: domain.to_string(),
                running,
                runs: u32::from(running),
                last_exit: None,
            },
        ));
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

    fn spawn(&self, target: &str) {
        let runs = self.job(target).map_or(0, |j| j.runs) + 1;
        let exit = (self.on_spawn)(runs);
        self.update(target, |j| {
            j.runs = runs;
            j.running = exit.is_none();
            if exit.is_some() {
                j.last_exit = exit;
            }
        });
    }

    fn print(&self, target: &str) -> (bool, String, String) {
        match self.job(target) {
            None => (
                false,
                String::new(),
                format!("Could not find service \"{target}\""),
            ),
            Some(j) => (
                true,
                format!(
                    "{target} = {{\n\tstate = {}\n{}\truns = {}\n\tlast exit code = {}\n}}\n",
                    if j.running { "running" } else { "not running" },
                    if j.running { "\tpid = 4242\n" } else { "" },
                    j.runs,
                    j.last_exit
                        .map_or("(never exited)".to_string(), |c| c.to_string())
                ),
                String::new(),
            ),
        }
    }
}

impl StandIn {
    /// launchd refuses a disabled or still-loaded label with error 5, and a
    /// missing GUI domain with 125; otherwise it loads and runs the job.
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
        } else if self.disabled.borrow().iter().any(|l| l == label) || self.job(&target).is_some() {
            refuse("Bootstrap failed: 5: Input/output error")
        } else {
            self.load(label, domain, false);
            self.spawn(&target);
            ok()
        }
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
            ["bootout", t] => {
                let (domain, label) = split(t);
                let before = self.jobs.borrow().len();
                self.jobs
                    .borrow_mut()
                    .retain(|(l, j)| !(l == label && j.domain == domain));
                if self.jobs.borrow().len() < before {
                    ok()
                } else {
                    (
                        false,
                        String::new(),
                        "Boot-out failed: 3: No such process".into(),
                    )
                }
            }
            ["kickstart", t] => match self.job(t) {
                Some(j) if !j.running => {
                    self.spawn(t);
                    ok()
                }
                Some(_) => ok(),
                None => (false, String::new(), "Could not find service".into()),
            },
            ["kill", "SIGTERM", t] => match self.job(t) {
                Some(j) if j.running => {
                    (self.on_term)();
                    self.update(t, |j| {
                        j.running = false;
                        j.last_exit = Some(0);
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
