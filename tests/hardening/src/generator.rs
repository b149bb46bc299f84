//! Generator robustness: the real binary on hostile registry trees. Every
//! case must exit 0 within the time limit (a FIFO must not block it), log one
//! clear line per bad file naming it, and still render the good containers.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Opts, Verdict};

const LIMIT: Duration = Duration::from_secs(30);

fn good(name: &str, extra: &str) -> String {
    format!(
        r#"{{"version": 1, "name": "{name}", "system": "/nix/store/0000-nixos-system-{name}"{extra}}}"#
    )
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(st.success());
}

struct Run {
    code: Option<i32>,
    stderr: String,
    secs: f64,
}

/// Run `argv` (the generator, possibly wrapped) with a deadline.
fn run(argv: &[String], root: &Path, env: &[(&str, &str)]) -> Run {
    let t = Instant::now();
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .env("NIXOS_NSPAWN_ROOT", root)
        .env("NIXOS_NSPAWN_LOG", "stderr")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("spawning the generator");
    let code = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st.code(),
            Ok(None) if t.elapsed() < LIMIT => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                break None;
            }
        }
    };
    let out = child.wait_with_output().unwrap();
    Run {
        code,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        secs: t.elapsed().as_secs_f64(),
    }
}

/// The hostile tree: two good containers (one in a zone) next to every kind
/// of bad file. Returns the bad files' names.
fn hostile_tree(root: &Path) -> Vec<&'static str> {
    let dir = root.join("etc/nixos-nspawn/containers");
    let zones = root.join("etc/nixos-nspawn/zones");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&zones).unwrap();
    std::fs::write(dir.join("good1.json"), good("good1", "")).unwrap();
    std::fs::write(
        dir.join("good2.json"),
        good("good2", r#", "network": {"mode": "zone", "zone": "lan"}"#),
    )
    .unwrap();
    std::fs::write(zones.join("lan.json"), r#"{"version": 1, "name": "lan"}"#).unwrap();
    std::fs::write(zones.join("badzone.json"), "{\"version\": 1, \"name\": ").unwrap();
    std::fs::write(dir.join("empty.json"), "").unwrap();
    let mut huge = good("huge", "");
    huge.push_str(&" ".repeat(10 << 20));
    std::fs::write(dir.join("huge.json"), huge).unwrap();
    std::fs::write(dir.join("nested.json"), "[".repeat(100_000)).unwrap();
    std::fs::write(
        dir.join("latin1.json"),
        b"{\"version\": 1, \"name\": \"caf\xe9\"}",
    )
    .unwrap();
    std::fs::write(
        dir.join("v2.json"),
        r#"{"version": 2, "name": "v2", "system": "/nix/store/x"}"#,
    )
    .unwrap();
    std::fs::create_dir(dir.join("dir.json")).unwrap();
    mkfifo(&dir.join("fifo.json"));
    mkfifo(&dir.join(".fifo-target"));
    symlink(dir.join(".fifo-target"), dir.join("fifolink.json")).unwrap();
    symlink("/dev/zero", dir.join("zero.json")).unwrap();
    symlink("/nonexistent/x.json", dir.join("dangling.json")).unwrap();
    symlink("loop.json", dir.join("loop.json")).unwrap();
    std::fs::write(
        dir.join("inject.json"),
        good(
            "inject",
            r#", "extraService": {"Unit": {"Description": "x\n[Service]\nExecStartPre=/bin/sh"}}"#,
        ),
    )
    .unwrap();
    vec![
        "zones/badzone.json",
        "containers/empty.json",
        "containers/huge.json",
        "containers/nested.json",
        "containers/latin1.json",
        "containers/v2.json",
        "containers/dir.json",
        "containers/fifo.json",
        "containers/fifolink.json",
        "containers/zero.json",
        "containers/dangling.json",
        "containers/loop.json",
        "containers/inject.json",
    ]
}

fn rendered(out: &Path, root: &Path, name: &str) -> bool {
    out.join(format!(
        "systemd-nspawn@{name}.service.d/50-nixos-nspawn.conf"
    ))
    .is_file()
        && root
            .join(format!("run/systemd/nspawn/{name}.nspawn"))
            .is_file()
}

/// An exit status for people: the number, or "killed" (no status).
fn exit_word(code: Option<i32>) -> String {
    code.map_or_else(|| "killed".to_owned(), |c| c.to_string())
}

fn report(
    v: &mut Verdict,
    case: &str,
    r: &Run,
    expect_lines: &[&str],
    good: &[(&PathBuf, &Path, &str)],
) {
    let ok_exit = r.code == Some(0);
    v.check(ok_exit, || {
        format!(
            "{case}: exit {} after {:.1}s{}: {}",
            exit_word(r.code),
            r.secs,
            if r.code.is_none() {
                " (killed at the time limit: it blocked)"
            } else {
                ""
            },
            r.stderr.trim()
        )
    });
    let mut missing = Vec::new();
    for want in expect_lines {
        let lines: Vec<&str> = r.stderr.lines().filter(|l| l.contains(want)).collect();
        if lines.is_empty() {
            missing.push(*want);
        }
        for l in lines {
            v.check(l.len() < 1000 && !l.chars().any(|c| c.is_control()), || {
                format!("{case}: unclear log line: {l:?}")
            });
        }
    }
    v.check(missing.is_empty(), || {
        format!(
            "{case}: no log line for {missing:?}; stderr was:\n{}",
            r.stderr
        )
    });
    let mut not_rendered = Vec::new();
    for (out, root, name) in good {
        if !rendered(out, root, name) {
            not_rendered.push(*name);
        }
    }
    v.check(not_rendered.is_empty(), || {
        format!("{case}: good containers not rendered: {not_rendered:?}")
    });
    println!(
        "  {case}: exit {} in {:.2}s, {} log lines, {} expected problems logged, good containers rendered: {}",
        exit_word(r.code),
        r.secs,
        r.stderr.lines().count(),
        expect_lines.len() - missing.len(),
        not_rendered.is_empty()
    );
}

pub fn run_all(opts: &Opts) -> Verdict {
    let mut v = Verdict::new("generator robustness");
    let gen = opts.bin_dir.join("nixos-nspawn-generator");
    if !gen.is_file() {
        v.fail(format!(
            "{} is missing (cargo build --release -p nixos-nspawn-generator)",
            gen.display()
        ));
        return v;
    }
    let gen_s = gen.display().to_string();
    println!("generator: {}", gen.display());
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let out = d.path().join("out");
    let bad = hostile_tree(&root);
    let expect: Vec<String> = bad
        .iter()
        .map(|b| format!("/etc/nixos-nspawn/{b}"))
        .collect();
    let expect: Vec<&str> = expect.iter().map(String::as_str).collect();
    let good_ones = [
        (&out, root.as_path(), "good1"),
        (&out, root.as_path(), "good2"),
    ];

    // 1. Everything hostile at once.
    let r = run(&[gen_s.clone(), out.display().to_string()], &root, &[]);
    report(&mut v, "hostile registry", &r, &expect, &good_ones);
    v.check(
        root.join("run/systemd/network/20-nixos-nspawn-vz-lan.network")
            .is_file(),
        || "hostile registry: the zone of good2 was not rendered".into(),
    );
    v.check(
        !out.join("systemd-nspawn@inject.service.d").exists(),
        || "hostile registry: the entry with a line break in a value was rendered".into(),
    );

    // 2. Read-only /run (a read-only bind mount over the root's run/, in a
    //    private mount namespace): the drop-ins are still written.
    let out2 = d.path().join("out2");
    let script =
        "mount --bind \"$1/run\" \"$1/run\" && mount -o remount,bind,ro \"$1/run\" && exec \"$2\" \"$3\""
            .to_string();
    let argv = vec![
        "unshare".to_string(),
        "-m".into(),
        "--propagation".into(),
        "private".into(),
        "sh".into(),
        "-c".into(),
        script,
        "sh".into(),
        root.display().to_string(),
        gen_s.clone(),
        out2.display().to_string(),
    ];
    // Make /run hold something stale to prune, too.
    std::fs::remove_file(root.join("etc/nixos-nspawn/containers/good1.json")).unwrap();
    let r = run(&argv, &root, &[]);
    if r.stderr.contains("Operation not permitted") && r.stderr.contains("mount") {
        println!("  read-only /run: skipped (no permission to mount here)");
    } else {
        let mut e = expect.clone();
        e.push("could be written");
        report(
            &mut v,
            "read-only /run",
            &r,
            &e,
            &[(&out2, root.as_path(), "good2")],
        );
        v.check(
            out2.join("systemd-nspawn@good2.service.d/50-nixos-nspawn.conf")
                .is_file(),
            || "read-only /run: drop-in of good2 missing".into(),
        );
    }
    std::fs::write(
        root.join("etc/nixos-nspawn/containers/good1.json"),
        good("good1", ""),
    )
    .unwrap();

    // 3. A read-only /run that is an empty tmpfs (nothing there yet, as at boot).
    let out3 = d.path().join("out3");
    let argv = vec![
        "unshare".to_string(),
        "-m".into(),
        "sh".into(),
        "-c".into(),
        "mount -t tmpfs -o ro tmpfs \"$1/run\" && exec \"$2\" \"$3\"".into(),
        "sh".into(),
        root.display().to_string(),
        gen_s.clone(),
        out3.display().to_string(),
    ];
    let r = run(&argv, &root, &[]);
    if !(r.stderr.contains("Operation not permitted") && r.stderr.contains("mount")) {
        let mut e = expect.clone();
        e.push("could be written");
        report(&mut v, "read-only empty /run (tmpfs)", &r, &e, &[]);
        for n in ["good1", "good2"] {
            v.check(
                out3.join(format!("systemd-nspawn@{n}.service.d/50-nixos-nspawn.conf"))
                    .is_file(),
                || format!("read-only empty /run: drop-in of {n} missing"),
            );
        }
    }

    // 4. No registry directory at all.
    let empty_root = d.path().join("empty-root");
    std::fs::create_dir_all(&empty_root).unwrap();
    // 5. The registry directory is a file.
    let file_root = d.path().join("file-root");
    std::fs::create_dir_all(file_root.join("etc/nixos-nspawn")).unwrap();
    std::fs::write(file_root.join("etc/nixos-nspawn/containers"), "").unwrap();
    for (what, root, out, expected) in [
        (
            "missing registry directory",
            &empty_root,
            "out4",
            "0 container(s) rendered",
        ),
        (
            "registry directory is a file",
            &file_root,
            "out5",
            "/etc/nixos-nspawn/containers: cannot be listed",
        ),
    ] {
        let out = d.path().join(out).display().to_string();
        let r = run(&[gen_s.clone(), out], root, &[]);
        report(&mut v, what, &r, &[expected], &[]);
    }

    // 6. Permission denied: an unreadable entry, the generator running as
    //    nobody (root reads every file regardless of its mode).
    let perm_root = d.path().join("perm-root");
    let dir = perm_root.join("etc/nixos-nspawn/containers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(perm_root.join("run")).unwrap();
    std::fs::write(dir.join("good1.json"), good("good1", "")).unwrap();
    std::fs::write(dir.join("secret.json"), good("secret", "")).unwrap();
    let out6 = d.path().join("out6");
    std::fs::create_dir_all(&out6).unwrap();
    chmod(&dir.join("secret.json"), 0o000);
    for p in [d.path(), &perm_root, &out6, &perm_root.join("run")] {
        chmod(p, 0o777);
    }
    let argv = vec![
        "setpriv".to_string(),
        "--reuid=65534".into(),
        "--regid=65534".into(),
        "--clear-groups".into(),
        gen_s,
        out6.display().to_string(),
    ];
    let r = run(&argv, &perm_root, &[]);
    if r.stderr.contains("setpriv:") {
        println!("  permission denied: skipped ({})", r.stderr.trim());
    } else {
        report(
            &mut v,
            "unreadable entry (generator as nobody)",
            &r,
            &["/etc/nixos-nspawn/containers/secret.json: cannot be read: Permission denied"],
            &[(&out6, perm_root.as_path(), "good1")],
        );
    }
    v
}

fn chmod(p: &Path, mode: u32) {
    let mut perm = std::fs::metadata(p).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, mode);
    std::fs::set_permissions(p, perm).unwrap();
}
