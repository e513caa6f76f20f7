//! The readiness policy: when does a starting server count as ready?
//!
//! 1. Connect checks (cheap, no HTTP) until the port accepts connections.
//! 2. Once it does, check *who* listens: a listener that /proc attributes
//!    to a process outside our tree means the server is not ours (Paperclip
//!    silently moves to the next port when its port is taken); we give up
//!    rather than report someone else's health.
//! 3. HTTP probes at short, slowly growing intervals (10 → 20 ms, after
//!    5 s of listening without being ready up to 100 ms) until the API (and in
//!    `full` mode the UI) pass.
//!
//! Outcomes that are not "ready" (timeout, the server exiting) are decided
//! by the caller, which races this future against them.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::probe::{ProbeResult, Prober};
use crate::procfs;

/// Connect checks while nothing listens: cheap, so frequent.
pub const CONNECT_INTERVAL: Duration = Duration::from_millis(10);
/// First HTTP re-probe interval once the port listens…
pub const PROBE_INTERVAL_MIN: Duration = Duration::from_millis(10);
/// …growing by half each round up to this while the server is fresh (a
/// real Paperclip goes from listening to "ok" in ~160 ms), which bounds the
/// readiness lag…
pub const PROBE_INTERVAL_FAST: Duration = Duration::from_millis(20);
/// …and, for a server that has listened this long without becoming
/// ready (a long recovery), up to the slow cap: a few requests a second.
pub const FAST_PHASE: Duration = Duration::from_secs(5);
pub const PROBE_INTERVAL_SLOW: Duration = Duration::from_millis(100);

/// What the probes have seen so far, for progress and diagnostics.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub listening: bool,
    /// Why the last connect check failed.
    pub connect_error: Option<String>,
    pub api: Option<ProbeResult>,
    pub ui: Option<ProbeResult>,
    pub rounds: u64,
}

impl Progress {
    /// One line: what we are waiting for now.
    pub fn summary(&self, port: u16) -> String {
        if !self.listening && self.api.is_none() {
            return match &self.connect_error {
                Some(e) => format!("waiting for port {port} to accept connections ({e})"),
                None => format!("waiting for port {port} to accept connections"),
            };
        }
        if self.api.is_none() {
            return format!("port {port} accepts connections; probing");
        }
        let mut parts = Vec::new();
        if !self.listening {
            parts.push(format!("port {port} stopped accepting connections"));
        }
        if let Some(a) = &self.api {
            parts.push(short("API", a));
        }
        if let Some(u) = &self.ui {
            parts.push(short("UI", u));
        }
        parts.join("; ")
    }

    /// The last result of each probe, for an error message.
    pub fn diagnostics(&self, port: u16, mode: crate::cli::Mode) -> Vec<String> {
        let mut out = Vec::new();
        if self.api.is_none() {
            out.push(format!(
                "port {port} never accepted a connection{}",
                self.connect_error
                    .as_ref()
                    .map(|e| format!(" (last: {e})"))
                    .unwrap_or_default()
            ));
            return out;
        }
        if let Some(a) = &self.api {
            out.push(format!("last {a}"));
        }
        match (&self.ui, mode) {
            (Some(u), _) => out.push(format!("last {u}")),
            (None, crate::cli::Mode::Full) => out.push("UI probe: not reached".into()),
            (None, crate::cli::Mode::ApiOnly) => {}
        }
        out
    }
}

fn short(name: &str, r: &ProbeResult) -> String {
    let verdict = if r.ready { "ok" } else { "not ready" };
    match (r.http_status, &r.health_status, &r.content_type) {
        (Some(c), Some(s), _) => format!("{name} {c} status={s:?} {verdict}"),
        (Some(c), None, Some(ct)) => format!("{name} {c} {ct} {verdict}"),
        (Some(c), None, None) => format!("{name} {c} {verdict}"),
        (None, _, _) => format!("{name} {}", r.detail),
    }
}

#[derive(Debug)]
pub enum Outcome {
    Ready {
        elapsed: Duration,
    },
    /// The port is held by someone outside our tree (described in words).
    Foreign {
        who: String,
    },
}

/// Who holds the listening socket on `port`.
#[derive(Debug, PartialEq, Eq)]
pub enum Owner {
    Ours,
    /// Outside our tree: these processes, or (when their descriptors
    /// cannot be read) a socket the kernel says belongs to another user.
    Foreign(String),
    /// /proc cannot tell (no /proc, another network namespace), or a
    /// process of our own user hides its descriptors.
    Unknown,
}

/// Looks for the listener among our descendants first (cheap, the usual
/// case), then among every process we may inspect. A listener nobody can
/// attribute is foreign when the kernel says another user owns it: its
/// descriptors are unreadable to us (another uid, `ProtectProc=invisible`),
/// and our server runs as our user, so failing open would report someone
/// else's health as ours.
pub fn port_owner(port: u16) -> Owner {
    let inodes = procfs::listening_inodes(port);
    if inodes.is_empty() {
        return Owner::Unknown;
    }
    let ours = super::child::descendants();
    if !procfs::socket_owners_among(&inodes, ours.iter().copied()).is_empty() {
        return Owner::Ours;
    }
    let all = procfs::socket_owners(&inodes);
    if !all.is_empty() {
        return Owner::Foreign(procfs::describe_all(&all));
    }
    let me = crate::sys::euid();
    let others: Vec<u32> = procfs::listening_uids(port)
        .into_iter()
        .filter(|u| *u != me)
        .collect();
    if others.is_empty() {
        Owner::Unknown
    } else {
        Owner::Foreign(procfs::describe_uninspectable(&others, port))
    }
}

/// Polls until ready (or until the port turns out to be someone else's).
pub async fn wait_ready(prober: &Prober, progress: &watch::Sender<Progress>) -> Outcome {
    let start = Instant::now();
    let port = prober.settings.port;
    let mut interval = PROBE_INTERVAL_MIN;
    let mut listening = false;
    let mut listening_since: Option<std::time::Instant> = None;
    loop {
        if !listening {
            match prober.listening().await {
                Ok(()) => {
                    listening = true;
                    listening_since.get_or_insert_with(std::time::Instant::now);
                    if let Owner::Foreign(who) = port_owner(port) {
                        return Outcome::Foreign { who };
                    }
                    progress.send_modify(|p| {
                        p.listening = true;
                        p.connect_error = None;
                    });
                }
                Err(e) => {
                    progress.send_modify(|p| {
                        p.listening = false;
                        p.connect_error = Some(crate::probe::describe_io(&e));
                    });
                    tokio::time::sleep(CONNECT_INTERVAL).await;
                    continue;
                }
            }
        }
        let (api, ui) = prober.both().await;
        let ready = crate::probe::both_ready(&api, ui.as_ref());
        // A refused connection means the listener went away (a restart
        // inside the server): go back to cheap connect checks.
        let refused = |r: &ProbeResult| r.http_status.is_none() && r.detail.contains("connect");
        if !ready && (refused(&api) || ui.as_ref().is_some_and(refused)) {
            listening = false;
        }
        progress.send_modify(|p| {
            p.api = Some(api);
            p.ui = ui;
            p.listening = listening;
            p.rounds += 1;
        });
        if ready {
            return Outcome::Ready {
                elapsed: start.elapsed(),
            };
        }
        tokio::time::sleep(interval).await;
        let cap = if listening_since.is_some_and(|t| t.elapsed() > FAST_PHASE) {
            PROBE_INTERVAL_SLOW
        } else {
            PROBE_INTERVAL_FAST
        };
        interval = (interval * 3 / 2).min(cap);
    }
}
