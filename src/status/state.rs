//! The status decision: what every source says ([`Facts`]) → one
//! [`State`] and why. Pure, so it is unit-tested as a table.

use serde::Serialize;

/// The instance's state, as `status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Both probes pass, and the server is ours.
    Ready,
    /// Ours, not ready yet.
    Starting,
    /// Ours, was ready, probes fail now.
    Degraded,
    /// Nothing runs.
    Stopped,
    /// Nothing runs, and launchd will not start it: the crash-loop guard
    /// paused it (see `launchd::guard`) until `paperclipd start`.
    Paused,
    /// Two servers, or a stranger: something else answers for the instance.
    Conflict,
    /// Ours, replacing its server in place (`paperclipd reload`).
    Reloading,
    /// Ours, and its server is stopping (it said `STOPPING=1`, or
    /// paperclipd is stopping it).
    Stopping,
}

impl State {
    /// `status`'s exit code: 0 ready, 3 stopped, 1 anything else.
    pub fn exit_code(self) -> u8 {
        match self {
            State::Ready => 0,
            State::Stopped | State::Paused => 3,
            State::Starting
            | State::Degraded
            | State::Conflict
            | State::Reloading
            | State::Stopping => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Ready => "ready",
            State::Starting => "starting",
            State::Degraded => "degraded",
            State::Stopped => "stopped",
            State::Paused => "paused",
            State::Conflict => "conflict",
            State::Reloading => "reloading",
            State::Stopping => "stopping",
        }
    }
}

/// What the service manager says of our unit (or job).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitFact {
    /// Not installed, or the manager could not be asked.
    Unknown,
    Inactive,
    Activating,
    Active {
        main_pid: u32,
    },
    /// Reloading or deactivating: a server may still run.
    Changing,
}

impl UnitFact {
    pub fn from_active_state(state: &str, main_pid: u32) -> Self {
        match state {
            "active" => UnitFact::Active { main_pid },
            "activating" => UnitFact::Activating,
            "reloading" | "deactivating" => UnitFact::Changing,
            _ => UnitFact::Inactive,
        }
    }

    fn running(self) -> bool {
        matches!(
            self,
            UnitFact::Active { .. } | UnitFact::Activating | UnitFact::Changing
        )
    }
}

/// Everything `status` learned, reduced to what the decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// Somebody holds the instance lock.
    pub locked: bool,
    /// The holder's pid, when known.
    pub holder_pid: Option<i32>,
    /// The holder's record says the server became ready.
    pub ever_ready: bool,
    pub unit: UnitFact,
    /// Upstream's own service for the instance runs.
    pub upstream_running: bool,
    /// The instance's port accepts connections.
    pub listening: bool,
    /// The port's owner is outside the lock holder's tree.
    pub owners_foreign: bool,
    /// Nobody holds the lock, but the last holder died without clearing
    /// its record, and its port (the one probed) still accepts connections.
    pub left_behind: bool,
    /// Both probes pass.
    pub probes_ready: bool,
    /// The crash-loop guard paused the instance.
    pub paused: bool,
    /// The holder's record says its server is stopping.
    pub stopping: bool,
}

/// Why the state is what it is (worded by the caller, which knows names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    UpstreamToo,
    /// The unit's main pid is not the lock holder.
    PidMismatch {
        unit_pid: u32,
        holder_pid: i32,
    },
    /// Nothing of ours runs, yet something listens.
    Stranger,
    /// The last holder was killed; its port still accepts connections.
    LeftBehind,
    OnlyUpstream,
    NothingRuns,
    Paused,
    ForeignOwner,
    /// Worded by the caller, which has the record's detail.
    Stopping,
    ProbesPass,
    NotReadyYet,
    FailingAfterReady,
    UnitWithoutLock,
}

/// The decision.
pub fn decide(f: &Facts) -> (State, Why) {
    let ours_running = f.locked || f.unit.running();
    if f.upstream_running && ours_running {
        return (State::Conflict, Why::UpstreamToo);
    }
    if let (UnitFact::Active { main_pid }, Some(h)) = (f.unit, f.holder_pid) {
        if main_pid != 0 && main_pid as i32 != h {
            return (
                State::Conflict,
                Why::PidMismatch {
                    unit_pid: main_pid,
                    holder_pid: h,
                },
            );
        }
        return classify(f, false);
    }
    if !ours_running {
        return if f.listening && f.left_behind {
            (State::Conflict, Why::LeftBehind)
        } else if f.listening {
            (State::Conflict, Why::Stranger)
        } else if f.upstream_running {
            (State::Conflict, Why::OnlyUpstream)
        } else if f.paused {
            (State::Paused, Why::Paused)
        } else {
            (State::Stopped, Why::NothingRuns)
        };
    }
    classify(f, f.unit == UnitFact::Activating || !f.ever_ready)
}

fn classify(f: &Facts, starting: bool) -> (State, Why) {
    if f.owners_foreign {
        (State::Conflict, Why::ForeignOwner)
    } else if f.stopping && f.locked {
        (State::Stopping, Why::Stopping)
    } else if f.probes_ready {
        (State::Ready, Why::ProbesPass)
    } else if starting {
        (State::Starting, Why::NotReadyYet)
    } else if f.locked {
        (State::Degraded, Why::FailingAfterReady)
    } else {
        (State::Starting, Why::UnitWithoutLock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTHING: Facts = Facts {
        locked: false,
        holder_pid: None,
        ever_ready: false,
        unit: UnitFact::Unknown,
        upstream_running: false,
        listening: false,
        owners_foreign: false,
        left_behind: false,
        probes_ready: false,
        paused: false,
        stopping: false,
    };
    const RUNNING: Facts = Facts {
        locked: true,
        holder_pid: Some(10),
        ever_ready: true,
        listening: true,
        probes_ready: true,
        ..NOTHING
    };

    #[test]
    fn decision_table() {
        let active10 = UnitFact::Active { main_pid: 10 };
        let cases: &[(&str, Facts, State, Why)] = &[
            ("nothing", NOTHING, State::Stopped, Why::NothingRuns),
            (
                "a stranger on the port",
                Facts {
                    listening: true,
                    ..NOTHING
                },
                State::Conflict,
                Why::Stranger,
            ),
            (
                "a server left behind by a killed holder",
                Facts {
                    listening: true,
                    left_behind: true,
                    ..NOTHING
                },
                State::Conflict,
                Why::LeftBehind,
            ),
            (
                "only upstream",
                Facts {
                    upstream_running: true,
                    ..NOTHING
                },
                State::Conflict,
                Why::OnlyUpstream,
            ),
            (
                "upstream beside ours",
                Facts {
                    upstream_running: true,
                    ..RUNNING
                },
                State::Conflict,
                Why::UpstreamToo,
            ),
            ("foreground, ready", RUNNING, State::Ready, Why::ProbesPass),
            (
                "foreground, never ready",
                Facts {
                    ever_ready: false,
                    probes_ready: false,
                    ..RUNNING
                },
                State::Starting,
                Why::NotReadyYet,
            ),
            (
                "foreground, failing after ready",
                Facts {
                    probes_ready: false,
                    ..RUNNING
                },
                State::Degraded,
                Why::FailingAfterReady,
            ),
            (
                "unit active, same pid, ready",
                Facts {
                    unit: active10,
                    ..RUNNING
                },
                State::Ready,
                Why::ProbesPass,
            ),
            (
                "unit active, failing: degraded even if never ready",
                Facts {
                    unit: active10,
                    ever_ready: false,
                    probes_ready: false,
                    ..RUNNING
                },
                State::Degraded,
                Why::FailingAfterReady,
            ),
            (
                "unit's pid is not the holder",
                Facts {
                    unit: UnitFact::Active { main_pid: 11 },
                    ..RUNNING
                },
                State::Conflict,
                Why::PidMismatch {
                    unit_pid: 11,
                    holder_pid: 10,
                },
            ),
            (
                "unit activating, no lock yet",
                Facts {
                    unit: UnitFact::Activating,
                    ..NOTHING
                },
                State::Starting,
                Why::NotReadyYet,
            ),
            (
                "unit active without a lock holder",
                Facts {
                    unit: active10,
                    ever_ready: true,
                    ..NOTHING
                },
                State::Starting,
                Why::UnitWithoutLock,
            ),
            (
                "the server said it is stopping, its probes still pass",
                Facts {
                    stopping: true,
                    ..RUNNING
                },
                State::Stopping,
                Why::Stopping,
            ),
            (
                "a stopping server of a unit",
                Facts {
                    unit: active10,
                    stopping: true,
                    probes_ready: false,
                    ..RUNNING
                },
                State::Stopping,
                Why::Stopping,
            ),
            (
                "a stopping server whose port is another's",
                Facts {
                    stopping: true,
                    owners_foreign: true,
                    ..RUNNING
                },
                State::Conflict,
                Why::ForeignOwner,
            ),
            (
                "the port's owner is not ours",
                Facts {
                    owners_foreign: true,
                    ..RUNNING
                },
                State::Conflict,
                Why::ForeignOwner,
            ),
        ];
        for (name, facts, state, why) in cases {
            assert_eq!(decide(facts), (*state, *why), "{name}");
        }
    }

    #[test]
    fn a_pause_shows_only_while_nothing_runs() {
        let paused = Facts {
            paused: true,
            ..NOTHING
        };
        assert_eq!(decide(&paused), (State::Paused, Why::Paused));
        // A hand-started run beside the paused job: the run counts.
        let running = Facts {
            paused: true,
            ..RUNNING
        };
        assert_eq!(decide(&running), (State::Ready, Why::ProbesPass));
        let stranger = Facts {
            listening: true,
            ..paused
        };
        assert_eq!(decide(&stranger), (State::Conflict, Why::Stranger));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(State::Ready.exit_code(), 0);
        assert_eq!(State::Stopped.exit_code(), 3);
        assert_eq!(State::Paused.exit_code(), 3);
        for s in [
            State::Starting,
            State::Degraded,
            State::Conflict,
            State::Reloading,
            State::Stopping,
        ] {
            assert_eq!(s.exit_code(), 1);
        }
    }
}
