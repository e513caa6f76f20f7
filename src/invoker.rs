//! Which service manager started us, as far as the environment tells:
//! systemd, launchd, a container (PID 1) or a person in a terminal.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagerKind {
    Systemd,
    Launchd,
    Container,
    Foreground,
}

impl ManagerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ManagerKind::Systemd => "systemd",
            ManagerKind::Launchd => "launchd",
            ManagerKind::Container => "container",
            ManagerKind::Foreground => "foreground",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoker {
    pub kind: ManagerKind,
    /// The systemd unit or launchd label, when known.
    pub unit: Option<String>,
}

/// Detects the invoking manager: systemd sets `$INVOCATION_ID` (and
/// `$NOTIFY_SOCKET` for `Type=notify`), launchd sets `$XPC_SERVICE_NAME`;
/// PID 1 means a container.
pub fn detect() -> Invoker {
    let systemd = || Invoker {
        kind: ManagerKind::Systemd,
        unit: std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|t| unit_from_cgroup(&t)),
    };
    if std::env::var_os("INVOCATION_ID").is_some() {
        return systemd();
    }
    // PID 1 before NOTIFY_SOCKET: container engines (podman's
    // sdnotify=container, systemd-nspawn) pass a notify socket to PID 1.
    if std::process::id() == 1 {
        return Invoker {
            kind: ManagerKind::Container,
            unit: None,
        };
    }
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        return systemd();
    }
    if let Some(label) = std::env::var("XPC_SERVICE_NAME")
        .ok()
        .filter(|l| !l.is_empty() && l != "0")
    {
        return Invoker {
            kind: ManagerKind::Launchd,
            unit: Some(label),
        };
    }
    Invoker {
        kind: ManagerKind::Foreground,
        unit: None,
    }
}

/// The innermost `.service` in our cgroup path (`0::/user.slice/…/app.slice/paperclip@x.service`).
pub fn unit_from_cgroup(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .flat_map(|path| path.split('/').rev())
        .find(|c| c.ends_with(".service"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    #[test]
    fn unit_from_cgroup_paths() {
        let t = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/paperclip@default.service\n";
        assert_eq!(
            super::unit_from_cgroup(t).as_deref(),
            Some("paperclip@default.service")
        );
        assert_eq!(super::unit_from_cgroup("0::/init.scope\n"), None);
    }
}
