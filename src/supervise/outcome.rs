//! How `run` ends: for each way the server stops, the message and the
//! documented exit code (with the probes' last results and the server's
//! last lines when it never became ready).

use std::time::{Duration, Instant};

use crate::error::{Error, Kind, Result};
use crate::notify::NotifyState;
use crate::{log, procfs};

use super::Supervisor;
use super::child::ExitKind;
use super::readiness::Progress;
use super::signals::signal_name;
use super::stop::{self, GracefulStop};

/// Where the run loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting { since: Instant },
    Ready { since: Instant },
}

/// Why we stop the server.
#[derive(Debug, Clone, Copy)]
pub enum StopReason {
    /// We received this stop signal.
    Signal(i32),
    /// The terminal sent this signal to the server's group (Ctrl-C): the
    /// server has it already; a second one could cut its shutdown short.
    Terminal(i32),
    ReadyTimeout,
    Foreign,
}

impl StopReason {
    /// The signal the server gets from us; 0 (none) when it has its own.
    fn signal(self) -> i32 {
        match self {
            StopReason::Signal(s) => super::signals::forwarded(s),
            StopReason::Terminal(_) => 0,
            _ => libc::SIGTERM,
        }
    }
}

/// As PID 1 (a container), a stop signal comes from the engine, which
/// SIGKILLs everything when its own grace ends: 10 s by default, often too
/// short for PostgreSQL. Say what this stop may take, and how to allow it.
fn container_grace_hint(sig: i32, stop_timeout: Duration) {
    if std::process::id() != 1 {
        return;
    }
    let budget = crate::config::stop_budget(stop_timeout).as_secs();
    log::info(&format!(
        "as PID 1 of a container: {} may take up to {budget}s (the stop timeout {} plus cleanup); \
         an engine that SIGKILLs sooner cuts PostgreSQL's shutdown short. The default grace is 10s: \
         give `--stop-timeout {budget}` (docker/podman run), `stop_grace_period: {budget}s` (compose) \
         or `terminationGracePeriodSeconds: {budget}` (Kubernetes)",
        signal_name(sig),
        humantime::format_duration(stop_timeout),
    ));
}

impl Supervisor {
    /// The server exited without being asked to.
    pub(super) async fn server_exited(
        &mut self,
        exit: ExitKind,
        phase: Phase,
        progress: &Progress,
    ) -> Result<u8> {
        // In a terminal, Ctrl-C goes straight to the server (it owns the
        // terminal): then its exit, whatever its status, is the user's stop.
        let user_interrupt = self.stopped_from_terminal(exit);
        self.notifier.send(&[
            NotifyState::Stopping,
            NotifyState::Status(&format!("server {}; stopping", exit.describe())),
        ]);
        // What the server left (an orphaned PostgreSQL) gets the whole
        // stop timeout to shut down in order.
        let grace = self.settings.stop_timeout;
        let (server, signals) = (&self.server, &mut self.signals);
        let budget = grace + stop::KILL_REAP_WAIT;
        stop::extending(
            &self.notifier,
            budget,
            stop::cleanup_leftovers(server, signals, grace),
        )
        .await;
        self.drain_output().await;
        if let Some(key) = user_interrupt {
            log::info(&format!(
                "the server {} after {key}; stopped",
                exit.describe()
            ));
            return Ok(0);
        }
        match phase {
            Phase::Ready { since } => self.exited_after_service(exit, since.elapsed()),
            Phase::Starting { since } => {
                let mut msg = format!(
                    "the server (pid {}) {} {:.1}s after start, before it became ready.",
                    self.server.pid,
                    exit.describe(),
                    since.elapsed().as_secs_f64()
                );
                self.append_diagnostics(&mut msg, progress).await;
                msg.push_str("\nCheck the server's output above; run the command by hand to see it fail directly.");
                let kind = match exit.shell_code() {
                    // A server that ends before it was ever ready has
                    // failed, whatever its code: restart policies
                    // (systemd's on-failure, Docker's) must see a failure.
                    0 => {
                        msg.push_str("\nA server that ends before it is ready failed to start, whatever its code: exit 70 (EX_SOFTWARE).");
                        Kind::Software
                    }
                    code => Kind::ServerExited(code),
                };
                Err(Error::new(kind, msg))
            }
        }
    }

    /// The server ended on its own after it was ready. Exit 0 becomes 70:
    /// nobody asked it to stop, so a service manager must see a failure
    /// (`Restart=on-failure` and launchd's `KeepAlive{SuccessfulExit=false}`
    /// ignore exit 0, and the instance would stay down).
    fn exited_after_service(&self, exit: ExitKind, up: Duration) -> Result<u8> {
        let code = exit.shell_code();
        let served = if up < Duration::from_secs(60) {
            format!("{:.1}s", up.as_secs_f64())
        } else {
            humantime::format_duration(Duration::from_secs(up.as_secs())).to_string()
        };
        let msg = format!(
            "the server (pid {}) {} after {served} of service",
            self.server.pid,
            exit.describe(),
        );
        if code == 0 {
            return Err(Error::new(
                Kind::Software,
                format!(
                    "{msg}, on its own after it was ready: no stop was requested, so this is a failure; \
                     exit 70 (EX_SOFTWARE), which the service manager restarts (it ignores exit 0)"
                ),
            ));
        }
        log::error(&format!("{msg}; exiting with {code}"));
        Ok(code)
    }

    /// Stops the server in order and decides the exit code.
    pub(super) async fn stop(&mut self, reason: StopReason, progress: &Progress) -> Result<u8> {
        let sig = reason.signal();
        let why = match reason {
            StopReason::Signal(s) => format!("received {}", signal_name(s)),
            StopReason::Terminal(s) => format!(
                "the terminal sent {} ({}) to the server",
                signal_name(s),
                super::signals::terminal_key(s)
            ),
            StopReason::ReadyTimeout => format!(
                "not ready after {}",
                humantime::format_duration(self.settings.ready_timeout)
            ),
            StopReason::Foreign => "port taken by another process".to_string(),
        };
        let sent = if sig == 0 {
            "no signal of ours".to_string()
        } else {
            signal_name(sig)
        };
        if self.lock.record().stopping.is_none() {
            self.lock.set_stopping(Some(crate::lock::Stopping::now(
                crate::lock::StopBy::Paperclipd,
                Some(why.clone()),
            )));
        }
        self.notifier.send(&[
            NotifyState::Stopping,
            NotifyState::Status(&format!(
                "stopping ({why}): sent {sent} to server pid {}",
                self.server.pid
            )),
        ]);
        let wait = humantime::format_duration(self.settings.stop_timeout);
        log::info(&if sig == 0 {
            format!(
                "{why}; waiting up to {wait} for it (pid {}) to stop",
                self.server.pid
            )
        } else {
            format!(
                "{why}; stopping the server (pid {}) with {sent}, waiting up to {wait}",
                self.server.pid
            )
        });
        if let StopReason::Signal(s) = reason {
            container_grace_hint(s, self.settings.stop_timeout);
        }
        let stop_started = Instant::now();
        let graceful = GracefulStop {
            signal: sig,
            grace: self.settings.stop_timeout,
        };
        // The leftovers get what the server left of the stop timeout.
        let (server, signals) = (&self.server, &mut self.signals);
        let budget = graceful.grace + stop::MIN_LEFTOVER_GRACE + 2 * stop::KILL_REAP_WAIT;
        let exit = stop::extending(&self.notifier, budget, async move {
            let exit = graceful.run(server, signals).await;
            let left = graceful.grace.saturating_sub(stop_started.elapsed());
            let grace = left.max(stop::MIN_LEFTOVER_GRACE);
            stop::cleanup_leftovers(server, signals, grace).await;
            exit
        })
        .await;
        self.drain_output().await;
        match reason {
            StopReason::Signal(_) | StopReason::Terminal(_) => {
                self.report_requested_stop(exit, stop_started.elapsed());
                Ok(0)
            }
            StopReason::ReadyTimeout => Err(self.ready_timeout_error(progress).await),
            StopReason::Foreign => Err(self.foreign_port_error()),
        }
    }

    fn report_requested_stop(&self, exit: Option<ExitKind>, took: Duration) {
        match exit {
            Some(e) => log::info(&format!(
                "the server {} after {:.2}s; stopped",
                e.describe(),
                took.as_secs_f64()
            )),
            None => log::warn(&format!(
                "the server did not exit within the stop timeout ({}) and was killed with SIGKILL; \
                 raise --stop-timeout if it needs longer to shut down",
                humantime::format_duration(self.settings.stop_timeout)
            )),
        }
    }

    async fn ready_timeout_error(&mut self, progress: &Progress) -> Error {
        let mut msg = format!(
            "the server was not ready within {} (readiness timeout) and was stopped.",
            humantime::format_duration(self.settings.ready_timeout)
        );
        self.append_diagnostics(&mut msg, progress).await;
        msg.push_str(&format!(
            "\nIf it is only slow, raise --ready-timeout; check the probe paths with `paperclipd probe --url {}`.",
            self.settings.probe.url
        ));
        Error::new(Kind::Unavailable, msg)
    }

    fn foreign_port_error(&self) -> Error {
        Error::busy(format!(
            "port {} was taken by {} while our server was starting, so its probes would talk to a stranger; \
             our server was stopped. Stop that process or give this instance another port",
            self.settings.probe.port,
            procfs::describe_listener(self.settings.probe.port)
        ))
    }

    /// Waits (briefly) until the server's output pipes are drained: once
    /// its whole tree is gone every write end is closed, so EOF comes at
    /// once unless something escaped us.
    pub(super) async fn drain_output(&mut self) {
        let forwarders = &mut self.forwarders;
        let all = async { while forwarders.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(Duration::from_secs(1), all).await;
    }

    async fn append_diagnostics(&mut self, msg: &mut String, progress: &Progress) {
        self.drain_output().await;
        for line in progress.diagnostics(self.settings.probe.port, self.settings.probe.mode) {
            msg.push_str("\n  ");
            msg.push_str(&line);
        }
        if self.interactive {
            return; // the user saw the output in the terminal
        }
        let lines = self.tail.lock().map(|t| t.lines()).unwrap_or_default();
        if lines.is_empty() {
            msg.push_str("\n  the server printed nothing");
        } else {
            msg.push_str(&format!(
                "\n  last {} lines of the server's output:",
                lines.len()
            ));
            for l in lines {
                msg.push_str("\n  | ");
                msg.push_str(&crate::untrusted::escape(&l));
            }
        }
    }
}

/// `ready after 3.66s: API 200 status="ok", UI 200 text/html`.
pub fn ready_message(p: &Progress, elapsed: Duration) -> String {
    let mut parts = Vec::new();
    if let Some(a) = &p.api {
        parts.push(format!(
            "API {} {}",
            a.http_status.unwrap_or(0),
            a.health_status
                .as_deref()
                .map(|s| format!("status={s:?}"))
                .unwrap_or_else(|| "ok".into())
        ));
    }
    if let Some(u) = &p.ui {
        parts.push(format!(
            "UI {} {}",
            u.http_status.unwrap_or(0),
            u.content_type.as_deref().unwrap_or("")
        ));
    }
    format!(
        "ready after {:.2}s: {}",
        elapsed.as_secs_f64(),
        parts.join(", ")
    )
}
