//! `launchctl`: the exact arguments of every call, and one LaunchAgent's
//! operations over a [`Launchctl`] runner (the real `/bin/launchctl` on
//! macOS; a recording stand-in in tests, for argument shapes and order).
//!
//! Never `kickstart -k`: it SIGKILLs the job, and on macOS (no parent-death
//! signal, no subreaper) the server in its own process group would survive
//! it with its PostgreSQL and keep the port. A running job is stopped with
//! `kill SIGTERM` (paperclipd stops the server in order and exits 0, which
//! `KeepAlive{SuccessfulExit=false}` does not restart) or `bootout`.

use std::path::{Path, PathBuf};

use super::domains;
use super::print::{self, JobInfo};
use crate::error::{Error, Kind, Result};
use crate::instance::Instance;
use crate::log;

/// What to ask launchctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Bootstrap,
    Bootout,
    Enable,
    Disable,
    /// `kickstart` without `-k`: start a loaded job that is not running.
    Kickstart,
    /// `kill SIGTERM`: the job's own ordered stop.
    Term,
    Print,
    /// `print <domain>`: does the domain exist (a GUI login session)?
    PrintDomain,
    PrintDisabled,
}

/// The exact `launchctl` arguments for an operation.
pub fn launchctl_args(op: Op, domain: &str, label: &str, plist: &Path) -> Vec<String> {
    let target = format!("{domain}/{label}");
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
    match op {
        Op::Bootstrap => v(&["bootstrap", domain, &plist.to_string_lossy()]),
        Op::Bootout => v(&["bootout", &target]),
        Op::Enable => v(&["enable", &target]),
        Op::Disable => v(&["disable", &target]),
        Op::Kickstart => v(&["kickstart", &target]),
        Op::Term => v(&["kill", "SIGTERM", &target]),
        Op::Print => v(&["print", &target]),
        Op::PrintDomain => v(&["print", domain]),
        Op::PrintDisabled => v(&["print-disabled", domain]),
    }
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

/// Runs one call of `op` on `label` in `domain`: (success, stdout, stderr).
pub fn call<L: Launchctl>(
    l: &L,
    op: Op,
    domain: &str,
    label: &str,
    plist: &Path,
) -> Result<(bool, String, String)> {
    let args = launchctl_args(op, domain, label, plist);
    l.run(&args)
        .map_err(|e| Error::os(format!("cannot run launchctl {}: {e}", args.join(" "))))
}

/// Where a job is loaded, and what `launchctl print` says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub domain: String,
    pub job: JobInfo,
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
        call(self.launchctl, op, domain, &self.label(), &self.plist)
    }

    /// Runs `op`; a refusal becomes an error naming the call.
    fn must(&self, op: Op, domain: &str) -> Result<()> {
        let (ok, _, err) = self.call(op, domain)?;
        if ok {
            return Ok(());
        }
        let args = launchctl_args(op, domain, &self.label(), &self.plist).join(" ");
        Err(Error::new(
            Kind::Failed,
            format!("`launchctl {args}` failed: {}", err.trim()),
        ))
    }

    /// The domain that has the job loaded, with what launchd says of it.
    pub fn loaded(&self) -> Result<Option<Loaded>> {
        for domain in domains(self.uid) {
            let (ok, out, _) = self.call(Op::Print, &domain)?;
            if ok {
                let job = print::parse_print(&out);
                return Ok(Some(Loaded { domain, job }));
            }
        }
        Ok(None)
    }

    /// Where to load the job: the GUI login session's domain, where agents
    /// in ~/Library/LaunchAgents load at every login. Only when there is no
    /// GUI session (SSH) the background `user/<uid>` domain, with a warning:
    /// launchd does not load it there again after a reboot.
    pub fn load_domain(&self) -> Result<String> {
        let [gui, user] = domains(self.uid);
        let (gui_exists, _, _) = self.call(Op::PrintDomain, &gui)?;
        if gui_exists {
            return Ok(gui);
        }
        log::warn(&format!(
            "there is no GUI login session for uid {} ({gui} does not exist; an SSH session?): \
             loading {} into {user}, where launchd does not load it again after a reboot. \
             It loads into {gui} at your next login at the Mac itself",
            self.uid,
            self.label()
        ));
        Ok(user)
    }

    /// Loads the job (which starts it: `RunAtLoad`). `enable` comes first,
    /// as upstream does: a label left disabled in launchd's override
    /// database (it persists across reboots) makes `bootstrap` fail with 5.
    pub fn bootstrap(&self) -> Result<String> {
        let domain = self.load_domain()?;
        self.must(Op::Enable, &domain)?;
        let (ok, _, err) = self.call(Op::Bootstrap, &domain)?;
        if ok {
            return Ok(domain);
        }
        Err(Error::new(
            Kind::Failed,
            format!(
                "`launchctl bootstrap {domain} {}` failed: {}{}",
                self.plist.display(),
                err.trim(),
                explain_bootstrap(err.trim(), &domain, &self.label())
            ),
        ))
    }

    /// Starts a loaded job that is not running (never `-k`).
    pub fn kickstart(&self, domain: &str) -> Result<()> {
        self.must(Op::Kickstart, domain)
    }

    /// Asks the running job to stop in order (SIGTERM to paperclipd).
    pub fn terminate(&self, domain: &str) -> Result<()> {
        self.must(Op::Term, domain)
    }

    /// Unloads the job wherever it is loaded (stop; no restart). launchd
    /// sends SIGTERM and waits `ExitTimeOut` before SIGKILL.
    pub fn bootout(&self) -> Result<bool> {
        match self.loaded()? {
            None => Ok(false),
            Some(Loaded { domain, .. }) => self.must(Op::Bootout, &domain).map(|_| true),
        }
    }
}

/// What a failed `bootstrap` means, beyond launchctl's terse words.
fn explain_bootstrap(err: &str, domain: &str, label: &str) -> String {
    if err.contains(" 5:") || err.contains("Input/output error") {
        format!(
            ". Error 5 means launchd refused the job: it is still loaded or unloading in {domain} \
             (retry in a moment, or `launchctl bootout {domain}/{label}` first), or it is disabled \
             in launchd's override database (`launchctl print-disabled {domain}`; paperclipd ran \
             `launchctl enable {domain}/{label}` just before)"
        )
    } else if err.contains("125") || err.contains("Domain does not support") {
        format!(
            ". Error 125 means {domain} cannot load agents now; log in at the Mac itself and run \
             `paperclipd start` again"
        )
    } else {
        String::new()
    }
}

#[cfg(test)]
#[path = "launchctl_tests.rs"]
mod tests;
