//! `paperclipd`: makes a Paperclip instance a trustworthy service.
//!
//! The layout, each module owning one thing:
//!
//! | module | owns |
//! |---|---|
//! | [`cli`], `dispatch` | the flags (clap); which part runs each subcommand |
//! | `config` | flags + `paperclipd.toml` + `config.json` + defaults → validated settings |
//! | `instance`, `lock` | the instance id and its paths; the per-instance `flock` (taken by `run` only), its record, who holds it |
//! | `installed` | what `run` started from (its own file, Paperclip's package and Node.js) vs what is installed now |
//! | `paperclip` | what we know of upstream: command, onboarding, `config.json`, env, its services |
//! | `runtime/` | which Node.js runs Paperclip: shim → `#!` → node → version vs `engines.node`; pinned by `install` |
//! | `supervise/` | `run`: preflight, onboard, signals, terminal, child, serve (one server's life), readiness, server_notify (what the server itself says), progress, output, watchdog, reload, stop, outcome |
//! | `probe`, `notify` | the API/UI probes and verdicts; systemd's `sd_notify` messages |
//! | `systemd/`, `launchd/` | each manager: unit or plist rendering, its client, the lifecycle commands; launchd's crash-loop guard of `run` |
//! | `hot_restart/`, `reload` | upstream's hot-restart files and locks; `paperclipd reload`, the client of `run`'s control socket |
//! | `status/` | facts from every source → one state (pure) → text or JSON |
//! | `invoker`, `procfs`, `program`, `owned_file` | who started us; what /proc says; finding executables; files we write |
//! | `service_exe` | the paperclipd path units and plists name: our own, or a pinned copy of an npm install |
//! | `regular_file`, `untrusted` | files that must be regular (opened without blocking; FIFOs refused); text from outside shown escaped |
//! | `disk`, `adopted`, `size`, `deadline` | free space on the instance's filesystem; the orphans a supervisor adopted; the SIZE grammar; deadlines that never overflow |
//! | `sys`, `log`, `log_file`, [`error`] | libc wrappers (every `unsafe`); our own output and `--log-file`; the error whose kind is the exit code |
//!
//! The binary (`src/main.rs`) only parses, dispatches, prints an error once
//! and maps it to the exit code. [`fuzzing`] is the surface the cargo-fuzz
//! targets reach.

mod adopted;
pub mod cli;
mod config;
mod deadline;
mod disk;
mod dispatch;
pub mod error;
mod hot_restart;
mod installed;
mod instance;
mod invoker;
// Portable and unit-tested on Linux; only dispatched to on macOS.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
mod launchd;
mod lock;
mod log;
mod log_file;
mod notify;
mod owned_file;
mod paperclip;
mod probe;
mod procfs;
mod program;
mod regular_file;
mod reload;
mod runtime;
mod service_exe;
mod size;
mod status;
mod supervise;
mod sys;
// Portable; on macOS nothing dispatches to it (launchd instead).
#[cfg_attr(target_os = "macos", allow(dead_code))]
mod systemd;
mod untrusted;
mod upgrade;

pub use dispatch::{dispatch, print_error};

/// The parsers and verdicts the fuzz targets exercise.
pub mod fuzzing {
    pub use crate::config::{parse_base_url, parse_file_config};
    pub use crate::paperclip::parse_config as parse_paperclip_config;
    pub use crate::probe::{api_verdict, ui_verdict};
}
