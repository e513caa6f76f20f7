//! The unit templates (`units/systemd/`, embedded so that the binary and
//! the repository cannot disagree) and their rendering: the absolute path
//! of paperclipd and the environment, quoted for a unit file.

use std::path::{Path, PathBuf};

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
    Ok(template.replace("@PAPERCLIPD@", &quote_exec(&exe)).replace(
        "@ENVIRONMENT@\n",
        &if env_lines.is_empty() {
            String::new()
        } else {
            env_lines.join("\n") + "\n"
        },
    ))
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
}
