//! The crash-loop guard's decisions (pure): terminal codes, the start
//! limit's window, and what a new boot forgets.

use super::*;

const LIMITS: Limits = Limits {
    burst: 5,
    interval: Duration::from_secs(60),
};

#[test]
fn terminal_codes_pause_at_once() {
    for code in TERMINAL_CODES {
        let mut s = GuardState::default();
        match decide(&mut s, code, "instance not set up", 1000.0, LIMITS) {
            Decision::Pause(p) => {
                assert_eq!(p.code, code);
                assert!(p.reason.contains("instance not set up"), "{}", p.reason);
                assert!(p.reason.contains("cannot fix"), "{}", p.reason);
            }
            d => panic!("{code}: {d:?}"),
        }
    }
    let mut s = GuardState::default();
    assert_eq!(decide(&mut s, 0, "", 1000.0, LIMITS), Decision::Exit(0));
    assert!(s.failures.is_empty(), "a clean stop is no failure");
}

#[test]
fn the_fifth_failure_within_the_window_pauses() {
    let mut s = GuardState::default();
    for i in 0..4 {
        let t = 1000.0 + 10.0 * i as f64;
        assert_eq!(decide(&mut s, 1, "x", t, LIMITS), Decision::Exit(1));
    }
    match decide(&mut s, 69, "not ready", 1040.0, LIMITS) {
        Decision::Pause(p) => {
            assert!(
                p.reason.starts_with("5 failed starts within 1m"),
                "{}",
                p.reason
            );
            assert!(p.reason.contains("exit 69: not ready"), "{}", p.reason);
        }
        d => panic!("{d:?}"),
    }
}

/// Issue 20, item 3: a server that crashes 20 s after each start (a
/// launchd run every ~70 s with the 10 s throttle) restarted for ever
/// with 5 in 60 s; the default is now the systemd unit's 5 in 300 s.
#[test]
fn the_default_limits_are_the_systemd_units() {
    let d = Limits {
        burst: DEFAULT_BURST,
        interval: DEFAULT_INTERVAL,
    };
    assert_eq!((d.burst, d.interval.as_secs()), (5, 300));
    let mut s = GuardState::default();
    for i in 0..4 {
        let t = 1000.0 + 30.0 * i as f64;
        assert_eq!(decide(&mut s, 1, "x", t, d), Decision::Exit(1));
    }
    assert!(matches!(
        decide(&mut s, 1, "x", 1120.0, d),
        Decision::Pause(_)
    ));
}

/// Issue 20, item 2: a pause belongs to its boot; at the next boot it
/// is forgotten, and one that recorded no boot is from before this
/// rule and forgotten as well.
#[test]
fn a_pause_of_another_boot_is_forgotten() {
    let pause = |boot: Option<&str>| GuardState {
        paused: Some(Pause {
            since: "x".into(),
            code: 78,
            reason: "r".into(),
            boot: boot.map(str::to_string),
        }),
        ..Default::default()
    };
    assert!(current(pause(Some("b1")), Some("b1")).paused.is_some());
    assert!(current(pause(Some("b1")), Some("b2")).paused.is_none());
    assert!(current(pause(None), Some("b2")).paused.is_none());
    let gone = GuardState {
        waiting: Some(Waiting {
            since: "x".into(),
            pid: i32::MAX,
            holder: None,
        }),
        ..Default::default()
    };
    assert!(current(gone, None).waiting.is_none(), "its process is gone");
}

#[test]
fn failures_outside_the_window_or_in_the_future_are_forgotten() {
    let mut s = GuardState {
        failures: vec![0.0, 10.0, 20.0, 5000.0, f64::NAN],
        ..Default::default()
    };
    assert_eq!(decide(&mut s, 1, "x", 100.0, LIMITS), Decision::Exit(1));
    assert_eq!(s.failures, [100.0]);
    let slow = Limits {
        burst: 2,
        interval: Duration::from_secs(3600),
    };
    assert!(matches!(
        decide(&mut s, 1, "x", 200.0, slow),
        Decision::Pause(_)
    ));
}
