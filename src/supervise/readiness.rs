//! The readiness policy: when does a starting server count as ready?
//!
//! 1. Connect checks (cheap, no HTTP) until the port accepts connections,
//!    backing off while it refuses (10 ms, growing by half to 20 ms): a
//!    server that takes seconds to listen costs half the checks.
//! 2. Once it does, check *who* listens: a listener that /proc attributes
//!    to a process outside our tree means the server is not ours (Paperclip
//!    silently moves to the next port when its port is taken); we give up
//!    rather than report someone else's health.
//! 3. HTTP probes at short intervals (10 → 15 ms, after 5 s of listening
//!    without being ready up to 100 ms) until the API (and in `full` mode
//!    the UI) pass. A round asks first the probe that failed last, and the
//!    other only once that one passes: one request per round while the
//!    server starts, both for the verdict.
//! 4. A `READY=1` from the server (its own notify socket, see
//!    `server_notify`) wakes both probes at once, whatever the interval;
//!    the probes stay the only judge.
//!
//! Outcomes that are not "ready" (timeout, the server exiting) are decided
//! by the caller, which races this future against them.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::server_notify::{Said, next_ready};

use crate::probe::{ProbeResult, Prober};
use crate::procfs;

/// Connect checks while nothing listens: first after this…
pub const CONNECT_INTERVAL_MIN: Duration = Duration::from_millis(10);
/// …growing by half each refusal up to this: no more than the probes'
/// interval, so a server ready the moment it listens is seen as soon.
pub const CONNECT_INTERVAL_MAX: Duration = Duration::from_millis(20);
/// First HTTP re-probe interval once the port listens…
pub const PROBE_INTERVAL_MIN: Duration = Duration::from_millis(10);
/// …growing by half each round up to this while the server is fresh (a
/// real Paperclip goes from listening to "ok" in ~160 ms), which bounds the
/// readiness lag of a server that does not notify…
pub const PROBE_INTERVAL_FAST: Duration = Duration::from_millis(15);
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

/// Which probe a round asks first: the one that failed last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum First {
    Api,
    Ui,
}

/// One round of probes. `both_at_once`: the server said it is ready, so
/// both go out together; otherwise the one that failed last goes first and
/// the other follows only if it passes. Returns the results sent now.
async fn round(
    prober: &Prober,
    first: &mut First,
    both_at_once: bool,
) -> (Option<ProbeResult>, Option<ProbeResult>) {
    if prober.settings.mode == crate::cli::Mode::ApiOnly {
        return (Some(prober.api().await), None);
    }
    if both_at_once {
        let (a, u) = prober.both().await;
        return (Some(a), u);
    }
    match *first {
        First::Api => {
            let a = prober.api().await;
            if !a.ready {
                return (Some(a), None);
            }
            let u = prober.ui().await;
            if !u.ready {
                *first = First::Ui;
            }
            (Some(a), Some(u))
        }
        First::Ui => {
            let u = prober.ui().await;
            if !u.ready {
                return (None, Some(u));
            }
            let a = prober.api().await;
            if !a.ready {
                *first = First::Api;
            }
            (Some(a), Some(u))
        }
    }
}

/// Polls until ready (or until the port turns out to be someone else's);
/// `said` wakes the probes at once when the server notifies `READY=1`.
pub async fn wait_ready(
    prober: &Prober,
    progress: &watch::Sender<Progress>,
    said: Option<watch::Receiver<Said>>,
) -> Outcome {
    let mut w = Waiter {
        prober,
        progress,
        said,
        // Counted from the server's start (`ServerNotify::new_server`): a
        // READY=1 sent before this loop began still counts.
        seen_ready: 0,
        told: false,
        start: Instant::now(),
        interval: PROBE_INTERVAL_MIN,
        connect_interval: CONNECT_INTERVAL_MIN,
        listening: false,
        listening_since: None,
        first: First::Api,
    };
    loop {
        if !w.listening {
            match w.connect().await {
                Connect::Listening => {}
                Connect::Refused => continue,
                Connect::Foreign(who) => return Outcome::Foreign { who },
            }
        }
        if w.probe_round().await {
            return Outcome::Ready {
                elapsed: w.start.elapsed(),
            };
        }
        w.pause().await;
    }
}

/// What one connect check found.
enum Connect {
    Listening,
    Refused,
    Foreign(String),
}

/// The state of one wait for readiness.
struct Waiter<'a> {
    prober: &'a Prober,
    progress: &'a watch::Sender<Progress>,
    said: Option<watch::Receiver<Said>>,
    /// `READY=1`s from the server seen so far.
    seen_ready: u64,
    /// The server said `READY=1`: the next round asks both probes at once.
    told: bool,
    start: Instant,
    interval: Duration,
    connect_interval: Duration,
    listening: bool,
    listening_since: Option<Instant>,
    first: First,
}

impl Waiter<'_> {
    /// One connect check; after a refusal, the pause before the next (cut
    /// short by the server's `READY=1`).
    async fn connect(&mut self) -> Connect {
        match self.prober.listening().await {
            Ok(()) => {
                self.listening = true;
                self.listening_since.get_or_insert_with(Instant::now);
                if let Owner::Foreign(who) = port_owner(self.prober.settings.port) {
                    return Connect::Foreign(who);
                }
                self.progress.send_modify(|p| {
                    p.listening = true;
                    p.connect_error = None;
                });
                Connect::Listening
            }
            Err(e) => {
                self.progress.send_modify(|p| {
                    p.listening = false;
                    p.connect_error = Some(crate::probe::describe_io(&e));
                });
                tokio::select! {
                    _ = tokio::time::sleep(self.connect_interval) => {
                        self.connect_interval = (self.connect_interval * 3 / 2).min(CONNECT_INTERVAL_MAX);
                    }
                    _ = next_ready(self.said.as_mut(), &mut self.seen_ready) => {
                        self.told = true;
                        self.connect_interval = CONNECT_INTERVAL_MIN;
                    }
                }
                Connect::Refused
            }
        }
    }

    /// One round of probes, recorded in the progress; true when ready.
    async fn probe_round(&mut self) -> bool {
        let (api, ui) = round(self.prober, &mut self.first, self.told).await;
        self.told = false;
        let ready = api
            .as_ref()
            .is_some_and(|a| crate::probe::both_ready(a, ui.as_ref()));
        // A refused connection means the listener went away (a restart
        // inside the server): go back to cheap connect checks.
        let refused = |r: &ProbeResult| r.http_status.is_none() && r.detail.contains("connect");
        if !ready && (api.as_ref().is_some_and(refused) || ui.as_ref().is_some_and(refused)) {
            self.listening = false;
            self.connect_interval = CONNECT_INTERVAL_MIN;
        }
        let listening = self.listening;
        self.progress.send_modify(|p| {
            if api.is_some() {
                p.api = api;
            }
            if ui.is_some() {
                p.ui = ui;
            }
            p.listening = listening;
            p.rounds += 1;
        });
        ready
    }

    /// The pause between rounds, growing to the fast (then the slow) cap;
    /// a `READY=1` from the server ends it and starts over from the minimum.
    async fn pause(&mut self) {
        tokio::select! {
            _ = tokio::time::sleep(self.interval) => {
                let long = self.listening_since.is_some_and(|t| t.elapsed() > FAST_PHASE);
                let cap = if long { PROBE_INTERVAL_SLOW } else { PROBE_INTERVAL_FAST };
                self.interval = (self.interval * 3 / 2).min(cap);
            }
            _ = next_ready(self.said.as_mut(), &mut self.seen_ready) => {
                // The server says it is ready: probe now, and keep close
                // while the probes disagree (a UI still loading).
                self.told = true;
                self.interval = PROBE_INTERVAL_MIN;
            }
        }
    }
}
