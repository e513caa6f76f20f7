//! After ready: feed systemd's watchdog only while the API probe passes,
//! so a hung server is restarted — but a server that said `STOPPING=1` is
//! not hung: it is fed without probing for as long as its stop may take.

use std::rc::Rc;
use std::time::Duration;

use tokio::sync::watch;

use crate::log;
use crate::notify::{Notifier, NotifyState};
use crate::probe::{self, Prober};

use super::server_notify::Said;

/// The systemd watchdog period, when it is meant for us.
pub fn period() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// What feeding needs besides the prober.
pub struct Feeder {
    notifier: Rc<Notifier>,
    period: Duration,
    /// What the server said (its own notify socket), if it has one.
    said: Option<watch::Receiver<Said>>,
    /// How long a stopping server is fed without a passing probe: the
    /// stop budget. A server stopping for longer is hung after all.
    stop_budget: Duration,
}

impl Feeder {
    pub fn new(
        notifier: Rc<Notifier>,
        period: Duration,
        said: Option<watch::Receiver<Said>>,
        stop_budget: Duration,
    ) -> Self {
        Feeder {
            notifier,
            period,
            said,
            stop_budget,
        }
    }

    /// Is the server within the stop it announced?
    fn stopping(&self) -> bool {
        self.said.as_ref().is_some_and(|s| {
            s.borrow()
                .stopping_since
                .is_some_and(|t| t.elapsed() <= self.stop_budget)
        })
    }

    /// Probes the API every third of the watchdog period and sends
    /// `WATCHDOG=1` only after a passing probe, or while the server stops
    /// within its budget. Runs until dropped.
    pub async fn feed(&self, prober: &Prober) {
        let every = self.period / 3;
        let wd_prober = Prober::new(
            prober.settings.clone(),
            every.clamp(Duration::from_millis(50), probe::REQUEST_TIMEOUT),
        )
        .unwrap_or_else(|_| prober.clone());
        let notifier = &self.notifier;
        let mut failing = false;
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            if self.stopping() {
                notifier.send(&[NotifyState::Watchdog]);
                continue;
            }
            let r = wd_prober.api().await;
            if r.ready {
                notifier.send(&[NotifyState::Watchdog]);
                if failing {
                    notifier.status("ready (API probe passing again)");
                    log::info("watchdog: the API probe passes again");
                    failing = false;
                }
            } else {
                let msg = format!("watchdog: API probe failing, not feeding the watchdog: {r}");
                notifier.status(&msg);
                if !failing {
                    log::warn(&msg);
                }
                failing = true;
            }
        }
    }
}
