//! `paperclipd run`: the supervisor.
//!
//! The algorithm, in order (tini-style, one owner for each resource):
//! preflight (which program; no unit, no stranger on the port; free space)
//! → lock the instance → move a stale `postmaster.pid` aside → spawn the
//! server in its own group (for a new instance, onboarding first, supervised
//! the same way; it may become the server) → wait
//! for readiness while watching signals and the server → `READY=1` → feed
//! the watchdog, watch what we adopted → stop in order (forward the signal, grace period, kill the
//! group and everything we adopted, reap all) → release the lock → exit
//! with the documented code.
//!
//! The parts: [`preflight`], [`onboard`], [`postmaster`], [`signals`],
//! [`terminal`], [`child`], [`readiness`], [`progress`], [`output`],
//! [`watchdog`], [`adopted`], [`server_notify`] (what the server itself
//! says: READY, STOPPING, STATUS), `serve` (the loop of one server's
//! life), [`stop`], [`outcome`].

pub mod adopted;
pub mod child;
pub mod onboard;
pub mod outcome;
pub mod output;
pub mod postmaster;
pub mod preflight;
pub mod progress;
pub mod readiness;
pub mod reload;
mod serve;
pub mod server_notify;
pub mod signals;
pub mod stop;
pub mod terminal;
pub mod watchdog;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;

use crate::cli::{Mode, Selection};
use crate::config::RunSettings;
use crate::error::{Error, Result};
use crate::lock::{self, Acquire, InstanceLock, Record};
use crate::notify::Notifier;
use crate::probe::{self, Prober};
use crate::sys::{self, ChildChange};
use crate::{invoker, log};
use child::{ExitKind, Spawned};
use onboard::Onboarded;
use outcome::{Phase, StopReason};
use output::Stream;
use preflight::ServerCommand;
use readiness::Progress;
use serve::Served;
use server_notify::ServerNotify;
use signals::{Received, Signals};
use terminal::Terminal;

/// How often `EXTEND_TIMEOUT_USEC=` is sent while the server starts, and
/// by how much each message extends systemd's start timeout. The window
/// is short so that a hung wrapper is still caught by systemd's timeout.
const EXTEND_EVERY: Duration = Duration::from_secs(5);
const EXTEND_BY: Duration = Duration::from_secs(15);
/// How often the progress display is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Runs the server until it stops. Returns the exit code of `run`; the
/// error that ends it is printed here, through the output relay.
/// `selection` is what the user asked for, read again once onboarding has
/// written `config.json`.
pub async fn run(settings: RunSettings, selection: Selection) -> Result<u8> {
    let relay = output::Relay::start(settings.log.as_ref())?;
    let result = run_relayed(settings, selection, relay.clone()).await;
    relay.finish(result)
}

async fn run_relayed(
    mut settings: RunSettings,
    selection: Selection,
    relay: output::Relay,
) -> Result<u8> {
    signals::ignore_terminal_stops();
    let invoker = invoker::detect();
    let notifier = Notifier::from_env();
    let interactive = signals::interactive();
    let recorded = preflight::recorded_runtime(&settings, &invoker);
    let command = ServerCommand::resolve(&settings, recorded.as_ref())?;
    let checked = preflight::check_runtime(&command, &mut settings, recorded.as_ref())?;
    let origin = checked.as_ref().map(crate::installed::ServerOrigin::of);
    let instance = settings.probe.instance.clone();
    let onboarding = command.is_default && !instance.paperclip_config().exists();

    preflight::refuse_running_units(&instance, &invoker).await?;
    crate::disk::require_free(&instance.root(), settings.probe.min_free)?;
    let record = Record {
        server: origin,
        ..Record::for_this_process(&invoker, &settings.probe)
    };
    let mut lock = acquire(&instance, record)?;
    preflight::record_runtime(checked.as_ref(), &settings, &invoker);
    let prober = checks_under_lock(&command, &settings, onboarding, interactive).await?;

    let signals = Signals::register()?;
    child::become_subreaper();
    let server_notify = ServerNotify::open(&instance);
    let notify_env = server_notify.as_ref().map(ServerNotify::env_value);
    // Its mode is saved before the server can change it.
    let terminal = interactive.then(Terminal::new);
    let server = if onboarding {
        onboard::spawn(&command.program, &settings, interactive, notify_env)?
    } else {
        spawn_server(&command, &settings, interactive, notify_env)?
    };
    record_server(&mut lock, server.pid);
    let mut sup = Supervisor {
        settings,
        notifier: Rc::new(notifier),
        interactive,
        command,
        server,
        terminal,
        server_notify,
        lock,
        tail: Arc::new(Mutex::new(output::Tail::default())),
        relay,
        forwarders: JoinSet::new(),
        signals,
    };
    sup.watch_terminal();
    let result = sup.run(prober, &selection).await;
    if let Some(t) = sup.terminal.as_mut() {
        t.reclaim(sup.server.pgid);
    }
    // The lock is released (record cleared) when `sup` drops, after every
    // process of the server is gone.
    drop(sup);
    result
}

/// Takes the instance's lock, or says who holds it (exit 75).
fn acquire(instance: &crate::instance::Instance, record: Record) -> Result<InstanceLock> {
    match lock::try_acquire(instance, record)? {
        Acquire::Acquired(l) => Ok(l),
        Acquire::Held(holder) => Err(Error::busy(format!(
            "instance {:?} is already running: its lock {} is held by {}. \
             Only one server may run per instance; {}",
            instance.id.as_str(),
            instance.lock_path().display(),
            holder.describe(),
            holder.how_to_stop()
        ))),
    }
}

/// What is checked once the lock is ours: onboarding needs a terminal (or
/// `--onboard-bind`); a set-up instance needs its port free and no
/// PostgreSQL left on its data directory. Returns the prober of a set-up
/// instance.
async fn checks_under_lock(
    command: &ServerCommand,
    settings: &RunSettings,
    onboarding: bool,
    interactive: bool,
) -> Result<Option<Prober>> {
    let instance = &settings.probe.instance;
    if onboarding {
        onboard::require_terminal(
            &command.program,
            instance,
            interactive,
            settings.onboard_bind,
        )?;
        return Ok(None);
    }
    let p = Prober::new(settings.probe.clone(), probe::REQUEST_TIMEOUT)?;
    preflight::refuse_taken_port(&p).await?;
    if command.is_default {
        postmaster::check(instance)?;
    }
    Ok(Some(p))
}

/// Names the running server in the lock record. The server runs now: a
/// record we cannot write (a full disk) must not abandon it, so this is a
/// warning on every path. The flock, not the record, is the truth.
fn record_server(lock: &mut InstanceLock, pid: i32) {
    if let Err(e) = lock.set_child(Some(pid)) {
        log::warn(&e.message);
    }
}

fn spawn_server(
    command: &ServerCommand,
    settings: &RunSettings,
    interactive: bool,
    notify_socket: Option<&std::ffi::OsStr>,
) -> Result<Spawned> {
    child::spawn(&child::SpawnSpec {
        program: &command.program,
        args: &command.args,
        instance: &settings.probe.instance,
        extra_env: &settings.env,
        interactive,
        group: child::Group::for_server(&settings.probe.instance, interactive),
        grace: settings.stop_timeout,
        notify_socket,
    })
}

/// One running server and everything that watches it.
struct Supervisor {
    settings: RunSettings,
    /// Shared with the watchdog's task.
    notifier: Rc<Notifier>,
    interactive: bool,
    /// What runs once the instance is set up.
    command: ServerCommand,
    /// The server (or onboarding, until it serves or ends).
    server: Spawned,
    /// The terminal we share with the server (interactive runs only).
    /// Before `lock`: its witness goes first (dropped in field order).
    terminal: Option<Terminal>,
    /// The server's own notify socket (Linux), removed before the lock
    /// is released.
    server_notify: Option<ServerNotify>,
    /// Released (by Drop) only after every process of the server is gone.
    lock: InstanceLock,
    tail: output::SharedTail,
    /// Where the server's output and our lines go (never blocking).
    relay: output::Relay,
    /// The tasks copying the server's output; awaited after the server's
    /// tree is gone so diagnostics include its very last lines.
    forwarders: JoinSet<()>,
    signals: Signals,
}

/// What the run loops react to.
enum Event {
    /// We received this stop signal.
    Stop(i32),
    /// The terminal sent this signal to the server's group (Ctrl-C).
    Terminal(i32),
    /// The server ended.
    Exited(ExitKind),
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

impl Supervisor {
    /// Onboarding first when the instance is new, then the server.
    async fn run(&mut self, prober: Option<Prober>, sel: &Selection) -> Result<u8> {
        let prober = match prober {
            Some(p) => {
                self.log_started(&format!("started {}", self.command.display()), &p);
                p
            }
            None => match self.onboard(sel).await {
                Onboarded::Serving(p) => {
                    self.log_started("onboarding started the server itself", &p);
                    *p
                }
                Onboarded::Configured => self.start_after_onboarding().await?,
                Onboarded::Done(result) => return result,
            },
        };
        self.supervise(prober).await
    }

    /// Onboarding ended without a server: `paperclipai run` starts.
    async fn start_after_onboarding(&mut self) -> Result<Prober> {
        let prober = Prober::new(self.settings.probe.clone(), probe::REQUEST_TIMEOUT)?;
        preflight::refuse_taken_port(&prober).await?;
        self.server = spawn_server(
            &self.command,
            &self.settings,
            self.interactive,
            self.notify_env(),
        )?;
        // From here on nothing returns an error: `supervise` stops what
        // was spawned before the run ends, whatever happens.
        record_server(&mut self.lock, self.server.pid);
        self.watch_terminal();
        self.log_started(&format!("started {}", self.command.display()), &prober);
        Ok(prober)
    }

    /// `head (pid N) for instance X; waiting for URLS`.
    fn log_started(&self, head: &str, prober: &Prober) {
        let p = &prober.settings;
        log::info(&format!(
            "{head} (pid {}) for instance {}; waiting for {}",
            self.server.pid,
            p.instance.id,
            match p.mode {
                Mode::Full => format!("{} and {}", p.api_url, p.ui_url),
                Mode::ApiOnly => p.api_url.to_string(),
            }
        ));
        self.notifier
            .status(&format!("starting: server pid {}", self.server.pid));
    }

    /// The server's `NOTIFY_SOCKET`, when it has a socket of ours.
    fn notify_env(&self) -> Option<&std::ffi::OsStr> {
        self.server_notify.as_ref().map(ServerNotify::env_value)
    }

    /// In a terminal, watch what it sends the server's (new) group.
    fn watch_terminal(&mut self) {
        if let Some(t) = self.terminal.as_mut() {
            t.watch(self.server.pgid);
        }
    }

    /// Copies the server's piped output (without a terminal) as tasks.
    fn start_forwarders(&mut self) {
        for (fd, stream) in [
            (self.server.stdout.take(), Stream::Stdout),
            (self.server.stderr.take(), Stream::Stderr),
        ] {
            if let Some(fd) = fd {
                self.forwarders.spawn(output::forward(
                    fd,
                    stream,
                    self.tail.clone(),
                    self.relay.clone(),
                ));
            }
        }
    }

    /// The next stop signal, terminal signal or end of the server; a
    /// suspended server (Ctrl-Z) suspends us too, until `fg`.
    async fn next_event(&mut self) -> Event {
        loop {
            tokio::select! {
                got = self.signals.next() => match got {
                    Received::Stop(sig) => return Event::Stop(sig),
                    Received::Child => {
                        if let Some(exit) = self.server_changed() {
                            return Event::Exited(exit);
                        }
                    }
                    Received::Continued => {
                        if let Some(t) = self.terminal.as_mut() {
                            t.resumed(self.server.pgid);
                        }
                    }
                },
                sig = terminal_signal(self.terminal.as_mut()) => return Event::Terminal(sig),
            }
        }
    }

    /// After SIGCHLD: the server's exit status if it ended. In a terminal,
    /// a stopped server stops us too (the shell then takes the terminal).
    fn server_changed(&mut self) -> Option<ExitKind> {
        if let Some(exit) = child::reap(self.server.pid) {
            return Some(exit);
        }
        let terminal = self.terminal.as_mut()?;
        match sys::child_change(self.server.pid)? {
            ChildChange::Ended(ended) => Some(ended.into()),
            ChildChange::Stopped(sig) => {
                terminal.suspend(self.server.pgid, sig);
                None
            }
        }
    }

    /// Stops the server for `reason` and decides the exit code.
    async fn end(&mut self, reason: StopReason, progress: &Progress) -> Result<u8> {
        if let Some(t) = self.terminal.as_mut() {
            t.dismiss();
        }
        // A suspended server could not act on the stop signal.
        child::signal_everything(&self.server, libc::SIGCONT);
        self.stop(reason, progress).await
    }

    /// The server ended on its own, or after the terminal's Ctrl-C.
    async fn ended(&mut self, exit: ExitKind, phase: Phase, progress: &Progress) -> Result<u8> {
        if let Some(t) = self.terminal.as_mut() {
            t.settle().await;
        }
        self.server_exited(exit, phase, progress).await
    }

    /// Did the user stop the server from the terminal (see `outcome`)?
    fn stopped_from_terminal(&self, exit: ExitKind) -> Option<&'static str> {
        self.terminal.as_ref()?.interrupted(exit)
    }

    /// Waits for readiness, then serves, until a stop signal, a timeout or
    /// the server's own exit; then ends the run. A reload replaces the
    /// server in between ([`reload`]) and serving starts over.
    async fn supervise(&mut self, prober: Prober) -> Result<u8> {
        // --- reload (hot restart): begin
        let control = reload::Control::bind(&self.settings.probe.instance);
        let mut pending: Option<Box<reload::Pending>> = None;
        let mut already_ready = false;
        loop {
            let served = self
                .serve(&prober, control.as_ref(), &mut pending, already_ready)
                .await;
            already_ready = false;
            match served {
                Served::Ended(result) => {
                    if let Some(p) = pending.take() {
                        p.failed(&self.settings.probe.instance, &result).await;
                    }
                    return result;
                }
                Served::Reload(prepared) => match self.hand_over(*prepared).await {
                    reload::HandOver::Starting(p) => pending = Some(p),
                    reload::HandOver::NotDone => already_ready = true,
                    reload::HandOver::Ended(result) => return result,
                },
            }
        }
        // --- reload (hot restart): end
    }
}

/// The next signal the terminal sends the server's group; never, outside
/// a terminal.
async fn terminal_signal(terminal: Option<&mut Terminal>) -> i32 {
    match terminal {
        Some(t) => t.next_signal().await,
        None => std::future::pending().await,
    }
}
