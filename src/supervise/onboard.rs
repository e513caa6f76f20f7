//! The first start of an instance: `paperclipai onboard`, supervised like
//! the server. It asks questions, so it needs a terminal (without one we
//! stop with the exact command, exit 78, which `RestartPreventExitStatus=`
//! keeps from looping), unless `--onboard-bind` makes it ask nothing
//! (`--yes --bind`, a container's first start). Its answer to "Start Paperclip now?" decides what
//! follows: Yes makes the onboarding process itself the server (we notice
//! when a process of ours listens on the instance's port); No ends it, and
//! `paperclipai run` starts; its own cancel (Ctrl-C at a question) ends it
//! with nothing written, and so do we.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::cli::{OnboardBind, Selection};
use crate::config::{self, RunSettings};
use crate::error::{Error, Kind, Result};
use crate::instance::Instance;
use crate::probe::{self, Prober};
use crate::{log, paperclip};

use super::child::{self, ExitKind, Spawned};
use super::outcome::StopReason;
use super::readiness::{self, Owner, Progress};
use super::{Event, Supervisor, stop};

/// How often we look for `config.json` and a listener while onboarding
/// runs: cheap (a stat, then one loopback connect), and a person answers
/// questions far slower.
const WATCH_EVERY: Duration = Duration::from_millis(100);
/// How long what onboarding left behind gets after SIGTERM.
const LEFTOVER_GRACE: Duration = Duration::from_secs(5);

/// How onboarding ended.
pub enum Onboarded {
    /// A process of ours listens on the instance's port: onboarding started
    /// the server itself, and that process is the server from now on.
    Serving(Box<Prober>),
    /// Onboarding wrote `config.json` and ended without a server: start
    /// `paperclipai run`.
    Configured,
    /// The run ends here, with this result.
    Done(Result<u8>),
}

/// Onboarding asks questions: without a terminal (and without
/// `--onboard-bind`), say how to run it.
pub fn require_terminal(
    program: &Path,
    instance: &Instance,
    interactive: bool,
    bind: Option<OnboardBind>,
) -> Result<()> {
    if interactive || bind.is_some() {
        return Ok(());
    }
    Err(Error::config(format!(
        "instance {:?} is not set up yet: {} does not exist. Paperclip's first start asks questions, which needs a terminal; \
         run `{}` once in a terminal (or `paperclipd run` in a terminal, which runs it for you), then start the service again; \
         or give `--onboard-bind lan` (or loopback, tailnet; env PAPERCLIPD_ONBOARD_BIND) to set it up without questions",
        instance.id.as_str(),
        instance.paperclip_config().display(),
        paperclip::onboard_command_line(program, instance, None)
    )))
}

/// Starts `paperclipai onboard` the way the server starts: its own group,
/// the terminal's foreground (if there is one), the parent-death signal.
pub fn spawn(
    program: &Path,
    settings: &RunSettings,
    interactive: bool,
    notify_socket: Option<&std::ffi::OsStr>,
) -> Result<Spawned> {
    let instance = &settings.probe.instance;
    let bind = settings.onboard_bind;
    log::info(&format!(
        "instance {} is not set up yet; running `{}` first",
        instance.id,
        paperclip::onboard_command_line(program, instance, bind)
    ));
    let args: Vec<std::ffi::OsString> = paperclip::onboard_args(bind)
        .into_iter()
        .map(Into::into)
        .collect();
    child::spawn(&child::SpawnSpec {
        program,
        args: &args,
        instance,
        extra_env: &settings.env,
        interactive,
        group: child::Group::Own,
        grace: settings.stop_timeout,
        notify_socket,
    })
}

/// `config.json` as we last saw it: a change means onboarding wrote it.
#[derive(PartialEq)]
struct Stamp(Option<SystemTime>, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp(m.modified().ok(), m.len()))
}

impl Supervisor {
    /// Supervises onboarding until it serves, ends, or we are stopped.
    pub(super) async fn onboard(&mut self, sel: &Selection) -> Onboarded {
        self.notifier
            .status("onboarding: waiting for the answers to paperclipai onboard");
        let config_path = self.settings.probe.instance.paperclip_config();
        let mut seen: Option<Stamp> = None;
        let mut prober: Option<Prober> = None;
        let mut tick = tokio::time::interval(WATCH_EVERY);
        loop {
            tokio::select! {
                ev = self.next_event() => return match ev {
                    Event::Stop(sig) => Onboarded::Done(self.end(StopReason::Signal(sig), &Progress::default()).await),
                    Event::Terminal(sig) => Onboarded::Done(self.end(StopReason::Terminal(sig), &Progress::default()).await),
                    Event::Exited(exit) => self.onboarding_ended(exit, sel).await,
                },
                _ = tick.tick() => {
                    let now = stamp(&config_path);
                    if now.is_some() && now != seen {
                        seen = now;
                        // Half-written or not: the next change, or the end
                        // of onboarding, reads it again.
                        if let Ok(p) = config::resolve_probe_settings(sel) {
                            prober = Prober::new(p.clone(), probe::REQUEST_TIMEOUT).ok();
                            self.lock.set_probe(&p);
                            self.settings.probe = p;
                        }
                    }
                    let Some(p) = &prober else { continue };
                    if p.listening().await.is_err() {
                        continue;
                    }
                    match readiness::port_owner(p.settings.port) {
                        Owner::Foreign(_) => {
                            return Onboarded::Done(self.end(StopReason::Foreign, &Progress::default()).await);
                        }
                        Owner::Ours | Owner::Unknown => return Onboarded::Serving(Box::new(p.clone())),
                    }
                }
            }
        }
    }

    /// Onboarding's process ended before anything of ours listened.
    async fn onboarding_ended(&mut self, exit: ExitKind, sel: &Selection) -> Onboarded {
        let by_user = match self.terminal.as_mut() {
            Some(t) => t.settle().await.map(super::signals::terminal_key),
            None => None,
        };
        stop::cleanup_leftovers(&self.server, &mut self.signals, LEFTOVER_GRACE).await;
        let instance = &self.settings.probe.instance;
        let config = instance.paperclip_config();
        let shown = paperclip::onboard_command_line(
            &self.command.program,
            instance,
            self.settings.onboard_bind,
        );
        if let Some(key) = by_user {
            // After "Start Paperclip now?" Yes: stopped while it started.
            log::info(&format!(
                "onboarding {} after {key}; nothing is running",
                exit.describe()
            ));
            return Onboarded::Done(Ok(0));
        }
        match (exit, config.exists()) {
            (ExitKind::Code(0), false) => {
                log::info(&format!(
                    "onboarding was cancelled: {} was not written and nothing is running. \
                     Run `paperclipd run` again to set up instance {}",
                    config.display(),
                    instance.id
                ));
                Onboarded::Done(Ok(0))
            }
            (exit, false) => Onboarded::Done(Err(Error::config(format!(
                "onboarding did not complete (it {}); {} was not written. Run `{shown}` yourself to see why, then `paperclipd run` again",
                exit.describe(),
                config.display()
            )))),
            (ExitKind::Code(0), true) => match config::resolve_probe_settings(sel) {
                Ok(p) => {
                    self.lock.set_probe(&p);
                    self.settings.probe = p;
                    Onboarded::Configured
                }
                Err(e) => Onboarded::Done(Err(e)),
            },
            (exit, true) => Onboarded::Done(Err(Error::new(
                Kind::ServerExited(exit.shell_code()),
                format!(
                    "onboarding wrote {} but then {} without serving (after \"Start Paperclip now?\" Yes, \
                     its checks or the server failed); read its output above, run `paperclipai doctor`, \
                     then `paperclipd run` again",
                    config.display(),
                    exit.describe()
                ),
            ))),
        }
    }
}
