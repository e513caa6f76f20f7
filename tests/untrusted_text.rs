//! Text from outside (other processes' command lines, the server's output
//! quoted in a diagnostic) is shown with its control characters escaped,
//! in `status` and in our log lines: a local user who listens on the
//! instance's port with a crafted `argv` cannot forge a `lock:` line or
//! send escape sequences to the terminal. `--json` keeps the raw value.
#![cfg(target_os = "linux")]

mod support;

use std::process::{Child, Command, Stdio};

use support::*;

const FORGED: &str = "\n  lock:   held by pid 1 (all fine)";
const ESCAPE: &str = "\x1b[2J\x1b]0;owned\x07";

/// A stranger listening on the world's port, its command line crafted.
struct Stranger(Child);

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stranger(w: &World) -> Stranger {
    let marker = w.dir.path().join("stranger.listening");
    // A short program by a short relative name, so that the crafted
    // argument comes early in the command line (`status` cuts it at 160).
    std::fs::write(
        w.dir.path().join("s.py"),
        "import socket,os,time\n\
         s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', int(os.environ['PORT']))); s.listen(16)\n\
         open(os.environ['MARKER'], 'w').close()\n\
         time.sleep(600)\n",
    )
    .expect("write the stranger");
    let child = Command::new("python3")
        .arg("s.py")
        .arg(format!("innocent{FORGED}{ESCAPE}"))
        .current_dir(w.dir.path())
        .env("PORT", w.port.to_string())
        .env("MARKER", &marker)
        .stdin(Stdio::null())
        .spawn()
        .expect("start the stranger");
    let s = Stranger(child);
    wait_until(DEADLINE, "the stranger to listen", || marker.exists());
    s
}

/// No line of `text` (with or without our `paperclipd:` prefix) is a forged
/// `lock:` line, and no escape or carriage-return byte reaches it.
fn clean(text: &str, what: &str) {
    for line in text.lines() {
        let bare = line.trim_start_matches("paperclipd:").trim_start();
        assert!(
            !bare.starts_with("lock:   held by pid 1"),
            "{what} shows a forged line: {text}"
        );
    }
    assert!(
        !text.contains('\x1b') && !text.contains('\x07') && !text.contains('\r'),
        "{what} passes control characters through: {text:?}"
    );
    assert!(
        text.contains(r"innocent\n  lock:   held by pid 1 (all fine)\x1b[2J\x1b]0;owned\x07"),
        "{what} does not show the command line escaped: {text}"
    );
}

#[test]
fn a_crafted_command_line_is_shown_escaped_in_status_and_in_the_75_message() {
    let w = World::new();
    let _s = stranger(&w);

    let (_, out) = w.status_text();
    clean(&out, "status");
    assert_eq!(
        out.lines()
            .filter(|l| l.trim_start().starts_with("lock:"))
            .count(),
        1,
        "{out}"
    );

    let (_, v, _) = w.status_json();
    let raw = v["port"]["owners"][0]["command"]
        .as_str()
        .unwrap_or_default();
    assert!(
        raw.contains(&format!("innocent{FORGED}{ESCAPE}")),
        "--json keeps the raw command line: {v}"
    );

    let mut run = w.spawn(w.run_cmd(&[], &[]), "run");
    assert_eq!(run.code(), 75, "{}", run.stderr());
    clean(&run.stderr(), "run's exit-75 message");
}

#[test]
fn the_servers_last_lines_are_escaped_in_the_diagnostic() {
    let w = World::new();
    let mut c = Command::new(bin());
    c.arg("run")
        .arg("--home")
        .arg(w.home())
        .arg("--url")
        .arg(w.url())
        .args(["--", "sh", "-c"])
        .arg("printf 'starting%s\\n' \"$1\"; exit 3")
        .arg("sh")
        .arg(format!("{ESCAPE}\rpaperclipd: ready{FORGED}"))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("PAPERCLIP_HOME")
        .env_remove("PAPERCLIP_INSTANCE_ID")
        .env_remove("INVOCATION_ID")
        .stdin(Stdio::null());
    let mut run = w.spawn(c, "run");
    assert_eq!(run.code(), 3, "{}", run.stderr());
    let err = run.stderr();
    // The server's own output is relayed as it is; our diagnostic, which
    // quotes its last lines, drops their colours (CSI sequences such as
    // `\x1b[2J`) and escapes every other control character.
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("paperclipd:"))
        .collect();
    assert!(
        ours.iter()
            .any(|l| l.contains(r"| starting\x1b]0;owned\x07\rpaperclipd: ready")),
        "the diagnostic does not quote the line escaped: {err:?}"
    );
    for l in &ours {
        assert!(
            !l.contains('\x1b') && !l.contains('\r') && !l.contains('\x07'),
            "a line of ours carries control characters: {l:?}"
        );
    }
}
