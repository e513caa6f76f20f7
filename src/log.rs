//! Our own text on the terminal and in the journal: one-line messages on
//! stderr, prefixed with the program name, the live progress line, and
//! command results on stdout.
//!
//! Under systemd (stderr connected to the journal, `$JOURNAL_STREAM` names
//! it) each line carries a `<N>` priority prefix, which journald turns into
//! the message priority. While `run` relays output, our lines take the
//! same non-blocking way as the server's (a [`Route`]); in a log file they
//! carry a timestamp instead.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

fn journal() -> bool {
    static J: OnceLock<bool> = OnceLock::new();
    *J.get_or_init(|| {
        let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
            return false;
        };
        crate::sys::dev_ino(2).is_some_and(|(d, i)| {
            dev.parse::<u64>().ok() == Some(d) && ino.parse::<u64>().ok() == Some(i)
        })
    })
}

/// How loud a line of ours is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    /// The syslog priority journald reads from a `<N>` prefix.
    fn priority(self) -> u8 {
        match self {
            Level::Info => 6,
            Level::Warn => 4,
            Level::Error => 3,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Level::Info => "",
            Level::Warn => "warning: ",
            Level::Error => "error: ",
        }
    }
}

/// A queue that takes bytes without ever waiting (`supervise::output`).
pub trait LineSink: Send + Sync {
    fn push(&self, bytes: Vec<u8>);
}

/// Where our lines go while `run` relays output.
#[derive(Clone)]
pub struct Route {
    pub sink: Arc<dyn LineSink>,
    /// The destination is a log file (timestamps, no live progress line).
    pub to_file: bool,
}

static ROUTE: Mutex<Option<Route>> = Mutex::new(None);

/// Routes our lines through `route`, or (`None`) straight to stderr.
pub fn set_route(route: Option<Route>) {
    if let Ok(mut r) = ROUTE.lock() {
        *r = route;
    }
}

fn route() -> Option<Route> {
    ROUTE.lock().ok().and_then(|r| r.clone())
}

fn write_err(bytes: Vec<u8>) {
    match route() {
        Some(r) => r.sink.push(bytes),
        None => {
            let _ = std::io::stderr().lock().write_all(&bytes);
        }
    }
}

/// One message of ours as it is written: `paperclipd: warning: …` on every
/// line, with the journal's `<N>` priority when stderr is the journal, or
/// with a timestamp in a log file.
pub fn format_line(level: Level, msg: &str, to_file: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 32);
    let stamp = to_file
        .then(|| humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string());
    for (i, line) in msg.lines().enumerate() {
        let label = if i == 0 { level.label() } else { "  " };
        // Our messages are split into lines here; any other control
        // character in them came from outside and is escaped.
        let line = crate::untrusted::escape(line);
        let _ = match &stamp {
            Some(t) => writeln!(out, "{t} paperclipd: {label}{line}"),
            None if journal() => writeln!(out, "<{}>paperclipd: {label}{line}", level.priority()),
            None => writeln!(out, "paperclipd: {label}{line}"),
        };
    }
    out
}

/// One write for the whole message: a server sharing the terminal writes
/// its own lines at the same time, and a terminal keeps each write whole,
/// so neither text lands inside the other's line. A server line left open
/// on our way out is finished first.
fn emit(level: Level, msg: &str) {
    let to_file = route().is_some_and(|r| r.to_file);
    let _order = queue_order();
    let mut bytes = Vec::new();
    clear_progress_line(&mut bytes);
    if SERVER_LINE_OPEN.swap(false, Ordering::Relaxed) && !to_file {
        bytes.push(b'\n');
    }
    bytes.extend(format_line(level, msg, to_file));
    write_err(bytes);
}

pub fn info(msg: &str) {
    emit(Level::Info, msg);
}

pub fn warn(msg: &str) {
    emit(Level::Warn, msg);
}

pub fn error(msg: &str) {
    emit(Level::Error, msg);
}

/// Prints a command's result on stdout. A closed pipe (`paperclipd status
/// | head`) is not an error worth a panic.
pub fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = o.write_all(b"\n");
    }
    let _ = o.flush();
}

/// Prints a value as pretty JSON on stdout.
pub fn out_json(v: &impl serde::Serialize) -> crate::error::Result<()> {
    let text = serde_json::to_string_pretty(v)
        .map_err(|e| crate::error::Error::os(format!("cannot encode JSON: {e}")))?;
    out(&text);
    Ok(())
}

static PROGRESS_SHOWN: AtomicBool = AtomicBool::new(false);
/// The server's output on our way out (stderr, or stdout when it is the
/// same place) ends inside a line.
static SERVER_LINE_OPEN: AtomicBool = AtomicBool::new(false);
/// Held while a chunk of the server's output or a line of ours is queued
/// and [`SERVER_LINE_OPEN`] updated, so that the flag always describes the
/// last thing queued before our next line.
static QUEUE_ORDER: Mutex<()> = Mutex::new(());

fn queue_order() -> std::sync::MutexGuard<'static, ()> {
    QUEUE_ORDER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Queues a chunk of the server's relayed output on `sink` (`stream_is_stderr`:
/// the server's stderr) and notes whether it left a line open where our
/// own lines go. A live progress line on the same destination is erased first.
pub fn relay_server_chunk(sink: &dyn LineSink, stream_is_stderr: bool, data: &[u8]) {
    let shares_our_lines = stream_is_stderr || stdout_is_stderr();
    let _order = queue_order();
    let mut out = Vec::with_capacity(data.len() + 8);
    if shares_our_lines {
        clear_progress_line(&mut out);
    }
    out.extend_from_slice(data);
    sink.push(out);
    if let (Some(&last), true) = (data.last(), shares_our_lines) {
        SERVER_LINE_OPEN.store(last != b'\n', Ordering::Relaxed);
    }
}

/// Do our stdout and stderr lead to the same place (a terminal, one file)?
/// Then the server's two streams and our lines are written by one writer,
/// in the order they came.
pub fn stdout_is_stderr() -> bool {
    static SAME: OnceLock<bool> = OnceLock::new();
    *SAME.get_or_init(|| {
        let (out, err) = (crate::sys::dev_ino(1), crate::sys::dev_ino(2));
        out.is_some() && out == err
    })
}

/// Something else (the terminal's `^C` echo) left the cursor inside a
/// line: our next line starts on a new one.
pub fn line_left_open() {
    SERVER_LINE_OPEN.store(true, Ordering::Relaxed);
}

/// Erases the live progress line, if one is shown, before other output.
pub fn clear_progress_line(w: &mut impl Write) {
    if PROGRESS_SHOWN.swap(false, Ordering::Relaxed) {
        let _ = w.write_all(b"\r\x1b[2K");
    }
}

/// Erases the live progress line, if one is shown.
pub fn clear_progress() {
    let _order = queue_order();
    let mut bytes = Vec::new();
    clear_progress_line(&mut bytes);
    if !bytes.is_empty() {
        write_err(bytes);
    }
}

/// Can a live progress line be shown: stderr is a terminal and our lines
/// do not go to a log file?
pub fn live_line_possible() -> bool {
    crate::sys::isatty(2) && !route().is_some_and(|r| r.to_file)
}

/// Shows `text` as the live progress line (terminal only), unless the
/// server's output has a line open: that line is not ours to overwrite.
pub fn show_progress_line(text: &str) {
    let _order = queue_order();
    if SERVER_LINE_OPEN.load(Ordering::Relaxed) {
        return;
    }
    let width = crate::sys::terminal_width(2)
        .unwrap_or(100)
        .saturating_sub(1)
        .max(20);
    let shown: String = text.chars().take(width).collect();
    write_err(format!("\r\x1b[2K{shown}").into_bytes());
    PROGRESS_SHOWN.store(true, Ordering::Relaxed);
}
