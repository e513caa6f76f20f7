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
//! says: READY, STOPPING, STATUS),
//! [`stop`], [`outcome`].

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
pub mod server_notify;
pub mod signals;
pub mod stop;
pub mod terminal;
pub mod watchdog;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cli::{Mode, Selection};
use crate::config::RunSettings;
use crate::deadline::Later;
use crate::error::{Error, Result};
use crate::lock::{self, Acquire, InstanceLock, Record};
use crate::notify::{Notifier, NotifyState};
use crate::probe::{self, Prober};
use crate::sys::{self, ChildChange};
use crate::{invoker, log};
use child::{ExitKind, Spawned};
use onboard::Onboarded;
use outcome::{Phase, StopReason};
use output::Stream;
use preflight::ServerCommand;
use progress::{StartingView, became_ready, clear_view};
use readiness::{Outcome, Progress};
use server_notify::{Said, ServerNotify};
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
    let mut lock = match lock::try_acquire(&instance, record)? {
        Acquire::Acquired(l) => l,
        Acquire::Held(holder) => {
            return Err(Error::busy(format!(
                "instance {:?} is already running: its lock {} is held by {}. \
                 Only one server may run per instance; {}",
                instance.id.as_str(),
                instance.lock_path().display(),
                holder.describe(),
                holder.how_to_stop()
            )));
        }
    };
    preflight::record_runtime(checked.as_ref(), &settings, &invoker);
    let mut prober = None;
    if onboarding {
        onboard::require_terminal(
            &command.program,
            &instance,
            interactive,
            settings.onboard_bind,
        )?;
    } else {
        let p = Prober::new(settings.probe.clone(), probe::REQUEST_TIMEOUT)?;
        preflight::refuse_taken_port(&p).await?;
        prober = Some(p);
    }
    if command.is_default && !onboarding {
        postmaster::check(&instance)?;
    }

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

    /// What the server said changed: a `STOPPING=1` it sent on its own
    /// shows in `status` and the manager's `STATUS=`; a new `STATUS=` of a
    /// ready server is quoted in ours.
    fn server_said(&mut self, said: &Said, phase: &Phase, quoted: &mut Option<String>) {
        if said.stopping_since.is_some() {
            if self.lock.record().stopping.is_none() {
                let detail = said.status.clone();
                log::info(&format!(
                    "the server (pid {}) says it is stopping{}",
                    self.server.pid,
                    detail
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                ));
                self.notifier.status(&format!(
                    "stopping: the server said so{}",
                    detail
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ));
                self.lock
                    .set_stopping(Some(lock::Stopping::now(lock::StopBy::Server, detail)));
            }
            return;
        }
        if matches!(phase, Phase::Ready { .. }) && said.status != *quoted {
            if let Some(text) = &said.status {
                self.notifier
                    .status(&format!("ready; the server says: {text}"));
            }
            quoted.clone_from(&said.status);
        }
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

    /// One server's life: readiness, then service, until it ends or a
    /// reload is prepared. `already_ready`: the server passed its probes
    /// before (a reload that touched nothing).
    async fn serve(
        &mut self,
        prober: &Prober,
        control: Option<&reload::Control>,
        pending: &mut Option<Box<reload::Pending>>,
        already_ready: bool,
    ) -> Served {
        self.start_forwarders();
        let started = Instant::now();
        let deadline = crate::deadline::after(self.settings.ready_timeout);
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let mut phase = Phase::Starting { since: started };
        let said = self.server_notify.as_ref().map(ServerNotify::subscribe);
        let mut said_changes = said.clone();
        let mut quoted: Option<String> = None;
        let mut ready_fut: BoxFuture<'_, Outcome> =
            Box::pin(readiness::wait_ready(prober, &progress_tx, said.clone()));
        let mut watchdog_fut: BoxFuture<'_, ()> = Box::pin(std::future::pending());
        let mut adopted_fut: BoxFuture<'_, ()> = Box::pin(adopted::watch(
            self.server.pid,
            self.settings.reap_adopted_after,
            self.settings.probe.instance.clone(),
        ));
        let mut extend = Some(tokio::time::interval(EXTEND_EVERY));
        let mut tick = Some(tokio::time::interval(PROGRESS_EVERY));
        let mut view = Some(StartingView::new(started, self.interactive));
        let mut prepare_fut: Option<BoxFuture<'_, Option<reload::Prepared>>> = None;
        let mut finish_fut: BoxFuture<'_, ()> = Box::pin(std::future::pending());
        let (requests_tx, mut requests_rx) = tokio::sync::mpsc::channel::<reload::Incoming>(4);
        let instance = self.settings.probe.instance.clone();
        if already_ready {
            (view, extend, tick) = (None, None, None);
            phase = Phase::Ready { since: started };
            ready_fut = Box::pin(std::future::pending());
            if let Some(period) = watchdog::period() {
                let feeder = watchdog::Feeder::new(
                    self.notifier.clone(),
                    period,
                    said.clone(),
                    self.settings.stop_timeout,
                );
                watchdog_fut = Box::pin(async move { feeder.feed(prober).await });
            }
        }

        let next = loop {
            let starting = view.is_some();
            // Time spent suspended (Ctrl-Z) does not count.
            let deadline =
                deadline.later(self.terminal.as_ref().map_or(Duration::ZERO, |t| t.paused));
            tokio::select! {
                outcome = &mut ready_fut, if starting => match outcome {
                    Outcome::Ready { elapsed } => {
                        quoted = said.as_ref().and_then(|s| s.borrow().status.clone());
                        became_ready(&self.notifier, &mut self.lock, &progress_rx.borrow(), elapsed, view.take(), quoted.as_deref());
                        extend = None;
                        tick = None;
                        phase = Phase::Ready { since: Instant::now() };
                        ready_fut = Box::pin(std::future::pending());
                        if let Some(period) = watchdog::period() {
                            let feeder = watchdog::Feeder::new(self.notifier.clone(), period, said.clone(), self.settings.stop_timeout);
                            watchdog_fut = Box::pin(async move { feeder.feed(prober).await });
                        }
                        if let Some(p) = pending.take() {
                            let (instance, pid) = (instance.clone(), self.server.pid);
                            finish_fut = Box::pin(async move { p.finish(&instance, pid).await });
                        }
                    }
                    Outcome::Foreign { who } => {
                        log::error(&format!(
                            "port {} is held by {who}, not by our server; stopping our server",
                            prober.settings.port,
                        ));
                        break Next::Stop(StopReason::Foreign);
                    }
                },
                _ = tokio::time::sleep_until(deadline), if starting => break Next::Stop(StopReason::ReadyTimeout),
                _ = next_tick(extend.as_mut()), if starting && self.notifier.enabled() => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now()) + self.settings.stop_timeout;
                    let by = EXTEND_BY.min(left + Duration::from_secs(1));
                    self.notifier.send(&[NotifyState::ExtendTimeoutUsec(by.as_micros().min(u32::MAX as u128) as u32)]);
                }
                _ = next_tick(tick.as_mut()), if starting => {
                    if let Some(v) = view.as_mut() {
                        v.show(&progress_rx.borrow(), self.settings.probe.port, &self.notifier);
                    }
                }
                _ = &mut watchdog_fut => {}
                _ = &mut adopted_fut => {}
                now = server_notify::next_change(said_changes.as_mut()) => {
                    self.server_said(&now, &phase, &mut quoted);
                }
                // --- reload (hot restart): a request, its preparation, its end
                conn = reload::accept(control) => {
                    tokio::spawn(reload::read_request(conn, requests_tx.clone()));
                }
                Some((conn, req)) = requests_rx.recv() => {
                    let ready = matches!(phase, Phase::Ready { .. });
                    if ready && prepare_fut.is_none() && pending.is_none() {
                        let (instance, prober) = (instance.clone(), prober.clone());
                        prepare_fut = Some(Box::pin(reload::prepare((conn, req), instance, prober)));
                    } else {
                        let why = if ready {
                            "a reload of this instance is already in progress; wait for it to finish"
                        } else {
                            "the server is not ready yet (starting, or a reload is in progress); retry once it is ready"
                        };
                        tokio::spawn(reload::refuse(conn, why.to_string()));
                    }
                }
                prepared = next_prepared(prepare_fut.as_mut()) => {
                    prepare_fut = None;
                    if let Some(p) = prepared {
                        break Next::Reload(p);
                    }
                }
                _ = &mut finish_fut => finish_fut = Box::pin(std::future::pending()),
                // --- reload (hot restart): end
                ev = self.next_event() => match ev {
                    Event::Stop(sig) => break Next::Stop(StopReason::Signal(sig)),
                    Event::Terminal(sig) => break Next::Stop(StopReason::Terminal(sig)),
                    Event::Exited(exit) => {
                        clear_view(view.as_ref());
                        drop(ready_fut);
                        drop(watchdog_fut);
                        let progress = progress_rx.borrow().clone();
                        drop(finish_fut);
                        return Served::Ended(self.ended(exit, phase, &progress).await);
                    }
                },
            }
        };
        drop(ready_fut);
        drop(watchdog_fut);
        drop(finish_fut);
        clear_view(view.as_ref());
        let stop_reason = match next {
            Next::Reload(p) => return Served::Reload(Box::new(p)),
            Next::Stop(reason) => reason,
        };
        let progress = progress_rx.borrow().clone();
        Served::Ended(self.end(stop_reason, &progress).await)
    }
}

/// What ends the serving loop.
enum Next {
    Stop(StopReason),
    Reload(reload::Prepared),
}

/// How one server's life ended.
enum Served {
    /// The run ends with this.
    Ended(Result<u8>),
    /// A reload is prepared: replace the server.
    Reload(Box<reload::Prepared>),
}

/// The next prepared reload; never, without one in preparation.
async fn next_prepared(
    fut: Option<&mut BoxFuture<'_, Option<reload::Prepared>>>,
) -> Option<reload::Prepared> {
    match fut {
        Some(f) => f.await,
        None => std::future::pending().await,
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

/// The next tick of an optional interval; never, without one.
async fn next_tick(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}
