//! After ready: feed systemd's watchdog only while the API probe passes,
//! so a hung server is restarted.

use std::time::Duration;

use crate::log;
use crate::notify::{Notifier, NotifyState};
use crate::probe::{self, Prober};

/// The systemd watchdog period, when it is meant for us.
pub fn period() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// Probes the API every third of the watchdog period and sends
/// `WATCHDOG=1` only after a passing probe. Runs until dropped.
pub async fn feed(prober: &Prober, notifier: &Notifier, period: Duration) {
    let every = period / 3;
    let wd_prober = Prober::new(
        prober.settings.clone(),
        every.clamp(Duration::from_millis(50), probe::REQUEST_TIMEOUT),
    )
    .unwrap_or_else(|_| prober.clone());
    let mut failing = false;
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
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
