//! `paperclipd`: makes a Paperclip instance a trustworthy service.
//!
//! Layout (each module owns one thing):
//! * [`cli`]: clap definitions, raw flags only;
//! * [`config`]: flags + `paperclipd.toml` + Paperclip's `config.json` +
//!   defaults → validated settings (nothing touched before this passes);
//! * [`instance`]: the instance id and every name derived from it;
//! * [`lock`]: the per-instance `flock` and its diagnostic record;
//! * [`supervise`]: the `run` loop: spawn, readiness, watchdog, stop, reap;
//! * [`probe`]: the API and UI probes and their verdicts;
//! * [`notify`]: systemd's `sd_notify` protocol;
//! * [`manager`]: which service manager started us;
//! * [`procfs`]: what /proc says about processes, ports and locks;
//! * [`error`]: one error type whose kind decides the exit code.
//!
//! `main` only parses, dispatches, prints an error once, and maps it to the
//! documented exit code.

mod cli;
mod config;
mod error;
mod instance;
mod lock;
mod log;
mod manager;
mod notify;
mod probe;
mod procfs;
mod service;
mod status;
mod supervise;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use error::{Error, Result};

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
    match cli.command {
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
                explicit_home: args.managed.home.is_some(),
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
    let id = instance::InstanceId::parse(&a.instance)?;
    let home = instance::resolve_home(a.home.as_deref())?;
    Ok(instance::Instance::new(id, home))
}

/// `paperclipd probe`: both probes once, now.
async fn probe_once(settings: config::ProbeSettings, json: bool) -> Result<u8> {
    let prober = probe::Prober::new(settings.clone(), probe::REQUEST_TIMEOUT)?;
    let listening = prober.listening().await;
    let (api, ui) = match &listening {
        Ok(()) => {
            let (a, u) = prober.both().await;
            (Some(a), u)
        }
        Err(_) => (None, None),
    };
    let ready = api.as_ref().is_some_and(|a| a.ready) && ui.as_ref().is_none_or(|u| u.ready);
    if json {
        let v = serde_json::json!({
            "instance": settings.instance.id.as_str(),
            "url": settings.url.as_str(),
            "mode": settings.mode.as_str(),
            "listening": listening.is_ok(),
            "connect_error": listening.as_ref().err().map(supervise::readiness::describe_io),
            "ready": ready,
            "probes": { "api": api, "ui": ui },
        });
        crate::log::out(
            &serde_json::to_string_pretty(&v)
                .map_err(|e| Error::os(e.to_string()))?
                .to_string(),
        );
    } else {
        match &listening {
            Err(e) => crate::log::out(&format!(
                "not ready: nothing accepts connections on {} ({}); no HTTP request sent",
                settings.url,
                supervise::readiness::describe_io(e)
            )),
            Ok(()) => {
                if let Some(a) = &api {
                    crate::log::out(&format!("{a}"));
                }
                if let Some(u) = &ui {
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
