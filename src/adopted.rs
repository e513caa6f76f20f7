//! Processes a supervisor adopted: orphans re-parented to it (it is a
//! subreaper on Linux) that are not in its server's tree — typically agent
//! processes whose parent died (upstream #7218, #6984: over a hundred of
//! them, tens of GB). Read from /proc only, so `status` learns them
//! without waking the supervisor. Elsewhere (no /proc, no subreaper) the
//! list is empty.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use crate::procfs::{self, ProcInfo};

/// One adopted process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopted {
    pub pid: i32,
    /// With the pid, names the process uniquely (pids are reused).
    pub start_ticks: u64,
    pub rss_bytes: u64,
    /// How long the process has existed (an upper bound of how long it has
    /// been adopted: /proc does not record the moment of adoption).
    pub age: Duration,
}

/// What `status --json` shows under `"adopted"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub rss_bytes: u64,
    /// Age of the oldest, in seconds (0 when there are none).
    pub oldest_secs: u64,
}

pub fn summarize(procs: &[Adopted]) -> Summary {
    Summary {
        count: procs.len(),
        rss_bytes: procs.iter().map(|p| p.rss_bytes).sum(),
        oldest_secs: procs.iter().map(|p| p.age.as_secs()).max().unwrap_or(0),
    }
}

/// The live descendants of `supervisor` outside the tree of `server`
/// (the server itself and everything below it).
pub fn find(supervisor: i32, server: Option<i32>) -> Vec<Adopted> {
    find_in(&procfs::all_processes(), supervisor, server)
}

/// Like [`find`], in a process table already read.
pub fn find_in(procs: &[ProcInfo], supervisor: i32, server: Option<i32>) -> Vec<Adopted> {
    let ids = outside_server_tree(procs, supervisor, server);
    if ids.is_empty() {
        return Vec::new();
    }
    let now_ticks = now_ticks();
    let page = crate::sys::page_size();
    let by_pid: HashMap<i32, &ProcInfo> = procs.iter().map(|p| (p.pid, p)).collect();
    let mut out: Vec<Adopted> = ids
        .into_iter()
        .filter_map(|pid| {
            let p = by_pid.get(&pid)?;
            // A zombie (no memory) is gone but for its reaping.
            if p.zombie {
                return None;
            }
            Some(Adopted {
                pid,
                start_ticks: p.start_ticks,
                // From the scan's own read of `stat`: no second read per
                // process (there may be thousands).
                rss_bytes: p.rss_pages * page,
                age: now_ticks.map_or(Duration::ZERO, |(now, hz)| {
                    Duration::from_secs_f64(now.saturating_sub(p.start_ticks) as f64 / hz as f64)
                }),
            })
        })
        .collect();
    out.sort_by_key(|a| a.pid);
    out
}

/// The pids below `supervisor` that are not `server` or below it, nor its
/// terminal witness or group guard, given a process table (pure:
/// unit-tested).
pub fn outside_server_tree(procs: &[ProcInfo], supervisor: i32, server: Option<i32>) -> Vec<i32> {
    // One pass to index the table; then each process is looked at once
    // (leaks are direct children of the supervisor, by the thousand).
    let mut children: HashMap<i32, Vec<&ProcInfo>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p);
    }
    let own_helper = |p: &ProcInfo| {
        p.ppid == supervisor
            && [crate::sys::WITNESS_COMM, crate::sys::GUARD_COMM].contains(&p.comm.as_str())
    };
    let mut out = Vec::new();
    let mut seen: HashSet<i32> = HashSet::from([supervisor]);
    let mut stack: Vec<&ProcInfo> = children.get(&supervisor).cloned().unwrap_or_default();
    while let Some(p) = stack.pop() {
        if Some(p.pid) == server || own_helper(p) || !seen.insert(p.pid) {
            continue;
        }
        out.push(p.pid);
        if let Some(c) = children.get(&p.pid) {
            stack.extend(c);
        }
    }
    out.sort_unstable();
    out
}

/// Now, in clock ticks after boot, and the tick rate.
#[cfg(target_os = "linux")]
fn now_ticks() -> Option<(u64, u64)> {
    let hz = crate::sys::clock_ticks_per_sec();
    Some(((procfs::uptime_secs()? * hz as f64) as u64, hz))
}

#[cfg(not(target_os = "linux"))]
fn now_ticks() -> Option<(u64, u64)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, ppid: i32) -> ProcInfo {
        ProcInfo {
            pid,
            ppid,
            pgid: pid,
            start_ticks: 0,
            comm: "x".into(),
            zombie: false,
            rss_pages: 1,
        }
    }

    #[test]
    fn the_servers_tree_is_not_adopted() {
        // 10 = supervisor, 11 = server (with child 12), 20 and 30 adopted,
        // 21 a child of an adopted one, 99 unrelated.
        let t = [
            p(10, 1),
            p(11, 10),
            p(12, 11),
            p(20, 10),
            p(21, 20),
            p(30, 10),
            p(99, 1),
        ];
        assert_eq!(outside_server_tree(&t, 10, Some(11)), vec![20, 21, 30]);
        assert_eq!(outside_server_tree(&t, 10, None), vec![11, 12, 20, 21, 30]);
        assert!(outside_server_tree(&t, 99, Some(11)).is_empty());
    }

    #[test]
    fn the_terminal_witness_is_not_adopted_but_a_namesake_below_is() {
        let named = |pid, ppid| ProcInfo {
            comm: crate::sys::WITNESS_COMM.into(),
            ..p(pid, ppid)
        };
        // 13: the witness (our child); 21: a process below an adopted one
        // that took the same name.
        let t = [p(10, 1), p(11, 10), named(13, 10), p(20, 10), named(21, 20)];
        assert_eq!(outside_server_tree(&t, 10, Some(11)), vec![20, 21]);
    }

    /// Leaks pile up as direct children of the supervisor (upstream
    /// #7218: over a hundred; here 40,000). Telling its own helpers from
    /// them must not look through every child for each child: that took
    /// seconds here, where one pass takes milliseconds.
    #[test]
    fn many_adopted_children_are_sorted_out_in_one_pass() {
        let n = 40_000;
        let mut t = vec![p(10, 1), p(11, 10)];
        t.extend((0..n).map(|i| p(100 + i, 10)));
        let started = std::time::Instant::now();
        let found = outside_server_tree(&t, 10, Some(11));
        let took = started.elapsed();
        assert_eq!(found.len(), n as usize);
        assert!(
            took < Duration::from_secs(1),
            "{n} adopted children took {took:?}"
        );
    }

    #[test]
    fn summary() {
        let a = |pid, rss, secs| Adopted {
            pid,
            start_ticks: 0,
            rss_bytes: rss,
            age: Duration::from_secs(secs),
        };
        let s = summarize(&[a(1, 100, 5), a(2, 50, 70)]);
        assert_eq!(
            s,
            Summary {
                count: 2,
                rss_bytes: 150,
                oldest_secs: 70
            }
        );
        assert_eq!(summarize(&[]), Summary::default());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_real_child_outside_the_server_tree_is_found() {
        let me = std::process::id() as i32;
        let mut c = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let found = find(me, None);
        let _ = c.kill();
        let _ = c.wait();
        let mine = found
            .iter()
            .find(|a| a.pid == c.id() as i32)
            .expect("the child");
        assert!(mine.rss_bytes > 0);
        assert!(mine.age < Duration::from_secs(30));
        assert!(
            find(me, Some(c.id() as i32))
                .iter()
                .all(|a| a.pid != c.id() as i32)
        );
    }
}
