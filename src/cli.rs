//! Command-line definitions (clap). Raw flags only: `config` turns them,
//! the config files and the defaults into validated settings.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "paperclipd",
    version = VERSION,
    about = "Run a Paperclip instance as a trustworthy service: one server per instance, ready only when it truly is",
    long_about = None,
    propagate_version = true,
    after_long_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `--version`: the package version, the target it was built for and the
/// commit (see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PAPERCLIPD_TARGET"),
    ", commit ",
    env!("PAPERCLIPD_COMMIT"),
    ")"
);

/// The exit codes, in `--help` and the man page.
const EXIT_CODES: &str = "Exit codes of `run`:
  0        stopped on request and the server exited, or the server exited 0
  1-125    the server exited on its own with this code
  128+N    the server was killed by signal N (not at our request)
  2        usage error
  69       readiness timed out (the server was stopped)
  70       the server exited 0 before it was ready (it failed to start)
  71       the OS refused something paperclipd needs
  73       too little free space on the instance's filesystem (--min-free)
  75       already running: lock held, unit active, port taken, or a PostgreSQL
           left running on the instance's data directory
  78       configuration error (also: the Node.js for Paperclip is missing or too old)
  126/127  server command not executable / not found
Run as our launchd job, 73/75/78/126/127 and the 5th failure within 300 s exit 0
instead and pause the instance until `start` or the next boot (launchd would
restart them for ever); 75 because another run holds the lock waits for it.
`probe`: 0 ready, 1 not ready. `status`: 0 ready, 1 running but not ready or conflict, 3 stopped or paused;
`status --all`: 0 when every instance is ready, else 1.
`install`, `start`, `stop`, `restart`, `uninstall`: 0 done, 1 the manager reported a failure.
`reload`: 0 the new server passed both probes and its report was read; 1 the reload failed
(the supervisor stopped meanwhile); 3 the instance does not run; 75 another restart is in
progress or the server is not ready yet; 69, 70 or the server's code: the new server did not
become ready, and the instance (with the runs carried over) was stopped.
`upgrade`: 0 installed, hot-restarted, and the new server reports the new version; 78 the new
package's engines.node does not accept the server's Node.js (nothing installed or restarted), or
the instance runs its own command; 3 the instance does not run; 1 npm failed (nothing restarted)
or the new server reports another version; 69, 70 or the server's code: the new server did not
become ready (the message gives the command that reinstalls the previous version).";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server in the foreground: lock the instance, start the server,
    /// report READY=1 only when its API and UI answer, stop it cleanly.
    Run(RunArgs),
    /// Check both probes once, now: exit 0 when ready, 1 when not.
    Probe(ProbeArgs),
    /// Install the systemd unit paperclip@.service and enable the instance.
    Install(InstallArgs),
    /// Stop and disable the instance's unit (the template goes with the last instance).
    Uninstall(ManagedArgs),
    /// Start the instance's unit; returns once it is ready.
    Start(ManagedArgs),
    /// Stop the instance's unit and wait until it has stopped.
    Stop(ManagedArgs),
    /// Restart a running instance in place, keeping its agent runs (a hot
    /// restart, as `reload`); with --full, or when it does not run, stop
    /// and start its unit (or job), which ends every agent run.
    Restart(RestartArgs),
    /// Hot-restart a running instance in place, keeping its agent runs
    /// (upstream's protocol): returns once the new server passed both
    /// probes, and prints its report. The units' ExecReload=.
    Reload(ReloadArgs),
    /// Install another paperclipai (default: latest) with the npm of the
    /// server's Node.js into the prefix of its shim, and hot-restart to it
    /// (the agent runs are kept). The package is fetched first (`npm pack`,
    /// no scripts run) and its engines.node checked against that Node.js:
    /// a mismatch exits 78 before anything is installed or restarted. A new
    /// server that does not become ready is reported with the command that
    /// reinstalls the previous version; paperclipd never downgrades on its
    /// own (database migrations only go forward).
    Upgrade(UpgradeArgs),
    /// One view from every source: lock, unit, port owner, probes.
    /// Exit 0 ready, 1 running but not ready (or conflict), 3 stopped.
    Status(StatusArgs),
    /// Show the instance's journal.
    Logs(LogsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    #[command(hide = true)]
    Manpage,
}

#[derive(Debug, Args)]
pub struct ManagedArgs {
    #[command(flatten)]
    pub target: Target,
    /// Use the system manager instead of the user's.
    #[arg(long)]
    pub system: bool,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    pub managed: ManagedArgs,
    /// A full stop and start through the manager: ends every running
    /// agent run (it says how many first).
    #[arg(long)]
    pub full: bool,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub target: Target,
    /// A version or tag of paperclipai (`2026.916.1`, `latest`), or a
    /// package file or directory (`./paperclipai-2026.916.1.tgz`).
    #[arg(value_name = "VERSION")]
    pub package: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub target: Target,
    /// Ask the server to drain (end) its agent runs instead of handing
    /// them over (upstream's `drainRequired`).
    #[arg(long)]
    pub drain: bool,
    /// Print the summary and the server's report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub managed: ManagedArgs,
    /// Also start it now and wait until it is ready.
    #[arg(long)]
    pub now: bool,
    /// Print the unit and the calls instead of making them.
    #[arg(long)]
    pub dry_run: bool,
    /// Stop and disable upstream's own unit for this instance (paperclipai.service).
    #[arg(long)]
    pub replace_upstream: bool,
    /// The Node.js that runs Paperclip, pinned in the service
    /// [default: the `node` that paperclipai finds in your PATH].
    #[arg(long, env = "PAPERCLIP_NODE", value_name = "PATH")]
    pub node: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Use the system manager instead of the user's.
    #[arg(long)]
    pub system: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Every instance under the home, one line (or JSON object) each;
    /// exit 0 when all are ready, else 1. Ignores --instance.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub managed: ManagedArgs,
    /// Keep printing new lines.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// How many lines [default: 50].
    #[arg(short = 'n', long, value_name = "N")]
    pub lines: Option<usize>,
}

/// Which instance: its id and its Paperclip home.
#[derive(Debug, Args, Clone, Default)]
pub struct Target {
    /// Instance id (letters, digits, '_' and '-'; at most 64).
    #[arg(
        short = 'i',
        long,
        env = "PAPERCLIP_INSTANCE_ID",
        default_value = "default"
    )]
    pub instance: String,
    /// Paperclip home directory [default: ~/.paperclip].
    #[arg(long, env = "PAPERCLIP_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
}

/// Which instance, and how to reach and probe it.
#[derive(Debug, Args, Clone, Default)]
pub struct Selection {
    #[command(flatten)]
    pub target: Target,
    /// Config file [default: <home>/instances/<id>/paperclipd.toml if it exists].
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What must answer before the server counts as ready
    /// [default: full, or api-only when config.json has server.serveUi: false].
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Base URL of the server [default: from config.json server.host/port, else http://127.0.0.1:3100].
    #[arg(long)]
    pub url: Option<String>,
    /// Path of the API probe [default: /api/health].
    #[arg(long, value_name = "PATH")]
    pub api_path: Option<String>,
    /// Path of the UI probe [default: /].
    #[arg(long, value_name = "PATH")]
    pub ui_path: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Give up (exit 69) when the server is not ready after this long (at most 24h) [default: 300s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub ready_timeout: Option<Duration>,
    /// After a stop signal, wait this long for the server before killing it (at most 1h) [default: 30s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub stop_timeout: Option<Duration>,
    /// Write the server's output and paperclipd's own lines to this file,
    /// rotated by size, instead of stdout and stderr (where no journal keeps them).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Rotate the log file when it reaches this size [default: 10MiB].
    #[arg(long, value_name = "SIZE", value_parser = crate::size::parse_size)]
    pub log_max_size: Option<u64>,
    /// Keep this many rotated log files, PATH.1 … PATH.N [default: 3].
    #[arg(long, value_name = "N")]
    pub log_keep: Option<u32>,
    /// The Node.js that runs Paperclip's default command
    /// [default: the `node` that paperclipai finds in PATH].
    #[arg(long, env = "PAPERCLIP_NODE", value_name = "PATH")]
    pub node: Option<PathBuf>,
    /// The server command [default: paperclipai run --instance <id>].
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
    /// Refuse to start (exit 73) with less free space than this on the
    /// instance's filesystem; 0 disables the check; at most 1EiB [default: 1GiB].
    #[arg(long, value_name = "SIZE", value_parser = crate::size::parse_size)]
    pub min_free: Option<u64>,
    /// Stop processes this wrapper adopted (orphans outside the server's
    /// tree, e.g. leaked agents) once adopted this long: SIGTERM, then
    /// SIGKILL after 10s; 1s to 365d [default: only report them].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub reap_adopted_after: Option<Duration>,
    /// Set up a new instance without questions and without a terminal
    /// (`paperclipai onboard --yes --bind BIND`), then serve. loopback:
    /// local_trusted, no login; lan, tailnet: authenticated, the first login
    /// is the bootstrap invite URL it prints [default: onboarding asks, which
    /// needs a terminal].
    #[arg(long, env = "PAPERCLIPD_ONBOARD_BIND", value_enum, value_name = "BIND")]
    pub onboard_bind: Option<OnboardBind>,
}

/// Where a new instance listens when it is onboarded without questions
/// (`paperclipai onboard --bind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnboardBind {
    /// 127.0.0.1 only, no login (local_trusted).
    Loopback,
    /// Every interface (0.0.0.0), with login (authenticated, private): a
    /// container, a LAN.
    Lan,
    /// The Tailscale address, with login (authenticated, private).
    Tailnet,
}

impl OnboardBind {
    pub fn as_str(self) -> &'static str {
        match self {
            OnboardBind::Loopback => "loopback",
            OnboardBind::Lan => "lan",
            OnboardBind::Tailnet => "tailnet",
        }
    }
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// API and UI must both answer.
    Full,
    /// Only the API must answer (a server with serveUi: false).
    ApiOnly,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::ApiOnly => "api-only",
        }
    }
}

/// `500ms`, `90s`, `5m`, `1h 30m`: humantime's grammar.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; expected a duration such as 500ms, 90s or 5m"))
}

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> String {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "paperclipd", &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The man page (roff).
pub fn manpage() -> crate::error::Result<String> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
        .render(&mut buf)
        .map_err(|e| crate::error::Error::os(format!("cannot render the man page: {e}")))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
