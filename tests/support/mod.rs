//! Helpers for black-box tests of the built `paperclipd` binary: a temp
//! Paperclip home, the fixture HTTP server (`tests/fixture/server.py`), a
//! real `NOTIFY_SOCKET` datagram listener, and condition waits with
//! deadlines (never a fixed sleep that is hoped to be long enough).
#![allow(dead_code)]

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

pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture/server.py")
}

/// A port nobody listens on right now (the OS picks it; tests run in
/// parallel, so never a fixed one).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
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

    /// `paperclipd` with this world's home, the given args, and the fixture
    /// as the server (fixture args after `--`).
    pub fn run_cmd(&self, args: &[&str], fixture_args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("run")
            .arg("--home")
            .arg(self.home())
            .arg("--url")
            .arg(self.url());
        c.args(args);
        c.arg("--").arg("python3").arg(fixture());
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
