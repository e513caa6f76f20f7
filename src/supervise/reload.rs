//! `run`'s half of a hot restart (`paperclipd reload`, `ExecReload=`):
//! the control socket, then upstream's protocol in place. paperclipd, its
//! lock and (under systemd) the cgroup stay; only the server is replaced.
//!
//! 1. A request arrives on `<instance>/paperclipd.sock` from a peer of our
//!    uid (or root) while the server is ready; upstream's
//!    `hot-restart.lock` is taken (waiting for upstream's CLI, if it
//!    restarts the instance) and the server's version read from its API.
//! 2. `RELOADING=1` with `MONOTONIC_USEC=`, `STATUS=`; the intent names
//!    the server's pid, start time and version ([`crate::hot_restart`]).
//! 3. SIGTERM to the server process alone; within the stop timeout it
//!    writes its snapshot and exits, leaving its agent runs alive. They
//!    stay ours (adopted, as a subreaper) and are recorded as carried
//!    over, not stopped.
//! 4. The new server starts and is gated by both probes as at start; only
//!    then `READY=1`. Its report is read (up to [`REPORT_WAIT`]) and sent
//!    back, and the client exits 0.
//!
//! A new server that never gets ready ends the run as a start would
//! (diagnostics, exit 69 or its code): the carried-over runs are stopped
//! in order with it, and the client hears so before the run ends.

mod control;

use std::time::{Duration, Instant};

use crate::error::{Error, Kind, Result};
use crate::hot_restart::wire::{Message, Op};
use crate::hot_restart::{self, CarriedOver, Intent, Phase, RestartLock, State};
use crate::instance::Instance;
use crate::notify::NotifyState;
use crate::probe::Prober;
use crate::{log, procfs, sys};

use super::Supervisor;
use super::child::{self, ExitKind};
use super::stop;
pub use control::{Client, Control, Incoming, accept, read_request, refuse};

/// How long a reload waits for another restart (upstream's CLI) to end.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// How long the new server may take to write its report once ready
/// (upstream's CLI waits 10 s).
pub const REPORT_WAIT: Duration = Duration::from_secs(10);

/// A request read, upstream's lock held, the server's version known.
pub struct Prepared {
    client: Client,
    drain: bool,
    lock: RestartLock,
    version: Option<String>,
}

/// Step 1, while the server keeps serving: take the lock, ask the
/// version. `None` when refused (the client was told).
pub async fn prepare(incoming: Incoming, instance: Instance, prober: Prober) -> Option<Prepared> {
    let (conn, req) = incoming;
    let mut client = Client { conn };
    match req.op {
        Op::Reload => {}
    }
    client
        .progress("reload requested; taking the hot-restart lock")
        .await;
    let lock = match RestartLock::acquire(&instance, LOCK_WAIT).await {
        Ok(l) => l,
        Err(e) => {
            log::warn(&e.message);
            client
                .send(&Message::Failed {
                    code: e.kind.exit_code(),
                    error: e.message,
                })
                .await;
            return None;
        }
    };
    let version = prober.server_version().await;
    Some(Prepared {
        client,
        drain: req.drain,
        lock,
        version,
    })
}

/// A reload whose new server is starting: what finishing it needs.
pub struct Pending {
    client: Client,
    /// Held until the report is read or the reload failed.
    _lock: RestartLock,
    pub intent: Intent,
    state: State,
    started: Instant,
}

/// How the hand-over went.
pub enum HandOver {
    /// The new server runs; wait for it to be ready.
    Starting(Box<Pending>),
    /// The run ends with this (a stop signal came, the spawn failed).
    Ended(Result<u8>),
    /// Nothing was touched (the intent could not be written): the server
    /// serves on.
    NotDone,
}

impl Supervisor {
    /// Steps 2 and 3, and the new server's spawn.
    pub(super) async fn hand_over(&mut self, p: Prepared) -> HandOver {
        let Prepared {
            mut client,
            drain,
            lock,
            version,
        } = p;
        let instance = self.settings.probe.instance.clone();
        let intent = Intent::new(self.server.pid, version, drain);
        if let Err(e) = hot_restart::write_intent(&instance, &intent) {
            log::warn(&e.message);
            client
                .send(&Message::Failed {
                    code: e.kind.exit_code(),
                    error: format!("{}; nothing was restarted", e.message),
                })
                .await;
            return HandOver::NotDone;
        }
        let mut state = self
            .announce_reload(&mut client, &instance, &intent, drain)
            .await;
        let stop_signal = self
            .stop_old_server(&mut client, &instance, &intent, &mut state, drain)
            .await;
        if let Some(sig) = stop_signal {
            return self
                .stopped_during_reload(sig, client, lock, &instance, &intent, state)
                .await;
        }
        self.start_new_server(client, lock, &instance, intent, state)
            .await
    }

    /// Step 2: `RELOADING=1` to the manager, the reload's state recorded,
    /// and the client told the server is being stopped.
    async fn announce_reload(
        &mut self,
        client: &mut Client,
        instance: &Instance,
        intent: &Intent,
        drain: bool,
    ) -> State {
        let old_pid = self.server.pid;
        let mode = if drain {
            "draining its runs"
        } else {
            "keeping its agent runs"
        };
        let mut msgs = vec![NotifyState::Reloading];
        if let Ok(m) = NotifyState::monotonic_usec_now() {
            msgs.push(m);
        }
        let status = format!("reloading: stopping server pid {old_pid} ({mode})");
        msgs.push(NotifyState::Status(&status));
        self.notifier.send(&msgs);
        let state = State {
            phase: Phase::Reloading,
            supervisor_pid: sys::pid(),
            requested_at: intent.requested_at.clone(),
            drain,
            previous_server_pid: old_pid,
            new_server_pid: None,
            carried_over: Vec::new(),
            handed_over_run_ids: Vec::new(),
            report: None,
            message: status.clone(),
        };
        state.write(instance);
        client
            .progress(&format!(
                "hot restart: sent SIGTERM to the server (pid {old_pid}), {mode}; waiting up to {}",
                humantime::format_duration(self.settings.stop_timeout)
            ))
            .await;
        state
    }

    /// Step 3: stops the old server alone, records what it handed over and
    /// what it left running, and tells the client. Returns a stop signal
    /// that came meanwhile.
    async fn stop_old_server(
        &mut self,
        client: &mut Client,
        instance: &Instance,
        intent: &Intent,
        state: &mut State,
        drain: bool,
    ) -> Option<i32> {
        let (exit, stop_signal) = self.stop_server_alone().await;
        let handed = hot_restart::snapshot_runs(instance, intent);
        let left = child::leftovers(&self.server);
        state.handed_over_run_ids = handed.clone().unwrap_or_default();
        state.carried_over = left
            .iter()
            .map(|pid| CarriedOver {
                pid: *pid,
                command: procfs::cmdline(*pid).unwrap_or_else(|| procfs::describe(*pid)),
                start_ticks: procfs::proc_info(*pid).map(|p| p.start_ticks),
            })
            .collect();
        let ended = match exit {
            Some(e) => format!("the server {}", e.describe()),
            None => "the server did not exit within the stop timeout and was killed".into(),
        };
        let kept = match &handed {
            Some(runs) => format!(
                "it handed over {} run(s){}",
                runs.len(),
                if runs.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", runs.join(", "))
                }
            ),
            None if drain => "it drained its runs (--drain)".into(),
            None => "it wrote no snapshot, so it handed over no runs".into(),
        };
        client
            .progress(&format!(
                "{ended}; {kept}; {} process(es) carried over{}",
                left.len(),
                if left.is_empty() {
                    String::new()
                } else {
                    format!(": {}", procfs::describe_all(&left))
                }
            ))
            .await;
        stop_signal
    }

    /// A stop signal came while the old server stopped: the reload fails,
    /// the carried-over runs are stopped and the run ends.
    async fn stopped_during_reload(
        &mut self,
        sig: i32,
        mut client: Client,
        lock: RestartLock,
        instance: &Instance,
        intent: &Intent,
        mut state: State,
    ) -> HandOver {
        let msg = format!(
            "received {} during the reload; the instance stops",
            super::signals::signal_name(sig)
        );
        state.phase = Phase::Failed;
        state.message = msg.clone();
        state.write(instance);
        hot_restart::remove_intent(instance, intent);
        client
            .send(&Message::Failed {
                code: Kind::Failed.exit_code(),
                error: msg,
            })
            .await;
        drop(lock);
        HandOver::Ended(self.stop_carried_over().await.map(|()| 0))
    }

    /// The old server is gone: spawns the new one and hands the reload to
    /// the readiness loop (or ends the run when the spawn fails).
    async fn start_new_server(
        &mut self,
        mut client: Client,
        lock: RestartLock,
        instance: &Instance,
        intent: Intent,
        mut state: State,
    ) -> HandOver {
        // From here the old server is gone: its pid and group may be reused.
        child::release(&self.server);
        // The old server's words (its STOPPING=1) are not the new one's.
        if let Some(n) = &self.server_notify {
            n.new_server();
        }
        self.lock.set_stopping(None);
        match super::spawn_server(
            &self.command,
            &self.settings,
            self.interactive,
            self.notify_env(),
        ) {
            Ok(new) => {
                let old = std::mem::replace(&mut self.server, new);
                drop(old);
            }
            Err(e) => {
                let msg = format!(
                    "the new server could not be started: {}; the carried-over runs are stopped \
                     and the instance stops",
                    e.message
                );
                state.phase = Phase::Failed;
                state.message = msg.clone();
                state.write(instance);
                client
                    .send(&Message::Failed {
                        code: e.kind.exit_code(),
                        error: msg.clone(),
                    })
                    .await;
                drop(lock);
                let _ = self.stop_carried_over().await;
                return HandOver::Ended(Err(Error::new(e.kind, msg)));
            }
        }
        if let Err(e) = self.lock.set_child(Some(self.server.pid)) {
            log::warn(&e.message);
        }
        self.watch_terminal();
        state.new_server_pid = Some(self.server.pid);
        state.message = format!(
            "reloading: new server pid {} starting; waiting for its probes",
            self.server.pid
        );
        state.write(instance);
        self.notifier.status(&state.message);
        client
            .progress(&format!(
                "started the new server (pid {}); waiting until both probes pass (up to {})",
                self.server.pid,
                humantime::format_duration(self.settings.ready_timeout)
            ))
            .await;
        HandOver::Starting(Box::new(Pending {
            client,
            _lock: lock,
            intent,
            state,
            started: Instant::now(),
        }))
    }

    /// SIGTERM to the server process alone (never its group, never what
    /// we adopted); SIGKILL for its group after the stop timeout. Returns
    /// how it ended (`None`: killed) and a stop signal that came meanwhile.
    async fn stop_server_alone(&mut self) -> (Option<ExitKind>, Option<i32>) {
        let server = &self.server;
        let signals = &mut self.signals;
        let grace = self.settings.stop_timeout;
        let budget = grace + stop::KILL_REAP_WAIT;
        stop::extending(&self.notifier, budget, async move {
            child::signal(server, libc::SIGTERM);
            let deadline = tokio::time::Instant::now() + grace;
            let mut stop_signal = None;
            loop {
                if let Some(exit) = child::reap(server.pid) {
                    return (Some(exit), stop_signal);
                }
                tokio::select! {
                    got = signals.child_or_stop() => {
                        if let Some(sig) = got {
                            stop_signal.get_or_insert(sig);
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        match server.group {
                            child::Group::Own => { let _ = sys::kill_group(server.pgid, libc::SIGKILL); }
                            child::Group::Ours => { child::signal(server, libc::SIGKILL); }
                        }
                        let hard = tokio::time::Instant::now() + stop::KILL_REAP_WAIT;
                        loop {
                            if child::reap(server.pid).is_some() {
                                return (None, stop_signal);
                            }
                            tokio::select! {
                                _ = signals.child() => {}
                                _ = tokio::time::sleep_until(hard) => return (None, stop_signal),
                            }
                        }
                    }
                }
            }
        })
        .await
    }

    /// Stops what the old server left (the carried-over runs) in order:
    /// SIGTERM, the stop timeout, SIGKILL.
    async fn stop_carried_over(&mut self) -> Result<()> {
        self.notifier.send(&[
            NotifyState::Stopping,
            NotifyState::Status("stopping the carried-over runs"),
        ]);
        let grace = self.settings.stop_timeout;
        let (server, signals) = (&self.server, &mut self.signals);
        stop::extending(
            &self.notifier,
            grace + stop::KILL_REAP_WAIT,
            stop::cleanup_leftovers(server, signals, grace),
        )
        .await;
        self.drain_output().await;
        Ok(())
    }
}

impl Pending {
    /// Step 4: the new server passed both probes (`READY=1` is sent).
    /// Waits for its report, records it, and tells the client.
    pub async fn finish(mut self, instance: &Instance, new_pid: i32) {
        let deadline = tokio::time::Instant::now() + REPORT_WAIT;
        let report = loop {
            if let Some(r) = hot_restart::read_report(instance, &self.intent) {
                break Some(r);
            }
            if tokio::time::Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let took = self.started.elapsed().as_secs_f64();
        let summary = match &report {
            Some((r, _)) => format!(
                "reloaded: new server pid {new_pid} ready after {took:.2}s; its report: {}",
                r.summary()
            ),
            None => {
                // A server that does not know the protocol adopts nothing.
                hot_restart::remove_intent(instance, &self.intent);
                format!(
                    "reloaded: new server pid {new_pid} ready after {took:.2}s, but it wrote no \
                     hot-restart report within {}s (a server without upstream's hot-restart \
                     support adopts no runs); {} process(es) carried over",
                    REPORT_WAIT.as_secs(),
                    self.state.carried_over.len()
                )
            }
        };
        log::info(&summary);
        self.state.phase = Phase::Reloaded;
        self.state.report = report.as_ref().map(|(_, raw)| raw.clone());
        self.state.message = summary.clone();
        self.state.write(instance);
        let report_value = report.map(|(_, raw)| raw);
        self.client
            .send(&Message::Done {
                summary,
                new_server_pid: new_pid,
                report: report_value,
            })
            .await;
    }

    /// The new server did not come back: the run ends with `result`.
    pub async fn failed(mut self, instance: &Instance, result: &Result<u8>) {
        let (code, why) = match result {
            Ok(code) => (
                (*code).max(1),
                format!("the new server ended (run exit {code})"),
            ),
            Err(e) => (e.kind.exit_code(), e.message.clone()),
        };
        let msg = format!(
            "the reload failed: {why}\nThe runs carried over from the previous server were stopped \
             with the instance. Start it again with `paperclipd start` (or `paperclipd run`)."
        );
        hot_restart::remove_intent(instance, &self.intent);
        self.state.phase = Phase::Failed;
        self.state.message = msg.clone();
        self.state.write(instance);
        self.client
            .send(&Message::Failed { code, error: msg })
            .await;
    }
}
