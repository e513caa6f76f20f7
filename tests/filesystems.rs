//! The lock holder is found whatever filesystem the Paperclip home lives
//! on: a btrfs subvolume (Fedora's `/home`, where `/proc/locks` names the
//! superblock's device and `stat` the subvolume's), ext4 on a loop device,
//! tmpfs and overlayfs. Each is really mounted, in a private mount
//! namespace that dies with the test (its loop device is freed then).
//!
//! These tests need root (mounts, loop devices) and the filesystems'
//! tools (`mkfs.btrfs` from btrfs-progs, `mkfs.ext4`): without them they
//! fail saying so, rather than passing without having run.
#![cfg(target_os = "linux")]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use support::*;

/// A filesystem mounted on a world's home, in a mount namespace of its own
/// held by a `sleep`; commands enter it with `nsenter`.
struct Mounted {
    holder: Child,
    prefix: Vec<String>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // The namespace dies with its last process: its mounts go, and a
        // loop device mounted with `-o loop` is detached (autoclear).
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Fails, naming what is missing, when this test cannot run here.
fn require(what: &str) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "cannot run: mounting {what} needs root (run `cargo test` as root, as CI does)"
    );
    let tool = match what {
        "btrfs" => Some("mkfs.btrfs"),
        "ext4" => Some("mkfs.ext4"),
        _ => None,
    };
    if let Some(tool) = tool {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "cannot run: {tool} is missing (apt-get install btrfs-progs e2fsprogs; .ci/run installs them)"
        );
    }
    let known = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let name = if what == "overlayfs" { "overlay" } else { what };
    if !known
        .lines()
        .any(|l| l.split_whitespace().last() == Some(name))
    {
        // The module may be loadable: mounting loads it. Say so if not.
        let _ = Command::new("modprobe").arg(name).status();
    }
}

/// Mounts a fresh `what` on `mnt` (inside a new mount namespace) with its
/// images and work directories under `scratch`.
fn mount(what: &str, mnt: &Path, scratch: &Path) -> Mounted {
    require(what);
    std::fs::create_dir_all(mnt).expect("create the mount point");
    std::fs::create_dir_all(scratch).expect("create scratch");
    let script = match what {
        // A subvolume mounted by itself, as Fedora mounts /home.
        "btrfs" => {
            "truncate -s 256M \"$S/img\" && mkfs.btrfs -q \"$S/img\" >/dev/null 2>&1 \
             && mkdir -p \"$S/top\" && mount -o loop \"$S/img\" \"$S/top\" \
             && btrfs -q subvolume create \"$S/top/home\" && umount \"$S/top\" \
             && mount -o loop,subvol=home \"$S/img\" \"$M\""
        }
        "ext4" => {
            "truncate -s 64M \"$S/img\" && mkfs.ext4 -q -F \"$S/img\" \
             && mount -o loop \"$S/img\" \"$M\""
        }
        "tmpfs" => "mount -t tmpfs -o size=64m,mode=0700 tmpfs \"$M\"",
        "overlayfs" => {
            // Upper and work on a tmpfs: /tmp may itself be an overlay.
            "mkdir -p \"$S/ov\" && mount -t tmpfs tmpfs \"$S/ov\" \
             && mkdir \"$S/ov/lower\" \"$S/ov/upper\" \"$S/ov/work\" \
             && mount -t overlay overlay \
                -o lowerdir=\"$S/ov/lower\",upperdir=\"$S/ov/upper\",workdir=\"$S/ov/work\" \"$M\""
        }
        other => panic!("unknown filesystem {other}"),
    };
    let ready = scratch.join("mounted");
    let failed = scratch.join("failed");
    let holder = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(format!(
            "( {script} ) >\"$S/failed\" 2>&1 || exit 1; rm -f \"$S/failed\"; \
             touch \"$S/mounted\"; exec sleep 100000"
        ))
        .env("S", scratch)
        .env("M", mnt)
        .stdin(Stdio::null())
        .spawn()
        .expect("run unshare");
    let mut m = Mounted {
        prefix: vec![
            "nsenter".into(),
            "--target".into(),
            holder.id().to_string(),
            "--mount".into(),
            "--".into(),
        ],
        holder,
    };
    wait_until(DEADLINE, &format!("{what} to be mounted"), || {
        if let Ok(Some(st)) = m.holder.try_wait() {
            panic!(
                "cannot run: mounting {what} failed ({st}): {}",
                std::fs::read_to_string(&failed).unwrap_or_default()
            );
        }
        ready.exists()
    });
    let found = m.output(
        &["findmnt", "-n", "-o", "FSTYPE,OPTIONS", "--mountpoint"],
        &[mnt.as_os_str()],
    );
    let want = if what == "overlayfs" { "overlay" } else { what };
    assert_eq!(
        found.split_whitespace().next(),
        Some(want),
        "the home is not on {what}: {found}"
    );
    if what == "btrfs" {
        assert!(found.contains("subvol=/home"), "not the subvolume: {found}");
    }
    m
}

impl Mounted {
    fn prefix(&self) -> Vec<&str> {
        self.prefix.iter().map(String::as_str).collect()
    }

    /// A command run inside the namespace.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(&self.prefix[0]);
        c.args(&self.prefix[1..]).arg(program);
        c
    }

    fn output(&self, args: &[&str], more: &[&std::ffi::OsStr]) -> String {
        let o = self
            .command(args[0])
            .args(&args[1..])
            .args(more)
            .output()
            .expect("run in the namespace");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `paperclipd SUB --home HOME ARGS` inside the namespace, with no
    /// reachable bus: (exit code, stdout, stderr).
    fn paperclipd(&self, w: &World, sub: &str, args: &[&str]) -> (i32, String, String) {
        let mut c = self.command(bin());
        c.arg(sub).arg("--home").arg(w.home()).args(args);
        c.env_remove("PAPERCLIP_HOME")
            .env_remove("PAPERCLIP_INSTANCE_ID")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("INVOCATION_ID")
            .env("XDG_RUNTIME_DIR", w.dir.path())
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}/nobus", w.dir.path().display()),
            )
            .stdin(Stdio::null());
        let o = c.output().expect("run paperclipd");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

/// A ready `run` whose home is on `what`: `status`, a bare `probe` and a
/// second `run` all find the holder by its pid.
fn holder_is_found_on(what: &str) {
    let w = World::new();
    let scratch: PathBuf = w.dir.path().join("fs");
    let m = mount(what, &w.home(), &scratch);
    let mut run = w.spawn(w.run_cmd_via(&m.prefix(), &["--min-free", "0"], &[]), "run");
    wait_until(DEADLINE, "the run to be ready", || {
        assert!(
            run.child.try_wait().ok().flatten().is_none(),
            "run exited: {}",
            run.stderr()
        );
        run.stderr().contains("ready after")
    });
    let pid = run.pid() as i64;

    let (code, out, err) = m.paperclipd(&w, "status", &["--url", &w.url(), "--json"]);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert_eq!(
        v["lock"]["pid"].as_i64(),
        Some(pid),
        "on {what}, status --json finds no holder: {out}"
    );
    assert_eq!((code, v["state"].as_str()), (0, Some("ready")), "{out}");

    let (code, out, _) = m.paperclipd(&w, "status", &["--url", &w.url()]);
    assert!(
        out.contains(&format!("lock:   held by pid {pid} (")),
        "on {what}, status: {out}"
    );
    assert_eq!(code, 0, "{out}");

    // No --url: only the holder's record says where the server listens.
    let (code, out, err) = m.paperclipd(&w, "probe", &[]);
    assert_eq!(code, 0, "on {what}, a bare probe: {out}{err}");
    assert!(err.contains(&w.url()), "{err}");

    let mut second = w.spawn(
        w.run_cmd_via(&m.prefix(), &["--min-free", "0"], &[]),
        "second",
    );
    assert_eq!(second.code(), 75, "{}", second.stderr());
    assert!(
        second.stderr().contains(&format!("pid {pid} (")),
        "on {what}, the second run does not name the holder: {}",
        second.stderr()
    );

    signal(run.pid(), libc::SIGTERM);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    drop(m);
}

#[test]
fn holder_is_found_on_a_btrfs_subvolume() {
    holder_is_found_on("btrfs");
}

#[test]
fn holder_is_found_on_ext4() {
    holder_is_found_on("ext4");
}

#[test]
fn holder_is_found_on_tmpfs() {
    holder_is_found_on("tmpfs");
}

#[test]
fn holder_is_found_on_overlayfs() {
    holder_is_found_on("overlayfs");
}
