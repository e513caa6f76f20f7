//! The server's last lines, kept for diagnostics when it fails to start.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::Stream;

/// Lines kept for diagnostics.
pub const TAIL_LINES: usize = 20;
/// Longer lines are cut (a server can print anything).
const MAX_LINE: usize = 2000;

/// The last lines the server printed (stdout and stderr interleaved as
/// they arrived).
#[derive(Debug, Default)]
pub struct Tail {
    lines: VecDeque<String>,
    /// The unfinished last line of each stream.
    partial: [Vec<u8>; 2],
}

pub type SharedTail = Arc<Mutex<Tail>>;

impl Tail {
    /// Adds bytes from one stream.
    pub fn push(&mut self, stream: Stream, bytes: &[u8]) {
        let which = stream as usize;
        for &b in bytes {
            if b == b'\n' {
                let line = std::mem::take(&mut self.partial[which]);
                self.push_line(&line);
            } else if self.partial[which].len() < MAX_LINE {
                self.partial[which].push(b);
            }
        }
    }

    fn push_line(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(strip_ansi(text));
    }

    /// The kept lines, with any unfinished last line.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.lines.iter().cloned().collect();
        for p in &self.partial {
            if !p.is_empty() {
                out.push(strip_ansi(&String::from_utf8_lossy(p)));
            }
        }
        let skip = out.len().saturating_sub(TAIL_LINES);
        out.split_off(skip)
    }
}

/// Removes the colours (CSI sequences, `ESC [ … letter`) so diagnostics
/// stay readable in a journal. Every other character is kept: whoever
/// shows a line escapes its control characters (`crate::untrusted`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines_and_partials() {
        let mut t = Tail::default();
        for i in 0..30 {
            t.push(
                if i % 2 == 0 {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                },
                format!("line {i}\n").as_bytes(),
            );
        }
        t.push(Stream::Stdout, b"unfinished");
        let l = t.lines();
        assert_eq!(l.len(), TAIL_LINES);
        assert_eq!(l.last().unwrap(), "unfinished");
        assert_eq!(l[0], "line 11");
    }

    #[test]
    fn strips_colours_and_bounds_lines() {
        let mut t = Tail::default();
        t.push(Stream::Stderr, b"\x1b[31mred\x1b[0m\r\n");
        t.push(Stream::Stderr, b"\x1b]0;title\x07\rover\n");
        t.push(Stream::Stderr, &vec![b'x'; 10_000]);
        t.push(Stream::Stderr, b"\n");
        let l = t.lines();
        assert_eq!(l[0], "red");
        assert_eq!(
            l[1], "\x1b]0;title\x07\rover",
            "kept, for the shower to escape"
        );
        assert_eq!(l[2].len(), MAX_LINE);
    }
}
