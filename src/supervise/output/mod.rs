//! The server's output and our own lines, on their way out.
//!
//! Without a terminal the server's stdout and stderr are pipes that we copy
//! through unchanged to our stdout and stderr (the journal, `docker logs`),
//! or with `--log-file` to a file rotated by size ([`rotate`]), keeping the
//! last lines for diagnostics ([`tail`]). Nothing on the way may block the
//! supervisor: each destination has a bounded queue and a writer thread of
//! its own ([`sink`]); a destination slower than the server slows the
//! server's pipe down, one that stops taking output (for a second) loses
//! it, counted and reported once. Our own lines (`log`) take the same way, so
//! they keep their order with the server's. In a terminal the server owns
//! the terminal and only our lines pass here.

mod rotate;
mod sink;
mod tail;

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::log::{self, Level};
use crate::log_file::LogFileSettings;
use sink::{Sink, Target};
pub use tail::{SharedTail, Tail};

/// How long the end of a run waits for queued output to be written out.
const FLUSH_WAIT: Duration = Duration::from_secs(1);
/// Bytes read from a pipe at once.
const READ_CHUNK: usize = 64 * 1024;
/// Into a log file both streams are written whole lines at a time; a
/// partial line longer than this is written anyway.
const MAX_HELD: usize = 64 * 1024;

/// One of the server's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Where `run` writes, for as long as it runs.
#[derive(Clone)]
pub struct Relay {
    /// The server's stdout.
    out: Sink,
    /// The server's stderr and our own lines.
    err: Sink,
    /// With a log file: our stderr, for the error that ends the run.
    console: Option<Sink>,
    to_file: bool,
}

impl Relay {
    /// Starts the writer threads and routes our own lines through them.
    pub fn start(log_file: Option<&LogFileSettings>) -> Result<Relay> {
        let relay = match log_file {
            // One destination behind both (a terminal, `>both 2>&1`):
            // one writer, so the server's streams and our lines keep
            // the order they came in.
            None if log::stdout_is_stderr() => {
                let sink = start(Stdio::Stderr)?;
                Relay {
                    out: sink.clone(),
                    err: sink,
                    console: None,
                    to_file: false,
                }
            }
            None => Relay {
                out: start(Stdio::Stdout)?,
                err: start(Stdio::Stderr)?,
                console: None,
                to_file: false,
            },
            Some(settings) => {
                let file = rotate::RotatingFile::open(settings).map_err(|e| {
                    Error::config(format!(
                        "cannot open the log file {}: {e}; expected a path where paperclipd may create \
                         and append to a regular file (not a symbolic link). Fix it, or choose another --log-file",
                        crate::untrusted::path(&settings.path)
                    ))
                })?;
                let sink = start(file)?;
                Relay {
                    out: sink.clone(),
                    err: sink,
                    console: Some(start(Stdio::Stderr)?),
                    to_file: true,
                }
            }
        };
        log::set_route(Some(log::Route {
            sink: Arc::new(relay.err.clone()),
            to_file: relay.to_file,
        }));
        Ok(relay)
    }

    fn sink(&self, stream: Stream) -> &Sink {
        match stream {
            Stream::Stdout => &self.out,
            Stream::Stderr => &self.err,
        }
    }

    /// Ends the run's output: the error that ends the run (if any) is
    /// written (with a log file, to stderr too), every queue is written
    /// out (waiting at most [`FLUSH_WAIT`] for a stuck destination), and
    /// our lines go straight to stderr again. Returns the exit code.
    pub fn finish(self, result: Result<u8>) -> Result<u8> {
        if let Err(e) = &result {
            log::error(&e.message);
            if let Some(console) = &self.console {
                console.push(log::format_line(Level::Error, &e.message, false));
            }
        }
        log::set_route(None);
        let deadline = crate::deadline::Later::later(Instant::now(), FLUSH_WAIT);
        let left = || deadline.saturating_duration_since(Instant::now());
        self.out.close(left());
        self.err.close(left());
        if let Some(console) = &self.console {
            console.close(left());
        }
        Ok(match result {
            Ok(code) => code,
            Err(e) => e.exit_code(),
        })
    }
}

fn start(target: impl Target) -> Result<Sink> {
    Sink::start(target).map_err(|e| Error::os(format!("cannot start the output thread: {e}")))
}

/// Copies one of the server's pipes to its destination until EOF, keeping
/// its tail. Runs as its own task; EOF comes when the server and everything
/// that inherited the pipe are gone. Waits for a full queue only while the
/// destination still takes output ([`Sink::wait_for_room`]): the server
/// then writes as fast as the destination reads, as into a pipe.
pub async fn forward(fd: OwnedFd, stream: Stream, tail: SharedTail, relay: Relay) {
    use tokio::io::AsyncReadExt;
    let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let sink = relay.sink(stream);
    let mut buf = vec![0u8; READ_CHUNK];
    // Log file only: the unfinished last line, held back so that the two
    // streams do not interleave within a line.
    let mut held: Vec<u8> = Vec::new();
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let data = &buf[..n];
        if let Ok(mut t) = tail.lock() {
            t.push(stream, data);
        }
        if relay.to_file {
            // `held` never holds a newline: the last one of `data` ends
            // what is written now. One copy, not two.
            match data.iter().rposition(|b| *b == b'\n') {
                Some(i) => {
                    let mut whole = std::mem::take(&mut held);
                    whole.extend_from_slice(&data[..=i]);
                    sink.wait_for_room(whole.len()).await;
                    sink.push(whole);
                    held.extend_from_slice(&data[i + 1..]);
                }
                None => {
                    held.extend_from_slice(data);
                    if held.len() > MAX_HELD {
                        sink.wait_for_room(held.len()).await;
                        sink.push(std::mem::take(&mut held));
                    }
                }
            }
        } else {
            sink.wait_for_room(data.len()).await;
            log::relay_server_chunk(sink, stream == Stream::Stderr, data);
        }
    }
    sink.push(held);
}

/// Our own stdout or stderr as a destination.
enum Stdio {
    Stdout,
    Stderr,
}

impl Target for Stdio {
    fn write_chunk(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stdio::Stdout => {
                let mut o = io::stdout().lock();
                write_patiently(&mut o, data)?;
                o.flush()
            }
            Stdio::Stderr => write_patiently(&mut io::stderr().lock(), data),
        }
    }

    fn report(&self, msg: &str) -> Vec<u8> {
        log::format_line(Level::Warn, msg, false)
    }

    fn name(&self) -> String {
        match self {
            Stdio::Stdout => "stdout".into(),
            Stdio::Stderr => "stderr".into(),
        }
    }
}

/// Writes all of `data`, waiting where a descriptor that someone else made
/// non-blocking says "would block" (this runs on the sink's own thread).
fn write_patiently(w: &mut impl Write, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match w.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
