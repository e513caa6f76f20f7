//! What `status` shows beside the state: the free space on the instance's
//! filesystem, the processes its supervisor adopted, and whether logind
//! may remove the user's IPC objects. None of them changes the state or
//! the exit code; each warns in words. All read without waking anybody:
//! statvfs, /proc, logind.

use serde::Serialize;

use crate::adopted::{self, Summary};
use crate::config::ProbeSettings;
use crate::disk::{self, Space};
use crate::lock::Holder;
use crate::size::format_size;

#[derive(Debug, Serialize)]
pub struct Hazards {
    pub disk: Option<DiskView>,
    /// Processes the running supervisor adopted outside its server's tree;
    /// `null` when nothing runs (or there is no subreaper: not Linux).
    pub adopted: Option<Summary>,
    /// logind's `RemoveIPC=` against the instance owner's linger (Linux).
    #[cfg(not(target_os = "macos"))]
    pub ipc: Option<crate::systemd::logind::IpcView>,
}

#[derive(Debug, Serialize)]
pub struct DiskView {
    #[serde(flatten)]
    pub space: Space,
    /// `--min-free` / `min_free` (0: the check is off).
    pub min_free_bytes: u64,
    /// Below the minimum: `run` would refuse to start (73).
    pub low: bool,
}

pub async fn gather(
    settings: &ProbeSettings,
    holder: Option<&Holder>,
    scan: &crate::procfs::Scan,
) -> Hazards {
    let root = settings.instance.root();
    let disk = disk::space(&root).ok().map(|space| DiskView {
        low: settings.min_free > 0 && space.free_bytes < settings.min_free,
        min_free_bytes: settings.min_free,
        space,
    });
    let adopted = holder.and_then(|h| {
        let pid = h.pid.or(h.record.as_ref().map(|r| r.pid))?;
        let server = h.record.as_ref().and_then(|r| r.child_pid);
        cfg!(target_os = "linux").then(|| {
            let mut procs = adopted::find_in(scan.processes(), pid, server);
            crate::hot_restart::spare_carried_over(&settings.instance, pid, &mut procs);
            adopted::summarize(&procs)
        })
    });
    Hazards {
        disk,
        adopted,
        #[cfg(not(target_os = "macos"))]
        ipc: Some(crate::systemd::logind::check(instance_owner(&root), scan).await),
    }
}

/// Who runs the instance's PostgreSQL: the owner of its directory (or,
/// before it exists, whoever asks).
#[cfg(not(target_os = "macos"))]
fn instance_owner(root: &std::path::Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(root).map_or_else(|_| crate::sys::euid(), |m| m.uid())
}

/// The lines `status` prints for them.
pub fn render(h: &Hazards, out: &mut String) {
    if let Some(d) = &h.disk {
        let free = format_size(d.space.free_bytes);
        if d.low {
            out.push_str(&format!(
                "  disk:   warning: only {free} free on {}, below the minimum of {}: `run` refuses to start (exit 73); free some space\n",
                crate::untrusted::escape(&d.space.describe_fs()),
                format_size(d.min_free_bytes)
            ));
        } else {
            out.push_str(&format!(
                "  disk:   {free} free on {} ({})\n",
                crate::untrusted::escape(&d.space.describe_fs()),
                if d.min_free_bytes == 0 {
                    "minimum check off".to_string()
                } else {
                    format!("minimum {}", format_size(d.min_free_bytes))
                }
            ));
        }
    }
    if let Some(a) = &h.adopted {
        use crate::supervise::adopted::{MAX_COUNT, MAX_RSS};
        let over = a.count > MAX_COUNT || a.rss_bytes > MAX_RSS;
        out.push_str(&format!(
            "  adopted: {}{} process(es) outside the server's tree, {}{}\n",
            if over { "warning: " } else { "" },
            a.count,
            format_size(a.rss_bytes),
            if a.count > 0 {
                format!(", the oldest {}s old", a.oldest_secs)
            } else {
                String::new()
            }
        ));
        if over {
            out.push_str("           (orphans such as leaked agents; `run --reap-adopted-after DUR` stops them)\n");
        }
    }
    #[cfg(not(target_os = "macos"))]
    if let Some(i) = &h.ipc {
        out.push_str(&format!("  ipc:    {}\n", i.describe()));
    }
}
