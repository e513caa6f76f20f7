//! Stopping the server in order: the stop signal to the server process
//! itself, a grace period, then SIGKILL for its group; afterwards whatever
//! it left behind (adopted PostgreSQL, agents, the rest of its group) is
//! stopped and reaped. Meanwhile the manager hears that the stop is
//! progressing, but never beyond our own budget for it.

use std::future::Future;
use std::time::Duration;

use crate::deadline::{self, Later};
use crate::notify::{Notifier, NotifyState};
use crate::{log, procfs};

use super::child::{self, ExitKind, Spawned};
use super::signals::Signals;
use super::{EXTEND_BY, EXTEND_EVERY};

/// How long SIGKILLed processes get to be reaped before we give up on them.
pub const KILL_REAP_WAIT: Duration = Duration::from_secs(5);
/// After a requested stop, the leftovers get what the server left of the
/// stop timeout, but at least this.
pub const MIN_LEFTOVER_GRACE: Duration = Duration::from_secs(1);
/// How often a stop that outlives the server looks for its leftovers
/// (without a subreaper they are not our children: no SIGCHLD).
const LEFTOVER_POLL: Duration = Duration::from_millis(50);
/// Once processes outlived SIGKILL: how often we look again, and how often
/// we say which ones are stuck.
const STUCK_POLL: Duration = Duration::from_secs(1);
pub const STUCK_REPORT_EVERY: Duration = Duration::from_secs(60);

/// A graceful stop: `signal` to the server process, then `grace` before
/// SIGKILL for its group.
#[derive(Debug, Clone, Copy)]
pub struct GracefulStop {
    pub signal: i32,
    pub grace: Duration,
}

impl GracefulStop {
    /// Sends the signal to the server process itself (not its group:
    /// Paperclip stops PostgreSQL and its agents in its own order),
    /// forwards further stop signals, and SIGKILLs the group after the
    /// grace period. Returns how the server ended, or `None` if it had to
    /// be killed.
    pub async fn run(&self, server: &Spawned, signals: &mut Signals) -> Option<ExitKind> {
        child::signal(server, self.signal);
        let deadline = deadline::after(self.grace);
        loop {
            if let Some(exit) = child::reap(server.pid) {
                return Some(exit);
            }
            tokio::select! {
                got = signals.child_or_stop() => {
                    if let Some(again) = got {
                        child::signal(server, super::signals::forwarded(again));
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    child::signal_everything(server, libc::SIGKILL);
                    // SIGKILL cannot be ignored; wait for it to take.
                    let hard = deadline::after(KILL_REAP_WAIT);
                    loop {
                        if child::reap(server.pid).is_some() {
                            return None;
                        }
                        tokio::select! {
                            _ = signals.child() => {}
                            _ = tokio::time::sleep_until(hard) => return None,
                        }
                    }
                }
            }
        }
    }
}

/// After the server has exited (or was SIGKILLed): SIGTERM what is left of
/// its group and the processes we adopted, wait up to `grace`, SIGKILL the
/// rest (again and again, as a killed parent's children are adopted next)
/// until nothing is left and the server has ended, then reap the server.
///
/// A process that SIGKILL does not end (an uninterruptible sleep: a dead
/// NFS server, FUSE, a frozen cgroup) is never given up on: the run keeps
/// the instance's lock, says every [`STUCK_REPORT_EVERY`] which pid is
/// stuck and where, and ends only when it is gone, so that neither a new
/// run nor `status` mistakes a half-alive server for a stopped one.
pub async fn cleanup_leftovers(server: &Spawned, signals: &mut Signals, grace: Duration) {
    let ended = child::reap(server.pid).is_some();
    let leftovers = child::leftovers(server);
    if ended && leftovers.is_empty() {
        child::release(server);
        return;
    }
    if !leftovers.is_empty() {
        log::info(&format!(
            "stopping {} process(es) the server left behind: {}",
            leftovers.len(),
            leftovers
                .iter()
                .take(5)
                .map(|p| procfs::describe(*p))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    child::signal_everything(server, libc::SIGTERM);
    let deadline = deadline::after(grace);
    let mut killed = false;
    let mut next_report = deadline.later(KILL_REAP_WAIT);
    let mut reported = false;
    loop {
        let ended = child::reap(server.pid).is_some();
        let left = child::leftovers(server);
        if ended && left.is_empty() {
            break;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            if killed && now >= next_report {
                report_stuck(server, ended, &left);
                reported = true;
                next_report = now.later(STUCK_REPORT_EVERY);
            }
            child::signal_everything(server, libc::SIGKILL);
            killed = true;
        }
        let poll = if reported { STUCK_POLL } else { LEFTOVER_POLL };
        tokio::select! {
            _ = signals.child() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
    if reported {
        log::info("the processes that could not be reaped are gone now");
    }
    child::release(server);
}

/// One warning naming each process that outlived SIGKILL, and why.
fn report_stuck(server: &Spawned, server_ended: bool, left: &[i32]) {
    let mut stuck: Vec<i32> = Vec::new();
    if !server_ended {
        stuck.push(server.pid);
    }
    stuck.extend(left);
    log::warn(&format!(
        "{} process(es) outlived SIGKILL and cannot be reaped yet: {}. A process in state D \
         (uninterruptible sleep: a hung NFS or FUSE mount, a frozen cgroup) dies only once the \
         kernel lets it; paperclipd keeps the instance's lock and waits for it (resolve the \
         cause, e.g. thaw the cgroup or bring back the mount)",
        stuck.len(),
        stuck
            .iter()
            .take(5)
            .map(|p| format!("{} in {}", procfs::describe(*p), procfs::kernel_wait(*p)))
            .collect::<Vec<_>>()
            .join("; ")
    ));
}

/// Runs `work` (a stop) while telling the manager every [`EXTEND_EVERY`]
/// that it is progressing: `EXTEND_TIMEOUT_USEC` up to the end of `budget`
/// at most, so a unit's shorter `TimeoutStopSec=` does not cut a stop that
/// `--stop-timeout` allows, while a hung stop is still caught.
pub async fn extending<T>(
    notifier: &Notifier,
    budget: Duration,
    work: impl Future<Output = T>,
) -> T {
    if !notifier.enabled() {
        return work.await;
    }
    let end = deadline::after(budget);
    let mut ticks = tokio::time::interval(EXTEND_EVERY);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticks.tick() => {
                let left = end.saturating_duration_since(tokio::time::Instant::now());
                if !left.is_zero() {
                    let by = EXTEND_BY.min(left + Duration::from_secs(1));
                    notifier.send(&[NotifyState::ExtendTimeoutUsec(
                        by.as_micros().min(u32::MAX as u128) as u32,
                    )]);
                }
            }
        }
    }
}
