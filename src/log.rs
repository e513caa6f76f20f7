//! Our own messages on stderr, one line each, prefixed with the program
//! name. Under systemd (stderr connected to the journal, `$JOURNAL_STREAM`
//! names it) each line carries a `<N>` priority prefix, which journald
//! turns into the message priority.

use std::io::Write;
use std::sync::OnceLock;

fn journal() -> bool {
    static J: OnceLock<bool> = OnceLock::new();
    *J.get_or_init(|| {
        let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
            return false;
        };
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on fd 2 with a valid out-pointer.
        if unsafe { libc::fstat(2, &mut st) } != 0 {
            return false;
        }
        dev.parse::<u64>().ok() == Some(st.st_dev as u64)
            && ino.parse::<u64>().ok() == Some(st.st_ino as u64)
    })
}

fn emit(prio: u8, label: &str, msg: &str) {
    let mut err = std::io::stderr().lock();
    crate::supervise::output::clear_progress_line(&mut err);
    for (i, line) in msg.lines().enumerate() {
        let _ = if journal() {
            writeln!(
                err,
                "<{prio}>paperclipd: {}{line}",
                if i == 0 { label } else { "  " }
            )
        } else {
            writeln!(
                err,
                "paperclipd: {}{line}",
                if i == 0 { label } else { "  " }
            )
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
