//! `paperclipd.toml` parsing: any input either parses or yields an error
//! message; it never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(msg) = paperclipd::fuzzing::parse_file_config(text) {
            assert!(!msg.is_empty());
        }
    }
});
