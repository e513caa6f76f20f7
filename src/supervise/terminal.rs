//! Sharing a terminal with the server: job control (Ctrl-Z suspends the
//! server and us, `fg` resumes both and hands the terminal back to the
//! server), the witness that tells us what the terminal sent the server's
//! group (Ctrl-C, Ctrl-\, a hangup), and the terminal put back at the end.
//!
//! The server's group is the terminal's foreground (as under tini), so the
//! terminal signals it directly and we would never learn of a Ctrl-C. The
//! witness is a small fork of ours that joins the server's group and
//! reports each such signal on a pipe; asked to sync, it answers only after
//! every signal sent before the question, so an exit right after Ctrl-C is
//! told apart from an exit on the server's own.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use crate::{log, sys};

use super::child::ExitKind;
use super::signals;

/// The terminal signals the witness reports.
const REPORTED: [i32; 3] = [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP];
/// How long a sync may take: the witness answers in microseconds unless
/// someone stopped it with SIGSTOP.
const SYNC_WAIT: Duration = Duration::from_secs(2);

/// The terminal we share with the server (interactive runs only).
pub struct Terminal {
    /// The terminal's mode at our start: a server killed in raw mode (in
    /// the middle of onboarding's questions) would leave it raw.
    saved: Option<sys::TerminalMode>,
    witness: Option<Witness>,
    /// The first signal the terminal sent the server's group.
    signalled: Option<i32>,
    /// Time spent suspended (Ctrl-Z): the readiness deadline moves by it.
    pub paused: Duration,
    /// A witness watches the current server's group.
    watched: bool,
}

/// The witness process and its two pipes.
struct Witness {
    pid: i32,
    requests: std::fs::File,
    reports: pipe::Receiver,
    /// Its report pipe ended (it died).
    gone: bool,
}

impl Terminal {
    pub fn new() -> Self {
        Terminal {
            saved: sys::terminal_mode(0),
            witness: None,
            signalled: None,
            paused: Duration::ZERO,
            watched: false,
        }
    }

    /// A new server group holds the terminal: watch what reaches it.
    pub fn watch(&mut self, pgid: i32) {
        self.dismiss();
        self.watched = false;
        match Witness::start(pgid) {
            Ok(w) => {
                self.witness = Some(w);
                self.watched = true;
            }
            Err(e) => log::warn(&format!(
                "cannot watch the terminal's signals to the server ({e}); a server that exits \
                 after Ctrl-C is judged by its exit status alone"
            )),
        }
    }

    /// The next signal the terminal sends the server's group; never,
    /// without a witness.
    pub async fn next_signal(&mut self) -> i32 {
        let Some(w) = self.witness.as_mut() else {
            return std::future::pending().await;
        };
        loop {
            match w.next_byte().await {
                Some(sys::WITNESS_SYNCED) => {}
                Some(b) => {
                    let sig = i32::from(b);
                    self.signalled(sig);
                    return sig;
                }
                None => return std::future::pending().await,
            }
        }
    }

    /// Learns of every signal the terminal sent the server's group before
    /// now (the server's exit may have overtaken the report); then ends
    /// the witness.
    pub async fn settle(&mut self) -> Option<i32> {
        if let Some(w) = self.witness.as_mut() {
            for sig in w.sync().await {
                self.signalled(sig);
            }
        }
        self.dismiss();
        self.signalled
    }

    fn signalled(&mut self, sig: i32) {
        if self.signalled.is_none() {
            self.signalled = Some(sig);
            // The terminal echoed `^C` where the cursor was.
            if sig != libc::SIGHUP && sys::terminal_mode(0).is_some_and(|m| m.echoes_control()) {
                log::line_left_open();
            }
        }
    }

    /// Did the user stop the server from the terminal? By what the witness
    /// saw; without one, a death by SIGINT (or exit 130) is taken as Ctrl-C.
    pub fn interrupted(&self, exit: ExitKind) -> Option<&'static str> {
        match self.signalled {
            Some(sig) => Some(signals::terminal_key(sig)),
            None if !self.watched
                && matches!(exit, ExitKind::Signal(libc::SIGINT) | ExitKind::Code(130)) =>
            {
                Some("Ctrl-C")
            }
            None => None,
        }
    }

    /// Ends the witness (it is ours, so this never hits a stranger).
    pub fn dismiss(&mut self) {
        drop(self.witness.take());
    }

    /// The server stopped with `sig` (Ctrl-Z, or SIGTTOU/SIGTTIN in the
    /// background): stop ourselves the same way, so that the shell sees its
    /// job stopped and takes the terminal; returns once continued (`fg` or
    /// `bg`).
    pub fn suspend(&mut self, server_pgid: i32, sig: i32) {
        let since = Instant::now();
        sys::stop_self(match sig {
            libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => sig,
            _ => libc::SIGSTOP,
        });
        if sig != libc::SIGTSTP {
            // Back to ignoring them (`signals::ignore_terminal_stops`).
            signals::ignore_terminal_stops();
        }
        self.paused += since.elapsed();
        // As PID 1 we cannot stop, and nobody would continue us: the
        // server must not stay stopped. Otherwise SIGCONT does the same.
        self.resumed(server_pgid);
    }

    /// We were continued: in the foreground (`fg`), hand the terminal to
    /// the server's group; then continue it.
    pub fn resumed(&mut self, server_pgid: i32) {
        if sys::foreground_group(0) == Some(sys::own_group()) {
            let _ = sys::give_terminal_to(0, server_pgid);
        }
        let _ = sys::kill_group(server_pgid, libc::SIGCONT);
    }

    /// At the end: takes the terminal back if the server's group still
    /// holds it (not if the shell has it: we may run in the background),
    /// and puts its mode back.
    pub fn reclaim(&mut self, server_pgid: i32) {
        self.dismiss();
        if sys::foreground_group(0) != Some(server_pgid) {
            return;
        }
        let _ = sys::give_terminal_to(0, sys::own_group());
        if let Some(mode) = &self.saved {
            let _ = sys::set_terminal_mode(0, mode);
        }
    }
}

impl Witness {
    fn start(pgid: i32) -> std::io::Result<Self> {
        let (req_r, req_w) = sys::pipe()?;
        let (rep_r, rep_w) = sys::pipe()?;
        let pid = sys::fork_witness(pgid, &REPORTED, req_r.as_raw_fd(), rep_w.as_raw_fd())?;
        // Our copies of its ends: closed, so that its death reads as EOF.
        drop((req_r, rep_w));
        Ok(Witness {
            pid,
            requests: std::fs::File::from(req_w),
            reports: pipe::Receiver::from_owned_fd(rep_r)?,
            gone: false,
        })
    }

    async fn next_byte(&mut self) -> Option<u8> {
        if self.gone {
            return None;
        }
        let mut b = [0u8; 1];
        match self.reports.read(&mut b).await {
            Ok(1) => Some(b[0]),
            _ => {
                self.gone = true;
                None
            }
        }
    }

    /// Every signal reported before the witness answered a sync request.
    async fn sync(&mut self) -> Vec<i32> {
        let mut seen = Vec::new();
        if self.gone || self.requests.write_all(b"?").is_err() {
            return seen;
        }
        let deadline = crate::deadline::after(SYNC_WAIT);
        loop {
            match tokio::time::timeout_at(deadline, self.next_byte()).await {
                Ok(Some(sys::WITNESS_SYNCED)) | Ok(None) | Err(_) => return seen,
                Ok(Some(b)) => seen.push(i32::from(b)),
            }
        }
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        // Only while it is our unreaped child can its pid not be reused.
        if sys::is_unreaped_child(self.pid) {
            let _ = sys::kill(self.pid, libc::SIGKILL);
            sys::reap_pid(self.pid);
        }
    }
}
