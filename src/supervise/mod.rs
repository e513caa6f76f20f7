//! `paperclipd run`: the supervisor.
//!
//! The algorithm, in order (tini-style, one owner for each resource):
//! preflight (which program; no unit, no stranger on the port) → lock the
//! instance → onboard if needed → spawn the server in its own group → wait
//! for readiness while watching signals and the server → `READY=1` → feed
//! the watchdog → stop in order (forward the signal, grace period, kill the
//! group and everything we adopted, reap all) → release the lock → exit
//! with the documented code.
//!
//! The parts: [`preflight`], [`onboard`], [`signals`], [`child`],
//! [`readiness`], [`output`], [`watchdog`], [`stop`], [`outcome`].

pub mod child;
pub mod onboard;
pub mod outcome;
pub mod output;
pub mod preflight;
pub mod readiness;
pub mod signals;
pub mod stop;
pub mod watchdog;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cli::Mode;
use crate::config::RunSettings;
use crate::error::{Error, Result};
use crate::lock::{self, Acquire, InstanceLock, Record};
use crate::notify::{Notifier, NotifyState};
use crate::probe::{self, Prober};
use crate::{invoker, log, procfs};
use child::Spawned;
use outcome::{Phase, StopReason};
use output::Stream;
use preflight::ServerCommand;
use readiness::{Outcome, Progress};
use signals::Signals;

/// How often `EXTEND_TIMEOUT_USEC=` is sent while the server starts, and
/// by how much each message extends systemd's start timeout. The window
/// is short so that a hung wrapper is still caught by systemd's timeout.
const EXTEND_EVERY: Duration = Duration::from_secs(5);
const EXTEND_BY: Duration = Duration::from_secs(15);
/// How often the progress display is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Runs the server until it stops. Returns the exit code of `run`.
pub async fn run(mut settings: RunSettings) -> Result<u8> {
    let invoker = invoker::detect();
    let notifier = Notifier::from_env();
    let interactive = signals::interactive();
    let command = ServerCommand::resolve(&settings)?;
    preflight::check_runtime(&command, &mut settings)?;
    let instance = settings.probe.instance.clone();

    preflight::refuse_running_units(&instance, &invoker).await?;
    let mut lock = match lock::try_acquire(&instance, Record::for_this_process(&invoker))? {
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
    if command.is_default && !instance.paperclip_config().exists() {
        onboard::onboard(&command.program, &mut settings, interactive)?;
    }
    let prober = Prober::new(settings.probe.clone(), probe::REQUEST_TIMEOUT)?;
    preflight::refuse_taken_port(&prober).await?;

    let signals = Signals::register()?;
    child::become_subreaper();
    let server = child::spawn(&child::SpawnSpec {
        program: &command.program,
        args: &command.args,
        instance: &instance,
        extra_env: &settings.env,
        interactive,
    })?;
    lock.set_child(Some(server.pid))?;
    log::info(&format!(
        "started {} (pid {}) for instance {}; waiting for {}",
        command.display(),
        server.pid,
        instance.id,
        match settings.probe.mode {
            Mode::Full => format!("{} and {}", settings.probe.api_url, settings.probe.ui_url),
            Mode::ApiOnly => settings.probe.api_url.to_string(),
        }
    ));
    notifier.status(&format!("starting: server pid {}", server.pid));

    let mut sup = Supervisor {
        settings,
        notifier,
        interactive,
        server,
        lock,
        tail: Arc::new(Mutex::new(output::Tail::default())),
        forwarders: JoinSet::new(),
        signals,
    };
    let result = sup.supervise(prober).await;
    if interactive {
        signals::reclaim_terminal();
    }
    // The lock is released (record cleared) when `sup` drops, after every
    // process of the server is gone.
    drop(sup);
    result
}

/// One running server and everything that watches it.
struct Supervisor {
    settings: RunSettings,
    notifier: Notifier,
    interactive: bool,
    server: Spawned,
    /// Released (by Drop) only after every process of the server is gone.
    lock: InstanceLock,
    tail: output::SharedTail,
    /// The tasks copying the server's output; awaited after the server's
    /// tree is gone so diagnostics include its very last lines.
    forwarders: JoinSet<()>,
    signals: Signals,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The starting phase's display and timers, dropped at ready: an armed
/// timer would wake the idle process even when its branch is disabled.
struct StartingView {
    started: Instant,
    shown_summary: String,
    sent_status: String,
    /// stderr is a terminal: one live progress line instead of log lines.
    show_line: bool,
}

impl Supervisor {
    /// Copies the server's piped output (without a terminal) as tasks.
    fn start_forwarders(&mut self) {
        for (fd, stream) in [
            (self.server.stdout.take(), Stream::Stdout),
            (self.server.stderr.take(), Stream::Stderr),
        ] {
            if let Some(fd) = fd {
                self.forwarders
                    .spawn(output::forward(fd, stream, self.tail.clone()));
            }
        }
    }

    /// Waits for readiness, then serves, until a stop signal, a timeout or
    /// the server's own exit; then ends the run.
    async fn supervise(&mut self, prober: Prober) -> Result<u8> {
        self.start_forwarders();
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.settings.ready_timeout;
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let mut phase = Phase::Starting { since: started };
        let mut ready_fut: BoxFuture<'_, Outcome> =
            Box::pin(readiness::wait_ready(&prober, &progress_tx));
        let mut watchdog_fut: BoxFuture<'_, ()> = Box::pin(std::future::pending());
        let mut extend = Some(tokio::time::interval(EXTEND_EVERY));
        let mut tick = Some(tokio::time::interval(PROGRESS_EVERY));
        let mut view = Some(StartingView {
            started,
            shown_summary: String::new(),
            sent_status: String::new(),
            show_line: crate::sys::isatty(2),
        });

        let stop_reason = loop {
            let starting = view.is_some();
            tokio::select! {
                outcome = &mut ready_fut, if starting => match outcome {
                    Outcome::Ready { elapsed } => {
                        became_ready(&self.notifier, &mut self.lock, &progress_rx.borrow(), elapsed, view.take());
                        extend = None;
                        tick = None;
                        phase = Phase::Ready { since: Instant::now() };
                        ready_fut = Box::pin(std::future::pending());
                        if let Some(period) = watchdog::period() {
                            watchdog_fut = Box::pin(watchdog::feed(&prober, &self.notifier, period));
                        }
                    }
                    Outcome::Foreign { owners } => {
                        log::error(&format!(
                            "port {} is held by {}, not by our server; stopping our server",
                            prober.settings.port,
                            procfs::describe_all(&owners)
                        ));
                        break StopReason::Foreign;
                    }
                },
                _ = tokio::time::sleep_until(deadline), if starting => break StopReason::ReadyTimeout,
                _ = next_tick(extend.as_mut()), if starting && self.notifier.enabled() => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now()) + self.settings.stop_timeout;
                    let by = EXTEND_BY.min(left + Duration::from_secs(1));
                    self.notifier.send(&[NotifyState::ExtendTimeoutUsec(by.as_micros().min(u32::MAX as u128) as u32)]);
                }
                _ = next_tick(tick.as_mut()), if starting => {
                    if let Some(v) = view.as_mut() {
                        self.show_progress(v, &progress_rx.borrow());
                    }
                }
                _ = &mut watchdog_fut => {}
                got = self.signals.child_or_stop() => {
                    if let Some(sig) = got {
                        break StopReason::Signal(sig);
                    }
                    if let Some(exit) = child::reap(self.server.pid) {
                        clear_view(view.as_ref());
                        drop(ready_fut);
                        drop(watchdog_fut);
                        let progress = progress_rx.borrow().clone();
                        return self.server_exited(exit, phase, &progress).await;
                    }
                }
            }
        };
        drop(ready_fut);
        drop(watchdog_fut);
        clear_view(view.as_ref());
        let progress = progress_rx.borrow().clone();
        self.stop(stop_reason, &progress).await
    }

    /// Refreshes the progress line (or logs a changed summary) and the
    /// manager's `STATUS=`.
    fn show_progress(&self, v: &mut StartingView, p: &Progress) {
        let summary = p.summary(self.settings.probe.port);
        let elapsed = v.started.elapsed().as_secs_f64();
        if v.show_line {
            log::show_progress_line(&format!("paperclipd: starting ({elapsed:.1}s): {summary}"));
        } else if summary != v.shown_summary {
            log::info(&format!("starting ({elapsed:.1}s): {summary}"));
        }
        v.shown_summary = summary.clone();
        if summary != v.sent_status {
            self.notifier.status(&format!("starting: {summary}"));
            v.sent_status = summary;
        }
    }
}

/// `READY=1` once, the ready line, and the lock record's ready time.
fn became_ready(
    notifier: &Notifier,
    lock: &mut InstanceLock,
    p: &Progress,
    elapsed: Duration,
    view: Option<StartingView>,
) {
    let msg = outcome::ready_message(p, elapsed);
    notifier.send(&[
        NotifyState::Ready,
        NotifyState::Status(&crate::notify::one_line(&msg)),
    ]);
    clear_view(view.as_ref());
    log::info(&msg);
    if let Err(e) = lock.set_ready() {
        log::warn(&e.message);
    }
}

/// Erases the live progress line, if the starting view shows one.
fn clear_view(view: Option<&StartingView>) {
    if view.is_some_and(|v| v.show_line) {
        log::clear_progress_line(&mut std::io::stderr());
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
