//! `install`, `uninstall`, `start`, `stop`, `restart`, `logs`: the
//! instance as a systemd service. Unit templates live in `units/` and are
//! embedded here, so the binary and the repository cannot disagree.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Kind, Result};
use crate::instance::Instance;
use crate::log;
use crate::manager::systemd::{Scope, Systemd, UnitInfo};

pub const USER_UNIT: &str = include_str!("../units/systemd/user/paperclip@.service");
pub const SYSTEM_UNIT: &str = include_str!("../units/systemd/system/paperclip@.service");
/// Marks a unit file as ours: only such a file is ever replaced.
const MARKER: &str = "supervised by paperclipd";
pub const TEMPLATE_NAME: &str = "paperclip@.service";
/// Long enough for the slowest real start (the default ready timeout is 5
/// minutes; systemd's own start timeout ends the job earlier if progress
/// stops).
const JOB_TIMEOUT: Duration = Duration::from_secs(330);

/// Quotes a value for a unit file: `%` is a specifier, spaces and quotes
/// need C-style quoting.
fn unit_quote(s: &str) -> String {
    let escaped = s.replace('%', "%%");
    if escaped
        .chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\\' || c == '\'')
    {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

/// Renders a unit template: the absolute path of paperclipd and the
/// environment the installing user's setup needs.
pub fn render(template: &str, paperclipd: &Path, env: &[(&str, String)]) -> String {
    let env_lines: Vec<String> = env
        .iter()
        .map(|(k, v)| format!("Environment={}", unit_quote(&format!("{k}={v}"))))
        .collect();
    template
        .replace("@PAPERCLIPD@", &unit_quote(&paperclipd.to_string_lossy()))
        .replace(
            "@ENVIRONMENT@\n",
            &if env_lines.is_empty() {
                String::new()
            } else {
                env_lines.join("\n") + "\n"
            },
        )
}

pub fn unit_dir(scope: Scope) -> Result<PathBuf> {
    match scope {
        Scope::System => Ok(PathBuf::from("/etc/systemd/system")),
        Scope::User => {
            let base = std::env::var_os("XDG_CONFIG_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".config")))
                .ok_or_else(|| Error::config("cannot find the user's unit directory: neither XDG_CONFIG_HOME nor HOME is set"))?;
            Ok(base.join("systemd/user"))
        }
    }
}

/// Writes `content` to `path` atomically (temp file + fsync + rename),
/// refusing symlinks, foreign files and files that are not ours.
pub fn write_unit_file(path: &Path, content: &str) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(Error::config(format!(
                "{} is a symbolic link; paperclipd does not write through links. Remove it and retry",
                path.display()
            )));
        }
        Ok(m) if !m.is_file() => {
            return Err(Error::config(format!(
                "{} exists and is not a regular file; remove it and retry",
                path.display()
            )));
        }
        Ok(m) => {
            let euid = unsafe { libc::geteuid() };
            if m.uid() != euid {
                return Err(Error::config(format!(
                    "{} belongs to uid {}, not to you; refusing to replace it",
                    path.display(),
                    m.uid()
                )));
            }
            let old = fs::read_to_string(path).unwrap_or_default();
            if old == content {
                return Ok(false);
            }
            if !old.contains(MARKER) {
                return Err(Error::config(format!(
                    "{} exists and was not written by paperclipd; refusing to overwrite it. Move it aside and retry",
                    path.display()
                )));
            }
        }
        Err(_) => {}
    }
    let dir = path
        .parent()
        .ok_or_else(|| Error::config(format!("{} has no parent directory", path.display())))?;
    fs::create_dir_all(dir)
        .map_err(|e| Error::config(format!("cannot create {}: {e}", dir.display())))?;
    let tmp = dir.join(format!(
        ".{}.paperclipd-{}",
        TEMPLATE_NAME,
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        // Exactly 0644 whatever the umask: managers and users must read it.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::config(format!("cannot write {}: {e}", path.display()))
    })?;
    Ok(true)
}

pub struct InstallOptions {
    pub scope: Scope,
    pub now: bool,
    pub dry_run: bool,
    pub replace_upstream: bool,
    /// The home was chosen explicitly (flag or env): record it in the unit.
    pub explicit_home: bool,
}

pub async fn install(instance: &Instance, opts: &InstallOptions) -> Result<u8> {
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| Error::os(format!("cannot find paperclipd's own path: {e}")))?;
    let mut env: Vec<(&str, String)> = Vec::new();
    if opts.scope == Scope::User {
        if let Ok(p) = crate::supervise::child::default_program() {
            env.push(("PAPERCLIP_SHIM_PATH", p.to_string_lossy().into_owned()));
        }
        if opts.explicit_home {
            env.push((
                "PAPERCLIP_HOME",
                instance.home.to_string_lossy().into_owned(),
            ));
        }
    }
    let template = if opts.scope == Scope::User {
        USER_UNIT
    } else {
        SYSTEM_UNIT
    };
    let content = render(template, &exe, &env);
    let path = unit_dir(opts.scope)?.join(TEMPLATE_NAME);
    let unit = instance.unit_name();
    let flag = opts.scope.systemctl_flag();
    if opts.dry_run {
        crate::log::out(&format!("# would write {}:", path.display()));
        crate::log::out(&content);
        crate::log::out("# would call over D-Bus (org.freedesktop.systemd1.Manager):");
        crate::log::out("#   Reload()");
        crate::log::out(&format!(
            "#   EnableUnitFiles([\"{unit}\"], runtime=false, force=true)"
        ));
        if opts.now {
            crate::log::out(&format!(
                "#   StartUnit(\"{unit}\", \"replace\") and wait for JobRemoved (returns after READY=1)"
            ));
        }
        return Ok(0);
    }
    let sd = Systemd::connect_or_systemctl(opts.scope).await?;
    check_upstream(&sd, instance, opts.replace_upstream).await?;
    let changed = write_unit_file(&path, &content)?;
    log::info(&format!(
        "{} {}",
        if changed { "wrote" } else { "unchanged:" },
        path.display()
    ));
    sd.reload().await?;
    for (kind, from, to) in sd.enable(&unit).await? {
        log::info(&format!("{kind} {from} → {to}"));
    }
    // As `systemctl enable` does: reload again so the running manager sees
    // the new `WantedBy=` link (otherwise a stopped unit is unloaded at once
    // and its last result is lost).
    sd.reload().await?;
    log::info(&format!(
        "enabled {unit} (starts with your {} session)",
        if opts.scope == Scope::User {
            "user"
        } else {
            "system"
        }
    ));
    if opts.now {
        return start(&sd, instance, "start").await;
    }
    crate::log::out(&format!(
        "installed {unit}; start it with `paperclipd start -i {}` or `systemctl{flag} start {unit}`",
        instance.id
    ));
    Ok(0)
}

/// Upstream's own unit for the same instance would start a second server.
async fn check_upstream(sd: &Systemd, instance: &Instance, replace: bool) -> Result<()> {
    let up = instance.upstream_unit_name();
    let info = sd.unit_info(&up).await.ok().flatten();
    let enabled = sd
        .unit_file_state(&up)
        .await
        .is_some_and(|s| s.starts_with("enabled"));
    let running = info.as_ref().is_some_and(UnitInfo::is_running);
    if !enabled && !running {
        return Ok(());
    }
    let flag = sd.scope.systemctl_flag();
    if !replace {
        return Err(Error::busy(format!(
            "upstream's own unit {up} ({}) serves the same instance {:?}; two units would start two servers. \
             Disable it with `systemctl{flag} disable --now {up}`, or rerun with --replace-upstream",
            if running { "running" } else { "enabled" },
            instance.id.as_str()
        )));
    }
    log::info(&format!("stopping and disabling upstream's {up}"));
    let r = sd.job("stop", &up, JOB_TIMEOUT).await?;
    if r != "done" {
        return Err(Error::new(
            Kind::Failed,
            format!("stopping {up} ended with {r:?}; see `systemctl{flag} status {up}`"),
        ));
    }
    sd.disable(&up).await?;
    Ok(())
}

pub async fn uninstall(instance: &Instance, scope: Scope) -> Result<u8> {
    let sd = Systemd::connect_or_systemctl(scope).await?;
    let unit = instance.unit_name();
    if sd.unit_info(&unit).await?.is_some_and(|i| i.is_running()) {
        let r = sd.job("stop", &unit, JOB_TIMEOUT).await?;
        log::info(&format!("stopped {unit} ({r})"));
    }
    for (kind, from, _) in sd.disable(&unit).await? {
        log::info(&format!("{kind} {from}"));
    }
    let dir = unit_dir(scope)?;
    let path = dir.join(TEMPLATE_NAME);
    // Remove the template only when no other instance still uses it.
    let others = other_enabled_instances(&dir, &unit);
    if others.is_empty() {
        if let Ok(text) = fs::read_to_string(&path) {
            if text.contains(MARKER) {
                fs::remove_file(&path)
                    .map_err(|e| Error::config(format!("cannot remove {}: {e}", path.display())))?;
                log::info(&format!("removed {}", path.display()));
            }
        }
    } else {
        log::info(&format!(
            "kept {} (still used by {})",
            path.display(),
            others.join(", ")
        ));
    }
    sd.reload().await?;
    crate::log::out(&format!("uninstalled {unit}"));
    Ok(0)
}

/// `paperclip@*.service` links in any `*.wants` directory, except `unit`.
fn other_enabled_instances(dir: &Path, unit: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().ends_with(".wants") {
            continue;
        }
        if let Ok(links) = fs::read_dir(e.path()) {
            for l in links.flatten() {
                let name = l.file_name().to_string_lossy().into_owned();
                if name.starts_with("paperclip@") && name != unit && !out.contains(&name) {
                    out.push(name);
                }
            }
        }
    }
    out
}

/// `start` / `restart`: returns after READY=1, or explains the failure.
pub async fn start(sd: &Systemd, instance: &Instance, verb: &str) -> Result<u8> {
    let unit = instance.unit_name();
    let result = sd.job(verb, &unit, JOB_TIMEOUT).await?;
    let info = sd.unit_info(&unit).await?.unwrap_or_default();
    if result == "done" && info.active_state == "active" {
        crate::log::out(&format!(
            "{unit} is ready (pid {}): {}",
            info.main_pid, info.status_text
        ));
        return Ok(0);
    }
    Err(Error::new(
        Kind::Failed,
        failure_report(sd.scope, &unit, &result, &info),
    ))
}

pub async fn stop(sd: &Systemd, instance: &Instance) -> Result<u8> {
    let unit = instance.unit_name();
    let result = sd.job("stop", &unit, JOB_TIMEOUT).await?;
    let info = sd.unit_info(&unit).await?.unwrap_or_default();
    if result == "done" && info.active_state != "failed" {
        crate::log::out(&format!("{unit} stopped ({})", info.active_state));
        return Ok(0);
    }
    Err(Error::new(
        Kind::Failed,
        failure_report(sd.scope, &unit, &result, &info),
    ))
}

fn failure_report(scope: Scope, unit: &str, result: &str, info: &UnitInfo) -> String {
    let flag = scope.systemctl_flag();
    let mut msg = format!(
        "{unit}: job {result}; the unit is {} ({}), result {:?}, exit status {}",
        info.active_state, info.sub_state, info.result, info.exec_main_status
    );
    if !info.status_text.is_empty() {
        msg.push_str(&format!("\n  status: {}", info.status_text));
    }
    let lines = journal_tail(scope, unit, 15);
    if !lines.is_empty() {
        msg.push_str("\n  last journal lines:");
        for l in lines {
            msg.push_str("\n  | ");
            msg.push_str(&l);
        }
    }
    msg.push_str(&format!(
        "\nSee `paperclipd logs` or `systemctl{flag} status {unit}`."
    ));
    msg
}

fn journalctl_args(scope: Scope, unit: &str) -> Vec<String> {
    match scope {
        // `--user-unit` works for root (whose user units log to the system
        // journal) and for other users alike.
        Scope::User => vec!["--user-unit".into(), unit.into()],
        Scope::System => vec!["-u".into(), unit.into()],
    }
}

fn journal_tail(scope: Scope, unit: &str, n: usize) -> Vec<String> {
    let out = std::process::Command::new("journalctl")
        .args(journalctl_args(scope, unit))
        .args(["-n", &n.to_string(), "--no-pager", "-o", "cat", "-q"])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// `paperclipd logs`: the unit's journal, through journalctl.
pub fn logs(instance: &Instance, scope: Scope, follow: bool, lines: Option<usize>) -> Result<u8> {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("journalctl");
    cmd.args(journalctl_args(scope, &instance.unit_name()));
    cmd.args(["-n", &lines.unwrap_or(50).to_string(), "--no-pager"]);
    if follow {
        cmd.arg("-f");
    }
    let e = cmd.exec();
    Err(Error::new(
        if e.kind() == std::io::ErrorKind::NotFound {
            Kind::NotFound
        } else {
            Kind::Os
        },
        format!("cannot run journalctl: {e}; the logs are in systemd's journal"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_path_and_environment() {
        let u = render(
            USER_UNIT,
            Path::new("/opt/my tools/paperclipd"),
            &[("PAPERCLIP_HOME", "/h/100%".into())],
        );
        assert!(
            u.contains("ExecStart=\"/opt/my tools/paperclipd\" run --instance %i"),
            "{u}"
        );
        assert!(u.contains("Environment=PAPERCLIP_HOME=/h/100%%"), "{u}");
        assert!(!u.contains('@') || !u.contains("@PAPERCLIPD@"));
        let s = render(SYSTEM_UNIT, Path::new("/usr/bin/paperclipd"), &[]);
        assert!(s.contains("ExecStart=/usr/bin/paperclipd run --instance %i"));
        assert!(!s.contains("@ENVIRONMENT@"));
        for unit in [&u, &s] {
            for needed in [
                "Type=notify",
                "NotifyAccess=main",
                "KillMode=mixed",
                "RestartPreventExitStatus=75 78 126 127",
                "WatchdogSec=",
            ] {
                assert!(unit.contains(needed), "{needed}");
            }
            assert!(unit.contains(MARKER));
        }
    }

    #[test]
    fn refuses_foreign_and_linked_unit_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(TEMPLATE_NAME);
        fs::write(&p, "[Service]\nExecStart=/bin/mine\n").unwrap();
        assert_eq!(write_unit_file(&p, "x").unwrap_err().exit_code(), 78);
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "[Service]\nExecStart=/bin/mine\n"
        );
        fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &p).unwrap();
        assert_eq!(write_unit_file(&p, "x").unwrap_err().exit_code(), 78);
        fs::remove_file(&p).unwrap();
        let content = render(USER_UNIT, Path::new("/bin/paperclipd"), &[]);
        assert!(write_unit_file(&p, &content).unwrap());
        assert!(
            !write_unit_file(&p, &content).unwrap(),
            "unchanged content is not rewritten"
        );
    }
}

/// The same commands under launchd (macOS). Generic over the launchctl
/// runner, so the flows compile and are tested on Linux with a stand-in;
/// only `SystemLaunchctl` (the real /bin/launchctl) is macOS-only.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
pub mod launchd {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::write_unit_file;
    use crate::config::ProbeSettings;
    use crate::error::{Error, Kind, Result};
    use crate::instance::Instance;
    use crate::log;
    use crate::manager::launchd::{self as ld, Agent, Launchctl, Op};
    use crate::probe::Prober;

    pub struct Env<'a, L: Launchctl> {
        pub home: &'a Path,
        pub uid: u32,
        pub launchctl: &'a L,
        pub exe: &'a Path,
    }

    fn agent<'a, L: Launchctl>(e: &Env<'a, L>, instance: &'a Instance) -> Agent<'a, L> {
        Agent {
            instance,
            plist: ld::plist_path(e.home, instance),
            uid: e.uid,
            launchctl: e.launchctl,
        }
    }

    /// Upstream's own LaunchAgent for the instance would start a second server.
    fn check_upstream<L: Launchctl>(
        e: &Env<'_, L>,
        instance: &Instance,
        replace: bool,
    ) -> Result<()> {
        let label = ld::upstream_label(instance);
        for domain in ld::domains(e.uid) {
            let args = ld::launchctl_args(Op::Print, &domain, &label, Path::new(""));
            let (loaded, _, _) = e
                .launchctl
                .run(&args)
                .map_err(|err| Error::os(format!("cannot run launchctl: {err}")))?;
            if !loaded {
                continue;
            }
            if !replace {
                return Err(Error::busy(format!(
                    "upstream's own job {label} is loaded in {domain} and serves the same instance; two jobs would start two servers. \
                     Remove it with `launchctl bootout {domain}/{label}`, or rerun with --replace-upstream"
                )));
            }
            let out = ld::launchctl_args(Op::Bootout, &domain, &label, Path::new(""));
            e.launchctl
                .run(&out)
                .map_err(|err| Error::os(format!("cannot run launchctl: {err}")))?;
            log::info(&format!("booted out upstream's {domain}/{label}"));
        }
        Ok(())
    }

    pub fn install<L: Launchctl>(
        e: &Env<'_, L>,
        instance: &Instance,
        env: &[(&str, String)],
        now: Option<&ProbeSettings>,
        dry_run: bool,
        replace_upstream: bool,
    ) -> Result<u8> {
        let a = agent(e, instance);
        let mut vars = vec![("PATH", ld::default_path(e.home))];
        vars.extend(env.iter().cloned());
        let xml = ld::render(instance, e.exe, &vars);
        if dry_run {
            crate::log::out(&format!("# would write {}:", a.plist.display()));
            crate::log::out(&xml);
            crate::log::out(&format!(
                "# would run: launchctl bootstrap gui/{} {} (user/{} without a GUI session)",
                e.uid,
                a.plist.display(),
                e.uid
            ));
            return Ok(0);
        }
        check_upstream(e, instance, replace_upstream)?;
        std::fs::create_dir_all(instance.log_dir()).map_err(|err| {
            Error::config(format!(
                "cannot create {}: {err}",
                instance.log_dir().display()
            ))
        })?;
        let changed = write_unit_file(&a.plist, &xml)?;
        log::info(&format!(
            "{} {}",
            if changed { "wrote" } else { "unchanged:" },
            a.plist.display()
        ));
        // A changed plist takes effect only after the job is reloaded.
        if changed {
            a.bootout()?;
        }
        match now {
            Some(settings) => {
                let domain = a.start(false)?;
                log::info(&format!("loaded {domain}/{}", a.label()));
                wait_ready(settings, Duration::from_secs(330))?;
                crate::log::out(&format!("{} is ready", a.label()));
            }
            None => crate::log::out(&format!(
                "installed {}; it starts at login, or now with `paperclipd start -i {}`",
                a.plist.display(),
                instance.id
            )),
        }
        Ok(0)
    }

    pub fn uninstall<L: Launchctl>(e: &Env<'_, L>, instance: &Instance) -> Result<u8> {
        let a = agent(e, instance);
        a.bootout()?;
        if let Ok(text) = std::fs::read_to_string(&a.plist) {
            if text.contains(super::MARKER) {
                std::fs::remove_file(&a.plist).map_err(|err| {
                    Error::config(format!("cannot remove {}: {err}", a.plist.display()))
                })?;
                log::info(&format!("removed {}", a.plist.display()));
            }
        }
        crate::log::out(&format!("uninstalled {}", a.label()));
        Ok(0)
    }

    pub fn start<L: Launchctl>(
        e: &Env<'_, L>,
        settings: &ProbeSettings,
        restart: bool,
    ) -> Result<u8> {
        let a = agent(e, &settings.instance);
        if !a.plist.exists() {
            return Err(Error::config(format!(
                "{} does not exist; install it first with `paperclipd install -i {}`",
                a.plist.display(),
                settings.instance.id
            )));
        }
        a.start(restart)?;
        wait_ready(settings, Duration::from_secs(330))?;
        crate::log::out(&format!("{} is ready", a.label()));
        Ok(0)
    }

    pub fn stop<L: Launchctl>(e: &Env<'_, L>, instance: &Instance) -> Result<u8> {
        let a = agent(e, instance);
        let was = a.bootout()?;
        // bootout waits for the job to exit; the lock then frees.
        let deadline = Instant::now() + Duration::from_secs(60);
        while crate::lock::probe_holder(instance).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        crate::log::out(&format!(
            "{} {}",
            a.label(),
            if was { "stopped" } else { "was not loaded" }
        ));
        Ok(0)
    }

    /// Ready = the instance's lock is held (paperclipd runs it) and both
    /// probes pass.
    pub fn wait_ready(settings: &ProbeSettings, timeout: Duration) -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| Error::os(format!("cannot start the async runtime: {err}")))?;
        rt.block_on(async {
            let prober = Prober::new(settings.clone(), crate::probe::REQUEST_TIMEOUT)?;
            let start = Instant::now();
            let mut last = String::from("no probe yet");
            while start.elapsed() < timeout {
                if crate::lock::probe_holder(&settings.instance).is_some() {
                    let snap = prober.snapshot().await;
                    if snap.ready() {
                        return Ok(());
                    }
                    if let Some(api) = &snap.api {
                        last = format!(
                            "{api}{}",
                            snap.ui.map(|u| format!("; {u}")).unwrap_or_default()
                        );
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(Error::new(
                Kind::Unavailable,
                format!(
                    "instance {} was not ready within {}: {last}; see its log in {}",
                    settings.instance.id,
                    humantime::format_duration(timeout),
                    settings.instance.log_dir().display()
                ),
            ))
        })
    }
}

#[cfg(test)]
mod launchd_tests {
    use super::launchd::*;
    use crate::instance::{Instance, InstanceId};
    use crate::manager::launchd::Launchctl;

    struct AllOk(std::cell::RefCell<Vec<Vec<String>>>);
    impl Launchctl for AllOk {
        fn run(&self, args: &[String]) -> std::io::Result<(bool, String, String)> {
            self.0.borrow_mut().push(args.to_vec());
            // Nothing loaded yet; everything else succeeds.
            Ok((args[0] != "print", String::new(), String::new()))
        }
    }

    #[test]
    fn install_and_uninstall_write_and_remove_the_plist() {
        let d = tempfile::tempdir().unwrap();
        let inst = Instance::new(
            InstanceId::parse("mac").unwrap(),
            d.path().join(".paperclip"),
        );
        let l = AllOk(Default::default());
        let e = Env {
            home: d.path(),
            uid: 501,
            launchctl: &l,
            exe: std::path::Path::new("/usr/local/bin/paperclipd"),
        };
        assert_eq!(install(&e, &inst, &[], None, false, false).unwrap(), 0);
        let plist = d
            .path()
            .join("Library/LaunchAgents/ai.paperclip.paperclipd.mac.plist");
        let v: plist::Value = plist::from_file(&plist).unwrap();
        assert_eq!(
            v.as_dictionary().unwrap()["Label"].as_string(),
            Some("ai.paperclip.paperclipd.mac")
        );
        assert!(
            inst.log_dir().is_dir(),
            "the log directory exists for StandardOutPath"
        );
        // Upstream's job was looked for in both domains before writing.
        assert!(
            l.0.borrow()
                .iter()
                .any(|c| c == &["print", "gui/501/ing.paperclip.paperclipai.mac"])
        );
        assert_eq!(uninstall(&e, &inst).unwrap(), 0);
        assert!(!plist.exists());
    }
}
