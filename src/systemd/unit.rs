//! The unit templates (`units/systemd/`, embedded so that the binary and
//! the repository cannot disagree) and their rendering: the absolute path
//! of paperclipd and the environment, quoted for a unit file.

use std::path::{Path, PathBuf};

use super::Scope;
use crate::error::{Error, Result};

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

/// Renders a unit template: the absolute path of paperclipd and the
/// environment the installing user's setup needs.
pub fn render(template: &str, paperclipd: &Path, env: &[(&str, String)]) -> String {
    let env_lines: Vec<String> = env
        .iter()
        .map(|(k, v)| format!("Environment={}", quote(&format!("{k}={v}"))))
        .collect();
    template
        .replace("@PAPERCLIPD@", &quote(&paperclipd.to_string_lossy()))
        .replace(
            "@ENVIRONMENT@\n",
            &if env_lines.is_empty() {
                String::new()
            } else {
                env_lines.join("\n") + "\n"
            },
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
        let u = render(USER_UNIT, Path::new("/usr/bin/paperclipd"), &env);
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
            &[("PAPERCLIP_HOME", "/h/100%".into())],
        );
        assert!(
            u.contains("ExecStart=\"/opt/my tools/paperclipd\" run --instance %i"),
            "{u}"
        );
        assert!(u.contains("Environment=PAPERCLIP_HOME=/h/100%%"), "{u}");
        assert!(!u.contains("@PAPERCLIPD@"));
        let s = render(SYSTEM_UNIT, Path::new("/usr/bin/paperclipd"), &[]);
        assert!(s.contains("ExecStart=/usr/bin/paperclipd run --instance %i"));
        assert!(!s.contains("@ENVIRONMENT@"));
        for unit in [&u, &s] {
            for needed in [
                "Type=notify",
                "NotifyAccess=main",
                "KillMode=mixed",
                "RestartPreventExitStatus=75 78 126 127",
                "WatchdogSec=",
            ] {
                assert!(unit.contains(needed), "{needed}");
            }
            assert!(unit.contains(MARKER));
        }
    }
}
