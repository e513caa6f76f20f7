//! The first start of an instance: `paperclipai onboard` asks questions,
//! so it runs in the foreground of a terminal; without one we stop with
//! the exact command, so that a service manager does not restart-loop on
//! it (78 is in `RestartPreventExitStatus=`).

use std::path::Path;

use crate::config::RunSettings;
use crate::error::{Error, Kind, Result};
use crate::{log, paperclip};

/// Runs onboarding for a new instance, then re-reads where it serves.
pub fn onboard(program: &Path, settings: &mut RunSettings, interactive: bool) -> Result<()> {
    let instance = settings.probe.instance.clone();
    let shown = paperclip::onboard_command_line(program, &instance);
    if !interactive {
        return Err(Error::config(format!(
            "instance {:?} is not set up yet: {} does not exist. Paperclip's first start asks questions, which needs a terminal; \
             run `{shown}` once in a terminal (or `paperclipd run` in a terminal, which runs it for you), then start the service again",
            instance.id.as_str(),
            instance.paperclip_config().display()
        )));
    }
    log::info(&format!(
        "instance {} is not set up yet; running `{shown}` first",
        instance.id
    ));
    let mut cmd = std::process::Command::new(program);
    cmd.args(paperclip::ONBOARD_ARGS);
    super::child::server_environment(&mut cmd, &instance, &settings.env);
    let status = cmd
        .status()
        .map_err(|e| Error::new(Kind::NotExecutable, format!("cannot run `{shown}`: {e}")))?;
    if !status.success() || !instance.paperclip_config().exists() {
        return Err(Error::config(format!(
            "onboarding did not complete ({status}); {} was not written. Run `{shown}` yourself and retry",
            instance.paperclip_config().display()
        )));
    }
    // Onboarding wrote config.json: where the server listens may have
    // changed.
    settings.probe = crate::config::resolve_probe(
        &crate::cli::Selection {
            target: crate::cli::Target {
                instance: instance.id.to_string(),
                home: Some(instance.home.clone()),
            },
            mode: Some(settings.probe.mode),
            ..Default::default()
        },
        instance,
        &crate::config::FileConfig::default(),
    )?;
    Ok(())
}
