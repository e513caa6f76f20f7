//! Input validation and exit codes of the built binary: nothing is created
//! or overwritten on bad input.

mod support;

use std::fs;
use std::process::Command;

use support::*;

fn paperclipd(args: &[&str], home: &std::path::Path) -> std::process::Output {
    // `--home` goes right after the subcommand: after `--` it would be part
    // of the server command.
    let mut c = Command::new(bin());
    match args.split_first() {
        Some((sub, rest)) if !sub.starts_with('-') => c.arg(sub).arg("--home").arg(home).args(rest),
        _ => c.args(args),
    };
    c.env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("run paperclipd")
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_instance_ids_exit_78_and_create_nothing() {
    let w = World::new();
    for bad in ["..", "a/b", "", &"x".repeat(65), "é", "-rf", "a b"] {
        let flag = format!("--instance={bad}");
        let o = paperclipd(&["run", &flag, "--", "true"], &w.home());
        assert_eq!(o.status.code(), Some(78), "{bad:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("invalid instance id"), "{}", stderr(&o));
        assert!(!w.home().exists(), "{bad:?} created the home");
    }
}

#[test]
fn bad_toml_exits_78_naming_file_line_and_key() {
    let w = World::new();
    let cases = [
        ("url = \"http://127.0.0.1:1\"\nbogus_key = 1\n", "bogus_key"),
        ("ready_timeout = 5\n", "line 1"),
        ("mode = \"sideways\"\n", "sideways"),
        ("stop_timeout = \"-1s\"\n", "invalid duration"),
        ("command = []\n", "empty"),
        ("url = \"http://user:hunter2@127.0.0.1:1\"\n", "credentials"),
        ("url = \"ftp://127.0.0.1:1\"\n", "not http"),
        ("ready_timeout = \"100000h\"\n", "out of range"),
        ("[env]\nNOTIFY_SOCKET = \"x\"\n", "NOTIFY_SOCKET"),
        ("url = [\n", "line 1"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let cfg = w.dir.path().join(format!("c{i}.toml"));
        fs::write(&cfg, text).unwrap();
        let o = paperclipd(
            &["run", "--config", cfg.to_str().unwrap(), "--", "true"],
            &w.home(),
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(78), "{text:?}: {err}");
        assert!(
            err.contains(needle),
            "{text:?} should mention {needle:?}: {err}"
        );
        assert!(!err.contains("hunter2"), "the password was echoed: {err}");
        assert_eq!(
            fs::read_to_string(&cfg).unwrap(),
            *text,
            "the config file was changed"
        );
        assert!(!w.home().exists());
    }
    let o = paperclipd(&["run", "--config", cases[0].0], &w.home());
    assert_eq!(
        o.status.code(),
        Some(78),
        "a missing --config file: {}",
        stderr(&o)
    );
}

#[test]
fn malformed_paperclip_config_json_is_78() {
    let w = World::new();
    let root = w.home().join("instances/default");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("config.json"), "{\"server\": {\"port\": \"x\"}}").unwrap();
    let o = paperclipd(&["run", "--", "true"], &w.home());
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert!(stderr(&o).contains("server.port"), "{}", stderr(&o));
}

#[test]
fn usage_errors_exit_2() {
    let w = World::new();
    for args in [
        vec!["run", "--bogus"],
        vec!["run", "--ready-timeout", "soon"],
        vec!["run", "--mode", "x"],
        vec!["frobnicate"],
    ] {
        let o = paperclipd(&args, &w.home());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn missing_command_is_127_and_unexecutable_is_126() {
    let w = World::new();
    let o = paperclipd(&["run", "--", "/nonexistent/server"], &w.home());
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    let o = paperclipd(&["run", "--", "no-such-server-program-xyz"], &w.home());
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    let script = w.dir.path().join("not-exec.sh");
    fs::write(&script, "#!/bin/sh\n").unwrap();
    let o = paperclipd(&["run", "--", script.to_str().unwrap()], &w.home());
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    assert!(stderr(&o).contains("chmod +x"), "{}", stderr(&o));
}

#[test]
fn default_command_not_installed_says_how_to_install() {
    let w = World::new();
    let o = Command::new(bin())
        .args(["run", "--home"])
        .arg(w.home())
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", w.dir.path())
        .env_remove("PAPERCLIP_SHIM_PATH")
        .env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("npm install -g paperclipai"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn default_command_without_config_and_without_terminal_is_78_with_onboarding_command() {
    let w = World::new();
    let shim = w.dir.path().join("paperclipai");
    fs::write(&shim, "#!/bin/sh\necho should-not-run >&2\nexit 9\n").unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut fs::metadata(&shim).unwrap().permissions(),
        0o755,
    );
    fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = Command::new(bin())
        .args(["run", "--home"])
        .arg(w.home())
        .env("PAPERCLIP_SHIM_PATH", &shim)
        .env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(78), "{err}");
    assert!(err.contains("onboard"), "{err}");
    assert!(err.contains(shim.to_str().unwrap()), "{err}");
    assert!(!err.contains("should-not-run"));
}

#[test]
fn lock_path_that_is_a_symlink_or_directory_is_refused() {
    let w = World::new();
    let root = w.home().join("instances/default");
    fs::create_dir_all(&root).unwrap();
    let target = w.dir.path().join("precious");
    fs::write(&target, "keep me").unwrap();
    std::os::unix::fs::symlink(&target, root.join("paperclipd.lock")).unwrap();
    let o = paperclipd(
        &["run", "--url", "http://127.0.0.1:9", "--", "true"],
        &w.home(),
    );
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
    assert_eq!(fs::read_to_string(&target).unwrap(), "keep me");
    fs::remove_file(root.join("paperclipd.lock")).unwrap();
    fs::create_dir(root.join("paperclipd.lock")).unwrap();
    let o = paperclipd(
        &["run", "--url", "http://127.0.0.1:9", "--", "true"],
        &w.home(),
    );
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
}

#[test]
fn world_writable_instance_root_is_refused() {
    let w = World::new();
    let root = w.home().join("instances/default");
    fs::create_dir_all(&root).unwrap();
    fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let o = paperclipd(
        &["run", "--url", "http://127.0.0.1:9", "--", "true"],
        &w.home(),
    );
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert!(stderr(&o).contains("chmod o-w"), "{}", stderr(&o));
}

#[test]
fn lock_file_has_mode_0600_and_a_record() {
    let w = World::new();
    let o = paperclipd(
        &["run", "--url", &w.url(), "--", "sh", "-c", "exit 7"],
        &w.home(),
    );
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let meta = fs::metadata(w.lock_path("default")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let root_meta = fs::metadata(w.home().join("instances/default")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&root_meta.permissions()) & 0o777,
        0o700
    );
}

#[test]
fn probe_reports_each_verdict_and_exit_code() {
    let w = World::new();
    // Nothing listens: not ready, no request.
    let o = paperclipd(&["probe", "--url", &w.url()], &w.home());
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("no HTTP request sent"));
    // A "starting" server: not ready, with the reason.
    let mut fx = Command::new("python3")
        .arg(fixture())
        .args(["--port", &w.port.to_string(), "--state-dir"])
        .arg(w.state())
        .args(["--api-ok-after", "1.5"])
        .spawn()
        .unwrap();
    wait_until(DEADLINE, "the fixture to listen", || {
        w.state_file("listening_at").is_some()
    });
    let o = paperclipd(&["probe", "--url", &w.url(), "--json"], &w.home());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    if v["ready"] == false {
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(v["probes"]["api"]["health_status"], "starting");
    }
    wait_until(DEADLINE, "probe to pass", || {
        paperclipd(&["probe", "--url", &w.url()], &w.home())
            .status
            .code()
            == Some(0)
    });
    let o = paperclipd(&["probe", "--url", &w.url(), "--json"], &w.home());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ready"], true);
    assert_eq!(v["probes"]["api"]["http_status"], 200);
    assert_eq!(v["probes"]["ui"]["content_type"], "text/html");
    let o = paperclipd(
        &["probe", "--url", &w.url(), "--ui-path", "/missing"],
        &w.home(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("404"));
    signal(fx.id(), libc::SIGTERM);
    let _ = fx.wait();
}

#[test]
fn help_and_version_exit_0() {
    let w = World::new();
    for args in [vec!["--help"], vec!["--version"], vec!["run", "--help"]] {
        let o = Command::new(bin()).args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}");
    }
    drop(w);
}

#[test]
fn install_dry_run_prints_the_units_and_writes_nothing() {
    // Not under /tmp: `install` refuses to pin a paperclipai there.
    let w = World::new_in(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli"));
    let cfg = w.dir.path().join("xdg");
    // `install` needs Paperclip installed (tests/runtime.rs checks how it
    // pins the runtime); a wrapper script is not a Node.js script, so it is
    // pinned without a Node.js check.
    let shim = w.dir.path().join("bin/paperclipai");
    fs::create_dir_all(shim.parent().unwrap()).unwrap();
    fs::write(&shim, "#!/bin/sh\nexit 9\n").unwrap();
    fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for (flags, needle) in [
        (vec![], "WantedBy=default.target"),
        (vec!["--system"], "User=paperclip"),
    ] {
        let o = Command::new(bin())
            .arg("install")
            .args(&flags)
            .args(["-i", "dry", "--dry-run"])
            .env("XDG_CONFIG_HOME", &cfg)
            .env("HOME", w.dir.path())
            .env("PAPERCLIP_SHIM_PATH", &shim)
            .env_remove("PAPERCLIP_NODE")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{flags:?}: {}", stderr(&o));
        assert!(out.contains(needle), "{out}");
        assert!(
            out.contains(&format!(
                "ExecStart={} run --instance %i",
                std::fs::canonicalize(bin()).unwrap().display()
            )),
            "{out}"
        );
        assert!(
            out.contains("EnableUnitFiles([\"paperclip@dry.service\"]"),
            "{out}"
        );
        assert!(
            !out.contains("@PAPERCLIPD@") && !out.contains("@ENVIRONMENT@"),
            "{out}"
        );
    }
    assert!(!cfg.exists(), "--dry-run wrote something");
}

/// `install --system` refuses a unit that could not start: no `paperclip`
/// user (217/USER) or a binary the sandbox hides (203/EXEC, here /tmp under
/// PrivateTmp=). Both are checked before anything is written.
#[test]
fn install_system_refuses_a_unit_that_could_not_start() {
    let d = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
    let copy = d.path().join("paperclipd");
    copy_executable(bin(), &copy);
    // Paperclip is installed (a wrapper shim, pinned as it is): only the
    // unit's reach is wrong.
    let shim = d.path().join("paperclipai");
    fs::write(&shim, "#!/bin/sh\nexit 9\n").unwrap();
    fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = Command::new(&copy)
        .args(["install", "--system", "-i", "refused"])
        .env("HOME", d.path())
        .env("PAPERCLIP_SHIM_PATH", &shim)
        .env_remove("PAPERCLIP_NODE")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(78), "{err}");
    assert!(
        err.contains("217/USER") || err.contains("203/EXEC"),
        "{err}"
    );
    assert!(err.contains("expected"), "says what was expected: {err}");
}

#[test]
fn status_of_a_stopped_instance_exits_3() {
    let w = World::new();
    let (code, v, err) = w.status_json();
    assert_eq!(code, 3, "{err}");
    assert_eq!(v["state"], "stopped");
    assert!(
        v["manager"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("D-Bus"),
        "{v}"
    );
}

#[test]
fn completions_and_man_page_are_generated_from_the_cli() {
    for shell in ["bash", "zsh", "fish"] {
        let o = Command::new(bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{shell}");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("paperclipd") && text.contains("install"),
            "{shell}: {text}"
        );
    }
    // The bash script is valid bash.
    let o = Command::new(bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    let script = World::new();
    let path = script.dir.path().join("c.bash");
    fs::write(&path, &o.stdout).unwrap();
    assert!(
        Command::new("bash")
            .arg("-n")
            .arg(&path)
            .status()
            .unwrap()
            .success()
    );
    let o = Command::new(bin()).arg("manpage").output().unwrap();
    let roff = String::from_utf8_lossy(&o.stdout);
    assert!(roff.contains(".TH paperclipd 1"), "{roff}");
    assert!(
        roff.contains("readiness timed out"),
        "the exit codes are in the man page"
    );
}

/// Regression (found by the system-manager e2e): `status --system` needs no
/// HOME; the system unit's home is /var/lib/paperclip.
#[test]
fn status_system_without_home_uses_the_system_units_home() {
    let o = std::process::Command::new(support::bin())
        .args(["status", "--system", "--json"])
        .env_remove("HOME")
        .env_remove("PAPERCLIP_HOME")
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_ne!(o.status.code(), Some(78), "{err}");
    assert!(!err.contains("HOME is not set"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON status");
    assert_eq!(v["instance"], "default");
}

/// A probe path is a path on the server's own URL. `//host/x` (and
/// `/\host/x`, which URLs read the same way) named another host: the
/// probes, and a `run`'s readiness, went to a stranger.
#[test]
fn a_probe_path_that_leads_to_another_host_is_78() {
    let w = World::new();
    for (flag, bad) in [
        ("--api-path", "//example.com/api/health"),
        ("--ui-path", "/\\example.com/"),
        ("--api-path", "//127.0.0.2:3100/api/health"),
    ] {
        let o = paperclipd(
            &[
                "run",
                "--url",
                "http://127.0.0.1:3100",
                flag,
                bad,
                "--",
                "true",
            ],
            &w.home(),
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(78), "{bad:?}: {err}");
        assert!(err.contains("another host"), "{bad:?}: {err}");
        assert!(err.contains("/api/health"), "{bad:?}: {err}");
        assert!(!w.home().exists(), "{bad:?} created the home");
    }
}

#[test]
fn version_names_the_target_and_the_commit() {
    let o = Command::new(bin()).arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&o.stdout);
    // paperclipd 0.1.0 (x86_64-unknown-linux-gnu, commit 2ae1815bcd1c)
    let inner = v
        .trim()
        .strip_prefix(concat!("paperclipd ", env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version: {v}"));
    let (target, commit) = inner.split_once(", commit ").unwrap();
    assert!(
        target.starts_with(std::env::consts::ARCH) && target.contains(std::env::consts::OS),
        "{target}"
    );
    // Built from a git checkout: its HEAD.
    let head = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short=12",
            "HEAD",
        ])
        .output();
    if let Some(h) = head.ok().filter(|h| h.status.success()) {
        assert_eq!(commit, String::from_utf8_lossy(&h.stdout).trim());
    }
}
