//! The Node.js that runs Paperclip, black-box: a `paperclipai` shim linked
//! as `npm install -g --prefix` links it (`#!/usr/bin/env node`), and fake
//! `node` programs that answer `--version` and otherwise start the fixture
//! server, recording which node ran. `run` refuses a missing or too old
//! node (78) before creating anything; `install` pins the shell's node;
//! `status` shows it and warns when the pin is gone or differs.
//! (Linux: `install` renders systemd units here.)
#![cfg(target_os = "linux")]

mod support;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::*;

/// A fake machine: an npm prefix with paperclipai, Node 24 in a directory
/// of its own, an older Node 20 elsewhere, and an onboarded instance.
struct Machine {
    w: World,
    shim: PathBuf,
    new: PathBuf,
    old: PathBuf,
}

fn executable(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

impl Machine {
    fn new() -> Machine {
        // Not under /tmp, which `install` refuses to pin (wiped at boot).
        let w = World::new_in(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("runtime"));
        let root = w.dir.path();
        let pkg = root.join("npm/lib/node_modules/paperclipai");
        fs::create_dir_all(pkg.join("dist")).unwrap();
        fs::write(
            pkg.join("package.json"),
            r#"{"name":"paperclipai","version":"2026.916.1","engines":{"node":">=24.11.0"}}"#,
        )
        .unwrap();
        executable(
            &pkg.join("dist/index.js"),
            "#!/usr/bin/env node\nimport('x')\n",
        );
        let shim = root.join("npm/bin/paperclipai");
        fs::create_dir_all(shim.parent().unwrap()).unwrap();
        symlink("../lib/node_modules/paperclipai/dist/index.js", &shim).unwrap();
        let m = Machine {
            new: root.join("node-v24.11.1/bin/node"),
            old: root.join("usr/bin/node"),
            shim,
            w,
        };
        m.fake_node(&m.new, "v24.11.1");
        m.fake_node(&m.old, "v20.20.2");
        let inst = m.w.home().join("instances/default");
        fs::create_dir_all(&inst).unwrap();
        fs::write(
            inst.join("config.json"),
            format!(r#"{{"server":{{"host":"127.0.0.1","port":{}}}}}"#, m.w.port),
        )
        .unwrap();
        m
    }

    /// A `node` that prints `version`, or records itself and its PATH and
    /// becomes the fixture server.
    fn fake_node(&self, at: &Path, version: &str) {
        let state = self.w.state();
        executable(
            at,
            &format!(
                "#!/bin/sh\n[ \"$1\" = --version ] && {{ echo {version}; exit 0; }}\n\
                 mkdir -p '{s}' && printf '%s\\n%s\\n' \"$0\" \"$PATH\" >'{s}/node-ran'\n\
                 exec /usr/bin/python3 '{f}' --port {p} --state-dir '{s}'\n",
                s = state.display(),
                f = fixture().display(),
                p = self.w.port
            ),
        );
    }

    fn dir(p: &Path) -> &Path {
        p.parent().unwrap()
    }

    fn path(&self, dirs: &[&Path]) -> String {
        let mut all: Vec<&Path> = dirs.to_vec();
        all.extend([Path::new("/usr/bin"), Path::new("/bin")]);
        std::env::join_paths(all).unwrap().into_string().unwrap()
    }

    /// `paperclipd ARGS` as the user's shell would run it: HOME, XDG, PATH.
    fn cmd(&self, args: &[&str], path: &str) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("PATH", path)
            .env("HOME", self.w.dir.path())
            .env("XDG_CONFIG_HOME", self.w.dir.path().join("xdg"))
            .env("XDG_RUNTIME_DIR", self.w.dir.path().join("run"))
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}/nobus", self.w.dir.path().display()),
            )
            .env("PAPERCLIP_HOME", self.w.home())
            .env_remove("PAPERCLIP_SHIM_PATH")
            .env_remove("PAPERCLIP_NODE")
            .env_remove("PAPERCLIP_INSTANCE_ID")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null());
        c
    }

    /// Which node became the server, and the PATH it saw.
    fn node_ran(&self) -> Option<(String, String)> {
        let text = self.w.state_file("node-ran")?;
        let mut lines = text.lines().map(str::to_string);
        Some((lines.next()?, lines.next().unwrap_or_default()))
    }

    /// Runs a command that must end on its own (with a deadline: a `run`
    /// that wrongly starts a server would never end); its code and stderr.
    fn exit_of(&self, cmd: Command, name: &str) -> (i32, String) {
        let mut r = self.w.spawn(cmd, name);
        let code = r.code();
        (code, r.stderr())
    }

    /// Runs until ready, stops with SIGTERM; returns stderr.
    fn run_until_ready(&self, cmd: Command, name: &str) -> String {
        let mut r = self.w.spawn(cmd, name);
        wait_until(DEADLINE, "ready after", || {
            r.stderr().contains("ready after") || r.child.try_wait().ok().flatten().is_some()
        });
        let err = r.stderr();
        assert!(err.contains("ready after"), "{err}");
        signal(r.pid(), libc::SIGTERM);
        assert_eq!(r.code(), 0, "{}", r.stderr());
        err
    }
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn run_refuses_a_too_old_node_before_creating_anything() {
    let m = Machine::new();
    let path = m.path(&[
        Machine::dir(&m.old),
        Machine::dir(&m.new),
        Machine::dir(&m.shim),
    ]);
    let (code, err) = m.exit_of(m.cmd(&["run"], &path), "old");
    assert_eq!(code, 78, "{err}");
    for needed in [
        "v20.20.2",
        &m.old.display().to_string(),
        ">=24.11.0",
        "engines.node",
        &format!("PATH={path}"),
        "--node",
        "PAPERCLIP_NODE",
    ] {
        assert!(err.contains(needed), "{needed:?} not in: {err}");
    }
    assert_eq!(m.node_ran(), None, "a server was started");
    assert!(!m.w.lock_path("default").exists(), "the lock was created");
}

#[test]
fn run_uses_the_node_that_path_finds_and_says_which() {
    let m = Machine::new();
    let path = m.path(&[
        Machine::dir(&m.new),
        Machine::dir(&m.shim),
        Machine::dir(&m.old),
    ]);
    let err = m.run_until_ready(m.cmd(&["run"], &path), "run");
    assert!(
        err.contains(&format!("runtime: Node.js v24.11.1 at {}", m.new.display())),
        "{err}"
    );
    assert_eq!(m.node_ran().unwrap().0, m.new.display().to_string());
}

#[test]
fn a_chosen_node_runs_the_server_even_behind_an_older_one() {
    let m = Machine::new();
    let path = m.path(&[Machine::dir(&m.old), Machine::dir(&m.shim)]);
    // PAPERCLIP_NODE, as the unit sets it.
    let mut c = m.cmd(&["run"], &path);
    c.env("PAPERCLIP_NODE", &m.new);
    m.run_until_ready(c, "env");
    let (node, server_path) = m.node_ran().unwrap();
    assert_eq!(node, m.new.display().to_string());
    assert!(
        server_path.starts_with(&format!("{}:", Machine::dir(&m.new).display())),
        "{server_path}"
    );
    // --node, naming the bin directory.
    fs::remove_file(m.w.state().join("node-ran")).unwrap();
    let mut c = m.cmd(&["run", "--node"], &path);
    c.arg(Machine::dir(&m.new));
    m.run_until_ready(c, "flag");
    assert_eq!(m.node_ran().unwrap().0, m.new.display().to_string());
}

#[test]
fn a_pinned_node_that_no_longer_exists_is_78() {
    let m = Machine::new();
    let gone = m.w.dir.path().join("nvm/versions/node/v24.10.0/bin/node");
    let path = m.path(&[Machine::dir(&m.new), Machine::dir(&m.shim)]);
    let mut c = m.cmd(&["run"], &path);
    c.env("PAPERCLIP_NODE", &gone);
    let (code, err) = m.exit_of(c, "gone");
    assert_eq!(code, 78, "{err}");
    assert!(err.contains(&gone.display().to_string()), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(err.contains("paperclipd install"), "{err}");
    assert_eq!(m.node_ran(), None);
}

#[test]
fn a_command_of_ones_own_is_not_checked() {
    let m = Machine::new();
    let path = m.path(&[Machine::dir(&m.old), Machine::dir(&m.shim)]);
    let mut c = m.w.run_cmd(&[], &[]);
    c.env("PATH", &path).env("PAPERCLIP_SHIM_PATH", &m.shim);
    let mut r = m.w.spawn(c, "own");
    wait_until(DEADLINE, "ready after", || {
        r.stderr().contains("ready after") || r.child.try_wait().ok().flatten().is_some()
    });
    assert!(r.stderr().contains("ready after"), "{}", r.stderr());
    assert!(!r.stderr().contains("runtime:"), "{}", r.stderr());
    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0);
}

#[test]
fn install_pins_the_shells_node_and_refuses_an_old_one() {
    let m = Machine::new();
    let xdg = m.w.dir.path().join("xdg");
    let (npm_bin, new_bin) = (Machine::dir(&m.shim), Machine::dir(&m.new));
    let path = m.path(&[new_bin, npm_bin, Machine::dir(&m.old)]);
    let o = m.cmd(&["install", "--dry-run"], &path).output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let home = m.w.dir.path().display().to_string();
    for line in [
        // Before the manager's PATH, which is kept (`run` prepends).
        format!(
            "Environment=PAPERCLIPD_PATH_PREPEND={}:{}:{home}/.local/bin",
            new_bin.display(),
            npm_bin.display()
        ),
        format!("Environment=PAPERCLIP_NODE={}", m.new.display()),
        format!("Environment=PAPERCLIP_SHIM_PATH={}", m.shim.display()),
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} not in:\n{out}");
    }
    assert!(err.contains("runtime: Node.js v24.11.1"), "{err}");

    // The system unit, with the shim and node named explicitly (it does
    // not look in the caller's PATH): the `paperclip` user's ~/.local/bin
    // (where agent CLIs install) follows the pinned directories.
    let sys = m
        .cmd(&["install", "--system", "--dry-run", "--node"], &path)
        .arg(&m.new)
        .env("PAPERCLIP_SHIM_PATH", &m.shim)
        .output()
        .unwrap();
    let (out, err) = text(&sys);
    assert_eq!(sys.status.code(), Some(0), "{err}");
    let want = format!(
        "Environment=PAPERCLIPD_PATH_PREPEND={}:{}:/var/lib/paperclip/.local/bin",
        new_bin.display(),
        npm_bin.display()
    );
    assert!(out.lines().any(|l| l == want), "{want:?} not in:\n{out}");

    // The machine's older node first: refused, with and without --dry-run.
    let old_first = m.path(&[Machine::dir(&m.old), npm_bin, new_bin]);
    for args in [&["install", "--dry-run"][..], &["install", "--now"]] {
        let o = m.cmd(args, &old_first).output().unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(78), "{args:?}: {err}");
        assert!(
            err.contains("v20.20.2") && err.contains(&m.old.display().to_string()),
            "{err}"
        );
        assert!(err.contains("paperclipd install --node"), "{err}");
        assert!(!out.contains("[Service]"), "{out}");
    }
    assert!(!xdg.exists(), "a refused install wrote {}", xdg.display());

    // --node chooses another.
    let o = m
        .cmd(&["install", "--dry-run", "--node"], &old_first)
        .arg(&m.new)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let want = format!("Environment=PAPERCLIP_NODE={}", m.new.display());
    assert!(out.lines().any(|l| l == want), "{want:?} not in:\n{out}");
}

#[test]
fn install_without_paperclip_says_how_to_install_it() {
    let m = Machine::new();
    let o = m
        .cmd(&["install", "--dry-run"], "/usr/bin:/bin")
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(127), "{err}");
    assert!(err.contains("npm install -g paperclipai"), "{err}");
}

/// A unit file as `install` writes it, pinning `node`.
fn write_unit(m: &Machine, node: &Path) {
    let dir = m.w.dir.path().join("xdg/systemd/user");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("paperclip@.service"),
        format!(
            "[Service]\nEnvironment=PATH=%h/.local/bin:/usr/bin:/bin\nEnvironment=PATH={}:{}:/usr/bin:/bin\n\
             Environment=PAPERCLIP_SHIM_PATH={}\nEnvironment=PAPERCLIP_NODE={}\n",
            Machine::dir(node).display(),
            Machine::dir(&m.shim).display(),
            m.shim.display(),
            node.display()
        ),
    )
    .unwrap();
}

fn status(m: &Machine, path: &str) -> (serde_json::Value, String) {
    let o = m.cmd(&["status", "--json"], path).output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let t = m.cmd(&["status"], path).output().unwrap();
    (v["runtime"].clone(), text(&t).0)
}

#[test]
fn status_shows_the_runtime_and_warns_when_it_is_gone_or_differs() {
    let m = Machine::new();
    let shell = m.path(&[Machine::dir(&m.new), Machine::dir(&m.shim)]);

    // No service: the shell's runtime.
    let (rt, txt) = status(&m, &shell);
    assert_eq!(rt["service"], serde_json::Value::Null, "{rt}");
    assert_eq!(rt["shell"]["node"], m.new.display().to_string(), "{rt}");
    assert_eq!(rt["shell"]["version"], "v24.11.1", "{rt}");
    assert!(txt.contains("runtime: Node.js v24.11.1"), "{txt}");

    // The same as the shell's: no warning.
    write_unit(&m, &m.new);
    let (rt, txt) = status(&m, &shell);
    assert_eq!(rt["service"]["node"], m.new.display().to_string(), "{rt}");
    assert_eq!(rt["service"]["chosen_by"], "explicit", "{rt}");
    assert_eq!(rt["warnings"], serde_json::json!([]), "{rt}");
    assert!(txt.contains("(service, "), "{txt}");

    // A Node.js upgrade removed the pinned one.
    let gone = m.w.dir.path().join("nvm/versions/node/v24.11.0/bin/node");
    write_unit(&m, &gone);
    let (rt, txt) = status(&m, &shell);
    let warnings = rt["warnings"].to_string();
    assert!(warnings.contains("no longer exists"), "{rt}");
    assert!(warnings.contains(&gone.display().to_string()), "{rt}");
    assert!(
        txt.contains("warning: the pinned runtime no longer exists"),
        "{txt}"
    );

    // The service runs an older one than the shell.
    write_unit(&m, &m.old);
    let (rt, _) = status(&m, &shell);
    let warnings = rt["warnings"].to_string();
    assert!(
        warnings.contains("your shell runs Node.js v24.11.1"),
        "{rt}"
    );
    assert!(warnings.contains("v20.20.2"), "{rt}");
}
