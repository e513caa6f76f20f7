//! Stopping the server in order: the stop signal to the server process
//! itself, a grace period, then SIGKILL for its group; afterwards whatever
//! it left behind (adopted PostgreSQL, agents) is stopped and reaped.

use std::time::Duration;

use crate::{log, procfs};

use super::child::{self, ExitKind, Spawned};
use super::signals::Signals;

/// How long SIGKILLed processes get to be reaped before we give up on them.
const KILL_REAP_WAIT: Duration = Duration::from_secs(5);

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
        child::signal(server.pid, self.signal);
        let deadline = tokio::time::Instant::now() + self.grace;
        loop {
            if let Some(exit) = child::reap(server.pid) {
                return Some(exit);
            }
            tokio::select! {
                got = signals.child_or_stop() => {
                    if let Some(again) = got {
                        child::signal(server.pid, super::signals::forwarded(again));
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    child::signal_everything(server.pgid, libc::SIGKILL);
                    // SIGKILL cannot be ignored; reap it.
                    let hard = tokio::time::Instant::now() + KILL_REAP_WAIT;
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

/// After the server is gone: SIGTERM what is left of its group and of the
/// processes we adopted, wait up to `grace`, SIGKILL the rest, and reap
/// everything.
pub async fn cleanup_leftovers(server: &Spawned, signals: &mut Signals, grace: Duration) {
    if child::no_children() {
        return;
    }
    let leftovers = child::descendants();
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
    child::signal_everything(server.pgid, libc::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    let mut killed = false;
    loop {
        child::reap(server.pid);
        if child::no_children() {
            return;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            if killed && now >= deadline + KILL_REAP_WAIT {
                log::warn("some processes the server left behind could not be reaped");
                return;
            }
            // Repeat: a killed parent's children are adopted next.
            child::signal_everything(server.pgid, libc::SIGKILL);
            killed = true;
        }
        tokio::select! {
            _ = signals.child() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}
