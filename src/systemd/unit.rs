//! The unit templates (`units/systemd/`, embedded so that the binary and
//! the repository cannot disagree) and their rendering (the absolute path
//! of paperclipd, quoted for a unit file); the per-instance drop-in with
//! everything specific to one instance (its home, Node.js, paperclipai,
//! stop budget), since the template is shared by every instance; and
//! reading both back.

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

/// Renders a unit template: the absolute path of paperclipd. Nothing of
/// one instance goes here (see [`render_dropin`]).
pub fn render(template: &str, paperclipd: &Path) -> Result<String> {
    let exe = paperclipd.to_string_lossy();
    check_rendered_value("paperclipd's own path", &exe)?;
    Ok(template
        .replace("@PAPERCLIPD@", &quote_exec(&exe))
        .replace(
            "@START_LIMIT_INTERVAL@",
            &crate::config::START_LIMIT_INTERVAL_SECS.to_string(),
        )
        .replace(
            "@START_LIMIT_BURST@",
            &crate::config::START_LIMIT_BURST.to_string(),
        ))
}

/// The instance's own drop-in, beside the template in `dir`:
/// `paperclip@<id>.service.d/paperclipd.conf`.
pub fn dropin_path(dir: &Path, id: &crate::instance::InstanceId) -> PathBuf {
    dir.join(format!("{}.d", super::unit_name(id)))
        .join("paperclipd.conf")
}

/// Settings an old template (before instances had drop-ins of their own)
/// carried for every instance, moved by [`migrate`] beside
/// [`dropin_path`].
pub fn migrated_path(dir: &Path, id: &crate::instance::InstanceId) -> PathBuf {
    dir.join(format!("{}.d", super::unit_name(id)))
        .join("paperclipd-migrated.conf")
}

/// The variables that belong to one instance, never to the template.
pub const INSTANCE_VARS: [&str; 4] = [
    "PAPERCLIP_HOME",
    "PAPERCLIP_NODE",
    "PAPERCLIP_SHIM_PATH",
    "PATH",
];

/// The drop-in `install` writes for one instance: `TimeoutStopSec=` from
/// its stop budget (its `stop_timeout` plus paperclipd's margin), so that
/// systemd's SIGKILL never comes before paperclipd's own ordered stop; and
/// its environment (home, Node.js, paperclipai, the PATH prepend). A value
/// with a control character is refused (exit 78), never written.
pub fn render_dropin(stop_timeout: Duration, env: &[(&str, String)]) -> Result<String> {
    let budget = crate::config::stop_budget(stop_timeout);
    let mut out = format!(
        "# Instance settings of a Paperclip instance supervised by paperclipd,\n\
         # written by `paperclipd install` (rewritten by every install).\n\
         [Service]\n\
         # stop_timeout ({}) plus {}s for paperclipd's own SIGKILL and reaping.\n\
         TimeoutStopSec={}\n",
        humantime::format_duration(stop_timeout),
        crate::config::STOP_MARGIN.as_secs(),
        budget.as_secs()
    );
    for (k, v) in env {
        check_rendered_value(k, v)?;
        out.push_str(&format!("Environment={}\n", quote(&format!("{k}={v}"))));
    }
    Ok(out)
}

/// The `Environment=` lines of an old template that carry one instance's
/// settings (see [`INSTANCE_VARS`]), as they are written. The templates
/// paperclipd ships now set none of them.
pub fn legacy_instance_lines(template: &str) -> Vec<String> {
    template
        .lines()
        .filter(|l| {
            environment(l, "")
                .iter()
                .any(|(k, _)| INSTANCE_VARS.contains(&k.as_str()))
        })
        .map(str::to_string)
        .collect()
}

/// The drop-in that keeps an instance on the settings an old template gave it.
pub fn render_migrated(lines: &[String]) -> String {
    format!(
        "# Settings of a Paperclip instance supervised by paperclipd, moved here\n\
         # from an old paperclip@.service that carried them for every instance.\n\
         # `paperclipd install -i <id>` replaces them with the instance's own.\n\
         [Service]\n{}\n",
        lines.join("\n")
    )
}

/// The environment systemd gives one instance: its template's (the first
/// of `unit_dir`, then the package's), then the drop-ins of the template
/// and of the instance, in file-name order (a file in `unit_dir` replaces
/// the package's of the same name). Returns the template's path too.
pub fn instance_environment(
    scope: Scope,
    id: &crate::instance::InstanceId,
    home: &str,
) -> Option<(PathBuf, Vec<(String, String)>)> {
    let dirs: Vec<PathBuf> = [
        unit_dir(scope).ok(),
        Some(PathBuf::from(packaged_dir(scope))),
    ]
    .into_iter()
    .flatten()
    .collect();
    let (file, text) = dirs.iter().find_map(|d| {
        let f = d.join(super::TEMPLATE_NAME);
        crate::regular_file::read_to_string(&f).ok().map(|t| (f, t))
    })?;
    let mut env = environment(&text, home);
    let mut dropins: std::collections::BTreeMap<std::ffi::OsString, PathBuf> = Default::default();
    // Lowest precedence first, so that unit_dir's replace the package's.
    for dir in dirs.iter().rev() {
        for sub in [
            format!("{}.d", super::TEMPLATE_NAME),
            format!("{}.d", super::unit_name(id)),
        ] {
            for e in std::fs::read_dir(dir.join(sub))
                .into_iter()
                .flatten()
                .flatten()
            {
                if e.file_name().to_string_lossy().ends_with(".conf") {
                    dropins.insert(e.file_name(), e.path());
                }
            }
        }
    }
    for path in dropins.values() {
        if let Ok(t) = crate::regular_file::read_to_string(path) {
            env.extend(environment(&t, home));
        }
    }
    Some((file, env))
}

/// Where a package puts the templates.
pub fn packaged_dir(scope: Scope) -> &'static str {
    match scope {
        Scope::User => "/usr/lib/systemd/user",
        Scope::System => "/usr/lib/systemd/system",
    }
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
    fn environment_reads_back_what_the_dropin_writes() {
        let env = [
            (
                "PAPERCLIPD_PATH_PREPEND",
                "/opt/my node/bin:/h/100%/bin".to_string(),
            ),
            ("PAPERCLIP_NODE", "/a \"q\" \\b/node".to_string()),
            ("PAPERCLIP_SHIM_PATH", "/plain/paperclipai".to_string()),
        ];
        let u = render(USER_UNIT, Path::new("/usr/bin/paperclipd")).unwrap();
        let d = render_dropin(Duration::from_secs(30), &env).unwrap();
        // The template's own prepend (%h expanded), nothing of an instance.
        assert_eq!(
            environment(&u, "/home/u"),
            [(
                "PAPERCLIPD_PATH_PREPEND".to_string(),
                "/home/u/.local/bin".to_string()
            )]
        );
        let want: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(environment(&d, "/home/u"), want, "{d}");
        assert_eq!(
            environment("Environment=\"A=x y\" B=z 'C=1 2'\n", ""),
            [
                ("A".into(), "x y".into()),
                ("B".into(), "z".into()),
                ("C".into(), "1 2".into())
            ]
        );
    }

    /// Issue 19 item 1: the shared templates carry nothing of one instance.
    #[test]
    fn templates_hold_no_instance_settings() {
        for t in [USER_UNIT, SYSTEM_UNIT] {
            let u = render(t, Path::new("/usr/bin/paperclipd")).unwrap();
            let vars: Vec<String> = environment(&u, "/h").into_iter().map(|(k, _)| k).collect();
            for v in ["PAPERCLIP_NODE", "PAPERCLIP_SHIM_PATH", "PATH"] {
                assert!(!vars.contains(&v.to_string()), "{v} in\n{u}");
            }
            assert!(
                legacy_instance_lines(&u)
                    .iter()
                    .all(|l| l.contains("PAPERCLIP_HOME=/var/lib")),
                "{u}"
            );
        }
        let old = "# supervised by paperclipd\n[Service]\nEnvironment=PATH=%h/.local/bin:/usr/bin\n\
                   Environment=PATH=/n/bin:/usr/bin\nEnvironment=PAPERCLIP_HOME=/srv/b\nTimeoutStopSec=45\n";
        assert_eq!(
            legacy_instance_lines(old),
            [
                "Environment=PATH=%h/.local/bin:/usr/bin",
                "Environment=PATH=/n/bin:/usr/bin",
                "Environment=PAPERCLIP_HOME=/srv/b"
            ]
        );
        assert!(
            render_migrated(&legacy_instance_lines(old))
                .contains("\nEnvironment=PAPERCLIP_HOME=/srv/b\n")
        );
    }

    #[test]
    fn renders_path() {
        let u = render(USER_UNIT, Path::new("/opt/my tools/paperclipd")).unwrap();
        assert!(
            u.contains("ExecStart=\"/opt/my tools/paperclipd\" run --instance %i"),
            "{u}"
        );
        let d = render_dropin(
            Duration::from_secs(30),
            &[("PAPERCLIP_HOME", "/h/100%$HOME".into())],
        )
        .unwrap();
        // Environment= does not expand `$`; only `%` is a specifier there.
        assert!(
            d.contains("Environment=PAPERCLIP_HOME=/h/100%%$HOME\n"),
            "{d}"
        );
        assert!(!u.contains("@PAPERCLIPD@"));
        let s = render(SYSTEM_UNIT, Path::new("/usr/bin/paperclipd")).unwrap();
        assert!(s.contains("ExecStart=/usr/bin/paperclipd run --instance %i"));
        assert!(!s.contains("@ENVIRONMENT@") && !u.contains("@ENVIRONMENT@"));
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
        let u = render(USER_UNIT, Path::new("/opt/$USER/paperclipd")).unwrap();
        assert!(u.contains("ExecStart=/opt/$$USER/paperclipd run"), "{u}");
        let e = render_dropin(
            Duration::from_secs(30),
            &[("PAPERCLIP_HOME", "/h\nExecStartPre=/bin/sh".into())],
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 78);
        assert!(e.message.contains("PAPERCLIP_HOME"), "{}", e.message);
        assert!(render(USER_UNIT, Path::new("/opt/a\rb")).is_err());
    }

    #[test]
    fn the_dropin_carries_the_instances_stop_budget() {
        let d = render_dropin(Duration::from_secs(120), &[]).unwrap();
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
