//! Whether the system unit can start at all: its `User=paperclip` exists
//! (else systemd fails with 217/USER), and that user can reach and execute
//! paperclipd under the unit's sandbox (else 203/EXEC): not below what
//! `ProtectHome=`/`PrivateTmp=` hide, every directory on the way searchable
//! and the file executable for that user.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};

/// The account the system unit runs as (`User=`/`Group=` in
/// `units/systemd/system/paperclip@.service`).
pub const SYSTEM_USER: &str = "paperclip";

/// An account as the kernel checks it: uid and every group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub groups: Vec<u32>,
}

/// What `ProtectHome=yes` and `PrivateTmp=yes` hide from the service.
const HIDDEN: [&str; 5] = ["/home", "/root", "/run/user", "/tmp", "/var/tmp"];

/// Owner, group and mode of a path (followed, as exec follows it).
pub type Meta = (u32, u32, u32);

/// Why `account` cannot run `exe` under the system unit, if it cannot.
pub fn unreachable_reason(
    exe: &Path,
    account: &Account,
    meta: impl Fn(&Path) -> Option<Meta>,
) -> Option<String> {
    if let Some(h) = HIDDEN.iter().find(|h| exe.starts_with(h)) {
        return Some(format!(
            "it is below {h}, which the unit hides (ProtectHome=yes, PrivateTmp=yes)"
        ));
    }
    let allowed = |(uid, gid, mode): Meta, bit: u32| {
        if uid == account.uid {
            mode & (bit << 6) != 0
        } else if account.groups.contains(&gid) {
            mode & (bit << 3) != 0
        } else {
            mode & bit != 0
        }
    };
    for dir in exe.ancestors().skip(1) {
        match meta(dir) {
            Some(m) if allowed(m, 0o1) => {}
            Some(_) => {
                return Some(format!(
                    "the directory {} is not searchable for that user",
                    dir.display()
                ));
            }
            None => return Some(format!("{} cannot be inspected", dir.display())),
        }
    }
    match meta(exe) {
        Some(m) if allowed(m, 0o1) => None,
        Some(_) => Some("the file is not executable for that user".to_string()),
        None => Some("it cannot be inspected".to_string()),
    }
}

/// Looks an account up with `id` (it asks NSS, as systemd does): `None`
/// when there is no such user.
pub fn lookup(name: &str) -> Result<Option<Account>> {
    let id = |flag: &str| {
        Command::new("id")
            .args([flag, name])
            .output()
            .map_err(|e| Error::os(format!("cannot run `id {flag} {name}`: {e}")))
    };
    let uid = id("-u")?;
    if !uid.status.success() {
        return Ok(None);
    }
    let numbers = |out: &[u8]| -> Vec<u32> {
        String::from_utf8_lossy(out)
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect()
    };
    let Some(&uid) = numbers(&uid.stdout).first() else {
        return Ok(None);
    };
    Ok(Some(Account {
        uid,
        groups: numbers(&id("-G")?.stdout),
    }))
}

/// Refuses `install --system` when the unit could not start: the user is
/// missing, or paperclipd at `exe` is out of its reach.
pub fn check_system_unit(exe: &Path) -> Result<()> {
    let Some(account) = lookup(SYSTEM_USER)? else {
        return Err(Error::config(format!(
            "the system unit runs as User={SYSTEM_USER}, which does not exist here (systemd would fail \
             with 217/USER); expected the account the .deb/.rpm creates. Create it with \
             `useradd --system --home-dir /var/lib/{SYSTEM_USER} --shell /usr/sbin/nologin {SYSTEM_USER}` \
             and rerun `paperclipd install --system`"
        )));
    };
    let meta = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.uid(), m.gid(), m.mode()))
    };
    match unreachable_reason(exe, &account, meta) {
        None => Ok(()),
        Some(why) => Err(Error::config(format!(
            "the system unit would run {} as User={SYSTEM_USER}, but {why} (systemd would fail with \
             203/EXEC); expected paperclipd installed system-wide. Copy it, e.g. \
             `install -m 755 {} /usr/local/bin/paperclipd`, and run `/usr/local/bin/paperclipd install --system`",
            exe.display(),
            exe.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn account() -> Account {
        Account {
            uid: 990,
            groups: vec![990],
        }
    }

    fn tree(entries: &[(&str, Meta)]) -> impl Fn(&Path) -> Option<Meta> {
        let m: HashMap<String, Meta> = entries.iter().map(|(p, m)| (p.to_string(), *m)).collect();
        move |p: &Path| m.get(p.to_str()?).copied()
    }

    #[test]
    fn a_system_wide_binary_is_reachable() {
        let t = tree(&[
            ("/", (0, 0, 0o755)),
            ("/usr", (0, 0, 0o755)),
            ("/usr/local", (0, 0, 0o755)),
            ("/usr/local/bin", (0, 0, 0o755)),
            ("/usr/local/bin/paperclipd", (0, 0, 0o755)),
        ]);
        assert_eq!(
            unreachable_reason(Path::new("/usr/local/bin/paperclipd"), &account(), t),
            None
        );
    }

    #[test]
    fn binaries_the_sandbox_hides_or_modes_forbid_are_refused() {
        let none = |_: &Path| None;
        for hidden in [
            "/home/me/.cargo/bin/paperclipd",
            "/home/linuxbrew/.linuxbrew/opt/paperclipd/bin/paperclipd",
            "/root/bin/paperclipd",
            "/tmp/paperclipd",
        ] {
            let why = unreachable_reason(Path::new(hidden), &account(), none).unwrap();
            assert!(why.contains("ProtectHome"), "{hidden}: {why}");
        }
        let t = tree(&[
            ("/", (0, 0, 0o755)),
            ("/opt", (0, 0, 0o755)),
            ("/opt/tools", (1000, 1000, 0o700)),
            ("/opt/tools/paperclipd", (1000, 1000, 0o755)),
            ("/opt/grp", (0, 990, 0o750)),
            ("/opt/grp/paperclipd", (0, 990, 0o745)),
        ]);
        let why = unreachable_reason(Path::new("/opt/tools/paperclipd"), &account(), &t).unwrap();
        assert!(why.contains("/opt/tools is not searchable"), "{why}");
        // Through its group: the directory is searchable, the file is not
        // executable for the group (0o745: r-- for the group, although
        // others may execute it: the group bits decide).
        let why = unreachable_reason(Path::new("/opt/grp/paperclipd"), &account(), &t).unwrap();
        assert!(why.contains("not executable"), "{why}");
    }

    #[test]
    fn lookup_finds_root_and_not_a_missing_user() {
        let root = lookup("root").unwrap().expect("root exists");
        assert_eq!(root.uid, 0);
        assert!(root.groups.contains(&0));
        assert_eq!(lookup("paperclipd-no-such-user-x").unwrap(), None);
    }
}
