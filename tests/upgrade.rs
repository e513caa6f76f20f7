//! Upgrades under a running instance, black-box (issue 19 item 11):
//! `status` (text and `--json`) says when the running paperclipd or server
//! is no longer what is installed (its binary replaced or removed, the
//! paperclipai package's version changed since the start), and when the
//! next start would fail (the pinned Node.js gone, or too old for the
//! installed `engines.node`) — while it still runs, before any restart.
#![cfg(target_os = "linux")]

mod support;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

const DEADLINE: Duration = Duration::from_secs(30);

fn executable(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// `status --json` and `status` with the settings of `w`: (exit code,
/// JSON, text).
fn status(w: &World, env: &[(&str, &Path)]) -> (i32, serde_json::Value, String) {
    let run = |json: bool| {
        let mut c = w.status_cmd();
        if json {
            c.arg("--json");
        }
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run paperclipd status")
    };
    let o = run(true);
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    let t = run(false);
    (
        o.status.code().unwrap_or(-1),
        v,
        String::from_utf8_lossy(&t.stdout).into_owned(),
    )
}

fn wait_ready(w: &World, env: &[(&str, &Path)], r: &mut Running) {
    wait_until(DEADLINE, "status: ready", || {
        let exited = r.child.try_wait().expect("try_wait");
        assert!(
            exited.is_none(),
            "run exited ({exited:?}) before it was ready: {}",
            r.stderr()
        );
        status(w, env).0 == 0
    });
}

fn warnings(v: &serde_json::Value) -> String {
    v["upgrade"]["warnings"].to_string()
}

#[test]
fn status_warns_when_the_running_paperclipd_was_replaced_or_removed() {
    let w = World::new();
    // The paperclipd under test runs from a copy that the "upgrade" replaces.
    let installed = w.dir.path().join("bin/paperclipd");
    fs::create_dir_all(installed.parent().unwrap()).unwrap();
    copy_executable(bin(), &installed);
    let template = w.run_cmd(&[], &[]);
    let mut cmd = Command::new(&installed);
    cmd.args(template.get_args());
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut r = w.spawn(cmd, "run");
    wait_ready(&w, &[], &mut r);

    let (code, v, txt) = status(&w, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["upgrade"]["warnings"], serde_json::json!([]), "{v}");
    assert!(!txt.contains("warning:"), "{txt}");

    // `cargo install`, `apt upgrade`: a new file renamed over the old one.
    let new = w.dir.path().join("bin/paperclipd.new");
    copy_executable(bin(), &new);
    fs::rename(&new, &installed).unwrap();
    let (code, v, txt) = status(&w, &[]);
    assert_eq!(code, 0, "still ready: {v}");
    let warn = warnings(&v);
    assert!(warn.contains("was replaced"), "{v}");
    assert!(warn.contains(&installed.display().to_string()), "{v}");
    assert!(warn.contains("restart"), "{v}");
    assert_eq!(v["upgrade"]["paperclipd"]["state"], "replaced", "{v}");
    assert!(txt.contains("warning: the running paperclipd"), "{txt}");

    // Removed (`apt remove`) with the instance still running.
    fs::remove_file(&installed).unwrap();
    let (_, v, txt) = status(&w, &[]);
    assert_eq!(v["upgrade"]["paperclipd"]["state"], "removed", "{v}");
    assert!(warnings(&v).contains("no longer exists"), "{v}");
    assert!(txt.contains("warning: the running paperclipd"), "{txt}");

    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
}

/// An npm prefix with paperclipai `version` needing `engines`, and a fake
/// `node` that says v24.11.1 and otherwise becomes the fixture server.
struct Npm {
    shim: PathBuf,
    package: PathBuf,
    node: PathBuf,
}

impl Npm {
    fn new(w: &World) -> Npm {
        let root = w.dir.path();
        let pkg = root.join("npm/lib/node_modules/paperclipai");
        executable(
            &pkg.join("dist/index.js"),
            "#!/usr/bin/env node\nimport('x')\n",
        );
        let shim = root.join("npm/bin/paperclipai");
        fs::create_dir_all(shim.parent().unwrap()).unwrap();
        symlink("../lib/node_modules/paperclipai/dist/index.js", &shim).unwrap();
        let node = root.join("node-v24.11.1/bin/node");
        executable(
            &node,
            &format!(
                "#!/bin/sh\n[ \"$1\" = --version ] && {{ echo v24.11.1; exit 0; }}\n\
                 exec /usr/bin/python3 '{f}' --port {p} --state-dir '{s}'\n",
                f = fixture().display(),
                p = w.port,
                s = w.state().display()
            ),
        );
        let inst = w.home().join("instances/default");
        fs::create_dir_all(&inst).unwrap();
        fs::write(
            inst.join("config.json"),
            format!(r#"{{"server":{{"host":"127.0.0.1","port":{}}}}}"#, w.port),
        )
        .unwrap();
        let npm = Npm {
            shim,
            package: pkg.join("package.json"),
            node,
        };
        npm.publish("2026.916.1", ">=24.11.0");
        npm
    }

    /// `npm i -g paperclipai@version`: a new package.json.
    fn publish(&self, version: &str, engines: &str) {
        let tmp = self.package.with_extension("json.new");
        fs::write(
            &tmp,
            format!(
                r#"{{"name":"paperclipai","version":"{version}","engines":{{"node":"{engines}"}}}}"#
            ),
        )
        .unwrap();
        fs::rename(&tmp, &self.package).unwrap();
    }
}

#[test]
fn status_warns_when_paperclipai_changed_and_when_the_next_start_would_fail() {
    let w = World::new();
    let npm = Npm::new(&w);
    // Paperclip's default command, with the node pinned as a unit pins it.
    let env: [(&str, &Path); 2] = [
        ("PAPERCLIP_SHIM_PATH", &npm.shim),
        ("PAPERCLIP_NODE", &npm.node),
    ];
    let mut cmd = Command::new(bin());
    cmd.arg("run")
        .arg("--home")
        .arg(w.home())
        .args(["--url", &w.url()])
        .env("PATH", "/usr/bin:/bin")
        .env("XDG_RUNTIME_DIR", w.dir.path())
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}/nobus", w.dir.path().display()),
        )
        .env_remove("NOTIFY_SOCKET")
        .env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID")
        .env_remove("INVOCATION_ID")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut r = w.spawn(cmd, "run");
    wait_ready(&w, &env, &mut r);
    let (_, v, _) = status(&w, &env);
    assert_eq!(v["upgrade"]["warnings"], serde_json::json!([]), "{v}");
    assert_eq!(
        v["upgrade"]["server"]["package_version"], "2026.916.1",
        "{v}"
    );

    // `npm i -g paperclipai@latest` under the running server, needing a
    // newer Node.js than the pinned one.
    npm.publish("2026.1201.0", ">=24.12.0");
    let (code, v, txt) = status(&w, &env);
    assert_eq!(code, 0, "still ready: {v}");
    let warn = warnings(&v);
    assert!(warn.contains("paperclipai 2026.916.1"), "{v}");
    assert!(warn.contains("2026.1201.0 is installed"), "{v}");
    assert!(warn.contains("the next start will fail"), "{v}");
    assert!(warn.contains(">=24.12.0"), "{v}");
    assert!(warn.contains("v24.11.1"), "{v}");
    assert!(
        txt.contains("warning: the server runs paperclipai 2026.916.1"),
        "{txt}"
    );

    // nvm removed the pinned node under the running server.
    npm.publish("2026.916.1", ">=24.11.0");
    fs::remove_file(&npm.node).unwrap();
    let (_, v, txt) = status(&w, &env);
    let warn = warnings(&v);
    assert!(warn.contains("the next start will fail"), "{v}");
    assert!(warn.contains(&npm.node.display().to_string()), "{v}");
    assert!(warn.contains("no longer exists"), "{v}");
    assert!(txt.contains("the next start will fail"), "{txt}");

    signal(r.pid(), libc::SIGTERM);
    assert_eq!(r.code(), 0, "{}", r.stderr());
}
