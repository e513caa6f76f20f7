//! `paperclipd upgrade`: a fake `paperclipai` npm package (packed at test
//! time, its bin a Node.js shim that runs the protocol fixture with its
//! version) installed into a temp prefix, upgraded to another packed
//! version with the npm of the server's Node.js, npm kept offline.
#![cfg(target_os = "linux")]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// npm, offline, with a cache of the test's own.
fn npm_env(c: &mut Command, w: &World) {
    c.env("npm_config_cache", w.dir.path().join("npm-cache"))
        .env("npm_config_offline", "true")
        .env("npm_config_update_notifier", "false")
        .env("npm_config_audit", "false")
        .env("npm_config_fund", "false");
}

/// Packs paperclipai `version` requiring Node.js `engines`; its server is
/// the fixture with `extra` arguments. Returns the tarball.
fn package(w: &World, version: &str, engines: &str, extra: &[&str]) -> PathBuf {
    let dir = w.dir.path().join(format!("pkg-{version}"));
    std::fs::create_dir_all(&dir).expect("package dir");
    let manifest = serde_json::json!({
        "name": "paperclipai", "version": version,
        "engines": {"node": engines}, "bin": {"paperclipai": "cli.js"},
    });
    std::fs::write(dir.join("package.json"), manifest.to_string()).expect("package.json");
    let mut args: Vec<String> = vec![
        fixture().display().to_string(),
        "--port".into(),
        w.port.to_string(),
        "--state-dir".into(),
        w.state().display().to_string(),
        "--hot-restart".into(),
        "--agent".into(),
        "--api-ok-after".into(),
        "0.8".into(),
        "--behind-wrapper".into(),
        "--server-version".into(),
        version.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let cli = format!(
        "#!/usr/bin/env node\n\
         const {{ spawn }} = require('child_process');\n\
         const child = spawn({py}, {args}, {{ stdio: 'inherit' }});\n\
         for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(s, () => child.kill(s));\n\
         child.on('exit', (code) => process.exit(code === null ? 1 : code));\n",
        py = serde_json::json!(python()),
        args = serde_json::json!(args),
    );
    std::fs::write(dir.join("cli.js"), cli).expect("cli.js");
    let dest = w.dir.path().join("packed");
    std::fs::create_dir_all(&dest).expect("packed dir");
    let mut c = Command::new("npm");
    c.arg("pack").arg(&dir).arg("--pack-destination").arg(&dest);
    npm_env(&mut c, w);
    let o = c.output().expect("npm pack");
    assert!(o.status.success(), "{}", text(&o.stderr));
    dest.join(format!("paperclipai-{version}.tgz"))
}

fn prefix(w: &World) -> PathBuf {
    w.dir.path().join("prefix")
}

fn installed_version(w: &World) -> String {
    let p = prefix(w).join("lib/node_modules/paperclipai/package.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_default()).unwrap_or_default();
    v["version"].as_str().unwrap_or("").to_string()
}

/// Installs `tarball` into the prefix and runs the instance on its shim,
/// ready, with its agent. Returns the run and the agent's pid.
fn start(w: &World, tarball: &Path, ready_timeout: &str) -> (Running, i32) {
    let mut c = Command::new("npm");
    c.args(["install", "-g", "--prefix"])
        .arg(prefix(w))
        .arg(tarball);
    npm_env(&mut c, w);
    let o = c.output().expect("npm install");
    assert!(o.status.success(), "{}", text(&o.stderr));
    // An onboarded instance (Paperclip's default command needs its config).
    let root = w.home().join("instances/default");
    std::fs::create_dir_all(&root).expect("instance dir");
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let config = format!(r#"{{"server":{{"host":"127.0.0.1","port":{}}}}}"#, w.port);
    std::fs::write(root.join("config.json"), config).expect("config.json");
    let mut notify = w.notify_socket("n");
    let mut cmd = Command::new(bin());
    cmd.arg("run")
        .arg("--home")
        .arg(w.home())
        .arg("--url")
        .arg(w.url())
        .args(["--ready-timeout", ready_timeout])
        .env("PAPERCLIP_SHIM_PATH", prefix(w).join("bin/paperclipai"))
        .env("NOTIFY_SOCKET", &notify.path)
        .env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID")
        .env_remove("INVOCATION_ID")
        .stdin(std::process::Stdio::null());
    let mut r = w.spawn(cmd, "run");
    wait_until(DEADLINE, "the run to be ready or to end", || {
        r.stderr().contains("ready after") || r.child.try_wait().ok().flatten().is_some()
    });
    assert!(r.stderr().contains("ready after"), "{}", r.stderr());
    notify.wait_for("READY=1", DEADLINE);
    wait_until(DEADLINE, "the agent to start", || {
        w.state_file("agent.pid").is_some()
    });
    let agent = w
        .state_file("agent.pid")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    (r, agent)
}

fn upgrade(w: &World, to: &Path) -> Output {
    let mut c = Command::new(bin());
    c.arg("upgrade")
        .arg("--home")
        .arg(w.home())
        .arg(to)
        .env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID");
    npm_env(&mut c, w);
    c.output().expect("run paperclipd upgrade")
}

fn stop(mut run: Running, agent: i32) {
    signal(run.pid(), libc::SIGTERM);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(!pid_alive(agent), "the agent outlived the stop");
}

#[test]
fn an_upgrade_installs_the_new_version_keeps_the_agent_and_the_new_server_reports_it() {
    let w = World::new();
    let old = package(&w, "1.0.0", ">=18", &[]);
    let new = package(&w, "2.0.0", ">=18", &[]);
    let (run, agent) = start(&w, &old, "30s");
    let server = w.fixture_pid().unwrap_or(0);

    let out = upgrade(&w, &new);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{stderr}\n{}",
        run.stderr()
    );
    assert!(stdout.contains("1 run(s) adopted"), "{stdout}");
    assert!(stdout.contains("paperclipai 1.0.0 -> 2.0.0"), "{stdout}");
    assert_eq!(installed_version(&w), "2.0.0");
    assert_ne!(
        w.fixture_pid().unwrap_or(0),
        server,
        "the server was not replaced"
    );
    assert!(pid_alive(agent), "the upgrade ended the agent run");
    assert_eq!(
        w.state_file("adopted").unwrap_or_default().trim(),
        format!("run-{agent}")
    );
    stop(run, agent);
}

#[test]
fn a_package_whose_engines_refuse_the_servers_node_is_refused_before_anything_changes() {
    let w = World::new();
    let old = package(&w, "1.0.0", ">=18", &[]);
    let new = package(&w, "3.0.0", ">=99", &[]);
    let (run, agent) = start(&w, &old, "30s");
    let server = w.fixture_pid().unwrap_or(0);

    let out = upgrade(&w, &new);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("requires Node.js >=99"), "{stderr}");
    assert!(stderr.contains("Nothing was installed"), "{stderr}");
    assert_eq!(
        installed_version(&w),
        "1.0.0",
        "the refused package was installed"
    );
    assert_eq!(
        w.fixture_pid().unwrap_or(0),
        server,
        "the server was restarted"
    );
    assert!(pid_alive(server));
    assert!(pid_alive(agent));
    stop(run, agent);
}

#[test]
fn a_new_version_that_never_gets_ready_is_reported_with_the_command_that_reinstalls_the_old() {
    let w = World::new();
    let old = package(&w, "1.0.0", ">=18", &[]);
    let new = package(&w, "2.0.0", ">=18", &["--never-ready-after-hot-restart"]);
    let (mut run, agent) = start(&w, &old, "3s");

    let out = upgrade(&w, &new);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("the new server (paperclipai 2.0.0) did not become ready"),
        "{stderr}"
    );
    let reinstall = format!(
        "install -g --prefix {} paperclipai@1.0.0",
        prefix(&w).display()
    );
    assert!(stderr.contains(&reinstall), "{stderr}");
    assert!(stderr.contains("does not downgrade"), "{stderr}");
    // Not downgraded.
    assert_eq!(installed_version(&w), "2.0.0");
    // The instance was stopped, as a failed reload does.
    assert_ne!(run.code(), 0, "{}", run.stderr());
    assert!(!pid_alive(agent));
}

#[test]
fn a_new_server_that_reports_another_version_fails_the_upgrade() {
    let w = World::new();
    let old = package(&w, "1.0.0", ">=18", &[]);
    // Its bin starts a server that still says 1.0.0 (argparse: the last wins).
    let new = package(&w, "2.0.0", ">=18", &["--server-version", "1.0.0"]);
    let (run, agent) = start(&w, &old, "30s");
    let out = upgrade(&w, &new);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the restarted server reports version 1.0.0, not 2.0.0"),
        "{stderr}"
    );
    assert!(stderr.contains("paperclipai@1.0.0"), "{stderr}");
    assert!(pid_alive(agent));
    stop(run, agent);
}

#[test]
fn upgrade_of_an_instance_that_does_not_run_exits_3_and_installs_nothing() {
    let w = World::new();
    let new = package(&w, "2.0.0", ">=18", &[]);
    let out = upgrade(&w, &new);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("is not running under paperclipd"),
        "{stderr}"
    );
    assert!(!prefix(&w).exists());
}
