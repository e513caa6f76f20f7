//! The unit templates (`units/systemd/`, embedded so that the binary and
//! the repository cannot disagree) and their rendering: the absolute path
//! of paperclipd and the environment, quoted for a unit file; and the
//! per-instance drop-in with what a template cannot know (the stop budget).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Scope;
use crate::error::{Error, Result};
use crate::owned_file::check_rendered_value;

pub const USER_UNIT: &str = include_str!("../../units/systemd/user/paperclip@.service");
pub const SYSTEM_UNIT: &str = include_str!("../../units/systemd/system/paperclip@.service");

/// The template for a manager.
pub fn template(scope: Scope) -> &'static str {
    match scope {
        Scope::User => USER_UNIT,
        Scope::System => SYSTEM_UNIT,
    }
}

/// Quotes a value for a unit file: `%` is a specifier, spaces and quotes
/// need C-style quoting.
fn quote(s: &str) -> String {
    let escaped = s.replace('%', "%%");
    if escaped
        .chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\\' || c == '\'')
    {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

/// Quotes a word of `ExecStart=`, where systemd also expands `$VAR` and
/// `${VAR}`: `$$` is a literal dollar.
fn quote_exec(s: &str) -> String {
    quote(s).replace('$', "$$")
}

/// Renders a unit template: the absolute path of paperclipd and the
/// environment the installing user's setup needs. A value with a control
/// character is refused (exit 78), never written.
pub fn render(template: &str, paperclipd: &Path, env: &[(&str, String)]) -> Result<String> {
    let exe = paperclipd.to_string_lossy();
    check_rendered_value("paperclipd's own path", &exe)?;
    let mut env_lines = Vec::new();
    for (k, v) in env {
        check_rendered_value(k, v)?;
        env_lines.push(format!("Environment={}", quote(&format!("{k}={v}"))));
    }
    Ok(template
        .replace("@PAPERCLIPD@", &quote_exec(&exe))
        .replace(
            "@START_LIMIT_INTERVAL@",
            &crate::config::START_LIMIT_INTERVAL_SECS.to_string(),
        )
        .replace(
            "@START_LIMIT_BURST@",
            &crate::config::START_LIMIT_BURST.to_string(),
        )
        .replace(
            "@ENVIRONMENT@\n",
            &if env_lines.is_empty() {
                String::new()
            } else {
                env_lines.join("\n") + "\n"
            },
        ))
}

/// The instance's own drop-in, beside the template in `dir`:
/// `paperclip@<id>.service.d/paperclipd.conf`.
pub fn dropin_path(dir: &Path, id: &crate::instance::InstanceId) -> PathBuf {
    dir.join(format!("{}.d", super::unit_name(id)))
        .join("paperclipd.conf")
}

/// The drop-in `install` writes for one instance: `TimeoutStopSec=` from
/// its stop budget (its `stop_timeout` plus paperclipd's margin), so that
/// systemd's SIGKILL never comes before paperclipd's own ordered stop.
pub fn render_dropin(stop_timeout: Duration) -> String {
    let budget = crate::config::stop_budget(stop_timeout);
    format!(
        "# Instance settings of a Paperclip instance supervised by paperclipd,\n\
         # written by `paperclipd install` (rewritten by every install).\n\
         [Service]\n\
         # stop_timeout ({}) plus {}s for paperclipd's own SIGKILL and reaping.\n\
         TimeoutStopSec={}\n",
        humantime::format_duration(stop_timeout),
        crate::config::STOP_MARGIN.as_secs(),
        budget.as_secs()
    )
}

/// The `Environment=` assignments of a unit file, in order (a later one
/// wins), read back as [`render`] writes them: quotes and backslash escapes
/// removed, `%%` → `%`, `%h` → `home`; other specifiers are left as they are.
pub fn environment(unit: &str, home: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in unit.lines() {
        let Some(value) = line.trim().strip_prefix("Environment=") else {
            continue;
        };
        for word in unit_words(value) {
            let word = expand_specifiers(&word, home);
            if let Some((k, v)) = word.split_once('=') {
                out.push((k.to_string(), v.to_string()));
            }
        }
    }
    out
}

/// Splits a unit-file value into words: whitespace separates, `"…"` and
/// `'…'` group, a backslash escapes the next character.
fn unit_words(value: &str) -> Vec<String> {
    let (mut words, mut cur, mut quote, mut in_word) = (Vec::new(), String::new(), None, false);
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\\', _) => {
                cur.extend(chars.next());
                in_word = true;
            }
            ('"' | '\'', None) => {
                quote = Some(c);
                in_word = true;
            }
            (c, Some(q)) if c == q => quote = None,
            (c, None) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                }
                in_word = false;
            }
            (c, _) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

fn expand_specifiers(s: &str, home: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('%', Some('%')) => {
                chars.next();
                out.push('%');
            }
            ('%', Some('h')) => {
                chars.next();
                out.push_str(home);
            }
            (c, _) => out.push(c),
        }
    }
    out
}

/// Where units of this manager go: `/etc/systemd/system`, or
/// `$XDG_CONFIG_HOME/systemd/user` (`~/.config/systemd/user`).
pub fn unit_dir(scope: Scope) -> Result<PathBuf> {
    match scope {
        Scope::System => Ok(PathBuf::from("/etc/systemd/system")),
        Scope::User => {
            let base = std::env::var_os("XDG_CONFIG_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME")
                        .filter(|h| !h.is_empty())
                        .map(|h| PathBuf::from(h).join(".config"))
                })
                .ok_or_else(|| {
                    Error::config(
                        "cannot find the user's unit directory: neither XDG_CONFIG_HOME nor HOME is set",
                    )
                })?;
            Ok(base.join("systemd/user"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owned_file::MARKER;

    #[test]
    fn environment_reads_back_what_render_writes() {
        let env = [
            ("PATH", "/opt/my node/bin:/h/100%/bin".to_string()),
            ("PAPERCLIP_NODE", "/a \"q\" \\b/node".to_string()),
            ("PAPERCLIP_SHIM_PATH", "/plain/paperclipai".to_string()),
        ];
        let u = render(USER_UNIT, Path::new("/usr/bin/paperclipd"), &env).unwrap();
        let got = environment(&u, "/home/u");
        // The template's own PATH first (%h expanded), then ours.
        assert_eq!(
            got[0],
            (
                "PATH".into(),
                "/home/u/.local/bin:/usr/local/bin:/usr/bin:/bin".into()
            )
        );
        let tail: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(got[1..], tail[..], "{u}");
        assert_eq!(
            environment("Environment=\"A=x y\" B=z 'C=1 2'\n", ""),
            [
                ("A".into(), "x y".into()),
                ("B".into(), "z".into()),
                ("C".into(), "1 2".into())
            ]
        );
    }

    #[test]
    fn renders_path_and_environment() {
        let u = render(
            USER_UNIT,
            Path::new("/opt/my tools/paperclipd"),
            &[("PAPERCLIP_HOME", "/h/100%$HOME".into())],
        )
        .unwrap();
        assert!(
            u.contains("ExecStart=\"/opt/my tools/paperclipd\" run --instance %i"),
            "{u}"
        );
        // Environment= does not expand `$`; only `%` is a specifier there.
        assert!(
            u.contains("Environment=PAPERCLIP_HOME=/h/100%%$HOME\n"),
            "{u}"
        );
        assert!(!u.contains("@PAPERCLIPD@"));
        let s = render(SYSTEM_UNIT, Path::new("/usr/bin/paperclipd"), &[]).unwrap();
        assert!(s.contains("ExecStart=/usr/bin/paperclipd run --instance %i"));
        assert!(!s.contains("@ENVIRONMENT@"));
        for unit in [&u, &s] {
            // One start limit for every manager (launchd's guard counts with it).
            assert!(
                unit.contains(&format!(
                    "\nStartLimitBurst={}\nStartLimitIntervalSec={}\n",
                    crate::config::START_LIMIT_BURST,
                    crate::config::START_LIMIT_INTERVAL_SECS
                )) || unit.contains(&format!(
                    "\nStartLimitIntervalSec={}\nStartLimitBurst={}\n",
                    crate::config::START_LIMIT_INTERVAL_SECS,
                    crate::config::START_LIMIT_BURST
                )),
                "{unit}"
            );
            assert!(!unit.contains("@START_LIMIT"), "{unit}");
        }
        for unit in [&u, &s] {
            for needed in [
                "Type=notify",
                "NotifyAccess=main",
                "KillMode=mixed",
                "RestartPreventExitStatus=73 75 78 126 127",
                "WatchdogSec=",
            ] {
                assert!(unit.contains(needed), "{needed}");
            }
            assert!(unit.contains(MARKER));
        }
    }

    #[test]
    fn dollars_are_literal_in_exec_start_and_control_characters_refused() {
        let u = render(USER_UNIT, Path::new("/opt/$USER/paperclipd"), &[]).unwrap();
        assert!(u.contains("ExecStart=/opt/$$USER/paperclipd run"), "{u}");
        let e = render(
            USER_UNIT,
            Path::new("/usr/bin/paperclipd"),
            &[("PAPERCLIP_HOME", "/h\nExecStartPre=/bin/sh".into())],
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 78);
        assert!(e.message.contains("PAPERCLIP_HOME"), "{}", e.message);
        assert!(render(USER_UNIT, Path::new("/opt/a\rb"), &[]).is_err());
    }

    #[test]
    fn the_dropin_carries_the_instances_stop_budget() {
        let d = render_dropin(Duration::from_secs(120));
        assert!(d.contains(MARKER), "{d}");
        assert!(d.contains("\nTimeoutStopSec=135\n"), "{d}");
        assert_eq!(
            dropin_path(
                Path::new("/u"),
                &crate::instance::InstanceId::parse("a").unwrap()
            ),
            Path::new("/u/paperclip@a.service.d/paperclipd.conf")
        );
    }
}
