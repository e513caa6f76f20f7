//! The LaunchAgent plist (`units/launchd/`, embedded): rendering with XML
//! escaping, and the `PATH` a launchd job needs to find Node.js.

use std::path::Path;
use std::time::Duration;

use crate::error::Result;
use crate::instance::Instance;
use crate::owned_file::check_rendered_value;

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
            // XML 1.0 cannot carry most control characters at all; `render`
            // refuses them first, this only guards other callers.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Renders the LaunchAgent for an instance; `exit_timeout` is its stop
/// budget (`config::stop_budget`), launchd's wait before SIGKILL;
/// `early_errors` its `StandardErrorPath` ([`super::early_errors::path`]).
/// A value with a control character is refused (exit 78), as for unit
/// files, never replaced.
pub fn render(
    instance: &Instance,
    paperclipd: &Path,
    env: &[(&str, String)],
    exit_timeout: Duration,
    early_errors: &Path,
) -> Result<String> {
    let exe = paperclipd.to_string_lossy();
    check_rendered_value("paperclipd's own path", &exe)?;
    let errors = early_errors.to_string_lossy();
    check_rendered_value("the early-error file (StandardErrorPath)", &errors)?;
    check_rendered_value(
        "the Paperclip home (PAPERCLIP_HOME)",
        &instance.home.to_string_lossy(),
    )?;
    let mut env_xml = String::new();
    for (k, v) in env {
        check_rendered_value(k, v)?;
        env_xml.push_str(&format!(
            "\t\t<key>{}</key>\n\t\t<string>{}</string>\n",
            xml_escape(k),
            xml_escape(v)
        ));
    }
    Ok(PLIST_TEMPLATE
        .replace("@LABEL@", &xml_escape(&super::label(&instance.id)))
        .replace("@PAPERCLIPD@", &xml_escape(&exe))
        .replace("@INSTANCE@", &xml_escape(instance.id.as_str()))
        // 0 would mean "never SIGKILL": at least one second.
        .replace("@EXIT_TIMEOUT@", &exit_timeout.as_secs().max(1).to_string())
        .replace("@ENVIRONMENT@", &env_xml)
        .replace("@ERRORS@", &xml_escape(&errors))
        .replace(
            "@LOGFILE@",
            &xml_escape(&super::log_file(instance).to_string_lossy()),
        ))
}

/// The `EnvironmentVariables` of a plist that [`render`] wrote, read back
/// (string values, XML entities decoded). Not a general plist parser: it
/// reads our own template's shape.
pub fn environment(xml: &str) -> Vec<(String, String)> {
    let Some(start) = xml.find("<key>EnvironmentVariables</key>") else {
        return Vec::new();
    };
    let body = &xml[start..];
    let body = body.find("</dict>").map_or(body, |end| &body[..end]);
    let mut out = Vec::new();
    let mut rest = body;
    // Skip the dictionary's own key, then read <key>K</key> <string>V</string> pairs.
    if let Some(i) = rest.find("<dict>") {
        rest = &rest[i..];
    }
    while let Some(k0) = rest.find("<key>") {
        let after = &rest[k0 + 5..];
        let Some(k1) = after.find("</key>") else {
            break;
        };
        let key = &after[..k1];
        let after = &after[k1 + 6..];
        let Some(v0) = after.find("<string>") else {
            break;
        };
        let Some(v1) = after[v0..].find("</string>") else {
            break;
        };
        out.push((xml_unescape(key), xml_unescape(&after[v0 + 8..v0 + v1])));
        rest = &after[v0 + v1..];
    }
    out
}

/// The environment the instance's LaunchAgent in `home` sets, and its
/// file (what `status` checks the pinned runtime against).
pub fn service_environment(
    home: &Path,
    instance: &Instance,
) -> Option<(std::path::PathBuf, Vec<(String, String)>)> {
    let file = super::plist_path(home, &instance.id);
    let text = crate::regular_file::read_to_string(&file).ok()?;
    Some((file, environment(&text)))
}

/// The inverse of [`xml_escape`].
fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// A `PATH` that finds Node.js and npm's global bin on a Mac (launchd's
/// own default is /usr/bin:/bin:/usr/sbin:/sbin).
pub fn default_path(home: &Path) -> String {
    format!(
        "{}/.local/bin:/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        home.display()
    )
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
            (
                "PAPERCLIP_SHIM_PATH",
                "/opt/\"quoted\" & <tagged>/paperclipai".to_string(),
            ),
        ];
        let xml = render(
            &i,
            Path::new("/Applications/My Tools/paperclipd"),
            &env,
            Duration::from_secs(135),
            &super::super::early_errors::path(Path::new("/Users/a&b"), &i.id),
        )
        .unwrap();
        let v: plist::Value = plist::from_bytes(xml.as_bytes()).expect("a valid plist");
        let d = v.as_dictionary().unwrap();
        assert_eq!(d["Label"].as_string(), Some("ai.paperclip.paperclipd.dev"));
        let args: Vec<&str> = d["ProgramArguments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_string().unwrap())
            .collect();
        assert_eq!(
            args[..4],
            [
                "/Applications/My Tools/paperclipd",
                "run",
                "--instance",
                "dev"
            ]
        );
        assert_eq!(d["RunAtLoad"].as_boolean(), Some(true));
        let ka = d["KeepAlive"].as_dictionary().unwrap();
        assert_eq!(
            ka["SuccessfulExit"].as_boolean(),
            Some(false),
            "restart on failure, not after a clean stop"
        );
        assert_eq!(d["ExitTimeOut"].as_unsigned_integer(), Some(135));
        assert!(d["ThrottleInterval"].as_unsigned_integer().unwrap() >= 5);
        assert_eq!(
            d["ProcessType"].as_string(),
            Some("Interactive"),
            "no light resource limits for the server and its agents"
        );
        let e = d["EnvironmentVariables"].as_dictionary().unwrap();
        assert_eq!(
            e["PAPERCLIP_SHIM_PATH"].as_string(),
            Some("/opt/\"quoted\" & <tagged>/paperclipai")
        );
        assert!(e["PATH"].as_string().unwrap().contains("/opt/homebrew/bin"));
        assert_eq!(
            args[4..],
            [
                "--log-file",
                "/Users/a&b <x>/.paperclip/instances/dev/logs/paperclipd.log"
            ],
            "paperclipd writes and rotates the log itself"
        );
        assert!(
            !d.contains_key("StandardOutPath"),
            "launchd's own log files are never rotated"
        );
        assert_eq!(
            d["StandardErrorPath"].as_string(),
            Some("/Users/a&b/Library/Logs/paperclipd/ai.paperclip.paperclipd.dev.err"),
            "early errors (before paperclipd's log is open) are kept, in a file paperclipd empties"
        );
    }

    const T: Duration = Duration::from_secs(45);
    const E: &str = "/Users/a/Library/Logs/paperclipd/x.err";

    #[test]
    fn control_characters_are_refused_like_in_unit_files() {
        let exe = Path::new("/usr/local/bin/paperclipd");
        let e = render(
            &inst("dev", "/Users/a\nb/.paperclip"),
            exe,
            &[],
            T,
            Path::new(E),
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 78);
        assert!(e.message.contains("control character"), "{}", e.message);
        let env = [("PAPERCLIP_SHIM_PATH", "/opt/x\u{7}/paperclipai".to_string())];
        let e = render(
            &inst("dev", "/Users/a/.paperclip"),
            exe,
            &env,
            T,
            Path::new(E),
        )
        .unwrap_err();
        assert!(e.message.contains("PAPERCLIP_SHIM_PATH"), "{}", e.message);
        let e = render(
            &inst("dev", "/Users/a"),
            Path::new("/opt/\t/paperclipd"),
            &[],
            T,
            Path::new(E),
        )
        .unwrap_err();
        assert!(e.message.contains("paperclipd's own path"), "{}", e.message);
    }

    #[test]
    fn environment_reads_back_what_render_writes() {
        let env = [
            ("PATH", "/Users/a&b/n <1>/bin:/usr/bin".to_string()),
            ("PAPERCLIP_NODE", "/x/\"q\" &amp;/node".to_string()),
        ];
        let xml = render(
            &inst("e", "/Users/x/.paperclip"),
            Path::new("/p"),
            &env,
            T,
            Path::new(E),
        )
        .unwrap();
        let got = environment(&xml);
        let want: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(got, want);
        // The same as a real plist parser reads.
        let v: plist::Value = plist::from_bytes(xml.as_bytes()).unwrap();
        let d = v.as_dictionary().unwrap()["EnvironmentVariables"]
            .as_dictionary()
            .unwrap();
        for (k, val) in &want {
            assert_eq!(d[k].as_string(), Some(val.as_str()));
        }
    }

    #[test]
    fn escapes_everything_xml_needs() {
        assert_eq!(xml_escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        assert_eq!(xml_escape("bell\u{7}"), "bell\u{FFFD}");
    }
}
