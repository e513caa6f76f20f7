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
    /// Adds bytes from one stream. Only the lines that can stay are
    /// looked at: those ending in the last [`TAIL_LINES`] newlines of
    /// `bytes`, found from its end (a byte-by-byte pass with a string per
    /// line cost the relay more than all its copying).
    pub fn push(&mut self, stream: Stream, bytes: &[u8]) {
        let which = stream as usize;
        // The last TAIL_LINES + 1 newlines, from the end.
        let mut newlines = [0usize; TAIL_LINES + 1];
        let mut found = 0;
        let mut end = bytes.len();
        while found < newlines.len() {
            let Some(i) = bytes[..end].iter().rposition(|b| *b == b'\n') else {
                break;
            };
            newlines[found] = i;
            found += 1;
            end = i;
        }
        let newlines = &mut newlines[..found];
        newlines.reverse();
        let Some(&last) = newlines.last() else {
            extend_bounded(&mut self.partial[which], bytes);
            return;
        };
        let open = std::mem::take(&mut self.partial[which]);
        if found <= TAIL_LINES {
            // The first line found began before this chunk. (With more
            // newlines than lines kept, it is not kept.)
            let mut first = open;
            extend_bounded(&mut first, &bytes[..newlines[0]]);
            self.push_line(&first);
        }
        // The lines between the newlines found.
        for pair in newlines.windows(2) {
            let line = &bytes[pair[0] + 1..pair[1]];
            self.push_line(&line[..line.len().min(MAX_LINE)]);
        }
        self.set_partial(which, &bytes[last + 1..]);
    }

    fn set_partial(&mut self, which: usize, bytes: &[u8]) {
        let p = &mut self.partial[which];
        p.clear();
        extend_bounded(p, bytes);
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

/// Appends to an unfinished line, up to [`MAX_LINE`] bytes.
fn extend_bounded(line: &mut Vec<u8>, bytes: &[u8]) {
    let room = MAX_LINE.saturating_sub(line.len());
    line.extend_from_slice(&bytes[..bytes.len().min(room)]);
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

    /// The byte-by-byte algorithm the tail had before it looked only at
    /// the lines that can stay: the reference for what it keeps.
    #[derive(Default)]
    struct Reference {
        lines: VecDeque<Vec<u8>>,
        partial: [Vec<u8>; 2],
    }

    impl Reference {
        fn push(&mut self, stream: Stream, bytes: &[u8]) {
            let which = stream as usize;
            for &b in bytes {
                if b == b'\n' {
                    let line = std::mem::take(&mut self.partial[which]);
                    if self.lines.len() == TAIL_LINES {
                        self.lines.pop_front();
                    }
                    self.lines.push_back(line);
                } else if self.partial[which].len() < MAX_LINE {
                    self.partial[which].push(b);
                }
            }
        }

        fn lines(&self) -> Vec<String> {
            let mut out: Vec<String> = self
                .lines
                .iter()
                .chain(self.partial.iter().filter(|p| !p.is_empty()))
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect();
            let skip = out.len().saturating_sub(TAIL_LINES);
            out.split_off(skip)
        }
    }

    #[test]
    fn keeps_what_the_byte_by_byte_tail_kept_for_any_chunking() {
        // Lines of every length around the bounds, both streams, cut into
        // chunks of every size around the number of lines kept.
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for round in 0..300 {
            let mut text = Vec::new();
            for i in 0..(next(60) as usize) {
                let len = match next(4) {
                    0 => 0,
                    1 => next(10) as usize,
                    2 => MAX_LINE - 2 + next(5) as usize,
                    _ => next(3 * MAX_LINE as u64) as usize,
                };
                text.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, len));
                text.push(b'\n');
            }
            text.extend(std::iter::repeat_n(
                b'z',
                next(2 * MAX_LINE as u64) as usize,
            ));
            let (mut t, mut r) = (Tail::default(), Reference::default());
            let mut rest = &text[..];
            while !rest.is_empty() {
                let n = match next(3) {
                    0 => 1 + next(4) as usize,
                    1 => 1 + next(200) as usize,
                    _ => 1 + next(20_000) as usize,
                }
                .min(rest.len());
                let stream = if next(2) == 0 {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                };
                t.push(stream, &rest[..n]);
                r.push(stream, &rest[..n]);
                rest = &rest[n..];
                assert_eq!(t.lines(), r.lines(), "round {round}");
            }
        }
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
