//! `paperclipd`: makes a Paperclip instance a trustworthy service.
//!
//! Layout (each module owns one thing):
//! * [`cli`] — clap definitions, raw flags only;
//! * [`config`] — flags + `paperclipd.toml` + Paperclip's `config.json` +
//!   defaults → validated settings (nothing touched before this passes);
//! * [`instance`] — the instance id and every name derived from it;
//! * [`lock`] — the per-instance `flock` and its diagnostic record;
//! * [`supervise`] — the `run` loop: spawn, readiness, watchdog, stop, reap;
//! * [`probe`] — the API and UI probes and their verdicts;
//! * [`notify`] — systemd's `sd_notify` protocol;
//! * [`manager`] — which service manager started us; systemd over D-Bus,
//!   launchd through launchctl;
//! * [`service`] — install/uninstall/start/stop/restart/logs;
//! * [`status`] — one view from every source;
//! * [`procfs`] — what /proc says about processes, ports and locks;
//! * [`error`] — one error type whose kind decides the exit code.
//!
//! The binary (`src/main.rs`) only parses, dispatches, prints an error
//! once, and maps it to the documented exit code. The library exists so
//! that fuzz targets (`fuzz/`) reach the parsers.

pub mod cli;
pub mod config;
pub mod error;
pub mod instance;
pub mod lock;
pub mod log;
pub mod manager;
pub mod notify;
pub mod probe;
pub mod procfs;
pub mod service;
pub mod status;
pub mod supervise;
