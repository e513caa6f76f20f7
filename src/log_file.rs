//! `run --log-file`: the validated path, size and number of rotated files
//! (flags + config file + defaults → [`LogFileSettings`]).

use std::path::PathBuf;

use crate::error::{Error, Result};

pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
pub const DEFAULT_LOG_KEEP: u32 = 3;
const LOG_MAX_SIZE_RANGE: std::ops::RangeInclusive<u64> = 4096..=(1 << 40);
const MAX_LOG_KEEP: u32 = 1000;

/// `run --log-file PATH`: where the server's output and our own lines go,
/// rotated by size to PATH.1 … PATH.keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileSettings {
    /// Absolute.
    pub path: PathBuf,
    pub max_size: u64,
    pub keep: u32,
}

pub fn resolve(
    args: &crate::cli::RunArgs,
    file: &crate::config::FileConfig,
    in_file: &dyn Fn(&str) -> String,
) -> Result<Option<LogFileSettings>> {
    let max_size = args.log_max_size.or(file.log_max_size);
    let keep = args.log_keep.or(file.log_keep);
    // Where a value came from, for the message: the flag or the file's key.
    let origin = |flag: bool, key: &str| {
        if flag {
            format!("--{}", key.replace('_', "-"))
        } else {
            in_file(key)
        }
    };
    let path = match (&args.log_file, &file.log_file) {
        (Some(p), _) => std::path::absolute(p).map_err(|e| {
            Error::config(format!(
                "cannot resolve --log-file {}: {e}",
                crate::untrusted::path(p)
            ))
        })?,
        (None, Some(p)) if p.is_absolute() => p.clone(),
        (None, Some(p)) => {
            return Err(Error::config(format!(
                "{} is {}, a relative path: expected an absolute path such as /var/log/paperclipd.log",
                in_file("log_file"),
                crate::untrusted::path(p)
            )));
        }
        (None, None) if max_size.is_some() || keep.is_some() => {
            return Err(Error::config(format!(
                "{} set without a log file: they apply only to --log-file; add --log-file PATH (or log_file) or remove them",
                if max_size.is_some() {
                    origin(args.log_max_size.is_some(), "log_max_size")
                } else {
                    origin(args.log_keep.is_some(), "log_keep")
                }
            )));
        }
        (None, None) => return Ok(None),
    };
    let max_size = max_size.unwrap_or(DEFAULT_LOG_MAX_SIZE);
    if !LOG_MAX_SIZE_RANGE.contains(&max_size) {
        return Err(Error::config(format!(
            "{} is {max_size} bytes, out of range: expected 4KiB to 1TiB, e.g. 10MiB",
            origin(args.log_max_size.is_some(), "log_max_size")
        )));
    }
    let keep = keep.unwrap_or(DEFAULT_LOG_KEEP);
    if keep > MAX_LOG_KEEP {
        return Err(Error::config(format!(
            "{} is {keep}, out of range: expected at most {MAX_LOG_KEEP} rotated files",
            origin(args.log_keep.is_some(), "log_keep")
        )));
    }
    Ok(Some(LogFileSettings {
        path,
        max_size,
        keep,
    }))
}

/// A size in the config file: `"10MiB"` or a number of bytes.
pub fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    crate::config::de_size_by(d, crate::size::parse_size)
}

#[cfg(test)]
mod tests {
    use crate::config::parse_file_config;
    use crate::size::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        for bad in ["", "MiB", "-1MiB", "10 parsecs", "99999999999999GiB"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.starts_with("invalid size"), "{bad}: {e}");
        }
    }

    #[test]
    fn config_keys() {
        let c = parse_file_config(
            "log_file = \"/var/log/p.log\"\nlog_max_size = \"2MiB\"\nlog_keep = 5\n",
        )
        .unwrap();
        assert_eq!(c.log_max_size, Some(2 << 20));
        assert_eq!(c.log_keep, Some(5));
        let c = parse_file_config("log_max_size = 8192\n").unwrap();
        assert_eq!(c.log_max_size, Some(8192));
        let e = parse_file_config("log_max_size = \"lots\"\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("10MiB"), "{e}");
    }
}
