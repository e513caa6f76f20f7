//! Which part runs each subcommand: one match, no work of its own.

use crate::cli::{Cli, Command};
use crate::error::{Error, Result};
use crate::{config, log, probe, status, supervise};

#[cfg(target_os = "macos")]
use crate::launchd::commands as service;
#[cfg(not(target_os = "macos"))]
use crate::systemd::commands as service;

/// Runs the parsed command; returns the exit code.
pub fn dispatch(cli: Cli) -> Result<u8> {
    // One thread is enough: the work is waiting. It also keeps the thread
    // that forks the server alive for as long as the process (see
    // `supervise::child` on PR_SET_PDEATHSIG).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::os(format!("cannot start the async runtime: {e}")))?;
    let mut command = cli.command;
    if let Command::Status(args) = &mut command {
        if args.system && args.selection.target.home.is_none() {
            // The system unit's home (its PAPERCLIP_HOME), whoever asks.
            args.selection.target.home = Some(crate::systemd::SYSTEM_HOME.into());
        }
    }
    match command {
        Command::Completions { shell } => {
            log::out(&crate::cli::completions(shell));
            Ok(0)
        }
        Command::Manpage => {
            log::out(&crate::cli::manpage()?);
            Ok(0)
        }
        Command::Run(args) => crate::launchd::guard::supervised(&args.selection, || {
            rt.block_on(supervise::run(
                config::resolve_run_settings(&args)?,
                args.selection.clone(),
            ))
        }),
        Command::Probe(args) => {
            let settings = probe_settings(&args.selection)?;
            rt.block_on(probe::command(settings, args.json))
        }
        Command::Reload(args) => {
            let instance = config::resolve_instance(&args.target)?;
            crate::reload::command(&instance, args.drain, args.json, None)
        }
        // A running instance restarts in place (its agent runs kept).
        Command::Restart(args) if !args.full => {
            let instance = config::resolve_instance(&args.managed.target)?;
            let announce = "restarting in place (a hot restart): the agent runs are kept; \
                            `paperclipd restart --full` stops and starts instead, ending them";
            match crate::reload::command(&instance, false, false, Some(announce)) {
                // Not running: a restart is a start, through the manager.
                Err(e) if e.kind == crate::error::Kind::NotRunning => {
                    service::dispatch(&rt, Command::Restart(args))
                }
                other => other,
            }
        }
        Command::Restart(args) => {
            let instance = config::resolve_instance(&args.managed.target)?;
            if let Some(n) = crate::reload::running_agent_runs(&instance) {
                log::warn(&format!(
                    "a full restart stops the server and ends its {n} running agent run(s); \
                     `paperclipd restart` without --full keeps them"
                ));
            }
            service::dispatch(&rt, Command::Restart(args))
        }
        Command::Status(args) if args.all => rt.block_on(status::all::command(
            &args.selection,
            args.system,
            args.json,
        )),
        Command::Status(args) => {
            let settings = config::resolve_probe_settings(&args.selection)?;
            rt.block_on(status::command(settings, args.system, args.json))
        }
        lifecycle => service::dispatch(&rt, lifecycle),
    }
}

/// What `probe` checks: with no probe flag, the running server where it
/// serves (its lock holder's settings, as `status` does), else the flags
/// and files.
fn probe_settings(sel: &crate::cli::Selection) -> Result<crate::config::ProbeSettings> {
    let own = config::resolve_probe_settings(sel)?;
    let flagged =
        sel.url.is_some() || sel.mode.is_some() || sel.api_path.is_some() || sel.ui_path.is_some();
    if flagged {
        return Ok(own);
    }
    Ok(match crate::lock::running_probe_settings(&own.instance) {
        Some(running) if running.spec() != own.spec() => {
            log::info(&format!(
                "probing with the running server's settings ({}), from its lock record",
                running.url
            ));
            running
        }
        _ => own,
    })
}

/// Prints an error once, the way every error of ours looks.
pub fn print_error(e: &Error) {
    log::error(&e.message);
}
