//! Why the state is what it is, in words: the reason line of `status`.

use super::ManagerState;
use super::state::Why;
use crate::config::ProbeSettings;
use crate::lock::{self, Holder, Record};
use crate::procfs;

/// `stopping`'s reason: since when, who began it, and what it said.
pub(super) fn stopping_message(holder: Option<&Holder>) -> String {
    let Some(s) = holder.and_then(|h| h.record.as_ref()?.stopping.as_ref()) else {
        return "the server is stopping".to_string();
    };
    let detail = s
        .detail
        .as_deref()
        .map(|d| format!(": {}", crate::untrusted::escape(d)))
        .unwrap_or_default();
    match s.by {
        lock::StopBy::Server => format!(
            "the server said it is stopping (STOPPING=1 at {}){detail}",
            crate::untrusted::escape(&s.since)
        ),
        lock::StopBy::Paperclipd => format!(
            "paperclipd is stopping the server (since {}){detail}",
            crate::untrusted::escape(&s.since)
        ),
    }
}

/// The reason, in words, with the names that go with it.
pub(super) fn reason(
    why: Why,
    m: &ManagerState,
    settings: &ProbeSettings,
    owners: &[i32],
    last: Option<&Record>,
) -> String {
    match why {
        Why::LeftBehind => {
            let server = last.and_then(|r| r.child_pid);
            let stop = match (owners, server) {
                ([], Some(c)) => format!("`kill -TERM {c}`"),
                ([], None) => "the process on that port".to_string(),
                (o, _) => format!(
                    "`kill -TERM {}`",
                    o.iter().map(i32::to_string).collect::<Vec<_>>().join(" ")
                ),
            };
            format!(
                "nobody holds the lock, yet port {} still accepts connections ({}): the last run of this \
                 instance (paperclipd pid {}{}) was killed and left its server behind; stop it with {stop}, \
                 then start the instance again",
                settings.port,
                describe_owners(owners),
                last.map_or(0, |r| r.pid),
                server
                    .map(|c| format!(", server pid {c}"))
                    .unwrap_or_default()
            )
        }
        Why::UpstreamToo => format!(
            "upstream's {} runs too: two servers for one instance; disable it with `{}`",
            m.upstream_name, m.upstream_disable
        ),
        Why::PidMismatch {
            unit_pid,
            holder_pid,
        } => format!(
            "{} runs pid {unit_pid} but the lock is held by pid {holder_pid}",
            m.name
        ),
        Why::Stranger => format!(
            "nothing of ours runs, yet port {} accepts connections ({}); another server answers for this instance",
            settings.port,
            describe_owners(owners)
        ),
        Why::OnlyUpstream => format!("only upstream's {} runs this instance", m.upstream_name),
        Why::NothingRuns => "no lock holder, no running unit, nothing listening".to_string(),
        // Worded by the caller, which has the pause's reason.
        Why::Paused => "paused by the crash-loop guard".to_string(),
        Why::ForeignOwner => {
            "the port is held by a process outside the lock holder's tree".to_string()
        }
        Why::Stopping => "the server is stopping".to_string(),
        Why::ProbesPass => "both probes pass".to_string(),
        Why::NotReadyYet => "the server is starting; probes do not pass yet".to_string(),
        Why::FailingAfterReady => "the server was ready but its probes fail now".to_string(),
        Why::UnitWithoutLock => "the unit is running but holds no lock yet".to_string(),
    }
}

pub(super) fn describe_owners(pids: &[i32]) -> String {
    if pids.is_empty() {
        "owner unknown".to_string()
    } else {
        procfs::describe_all(pids)
    }
}
