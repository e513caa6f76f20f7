//! `paperclipd`: parse, dispatch, print an error once, map it to the
//! documented exit code. The parts live in the library (`src/lib.rs`).

use std::process::ExitCode;

use clap::Parser;

use paperclipd::cli::{self, Cli, Command};
use paperclipd::error::{Error, Result};
use paperclipd::{config, instance, log, manager, probe, service, status, supervise};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print to stdout and exit 0; real usage
            // errors exit 2, as documented.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            log::error(&e.message);
            ExitCode::from(e.exit_code())
        }
    }
}

fn dispatch(cli: Cli) -> Result<u8> {
    // One thread is enough: the work is waiting. It also keeps the thread
    // that forks the server alive for as long as the process (see
    // `supervise::child` on PR_SET_PDEATHSIG).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::os(format!("cannot start the async runtime: {e}")))?;
    #[cfg(target_os = "macos")]
    if let Some(result) = macos::dispatch(&cli.command) {
        return result;
    }
    match cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "paperclipd", &mut buf);
            log::out(&String::from_utf8_lossy(&buf));
            Ok(0)
        }
        Command::Manpage => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .map_err(|e| Error::os(format!("cannot render the man page: {e}")))?;
            log::out(&String::from_utf8_lossy(&buf));
            Ok(0)
        }
        Command::Run(args) => {
            let settings = config::resolve_run_settings(&args)?;
            rt.block_on(supervise::run(settings))
        }
        Command::Probe(args) => {
            let settings = config::resolve_probe_settings(&args.selection)?;
            rt.block_on(probe_once(settings, args.json))
        }
        Command::Status(args) => {
            let settings = config::resolve_probe_settings(&args.selection)?;
            rt.block_on(status::status(settings, scope(args.system), args.json))
        }
        Command::Install(args) => {
            let instance = managed_instance(&args.managed)?;
            let opts = service::InstallOptions {
                scope: scope(args.managed.system),
                now: args.now,
                dry_run: args.dry_run,
                replace_upstream: args.replace_upstream,
                explicit_home: args.managed.target.home.is_some(),
            };
            rt.block_on(service::install(&instance, &opts))
        }
        Command::Uninstall(a) => {
            let instance = managed_instance(&a)?;
            rt.block_on(service::uninstall(&instance, scope(a.system)))
        }
        Command::Start(a) => rt.block_on(lifecycle(&a, "start")),
        Command::Restart(a) => rt.block_on(lifecycle(&a, "restart")),
        Command::Stop(a) => {
            let instance = managed_instance(&a)?;
            rt.block_on(async {
                let sd = manager::systemd::Systemd::connect_or_systemctl(scope(a.system)).await?;
                service::stop(&sd, &instance).await
            })
        }
        Command::Logs(a) => {
            let instance = managed_instance(&a.managed)?;
            service::logs(&instance, scope(a.managed.system), a.follow, a.lines)
        }
    }
}

/// Probe settings for a managed instance (its config files included).
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
fn probe_settings_for(a: &cli::ManagedArgs) -> Result<config::ProbeSettings> {
    config::resolve_probe_settings(&cli::Selection {
        target: a.target.clone(),
        ..Default::default()
    })
}

/// macOS: the same commands through launchd. Only this dispatch and the
/// real launchctl runner are macOS-only; the flows are portable and tested
/// on Linux (`service::launchd`).
#[cfg(target_os = "macos")]
mod macos {
    use super::*;
    use manager::launchd::SystemLaunchctl;
    use service::launchd as svc;

    pub fn dispatch(cmd: &Command) -> Option<Result<u8>> {
        if !matches!(
            cmd,
            Command::Install(_)
                | Command::Uninstall(_)
                | Command::Start(_)
                | Command::Restart(_)
                | Command::Stop(_)
                | Command::Logs(_)
        ) {
            return None;
        }
        Some(run(cmd))
    }

    fn run(cmd: &Command) -> Result<u8> {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(std::path::PathBuf::from)
            .ok_or_else(|| {
                Error::config("HOME is not set; launchd agents live in ~/Library/LaunchAgents")
            })?;
        let exe = std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .map_err(|e| Error::os(format!("cannot find paperclipd's own path: {e}")))?;
        let uid = unsafe { libc::getuid() };
        let l = SystemLaunchctl;
        let env = svc::Env {
            home: &home,
            uid,
            launchctl: &l,
            exe: &exe,
        };
        match cmd {
            Command::Install(a) => {
                let inst = managed_instance(&a.managed)?;
                let mut vars: Vec<(&str, String)> = Vec::new();
                if let Ok(p) = supervise::child::default_program() {
                    vars.push(("PAPERCLIP_SHIM_PATH", p.to_string_lossy().into_owned()));
                }
                if a.managed.target.home.is_some() {
                    vars.push(("PAPERCLIP_HOME", inst.home.to_string_lossy().into_owned()));
                }
                let settings = if a.now {
                    Some(probe_settings_for(&a.managed)?)
                } else {
                    None
                };
                svc::install(
                    &env,
                    &inst,
                    &vars,
                    settings.as_ref(),
                    a.dry_run,
                    a.replace_upstream,
                )
            }
            Command::Uninstall(a) => svc::uninstall(&env, &managed_instance(a)?),
            Command::Start(a) => svc::start(&env, &probe_settings_for(a)?, false),
            Command::Restart(a) => svc::start(&env, &probe_settings_for(a)?, true),
            Command::Stop(a) => svc::stop(&env, &managed_instance(a)?),
            Command::Logs(a) => {
                use std::os::unix::process::CommandExt;
                let inst = managed_instance(&a.managed)?;
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
            _ => Ok(0),
        }
    }
}

/// `start` / `restart`: the job, then READY=1 (or why not).
async fn lifecycle(a: &cli::ManagedArgs, verb: &str) -> Result<u8> {
    let instance = managed_instance(a)?;
    let sd = manager::systemd::Systemd::connect_or_systemctl(scope(a.system)).await?;
    service::start(&sd, &instance, verb).await
}

fn scope(system: bool) -> manager::systemd::Scope {
    if system {
        manager::systemd::Scope::System
    } else {
        manager::systemd::Scope::User
    }
}

fn managed_instance(a: &cli::ManagedArgs) -> Result<instance::Instance> {
    config::resolve_instance(&a.target)
}

/// `paperclipd probe`: both probes once, now.
async fn probe_once(settings: config::ProbeSettings, json: bool) -> Result<u8> {
    let prober = probe::Prober::new(settings.clone(), probe::REQUEST_TIMEOUT)?;
    let snap = prober.snapshot().await;
    let ready = snap.ready();
    if json {
        let v = serde_json::json!({
            "instance": settings.instance.id.as_str(),
            "url": settings.url.as_str(),
            "mode": settings.mode.as_str(),
            "listening": snap.listening(),
            "connect_error": snap.connect_error,
            "ready": ready,
            "probes": { "api": snap.api, "ui": snap.ui },
        });
        crate::log::out(
            &serde_json::to_string_pretty(&v)
                .map_err(|e| Error::os(e.to_string()))?
                .to_string(),
        );
    } else {
        match &snap.connect_error {
            Some(e) => crate::log::out(&format!(
                "not ready: nothing accepts connections on {} ({e}); no HTTP request sent",
                settings.url,
            )),
            None => {
                if let Some(a) = &snap.api {
                    crate::log::out(&format!("{a}"));
                }
                if let Some(u) = &snap.ui {
                    crate::log::out(&format!("{u}"));
                }
                crate::log::out(&format!(
                    "{} ({} mode)",
                    if ready { "ready" } else { "not ready" },
                    settings.mode.as_str()
                ));
            }
        }
    }
    Ok(if ready { 0 } else { 1 })
}
