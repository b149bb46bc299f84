//! Hostile registry directories at the library level: every bad file is one
//! clear error naming it, loading never blocks or panics, and the good
//! entries are still loaded. (The generator binary on the same tree, plus a
//! read-only /run, is `tests/hardening`'s `generator` check.)

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use nixos_nspawn_core::registry::{self, Registry};
use nixos_nspawn_core::testing::mkfifo;
use nixos_nspawn_core::Root;

fn good(name: &str) -> String {
    format!(
        r#"{{"version": 1, "name": "{name}", "system": "/nix/store/0000-nixos-system-{name}"}}"#
    )
}

/// `registry::load` on another thread; a hang fails the test instead of
/// hanging it.
fn load_within(root: &Path, secs: u64) -> Registry {
    let (tx, rx) = mpsc::channel();
    let root = Root::new(root);
    std::thread::spawn(move || {
        let _ = tx.send(registry::load(&root));
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("registry::load blocked (a FIFO opened without O_NONBLOCK?)")
}

/// One bad file next to two good ones: `expect` is in its only error.
fn one_bad(name: &str, make: impl FnOnce(&Path), expect: &str) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("etc/nixos-nspawn/containers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("good1.json"), good("good1")).unwrap();
    std::fs::write(dir.join("good2.json"), good("good2")).unwrap();
    make(&dir.join(name));
    let reg = load_within(d.path(), 20);
    let names: Vec<_> = reg.containers.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["good1", "good2"], "{name}: {:?}", reg.errors);
    assert_eq!(reg.errors.len(), 1, "{name}: {:?}", reg.errors);
    let msg = reg.errors[0].to_string();
    let file = format!("/etc/nixos-nspawn/containers/{name}");
    assert!(msg.starts_with(&file), "{name}: {msg}");
    assert!(msg.contains(expect), "{name}: expected {expect:?} in {msg}");
    assert!(msg.len() < 400 && !msg.contains('\n'), "{name}: {msg}");
}

#[test]
fn empty_file() {
    one_bad("empty.json", |p| std::fs::write(p, "").unwrap(), "is empty");
    one_bad(
        "blank.json",
        |p| std::fs::write(p, " \n\t\n").unwrap(),
        "is empty",
    );
}

#[test]
fn huge_file() {
    one_bad(
        "huge.json",
        |p| {
            let mut s = good("huge");
            s.push_str(&" ".repeat(10 << 20));
            std::fs::write(p, s).unwrap()
        },
        "registry files have at most 1048576",
    );
}

#[test]
fn deeply_nested_json() {
    // serde_json stops at a recursion depth of 128: a clean error, no stack
    // overflow, however deep the input.
    one_bad(
        "nested.json",
        |p| std::fs::write(p, "[".repeat(100_000)).unwrap(),
        "recursion limit exceeded",
    );
    one_bad(
        "nested2.json",
        |p| {
            let deep = format!("{}1{}", "[".repeat(126), "]".repeat(126));
            std::fs::write(
                p,
                format!(
                    r#"{{"version": 1, "name": "nested2", "system": "/nix/store/x", "x": {deep}}}"#
                ),
            )
            .unwrap()
        },
        "x: unknown field",
    );
    one_bad(
        "nested3.json",
        |p| std::fs::write(p, "{\"a\":".repeat(100_000)).unwrap(),
        "recursion limit exceeded",
    );
}

#[test]
fn not_utf8() {
    one_bad(
        "latin1.json",
        |p| std::fs::write(p, b"{\"version\": 1, \"name\": \"caf\xe9\"}").unwrap(),
        "is not valid UTF-8 (at byte 27)",
    );
}

#[test]
fn wrong_version() {
    one_bad(
        "v2.json",
        |p| std::fs::write(p, r#"{"version": 2, "name": "v2", "future": true}"#).unwrap(),
        "version: 2 is not a supported schema version",
    );
    one_bad(
        "nov.json",
        |p| std::fs::write(p, r#"{"name": "nov"}"#).unwrap(),
        "version: is required",
    );
}

#[test]
fn not_a_regular_file() {
    one_bad(
        "dir.json",
        |p| std::fs::create_dir(p).unwrap(),
        "is not a regular file",
    );
    // A FIFO must not block the generator at boot.
    one_bad("fifo.json", mkfifo, "is not a regular file");
    // Declarative entries are links into the store, so links are followed:
    // to a FIFO, to a device, dangling, in a loop.
    one_bad(
        "fifolink.json",
        |p| {
            let fifo = p.with_file_name(".fifo");
            mkfifo(&fifo);
            symlink(&fifo, p).unwrap()
        },
        "is not a regular file",
    );
    one_bad(
        "zero.json",
        |p| symlink("/dev/zero", p).unwrap(),
        "is not a regular file",
    );
    one_bad(
        "dangling.json",
        |p| symlink("/nonexistent/x.json", p).unwrap(),
        "cannot be read",
    );
    one_bad(
        "loop.json",
        |p| symlink(p.file_name().unwrap(), p).unwrap(),
        "cannot be read",
    );
}

#[test]
fn unreadable_file() {
    // Root reads any mode; a file only root may not read needs a non-root
    // loader, so this checks the message where the test runs unprivileged.
    if rustix::process::geteuid().is_root() {
        eprintln!("running as root: mode 000 does not stop root; covered by the dangling link");
        return;
    }
    one_bad(
        "secret.json",
        |p| {
            std::fs::write(p, good("secret")).unwrap();
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o000))
                .unwrap()
        },
        "cannot be read: Permission denied",
    );
}

#[test]
fn missing_and_unlistable_directories() {
    let d = tempfile::tempdir().unwrap();
    let reg = load_within(d.path(), 20);
    assert!(
        reg.containers.is_empty() && reg.errors.is_empty(),
        "{:?}",
        reg.errors
    );
    // The registry directory is a file: one error, zones still loaded.
    std::fs::create_dir_all(d.path().join("etc/nixos-nspawn/zones")).unwrap();
    std::fs::write(
        d.path().join("etc/nixos-nspawn/zones/lan.json"),
        r#"{"version": 1, "name": "lan"}"#,
    )
    .unwrap();
    std::fs::write(d.path().join("etc/nixos-nspawn/containers"), "").unwrap();
    let reg = load_within(d.path(), 20);
    assert_eq!(reg.zones.len(), 1);
    assert_eq!(reg.errors.len(), 1, "{:?}", reg.errors);
    assert!(
        reg.errors[0].to_string().contains("cannot be listed"),
        "{}",
        reg.errors[0]
    );
}
