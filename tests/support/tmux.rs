//! A real terminal for tests: a private tmux server (its own socket) with
//! an interactive bash in a wide pane, driven like a person would (typed
//! lines, Ctrl-C, Ctrl-Z) and read back from the screen. bash records each
//! command's exit status in a file (`PROMPT_COMMAND`), since a list such as
//! `cmd; echo $?` would run on when `cmd` is suspended.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::wait_until;

pub struct Tmux {
    socket: PathBuf,
    status_file: PathBuf,
}

impl Tmux {
    /// Starts bash in a 250×50 pane; `rc` lines run first (exports, stty).
    pub fn start(dir: &Path, rc: &[String]) -> Tmux {
        assert!(
            Command::new("tmux")
                .arg("-V")
                .output()
                .is_ok_and(|o| o.status.success()),
            "the terminal tests need tmux (apt-get install tmux)"
        );
        let socket = dir.join("tmux.sock");
        let status_file = dir.join("last-status");
        let rcfile = dir.join("bashrc");
        let mut text = String::from("PS1='$ '\nunset PROMPT_COMMAND\n");
        for line in rc {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&format!(
            "PROMPT_COMMAND='echo $? >> {}'\n",
            status_file.display()
        ));
        std::fs::write(&rcfile, text).expect("write bashrc");
        let t = Tmux {
            socket,
            status_file,
        };
        let ok = t
            .tmux(&[
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "250",
                "-y",
                "50",
            ])
            .args(["bash", "--noprofile", "--rcfile"])
            .arg(&rcfile)
            .arg("-i")
            .status()
            .expect("run tmux");
        assert!(ok.success(), "tmux new-session failed");
        wait_until(super::DEADLINE, "the shell's first prompt", || {
            t.statuses().len() == 1
        });
        t
    }

    fn tmux(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket).args(args);
        c
    }

    /// Types `line` and Enter.
    pub fn type_line(&self, line: &str) {
        self.keys(&["-l", line]);
        self.keys(&["Enter"]);
    }

    /// Sends keys by tmux name: `C-c`, `C-z`, `Enter`, `y`.
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "0"];
        args.extend_from_slice(keys);
        let ok = self.tmux(&args).status().expect("tmux send-keys");
        assert!(ok.success(), "tmux send-keys {keys:?} failed");
    }

    /// The whole screen and its history, wrapped lines joined.
    pub fn screen(&self) -> String {
        let o = self
            .tmux(&["capture-pane", "-p", "-J", "-S", "-", "-t", "0"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Waits until the screen contains `needle`.
    pub fn wait_for(&self, needle: &str) {
        let start = Instant::now();
        while !self.screen().contains(needle) {
            if start.elapsed() > super::DEADLINE {
                panic!(
                    "{needle:?} not on the screen within {:?}; the screen:\n{}",
                    super::DEADLINE,
                    self.screen()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pid of the shell in the pane.
    pub fn shell_pid(&self) -> i32 {
        let o = self
            .tmux(&["display-message", "-p", "-t", "0", "#{pane_pid}"])
            .output()
            .expect("tmux display-message");
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .expect("pane pid")
    }

    /// Exit statuses of the commands run so far, in order (the first is
    /// the shell's start).
    pub fn statuses(&self) -> Vec<i32> {
        std::fs::read_to_string(&self.status_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Waits for the `n`-th command's status (1 = the first typed line).
    pub fn status_of(&self, n: usize) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(s) = self.statuses().get(n) {
                return *s;
            }
            if start.elapsed() > super::DEADLINE {
                panic!(
                    "command {n} did not finish within {:?}; the screen:\n{}",
                    super::DEADLINE,
                    self.screen()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]).status();
    }
}

/// A process's state letter and its terminal's foreground group, from
/// /proc (`R`, `S`, `T` for stopped, `Z`).
pub fn proc_state(pid: i32) -> Option<(char, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.first()?.chars().next()?, f.get(5)?.parse().ok()?))
}

/// The process group of `pid`.
pub fn pgid_of(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(") ")?.1;
    rest.split_whitespace().nth(2)?.parse().ok()
}
