//! Node.js versions (`v24.11.1`) and the semver ranges npm packages put in
//! `engines.node` (`>=24.11.0`, `^24.11`, `20 || >=22`, `1.2 - 2.3`, `24.x`).
//!
//! The grammar and the desugaring are node-semver's. Prereleases match as
//! npm's engine check matches them (`includePrerelease`): by precedence.

use std::cmp::Ordering;
use std::fmt;

/// A semantic version; `pre` empty for a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Vec<String>,
}

impl Version {
    const fn new(major: u64, minor: u64, patch: u64) -> Self {
        Version {
            major,
            minor,
            patch,
            pre: Vec::new(),
        }
    }

    /// The lowest version of `major.minor.patch` (`-0`): an exclusive upper
    /// bound that also excludes that version's prereleases.
    fn floor(major: u64, minor: u64, patch: u64) -> Self {
        Version {
            pre: vec!["0".to_string()],
            ..Version::new(major, minor, patch)
        }
    }

    /// Parses `24.11.1`, `v24.11.1`, `25.0.0-nightly.1+build` (what `node
    /// --version` prints, or a version in a range).
    pub fn parse(text: &str) -> Option<Version> {
        let p = Partial::parse(text.trim())?;
        match (p.major, p.minor, p.patch) {
            (Some(major), Some(minor), Some(patch)) => Some(Version {
                major,
                minor,
                patch,
                pre: p.pre,
            }),
            _ => None,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre.join("."))?;
        }
        Ok(())
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| compare_pre(&self.pre, &other.pre))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Semver precedence of prerelease identifiers: none is highest; numeric
/// below alphanumeric; numbers numerically; a longer list after its prefix.
fn compare_pre(a: &[String], b: &[String]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    for (x, y) in a.iter().zip(b) {
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// A version with wildcards: `24`, `24.x`, `24.11`, `*`.
#[derive(Debug, Clone, Default)]
struct Partial {
    major: Option<u64>,
    minor: Option<u64>,
    patch: Option<u64>,
    pre: Vec<String>,
}

impl Partial {
    fn parse(text: &str) -> Option<Partial> {
        let t = text.trim_start_matches('=').trim_start_matches(['v', 'V']);
        // Build metadata never matters for precedence.
        let t = t.split_once('+').map_or(t, |(v, _)| v);
        let (core, pre) = match t.split_once('-') {
            Some((c, p)) => (c, p.split('.').map(str::to_string).collect()),
            None => (t, Vec::new()),
        };
        if core.is_empty() {
            return Some(Partial::default());
        }
        let mut parts = core.split('.');
        let mut next = || -> Option<Option<u64>> {
            match parts.next() {
                None | Some("x" | "X" | "*") => Some(None),
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    n.parse().ok().map(Some)
                }
                Some(_) => None,
            }
        };
        let (major, minor, patch) = (next()?, next()?, next()?);
        if parts.next().is_some() || pre.iter().any(String::is_empty) {
            return None;
        }
        // After a wildcard, everything is a wildcard (`1.x.3` is `1.x`).
        let minor = major.and(minor);
        let patch = minor.and(patch);
        Some(Partial {
            major,
            minor,
            patch,
            pre: if patch.is_some() { pre } else { Vec::new() },
        })
    }

    fn lower(&self) -> Version {
        Version {
            pre: self.pre.clone(),
            ..Version::new(
                self.major.unwrap_or(0),
                self.minor.unwrap_or(0),
                self.patch.unwrap_or(0),
            )
        }
    }

    /// The first version above every version this partial covers (`None`
    /// for `*`). `1` → `2.0.0-0`, `1.2` → `1.3.0-0`.
    fn upper(&self) -> Option<Version> {
        match (self.major, self.minor, self.patch) {
            (None, _, _) => None,
            (Some(m), None, _) => Some(Version::floor(m + 1, 0, 0)),
            (Some(m), Some(n), None) => Some(Version::floor(m, n + 1, 0)),
            (Some(_), Some(_), Some(_)) => None,
        }
    }

    fn is_full(&self) -> bool {
        self.patch.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

#[derive(Debug, Clone)]
struct Comparator {
    op: Op,
    version: Version,
}

impl Comparator {
    fn matches(&self, v: &Version) -> bool {
        let o = v.cmp(&self.version);
        match self.op {
            Op::Lt => o == Ordering::Less,
            Op::Le => o != Ordering::Greater,
            Op::Gt => o == Ordering::Greater,
            Op::Ge => o != Ordering::Less,
            Op::Eq => o == Ordering::Equal,
        }
    }
}

/// A parsed range: alternatives (`||`), each a conjunction of comparators.
#[derive(Debug, Clone)]
pub struct Range {
    alternatives: Vec<Vec<Comparator>>,
}

impl Range {
    pub fn parse(text: &str) -> Result<Range, String> {
        let alternatives = text
            .split("||")
            .map(|alt| parse_conjunction(alt).map_err(|why| format!("{text:?}: {why}")))
            .collect::<Result<_, _>>()?;
        Ok(Range { alternatives })
    }

    pub fn matches(&self, v: &Version) -> bool {
        self.alternatives
            .iter()
            .any(|all| all.iter().all(|c| c.matches(v)))
    }
}

fn ge(v: Version) -> Comparator {
    Comparator {
        op: Op::Ge,
        version: v,
    }
}
fn lt(v: Version) -> Comparator {
    Comparator {
        op: Op::Lt,
        version: v,
    }
}
/// Matches nothing (`<0.0.0-0`).
fn nothing() -> Comparator {
    lt(Version::floor(0, 0, 0))
}

fn parse_conjunction(text: &str) -> Result<Vec<Comparator>, String> {
    let mut tokens: Vec<String> = Vec::new();
    // An operator may stand apart from its version: `>= 24.11.0`.
    for t in text.split_whitespace() {
        match tokens.last_mut() {
            Some(last)
                if matches!(
                    last.as_str(),
                    "<" | "<=" | ">" | ">=" | "=" | "~" | "^" | "~>"
                ) =>
            {
                last.push_str(t)
            }
            _ => tokens.push(t.to_string()),
        }
    }
    if let [from, dash, to] = tokens.as_slice() {
        if dash == "-" {
            return hyphen(from, to);
        }
    }
    let mut out = Vec::new();
    for t in &tokens {
        out.extend(desugar(t)?);
    }
    Ok(out)
}

/// `1.2.3 - 2.3` → `>=1.2.3 <2.4.0-0`.
fn hyphen(from: &str, to: &str) -> Result<Vec<Comparator>, String> {
    let bad = |t: &str| format!("{t:?} is not a version");
    let from = Partial::parse(from).ok_or_else(|| bad(from))?;
    let to = Partial::parse(to).ok_or_else(|| bad(to))?;
    let mut out = vec![ge(from.lower())];
    if to.is_full() {
        out.push(Comparator {
            op: Op::Le,
            version: to.lower(),
        });
    } else if let Some(u) = to.upper() {
        out.push(lt(u));
    }
    Ok(out)
}

/// One comparator, caret, tilde or partial → plain comparators.
fn desugar(token: &str) -> Result<Vec<Comparator>, String> {
    let (op, rest) = ["<=", ">=", "~>", "<", ">", "=", "~", "^"]
        .iter()
        .find_map(|op| token.strip_prefix(op).map(|r| (*op, r)))
        .unwrap_or(("", token));
    if !op.is_empty() && rest.is_empty() {
        return Err(format!("{op:?} is not followed by a version"));
    }
    let p = Partial::parse(rest).ok_or_else(|| format!("{token:?} is not a version range"))?;
    let major = p.major;
    Ok(match op {
        "" | "=" => match p.upper() {
            None if p.is_full() => vec![Comparator {
                op: Op::Eq,
                version: p.lower(),
            }],
            None => Vec::new(),
            Some(u) => vec![ge(p.lower()), lt(u)],
        },
        ">=" => vec![ge(p.lower())],
        "<" if major.is_none() => vec![nothing()],
        "<" => vec![lt(if p.is_full() {
            p.lower()
        } else {
            Version::floor(p.lower().major, p.lower().minor, 0)
        })],
        "<=" => match p.upper() {
            Some(u) => vec![lt(u)],
            None if p.is_full() => vec![Comparator {
                op: Op::Le,
                version: p.lower(),
            }],
            None => Vec::new(),
        },
        ">" => match p.upper() {
            _ if major.is_none() => vec![nothing()],
            Some(u) => vec![ge(Version {
                pre: Vec::new(),
                ..u
            })],
            None => vec![Comparator {
                op: Op::Gt,
                version: p.lower(),
            }],
        },
        "~" | "~>" => {
            let upper = match (p.major, p.minor) {
                (None, _) => return Ok(Vec::new()),
                (Some(m), None) => Version::floor(m + 1, 0, 0),
                (Some(m), Some(n)) => Version::floor(m, n + 1, 0),
            };
            vec![ge(p.lower()), lt(upper)]
        }
        _ => {
            // "^": the leftmost non-zero part may not change.
            let upper = match (p.major, p.minor, p.patch) {
                (None, _, _) => return Ok(Vec::new()),
                (Some(m), _, _) if m > 0 => Version::floor(m + 1, 0, 0),
                (Some(_), None, _) => Version::floor(1, 0, 0),
                (Some(_), Some(n), _) if n > 0 => Version::floor(0, n + 1, 0),
                (Some(_), Some(_), None) => Version::floor(0, 1, 0),
                (Some(_), Some(_), Some(pt)) => Version::floor(0, 0, pt + 1),
            };
            vec![ge(p.lower()), lt(upper)]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|| panic!("{s}"))
    }

    fn sat(range: &str, version: &str) -> bool {
        Range::parse(range)
            .unwrap_or_else(|e| panic!("{e}"))
            .matches(&v(version))
    }

    #[test]
    fn node_versions() {
        assert_eq!(v("v24.11.1"), Version::new(24, 11, 1));
        assert_eq!(v("v24.11.1\n").to_string(), "v24.11.1");
        assert_eq!(v("v25.0.0-nightly20251101.abc").pre.len(), 2);
        assert!(v("v20.20.2") < v("v24.11.0"));
        assert!(v("v24.11.0-rc.1") < v("v24.11.0"));
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        assert!(v("1.0.0-alpha.1") < v("1.0.0-alpha.beta"));
        assert!(v("1.0.0-2") < v("1.0.0-11"));
        for bad in [
            "",
            "v24",
            "24.11",
            "node",
            "v24.11.1.5",
            "v24.a.1",
            "1.2.3-",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_forms_npm_packages_use() {
        let table: &[(&str, &[&str], &[&str])] = &[
            (
                ">=24.11.0",
                &["24.11.0", "24.12.3", "25.0.0", "30.1.1"],
                &["24.10.9", "20.20.2", "24.11.0-rc.1"],
            ),
            (">= 24.11.0", &["24.11.0"], &["24.10.0"]),
            (">=24.11", &["24.11.0"], &["24.10.99"]),
            (">=24", &["24.0.0"], &["23.99.99"]),
            (">24", &["25.0.0"], &["24.99.0"]),
            (">24.11.0", &["24.11.1"], &["24.11.0"]),
            (
                "^24.11.0",
                &["24.11.0", "24.99.0"],
                &["25.0.0", "25.0.0-pre", "24.10.0"],
            ),
            ("^24.11", &["24.11.0"], &["25.0.0"]),
            ("^0.2.3", &["0.2.9"], &["0.3.0"]),
            ("^0.0.3", &["0.0.3"], &["0.0.4"]),
            ("~24.11.0", &["24.11.5"], &["24.12.0"]),
            ("~24", &["24.99.0"], &["25.0.0"]),
            ("24.x", &["24.0.0", "24.99.1"], &["25.0.0", "23.0.0"]),
            ("24", &["24.5.0"], &["25.0.0"]),
            ("=24.11.0", &["24.11.0"], &["24.11.1"]),
            ("v24.11.0", &["24.11.0"], &["24.11.1"]),
            ("<25", &["24.99.0"], &["25.0.0", "25.0.0-rc.1"]),
            ("<=24.11", &["24.11.9"], &["24.12.0"]),
            (">=20 <25", &["20.0.0", "24.1.0"], &["25.0.0", "19.9.9"]),
            (
                "^20.19.0 || >=22.12.0",
                &["20.19.1", "22.12.0", "24.0.0"],
                &["20.18.0", "21.0.0", "22.11.0"],
            ),
            ("20 - 24", &["20.0.0", "24.99.0"], &["25.0.0", "19.0.0"]),
            ("20.1.2 - 24.3.4", &["24.3.4"], &["24.3.5"]),
            ("*", &["0.1.0", "24.0.0-pre"], &[]),
            ("", &["24.0.0"], &[]),
            ("x", &["1.0.0"], &[]),
            ("<*", &[], &["1.0.0"]),
        ];
        for (range, yes, no) in table {
            for ok in *yes {
                assert!(sat(range, ok), "{range} should match {ok}");
            }
            for not in *no {
                assert!(!sat(range, not), "{range} should not match {not}");
            }
        }
    }

    #[test]
    fn nonsense_is_an_error_that_names_it() {
        for bad in [
            ">=twenty",
            "^1.2.3.4",
            ">=24.11.0 <",
            "latest",
            "1.2.3 - x.y",
        ] {
            let e = Range::parse(bad).expect_err(bad);
            assert!(e.contains(bad) || e.contains("version"), "{bad}: {e}");
        }
    }
}
