//! `launchctl`: the exact arguments of every call, what `launchctl print`
//! says, and one LaunchAgent's operations over a [`Launchctl`] runner (the
//! real `/bin/launchctl` on macOS; a recording stand-in in tests, for
//! argument shapes only).

use std::path::{Path, PathBuf};

use super::domains;
use crate::error::{Error, Kind, Result};
use crate::instance::Instance;

/// What to ask launchctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Bootstrap,
    Bootout,
    Kickstart,
    Print,
}

/// The exact `launchctl` arguments for an operation.
pub fn launchctl_args(op: Op, domain: &str, label: &str, plist: &Path) -> Vec<String> {
    let target = format!("{domain}/{label}");
    match op {
        Op::Bootstrap => vec![
            "bootstrap".into(),
            domain.into(),
            plist.to_string_lossy().into_owned(),
        ],
        Op::Bootout => vec!["bootout".into(), target],
        Op::Kickstart => vec!["kickstart".into(), "-k".into(), target],
        Op::Print => vec!["print".into(), target],
    }
}

/// Reads `state = running` and `pid = N` from `launchctl print` output.
pub fn parse_print(text: &str) -> (Option<String>, Option<u32>) {
    let mut state = None;
    let mut pid = None;
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("state = ") {
            state.get_or_insert_with(|| v.trim().to_string());
        } else if let Some(v) = l.strip_prefix("pid = ") {
            pid = pid.or_else(|| v.trim().parse().ok());
        }
    }
    (state, pid)
}

/// Runs `launchctl` (the real one on macOS; a recording stand-in in
/// tests, for argument shapes only).
pub trait Launchctl {
    /// Runs `launchctl ARGS`; returns (success, stdout, stderr).
    fn run(&self, args: &[String]) -> std::io::Result<(bool, String, String)>;
}

/// The real `/bin/launchctl`.
#[cfg(target_os = "macos")]
pub struct SystemLaunchctl;

#[cfg(target_os = "macos")]
impl Launchctl for SystemLaunchctl {
    fn run(&self, args: &[String]) -> std::io::Result<(bool, String, String)> {
        let out = std::process::Command::new("/bin/launchctl")
            .args(args)
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

/// Where a job is loaded, and what `launchctl print` says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub domain: String,
    pub state: Option<String>,
    pub pid: Option<u32>,
}

/// One LaunchAgent: where it lives and how to reach launchctl.
pub struct Agent<'a, L: Launchctl> {
    pub instance: &'a Instance,
    pub plist: PathBuf,
    pub uid: u32,
    pub launchctl: &'a L,
}

impl<L: Launchctl> Agent<'_, L> {
    pub fn label(&self) -> String {
        super::label(&self.instance.id)
    }

    fn call(&self, op: Op, domain: &str) -> Result<(bool, String, String)> {
        let args = launchctl_args(op, domain, &self.label(), &self.plist);
        self.launchctl
            .run(&args)
            .map_err(|e| Error::os(format!("cannot run launchctl {}: {e}", args.join(" "))))
    }

    /// The domain that has the job loaded, with its state and pid.
    pub fn loaded(&self) -> Result<Option<Loaded>> {
        for domain in domains(self.uid) {
            let (ok, out, _) = self.call(Op::Print, &domain)?;
            if ok {
                let (state, pid) = parse_print(&out);
                return Ok(Some(Loaded { domain, state, pid }));
            }
        }
        Ok(None)
    }

    /// Loads the job into the GUI domain, or the background user domain
    /// where there is no GUI session (SSH).
    pub fn bootstrap(&self) -> Result<String> {
        let mut last = String::new();
        for domain in domains(self.uid) {
            let (ok, _, err) = self.call(Op::Bootstrap, &domain)?;
            if ok {
                return Ok(domain);
            }
            last = err.trim().to_string();
        }
        Err(Error::new(
            Kind::Failed,
            format!(
                "launchctl bootstrap of {} failed in gui/{} and user/{}: {last}",
                self.plist.display(),
                self.uid,
                self.uid
            ),
        ))
    }

    /// Unloads the job wherever it is loaded (stop; no restart).
    pub fn bootout(&self) -> Result<bool> {
        match self.loaded()? {
            None => Ok(false),
            Some(Loaded { domain, .. }) => {
                let (ok, _, err) = self.call(Op::Bootout, &domain)?;
                if ok {
                    Ok(true)
                } else {
                    Err(Error::new(
                        Kind::Failed,
                        format!(
                            "launchctl bootout {domain}/{} failed: {}",
                            self.label(),
                            err.trim()
                        ),
                    ))
                }
            }
        }
    }

    /// Starts (bootstrap when not loaded) or restarts (`kickstart -k`).
    pub fn start(&self, restart: bool) -> Result<String> {
        match self.loaded()? {
            None => self.bootstrap(),
            Some(Loaded { domain, state, .. }) => {
                if restart || state.as_deref() != Some("running") {
                    let (ok, _, err) = self.call(Op::Kickstart, &domain)?;
                    if !ok {
                        return Err(Error::new(
                            Kind::Failed,
                            format!(
                                "launchctl kickstart -k {domain}/{} failed: {}",
                                self.label(),
                                err.trim()
                            ),
                        ));
                    }
                }
                Ok(domain)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::InstanceId;

    fn inst(id: &str, home: &str) -> Instance {
        Instance::new(InstanceId::parse(id).unwrap(), home.into())
    }

    #[test]
    fn launchctl_argument_shapes() {
        let p = Path::new("/Users/a/Library/LaunchAgents/ai.paperclip.paperclipd.dev.plist");
        let l = "ai.paperclip.paperclipd.dev";
        assert_eq!(domains(501), ["gui/501", "user/501"]);
        assert_eq!(
            launchctl_args(Op::Bootstrap, "gui/501", l, p),
            ["bootstrap", "gui/501", p.to_str().unwrap()]
        );
        assert_eq!(
            launchctl_args(Op::Bootout, "gui/501", l, p),
            ["bootout", "gui/501/ai.paperclip.paperclipd.dev"]
        );
        assert_eq!(
            launchctl_args(Op::Kickstart, "user/501", l, p),
            ["kickstart", "-k", "user/501/ai.paperclip.paperclipd.dev"]
        );
        assert_eq!(
            launchctl_args(Op::Print, "gui/501", l, p),
            ["print", "gui/501/ai.paperclip.paperclipd.dev"]
        );
        assert_eq!(
            super::super::plist_path(Path::new("/Users/a"), &inst("dev", "/h").id),
            p
        );
    }

    #[test]
    fn parses_launchctl_print() {
        let t = "gui/501/ai.paperclip.paperclipd.dev = {\n\tactive count = 1\n\tstate = running\n\tpid = 4242\n\tjob state = running\n}\n";
        assert_eq!(parse_print(t), (Some("running".into()), Some(4242)));
        assert_eq!(
            parse_print("state = not running\n"),
            (Some("not running".into()), None)
        );
    }

    /// Records calls and answers from a script: the stand-in for
    /// launchctl, which cannot run here (argument shapes only).
    struct Recorder {
        calls: std::cell::RefCell<Vec<Vec<String>>>,
        answer: fn(&[String]) -> (bool, String, String),
    }
    impl Launchctl for Recorder {
        fn run(&self, args: &[String]) -> std::io::Result<(bool, String, String)> {
            self.calls.borrow_mut().push(args.to_vec());
            Ok((self.answer)(args))
        }
    }

    #[test]
    fn bootstrap_falls_back_to_the_user_domain_without_a_gui_session() {
        let i = inst("dev", "/h");
        let r = Recorder {
            calls: Default::default(),
            answer: |a| match a[0].as_str() {
                "print" => (false, String::new(), "Could not find service".into()),
                "bootstrap" if a[1].starts_with("gui/") => (
                    false,
                    String::new(),
                    "Bootstrap failed: 125: Domain does not support specified action".into(),
                ),
                _ => (true, String::new(), String::new()),
            },
        };
        let a = Agent {
            instance: &i,
            plist: "/p.plist".into(),
            uid: 501,
            launchctl: &r,
        };
        assert_eq!(a.start(false).unwrap(), "user/501");
        {
            let calls = r.calls.borrow();
            assert_eq!(calls[0], ["print", "gui/501/ai.paperclip.paperclipd.dev"]);
            assert_eq!(calls[2], ["bootstrap", "gui/501", "/p.plist"]);
            assert_eq!(calls[3], ["bootstrap", "user/501", "/p.plist"]);
        }
        assert!(!a.bootout().unwrap(), "nothing loaded, nothing to boot out");
    }

    #[test]
    fn restart_kickstarts_the_loaded_job() {
        let i = inst("dev", "/h");
        let r = Recorder {
            calls: Default::default(),
            answer: |a| match a[0].as_str() {
                "print" if a[1].starts_with("gui/") => {
                    (true, "state = running\npid = 77\n".into(), String::new())
                }
                _ => (true, String::new(), String::new()),
            },
        };
        let a = Agent {
            instance: &i,
            plist: "/p.plist".into(),
            uid: 501,
            launchctl: &r,
        };
        assert_eq!(
            a.loaded().unwrap(),
            Some(Loaded {
                domain: "gui/501".into(),
                state: Some("running".into()),
                pid: Some(77)
            })
        );
        assert_eq!(a.start(true).unwrap(), "gui/501");
        assert!(
            r.calls
                .borrow()
                .iter()
                .any(|c| c == &["kickstart", "-k", "gui/501/ai.paperclip.paperclipd.dev"])
        );
        assert!(a.bootout().unwrap());
        assert_eq!(
            r.calls.borrow().last().unwrap(),
            &["bootout", "gui/501/ai.paperclip.paperclipd.dev"]
        );
    }
}
