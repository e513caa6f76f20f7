//! Our own text on the terminal and in the journal: one-line messages on
//! stderr, prefixed with the program name, the live progress line, and
//! command results on stdout.
//!
//! Under systemd (stderr connected to the journal, `$JOURNAL_STREAM` names
//! it) each line carries a `<N>` priority prefix, which journald turns into
//! the message priority.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

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

fn emit(prio: u8, label: &str, msg: &str) {
    let mut err = std::io::stderr().lock();
    clear_progress_line(&mut err);
    for (i, line) in msg.lines().enumerate() {
        let label = if i == 0 { label } else { "  " };
        let _ = if journal() {
            writeln!(err, "<{prio}>paperclipd: {label}{line}")
        } else {
            writeln!(err, "paperclipd: {label}{line}")
        };
    }
}

pub fn info(msg: &str) {
    emit(6, "", msg);
}

pub fn warn(msg: &str) {
    emit(4, "warning: ", msg);
}

pub fn error(msg: &str) {
    emit(3, "error: ", msg);
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

/// Erases the live progress line, if one is shown, before other output.
pub fn clear_progress_line(w: &mut impl Write) {
    if PROGRESS_SHOWN.swap(false, Ordering::Relaxed) {
        let _ = w.write_all(b"\r\x1b[2K");
    }
}

/// Shows `text` as the live progress line (terminal only).
pub fn show_progress_line(text: &str) {
    let mut err = std::io::stderr().lock();
    let width = crate::sys::terminal_width(2)
        .unwrap_or(100)
        .saturating_sub(1)
        .max(20);
    let shown: String = text.chars().take(width).collect();
    let _ = write!(err, "\r\x1b[2K{shown}");
    let _ = err.flush();
    PROGRESS_SHOWN.store(true, Ordering::Relaxed);
}
