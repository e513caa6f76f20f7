//! Helpers for black-box tests of the built `paperclipd` binary: a temp
//! Paperclip home, the fixture HTTP server (`tests/fixture/server.py`), a
//! real `NOTIFY_SOCKET` datagram listener, and condition waits with
//! deadlines (never a fixed sleep that is hoped to be long enough).
#![allow(dead_code)]

#[cfg(target_os = "linux")]
pub mod tmux;

use std::fs;
use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Generous: the suite must pass on a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_paperclipd")
}

/// The Python interpreter itself, resolved once: `python3` on PATH may be a
/// shell shim (pyenv's is a bash script that runs `pyenv exec`), which adds
/// hundreds of milliseconds to every fixture start on a loaded machine and
/// ate into short readiness timeouts.
pub fn python() -> &'static str {
    static PY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "python3".to_string())
    })
}

pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture/server.py")
}

/// A port nobody listens on right now, below the kernel's ephemeral range:
/// outgoing connections (every probe is a fresh one) take their local
/// ports from that range, and one could take a port between our pick and
/// the test's bind. Tests run in parallel, so never a fixed port: a
/// pseudo-random start, each port handed out once per test process, and
/// a bind to check nobody else holds it.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<(u64, std::collections::HashSet<u16>)>> = Mutex::new(None);
    let low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (first, last) = (10000u16, low.saturating_sub(1).max(10001));
    let span = u64::from(last - first) + 1;
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let (state, used) = given.get_or_insert_with(|| {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32);
        (seed | 1, std::collections::HashSet::new())
    });
    for _ in 0..10_000 {
        // xorshift64: spreads the picks of concurrent test processes.
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let port = first + (*state % span) as u16;
        if [3100, 54329].contains(&port) || !used.insert(port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {first} and {last}");
}

pub fn wall_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for a child to exit, with a deadline.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("process {} did not exit within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Copies an executable to run it from `to`. `cp` writes it, not this
/// process: a file that this multi-threaded test process held open for
/// writing could be inherited by a child another test forks at that
/// moment, and executing it would then fail with ETXTBSY ("Text file busy")
/// until that child execs.
pub fn copy_executable(from: impl AsRef<Path>, to: impl AsRef<Path>) {
    let st = Command::new("cp")
        .arg(from.as_ref())
        .arg(to.as_ref())
        .status()
        .expect("run cp");
    assert!(
        st.success(),
        "cp {:?} {:?}: {st}",
        from.as_ref(),
        to.as_ref()
    );
}

pub fn pid_alive(pid: i32) -> bool {
    // A zombie still "exists" for kill(0); read its state from /proc.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

pub fn signal(pid: u32, sig: i32) {
    unsafe { libc::kill(pid as i32, sig) };
}

/// One test's world: a temp dir with a Paperclip home, a state dir for the
/// fixture, and a notify socket.
pub struct World {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl World {
    pub fn new() -> Self {
        World {
            dir: tempfile::tempdir().expect("tempdir"),
            port: free_port(),
        }
    }
    /// A world under `base` instead of /tmp (a runtime under /tmp is
    /// volatile, and `install` refuses to pin it).
    #[allow(dead_code)]
    pub fn new_in(base: &Path) -> Self {
        fs::create_dir_all(base).expect("create the temp base");
        World {
            dir: tempfile::tempdir_in(base).expect("tempdir"),
            port: free_port(),
        }
    }
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn lock_path(&self, id: &str) -> PathBuf {
        self.home()
            .join("instances")
            .join(id)
            .join("paperclipd.lock")
    }
    pub fn state_file(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.state().join(name)).ok()
    }
    pub fn fixture_pid(&self) -> Option<i32> {
        self.state_file("pid")?.trim().parse().ok()
    }
    /// The pids the fixture leaked (`--leak`), as far as it has recorded them.
    pub fn leaked(&self) -> Vec<i32> {
        self.state_file("leaked")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
    /// The fixture's slow-stopping grandchild (`--grandchild-term-delay`),
    /// once it handles SIGTERM.
    pub fn grandchild_ready(&self) -> i32 {
        let pid = || self.state_file("grandchild.ready")?.trim().parse().ok();
        wait_until(DEADLINE, "the grandchild to handle SIGTERM", || {
            pid().is_some()
        });
        pid().unwrap_or_default()
    }

    /// `paperclipd` with this world's home, the given args, and the fixture
    /// as the server (fixture args after `--`).
    pub fn run_cmd(&self, args: &[&str], fixture_args: &[&str]) -> Command {
        self.run_cmd_via(&[], args, fixture_args)
    }

    /// The same, run through `prefix` (e.g. `unshare --pid --fork --`).
    pub fn run_cmd_via(&self, prefix: &[&str], args: &[&str], fixture_args: &[&str]) -> Command {
        let mut c = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        c.arg("run")
            .arg("--home")
            .arg(self.home())
            .arg("--url")
            .arg(self.url());
        c.args(args);
        c.arg("--").arg(python()).arg(fixture());
        c.arg("--port")
            .arg(self.port.to_string())
            .arg("--state-dir")
            .arg(self.state());
        c.args(fixture_args);
        c.env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID");
        c.env_remove("PAPERCLIP_HOME")
            .env_remove("PAPERCLIP_INSTANCE_ID")
            .env_remove("INVOCATION_ID");
        c.stdin(Stdio::null());
        c
    }

    /// A notify socket in its own subdirectory `name`.
    pub fn notify_socket(&self, name: &str) -> NotifySocket {
        let dir = self.dir.path().join(name);
        fs::create_dir_all(&dir).expect("create notify dir");
        NotifySocket::bind(&dir)
    }

    /// `paperclipd status` for this world, without a reachable bus.
    pub fn status_cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.args(["status", "--home"])
            .arg(self.home())
            .args(["--url", &self.url()])
            .env("XDG_RUNTIME_DIR", self.dir.path())
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}/nobus", self.dir.path().display()),
            );
        c
    }

    /// `paperclipd status` (text): (exit code, stdout).
    #[allow(dead_code)]
    pub fn status_text(&self) -> (i32, String) {
        let o = self.status_cmd().output().expect("run paperclipd status");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    }

    /// `paperclipd status --json` for this world, without a reachable bus:
    /// (exit code, JSON, stderr).
    pub fn status_json(&self) -> (i32, serde_json::Value, String) {
        let o = self
            .status_cmd()
            .arg("--json")
            .output()
            .expect("run paperclipd status");
        let v = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
        (
            o.status.code().unwrap_or(-1),
            v,
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// Starts `count` runs of the default instance at once; waits for
    /// READY=1 and for every loser to exit 75 naming the lock holder.
    /// Returns the one winner's pid and all runs.
    pub fn race(&self, count: usize, notify: &mut NotifySocket, tag: &str) -> (u32, Vec<Running>) {
        let mut runs: Vec<Running> = (0..count)
            .map(|i| {
                let mut cmd = self.run_cmd(&[], &[]);
                cmd.env("NOTIFY_SOCKET", &notify.path);
                self.spawn(cmd, &format!("{tag}{i}"))
            })
            .collect();
        notify.wait_for("READY=1", DEADLINE);
        wait_until(DEADLINE, "every loser to exit", || {
            runs.iter_mut()
                .map(|r| r.child.try_wait().ok().flatten().is_some())
                .filter(|done| *done)
                .count()
                >= count - 1
        });
        let mut winners = Vec::new();
        for r in runs.iter_mut() {
            match r.child.try_wait().expect("try_wait") {
                None => winners.push(r.pid()),
                Some(st) => {
                    assert_eq!(st.code(), Some(75), "{tag}: {}", r.stderr());
                    assert!(
                        r.stderr().contains("already running"),
                        "{tag}: {}",
                        r.stderr()
                    );
                }
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "{tag}: {} runs still alive",
            winners.len()
        );
        (winners[0], runs)
    }

    /// With `NOTIFY_SOCKET=value` the run still becomes ready and stops
    /// cleanly; its stderr warns with `needle`.
    pub fn notify_socket_warns_but_runs(&self, value: &std::ffi::OsStr, needle: &str) {
        let mut cmd = self.run_cmd(&[], &[]);
        cmd.env("NOTIFY_SOCKET", value);
        let mut r = self.spawn(cmd, "run");
        wait_until(DEADLINE, "ready in the log", || {
            r.stderr().contains("ready after")
        });
        assert!(r.stderr().contains(needle), "{}", r.stderr());
        signal(r.pid(), libc::SIGTERM);
        assert_eq!(r.code(), 0);
    }

    /// Starts a command with stdout and stderr captured to files (pipes
    /// could fill and block the process under test).
    pub fn spawn(&self, mut cmd: Command, name: &str) -> Running {
        let out = self.dir.path().join(format!("{name}.out"));
        let err = self.dir.path().join(format!("{name}.err"));
        cmd.stdout(fs::File::create(&out).expect("create out"));
        cmd.stderr(fs::File::create(&err).expect("create err"));
        let child = cmd.spawn().expect("spawn paperclipd");
        Running { child, out, err }
    }
}

pub struct Running {
    pub child: Child,
    pub out: PathBuf,
    pub err: PathBuf,
}

impl Running {
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn wait(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                panic!(
                    "paperclipd {} did not exit within {DEADLINE:?}\n--- its stderr:\n{}",
                    self.child.id(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    pub fn code(&mut self) -> i32 {
        let st = self.wait();
        st.code()
            .unwrap_or_else(|| panic!("paperclipd died by a signal: {st:?}\n{}", self.stderr()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A real `NOTIFY_SOCKET`: a datagram socket we bind, as systemd does.
pub struct NotifySocket {
    pub path: PathBuf,
    sock: UnixDatagram,
    /// Every message received so far, with its arrival time (wall clock).
    pub messages: Vec<(f64, String)>,
}

impl NotifySocket {
    pub fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        NotifySocket {
            path,
            sock,
            messages: Vec::new(),
        }
    }

    /// Receives whatever has arrived, without waiting long.
    pub fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.sock.recv(&mut buf) {
            self.messages
                .push((wall_now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
        }
    }

    /// Waits for a message containing `needle`; returns its arrival time.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> f64 {
        let start = Instant::now();
        loop {
            if let Some((t, _)) = self
                .messages
                .iter()
                .find(|(_, m)| m.lines().any(|l| l == needle || l.starts_with(needle)))
            {
                return *t;
            }
            if start.elapsed() > timeout {
                panic!(
                    "no notify message {needle:?} within {timeout:?}; got {:?}",
                    self.messages
                );
            }
            self.drain();
        }
    }

    pub fn count(&self, needle: &str) -> usize {
        self.messages
            .iter()
            .filter(|(_, m)| m.lines().any(|l| l.starts_with(needle)))
            .count()
    }

    pub fn all_text(&self) -> String {
        self.messages
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("")
    }
}

/// Reads a whole file, or "" when missing.
pub fn read(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}
