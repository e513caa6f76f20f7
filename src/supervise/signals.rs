//! Signal plumbing of `run`: the stop signals, SIGCHLD and SIGCONT as
//! streams; which signal the server gets for each; job-control signals
//! that must never stop us; and whether we run in a terminal's foreground.

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::error::{Error, Result};
use crate::sys;

/// The stop signals we handle; each is forwarded to the server (see
/// [`forwarded`]).
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
    cont: Signal,
}

/// What [`Signals::next`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// SIGCHLD: some child changed state.
    Child,
    /// A stop signal.
    Stop(i32),
    /// SIGCONT: we were continued (the shell's `fg` or `bg`).
    Continued,
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
            cont: register(libc::SIGCONT)?,
        })
    }

    /// The next SIGCHLD: some child changed state.
    pub async fn child(&mut self) {
        self.child.recv().await;
    }

    /// The next SIGCHLD (`None`) or stop signal (`Some`), whichever first.
    pub async fn child_or_stop(&mut self) -> Option<i32> {
        match self.next_of(false).await {
            Received::Stop(sig) => Some(sig),
            _ => None,
        }
    }

    /// The next SIGCHLD, stop signal or SIGCONT.
    pub async fn next(&mut self) -> Received {
        self.next_of(true).await
    }

    async fn next_of(&mut self, with_cont: bool) -> Received {
        tokio::select! {
            _ = self.child.recv() => Received::Child,
            _ = self.term.recv() => Received::Stop(libc::SIGTERM),
            _ = self.int.recv() => Received::Stop(libc::SIGINT),
            _ = self.hup.recv() => Received::Stop(libc::SIGHUP),
            _ = self.quit.recv() => Received::Stop(libc::SIGQUIT),
            _ = self.abrt.recv() => {
                // SIGABRT (a watchdog timeout under a unit without
                // `WatchdogSignal=SIGTERM`) means "stop": forwarded as is it
                // would make Node dump core instead of stopping PostgreSQL.
                crate::log::info("received SIGABRT; stopping as for SIGTERM");
                Received::Stop(libc::SIGTERM)
            }
            _ = self.cont.recv(), if with_cont => Received::Continued,
        }
    }
}

/// The signal the server gets when we receive `sig`. SIGHUP and SIGQUIT
/// become SIGTERM: Paperclip stops in order only on SIGTERM or SIGINT; on
/// SIGHUP or SIGQUIT its Node dies at once and orphans PostgreSQL.
pub fn forwarded(sig: i32) -> i32 {
    match sig {
        libc::SIGHUP | libc::SIGQUIT => libc::SIGTERM,
        other => other,
    }
}

/// Job-control signals must never stop us (tini ignores them too): with
/// `stty tostop`, our own line from the background would stop us with
/// SIGTTOU and leave the server without its supervisor. An ignored
/// SIGTTOU lets the write through. The server gets its defaults back
/// (`child::spawn`).
pub fn ignore_terminal_stops() {
    for sig in [libc::SIGTTOU, libc::SIGTTIN] {
        let _ = sys::set_signal_ignored(sig, true);
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
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        _ => return format!("signal {n}"),
    };
    name.to_string()
}

/// What a user calls the signal a terminal sends.
pub fn terminal_key(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "Ctrl-C",
        libc::SIGQUIT => "Ctrl-\\",
        libc::SIGHUP => "a hangup",
        _ => "a signal",
    }
}

/// Is this an interactive run: stdin is a terminal and we are its
/// foreground process group (so we may hand the terminal to the server)?
pub fn interactive() -> bool {
    sys::isatty(0) && sys::foreground_group(0) == Some(sys::own_group())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hangup_and_quit_reach_the_server_as_sigterm() {
        assert_eq!(forwarded(libc::SIGHUP), libc::SIGTERM);
        assert_eq!(forwarded(libc::SIGQUIT), libc::SIGTERM);
        assert_eq!(forwarded(libc::SIGTERM), libc::SIGTERM);
        assert_eq!(forwarded(libc::SIGINT), libc::SIGINT);
    }
}
