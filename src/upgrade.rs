//! `paperclipd upgrade [VERSION]`: installs another paperclipai with the
//! npm of the Node.js the running server uses, into the shim's prefix,
//! after checking the new package's `engines.node` against that Node.js;
//! then hot-restarts (`reload`'s code path) and checks the new server's
//! `serverVersion`. Never downgrades on its own.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::error::{Error, Kind, Result};
use crate::installed::ServerOrigin;
use crate::instance::Instance;
use crate::log;
use crate::runtime::interpreter;
use crate::runtime::range::Range;

/// The Node.js and npm of the running server, and where its shim lives.
struct Npm {
    node: PathBuf,
    cli: PathBuf,
    /// The directory whose `bin/paperclipai` is the shim.
    prefix: PathBuf,
    path: OsString,
}

impl Npm {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.node);
        c.arg(&self.cli).env("PATH", &self.path);
        c
    }

    /// The command line a user types to install `spec` into the prefix.
    fn install_line(&self, spec: &str) -> String {
        format!(
            "{} {} install -g --prefix {} {}",
            quote(&self.node.display().to_string()),
            quote(&self.cli.display().to_string()),
            quote(&self.prefix.display().to_string()),
            quote(spec)
        )
    }
}

fn quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-@+=:,".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// npm's own script beside `node`: `<bin>/npm` is a link to it (or, in a
/// tarball layout without the link, `<bin>/../lib/node_modules/npm`).
fn npm_cli(node: &Path) -> Option<PathBuf> {
    let bin = node.parent()?;
    let linked = bin.join("npm").canonicalize().ok();
    let beside = bin.join("../lib/node_modules/npm/bin/npm-cli.js");
    linked
        .filter(|p| p.extension().is_some_and(|e| e == "js"))
        .or_else(|| {
            beside
                .is_file()
                .then(|| beside.canonicalize().unwrap_or(beside))
        })
}

/// What the running instance's supervisor recorded about its server.
fn origin(instance: &Instance) -> Result<(ServerOrigin, crate::config::ProbeSpec)> {
    let not_running = || {
        Error::new(
            Kind::NotRunning,
            format!(
                "instance {:?} is not running under paperclipd here, so there is no server to \
                 upgrade in place. Install with `npm install -g paperclipai@VERSION` and start it \
                 (`paperclipd start --instance {0}`)",
                instance.id.as_str()
            ),
        )
    };
    let holder = crate::lock::observe(instance)
        .holder
        .ok_or_else(not_running)?;
    let record = holder.record.ok_or_else(not_running)?;
    let probe = record.probe.ok_or_else(not_running)?;
    let server = record.server.ok_or_else(|| {
        Error::config(format!(
            "instance {:?} runs its own server command (`run -- COMMAND`), not Paperclip's \
             `paperclipai`: upgrade that command yourself, then `paperclipd reload`",
            instance.id.as_str()
        ))
    })?;
    Ok((server, probe))
}

fn npm_for(server: &ServerOrigin) -> Result<Npm> {
    let shim = PathBuf::from(&server.shim);
    let prefix = shim
        .parent()
        .filter(|d| d.file_name().is_some_and(|n| n == "bin"))
        .and_then(Path::parent)
        .ok_or_else(|| {
            Error::config(format!(
                "the server's shim {} is not <prefix>/bin/paperclipai, so paperclipd cannot tell \
                 which npm prefix to install into; upgrade with npm yourself, then `paperclipd reload`",
                shim.display()
            ))
        })?
        .to_path_buf();
    let node = server.node.as_deref().map(PathBuf::from).ok_or_else(|| {
        Error::config(format!(
            "the server's shim {} does not say which Node.js runs it (it is not a Node.js \
             script), so paperclipd cannot check the new package's engines.node; upgrade with \
             npm yourself, then `paperclipd reload`",
            shim.display()
        ))
    })?;
    let cli = npm_cli(&node).ok_or_else(|| {
        Error::new(
            Kind::NotFound,
            format!(
                "no npm beside the server's Node.js {} (neither {}/npm nor lib/node_modules/npm): \
                 install npm for that Node.js, or upgrade with the npm you use, then `paperclipd reload`",
                node.display(),
                node.parent().unwrap_or(Path::new("/")).display()
            ),
        )
    })?;
    let dir = node.parent().unwrap_or(Path::new("/"));
    let path = interpreter::prepend(dir, std::env::var_os("PATH").as_deref());
    Ok(Npm {
        node,
        cli,
        prefix,
        path,
    })
}

/// `VERSION` as npm takes it: a local file or directory becomes absolute
/// (npm runs elsewhere); anything else is a version or tag of paperclipai.
fn npm_spec(version: Option<&str>) -> String {
    match version {
        None => "paperclipai@latest".to_string(),
        Some(v) if Path::new(v).exists() => {
            std::path::absolute(v).map_or_else(|_| v.to_string(), |p| p.display().to_string())
        }
        Some(v) if v.starts_with("paperclipai@") => v.to_string(),
        Some(v) => format!("paperclipai@{v}"),
    }
}

fn run_npm(npm: &Npm, args: &[&str], what: &str) -> Result<Output> {
    let out = npm.command().args(args).output().map_err(|e| {
        Error::os(format!(
            "cannot run {} {}: {e}",
            npm.node.display(),
            npm.cli.display()
        ))
    })?;
    if out.status.success() {
        return Ok(out);
    }
    Err(Error::new(
        Kind::Failed,
        format!(
            "npm failed to {what} ({}): {}\nNothing was restarted; the server runs as before",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    ))
}

/// A staging directory of this upgrade, removed when dropped.
struct Stage(PathBuf);

impl Stage {
    fn new(instance: &Instance) -> Result<Stage> {
        let dir = instance
            .root()
            .join(format!("paperclipd-upgrade.{}", std::process::id()));
        // A leftover of a killed upgrade with our pid is ours to replace.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).map_err(|e| {
            Error::os(format!(
                "cannot make the staging directory {}: {e}",
                dir.display()
            ))
        })?;
        Ok(Stage(dir))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The package's manifest, read from the tarball npm packed.
struct Manifest {
    version: String,
    engines_node: Option<String>,
}

fn manifest_of(tarball: &Path) -> Result<Manifest> {
    let out = Command::new("tar")
        .arg("-xzOf")
        .arg(tarball)
        .arg("package/package.json")
        .output()
        .map_err(|e| Error::os(format!("cannot run tar to read {}: {e}", tarball.display())))?;
    let bad = |why: String| {
        Error::config(format!(
            "{} is not a paperclipai package ({why}); nothing was installed or restarted",
            tarball.display()
        ))
    };
    if !out.status.success() {
        return Err(bad(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| bad(format!("package.json: {e}")))?;
    if v["name"].as_str() != Some("paperclipai") {
        return Err(bad(format!("its name is {}", v["name"])));
    }
    let version = v["version"]
        .as_str()
        .ok_or_else(|| bad("no version".to_string()))?
        .to_string();
    Ok(Manifest {
        version,
        engines_node: v
            .pointer("/engines/node")
            .and_then(|e| e.as_str())
            .map(str::to_string),
    })
}

/// Refuses (exit 78) when the server's Node.js does not satisfy `m`.
fn check_engines(m: &Manifest, npm: &Npm) -> Result<()> {
    let Some(raw) = &m.engines_node else {
        log::warn(&format!(
            "paperclipai {} declares no engines.node; nothing to check against Node.js {}",
            m.version,
            npm.node.display()
        ));
        return Ok(());
    };
    let range = Range::parse(raw).map_err(|e| {
        Error::config(format!(
            "paperclipai {} requires Node.js {raw:?}, which paperclipd cannot read ({e}); \
             nothing was installed or restarted",
            m.version
        ))
    })?;
    let have = interpreter::version_of(&npm.node).map_err(|e| {
        Error::config(format!(
            "cannot tell the version of the server's Node.js {}: {e}; nothing was installed or restarted",
            npm.node.display()
        ))
    })?;
    if range.matches(&have) {
        return Ok(());
    }
    Err(Error::config(format!(
        "paperclipai {} requires Node.js {raw} (engines.node), but the instance's server runs \
         Node.js {have} ({}). Nothing was installed and the server was not restarted. Install a \
         Node.js that satisfies {raw}, pin it with `paperclipd install --node PATH` and restart, \
         then upgrade again; or choose a version for Node.js {have}: `paperclipd upgrade VERSION`",
        m.version,
        npm.node.display()
    )))
}

/// Runs one upgrade; 0 once the new server passed both probes, its report
/// was read, and it reports the version installed.
pub fn command(
    rt: &tokio::runtime::Runtime,
    instance: &Instance,
    version: Option<&str>,
) -> Result<u8> {
    let (server, probe) = origin(instance)?;
    let npm = npm_for(&server)?;
    let shim = PathBuf::from(&server.shim);
    let installed_version = || match crate::paperclip::engines(&shim) {
        crate::paperclip::Engines::Node { package, .. }
        | crate::paperclip::Engines::Undeclared(package) => {
            crate::installed::package_version(&package)
        }
        _ => None,
    };
    let old = installed_version().or(server.package_version.clone());
    let spec = npm_spec(version);

    // Fetch the package alone (`npm pack` runs none of its scripts) into
    // a staging directory and read its manifest: nothing is installed
    // before its engines.node was checked.
    let stage = Stage::new(instance)?;
    let tarball = fetch(&npm, &stage, &spec)?;
    let manifest = manifest_of(&tarball)?;
    check_engines(&manifest, &npm)?;
    let new = manifest.version.clone();
    let old_text = old.clone().unwrap_or_else(|| "(unknown)".to_string());

    install_tarball(&npm, &tarball, &new, &old_text)?;
    drop(stage);
    let prefix_text = npm.prefix.display().to_string();
    let back = old
        .as_deref()
        .map(|v| npm.install_line(&format!("paperclipai@{v}")))
        .unwrap_or_else(|| npm.install_line("paperclipai@PREVIOUS_VERSION"));
    // Said first, plainly; what went wrong (the probes' diagnostics) after.
    let failed = |kind: Kind, what: String, detail: String| {
        Error::new(
            kind,
            format!(
                "{what}. paperclipai {new} stays installed in {prefix_text}: paperclipd does not \
                 downgrade on its own, because the new server may have migrated the database \
                 (migrations only go forward). To go back to {old_text} anyway: `{back}`, then \
                 `paperclipd restart --instance {}`.\n{detail}",
                instance.id.as_str()
            ),
        )
    };
    restart_and_check(rt, instance, &probe, &shim, &new, &failed)?;
    log::out(&format!(
        "paperclipai {old_text} -> {new}; the server reports {new}\n"
    ));
    Ok(0)
}

/// Fetches the package alone into `stage` (`npm pack` runs none of its
/// scripts); returns the file it wrote.
fn fetch(npm: &Npm, stage: &Stage, spec: &str) -> Result<PathBuf> {
    log::info(&format!(
        "fetching {spec} with {} {}",
        npm.node.display(),
        npm.cli.display()
    ));
    let stage_dir = stage.path().display().to_string();
    let packed = run_npm(
        npm,
        &["pack", spec, "--json", "--pack-destination", &stage_dir],
        &format!("fetch {spec}"),
    )?;
    let listed: serde_json::Value = serde_json::from_slice(&packed.stdout).unwrap_or_default();
    let file = listed[0]["filename"].as_str().ok_or_else(|| {
        Error::new(
            Kind::Failed,
            format!(
                "npm pack {spec} did not name the file it wrote: {}; nothing was installed or restarted",
                String::from_utf8_lossy(&packed.stdout).trim()
            ),
        )
    })?;
    // npm names scoped or odd files its own way; only the base name counts.
    Ok(stage
        .path()
        .join(Path::new(file).file_name().unwrap_or_default()))
}

/// Installs exactly what was checked: the packed file itself.
fn install_tarball(npm: &Npm, tarball: &Path, new: &str, old_text: &str) -> Result<()> {
    let tarball_text = tarball.display().to_string();
    let prefix_text = npm.prefix.display().to_string();
    log::info(&format!(
        "installing paperclipai {new} (was {old_text}) into {prefix_text}"
    ));
    run_npm(
        npm,
        &[
            "install",
            "-g",
            "--prefix",
            &prefix_text,
            "--no-fund",
            "--no-audit",
            &tarball_text,
        ],
        &format!("install paperclipai {new} into {prefix_text}"),
    )?;
    Ok(())
}

/// Restarts the server in place and checks that it reports `new`; a
/// failure is worded by `failed`.
fn restart_and_check(
    rt: &tokio::runtime::Runtime,
    instance: &Instance,
    probe: &crate::config::ProbeSpec,
    shim: &Path,
    new: &str,
    failed: &dyn Fn(Kind, String, String) -> Error,
) -> Result<()> {
    let announce = format!(
        "paperclipai {new} installed; restarting in place (a hot restart): the agent runs are kept"
    );
    if let Err(e) = crate::reload::command(instance, false, false, Some(&announce)) {
        return Err(failed(
            e.kind,
            format!("the new server (paperclipai {new}) did not become ready"),
            format!("What the reload said: {}", e.message),
        ));
    }
    let settings = crate::config::probe_settings(instance.clone(), probe)?;
    let prober = crate::probe::Prober::new(settings, std::time::Duration::from_secs(10))?;
    let reported = rt.block_on(prober.server_version());
    match reported.as_deref() {
        Some(v) if v == new => Ok(()),
        other => Err(failed(
            Kind::Failed,
            format!(
                "the restarted server reports version {}, not {new}: it does not run the \
                 package just installed (is {} the shim it starts?)",
                other.unwrap_or("(none)"),
                shim.display()
            ),
            String::new(),
        )),
    }
}
