//! `status --all`: every instance under the home, one line (or JSON object)
//! each, sorted by id: state, port, pid, since. Exit 0 when every instance
//! is ready (and there is at least one), else 1.
//!
//! Each instance is judged as `status -i ID` judges it, with its own
//! `paperclipd.toml` and `config.json`; `--instance`, `--config`, `--url`
//! and the probe paths of the command line do not apply.

use serde::Serialize;

use super::state::State;
use crate::cli::{Selection, Target};
use crate::config;
use crate::error::{Error, Result};
use crate::instance::{InstanceId, resolve_home};

/// One instance, as `--all` shows it.
#[derive(Debug, Serialize)]
pub struct Row {
    pub instance: String,
    /// `None` when the instance could not be judged (see `error`).
    pub state: Option<State>,
    pub port: Option<u16>,
    /// The supervisor: the lock holder, else the unit's main process.
    pub pid: Option<i32>,
    /// The server it runs.
    pub server_pid: Option<i32>,
    /// Since when it is in this state, as far as known (RFC 3339, UTC).
    pub since: Option<String>,
    pub reason: String,
    pub error: Option<String>,
}

/// `paperclipd status --all [--json]`.
pub async fn command(sel: &Selection, system: bool, json: bool) -> Result<u8> {
    let home = resolve_home(sel.target.home.as_deref())?;
    let ids = instance_ids(&home.join("instances"))?;
    // One look at /proc for all of them: each instance that runs adds
    // processes and sockets that every other one would scan again.
    let scan = crate::procfs::Scan::default();
    let mut rows = Vec::new();
    for id in &ids {
        rows.push(row(id, sel, system, &scan).await);
    }
    if json {
        crate::log::out_json(&rows)?;
    } else if rows.is_empty() {
        crate::log::out(&format!(
            "no instances under {}",
            home.join("instances").display()
        ));
    } else {
        crate::log::out(&render(&rows));
    }
    let all_ready = !rows.is_empty() && rows.iter().all(|r| r.state == Some(State::Ready));
    Ok(if all_ready { 0 } else { 1 })
}

/// The instance ids under `<home>/instances`, sorted; entries that are not
/// directories or not valid ids are not instances.
fn instance_ids(dir: &std::path::Path) -> Result<Vec<InstanceId>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::config(format!(
                "cannot list the instances in {}: {e}; expected a readable Paperclip home (--home or PAPERCLIP_HOME)",
                dir.display()
            )));
        }
    };
    let mut ids: Vec<InstanceId> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| InstanceId::parse(e.file_name().to_str()?).ok())
        .collect();
    ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Ok(ids)
}

async fn row(id: &InstanceId, sel: &Selection, system: bool, scan: &crate::procfs::Scan) -> Row {
    let one = Selection {
        target: Target {
            instance: id.to_string(),
            home: sel.target.home.clone(),
        },
        ..Default::default()
    };
    let status = match config::resolve_probe_settings(&one) {
        Ok(settings) => super::gather(settings, system, scan).await,
        Err(e) => Err(e),
    };
    match status {
        Ok(s) => {
            let record = s.lock.as_ref().and_then(|h| h.record.as_ref());
            let since = match (s.state, record) {
                (State::Ready, Some(r)) => r.ready_at.clone().or(Some(r.started_at.clone())),
                (_, Some(r)) => Some(r.started_at.clone()),
                (_, None) => s.manager.since_usec.filter(|u| *u > 0).map(|u| {
                    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(u);
                    humantime::format_rfc3339_seconds(t).to_string()
                }),
            };
            Row {
                instance: s.instance.clone(),
                state: Some(s.state),
                port: Some(s.port.port),
                pid: s
                    .lock
                    .as_ref()
                    .and_then(|h| h.pid.or(record.map(|r| r.pid)))
                    .or(s.manager.main_pid.filter(|p| *p > 0).map(|p| p as i32)),
                server_pid: record.and_then(|r| r.child_pid),
                since,
                reason: s.reason.clone(),
                error: s.lock_error.clone(),
            }
        }
        Err(e) => Row {
            instance: id.to_string(),
            state: None,
            port: None,
            pid: None,
            server_pid: None,
            since: None,
            reason: "cannot be judged".to_string(),
            error: Some(e.message),
        },
    }
}

/// A table: one line per instance.
pub fn render(rows: &[Row]) -> String {
    let dash = || "-".to_string();
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let cell = |s: &str| crate::untrusted::escape(s).into_owned();
            [
                r.instance.clone(),
                r.state
                    .map_or("error".to_string(), |s| s.as_str().to_string()),
                r.port.map_or_else(dash, |p| p.to_string()),
                r.pid.map_or_else(dash, |p| p.to_string()),
                r.since.as_deref().map_or_else(dash, cell),
                cell(r.error.as_deref().unwrap_or(&r.reason)),
            ]
        })
        .collect();
    let head = ["INSTANCE", "STATE", "PORT", "PID", "SINCE", "WHY"];
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for c in &cells {
        for (w, v) in widths.iter_mut().zip(c.iter()) {
            *w = (*w).max(v.chars().count());
        }
    }
    let line = |c: &[String]| {
        let mut l = String::new();
        for (i, v) in c.iter().enumerate() {
            if i + 1 == c.len() {
                l.push_str(v);
            } else {
                l.push_str(&format!("{v:<w$}  ", w = widths[i]));
            }
        }
        l.trim_end().to_string()
    };
    let mut out = line(&head.map(str::to_string));
    for c in &cells {
        out.push('\n');
        out.push_str(&line(c));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sorted_and_only_instances() {
        let d = tempfile::tempdir().unwrap();
        for n in ["zeta", "alpha", "default", "bad id"] {
            std::fs::create_dir(d.path().join(n)).unwrap();
        }
        std::fs::write(d.path().join("file"), "").unwrap();
        let ids: Vec<String> = instance_ids(d.path())
            .unwrap()
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(ids, ["alpha", "default", "zeta"]);
        assert!(instance_ids(&d.path().join("none")).unwrap().is_empty());
    }

    /// Every instance's server answers, so each one's status asks who
    /// holds its port (and, without a bus, whether logind runs): asked of
    /// all of /proc per instance, the cost grew with instances × processes,
    /// and every running instance adds processes.
    #[test]
    fn all_instances_share_one_look_at_proc() {
        use std::io::{Read, Write};
        let home = tempfile::tempdir().unwrap();
        for n in 0..4 {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            let dir = home.path().join(format!("instances/i{n}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("config.json"),
                format!(r#"{{"server":{{"host":"127.0.0.1","port":{port}}}}}"#),
            )
            .unwrap();
            std::thread::spawn(move || {
                for mut c in l.incoming().flatten() {
                    let _ = c.read(&mut [0u8; 4096]);
                    let _ = c.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\
                          Connection: close\r\n\r\n<html></html>",
                    );
                }
            });
        }
        let sel = Selection {
            target: Target {
                instance: "default".into(),
                home: Some(home.path().to_path_buf()),
            },
            ..Default::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        crate::procfs::SCANS.with(|c| c.set(0));
        rt.block_on(command(&sel, false, true)).unwrap();
        let scans = crate::procfs::SCANS.with(|c| c.get());
        assert!(scans <= 2, "{scans} scans of /proc for 4 instances");
    }

    #[test]
    fn table() {
        let r = |id: &str, state| Row {
            instance: id.into(),
            state,
            port: Some(3100),
            pid: None,
            server_pid: None,
            since: None,
            reason: "why".into(),
            error: None,
        };
        let t = render(&[r("a", Some(State::Ready)), r("bb", None)]);
        assert_eq!(
            t,
            "INSTANCE  STATE  PORT  PID  SINCE  WHY\na         ready  3100  -    -      why\nbb        error  3100  -    -      why\n"
        );
    }
}
