//! Upstream's own LaunchAgent (`paperclipai service install`,
//! `ing.paperclip.paperclipai[.<id>]`) beside ours would start a second
//! server for the instance: found loaded, or on disk and not disabled (it
//! loads at the next login); `--replace-upstream` boots it out and
//! disables its label for good (a bootout alone lasts until the next login).

use std::path::{Path, PathBuf};

use super::domains;
use super::launchctl::{Launchctl, Op, call};
use super::print;
use crate::error::{Error, Result};
use crate::instance::Instance;
use crate::{log, paperclip};

/// How long upstream's booted-out job may take to go (launchd's default
/// `ExitTimeOut` is 20 s; its server stops PostgreSQL in order).
const UPSTREAM_STOP: std::time::Duration = std::time::Duration::from_secs(60);

/// Upstream's plist: `~/Library/LaunchAgents/<label>.plist`.
pub fn plist_path(home: &Path, instance: &Instance) -> PathBuf {
    home.join("Library/LaunchAgents")
        .join(format!("{}.plist", paperclip::upstream_label(&instance.id)))
}

/// Refuses to install beside upstream's agent, or (with `replace`) boots
/// it out and disables it.
pub fn check<L: Launchctl>(
    l: &L,
    home: &Path,
    uid: u32,
    instance: &Instance,
    replace: bool,
) -> Result<()> {
    let label = paperclip::upstream_label(&instance.id);
    let plist = plist_path(home, instance);
    let [gui, _] = domains(uid);
    let mut loaded = Vec::new();
    for domain in domains(uid) {
        if call(l, Op::Print, &domain, &label, &plist)?.0 {
            loaded.push(domain);
        }
    }
    let (_, disabled_text, _) = call(l, Op::PrintDisabled, &gui, &label, &plist)?;
    let disabled = print::parse_disabled(&disabled_text, &label) == Some(true);
    let on_disk = plist.exists();
    if loaded.is_empty() && (disabled || !on_disk) {
        return Ok(());
    }
    let state = match (loaded.first(), on_disk) {
        (Some(d), true) => format!("loaded in {d}, plist {}", plist.display()),
        (Some(d), false) => format!("loaded in {d}"),
        (None, _) => format!("{} loads at every login", plist.display()),
    };
    if !replace {
        let up = paperclip::UpstreamService {
            name: label.clone(),
            disable_with: format!(
                "launchctl bootout {gui}/{label}; launchctl disable {gui}/{label}"
            ),
        };
        return Err(Error::busy(format!(
            "{}, or rerun with --replace-upstream",
            up.conflict(&instance.id, &state)
        )));
    }
    boot_out(l, &loaded, &label, &plist)?;
    // Disabled in the login domain, where it would load again; the override
    // persists across reboots.
    let (ok, _, err) = call(l, Op::Disable, &gui, &label, &plist)?;
    if ok {
        log::info(&format!("disabled upstream's {gui}/{label}"));
    } else {
        log::warn(&format!(
            "`launchctl disable {gui}/{label}` failed ({}); upstream's agent may load again at the next login",
            err.trim()
        ));
    }
    if on_disk {
        log::warn(&format!(
            "upstream's plist stays at {} (disabled); remove it with `paperclipai service uninstall` \
             or delete the file",
            plist.display()
        ));
    }
    Ok(())
}

/// Boots upstream's job out of every domain it is `loaded` in, and waits
/// until launchd let go of it.
fn boot_out<L: Launchctl>(l: &L, loaded: &[String], label: &str, plist: &Path) -> Result<()> {
    for domain in loaded {
        let (ok, _, err) = call(l, Op::Bootout, domain, label, plist)?;
        if !ok {
            return Err(Error::new(
                crate::error::Kind::Failed,
                format!(
                    "`launchctl bootout {domain}/{label}` failed: {}",
                    err.trim()
                ),
            ));
        }
        log::info(&format!("booted out upstream's {domain}/{label}"));
    }
    // `bootout` returns before launchd let go of the job (its server still
    // stops): wait for that, so that ours does not start beside it.
    let start = std::time::Instant::now();
    while !loaded.is_empty() {
        let mut left = Vec::new();
        for domain in loaded {
            if call(l, Op::Print, domain, label, plist)?.0 {
                left.push(domain.clone());
            }
        }
        if left.is_empty() {
            break;
        }
        if start.elapsed() > UPSTREAM_STOP {
            return Err(Error::new(
                crate::error::Kind::Failed,
                format!(
                    "upstream's {label} is still loaded in {} {} after `launchctl bootout`; \
                     expected it gone. Check `launchctl print {}/{label}`, then try again",
                    left.join(" and "),
                    humantime::format_duration(UPSTREAM_STOP),
                    left[0]
                ),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(())
}
