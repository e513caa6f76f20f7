//! One server's life: readiness, then service, until it ends or a reload
//! is prepared — the loop that waits on everything at once (the probes,
//! the ready deadline, progress, the watchdog, adoption, what the server
//! says, reload requests, signals and the server's own end).

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::outcome::{Phase, StopReason};
use super::progress::{StartingView, became_ready, clear_view};
use super::readiness::{self, Outcome, Progress};
use super::server_notify::{self, Said, ServerNotify};
use super::{
    BoxFuture, EXTEND_BY, EXTEND_EVERY, Event, PROGRESS_EVERY, Supervisor, adopted, reload,
    watchdog,
};
use crate::deadline::Later;
use crate::error::Result;
use crate::lock;
use crate::log;
use crate::notify::NotifyState;
use crate::probe::Prober;

/// What ends the serving loop.
enum Next {
    Stop(StopReason),
    Reload(reload::Prepared),
}

/// How one server's life ended.
pub(super) enum Served {
    /// The run ends with this.
    Ended(Result<u8>),
    /// A reload is prepared: replace the server.
    Reload(Box<reload::Prepared>),
}

/// Everything one server's life waits on besides signals and the server;
/// its futures borrow the prober (`'p`).
struct Life<'p> {
    phase: Phase,
    /// When the ready timeout ends (pauses in a terminal not counted).
    deadline: tokio::time::Instant,
    /// The progress display; `None` once ready.
    view: Option<StartingView>,
    extend: Option<tokio::time::Interval>,
    tick: Option<tokio::time::Interval>,
    progress: watch::Receiver<Progress>,
    ready_fut: BoxFuture<'p, Outcome>,
    watchdog_fut: BoxFuture<'p, ()>,
    adopted_fut: BoxFuture<'p, ()>,
    prepare_fut: Option<BoxFuture<'p, Option<reload::Prepared>>>,
    finish_fut: BoxFuture<'p, ()>,
    /// What the server says on its own notify socket (Linux).
    said: Option<watch::Receiver<Said>>,
    said_changes: Option<watch::Receiver<Said>>,
    /// The server's `STATUS=` last quoted in ours.
    quoted: Option<String>,
}

impl<'p> Life<'p> {
    /// Nothing of it borrows the prober any more; the progress seen.
    fn wind_down(self) -> (Phase, Progress) {
        clear_view(self.view.as_ref());
        let progress = self.progress.borrow().clone();
        (self.phase, progress)
    }
}

impl Supervisor {
    /// One server's life: readiness, then service, until it ends or a
    /// reload is prepared. `already_ready`: the server passed its probes
    /// before (a reload that touched nothing).
    pub(super) async fn serve(
        &mut self,
        prober: &Prober,
        control: Option<&reload::Control>,
        pending: &mut Option<Box<reload::Pending>>,
        already_ready: bool,
    ) -> Served {
        self.start_forwarders();
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let mut life = self.begin_life(prober, &progress_tx, progress_rx, already_ready);
        let (requests_tx, mut requests_rx) = mpsc::channel::<reload::Incoming>(4);
        let next = loop {
            let starting = life.view.is_some();
            // Time spent suspended (Ctrl-Z) does not count.
            let paused = self.terminal.as_ref().map_or(Duration::ZERO, |t| t.paused);
            let deadline = life.deadline.later(paused);
            tokio::select! {
                outcome = &mut life.ready_fut, if starting => {
                    if let Some(next) = self.on_outcome(outcome, &mut life, prober, pending) {
                        break next;
                    }
                }
                _ = tokio::time::sleep_until(deadline), if starting => break Next::Stop(StopReason::ReadyTimeout),
                _ = next_tick(life.extend.as_mut()), if starting && self.notifier.enabled() => self.extend_start(deadline),
                _ = next_tick(life.tick.as_mut()), if starting => {
                    if let Some(v) = life.view.as_mut() {
                        v.show(&life.progress.borrow(), self.settings.probe.port, &self.notifier);
                    }
                }
                _ = &mut life.watchdog_fut => {}
                _ = &mut life.adopted_fut => {}
                now = server_notify::next_change(life.said_changes.as_mut()) => {
                    self.server_said(&now, &life.phase, &mut life.quoted);
                }
                // --- reload (hot restart): a request, its preparation, its end
                conn = reload::accept(control) => {
                    tokio::spawn(reload::read_request(conn, requests_tx.clone()));
                }
                Some(incoming) = requests_rx.recv() => self.on_request(incoming, &mut life, prober, pending),
                prepared = next_prepared(life.prepare_fut.as_mut()) => {
                    life.prepare_fut = None;
                    if let Some(p) = prepared {
                        break Next::Reload(p);
                    }
                }
                _ = &mut life.finish_fut => life.finish_fut = Box::pin(std::future::pending()),
                // --- reload (hot restart): end
                ev = self.next_event() => match ev {
                    Event::Stop(sig) => break Next::Stop(StopReason::Signal(sig)),
                    Event::Terminal(sig) => break Next::Stop(StopReason::Terminal(sig)),
                    Event::Exited(exit) => {
                        let (phase, progress) = life.wind_down();
                        return Served::Ended(self.ended(exit, phase, &progress).await);
                    }
                },
            }
        };
        let (_, progress) = life.wind_down();
        match next {
            Next::Reload(p) => Served::Reload(Box::new(p)),
            Next::Stop(reason) => Served::Ended(self.end(reason, &progress).await),
        }
    }

    /// The futures of a new server's life: the probes (or, after a reload
    /// that touched nothing, the watchdog at once) and the adoption watch.
    fn begin_life<'p>(
        &self,
        prober: &'p Prober,
        progress: &'p watch::Sender<Progress>,
        progress_rx: watch::Receiver<Progress>,
        already_ready: bool,
    ) -> Life<'p> {
        let started = Instant::now();
        let said = self.server_notify.as_ref().map(ServerNotify::subscribe);
        let mut life = Life {
            phase: Phase::Starting { since: started },
            deadline: crate::deadline::after(self.settings.ready_timeout),
            view: Some(StartingView::new(started, self.interactive)),
            extend: Some(tokio::time::interval(EXTEND_EVERY)),
            tick: Some(tokio::time::interval(PROGRESS_EVERY)),
            progress: progress_rx,
            ready_fut: Box::pin(readiness::wait_ready(prober, progress, said.clone())),
            watchdog_fut: Box::pin(std::future::pending()),
            adopted_fut: Box::pin(adopted::watch(
                self.server.pid,
                self.settings.reap_adopted_after,
                self.settings.probe.instance.clone(),
            )),
            prepare_fut: None,
            finish_fut: Box::pin(std::future::pending()),
            said_changes: said.clone(),
            said,
            quoted: None,
        };
        if already_ready {
            life.view = None;
            self.now_ready(&mut life, prober, started);
        }
        life
    }

    /// From now on the server is ready: no progress, the watchdog fed.
    fn now_ready<'p>(&self, life: &mut Life<'p>, prober: &'p Prober, since: Instant) {
        (life.extend, life.tick) = (None, None);
        life.phase = Phase::Ready { since };
        life.ready_fut = Box::pin(std::future::pending());
        if let Some(period) = watchdog::period() {
            let feeder = watchdog::Feeder::new(
                self.notifier.clone(),
                period,
                life.said.clone(),
                self.settings.stop_timeout,
            );
            life.watchdog_fut = Box::pin(async move { feeder.feed(prober).await });
        }
    }

    /// The probes' verdict: ready (`READY=1`, and a reload in progress
    /// finishes), or a stranger on the port (the run stops).
    fn on_outcome<'p>(
        &mut self,
        outcome: Outcome,
        life: &mut Life<'p>,
        prober: &'p Prober,
        pending: &mut Option<Box<reload::Pending>>,
    ) -> Option<Next> {
        match outcome {
            Outcome::Ready { elapsed } => {
                life.quoted = life.said.as_ref().and_then(|s| s.borrow().status.clone());
                became_ready(
                    &self.notifier,
                    &mut self.lock,
                    &life.progress.borrow(),
                    elapsed,
                    life.view.take(),
                    life.quoted.as_deref(),
                );
                self.now_ready(life, prober, Instant::now());
                if let Some(p) = pending.take() {
                    let (instance, pid) = (self.settings.probe.instance.clone(), self.server.pid);
                    life.finish_fut = Box::pin(async move { p.finish(&instance, pid).await });
                }
                None
            }
            Outcome::Foreign { who } => {
                log::error(&format!(
                    "port {} is held by {who}, not by our server; stopping our server",
                    prober.settings.port,
                ));
                Some(Next::Stop(StopReason::Foreign))
            }
        }
    }

    /// While starting: keeps the manager's start timeout from firing, but
    /// never beyond our own deadline and stop budget.
    fn extend_start(&self, deadline: tokio::time::Instant) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now())
            + self.settings.stop_timeout;
        let by = EXTEND_BY.min(left + Duration::from_secs(1));
        self.notifier.send(&[NotifyState::ExtendTimeoutUsec(
            by.as_micros().min(u32::MAX as u128) as u32,
        )]);
    }

    /// A reload request: prepared when the server is ready and no other
    /// reload runs; refused, saying why, otherwise.
    fn on_request<'p>(
        &self,
        (conn, req): reload::Incoming,
        life: &mut Life<'p>,
        prober: &'p Prober,
        pending: &Option<Box<reload::Pending>>,
    ) {
        let ready = matches!(life.phase, Phase::Ready { .. });
        if ready && life.prepare_fut.is_none() && pending.is_none() {
            let (instance, prober) = (self.settings.probe.instance.clone(), prober.clone());
            life.prepare_fut = Some(Box::pin(reload::prepare((conn, req), instance, prober)));
        } else {
            let why = if ready {
                "a reload of this instance is already in progress; wait for it to finish"
            } else {
                "the server is not ready yet (starting, or a reload is in progress); retry once it is ready"
            };
            tokio::spawn(reload::refuse(conn, why.to_string()));
        }
    }

    /// What the server said changed: a `STOPPING=1` it sent on its own
    /// shows in `status` and the manager's `STATUS=`; a new `STATUS=` of a
    /// ready server is quoted in ours.
    fn server_said(&mut self, said: &Said, phase: &Phase, quoted: &mut Option<String>) {
        if said.stopping_since.is_some() {
            if self.lock.record().stopping.is_none() {
                let detail = said.status.clone();
                let words = |open: &str, close: &str| {
                    detail
                        .as_deref()
                        .map(|d| format!("{open}{d}{close}"))
                        .unwrap_or_default()
                };
                log::info(&format!(
                    "the server (pid {}) says it is stopping{}",
                    self.server.pid,
                    words(": ", "")
                ));
                self.notifier
                    .status(&format!("stopping: the server said so{}", words(" (", ")")));
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

/// The next tick of an optional interval; never, without one.
async fn next_tick(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}
