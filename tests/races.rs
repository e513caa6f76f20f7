//! Races and kills that break supervisors: many simultaneous starts, the
//! wrapper SIGKILLed at random moments, the server SIGKILLed with
//! grandchildren. Rounds are seeded (the seed is printed) so a failure can
//! be replayed with PAPERCLIPD_TEST_SEED.

mod support;

use std::time::Duration;

use support::*;

/// A small xorshift generator: enough randomness for kill moments without a
/// dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let seed = std::env::var("PAPERCLIPD_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| (wall_now() * 1e6) as u64 ^ std::process::id() as u64);
        eprintln!("PAPERCLIPD_TEST_SEED={seed}");
        Rng(seed | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn starts(w: &World) -> Vec<i32> {
    w.state_file("starts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn a_hundred_simultaneous_runs_ten_rounds_start_exactly_one_server_each() {
    let w = World::new();
    for round in 0..10 {
        let mut n = w.notify_socket(&format!("r{round}"));
        let before = starts(&w).len();
        let (winner, mut runs) = w.race(100, &mut n, &format!("r{round}-"));
        assert_eq!(
            starts(&w).len(),
            before + 1,
            "round {round}: more than one server started"
        );
        signal(winner, libc::SIGTERM);
        for r in runs.iter_mut() {
            r.wait();
        }
        assert_eq!(n.count("READY=1"), 1);
    }
}

#[test]
fn sigkill_of_the_wrapper_at_random_moments_leaves_no_orphan() {
    let w = World::new();
    let mut rng = Rng::seeded();
    for round in 0..20 {
        let mut n = w.notify_socket(&format!("k{round}"));
        let mut cmd = w.run_cmd(&[], &["--listen-after", "0.3", "--api-ok-after", "0.5"]);
        cmd.env("NOTIFY_SOCKET", &n.path);
        let mut r = w.spawn(cmd, &format!("k{round}"));
        // Before the spawn, during readiness, or after ready.
        match rng.below(3) {
            0 => std::thread::sleep(Duration::from_millis(rng.below(15))),
            1 => std::thread::sleep(Duration::from_millis(50 + rng.below(400))),
            _ => {
                n.wait_for("READY=1", DEADLINE);
            }
        }
        signal(r.pid(), libc::SIGKILL);
        r.wait();
        // Every server any round started is gone (parent-death signal).
        wait_until(DEADLINE, "every started server to be gone", || {
            starts(&w).iter().all(|p| !pid_alive(*p))
        });
        // The kernel released the lock: the next run starts and is ready.
        let mut n2 = w.notify_socket(&format!("k{round}-next"));
        let mut cmd = w.run_cmd(&[], &[]);
        cmd.env("NOTIFY_SOCKET", &n2.path);
        let mut next = w.spawn(cmd, &format!("k{round}-next"));
        n2.wait_for("READY=1", DEADLINE);
        signal(next.pid(), libc::SIGTERM);
        assert_eq!(next.code(), 0, "round {round}: {}", next.stderr());
    }
}

#[test]
fn sigkill_of_the_server_with_grandchildren_twenty_rounds_reaps_all() {
    let w = World::new();
    for round in 0..20 {
        let mut n = w.notify_socket(&format!("g{round}"));
        let mut cmd = w.run_cmd(&[], &["--grandchild", "--orphans", "2"]);
        cmd.env("NOTIFY_SOCKET", &n.path);
        let mut r = w.spawn(cmd, &format!("g{round}"));
        n.wait_for("READY=1", DEADLINE);
        let gc: i32 = w
            .state_file("grandchild.pid")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        signal(w.fixture_pid().unwrap() as u32, libc::SIGKILL);
        assert_eq!(r.code(), 137, "round {round}: {}", r.stderr());
        assert!(!pid_alive(gc), "round {round}: grandchild {gc} survived");
    }
}
