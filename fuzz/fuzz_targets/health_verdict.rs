//! The API and UI verdicts on arbitrary responses: never panic, and never
//! call a non-2xx or truncated response ready.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paperclipd::fuzzing::{api_verdict, ui_verdict};

fuzz_target!(|input: (u16, Option<String>, Vec<u8>, bool)| {
    let (status, content_type, body, truncated) = input;
    let (ready, detail, _) = api_verdict(status, content_type.as_deref(), &body, truncated);
    assert!(!detail.is_empty());
    if ready {
        assert!((200..300).contains(&status));
        assert!(!truncated);
    }
    let (ui_ready, _) = ui_verdict(status, content_type.as_deref());
    if ui_ready {
        assert!((200..300).contains(&status));
    }
});
