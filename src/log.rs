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
    // One write for the whole message: a server sharing the terminal
    // writes its own lines at the same time, and a terminal keeps each
    // write whole, so neither text lands inside the other's line.
    let mut text = Vec::new();
    clear_progress_line(&mut text);
    if SERVER_LINE_OPEN.swap(false, Ordering::Relaxed) {
        text.push(b'\n');
    }
    for (i, line) in msg.lines().enumerate() {
        let label = if i == 0 { label } else { "  " };
        let _ = if journal() {
            writeln!(text, "<{prio}>paperclipd: {label}{line}")
        } else {
            writeln!(text, "paperclipd: {label}{line}")
        };
    }
    let _ = std::io::stderr().lock().write_all(&text);
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
/// The server's output that we copied to the terminal ended without a
/// newline: our next line must not continue it.
static SERVER_LINE_OPEN: AtomicBool = AtomicBool::new(false);

/// Erases the live progress line, if one is shown, before other output.
pub fn clear_progress_line(w: &mut impl Write) {
    if PROGRESS_SHOWN.swap(false, Ordering::Relaxed) {
        let _ = w.write_all(b"\r\x1b[2K");
    }
}

/// Copies the server's output (piped through us) to our stdout or stderr,
/// after erasing the progress line; remembers whether it left a line open
/// where our own lines go.
pub fn server_output(to_stdout: bool, bytes: &[u8]) -> std::io::Result<()> {
    clear_progress_line(&mut std::io::stderr().lock());
    if to_stdout {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()?;
    } else {
        std::io::stderr().lock().write_all(bytes)?;
    }
    if let (Some(&last), true) = (bytes.last(), !to_stdout || stdout_is_stderr()) {
        SERVER_LINE_OPEN.store(last != b'\n', Ordering::Relaxed);
    }
    Ok(())
}

/// Do our stdout and stderr lead to the same place (a terminal, one file)?
fn stdout_is_stderr() -> bool {
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

/// Shows `text` as the live progress line (terminal only), unless the
/// server's output has a line open: that line is not ours to overwrite.
pub fn show_progress_line(text: &str) {
    if SERVER_LINE_OPEN.load(Ordering::Relaxed) {
        return;
    }
    let width = crate::sys::terminal_width(2)
        .unwrap_or(100)
        .saturating_sub(1)
        .max(20);
    let shown: String = text.chars().take(width).collect();
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(format!("\r\x1b[2K{shown}").as_bytes());
    let _ = err.flush();
    PROGRESS_SHOWN.store(true, Ordering::Relaxed);
}
