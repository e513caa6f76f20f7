//! `paperclipd.toml`: its keys (flat, mirroring the flags), reading and
//! parsing it, with errors that name the line and the key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::cli::{Mode, Selection};
use crate::error::{Error, Result};
use crate::instance::Instance;

/// `paperclipd.toml`: flat keys mirroring the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub command: Option<Vec<String>>,
    pub url: Option<String>,
    pub mode: Option<Mode>,
    pub api_path: Option<String>,
    pub ui_path: Option<String>,
    #[serde(default, deserialize_with = "de_duration")]
    pub ready_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub stop_timeout: Option<Duration>,
    /// Under launchd: this many failed runs within `start_limit_interval`
    /// pause the instance (see `launchd::guard`).
    pub start_limit_burst: Option<u32>,
    #[serde(default, deserialize_with = "de_duration")]
    pub start_limit_interval: Option<Duration>,
    pub env: Option<BTreeMap<String, String>>,
    /// `"1GiB"`, `"500MiB"`, or a number of bytes; 0 disables.
    #[serde(default, deserialize_with = "de_size")]
    pub min_free: Option<u64>,
    #[serde(default, deserialize_with = "de_duration")]
    pub reap_adopted_after: Option<Duration>,
    pub log_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "crate::log_file::de_size")]
    pub log_max_size: Option<u64>,
    pub log_keep: Option<u32>,
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    crate::cli::parse_duration(&s)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
}

/// A size as text (`"1GiB"`) or a plain number of bytes (`min_free`).
fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_size_by(d, crate::size::parse_size)
}

/// A size as text, read by `parse`, or a plain number of bytes: the one
/// reader behind every size key of the file.
pub(crate) fn de_size_by<'de, D: serde::Deserializer<'de>>(
    d: D,
    parse: fn(&str) -> std::result::Result<u64, String>,
) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bytes(n) => Ok(Some(n)),
        Raw::Text(s) => parse(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

/// Reads the config file: `--config FILE` (must exist), else the instance's
/// `paperclipd.toml` when present.
pub fn load_file_config(
    sel: &Selection,
    instance: &Instance,
) -> Result<(FileConfig, Option<PathBuf>)> {
    let (path, required) = match &sel.config {
        Some(p) => (p.clone(), true),
        None => (instance.wrapper_config(), false),
    };
    let text = match crate::regular_file::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok((FileConfig::default(), None));
        }
        Err(e) => {
            return Err(Error::config(format!(
                "cannot read config file {}: {e}; expected a readable TOML file (see `paperclipd run --help`)",
                crate::untrusted::path(&path)
            )));
        }
    };
    let cfg = parse_file_config(&text).map_err(|e| {
        Error::config(format!(
            "config file {}: {e}fix the file, or move it aside to use the defaults",
            crate::untrusted::path(&path)
        ))
    })?;
    Ok((cfg, Some(path)))
}

/// Parses `paperclipd.toml` text. The error names line, column and key.
pub fn parse_file_config(text: &str) -> std::result::Result<FileConfig, String> {
    toml::from_str::<FileConfig>(text).map_err(|e| {
        let mut msg = e.to_string();
        if !msg.ends_with('\n') {
            msg.push('\n');
        }
        msg
    })
}
