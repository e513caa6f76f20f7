//! Issue 19 ("day two under systemd"), black-box through `install
//! --dry-run` and friends: what is pinned for a version manager's Node.js
//! (fnm's per-shell link resolved, nothing volatile, a warning for
//! versioned directories), what `install --system` resolves as the service
//! user, the stop budget against user@.service's own stop timeout, and the
//! advice when no user manager runs. Fake layouts are real directory trees
//! with `node` scripts that print a version, kept outside /tmp (which
//! `install` refuses to pin).
#![cfg(target_os = "linux")]

mod support;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::*;

fn executable(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn fake_node(at: &Path, version: &str) {
    executable(at, &format!("#!/bin/sh\necho {version}\n"));
}

/// A user's machine: HOME with an npm-linked paperclipai, fnm's and nvm's
/// version directories, and a runtime dir (XDG_RUNTIME_DIR) of its own.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("day-two");
        fs::create_dir_all(&base).unwrap();
        let h = Home {
            dir: tempfile::tempdir_in(base).unwrap(),
        };
        let pkg = h.home().join(".local/lib/node_modules/paperclipai");
        fs::create_dir_all(pkg.join("dist")).unwrap();
        fs::write(
            pkg.join("package.json"),
            r#"{"name":"paperclipai","version":"2026.916.1","engines":{"node":">=24.11.0"}}"#,
        )
        .unwrap();
        executable(&pkg.join("dist/index.js"), "#!/usr/bin/env node\n");
        fs::create_dir_all(h.home().join(".local/bin")).unwrap();
        symlink("../lib/node_modules/paperclipai/dist/index.js", h.shim()).unwrap();
        fake_node(&h.fnm_version().join("bin/node"), "v24.12.0");
        fake_node(&h.nvm_bin().join("node"), "v24.11.1");
        fs::create_dir_all(h.runtime_dir().join("fnm_multishells")).unwrap();
        symlink(h.fnm_version(), h.fnm_shell()).unwrap();
        h
    }
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("run-user")
    }
    fn shim(&self) -> PathBuf {
        self.home().join(".local/bin/paperclipai")
    }
    fn fnm_version(&self) -> PathBuf {
        self.home()
            .join(".local/share/fnm/node-versions/v24.12.0/installation")
    }
    fn fnm_shell(&self) -> PathBuf {
        self.runtime_dir()
            .join("fnm_multishells/4242_1765000000000")
    }
    fn nvm_bin(&self) -> PathBuf {
        self.home().join(".nvm/versions/node/v24.11.1/bin")
    }

    fn cmd(&self, args: &[&str], path_first: &Path) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("PATH", format!("{}:/usr/bin:/bin", path_first.display()))
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.home().join(".config"))
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}/nobus", self.dir.path().display()),
            )
            .env_remove("PAPERCLIP_HOME")
            .env_remove("PAPERCLIP_SHIM_PATH")
            .env_remove("PAPERCLIP_NODE")
            .env_remove("PAPERCLIP_INSTANCE_ID")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("INVOCATION_ID")
            .stdin(Stdio::null());
        c
    }
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The `Environment=NAME=` value the dry-run would write, if any.
fn env_line(out: &str, name: &str) -> Option<String> {
    out.lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("Environment={name}=")))
        .map(str::to_string)
}

/// Item 2: fnm's per-shell directory resolves to the version directory;
/// the warning says a version-manager cleanup breaks the service and how
/// to re-pin.
#[test]
fn fnm_per_shell_directory_is_resolved_and_the_version_is_named() {
    let h = Home::new();
    let o = h
        .cmd(&["install", "--dry-run"], &h.fnm_shell().join("bin"))
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let node = h.fnm_version().join("bin/node");
    assert_eq!(
        env_line(&out, "PAPERCLIP_NODE"),
        Some(node.display().to_string()),
        "{out}"
    );
    assert!(!out.contains("fnm_multishells"), "{out}");
    assert!(
        !out.contains(&h.runtime_dir().display().to_string()),
        "{out}"
    );
    let prepend = env_line(&out, "PAPERCLIPD_PATH_PREPEND").expect("a PATH prepend");
    assert!(
        prepend.starts_with(&format!("{}:", node.parent().unwrap().display())),
        "{prepend}"
    );
    assert!(err.contains("fnm"), "{err}");
    assert!(err.contains("version manager"), "{err}");
    assert!(err.contains("paperclipd install --node"), "{err}");
}

/// Item 2: nvm's directory is versioned: pinned as it is, with the warning.
#[test]
fn nvm_directory_is_pinned_with_a_cleanup_warning() {
    let h = Home::new();
    let o = h
        .cmd(&["install", "--dry-run"], &h.nvm_bin())
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(
        env_line(&out, "PAPERCLIP_NODE"),
        Some(h.nvm_bin().join("node").display().to_string()),
        "{out}"
    );
    assert!(
        err.contains("nvm") && err.contains("version manager"),
        "{err}"
    );
    assert!(err.contains("paperclipd install --node"), "{err}");
}

/// Item 2: a node that lives only in the runtime dir or /tmp (gone at
/// reboot) is refused with 78 and the fix.
#[test]
fn a_volatile_node_is_refused() {
    let h = Home::new();
    let volatile = h.runtime_dir().join("tool/bin");
    fake_node(&volatile.join("node"), "v24.12.0");
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    fake_node(&tmp.path().join("bin/node"), "v24.12.0");
    for dir in [volatile, tmp.path().join("bin")] {
        let o = h.cmd(&["install", "--dry-run"], &dir).output().unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(78), "{}: {err}", dir.display());
        assert!(err.contains(&dir.display().to_string()), "{err}");
        assert!(err.contains("--node"), "{err}");
        assert!(!out.contains("[Service]"), "{out}");
    }
}

/// Item 3: `install --system` resolves paperclipai as the service user
/// would (its home, its .local/bin, the unit's PATH), not from root's
/// shell: the shell's shim is not pinned.
#[test]
fn install_system_does_not_resolve_as_the_caller() {
    let h = Home::new();
    let o = h
        .cmd(&["install", "--system", "--dry-run"], &h.nvm_bin())
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(
        !out.contains(&h.shim().display().to_string()),
        "the caller's paperclipai was pinned for the system unit:\n{out}"
    );
    // A machine with paperclipai where the service user finds it pins that
    // one; elsewhere: 127, naming where it looked.
    if o.status.code() != Some(0) {
        assert_eq!(o.status.code(), Some(127), "{err}\n{out}");
        assert!(err.contains("/var/lib/paperclip/.local/bin"), "{err}");
    }
}

/// Item 3: what the system unit's PrivateTmp= hides is never pinned.
#[test]
fn install_system_refuses_pins_the_unit_cannot_reach() {
    let h = Home::new();
    for base in ["/tmp", "/var/tmp"] {
        let d = tempfile::tempdir_in(base).unwrap();
        let node = d.path().join("node/bin/node");
        fake_node(&node, "v24.12.0");
        let o = h
            .cmd(
                &["install", "--system", "--dry-run", "--node"],
                &h.nvm_bin(),
            )
            .arg(&node)
            .env("PAPERCLIP_SHIM_PATH", "/usr/bin/true")
            .output()
            .unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(78), "{base}: {err}");
        assert!(err.contains("PrivateTmp"), "{err}");
    }
}

/// Item 8: a stop budget above what user@.service allows at logout and
/// shutdown (TimeoutStopSec=120s) is warned about at install.
#[test]
fn install_warns_when_the_stop_budget_exceeds_user_managers_own() {
    let h = Home::new();
    let inst = h.home().join(".paperclip/instances/default");
    fs::create_dir_all(&inst).unwrap();
    fs::write(inst.join("paperclipd.toml"), "stop_timeout = \"110s\"\n").unwrap();
    let o = h
        .cmd(&["install", "--dry-run"], &h.nvm_bin())
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("120"), "{err}");
    assert!(err.contains("logout"), "{err}");
    fs::write(inst.join("paperclipd.toml"), "stop_timeout = \"60s\"\n").unwrap();
    let o = h
        .cmd(&["install", "--dry-run"], &h.nvm_bin())
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!err.contains("user@.service"), "{err}");
}

/// Item 7: no user manager runs (as after `sudo -u alice`): the advice is
/// linger, not a package for the bus.
#[test]
fn no_user_manager_suggests_linger() {
    let h = Home::new();
    let o = h.cmd(&["install"], &h.nvm_bin()).output().unwrap();
    let (_, err) = text(&o);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("loginctl enable-linger"), "{err}");
    assert!(!err.contains("dbus-user-session"), "{err}");
}
