//! Sizes in bytes: the SIZE grammar of flags and `paperclipd.toml`
//! (`--min-free`, `--log-max-size`), and how sizes are printed.

/// Parses a size: a number of bytes, optionally with a unit. `K`, `M`,
/// `G`, `T` and `KiB`… are powers of 1024; `KB`, `MB`, `GB`, `TB` powers of
/// 1000 (as disk vendors count). `0` is allowed (it disables the check).
pub fn parse_size(raw: &str) -> std::result::Result<u64, String> {
    let s = raw.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = (s[..split].trim(), s[split..].trim());
    let bad = || {
        format!(
            "invalid size {raw:?}: expected a number of bytes with an optional unit, such as 10MiB, 1GiB, 1.5G, 500MB or 4096"
        )
    };
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    if num.is_empty() {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let bytes = value * mult as f64;
    // Only what a u64 cannot hold is refused here; each setting checks its
    // own range where it is resolved (exit 78, naming the range).
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(format!(
            "invalid size {raw:?}: too large (a size is at most 16EiB)"
        ));
    }
    Ok(bytes.round() as u64)
}

/// `1.0 GiB`, `512.0 MiB`, `812 B`.
pub fn format_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1 gib"), Ok(1 << 30));
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in [
            "",
            "G",
            "-1G",
            "1XB",
            "1..2G",
            "1e9",
            "99999999999999999999T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format_size(812), "812 B");
        assert_eq!(format_size(1 << 30), "1.0 GiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(8 << 20), "8.0 MiB");
    }
}
