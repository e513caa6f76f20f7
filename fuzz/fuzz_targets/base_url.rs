//! Server URL validation: never panic; an accepted URL is http(s) with a
//! host and a port, and carries no credentials.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(url) = paperclipd::fuzzing::parse_base_url(text) {
            assert!(url.scheme() == "http" || url.scheme() == "https");
            assert!(url.host_str().is_some_and(|h| !h.is_empty()));
            assert!(url.username().is_empty() && url.password().is_none());
            assert!(url.port_or_known_default().is_some());
        } else if let Err(e) = paperclipd::fuzzing::parse_base_url(text) {
            assert_eq!(e.exit_code(), 78);
        }
    }
});
