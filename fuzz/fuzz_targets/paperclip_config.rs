//! Paperclip's `config.json`: parse or reject, never panic; a parsed port
//! is a valid port.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = paperclipd::fuzzing::parse_paperclip_config(text) {
            assert!(c.port.is_none_or(|p| p > 0));
        }
    }
});
