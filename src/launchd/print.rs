//! What `launchctl print <service>` and `launchctl print-disabled <domain>`
//! say. launchctl(1) warns that this output "is NOT API in any sense at
//! all", so it is read defensively: only the top-level lines of the
//! service block, unknown values kept as text (shapes in
//! /work/notes/upstream.md, B).

/// The job's `state =` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Running,
    /// `not running`, `waiting`, `spawn scheduled`, …: no process now.
    Other(String),
}

/// The job's `last exit code =` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastExit {
    /// `(never exited)`, or no such line.
    Never,
    /// `0`, `78: EX_CONFIG`.
    Code(i32),
    /// `last terminating signal = Segmentation fault: 11`: killed by a
    /// signal (its `last exit code` line then says `(never exited)`).
    Signal(String),
    /// Anything else (a format we do not know).
    Other(String),
}

/// One job as `launchctl print` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub state: JobState,
    pub pid: Option<u32>,
    /// How many times launchd has spawned it since it was loaded.
    pub runs: u32,
    pub last_exit: LastExit,
}

impl JobInfo {
    pub fn running(&self) -> bool {
        self.state == JobState::Running
    }

    /// The words of its state, for `status`.
    pub fn state_text(&self) -> &str {
        match &self.state {
            JobState::Running => "running",
            JobState::Other(s) => s,
        }
    }
}

/// Parses `launchctl print <domain>/<label>`. Nested blocks (`jetsam
/// properties = { state = active }`, `environment = {…}`) are skipped.
pub fn parse_print(text: &str) -> JobInfo {
    let mut info = JobInfo {
        state: JobState::Other("unknown".into()),
        pid: None,
        runs: 0,
        last_exit: LastExit::Never,
    };
    let mut depth = 0usize;
    let mut state_seen = false;
    for line in text.lines() {
        let l = line.trim();
        if l.ends_with('{') {
            depth += 1;
            continue;
        }
        if l.starts_with('}') {
            depth = depth.saturating_sub(1);
            continue;
        }
        // Depth 1: inside the service's own block. Tests and older shapes
        // without the outer block have depth 0.
        if depth > 1 {
            continue;
        }
        let Some((key, value)) = l.split_once(" = ") else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "state" if !state_seen => {
                state_seen = true;
                info.state = if value == "running" {
                    JobState::Running
                } else {
                    JobState::Other(value.to_string())
                };
            }
            "pid" => info.pid = info.pid.or_else(|| value.parse().ok()),
            "runs" => info.runs = value.parse().unwrap_or(info.runs),
            "last exit code" if !matches!(info.last_exit, LastExit::Signal(_)) => {
                info.last_exit = parse_exit(value)
            }
            "last terminating signal" if !matches!(info.last_exit, LastExit::Code(_)) => {
                info.last_exit = LastExit::Signal(value.to_string())
            }
            _ => {}
        }
    }
    info
}

fn parse_exit(value: &str) -> LastExit {
    if value.starts_with('(') {
        return LastExit::Never;
    }
    let digits = value.split(':').next().unwrap_or("").trim();
    match digits.parse() {
        Ok(c) => LastExit::Code(c),
        Err(_) => LastExit::Other(value.to_string()),
    }
}

/// Whether `launchctl print-disabled <domain>` lists `label` as disabled:
/// `"label" => disabled` (current macOS) or `=> true` (older releases);
/// `None` when the label has no override.
pub fn parse_disabled(text: &str, label: &str) -> Option<bool> {
    let quoted = format!("\"{label}\"");
    text.lines().find_map(|l| {
        let (name, value) = l.trim().split_once("=>")?;
        (name.trim() == quoted).then(|| matches!(value.trim(), "disabled" | "true"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of real output (fixtures modelled on it in the notes).
    const RUNNING: &str = "gui/501/ai.paperclip.paperclipd.dev = {
\tactive count = 1
\tpath = /Users/me/Library/LaunchAgents/ai.paperclip.paperclipd.dev.plist
\ttype = LaunchAgent
\tstate = running

\tprogram = /opt/homebrew/opt/paperclipd/bin/paperclipd
\targuments = {
\t\t/opt/homebrew/opt/paperclipd/bin/paperclipd
\t\trun
\t}
\tenvironment = {
\t\tXPC_SERVICE_NAME => ai.paperclip.paperclipd.dev
\t}

\truns = 2
\tpid = 4242
\tlast exit code = 78: EX_CONFIG
\tjetsam properties = {
\t\tstate = active
\t\tpid = 1
\t}
}
";

    #[test]
    fn reads_the_top_level_lines_only() {
        assert_eq!(
            parse_print(RUNNING),
            JobInfo {
                state: JobState::Running,
                pid: Some(4242),
                runs: 2,
                last_exit: LastExit::Code(78),
            }
        );
        let waiting = "x = {\n\tstate = spawn scheduled\n\truns = 7\n\tlast exit code = 1\n}\n";
        let j = parse_print(waiting);
        assert_eq!(j.state, JobState::Other("spawn scheduled".into()));
        assert!(!j.running());
        assert_eq!((j.pid, j.runs, j.last_exit), (None, 7, LastExit::Code(1)));
        let fresh = "x = {\n\tstate = not running\n\tlast exit code = (never exited)\n}\n";
        assert_eq!(parse_print(fresh).last_exit, LastExit::Never);
        assert_eq!(parse_exit("Killed: 9"), LastExit::Other("Killed: 9".into()));
        // Killed by a signal: the signal line wins over "never exited",
        // in either order.
        for text in [
            "x = {\n\tlast exit code = (never exited)\n\tlast terminating signal = Killed: 9\n}\n",
            "x = {\n\tlast terminating signal = Killed: 9\n\tlast exit code = (never exited)\n}\n",
        ] {
            assert_eq!(
                parse_print(text).last_exit,
                LastExit::Signal("Killed: 9".into())
            );
        }
    }

    #[test]
    fn reads_both_disabled_formats() {
        let new = "disabled services = {\n\t\"ing.paperclip.paperclipai\" => disabled\n\t\"a.b\" => enabled\n}\n";
        assert_eq!(parse_disabled(new, "ing.paperclip.paperclipai"), Some(true));
        assert_eq!(parse_disabled(new, "a.b"), Some(false));
        assert_eq!(parse_disabled(new, "ing.paperclip"), None);
        let old = "disabled services = {\n\t\"ing.paperclip.paperclipai\" => true\n}\n";
        assert_eq!(parse_disabled(old, "ing.paperclip.paperclipai"), Some(true));
    }
}
