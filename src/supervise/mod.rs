//! `paperclipd run`: the supervisor.
//!
//! The algorithm, in order (tini-style, one owner for each resource):
//! validate → lock the instance → onboard if needed → refuse a taken port →
//! spawn the server in its own group → wait for readiness while watching
//! signals and the server → `READY=1` → feed the watchdog → stop in order
//! (forward the signal, grace period, kill the group and everything we
//! adopted, reap all) → release the lock → exit with the documented code.

pub mod child;
pub mod output;
pub mod readiness;

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

use crate::cli::Mode;
use crate::config::RunSettings;
use crate::error::{Error, Kind, Result};
use crate::lock::{self, Acquire, InstanceLock, Record};
use crate::notify::{Notifier, NotifyState};
use crate::probe::{self, Prober};
use crate::{log, manager, procfs};
use child::{ExitKind, Spawned};
use readiness::{Outcome, Progress};

/// How often `EXTEND_TIMEOUT_USEC=` is sent while the server starts, and
/// by how much each message extends systemd's start timeout. The window
/// is short so that a hung wrapper is still caught by systemd's timeout.
const EXTEND_EVERY: Duration = Duration::from_secs(5);
const EXTEND_BY: Duration = Duration::from_secs(15);
/// How often the progress display is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// After the server is gone, how long its leftovers (adopted PostgreSQL,
/// agents) get after SIGTERM before SIGKILL, at most.
const LEFTOVER_GRACE: Duration = Duration::from_secs(10);

/// The stop signals we handle; each is forwarded to the server.
const STOP_SIGNALS: [(i32, &str); 4] = [
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGINT, "SIGINT"),
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGQUIT, "SIGQUIT"),
];

/// Signal streams, registered before the server is spawned so that no
/// signal and no SIGCHLD is missed.
struct Signals {
    stop: StopSignals,
    child: Signal,
}

struct StopSignals(Vec<(i32, Signal)>);

impl Signals {
    fn register() -> Result<Self> {
        let mut stop = Vec::new();
        for (n, name) in STOP_SIGNALS {
            let s = signal(SignalKind::from_raw(n))
                .map_err(|e| Error::os(format!("cannot handle {name}: {e}")))?;
            stop.push((n, s));
        }
        let child = signal(SignalKind::child())
            .map_err(|e| Error::os(format!("cannot handle SIGCHLD: {e}")))?;
        Ok(Signals {
            stop: StopSignals(stop),
            child,
        })
    }
}

impl StopSignals {
    /// The next stop signal.
    async fn next(&mut self) -> i32 {
        let futs = self.0.iter_mut().map(|(n, s)| {
            let n = *n;
            Box::pin(async move {
                s.recv().await;
                n
            })
        });
        futures_select_all(futs).await
    }
}

/// Awaits the first of several futures (a tiny `select_all`, to avoid a
/// dependency for four signal streams).
async fn futures_select_all<F: Future<Output = i32> + Unpin>(futs: impl Iterator<Item = F>) -> i32 {
    let mut futs: Vec<F> = futs.collect();
    std::future::poll_fn(move |cx| {
        for f in futs.iter_mut() {
            if let std::task::Poll::Ready(v) = Pin::new(f).poll(cx) {
                return std::task::Poll::Ready(v);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// The next tick of an optional interval; never, without one.
async fn next_tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Awaits every handle (a tiny `join_all`).
async fn futures_join_all(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

/// Is this an interactive run: stdin is a terminal and we are its
/// foreground process group (so we may hand the terminal to the server)?
fn interactive() -> bool {
    // SAFETY: isatty/tcgetpgrp/getpgrp only read process state.
    unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() }
}

fn stderr_is_tty() -> bool {
    unsafe { libc::isatty(2) == 1 }
}

/// Takes the terminal back after the server exits (we were a background
/// group while it ran), so the shell and our last messages behave.
fn reclaim_terminal() {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTTOU);
        libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old);
        libc::tcsetpgrp(0, libc::getpgrp());
        libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}

/// Runs the server until it stops. Returns the exit code of `run`.
pub async fn run(mut settings: RunSettings) -> Result<u8> {
    let invoker = manager::detect();
    let notifier = Notifier::from_env();
    let interactive = interactive();

    // Resolve the command before anything is created: a missing program is
    // 127 with nothing touched.
    let default_command = settings.command.is_none();
    let (program, args): (PathBuf, Vec<OsString>) = match &settings.command {
        Some(cmd) => (child::resolve_program(&cmd[0])?, cmd[1..].to_vec()),
        None => (
            child::default_program()?,
            vec![
                "run".into(),
                "--instance".into(),
                settings.probe.instance.id.as_str().into(),
            ],
        ),
    };
    let instance = settings.probe.instance.clone();

    refuse_running_units(&instance, &invoker).await?;

    let mut lock = match lock::try_acquire(&instance, Record::for_this_process(&invoker))? {
        Acquire::Acquired(l) => l,
        Acquire::Held(holder) => {
            return Err(Error::busy(format!(
                "instance {:?} is already running: its lock {} is held by {}. \
                 Only one server may run per instance; {}",
                instance.id.as_str(),
                instance.lock_path().display(),
                holder.describe(),
                holder.how_to_stop()
            )));
        }
    };

    if default_command && !instance.paperclip_config().exists() {
        onboard(&program, &settings, interactive)?;
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
            instance.clone(),
            &crate::config::FileConfig::default(),
        )?;
    }

    let prober = Prober::new(settings.probe.clone(), probe::REQUEST_TIMEOUT)?;
    refuse_taken_port(&prober).await?;

    let signals = Signals::register()?;
    child::become_subreaper();
    let server = child::spawn(&child::SpawnSpec {
        program: &program,
        args: &args,
        instance: &instance,
        extra_env: &settings.env,
        interactive,
    })?;
    lock.set_child(Some(server.pid))?;

    let command_line = std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let start_msg = format!(
        "started {command_line} (pid {}) for instance {}; waiting for {}",
        server.pid,
        instance.id,
        match settings.probe.mode {
            Mode::Full => format!("{} and {}", settings.probe.api_url, settings.probe.ui_url),
            Mode::ApiOnly => settings.probe.api_url.to_string(),
        }
    );
    log::info(&start_msg);
    notifier.status(&format!("starting: server pid {}", server.pid));

    let mut sup = Supervisor {
        settings,
        notifier,
        interactive,
        server,
        lock,
        tail: Arc::new(Mutex::new(output::Tail::default())),
        forwarders: Vec::new(),
        signals,
    };
    let result = sup.supervise(prober).await;
    if interactive {
        reclaim_terminal();
    }
    // The lock is released (record cleared) when `sup` drops, after every
    // process of the server is gone.
    drop(sup);
    result
}

/// A hand-started `run` must not start a second server next to the
/// instance's unit (active or still activating, which holds no lock yet
/// for a moment), nor next to upstream's own unit. Without a reachable
/// user bus this check is skipped; the lock still protects the instance.
async fn refuse_running_units(
    instance: &crate::instance::Instance,
    invoker: &manager::Invoker,
) -> Result<()> {
    use manager::systemd::{Scope, Systemd};
    let Ok(sd) =
        Systemd::connect_or_systemctl_within(Scope::User, Duration::from_millis(1500), false).await
    else {
        return Ok(());
    };
    let ours = instance.unit_name();
    let mut units = vec![instance.upstream_unit_name()];
    if invoker.unit.as_deref() != Some(ours.as_str()) {
        units.insert(0, ours.clone());
    }
    for unit in units {
        if let Ok(Some(info)) = sd.unit_info(&unit).await {
            if info.is_running() {
                let how = if unit == ours {
                    format!(
                        "stop it with `paperclipd stop -i {}` or `systemctl --user stop {unit}`",
                        instance.id
                    )
                } else {
                    format!(
                        "it is upstream's own service; disable it with `systemctl --user disable --now {unit}`"
                    )
                };
                return Err(Error::busy(format!(
                    "instance {:?} is already run by the systemd unit {unit} ({}, main pid {}); {how}",
                    instance.id.as_str(),
                    info.active_state,
                    info.main_pid
                )));
            }
        }
    }
    Ok(())
}

/// First start of the default Paperclip server: `paperclipai onboard`
/// asks questions, so it runs in the foreground of a terminal; without one
/// we stop with the exact command, so that a service manager does not
/// restart-loop on it (78 is in `RestartPreventExitStatus=`).
fn onboard(program: &std::path::Path, settings: &RunSettings, interactive: bool) -> Result<()> {
    let instance = &settings.probe.instance;
    // `paperclipai onboard` has no --instance: the instance comes from
    // PAPERCLIP_INSTANCE_ID (and the home from PAPERCLIP_HOME), which the
    // child environment sets below.
    let shown = format!(
        "PAPERCLIP_HOME={} PAPERCLIP_INSTANCE_ID={} {} onboard --no-install-service",
        instance.home.display(),
        instance.id,
        program.display(),
    );
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
    cmd.args(["onboard", "--no-install-service"]);
    for k in child::REMOVED_ENV {
        cmd.env_remove(k);
    }
    for (k, v) in &settings.env {
        cmd.env(k, v);
    }
    for (k, v) in child::paperclip_env(instance) {
        cmd.env(k, v);
    }
    let status = cmd
        .status()
        .map_err(|e| Error::new(Kind::NotExecutable, format!("cannot run `{shown}`: {e}")))?;
    if !status.success() || !instance.paperclip_config().exists() {
        return Err(Error::config(format!(
            "onboarding did not complete ({status}); {} was not written. Run `{shown}` yourself and retry",
            instance.paperclip_config().display()
        )));
    }
    Ok(())
}

/// Something already listens on our port: starting would either fail or,
/// worse, make Paperclip drift to the next port while we probe a stranger.
async fn refuse_taken_port(prober: &Prober) -> Result<()> {
    if prober.listening().await.is_err() {
        return Ok(());
    }
    let port = prober.settings.port;
    let owners = procfs::port_owners(port);
    let who = if owners.is_empty() {
        let uids = procfs::listening_uids(port);
        if uids.is_empty() {
            "a process paperclipd cannot identify (in another network namespace?)".to_string()
        } else {
            format!(
                "a process of {} that paperclipd may not inspect (find it with `sudo ss -ltnp 'sport = :{port}'`)",
                uids.iter()
                    .map(|u| procfs::user_name(*u))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    } else {
        procfs::describe_all(&owners)
    };
    Err(Error::busy(format!(
        "port {port} ({}) already accepts connections, held by {who}. The server would not be ours to probe \
         (Paperclip silently moves to the next free port). Stop that process, or give this instance another port \
         (server.port in config.json, or --url)",
        prober.settings.url
    )))
}

/// Where the run loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting { since: Instant },
    Ready { since: Instant },
}

/// Why the server is being stopped.
#[derive(Debug, Clone, Copy)]
enum StopReason {
    Signal(i32),
    ReadyTimeout,
    Foreign,
}

struct Supervisor {
    settings: RunSettings,
    notifier: Notifier,
    interactive: bool,
    server: Spawned,
    /// Released (by Drop) only after every process of the server is gone.
    lock: InstanceLock,
    tail: output::SharedTail,
    /// The tasks copying the server's output; awaited after the server's
    /// tree is gone so diagnostics include its very last lines.
    forwarders: Vec<tokio::task::JoinHandle<()>>,
    signals: Signals,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

impl Supervisor {
    async fn supervise(&mut self, prober: Prober) -> Result<u8> {
        for (fd, which) in [
            (self.server.stdout.take(), 0),
            (self.server.stderr.take(), 1),
        ] {
            if let Some(fd) = fd {
                self.forwarders
                    .push(tokio::spawn(output::forward(fd, which, self.tail.clone())));
            }
        }

        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.settings.ready_timeout;
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let mut phase = Phase::Starting { since: started };
        let mut ready_fut: BoxFuture<'_, Outcome> =
            Box::pin(readiness::wait_ready(&prober, &progress_tx));
        let mut watchdog_fut: BoxFuture<'_, ()> = Box::pin(std::future::pending());
        // Timers of the starting phase, dropped at ready: an armed timer
        // would wake the idle process even when its branch is disabled.
        let mut extend = Some(tokio::time::interval(EXTEND_EVERY));
        let mut tick = Some(tokio::time::interval(PROGRESS_EVERY));
        let mut shown_summary = String::new();
        let mut sent_status = String::new();
        let show_line = stderr_is_tty();

        let stop_reason = loop {
            let starting = matches!(phase, Phase::Starting { .. });
            tokio::select! {
                outcome = &mut ready_fut, if starting => match outcome {
                    Outcome::Ready { elapsed } => {
                        let p = progress_rx.borrow().clone();
                        let msg = ready_message(&p, elapsed);
                        self.notifier.send(&[NotifyState::Ready, NotifyState::Status(&crate::notify::one_line(&msg))]);
                        if show_line { output::clear_progress_line(&mut std::io::stderr()); }
                        log::info(&msg);
                        phase = Phase::Ready { since: Instant::now() };
                        extend = None;
                        tick = None;
                        if let Err(e) = self.lock.set_ready() {
                            log::warn(&e.message);
                        }
                        ready_fut = Box::pin(std::future::pending());
                        if let Some(period) = watchdog_period() {
                            watchdog_fut = Box::pin(watchdog(&prober, &self.notifier, period));
                        }
                    }
                    Outcome::Foreign { owners } => {
                        let who = procfs::describe_all(&owners);
                        log::error(&format!(
                            "port {} is held by {who}, not by our server; stopping our server",
                            prober.settings.port
                        ));
                        break StopReason::Foreign;
                    }
                },
                _ = tokio::time::sleep_until(deadline), if starting => break StopReason::ReadyTimeout,
                _ = next_tick(&mut extend), if starting && self.notifier.enabled() => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now()) + self.settings.stop_timeout;
                    let by = EXTEND_BY.min(left + Duration::from_secs(1));
                    self.notifier.send(&[NotifyState::ExtendTimeoutUsec(by.as_micros().min(u32::MAX as u128) as u32)]);
                }
                _ = next_tick(&mut tick), if starting => {
                    let p = progress_rx.borrow().clone();
                    let summary = p.summary(self.settings.probe.port);
                    let elapsed = started.elapsed();
                    if show_line {
                        output::show_progress_line(&format!("paperclipd: starting ({:.1}s): {summary}", elapsed.as_secs_f64()));
                    } else if summary != shown_summary {
                        log::info(&format!("starting ({:.1}s): {summary}", elapsed.as_secs_f64()));
                    }
                    shown_summary = summary.clone();
                    if summary != sent_status {
                        self.notifier.status(&format!("starting: {summary}"));
                        sent_status = summary;
                    }
                }
                _ = &mut watchdog_fut => {}
                sig = self.signals.stop.next() => break StopReason::Signal(sig),
                _ = self.signals.child.recv() => {
                    if let Some(exit) = child::reap(self.server.pid) {
                        if show_line { output::clear_progress_line(&mut std::io::stderr()); }
                        drop(ready_fut);
                        drop(watchdog_fut);
                        return self.server_exited(exit, phase, &progress_rx.borrow().clone()).await;
                    }
                }
            }
        };
        drop(ready_fut);
        drop(watchdog_fut);
        if show_line {
            output::clear_progress_line(&mut std::io::stderr());
        }
        let progress = progress_rx.borrow().clone();
        self.stop(stop_reason, phase, started, &progress).await
    }

    /// The server exited without being asked to.
    async fn server_exited(
        &mut self,
        exit: ExitKind,
        phase: Phase,
        progress: &Progress,
    ) -> Result<u8> {
        // In a terminal, Ctrl-C goes straight to the server (it owns the
        // terminal): a SIGINT death or exit 130 is the user's stop.
        let user_interrupt = self.interactive
            && matches!(exit, ExitKind::Signal(libc::SIGINT) | ExitKind::Code(130));
        self.notifier.send(&[
            NotifyState::Stopping,
            NotifyState::Status(&format!("server {}; stopping", exit.describe())),
        ]);
        self.cleanup_leftovers(LEFTOVER_GRACE.min(self.settings.stop_timeout))
            .await;
        self.drain_output().await;
        if user_interrupt {
            log::info("stopped by Ctrl-C");
            return Ok(0);
        }
        match phase {
            Phase::Ready { since } => {
                let code = exit.shell_code();
                let up = since.elapsed();
                let served = if up < Duration::from_secs(60) {
                    format!("{:.1}s", up.as_secs_f64())
                } else {
                    humantime::format_duration(Duration::from_secs(up.as_secs())).to_string()
                };
                let msg = format!(
                    "the server (pid {}) {} after {served} of service; exiting with {code}",
                    self.server.pid,
                    exit.describe(),
                );
                if code == 0 {
                    log::info(&msg)
                } else {
                    log::error(&msg)
                }
                Ok(code)
            }
            Phase::Starting { since } => {
                let mut msg = format!(
                    "the server (pid {}) {} {:.1}s after start, before it became ready.",
                    self.server.pid,
                    exit.describe(),
                    since.elapsed().as_secs_f64()
                );
                self.append_diagnostics(&mut msg, progress).await;
                msg.push_str("\nCheck the server's output above; run the command by hand to see it fail directly.");
                Err(Error::new(Kind::ServerExited(exit.shell_code()), msg))
            }
        }
    }

    /// Waits (briefly) until the server's output pipes are drained: once
    /// its whole tree is gone every write end is closed, so EOF comes at
    /// once unless something escaped us.
    async fn drain_output(&mut self) {
        let all = futures_join_all(std::mem::take(&mut self.forwarders));
        let _ = tokio::time::timeout(Duration::from_secs(1), all).await;
    }

    async fn append_diagnostics(&mut self, msg: &mut String, progress: &Progress) {
        self.drain_output().await;
        for line in progress.diagnostics(self.settings.probe.port, self.settings.probe.mode) {
            msg.push_str("\n  ");
            msg.push_str(&line);
        }
        let lines = self.tail.lock().map(|t| t.lines()).unwrap_or_default();
        if self.interactive {
            return; // the user saw the output in the terminal
        }
        if lines.is_empty() {
            msg.push_str("\n  the server printed nothing");
        } else {
            msg.push_str(&format!(
                "\n  last {} lines of the server's output:",
                lines.len()
            ));
            for l in lines {
                msg.push_str("\n  | ");
                msg.push_str(&l);
            }
        }
    }

    /// Stops the server in order and decides the exit code.
    async fn stop(
        &mut self,
        reason: StopReason,
        phase: Phase,
        started: Instant,
        progress: &Progress,
    ) -> Result<u8> {
        let sig = match reason {
            StopReason::Signal(s) => s,
            _ => libc::SIGTERM,
        };
        let why = match reason {
            StopReason::Signal(s) => format!("received {}", child::signal_name(s)),
            StopReason::ReadyTimeout => format!(
                "not ready after {}",
                humantime::format_duration(self.settings.ready_timeout)
            ),
            StopReason::Foreign => "port taken by another process".to_string(),
        };
        self.notifier.send(&[
            NotifyState::Stopping,
            NotifyState::Status(&format!(
                "stopping ({why}): sent {} to server pid {}",
                child::signal_name(sig),
                self.server.pid
            )),
        ]);
        log::info(&format!(
            "{why}; stopping the server (pid {}) with {}, waiting up to {}",
            self.server.pid,
            child::signal_name(sig),
            humantime::format_duration(self.settings.stop_timeout)
        ));
        let stop_started = Instant::now();
        let exit = self.terminate(sig).await;
        let left = self
            .settings
            .stop_timeout
            .saturating_sub(stop_started.elapsed());
        self.cleanup_leftovers(left.clamp(Duration::from_millis(100), LEFTOVER_GRACE))
            .await;
        self.drain_output().await;

        match reason {
            StopReason::Signal(_) => {
                match exit {
                    Some(e) => log::info(&format!(
                        "the server {} after {:.2}s; stopped",
                        e.describe(),
                        stop_started.elapsed().as_secs_f64()
                    )),
                    None => log::warn(&format!(
                        "the server did not exit within the stop timeout ({}) and was killed with SIGKILL; \
                         raise --stop-timeout if it needs longer to shut down",
                        humantime::format_duration(self.settings.stop_timeout)
                    )),
                }
                Ok(0)
            }
            StopReason::ReadyTimeout => {
                let mut msg = format!(
                    "the server was not ready within {} (readiness timeout) and was stopped.",
                    humantime::format_duration(self.settings.ready_timeout)
                );
                self.append_diagnostics(&mut msg, progress).await;
                msg.push_str(&format!(
                    "\nIf it is only slow, raise --ready-timeout; check the probe paths with `paperclipd probe --url {}`.",
                    self.settings.probe.url
                ));
                let _ = (phase, started);
                Err(Error::new(Kind::Unavailable, msg))
            }
            StopReason::Foreign => {
                let owners = procfs::port_owners(self.settings.probe.port);
                Err(Error::busy(format!(
                    "port {} was taken by {} while our server was starting, so its probes would talk to a stranger; \
                     our server was stopped. Stop that process or give this instance another port",
                    self.settings.probe.port,
                    if owners.is_empty() {
                        "another process".to_string()
                    } else {
                        procfs::describe_all(&owners)
                    }
                )))
            }
        }
    }

    /// Sends `sig` to the server process itself (not its group: Paperclip
    /// stops PostgreSQL and its agents in its own order), forwards further
    /// stop signals, and SIGKILLs the group after the stop timeout. Returns
    /// how the server ended, or `None` if it had to be killed.
    async fn terminate(&mut self, sig: i32) -> Option<ExitKind> {
        child::signal(self.server.pid, sig);
        let deadline = tokio::time::Instant::now() + self.settings.stop_timeout;
        loop {
            if let Some(exit) = child::reap(self.server.pid) {
                return Some(exit);
            }
            tokio::select! {
                _ = self.signals.child.recv() => {}
                again = self.signals.stop.next() => child::signal(self.server.pid, again),
                _ = tokio::time::sleep_until(deadline) => {
                    child::signal_everything(self.server.pgid, libc::SIGKILL);
                    // SIGKILL cannot be ignored; reap it.
                    let hard = tokio::time::Instant::now() + Duration::from_secs(5);
                    loop {
                        if child::reap(self.server.pid).is_some() {
                            return None;
                        }
                        tokio::select! {
                            _ = self.signals.child.recv() => {}
                            _ = tokio::time::sleep_until(hard) => return None,
                        }
                    }
                }
            }
        }
    }

    /// After the server is gone: SIGTERM what is left of its group and of
    /// the processes we adopted, wait up to `grace`, SIGKILL the rest, and
    /// reap everything.
    async fn cleanup_leftovers(&mut self, grace: Duration) {
        if child::no_children() {
            return;
        }
        let leftovers = child::descendants();
        if !leftovers.is_empty() {
            log::info(&format!(
                "stopping {} process(es) the server left behind: {}",
                leftovers.len(),
                leftovers
                    .iter()
                    .take(5)
                    .map(|p| procfs::describe(*p))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        child::signal_everything(self.server.pgid, libc::SIGTERM);
        let deadline = tokio::time::Instant::now() + grace;
        let mut killed = false;
        loop {
            child::reap(self.server.pid);
            if child::no_children() {
                return;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                if killed && now >= deadline + Duration::from_secs(5) {
                    log::warn("some processes the server left behind could not be reaped");
                    return;
                }
                // Repeat: a killed parent's children are adopted next.
                child::signal_everything(self.server.pgid, libc::SIGKILL);
                killed = true;
            }
            tokio::select! {
                _ = self.signals.child.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
}

fn ready_message(p: &Progress, elapsed: Duration) -> String {
    let mut parts = Vec::new();
    if let Some(a) = &p.api {
        parts.push(format!(
            "API {} {}",
            a.http_status.unwrap_or(0),
            a.health_status
                .as_deref()
                .map(|s| format!("status={s:?}"))
                .unwrap_or_else(|| "ok".into())
        ));
    }
    if let Some(u) = &p.ui {
        parts.push(format!(
            "UI {} {}",
            u.http_status.unwrap_or(0),
            u.content_type.as_deref().unwrap_or("")
        ));
    }
    format!(
        "ready after {:.2}s: {}",
        elapsed.as_secs_f64(),
        parts.join(", ")
    )
}

/// The systemd watchdog period, when it is meant for us.
fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// After ready: probe the API every third of the watchdog period and send
/// `WATCHDOG=1` only after a passing probe, so a hung server is restarted.
async fn watchdog(prober: &Prober, notifier: &Notifier, period: Duration) {
    let every = period / 3;
    let wd_prober = match Prober::new(
        prober.settings.clone(),
        every.clamp(Duration::from_millis(50), probe::REQUEST_TIMEOUT),
    ) {
        Ok(p) => p,
        Err(_) => prober.clone(),
    };
    let mut failing = false;
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let r = wd_prober.api().await;
        if r.ready {
            notifier.send(&[NotifyState::Watchdog]);
            if failing {
                notifier.status("ready (API probe passing again)");
                log::info("watchdog: the API probe passes again");
                failing = false;
            }
        } else {
            let msg = format!("watchdog: API probe failing, not feeding the watchdog: {r}");
            notifier.status(&msg);
            if !failing {
                log::warn(&msg);
            }
            failing = true;
        }
    }
}
