//! Showing text that comes from outside paperclipd — other processes'
//! command lines, the server's output quoted in a diagnostic, paths,
//! config values, records read from disk — in text output and log lines:
//! every control character escaped (`\n`, `\r`, `\x1b`, `\u{85}`) and the
//! bidirectional overrides too, so that such text stays on its line,
//! cannot forge one of ours (`  lock:   held by pid 1`) and cannot drive
//! the terminal. JSON output keeps the raw value (serde encodes it).

use std::borrow::Cow;
use std::fmt::Write;
use std::path::Path;

/// `text` as it may be shown: unchanged when it holds nothing to escape.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A path as it may be shown (not UTF-8: lossily).
pub fn path(p: &Path) -> String {
    escape(&p.to_string_lossy()).into_owned()
}

/// Control characters (C0, DEL, C1) and the bidirectional controls that
/// reorder what follows them on screen (U+200E/F, U+202A–E, U+2066–9).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(escape("node /srv/é server.js"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\n  lock:   held by pid 1\x1b[2J\r\t\x07\x7f\u{85}\u{202e}b"),
            "a\\n  lock:   held by pid 1\\x1b[2J\\r\\t\\x07\\x7f\\u{85}\\u{202e}b"
        );
        assert_eq!(path(Path::new("/x\ny")), "/x\\ny");
    }
}
