//! `status` as text for a person (`--json` is the serialized [`Status`]).

use super::{Status, describe_owners};

pub fn render_text(s: &Status) -> String {
    let mut out = format!(
        "paperclip instance {}: {} ({})\n",
        s.instance,
        s.state.as_str(),
        s.reason
    );
    if let Some(note) = &s.settings.note {
        out.push_str(&format!("  settings: {note}\n"));
    }
    if let Some(r) = &s.reload {
        out.push_str(&format!(
            "  reload: {} (requested {}): {}\n",
            match r.phase {
                crate::hot_restart::Phase::Reloading => "in progress",
                crate::hot_restart::Phase::Reloaded => "done",
                crate::hot_restart::Phase::Failed => "failed",
            },
            r.requested_at,
            r.message
        ));
        if !r.carried_over.is_empty() {
            out.push_str(&format!(
                "  runs carried over to the new server: {}\n",
                r.carried_over
                    .iter()
                    .map(|c| format!("{} ({})", c.pid, c.command))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    match &s.lock {
        Some(h) => out.push_str(&format!("  lock:   held by {}\n", h.describe())),
        None => out.push_str("  lock:   free\n"),
    }
    let m = &s.manager;
    match (&m.active_state, &m.error) {
        (Some(a), _) => out.push_str(&format!(
            "  unit:   {} {} ({}), main pid {}, {} restart(s){}\n",
            m.unit,
            a,
            m.sub_state.as_deref().unwrap_or(""),
            m.main_pid.unwrap_or(0),
            m.n_restarts.unwrap_or(0),
            m.status_text
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(|t| format!(": {t}"))
                .unwrap_or_default()
        )),
        (None, Some(e)) => out.push_str(&format!("  unit:   unknown ({e})\n")),
        (None, None) => out.push_str(&format!("  unit:   {} not installed\n", m.unit)),
    }
    if let Some(up) = &m.upstream {
        out.push_str(&format!(
            "  upstream unit: {} {}\n",
            up.unit, up.active_state
        ));
    }
    if let Some(rt) = &s.runtime {
        out.push_str(&runtime_lines(rt));
    }
    out.push_str(&format!(
        "  port:   {} {}{}\n",
        s.port.port,
        if s.port.listening {
            "listening"
        } else {
            "not listening"
        },
        if s.port.owners.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                describe_owners(&s.port.owners.iter().map(|o| o.pid).collect::<Vec<_>>())
            )
        }
    ));
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
fn runtime_lines(rt: &crate::runtime::pin::View) -> String {
    let side = |s: &crate::runtime::pin::Side| match (&s.node, &s.version) {
        (Some(n), Some(v)) => format!(
            "Node.js {v} at {n}{}",
            s.required
                .as_ref()
                .map(|r| format!(" (Paperclip needs {r})"))
                .unwrap_or_default()
        ),
        (Some(n), None) => format!("Node.js at {n} (version unknown)"),
        (None, _) => match &s.shim {
            Some(shim) => format!("not checked ({shim} is not a Node.js script)"),
            None => "paperclipai not found".to_string(),
        },
    };
    let mut out = match (&rt.service, &rt.service_file) {
        (Some(svc), Some(file)) => format!("  runtime: {} (service, {file})\n", side(svc)),
        _ => format!(
            "  runtime: {} (this shell; no service installed)\n",
            side(&rt.shell)
        ),
    };
    for w in &rt.warnings {
        out.push_str(&format!("  warning: {w}\n"));
    }
    out
}
