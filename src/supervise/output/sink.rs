//! A sink that never blocks the supervisor: a bounded queue in front of a
//! writer thread. When the destination stops taking output (a reader that
//! never reads, a stalled journald, a full disk), what does not fit is
//! dropped and counted, and each gap is reported once, in the output where
//! it happened, as soon as the destination takes output again.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Bytes queued for one destination at most (besides the batch the writer
/// has in hand, at most as much again); beyond this, output is dropped.
/// Enough for a burst of startup logs while journald catches up.
pub const CAPACITY: usize = 1024 * 1024;
/// How long the server's output waits for room in a full queue (the
/// destination taking nothing meanwhile) before it is dropped.
pub const ROOM_WAIT: Duration = Duration::from_secs(1);

/// Where a sink writes, from its own thread (so it may block).
pub trait Target: Send + 'static {
    /// Writes all of `data`.
    fn write_chunk(&mut self, data: &[u8]) -> io::Result<()>;
    /// The report of a gap as this destination shows our own lines.
    fn report(&self, msg: &str) -> Vec<u8>;
    /// `stdout`, `stderr`, `the log file /path`.
    fn name(&self) -> String;
}

/// A handle to one destination's queue; clones share it.
#[derive(Clone)]
pub struct Sink {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when there is work for the writer.
    more: Condvar,
    /// Signalled when the writer has nothing in hand.
    idle: Condvar,
    /// Notified when the writer takes the queue (there is room again).
    room: tokio::sync::Notify,
}

#[derive(Default)]
struct Queue {
    chunks: VecDeque<Vec<u8>>,
    bytes: usize,
    /// The writer is writing a batch it took.
    busy: bool,
    closed: bool,
    /// Output dropped since the writer last took the queue. While a gap is
    /// open everything is dropped, so the report lands exactly where the
    /// output is missing.
    gap: Option<Gap>,
}

/// Output lost in one stretch.
#[derive(Debug)]
struct Gap {
    bytes: u64,
    since: Instant,
    /// The write error, when the destination failed rather than stalled.
    error: Option<String>,
}

impl Gap {
    fn new(error: Option<String>) -> Self {
        Gap {
            bytes: 0,
            since: Instant::now(),
            error,
        }
    }

    fn describe(&self, name: &str) -> String {
        let why = match &self.error {
            Some(e) => format!("writing to {name} failed ({e})"),
            None => format!(
                "{name} took no output for {:.1}s and {} KiB were waiting",
                self.since.elapsed().as_secs_f64(),
                CAPACITY / 1024
            ),
        };
        format!("{} bytes of output were dropped here: {why}", self.bytes)
    }
}

impl Sink {
    /// Starts the writer thread for `target`.
    pub fn start(target: impl Target) -> io::Result<Sink> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            more: Condvar::new(),
            idle: Condvar::new(),
            room: tokio::sync::Notify::new(),
        });
        let for_thread = shared.clone();
        std::thread::Builder::new()
            .name("paperclipd-output".into())
            .spawn(move || write_loop(&for_thread, target))?;
        Ok(Sink { shared })
    }

    fn lock(&self) -> Option<MutexGuard<'_, Queue>> {
        // A poisoned queue means the writer panicked: drop output silently.
        self.shared.queue.lock().ok()
    }

    /// Queues `data` without waiting; drops (and counts) it when the
    /// queue is full.
    pub fn push(&self, data: Vec<u8>) {
        if data.is_empty() {
            return;
        }
        let Some(mut q) = self.lock() else { return };
        if q.closed {
            return;
        }
        if q.gap.is_some() || q.bytes + data.len() > CAPACITY {
            q.gap.get_or_insert_with(|| Gap::new(None)).bytes += data.len() as u64;
            drop(q);
            self.shared.more.notify_one();
            return;
        }
        q.bytes += data.len();
        q.chunks.push_back(data);
        drop(q);
        self.shared.more.notify_one();
    }

    /// Waits until `len` bytes fit in the queue, for at most
    /// [`ROOM_WAIT`] without the destination taking anything: a
    /// destination slower than the server slows the server down (as a
    /// pipe would) instead of losing its output; one that stopped loses it
    /// after that wait, and while its gap is open nothing waits. Only the
    /// relay of the server's pipes waits, in its own task; nothing else
    /// does.
    pub async fn wait_for_room(&self, len: usize) {
        let deadline = tokio::time::Instant::now() + ROOM_WAIT;
        loop {
            let notified = self.shared.room.notified();
            tokio::pin!(notified);
            // Registered before the check: a take in between wakes us.
            notified.as_mut().enable();
            {
                let Some(q) = self.lock() else { return };
                if q.closed || q.gap.is_some() || q.bytes + len <= CAPACITY {
                    return;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    /// Stops taking output and waits up to `wait` for the writer to write
    /// what is queued. Returns whether everything was written out.
    pub fn close(&self, wait: Duration) -> bool {
        let Some(mut q) = self.lock() else {
            return false;
        };
        q.closed = true;
        self.shared.more.notify_one();
        self.shared.room.notify_waiters();
        let deadline = crate::deadline::Later::later(Instant::now(), wait);
        while q.busy || !q.chunks.is_empty() || q.gap.is_some() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.shared.idle.wait_timeout(q, left) {
                Ok((next, _)) => q = next,
                Err(_) => return false,
            }
        }
        true
    }
}

impl crate::log::LineSink for Sink {
    fn push(&self, bytes: Vec<u8>) {
        Sink::push(self, bytes);
    }
}

/// The writer thread: takes the whole queue at once, writes it, reports
/// gaps, until the sink is closed and empty.
fn write_loop(shared: &Shared, mut target: impl Target) {
    let name = target.name();
    // A gap not yet reported because the destination still fails.
    let mut unreported: Option<Gap> = None;
    loop {
        let Ok(mut q) = shared.queue.lock() else {
            return;
        };
        while q.chunks.is_empty() && q.gap.is_none() && !q.closed {
            q = match shared.more.wait(q) {
                Ok(q) => q,
                Err(_) => return,
            };
        }
        if q.chunks.is_empty() && q.gap.is_none() {
            // Closed, and nothing is left.
            q.busy = false;
            shared.idle.notify_all();
            return;
        }
        let chunks = std::mem::take(&mut q.chunks);
        let gap = q.gap.take();
        q.bytes = 0;
        q.busy = true;
        drop(q);
        shared.room.notify_waiters();

        for chunk in chunks {
            // The previous failure's gap lies before this chunk.
            report(&mut target, &mut unreported, &name);
            if let Err(e) = target.write_chunk(&chunk) {
                let g = unreported.get_or_insert_with(|| Gap::new(Some(e.to_string())));
                g.bytes += chunk.len() as u64;
            }
        }
        // A full queue's gap lies after the chunks that were queued.
        if let Some(g) = gap {
            match &mut unreported {
                Some(u) => u.bytes += g.bytes,
                None => unreported = Some(g),
            }
        }
        report(&mut target, &mut unreported, &name);

        let Ok(mut q) = shared.queue.lock() else {
            return;
        };
        q.busy = false;
        shared.idle.notify_all();
    }
}

/// Writes the report of an open gap, if the destination takes it now.
fn report(target: &mut impl Target, gap: &mut Option<Gap>, name: &str) {
    if let Some(g) = gap {
        let line = target.report(&g.describe(name));
        if target.write_chunk(&line).is_ok() {
            *gap = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Writes into a shared buffer, each write waiting for a permit.
    struct Gated {
        out: Arc<Mutex<Vec<u8>>>,
        permits: mpsc::Receiver<()>,
    }

    impl Target for Gated {
        fn write_chunk(&mut self, data: &[u8]) -> io::Result<()> {
            self.permits.recv().map_err(io::Error::other)?;
            self.out.lock().unwrap().extend_from_slice(data);
            Ok(())
        }
        fn report(&self, msg: &str) -> Vec<u8> {
            format!("REPORT {msg}\n").into_bytes()
        }
        fn name(&self) -> String {
            "the test target".into()
        }
    }

    #[test]
    fn a_stuck_destination_drops_counts_and_reports_once() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let (permit, permits) = mpsc::channel();
        let sink = Sink::start(Gated {
            out: out.clone(),
            permits,
        })
        .unwrap();
        // The destination takes nothing: 4 MiB must be queued or dropped
        // at once, never waited for.
        let t = Instant::now();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            sink.push(chunk.clone());
        }
        assert!(t.elapsed() < Duration::from_secs(1), "push waited");
        // Unblock it for good: what was queued is written, then the report.
        for _ in 0..1000 {
            permit.send(()).unwrap();
        }
        assert!(sink.close(Duration::from_secs(10)));
        let text = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
        // The chunks have no newline: the report follows the last one.
        let reports: Vec<&str> = text.split("REPORT ").skip(1).collect();
        assert_eq!(reports.len(), 1, "{reports:?}");
        let kept = text.bytes().filter(|b| *b == b'x').count();
        let dropped: usize = reports[0]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(kept + dropped, 64 * 64 * 1024, "{}", reports[0]);
        // The queue, and the batch the writer took before it stalled.
        assert!(kept <= 2 * CAPACITY, "kept {kept}");
        assert!(reports[0].contains("took no output"), "{}", reports[0]);
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Takes everything, slowly (about 30 MB/s): a destination that keeps
    /// up on average, slower than a burst of the server's.
    struct Slow(Arc<Mutex<Vec<u8>>>);

    impl Target for Slow {
        fn write_chunk(&mut self, data: &[u8]) -> io::Result<()> {
            std::thread::sleep(Duration::from_micros(2 * data.len() as u64 / 64));
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(())
        }
        fn report(&self, msg: &str) -> Vec<u8> {
            format!("REPORT {msg}\n").into_bytes()
        }
        fn name(&self) -> String {
            "the slow target".into()
        }
    }

    /// 8 MiB at once into a destination that takes ~30 MB/s: before the
    /// relay waited for room, everything beyond the 1 MiB queue was
    /// dropped while the destination was still taking output.
    #[test]
    fn a_slow_destination_slows_the_relay_instead_of_losing_output() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink::start(Slow(out.clone())).unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        runtime().block_on(async {
            for _ in 0..128 {
                sink.wait_for_room(chunk.len()).await;
                sink.push(chunk.clone());
            }
        });
        assert!(sink.close(Duration::from_secs(10)));
        let out = out.lock().unwrap();
        let text = String::from_utf8_lossy(&out[out.len().saturating_sub(200)..]).into_owned();
        assert!(!text.contains("REPORT"), "{text}");
        assert_eq!(out.len(), 128 * 64 * 1024);
    }

    /// A destination that takes nothing holds the relay once, for
    /// ROOM_WAIT; then its gap is open and nothing waits.
    #[test]
    fn a_stuck_destination_holds_the_relay_once() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let (permit, permits) = mpsc::channel();
        let sink = Sink::start(Gated {
            out: out.clone(),
            permits,
        })
        .unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        let t = Instant::now();
        runtime().block_on(async {
            for _ in 0..64 {
                sink.wait_for_room(chunk.len()).await;
                sink.push(chunk.clone());
            }
        });
        let took = t.elapsed();
        assert!(took >= ROOM_WAIT && took < ROOM_WAIT * 3, "waited {took:?}");
        for _ in 0..1000 {
            permit.send(()).unwrap();
        }
        assert!(sink.close(Duration::from_secs(10)));
        let text = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
        assert_eq!(text.matches("REPORT ").count(), 1, "one report");
    }

    #[test]
    fn a_failed_write_is_reported_before_the_next_output() {
        struct FailOnce(bool, Arc<Mutex<Vec<u8>>>);
        impl Target for FailOnce {
            fn write_chunk(&mut self, data: &[u8]) -> io::Result<()> {
                if std::mem::take(&mut self.0) {
                    return Err(io::Error::from_raw_os_error(libc::ENOSPC));
                }
                self.1.lock().unwrap().extend_from_slice(data);
                Ok(())
            }
            fn report(&self, msg: &str) -> Vec<u8> {
                format!("REPORT {msg}\n").into_bytes()
            }
            fn name(&self) -> String {
                "the disk".into()
            }
        }
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink::start(FailOnce(true, out.clone())).unwrap();
        sink.push(b"lost\n".to_vec());
        assert!(sink.close(Duration::from_secs(10)));
        let text = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
        assert!(
            text.starts_with("REPORT 5 bytes") && text.contains("writing to the disk failed"),
            "{text}"
        );
    }
}
