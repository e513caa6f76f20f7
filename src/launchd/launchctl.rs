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
use std::time::{Duration, Instant};

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

    /// The first domain that has the job loaded, with what launchd says
    /// of it.
    pub fn loaded(&self) -> Result<Option<Loaded>> {
        Ok(self.loaded_all()?.into_iter().next())
    }

    /// Every domain that has the job loaded: an SSH install (`user/UID`)
    /// and a later GUI login (`gui/UID`) load two copies.
    pub fn loaded_all(&self) -> Result<Vec<Loaded>> {
        let mut all = Vec::new();
        for domain in domains(self.uid) {
            let (ok, out, _) = self.call(Op::Print, &domain)?;
            if ok {
                let job = print::parse_print(&out);
                all.push(Loaded { domain, job });
            }
        }
        Ok(all)
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
    /// While launchd still unloads an earlier copy of the label (`bootout`
    /// returns before it is gone), `bootstrap` fails with 37 or 5: it is
    /// tried again for up to [`BOOTSTRAP_RETRY`].
    pub fn bootstrap(&self) -> Result<String> {
        self.bootstrap_within(BOOTSTRAP_RETRY)
    }

    pub(crate) fn bootstrap_within(&self, retry: Duration) -> Result<String> {
        let domain = self.load_domain()?;
        self.must(Op::Enable, &domain)?;
        let start = Instant::now();
        let mut said = false;
        loop {
            let (ok, _, err) = self.call(Op::Bootstrap, &domain)?;
            if ok {
                return Ok(domain);
            }
            let err = err.trim();
            let busy = is_busy(err);
            if busy && start.elapsed() < retry {
                if !said {
                    said = true;
                    log::info(&format!(
                        "launchd refused to load {} ({}): it still unloads an earlier copy; trying \
                         again for up to {}",
                        self.label(),
                        err.lines().next().unwrap_or(err),
                        humantime::format_duration(retry)
                    ));
                }
                std::thread::sleep(POLL);
                continue;
            }
            return Err(Error::new(
                Kind::Failed,
                format!(
                    "`launchctl bootstrap {domain} {}` failed{}: {err}{}",
                    self.plist.display(),
                    if busy {
                        format!(
                            " for {}",
                            humantime::format_duration(Duration::from_secs(
                                start.elapsed().as_secs()
                            ))
                        )
                    } else {
                        String::new()
                    },
                    explain_bootstrap(err, &domain, &self.label())
                ),
            ));
        }
    }

    /// `launchctl enable` in the domain the job loads into (without the
    /// warning [`Self::load_domain`] gives before loading): a label left
    /// disabled does not load at the next login. Returns the domain.
    pub fn enable(&self) -> Result<String> {
        let [gui, user] = domains(self.uid);
        let domain = if self.call(Op::PrintDomain, &gui)?.0 {
            gui
        } else {
            user
        };
        self.must(Op::Enable, &domain)?;
        Ok(domain)
    }

    /// Starts a loaded job that is not running (never `-k`).
    pub fn kickstart(&self, domain: &str) -> Result<()> {
        self.must(Op::Kickstart, domain)
    }

    /// Asks the running job to stop in order (SIGTERM to paperclipd).
    pub fn terminate(&self, domain: &str) -> Result<()> {
        self.must(Op::Term, domain)
    }

    /// Unloads the job from every domain that has it (stop; no restart).
    /// launchd sends SIGTERM and waits `ExitTimeOut` before SIGKILL; the
    /// call returns before the job is gone (see [`Self::bootout_and_wait`]).
    /// A copy that launchd already unloads (37) is no error.
    pub fn bootout(&self) -> Result<bool> {
        let all = self.loaded_all()?;
        for Loaded { domain, .. } in &all {
            let (ok, _, err) = self.call(Op::Bootout, domain)?;
            if !ok && !is_busy(err.trim()) && self.call(Op::Print, domain)?.0 {
                let args = launchctl_args(Op::Bootout, domain, &self.label(), &self.plist);
                return Err(Error::new(
                    Kind::Failed,
                    format!("`launchctl {}` failed: {}", args.join(" "), err.trim()),
                ));
            }
        }
        Ok(!all.is_empty())
    }

    /// [`Self::bootout`], then waits until `launchctl print` no longer knows
    /// the job in any domain and the instance's lock is free (its
    /// paperclipd stopped the server and exited), at most `deadline`.
    /// Returns whether anything was loaded.
    pub fn bootout_and_wait(&self, deadline: Duration) -> Result<bool> {
        let was = self.bootout()?;
        let start = Instant::now();
        loop {
            let left = self.loaded_all()?;
            let holder = crate::lock::probe_holder(self.instance);
            if left.is_empty() && holder.is_none() {
                return Ok(was);
            }
            if start.elapsed() >= deadline {
                let pid = holder
                    .as_ref()
                    .and_then(|h| h.pid.or(h.record.as_ref().map(|r| r.pid)))
                    .or_else(|| left.iter().find_map(|l| l.job.pid.map(|p| p as i32)));
                let what = match (holder.is_some(), pid) {
                    (true, Some(p)) => {
                        format!("still running (pid {p}): it holds the instance lock")
                    }
                    (true, None) => "still running: its instance lock is held".to_string(),
                    (false, _) => format!(
                        "still loaded in {}",
                        left.iter()
                            .map(|l| l.domain.as_str())
                            .collect::<Vec<_>>()
                            .join(" and ")
                    ),
                };
                return Err(Error::new(
                    Kind::Failed,
                    format!(
                        "{} is {what}, {} after `launchctl bootout`; expected it gone within its \
                         stop budget. See its log (`paperclipd logs -i {}`){}",
                        self.label(),
                        humantime::format_duration(Duration::from_secs(deadline.as_secs())),
                        self.instance.id,
                        pid.map(|p| format!(", or stop it with `kill -TERM {p}`"))
                            .unwrap_or_default()
                    ),
                ));
            }
            std::thread::sleep(POLL);
        }
    }
}

/// What `status` shows of the job: the copy that runs (else the first
/// loaded), as a unit, with a note when both domains have it loaded.
pub fn status_view(all: &[Loaded], label: &str) -> Option<crate::systemd::UnitInfo> {
    let main = all.iter().find(|l| l.job.running()).or(all.first())?;
    let job = &main.job;
    let others: Vec<String> = all
        .iter()
        .filter(|l| l.domain != main.domain)
        .map(|l| format!("{} ({})", l.domain, l.job.state_text()))
        .collect();
    let mut text = format!("{}/{label}", main.domain);
    if !others.is_empty() {
        text.push_str(&format!(
            "; also loaded in {}: two copies of the job, one waits while the other runs \
             (`paperclipd stop` unloads both)",
            others.join(", ")
        ));
    }
    Some(crate::systemd::UnitInfo {
        unit: label.to_string(),
        load_state: "loaded".into(),
        active_state: if job.running() { "active" } else { "inactive" }.into(),
        sub_state: job.state_text().to_string(),
        main_pid: job.pid.unwrap_or(0),
        n_restarts: job.runs.saturating_sub(1),
        status_text: text,
        ..Default::default()
    })
}

/// How long `bootstrap` is tried again while launchd still unloads an
/// earlier copy of the label (real: about 3–5 s after `bootout`).
pub const BOOTSTRAP_RETRY: Duration = Duration::from_secs(15);
/// How often launchd and the lock are asked while waiting.
const POLL: Duration = Duration::from_millis(100);

/// launchctl's "busy" refusals: 37 (operation already in progress) and 5
/// (input/output error, what launchctl reports for it on many releases).
fn is_busy(err: &str) -> bool {
    err.contains(" 37:")
        || err.contains("already in progress")
        || err.contains(" 5:")
        || err.contains("Input/output error")
}

/// What a failed `bootstrap` means, beyond launchctl's terse words.
fn explain_bootstrap(err: &str, domain: &str, label: &str) -> String {
    if is_busy(err) {
        format!(
            ". Errors 5 and 37 mean launchd refused the job: it is still loaded or unloading in \
             {domain} (paperclipd tried again meanwhile; `launchctl print {domain}/{label}` shows \
             it, `launchctl bootout {domain}/{label}` unloads it), or it is disabled in launchd's \
             override database (`launchctl print-disabled {domain}`; paperclipd ran `launchctl \
             enable {domain}/{label}` just before)"
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
