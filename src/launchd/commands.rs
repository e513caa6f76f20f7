//! `install`, `uninstall`, `start`, `stop`, `restart`, `logs` under
//! launchd. Generic over the launchctl runner, so the flows compile and are
//! tested on Linux with a stand-in; only [`dispatch`] and the real runner
//! are macOS-only.

use std::path::Path;
use std::time::{Duration, Instant};

use super::launchctl::{self as ld, Agent, Launchctl, Op};
use super::{domains, plist, plist_path};
use crate::config::ProbeSettings;
use crate::error::{Error, Kind, Result};
use crate::instance::Instance;
use crate::probe::Prober;
use crate::{log, owned_file, paperclip};

pub struct Env<'a, L: Launchctl> {
    pub home: &'a Path,
    pub uid: u32,
    pub launchctl: &'a L,
    pub exe: &'a Path,
}

fn agent<'a, L: Launchctl>(e: &Env<'a, L>, instance: &'a Instance) -> Agent<'a, L> {
    Agent {
        instance,
        plist: plist_path(e.home, &instance.id),
        uid: e.uid,
        launchctl: e.launchctl,
    }
}

/// Upstream's own LaunchAgent for the instance would start a second server.
fn check_upstream<L: Launchctl>(e: &Env<'_, L>, instance: &Instance, replace: bool) -> Result<()> {
    let label = paperclip::upstream_label(&instance.id);
    for domain in domains(e.uid) {
        let args = ld::launchctl_args(Op::Print, &domain, &label, Path::new(""));
        let (loaded, _, _) = e
            .launchctl
            .run(&args)
            .map_err(|err| Error::os(format!("cannot run launchctl: {err}")))?;
        if !loaded {
            continue;
        }
        if !replace {
            let up = paperclip::UpstreamService {
                name: label.clone(),
                disable_with: format!("launchctl bootout {domain}/{label}"),
            };
            return Err(Error::busy(format!(
                "{}, or rerun with --replace-upstream",
                up.conflict(&instance.id, &format!("loaded in {domain}"))
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
    // A pinned runtime brings its own PATH (see `runtime::pin`).
    let mut vars = Vec::new();
    if !env.iter().any(|(k, _)| *k == "PATH") {
        vars.push(("PATH", plist::default_path(e.home)));
    }
    vars.extend(env.iter().cloned());
    let xml = plist::render(instance, e.exe, &vars);
    if dry_run {
        log::out(&format!("# would write {}:", a.plist.display()));
        log::out(&xml);
        log::out(&format!(
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
    let changed = owned_file::write(&a.plist, &xml)?;
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
            log::out(&format!("{} is ready", a.label()));
        }
        None => log::out(&format!(
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
    if owned_file::remove(&a.plist)? {
        log::info(&format!("removed {}", a.plist.display()));
    }
    log::out(&format!("uninstalled {}", a.label()));
    Ok(0)
}

pub fn start<L: Launchctl>(e: &Env<'_, L>, settings: &ProbeSettings, restart: bool) -> Result<u8> {
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
    log::out(&format!("{} is ready", a.label()));
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
    log::out(&format!(
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

/// The lifecycle commands of the CLI, through launchd (macOS).
#[cfg(target_os = "macos")]
pub fn dispatch(_rt: &tokio::runtime::Runtime, cmd: crate::cli::Command) -> Result<u8> {
    use super::launchctl::SystemLaunchctl;
    use crate::cli::Command;
    use crate::config;
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from)
        .ok_or_else(|| {
            Error::config("HOME is not set; launchd agents live in ~/Library/LaunchAgents")
        })?;
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| Error::os(format!("cannot find paperclipd's own path: {e}")))?;
    let l = SystemLaunchctl;
    let env = Env {
        home: &home,
        uid: crate::sys::uid(),
        launchctl: &l,
        exe: &exe,
    };
    let probe_settings = |a: &crate::cli::ManagedArgs| {
        config::resolve_probe_settings(&crate::cli::Selection {
            target: a.target.clone(),
            ..Default::default()
        })
    };
    match cmd {
        Command::Install(a) => {
            let inst = config::resolve_instance(&a.managed.target)?;
            // The Node.js the user's shell runs, checked and pinned.
            let node = a.node.as_deref().filter(|p| !p.as_os_str().is_empty());
            let mut vars = crate::runtime::pin::launchd_environment(&home, &inst, node)?;
            if a.managed.target.home.is_some() {
                vars.push(("PAPERCLIP_HOME", inst.home.to_string_lossy().into_owned()));
            }
            let settings = if a.now {
                Some(probe_settings(&a.managed)?)
            } else {
                None
            };
            install(
                &env,
                &inst,
                &vars,
                settings.as_ref(),
                a.dry_run,
                a.replace_upstream,
            )
        }
        Command::Uninstall(a) => uninstall(&env, &config::resolve_instance(&a.target)?),
        Command::Start(a) => start(&env, &probe_settings(&a)?, false),
        Command::Restart(a) => start(&env, &probe_settings(&a)?, true),
        Command::Stop(a) => stop(&env, &config::resolve_instance(&a.target)?),
        Command::Logs(a) => {
            use std::os::unix::process::CommandExt;
            let inst = config::resolve_instance(&a.managed.target)?;
            let mut tail = std::process::Command::new("tail");
            tail.args(["-n", &a.lines.unwrap_or(50).to_string()]);
            if a.follow {
                tail.arg("-F");
            }
            tail.arg(inst.log_dir().join("paperclipd.out.log"));
            tail.arg(inst.log_dir().join("paperclipd.err.log"));
            let e = tail.exec();
            Err(Error::os(format!("cannot run tail: {e}")))
        }
        _ => Err(Error::os("not a lifecycle command".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::{Instance, InstanceId};
    use crate::launchd::launchctl::Launchctl;

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
        let v: ::plist::Value = ::plist::from_file(&plist).unwrap();
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
