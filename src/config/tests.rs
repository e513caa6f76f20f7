//! Unit tests of the settings: the config file, URLs, probe hosts.
use super::*;

#[test]
fn file_config_errors_name_line_and_key() {
    let e = parse_file_config("url = \"http://x:1\"\nbogus = 1\n").unwrap_err();
    assert!(e.contains("line 2"), "{e}");
    assert!(e.contains("bogus"), "{e}");
    let e = parse_file_config("ready_timeout = 5\n").unwrap_err();
    assert!(e.contains("ready_timeout") || e.contains("line 1"), "{e}");
    let e = parse_file_config("stop_timeout = \"-5s\"\n").unwrap_err();
    assert!(e.contains("invalid duration"), "{e}");
    let e = parse_file_config("url = \n").unwrap_err();
    assert!(e.contains("line 1"), "{e}");
}

#[test]
fn file_config_full() {
    let c = parse_file_config(
        "command = [\"srv\", \"-p\", \"1\"]\nmode = \"api-only\"\nready_timeout = \"90s\"\n[env]\nA = \"b\"\n",
    )
    .unwrap();
    assert_eq!(c.mode, Some(Mode::ApiOnly));
    assert_eq!(c.ready_timeout, Some(Duration::from_secs(90)));
    assert_eq!(c.env.unwrap()["A"], "b");
}

#[test]
fn file_config_min_free_and_reaping() {
    let c = parse_file_config("min_free = \"2GiB\"\nreap_adopted_after = \"30m\"\n").unwrap();
    assert_eq!(c.min_free, Some(2 << 30));
    assert_eq!(c.reap_adopted_after, Some(Duration::from_secs(1800)));
    assert_eq!(
        parse_file_config("min_free = 0\n").unwrap().min_free,
        Some(0)
    );
    let e = parse_file_config("min_free = \"lots\"\n").unwrap_err();
    assert!(e.contains("invalid size"), "{e}");
}

#[test]
fn wildcard_binds_probe_loopback() {
    assert_eq!(probe_host("0.0.0.0"), "127.0.0.1");
    assert_eq!(probe_host("::"), "[::1]");
    assert_eq!(probe_host("::1"), "[::1]");
    assert_eq!(probe_host("10.1.2.3"), "10.1.2.3");
}

#[test]
fn localhost_names_both_loopbacks() {
    for host in ["localhost", "LocalHost.", "app.localhost"] {
        let url = parse_base_url(&format!("http://{host}:3100")).unwrap();
        let addrs = connect_addrs(&url, 3100).unwrap();
        for a in ["127.0.0.1:3100", "[::1]:3100"] {
            assert!(addrs.contains(&a.parse().unwrap()), "{host}: {addrs:?}");
        }
    }
    let url = parse_base_url("http://127.0.0.1:3100").unwrap();
    assert_eq!(connect_addrs(&url, 3100).unwrap().len(), 1);
    assert_eq!(probe_host("localhost"), "localhost");
}

#[test]
fn urls() {
    assert!(parse_base_url("http://127.0.0.1:3100").is_ok());
    assert!(parse_base_url("http://localhost:3100/").is_ok());
    for bad in [
        "ftp://x:1",
        "http://u:p@x:1",
        "http://x:1/base",
        "http://x:1/?q",
        "nonsense",
        "http://:1",
    ] {
        let e = parse_base_url(bad).unwrap_err();
        assert_eq!(e.exit_code(), 78, "{bad}");
    }
    let e = parse_base_url("http://user:hunter2@x:1").unwrap_err();
    assert!(!e.message.contains("hunter2"));
}
