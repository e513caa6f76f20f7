//! `paperclipd reload`: asks the `run` that supervises the instance, over
//! its control socket, for a hot restart (upstream's protocol, see
//! `supervise::reload`), prints its progress and the report, and exits
//! with its outcome. Synchronous: one connection, lines in order.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;

use crate::error::{Error, Kind, Result};
use crate::hot_restart::wire::{self, Message, Op, Request};
use crate::instance::Instance;
use crate::log;

/// Runs one reload; returns 0 once the new server passed both probes and
/// its report was read.
/// `announce` is printed once the running supervisor answered.
pub fn command(instance: &Instance, drain: bool, json: bool, announce: Option<&str>) -> Result<u8> {
    let path = wire::socket_path(instance);
    let not_running = |why: String| {
        Error::new(
            Kind::NotRunning,
            format!(
                "instance {:?} is not running under paperclipd here ({why}), so there is nothing \
                 to reload. Start it with `paperclipd start --instance {0}` (or `paperclipd run`); \
                 `paperclipd status` says what runs",
                instance.id.as_str()
            ),
        )
    };
    let meta = std::fs::symlink_metadata(&path)
        .map_err(|_| not_running(format!("no control socket at {}", path.display())))?;
    let me = crate::sys::euid();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(Error::config(format!(
            "{} belongs to uid {}, not to you (uid {me}) or root; refusing to talk to it",
            path.display(),
            meta.uid()
        )));
    }
    let mut conn = UnixStream::connect(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
            not_running(format!("nothing listens on {}", path.display()))
        }
        _ => Error::os(format!("cannot connect to {}: {e}", path.display())),
    })?;
    if let Some(text) = announce {
        log::info(text);
    }
    let req = Request {
        op: Op::Reload,
        drain,
    };
    let mut line = serde_json::to_vec(&req)
        .map_err(|e| Error::os(format!("cannot encode the request: {e}")))?;
    line.push(b'\n');
    conn.write_all(&line).map_err(|e| {
        Error::os(format!(
            "cannot send the request to {}: {e}",
            path.display()
        ))
    })?;
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Message>(&line) else {
            continue;
        };
        match msg {
            Message::Progress { text } => log::info(&text),
            Message::Done {
                summary, report, ..
            } => {
                if json {
                    let v = serde_json::json!({"summary": summary, "report": report});
                    log::out(&format!("{v}\n"));
                } else {
                    log::out(&format!("{summary}\n"));
                }
                return Ok(0);
            }
            Message::Failed { code, error } => {
                return Err(Error::new(kind_of(code), error));
            }
        }
    }
    Err(Error::new(
        Kind::Failed,
        format!(
            "the supervisor of instance {:?} closed the control connection without a result: it \
             stopped or was killed during the reload. `paperclipd status` and the journal \
             (`paperclipd logs`) say what happened",
            instance.id.as_str()
        ),
    ))
}

/// How many agent runs the instance's supervisor has now: processes in
/// process groups of their own below it (Paperclip starts each local
/// agent `detached`, in a session of its own), not counting the server
/// and PostgreSQL. `None` when nothing runs or /proc cannot tell.
pub fn running_agent_runs(instance: &Instance) -> Option<usize> {
    let holder = crate::lock::observe(instance).holder?;
    let record = holder.record.as_ref()?;
    let sup = holder.pid.unwrap_or(record.pid);
    let server = record.child_pid;
    let procs = crate::procfs::all_processes();
    if procs.is_empty() {
        return None;
    }
    let mut tree = std::collections::HashSet::from([sup]);
    loop {
        let before = tree.len();
        for p in &procs {
            if tree.contains(&p.ppid) {
                tree.insert(p.pid);
            }
        }
        if tree.len() == before {
            break;
        }
    }
    Some(
        procs
            .iter()
            .filter(|p| tree.contains(&p.pid) && p.pid != sup && Some(p.pid) != server)
            .filter(|p| p.pgid == p.pid && !p.zombie && !p.comm.starts_with("postgres"))
            .count(),
    )
}

/// The kind whose exit code the run sent.
fn kind_of(code: u8) -> Kind {
    [
        Kind::Failed,
        Kind::Unavailable,
        Kind::Software,
        Kind::Os,
        Kind::Busy,
        Kind::Config,
        Kind::NoSpace,
        Kind::NotExecutable,
        Kind::NotFound,
        Kind::NotRunning,
    ]
    .into_iter()
    .find(|k| k.exit_code() == code)
    .unwrap_or(Kind::ServerExited(code))
}
