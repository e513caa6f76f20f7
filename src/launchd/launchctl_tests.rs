//! `launchctl` argument shapes, and the agent's calls in order, against the
//! recording stand-in.

use super::*;
use crate::instance::InstanceId;
use crate::launchd::standin::StandIn;

fn inst() -> Instance {
    Instance::new(InstanceId::parse("dev").unwrap(), "/h".into())
}

const LABEL: &str = "ai.paperclip.paperclipd.dev";

fn agent<'a>(i: &'a Instance, l: &'a StandIn) -> Agent<'a, StandIn> {
    Agent {
        instance: i,
        plist: format!("/Users/a/Library/LaunchAgents/{LABEL}.plist").into(),
        uid: 501,
        launchctl: l,
    }
}

#[test]
fn launchctl_argument_shapes() {
    let p = Path::new("/Users/a/Library/LaunchAgents/ai.paperclip.paperclipd.dev.plist");
    let shape = |op| launchctl_args(op, "gui/501", LABEL, p).join(" ");
    assert_eq!(domains(501), ["gui/501", "user/501"]);
    assert_eq!(
        shape(Op::Bootstrap),
        format!("bootstrap gui/501 {}", p.display())
    );
    assert_eq!(shape(Op::Bootout), format!("bootout gui/501/{LABEL}"));
    assert_eq!(shape(Op::Enable), format!("enable gui/501/{LABEL}"));
    assert_eq!(shape(Op::Disable), format!("disable gui/501/{LABEL}"));
    assert_eq!(
        shape(Op::Kickstart),
        format!("kickstart gui/501/{LABEL}"),
        "never -k: it SIGKILLs paperclipd and orphans the server on macOS"
    );
    assert_eq!(shape(Op::Term), format!("kill SIGTERM gui/501/{LABEL}"));
    assert_eq!(shape(Op::Print), format!("print gui/501/{LABEL}"));
    assert_eq!(shape(Op::PrintDomain), "print gui/501");
    assert_eq!(shape(Op::PrintDisabled), "print-disabled gui/501");
    assert_eq!(
        super::super::plist_path(Path::new("/Users/a"), &inst().id),
        p
    );
}

#[test]
fn bootstrap_enables_the_label_first_in_the_gui_domain() {
    let i = inst();
    let l = StandIn::default();
    l.disabled.borrow_mut().push(LABEL.into());
    assert_eq!(agent(&i, &l).bootstrap().unwrap(), "gui/501");
    assert_eq!(
        l.calls(),
        [
            "print gui/501".to_string(),
            format!("enable gui/501/{LABEL}"),
            format!("bootstrap gui/501 /Users/a/Library/LaunchAgents/{LABEL}.plist"),
        ]
    );
}

#[test]
fn only_without_a_gui_domain_it_loads_into_the_user_domain() {
    let i = inst();
    let l = StandIn {
        gui: false,
        ..Default::default()
    };
    assert_eq!(agent(&i, &l).bootstrap().unwrap(), "user/501");
    assert!(l.position("bootstrap gui/").is_none(), "{:?}", l.calls());
    assert!(l.position(&format!("enable user/501/{LABEL}")) < l.position("bootstrap user/501"));
}

#[test]
fn error_5_is_explained_and_not_hidden_by_a_fallback() {
    let i = inst();
    let l = StandIn::default();
    // Still loaded in the GUI domain (not seen by `loaded()` in this test's
    // direct call): bootstrap says 5.
    l.load(LABEL, "gui/501", false);
    let e = agent(&i, &l)
        .bootstrap_within(std::time::Duration::from_millis(300))
        .unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(e.message.contains("Errors 5 and 37 mean"), "{}", e.message);
    assert!(
        l.count("bootstrap gui/501") > 1,
        "tried again: {:?}",
        l.calls()
    );
    assert!(
        e.message.contains("print-disabled gui/501"),
        "{}",
        e.message
    );
    assert!(l.position("bootstrap user/").is_none(), "{:?}", l.calls());
}

#[test]
fn bootout_unloads_where_it_is_loaded() {
    let i = inst();
    let l = StandIn::default();
    let a = agent(&i, &l);
    assert!(!a.bootout().unwrap(), "nothing loaded, nothing to boot out");
    l.load(LABEL, "user/501", true);
    let loaded = a.loaded().unwrap().unwrap();
    assert_eq!(loaded.domain, "user/501");
    assert!(loaded.job.running());
    assert!(a.bootout().unwrap());
    assert_eq!(
        l.calls().last().unwrap(),
        &format!("bootout user/501/{LABEL}")
    );
    // Launchd still unloads it (37): a second bootout is no error.
    assert!(l.knows("user/501", LABEL));
    assert!(a.bootout().unwrap());
}

/// Issue 20, item 2: `status` sees both domains: the copy that runs, and
/// the other one named.
#[test]
fn status_sees_the_copy_in_either_domain() {
    let i = inst();
    let l = StandIn::default();
    let a = agent(&i, &l);
    assert!(status_view(&a.loaded_all().unwrap(), LABEL).is_none());
    l.load(LABEL, "gui/501", false);
    l.load(LABEL, "user/501", true);
    let u = status_view(&a.loaded_all().unwrap(), LABEL).unwrap();
    assert_eq!((u.active_state.as_str(), u.main_pid), ("active", 4242));
    assert!(u.status_text.starts_with("user/501/"), "{}", u.status_text);
    assert!(
        u.status_text
            .contains("also loaded in gui/501 (not running)"),
        "{}",
        u.status_text
    );
}
