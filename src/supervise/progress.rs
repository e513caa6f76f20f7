//! What a starting server looks like from outside: our progress display
//! (one live line, a line per change, or milestones only when the server
//! shares the terminal), the manager's `STATUS=`, and the ready moment.

use std::time::{Duration, Instant};

use crate::lock::InstanceLock;
use crate::log;
use crate::notify::{Notifier, NotifyState};

use super::outcome;
use super::readiness::Progress;

/// How the starting phase shows progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Display {
    /// The server shares the terminal: a few whole lines (milestones),
    /// never a line it could write into.
    Milestones,
    /// We own the output and stderr is a terminal: one live line.
    Line,
    /// A log (journal, file): a line whenever the summary changes.
    Changes,
}

/// The starting phase's display, dropped at ready.
pub struct StartingView {
    started: Instant,
    shown_summary: String,
    sent_status: String,
    display: Display,
    /// The listening milestone was shown.
    listened: bool,
}

impl StartingView {
    /// `shares_terminal`: the server writes to our terminal itself.
    pub fn new(started: Instant, shares_terminal: bool) -> Self {
        StartingView {
            started,
            shown_summary: String::new(),
            sent_status: String::new(),
            display: if shares_terminal {
                Display::Milestones
            } else if log::live_line_possible() {
                Display::Line
            } else {
                Display::Changes
            },
            listened: false,
        }
    }

    /// Refreshes the progress display and the manager's `STATUS=`.
    pub fn show(&mut self, p: &Progress, port: u16, notifier: &Notifier) {
        let summary = p.summary(port);
        let elapsed = self.started.elapsed().as_secs_f64();
        match self.display {
            Display::Line => {
                log::show_progress_line(&format!("paperclipd: starting ({elapsed:.1}s): {summary}"))
            }
            Display::Changes if summary != self.shown_summary => {
                log::info(&format!("starting ({elapsed:.1}s): {summary}"))
            }
            Display::Milestones if p.listening && !self.listened => {
                self.listened = true;
                log::info(&format!(
                    "port {port} accepts connections ({elapsed:.1}s); waiting for the probes to pass"
                ));
            }
            _ => {}
        }
        self.shown_summary = summary.clone();
        if summary != self.sent_status {
            notifier.status(&format!("starting: {summary}"));
            self.sent_status = summary;
        }
    }
}

/// `READY=1` once, the ready line, and the lock record's ready time.
/// `server_says`: the server's own `STATUS=` (escaped), quoted in ours.
pub fn became_ready(
    notifier: &Notifier,
    lock: &mut InstanceLock,
    p: &Progress,
    elapsed: Duration,
    view: Option<StartingView>,
    server_says: Option<&str>,
) {
    let mut msg = outcome::ready_message(p, elapsed);
    if let Some(text) = server_says {
        msg.push_str(&format!("; the server says: {text}"));
    }
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
pub fn clear_view(view: Option<&StartingView>) {
    if view.is_some_and(|v| v.display == Display::Line) {
        log::clear_progress();
    }
}
