//! `run`'s watch over the processes it adopted ([`crate::adopted`]): one
//! log line when there are more than 10 of them or they use more than
//! 1 GiB (and one when they fall back below), and, with
//! `--reap-adopted-after DUR`, SIGTERM for each once adopted that long and
//! SIGKILL 10 s later.
//!
//! Adoption raises no signal, so this scans /proc: every 5 minutes while
//! idle (leaks pile up over hours, and each scan costs a few wake-ups: tokio's
//! timer wheel wakes on its way to a long deadline), or every quarter of
//! the reap delay when that is shorter (at most 4 a second). How long a
//! process has been adopted is counted from the scan that first saw it.
//! The agent runs a reload carried over to the new server are its runs,
//! not leaks: they are neither counted nor reaped.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::adopted::{self, Adopted};
use crate::deadline::Later;
use crate::hot_restart;
use crate::instance::Instance;
use crate::size::format_size;
use crate::{log, procfs, sys};

/// How often /proc is scanned when nothing is to be reaped sooner.
pub const CHECK_EVERY: Duration = Duration::from_secs(300);
const MIN_CHECK_EVERY: Duration = Duration::from_millis(250);
/// More adopted processes than this, or more memory, is worth a line.
pub const MAX_COUNT: usize = 10;
pub const MAX_RSS: u64 = 1 << 30;
/// SIGTERM, then this long before SIGKILL.
pub const KILL_AFTER: Duration = Duration::from_secs(10);

/// Runs forever (the caller drops it when the run ends). Does nothing
/// where there is no subreaper (not Linux).
pub async fn watch(server: i32, reap_after: Option<Duration>, instance: Instance) {
    if !cfg!(target_os = "linux") {
        return std::future::pending().await;
    }
    let mut w = Watch::new(server, reap_after);
    w.instance = Some(instance);
    let mut next = Instant::now().later(w.period());
    loop {
        tokio::time::sleep_until(next).await;
        next = w.scan(Instant::now());
    }
}

/// Where one adopted process is on its way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tracked {
    /// First seen adopted at this moment.
    Adopted { since: Instant },
    /// Sent SIGTERM at this moment.
    Termed { at: Instant },
    /// Sent SIGKILL; nothing more to do but reap it.
    Killed,
}

struct Watch {
    me: i32,
    server: i32,
    reap_after: Option<Duration>,
    /// Whose reload state names the runs carried over.
    instance: Option<Instance>,
    /// Keyed by (pid, start time): a reused pid is another process.
    tracked: HashMap<(i32, u64), Tracked>,
    /// The last scan was over a threshold.
    over: bool,
}

impl Watch {
    fn new(server: i32, reap_after: Option<Duration>) -> Self {
        Watch {
            me: sys::pid(),
            server,
            reap_after,
            instance: None,
            tracked: HashMap::new(),
            over: false,
        }
    }

    fn period(&self) -> Duration {
        self.reap_after
            .map_or(CHECK_EVERY, |d| (d / 4).clamp(MIN_CHECK_EVERY, CHECK_EVERY))
    }

    /// One scan: track, report, reap. Returns when the next one is due.
    fn scan(&mut self, now: Instant) -> Instant {
        let mut procs = adopted::find(self.me, Some(self.server));
        if let Some(instance) = &self.instance {
            hot_restart::spare_carried_over(instance, self.me, &mut procs);
        }
        self.track(&procs, now);
        self.report(&procs);
        let mut next = now.later(self.period());
        if let Some(after) = self.reap_after {
            if let Some(due) = self.reap(now, after) {
                next = next.min(due.max(now.later(Duration::from_millis(50))));
            }
        }
        next
    }

    /// Follows what this scan found: new processes are adopted now, gone
    /// ones are forgotten.
    fn track(&mut self, procs: &[Adopted], now: Instant) {
        let found: HashSet<(i32, u64)> = procs.iter().map(|p| (p.pid, p.start_ticks)).collect();
        self.tracked.retain(|k, _| found.contains(k));
        for p in procs {
            self.tracked
                .entry((p.pid, p.start_ticks))
                .or_insert(Tracked::Adopted { since: now });
        }
    }

    /// One line when a threshold is crossed, one when back below.
    fn report(&mut self, procs: &[Adopted]) {
        let s = adopted::summarize(procs);
        let over = s.count > MAX_COUNT || s.rss_bytes > MAX_RSS;
        if over && !self.over {
            let sample: Vec<String> = procs
                .iter()
                .take(3)
                .map(|p| procfs::describe(p.pid))
                .collect();
            log::warn(&format!(
                "{} adopted processes outside the server's tree (orphans, such as leaked agents) use {} \
                 (thresholds: more than {MAX_COUNT} processes or {}); the oldest is {}s old: {}{}. \
                 `paperclipd status` counts them; --reap-adopted-after DUR stops them",
                s.count,
                format_size(s.rss_bytes),
                format_size(MAX_RSS),
                s.oldest_secs,
                sample.join(", "),
                if s.count > sample.len() {
                    format!(" and {} more", s.count - sample.len())
                } else {
                    String::new()
                }
            ));
        } else if !over && self.over {
            log::info(&format!(
                "adopted processes back below the thresholds: {} using {}",
                s.count,
                format_size(s.rss_bytes)
            ));
        }
        self.over = over;
    }

    /// SIGTERM for each process adopted `after` ago, SIGKILL for each
    /// that outlived its SIGTERM by [`KILL_AFTER`]. Returns the next
    /// moment something falls due.
    fn reap(&mut self, now: Instant, after: Duration) -> Option<Instant> {
        let (mut termed, mut killed) = (Vec::new(), Vec::new());
        for ((pid, start), t) in self.tracked.iter_mut() {
            let (sig, next) = match *t {
                Tracked::Adopted { since } if now >= since.later(after) => {
                    (libc::SIGTERM, Tracked::Termed { at: now })
                }
                Tracked::Termed { at } if now >= at.later(KILL_AFTER) => {
                    (libc::SIGKILL, Tracked::Killed)
                }
                _ => continue,
            };
            // The pid must still name the process we tracked (read only
            // for those due: the scan read every one already).
            if procfs::proc_info(*pid).map(|p| p.start_ticks) != Some(*start) {
                continue;
            }
            let list = if sig == libc::SIGTERM {
                &mut termed
            } else {
                &mut killed
            };
            list.push(procfs::describe(*pid));
            let _ = sys::kill(*pid, sig);
            *t = next;
        }
        let after_text = humantime::format_duration(after);
        if !termed.is_empty() {
            log::info(&format!(
                "stopping {} process(es) adopted more than {after_text} ago (--reap-adopted-after) with SIGTERM: {}",
                termed.len(),
                termed.join(", ")
            ));
        }
        if !killed.is_empty() {
            log::warn(&format!(
                "{} adopted process(es) still alive {}s after SIGTERM; sent SIGKILL: {}",
                killed.len(),
                KILL_AFTER.as_secs(),
                killed.join(", ")
            ));
        }
        self.tracked
            .values()
            .filter_map(|t| match *t {
                Tracked::Adopted { since } => Some(since.later(after)),
                Tracked::Termed { at } => Some(at.later(KILL_AFTER)),
                Tracked::Killed => None,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adopted(pid: i32) -> Adopted {
        Adopted {
            pid,
            start_ticks: pid as u64 * 7,
            rss_bytes: 0,
            age: Duration::ZERO,
        }
    }

    /// With `--reap-adopted-after 1s` a scan runs 4 times a second: with
    /// thousands adopted, following them must not compare each tracked
    /// process with each found one (that took seconds per scan here).
    #[test]
    fn following_many_adopted_processes_takes_one_pass() {
        let n = 40_000;
        let mut w = Watch::new(1, Some(Duration::from_secs(1)));
        let procs: Vec<Adopted> = (0..n).map(|i| adopted(100 + i)).collect();
        let t0 = Instant::now();
        w.track(&procs, t0);
        // The next scan: half are gone, as many new ones came.
        let next: Vec<Adopted> = (n / 2..n + n / 2).map(|i| adopted(100 + i)).collect();
        let started = std::time::Instant::now();
        w.track(&next, t0 + Duration::from_millis(250));
        let took = started.elapsed();
        assert_eq!(w.tracked.len(), n as usize);
        assert_eq!(
            w.tracked.get(&(100 + n / 2, (100 + n / 2) as u64 * 7)),
            Some(&Tracked::Adopted { since: t0 }),
            "one seen before keeps its first sighting"
        );
        assert_eq!(
            w.tracked.get(&(100 + n, (100 + n) as u64 * 7)),
            Some(&Tracked::Adopted {
                since: t0 + Duration::from_millis(250)
            })
        );
        assert!(
            took < Duration::from_secs(1),
            "following {n} adopted processes took {took:?}"
        );
    }

    #[test]
    fn the_period_follows_the_reap_delay() {
        assert_eq!(Watch::new(1, None).period(), CHECK_EVERY);
        let w = Watch::new(1, Some(Duration::from_secs(2)));
        assert_eq!(w.period(), Duration::from_millis(500));
        let w = Watch::new(1, Some(Duration::from_secs(3600)));
        assert_eq!(w.period(), CHECK_EVERY);
        let w = Watch::new(1, Some(Duration::from_secs(600)));
        assert_eq!(w.period(), Duration::from_secs(150));
        let w = Watch::new(1, Some(Duration::from_secs(1)));
        assert_eq!(w.period(), MIN_CHECK_EVERY);
    }
}
