//! launchd (macOS): the LaunchAgent plist and the `launchctl` calls.
//!
//! Rendering and the shape of every `launchctl` call are portable code,
//! compiled and tested on Linux; only running `launchctl` is macOS-only.

use std::path::{Path, PathBuf};

use crate::instance::Instance;

pub const PLIST_TEMPLATE: &str = include_str!("../../units/launchd/ai.paperclip.paperclipd.plist");

/// Escapes text for an XML element.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry most control characters at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `~/Library/LaunchAgents/<label>.plist`.
pub fn plist_path(home: &Path, instance: &Instance) -> PathBuf {
    home.join("Library/LaunchAgents").join(format!("{}.plist", instance.launchd_label()))
}

/// Renders the LaunchAgent for an instance.
pub fn render(instance: &Instance, paperclipd: &Path, env: &[(&str, String)]) -> String {
    let logs = instance.log_dir();
    let mut env_xml = String::new();
    for (k, v) in env {
        env_xml.push_str(&format!(
            "\t\t<key>{}</key>\n\t\t<string>{}</string>\n",
            xml_escape(k),
            xml_escape(v)
        ));
    }
    PLIST_TEMPLATE
        .replace("@LABEL@", &xml_escape(&instance.launchd_label()))
        .replace("@PAPERCLIPD@", &xml_escape(&paperclipd.to_string_lossy()))
        .replace("@INSTANCE@", &xml_escape(instance.id.as_str()))
        .replace("@ENVIRONMENT@", &env_xml)
        .replace("@STDOUT@", &xml_escape(&logs.join("paperclipd.out.log").to_string_lossy()))
        .replace("@STDERR@", &xml_escape(&logs.join("paperclipd.err.log").to_string_lossy()))
}

/// A `PATH` that finds Node.js and npm's global bin on a Mac (launchd's
/// own default is /usr/bin:/bin:/usr/sbin:/sbin).
pub fn default_path(home: &Path) -> String {
    format!(
        "{}/.local/bin:/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        home.display()
    )
}

/// The launchd domains to try, in order: the GUI session, then the
/// background user domain (e.g. over SSH, where there is no GUI session).
pub fn domains(uid: u32) -> [String; 2] {
    [format!("gui/{uid}"), format!("user/{uid}")]
}

/// What to ask launchctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Bootstrap,
    Bootout,
    Kickstart,
    Print,
}

/// The exact `launchctl` arguments for an operation.
pub fn launchctl_args(op: Op, domain: &str, label: &str, plist: &Path) -> Vec<String> {
    let target = format!("{domain}/{label}");
    match op {
        Op::Bootstrap => vec!["bootstrap".into(), domain.into(), plist.to_string_lossy().into_owned()],
        Op::Bootout => vec!["bootout".into(), target],
        Op::Kickstart => vec!["kickstart".into(), "-k".into(), target],
        Op::Print => vec!["print".into(), target],
    }
}

/// Upstream's own job label for the same instance.
pub fn upstream_label(instance: &Instance) -> String {
    if instance.id.as_str() == "default" {
        "ing.paperclip.paperclipai".to_string()
    } else {
        format!("ing.paperclip.paperclipai.{}", instance.id)
    }
}

/// Reads `state = running` and `pid = N` from `launchctl print` output.
pub fn parse_print(text: &str) -> (Option<String>, Option<u32>) {
    let mut state = None;
    let mut pid = None;
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("state = ") {
            state.get_or_insert_with(|| v.trim().to_string());
        } else if let Some(v) = l.strip_prefix("pid = ") {
            pid = pid.or_else(|| v.trim().parse().ok());
        }
    }
    (state, pid)
}

#[cfg(target_os = "macos")]
pub mod macos {
    //! Running launchctl: the only macOS-only part.
    use super::*;
    use crate::error::{Error, Kind, Result};

    pub fn launchctl(args: &[String]) -> Result<std::process::Output> {
        std::process::Command::new("/bin/launchctl")
            .args(args)
            .output()
            .map_err(|e| Error::os(format!("cannot run launchctl: {e}")))
    }

    /// Bootstraps the plist into the first domain that accepts it.
    pub fn bootstrap(label: &str, plist: &Path) -> Result<String> {
        let uid = unsafe { libc::getuid() };
        let mut last = String::new();
        for domain in domains(uid) {
            let out = launchctl(&launchctl_args(Op::Bootstrap, &domain, label, plist))?;
            if out.status.success() {
                return Ok(domain);
            }
            last = String::from_utf8_lossy(&out.stderr).trim().to_string();
        }
        Err(Error::new(Kind::Failed, format!("launchctl bootstrap {} failed: {last}", plist.display())))
    }

    pub fn run(op: Op, label: &str, plist: &Path) -> Result<()> {
        let uid = unsafe { libc::getuid() };
        let mut last = String::new();
        for domain in domains(uid) {
            let out = launchctl(&launchctl_args(op, &domain, label, plist))?;
            if out.status.success() {
                return Ok(());
            }
            last = String::from_utf8_lossy(&out.stderr).trim().to_string();
        }
        Err(Error::new(Kind::Failed, format!("launchctl {op:?} {label} failed: {last}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::InstanceId;

    fn inst(id: &str, home: &str) -> Instance {
        Instance::new(InstanceId::parse(id).unwrap(), home.into())
    }

    #[test]
    fn renders_a_valid_plist_with_hostile_values() {
        let i = inst("dev", "/Users/a&b <x>/.paperclip");
        let env = [
            ("PATH", default_path(Path::new("/Users/a&b"))),
            ("PAPERCLIP_SHIM_PATH", "/opt/\"quoted\" & <tagged>/paperclipai".to_string()),
        ];
        let xml = render(&i, Path::new("/Applications/My Tools/paperclipd"), &env);
        let v: plist::Value = plist::from_bytes(xml.as_bytes()).expect("a valid plist");
        let d = v.as_dictionary().unwrap();
        assert_eq!(d["Label"].as_string(), Some("ai.paperclip.paperclipd.dev"));
        let args: Vec<&str> = d["ProgramArguments"].as_array().unwrap().iter().map(|a| a.as_string().unwrap()).collect();
        assert_eq!(args, ["/Applications/My Tools/paperclipd", "run", "--instance", "dev"]);
        assert_eq!(d["RunAtLoad"].as_boolean(), Some(true));
        let ka = d["KeepAlive"].as_dictionary().unwrap();
        assert_eq!(ka["SuccessfulExit"].as_boolean(), Some(false), "restart on failure, not after a clean stop");
        assert!(d["ExitTimeOut"].as_unsigned_integer().unwrap() >= 35);
        assert!(d["ThrottleInterval"].as_unsigned_integer().unwrap() >= 5);
        assert_eq!(d["ProcessType"].as_string(), Some("Standard"));
        let e = d["EnvironmentVariables"].as_dictionary().unwrap();
        assert_eq!(e["PAPERCLIP_SHIM_PATH"].as_string(), Some("/opt/\"quoted\" & <tagged>/paperclipai"));
        assert!(e["PATH"].as_string().unwrap().contains("/opt/homebrew/bin"));
        assert_eq!(
            d["StandardErrorPath"].as_string(),
            Some("/Users/a&b <x>/.paperclip/instances/dev/logs/paperclipd.err.log")
        );
    }

    #[test]
    fn launchctl_argument_shapes() {
        let p = Path::new("/Users/a/Library/LaunchAgents/ai.paperclip.paperclipd.dev.plist");
        let l = "ai.paperclip.paperclipd.dev";
        assert_eq!(domains(501), ["gui/501", "user/501"]);
        assert_eq!(launchctl_args(Op::Bootstrap, "gui/501", l, p), ["bootstrap", "gui/501", p.to_str().unwrap()]);
        assert_eq!(launchctl_args(Op::Bootout, "gui/501", l, p), ["bootout", "gui/501/ai.paperclip.paperclipd.dev"]);
        assert_eq!(launchctl_args(Op::Kickstart, "user/501", l, p), ["kickstart", "-k", "user/501/ai.paperclip.paperclipd.dev"]);
        assert_eq!(launchctl_args(Op::Print, "gui/501", l, p), ["print", "gui/501/ai.paperclip.paperclipd.dev"]);
        assert_eq!(plist_path(Path::new("/Users/a"), &inst("dev", "/h")), p);
        assert_eq!(upstream_label(&inst("default", "/h")), "ing.paperclip.paperclipai");
        assert_eq!(upstream_label(&inst("x", "/h")), "ing.paperclip.paperclipai.x");
    }

    #[test]
    fn parses_launchctl_print() {
        let t = "gui/501/ai.paperclip.paperclipd.dev = {\n\tactive count = 1\n\tstate = running\n\tpid = 4242\n\tjob state = running\n}\n";
        assert_eq!(parse_print(t), (Some("running".into()), Some(4242)));
        assert_eq!(parse_print("state = not running\n"), (Some("not running".into()), None));
    }

    #[test]
    fn escapes_everything_xml_needs() {
        assert_eq!(xml_escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        assert_eq!(xml_escape("bell\u{7}"), "bell\u{FFFD}");
    }
}
