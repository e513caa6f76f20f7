//! Signal plumbing of `run`: the stop signals and SIGCHLD as streams, and
//! the terminal's foreground group (who gets Ctrl-C).

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::error::{Error, Result};
use crate::sys;

/// The stop signals we handle; each is forwarded to the server.
const STOP_SIGNALS: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// Signal streams, registered before the server is spawned so that no
/// signal and no SIGCHLD is missed.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    quit: Signal,
    /// systemd's default `WatchdogSignal=`: a stop, not a core dump.
    abrt: Signal,
    child: Signal,
}

fn register(n: i32) -> Result<Signal> {
    signal(SignalKind::from_raw(n))
        .map_err(|e| Error::os(format!("cannot handle {}: {e}", signal_name(n))))
}

impl Signals {
    pub fn register() -> Result<Self> {
        let [term, int, hup, quit] = STOP_SIGNALS;
        Ok(Signals {
            term: register(term)?,
            int: register(int)?,
            hup: register(hup)?,
            quit: register(quit)?,
            abrt: register(libc::SIGABRT)?,
            child: register(libc::SIGCHLD)?,
        })
    }

    /// The next SIGCHLD: some child changed state.
    pub async fn child(&mut self) {
        self.child.recv().await;
    }

    /// The next SIGCHLD (`None`) or stop signal (`Some`), whichever first.
    pub async fn child_or_stop(&mut self) -> Option<i32> {
        tokio::select! {
            _ = self.child.recv() => None,
            _ = self.term.recv() => Some(libc::SIGTERM),
            _ = self.int.recv() => Some(libc::SIGINT),
            _ = self.hup.recv() => Some(libc::SIGHUP),
            _ = self.quit.recv() => Some(libc::SIGQUIT),
            _ = self.abrt.recv() => {
                // SIGABRT (a watchdog timeout under a unit without
                // `WatchdogSignal=SIGTERM`) means "stop": forwarded as is it
                // would make Node dump core instead of stopping PostgreSQL.
                crate::log::info("received SIGABRT; stopping as for SIGTERM");
                Some(libc::SIGTERM)
            }
        }
    }
}

/// `SIGTERM` rather than `15`.
pub fn signal_name(n: i32) -> String {
    let name = match n {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGBUS => "SIGBUS",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGCHLD => "SIGCHLD",
        _ => return format!("signal {n}"),
    };
    name.to_string()
}

/// Is this an interactive run: stdin is a terminal and we are its
/// foreground process group (so we may hand the terminal to the server)?
pub fn interactive() -> bool {
    sys::isatty(0) && sys::foreground_group(0) == Some(sys::own_group())
}

/// Takes the terminal back after the server exits (we were a background
/// group while it ran), so the shell and our last messages behave.
pub fn reclaim_terminal() {
    let _ = sys::give_terminal_to(0, sys::own_group());
}
