//! Resolution and checks against fake npm layouts: a shim linked as npm
//! links it, and fake `node` scripts that print a version.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use super::*;

fn executable(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// `<prefix>/bin/paperclipai` → `../lib/node_modules/paperclipai/dist/index.js`,
/// as `npm install -g --prefix <prefix>` creates it.
fn npm_prefix(prefix: &Path, engines: Option<&str>, shebang: &str) -> PathBuf {
    let pkg = prefix.join("lib/node_modules/paperclipai");
    let engines = engines.map_or(String::new(), |r| format!(r#","engines":{{"node":"{r}"}}"#));
    fs::create_dir_all(pkg.join("dist")).unwrap();
    fs::write(
        pkg.join("package.json"),
        format!(r#"{{"name":"paperclipai","version":"2026.916.1"{engines}}}"#),
    )
    .unwrap();
    executable(
        &pkg.join("dist/index.js"),
        &format!("{shebang}\nconsole.log(1)\n"),
    );
    fs::create_dir_all(prefix.join("bin")).unwrap();
    let shim = prefix.join("bin/paperclipai");
    symlink("../lib/node_modules/paperclipai/dist/index.js", &shim).unwrap();
    shim
}

/// A `node` that answers `--version` with `version`.
fn fake_node(dir: &Path, version: &str) -> PathBuf {
    let node = dir.join("node");
    executable(&node, &format!("#!/bin/sh\necho {version}\n"));
    node
}

fn path_of(dirs: &[&Path]) -> std::ffi::OsString {
    std::env::join_paths(dirs).unwrap()
}

#[test]
fn env_node_is_the_first_in_path_and_is_compared_with_engines() {
    let d = tempfile::tempdir().unwrap();
    let shim = npm_prefix(
        &d.path().join("npm"),
        Some(">=24.11.0"),
        "#!/usr/bin/env node",
    );
    let new = fake_node(&d.path().join("n24/bin"), "v24.11.1");
    let old = fake_node(&d.path().join("usr/bin"), "v20.20.2");

    let rt = resolve(
        &shim,
        Some(&path_of(&[new.parent().unwrap(), old.parent().unwrap()])),
        None,
    );
    assert_eq!(rt.node_path(), Some(new.as_path()));
    assert_eq!(
        rt.version().map(ToString::to_string).as_deref(),
        Some("v24.11.1")
    );
    assert_eq!(rt.problem(), None);
    assert!(rt.check(Context::Install).is_ok());
    assert!(rt.describe().contains("v24.11.1"), "{}", rt.describe());

    let path = path_of(&[old.parent().unwrap(), new.parent().unwrap()]);
    let rt = resolve(&shim, Some(&path), None);
    let e = rt.check(Context::Install).unwrap_err();
    assert_eq!(e.exit_code(), 78);
    for needed in [
        "v20.20.2",
        &old.display().to_string(),
        ">=24.11.0",
        "package.json",
        &format!("PATH={}", path.to_string_lossy()),
        "--node",
        "PAPERCLIP_NODE",
    ] {
        assert!(
            e.message.contains(needed),
            "{needed:?} not in: {}",
            e.message
        );
    }
}

#[test]
fn no_node_in_path_is_a_problem_that_names_the_path() {
    let d = tempfile::tempdir().unwrap();
    let shim = npm_prefix(
        &d.path().join("npm"),
        Some(">=24.11.0"),
        "#!/usr/bin/env node",
    );
    let empty = d.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let rt = resolve(&shim, Some(empty.as_os_str()), None);
    let p = rt.problem().expect("a problem");
    assert!(p.contains("no `node` in PATH="), "{p}");
    assert!(
        rt.check(Context::Run)
            .unwrap_err()
            .message
            .contains("paperclipd install")
    );
}

#[test]
fn an_explicit_node_goes_first_on_the_servers_path() {
    let d = tempfile::tempdir().unwrap();
    let shim = npm_prefix(&d.path().join("npm"), Some("^24.11"), "#!/usr/bin/env node");
    let new = fake_node(&d.path().join("n24/bin"), "v24.12.0");
    let old = fake_node(&d.path().join("usr/bin"), "v20.20.2");
    let path = path_of(&[old.parent().unwrap()]);

    let rt = resolve(&shim, Some(&path), Some(&new));
    assert_eq!(rt.problem(), None);
    let p = rt.path_override.expect("the chosen node's dir goes first");
    assert_eq!(p, path_of(&[new.parent().unwrap(), old.parent().unwrap()]));
    // Its bin directory names it too.
    let rt = resolve(&shim, Some(&path), Some(new.parent().unwrap()));
    assert_eq!(rt.node_path(), Some(new.as_path()));
    // Already first: nothing to change.
    let rt = resolve(&shim, Some(&path_of(&[new.parent().unwrap()])), Some(&new));
    assert_eq!(rt.path_override, None);

    let gone = d.path().join("nvm/v24.11.0/bin/node");
    let e = resolve(&shim, Some(&path), Some(&gone))
        .check(Context::Run)
        .unwrap_err();
    assert!(e.message.contains("does not exist"), "{}", e.message);
    assert!(
        e.message.contains(&gone.display().to_string()),
        "{}",
        e.message
    );
}

#[test]
fn a_fixed_shebang_names_the_node() {
    let d = tempfile::tempdir().unwrap();
    let old = fake_node(&d.path().join("old"), "v22.1.0");
    let shim = npm_prefix(
        &d.path().join("npm"),
        Some(">=24.11.0"),
        &format!("#!{}", old.display()),
    );
    let rt = resolve(&shim, None, None);
    assert_eq!(rt.node_path(), Some(old.as_path()));
    assert!(
        rt.problem().unwrap().contains("#! line"),
        "{:?}",
        rt.problem()
    );
    // A chosen node cannot change a fixed #! line.
    let new = fake_node(&d.path().join("new"), "v24.11.0");
    let p = resolve(&shim, None, Some(&new)).problem().unwrap();
    assert!(p.contains("always runs"), "{p}");
}

#[test]
fn a_shim_that_is_not_a_node_script_is_not_checked() {
    let d = tempfile::tempdir().unwrap();
    let shim = d.path().join("paperclipai");
    executable(&shim, "#!/bin/sh\nexec node x \"$@\"\n");
    let rt = resolve(&shim, Some(d.path().as_os_str()), None);
    assert!(matches!(rt.node, Node::Unknown(_)));
    assert_eq!(rt.problem(), None);
    assert!(rt.describe().contains("not checked"), "{}", rt.describe());
}

#[test]
fn without_engines_a_node_must_still_run() {
    let d = tempfile::tempdir().unwrap();
    let shim = npm_prefix(&d.path().join("npm"), None, "#!/usr/bin/env node");
    let any = fake_node(&d.path().join("a"), "v18.0.0");
    let rt = resolve(&shim, Some(any.parent().unwrap().as_os_str()), None);
    assert_eq!(rt.problem(), None);
    assert!(
        rt.describe().contains("declares no engines.node"),
        "{}",
        rt.describe()
    );

    let broken = d.path().join("b/node");
    executable(&broken, "#!/bin/sh\necho 'node: bad option' >&2\nexit 9\n");
    let p = resolve(&shim, Some(broken.parent().unwrap().as_os_str()), None)
        .problem()
        .unwrap();
    assert!(
        p.contains("cannot tell its version") && p.contains("bad option"),
        "{p}"
    );
}

#[test]
fn the_pin_puts_node_and_shim_first_and_unit_and_plist_agree() {
    let d = tempfile::tempdir().unwrap();
    let shim = npm_prefix(
        &d.path().join("my npm"),
        Some(">=24.11.0"),
        "#!/usr/bin/env node",
    );
    let node = fake_node(&d.path().join("n 24/bin"), "v24.11.1");
    let rt = resolve(&shim, Some(node.parent().unwrap().as_os_str()), None);
    let home = Path::new("/Users/u");
    let pin = pin::Pin {
        shim: rt.shim.clone(),
        node: rt.node_path().map(Path::to_path_buf),
    };
    let plist_env = pin.path_environment(&crate::launchd::plist::default_path(home));
    let unit_env = pin.unit_environment("/home/u/.local/bin");
    let pinned = format!(
        "{}:{}:",
        node.parent().unwrap().display(),
        shim.parent().unwrap().display()
    );

    // Render both, then read them back: the drop-in as systemd would (the
    // last assignment wins), the plist with a real plist parser.
    let unit =
        crate::systemd::unit::render_dropin(std::time::Duration::from_secs(30), &unit_env).unwrap();
    let from_unit = crate::systemd::unit::environment(&unit, "/home/u");
    let last = |k: &str| {
        from_unit
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let unit_path = last("PAPERCLIPD_PATH_PREPEND").unwrap();
    assert_eq!(unit_path, format!("{pinned}/home/u/.local/bin"));
    assert_eq!(last("PATH"), None, "the manager's PATH is kept");
    assert_eq!(last("PAPERCLIP_NODE"), Some(node.display().to_string()));
    assert_eq!(
        last("PAPERCLIP_SHIM_PATH"),
        Some(shim.display().to_string())
    );

    let inst = crate::instance::Instance::new(
        crate::instance::InstanceId::parse("default").unwrap(),
        home.join(".paperclip"),
    );
    let xml = crate::launchd::plist::render(
        &inst,
        Path::new("/usr/local/bin/paperclipd"),
        &plist_env,
        std::time::Duration::from_secs(45),
        &crate::launchd::early_errors::path(home, &inst.id),
    )
    .unwrap();
    let v: plist::Value = plist::from_bytes(xml.as_bytes()).expect("a valid plist");
    let vars = v.as_dictionary().unwrap()["EnvironmentVariables"]
        .as_dictionary()
        .unwrap();
    let plist_path = vars["PATH"].as_string().unwrap();
    assert!(plist_path.starts_with(&pinned), "{plist_path}");
    assert_eq!(
        vars["PAPERCLIP_NODE"].as_string(),
        Some(node.display().to_string().as_str())
    );
    assert_eq!(
        vars["PAPERCLIP_SHIM_PATH"].as_string(),
        Some(shim.display().to_string().as_str())
    );
    // The same pinned directories in both, in the same order.
    assert_eq!(
        plist_path.split(':').take(2).collect::<Vec<_>>(),
        unit_path.split(':').take(2).collect::<Vec<_>>()
    );
}

/// Issue 19 item 2: version managers' directories are recognized (a
/// cleanup removes them); nothing under a runtime or temporary directory
/// is accepted; the directory is resolved, the file name kept.
#[test]
fn version_managers_volatile_roots_and_stable_paths() {
    for (p, want) in [
        (
            "/home/u/.nvm/versions/node/v24.11.1/bin/node",
            Some(("nvm", "v24.11.1")),
        ),
        (
            "/home/u/.local/share/fnm/node-versions/v24.12.0/installation/bin/node",
            Some(("fnm", "v24.12.0")),
        ),
        (
            "/home/u/.volta/tools/image/node/24.11.1/bin/node",
            Some(("Volta", "24.11.1")),
        ),
        (
            "/home/u/.asdf/installs/nodejs/24.11.1/bin/node",
            Some(("asdf", "24.11.1")),
        ),
        (
            "/home/u/.local/share/mise/installs/node/24.11.1/bin/node",
            Some(("mise", "24.11.1")),
        ),
        (
            "/usr/local/n/versions/node/24.11.1/bin/node",
            Some(("n", "24.11.1")),
        ),
        ("/home/u/.volta/bin/node", None),
        ("/usr/bin/node", None),
    ] {
        let got = pin::version_manager(Path::new(p));
        assert_eq!(got.as_ref().map(|(m, v)| (*m, v.as_str())), want, "{p}");
    }
    for p in [
        "/tmp/x/node",
        "/run/user/1000/fnm_multishells/1_2/bin/node",
        "/dev/shm/node",
    ] {
        assert!(pin::volatile_root(Path::new(p)).is_some(), "{p}");
    }
    assert!(pin::volatile_root(Path::new("/usr/bin/node")).is_none());
    let d = tempfile::tempdir().unwrap();
    let real = d.path().join("versions/v24/bin");
    std::fs::create_dir_all(&real).unwrap();
    std::os::unix::fs::symlink(d.path().join("versions/v24"), d.path().join("shell")).unwrap();
    assert_eq!(
        pin::stable(&d.path().join("shell/bin/node")),
        real.canonicalize().unwrap().join("node")
    );
}

/// Issue 20, item 5: `status` on macOS warns before the next start when
/// the Node.js pinned in the LaunchAgent is gone or too old, as on Linux.
/// The plist is written by `install` (against the launchctl stand-in) and
/// read back by status's own LaunchAgent path.
#[test]
fn status_warns_when_the_node_pinned_in_the_plist_is_gone_or_too_old() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path();
    let shim = npm_prefix(&home.join("npm"), Some(">=24.11.0"), "#!/usr/bin/env node");
    let node = fake_node(&home.join("n24/bin"), "v24.11.1");
    let rt = resolve(&shim, Some(node.parent().unwrap().as_os_str()), None);
    let env = pin::Pin {
        shim: rt.shim.clone(),
        node: rt.node_path().map(Path::to_path_buf),
    }
    .path_environment(&crate::launchd::plist::default_path(home));
    let inst = crate::instance::Instance::new(
        crate::instance::InstanceId::parse("default").unwrap(),
        home.join(".paperclip"),
    );
    let l = crate::launchd::standin::StandIn::default();
    let e = crate::launchd::commands::Env {
        home,
        uid: 501,
        launchctl: &l,
        exe: Path::new("/opt/homebrew/opt/paperclipd/bin/paperclipd"),
    };
    crate::launchd::commands::install(&e, &inst, &env, None, false, false).unwrap();
    let view = || {
        view::status_view_with(
            &inst,
            false,
            crate::launchd::plist::service_environment(home, &inst),
        )
        .unwrap()
    };
    let v = view();
    assert!(
        v.service_file
            .unwrap()
            .ends_with("ai.paperclip.paperclipd.default.plist")
    );
    assert!(
        !v.warnings.iter().any(|w| w.contains("will not start")),
        "{:?}",
        v.warnings
    );

    fake_node(&home.join("n24/bin"), "v22.1.0");
    let w = view().warnings.join("\n");
    assert!(w.contains("the service will not start"), "{w}");
    assert!(w.contains("Node.js v22.1.0") || w.contains("22.1.0"), "{w}");

    fs::remove_file(&node).unwrap();
    let w = view().warnings.join("\n");
    assert!(w.contains("the pinned runtime no longer exists"), "{w}");
}
