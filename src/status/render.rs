//! `status` as text for a person (`--json` is the serialized [`Status`]).

use super::{Status, describe_owners};
use crate::untrusted::escape;

/// A reload in progress or the last one, and the runs it carried over.
fn reload_lines(r: &crate::hot_restart::State) -> String {
    let mut out = format!(
        "  reload: {} (requested {}): {}\n",
        match r.phase {
            crate::hot_restart::Phase::Reloading => "in progress",
            crate::hot_restart::Phase::Reloaded => "done",
            crate::hot_restart::Phase::Failed => "failed",
        },
        escape(&r.requested_at),
        escape(&r.message)
    );
    if !r.carried_over.is_empty() {
        out.push_str(&format!(
            "  runs carried over to the new server: {}\n",
            r.carried_over
                .iter()
                .map(|c| format!("{} ({})", c.pid, escape(&c.command)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

/// What the service manager says of our unit (or why it could not say).
fn unit_line(m: &super::ManagerView) -> String {
    match (&m.active_state, &m.error) {
        (Some(a), _) => format!(
            "  unit:   {} {} ({}), main pid {}, {} restart(s){}\n",
            m.unit,
            escape(a),
            escape(m.sub_state.as_deref().unwrap_or("")),
            m.main_pid.unwrap_or(0),
            m.n_restarts.unwrap_or(0),
            m.status_text
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(|t| format!(": {}", escape(t)))
                .unwrap_or_default()
        ),
        (None, Some(e)) => format!("  unit:   unknown ({})\n", escape(e)),
        (None, None) => format!("  unit:   {} not installed\n", m.unit),
    }
}

/// The port, and who listens on it.
fn port_line(p: &super::PortView) -> String {
    format!(
        "  port:   {} {}{}\n",
        p.port,
        if p.listening {
            "listening"
        } else {
            "not listening"
        },
        if p.owners.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                describe_owners(&p.owners.iter().map(|o| o.pid).collect::<Vec<_>>())
            )
        }
    )
}

pub fn render_text(s: &Status) -> String {
    let mut out = format!(
        "paperclip instance {}: {} ({})\n",
        s.instance,
        s.state.as_str(),
        escape(&s.reason)
    );
    if let Some(note) = &s.settings.note {
        out.push_str(&format!("  settings: {}\n", escape(note)));
    }
    if let Some(r) = &s.reload {
        out.push_str(&reload_lines(r));
    }
    match (&s.lock, &s.lock_error) {
        (Some(h), _) => out.push_str(&format!("  lock:   held by {}\n", h.describe())),
        (None, Some(e)) => out.push_str(&format!("  lock:   unknown: {}\n", escape(e))),
        (None, None) => out.push_str("  lock:   free\n"),
    }
    let m = &s.manager;
    out.push_str(&unit_line(m));
    if let Some(w) = &s.waiting {
        out.push_str(&format!("  launchd: {}\n", w.describe()));
    }
    if let Some(up) = &m.upstream {
        out.push_str(&format!(
            "  upstream unit: {} {}\n",
            escape(&up.unit),
            escape(&up.active_state)
        ));
    }
    if let Some(rt) = &s.runtime {
        out.push_str(&runtime_lines(rt));
    }
    for w in &s.upgrade.warnings {
        out.push_str(&format!("  warning: {w}\n"));
    }
    out.push_str(&port_line(&s.port));
    match (&s.probes.api, &s.probes.ui) {
        (None, _) => out.push_str("  probes: not sent (nothing listens)\n"),
        (Some(a), u) => {
            out.push_str(&format!("  {a}\n"));
            if let Some(u) = u {
                out.push_str(&format!("  {u}\n"));
            }
        }
    }
    super::hazards::render(&s.hazards, &mut out);
    out
}

/// The runtime the service runs (or, with no service, this shell's), and
/// the warnings.
fn runtime_lines(rt: &crate::runtime::view::View) -> String {
    let side = |s: &crate::runtime::view::Side| match (&s.node, &s.version) {
        (Some(n), Some(v)) => format!(
            "Node.js {} at {}{}",
            escape(v),
            escape(n),
            s.required
                .as_ref()
                .map(|r| format!(" (Paperclip needs {})", escape(r)))
                .unwrap_or_default()
        ),
        (Some(n), None) => format!("Node.js at {} (version unknown)", escape(n)),
        (None, _) => match &s.shim {
            Some(shim) => format!("not checked ({} is not a Node.js script)", escape(shim)),
            None => "paperclipai not found".to_string(),
        },
    };
    let mut out = match (&rt.service, &rt.service_file) {
        (Some(svc), Some(file)) => format!(
            "  runtime: {} (service, {}; {})
",
            side(svc),
            escape(file),
            escape(svc.source.as_deref().unwrap_or("source unknown"))
        ),
        _ => format!(
            "  runtime: {} (this shell; no service installed)\n",
            side(&rt.shell)
        ),
    };
    for w in &rt.warnings {
        out.push_str(&format!("  warning: {}\n", escape(w)));
    }
    out
}
