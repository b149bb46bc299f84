//! Hostile rootfs with races: while the bootstrap helper prepares a
//! container's tree, or `remove --delete-state` deletes it, a "container root"
//! thread keeps swapping what is there — a directory for a symlink to a host
//! directory (atomically, `renameat2(RENAME_EXCHANGE)`), a file for a symlink,
//! a hard link or a FIFO to host files — so the checks and the uses see
//! different things. Host files next to the tree (the "host", reachable through
//! every link the racer plants) must not change at all: not their content,
//! mode, owner, link targets, or the set of names.

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use rustix::fs::{renameat_with, RenameFlags, CWD};

use crate::common::{error_line, Opts, Verdict};

/// Everything about a host tree that must not change.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    if let Ok(m) = std::fs::symlink_metadata(dir) {
        out.insert(
            dir.to_path_buf(),
            format!("top mode {:o} owner {}:{}", m.mode(), m.uid(), m.gid()),
        );
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in read.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let kind = if m.file_type().is_symlink() {
                format!(
                    "link -> {}",
                    std::fs::read_link(&p).unwrap_or_default().display()
                )
            } else if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if m.is_file() {
                format!("file {:?}", std::fs::read(&p).unwrap_or_default())
            } else {
                "other".to_string()
            };
            out.insert(
                p,
                format!("{kind} mode {:o} owner {}:{}", m.mode(), m.uid(), m.gid()),
            );
        }
    }
    out
}

/// A host directory with files a hostile container would like to reach.
/// Its `etc` has no `os-release` or `machine-id`, so a bootstrap that followed
/// a swapped-in link would create them there (and be caught); the files the
/// racer links to are in `files/`.
fn make_host(dir: &Path) {
    std::fs::create_dir_all(dir.join("etc/nested")).unwrap();
    std::fs::create_dir_all(dir.join("files")).unwrap();
    for (f, c) in [
        ("files/os-release", "HOST os-release\n"),
        ("files/machine-id", "0123456789abcdef0123456789abcdef\n"),
        ("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
        ("etc/nested/secret", "host secret\n"),
        ("keep", "keep\n"),
    ] {
        std::fs::write(dir.join(f), c).unwrap();
    }
}

fn exchange(a: &Path, b: &Path) -> bool {
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).is_ok()
}

pub fn run(opts: &Opts, systems: &[String]) -> Verdict {
    let mut v = Verdict::new("hostile rootfs races");
    let Some(env) = v.env(opts, systems) else {
        return v;
    };
    let rounds = if opts.quick { 40 } else { 1000 };
    let host = env.dir.path().join("host");
    make_host(&host);
    let before = snapshot(&host);
    let machines = env.root().machines_dir();
    let tree = machines.join("r");

    // --- bootstrap against a racer
    let o = env.cli(&["create", "r", "--system", &systems[0], "--no-start"]);
    v.check(o.status.success(), || {
        format!("create r: {}", error_line(&o))
    });
    let stop = AtomicBool::new(false);
    let swaps = AtomicUsize::new(0);
    let (mut ok, mut refused) = (0, 0);
    let t = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let _ = std::fs::create_dir_all(&tree);
                let etc = tree.join("etc");
                let evil_dir = tree.join(".evil-etc");
                let _ = std::fs::remove_file(&evil_dir);
                let _ = symlink(host.join("etc"), &evil_dir);
                // etc <-> link to the host's etc, and back.
                if exchange(&etc, &evil_dir) {
                    swaps.fetch_add(1, Ordering::Relaxed);
                    std::thread::yield_now();
                    exchange(&etc, &evil_dir);
                }
                // Files the bootstrap creates: missing, a link, a hard link
                // or a FIFO to the host's.
                for f in ["os-release", "machine-id"] {
                    let p = etc.join(f);
                    let _ = std::fs::remove_file(&p);
                    let _ = match i % 4 {
                        0 => symlink(host.join("files").join(f), &p),
                        1 => std::fs::hard_link(host.join("files").join(f), &p),
                        2 => rustix::fs::mknodat(
                            CWD,
                            &p,
                            rustix::fs::FileType::Fifo,
                            rustix::fs::Mode::from_raw_mode(0o644),
                            0,
                        )
                        .map_err(std::io::Error::from),
                        _ => Ok(()),
                    };
                }
                // The skeleton's other directories.
                for d in ["var", "usr"] {
                    let p = tree.join(d);
                    let l = tree.join(format!(".evil-{d}"));
                    let _ = std::fs::remove_file(&l);
                    let _ = symlink(&host, &l);
                    if exchange(&p, &l) {
                        swaps.fetch_add(1, Ordering::Relaxed);
                        exchange(&p, &l);
                    }
                }
            }
        });
        for _ in 0..rounds {
            let o = env
                .command("nixos-nspawn-bootstrap")
                .arg("r")
                .output()
                .unwrap();
            if o.status.success() {
                ok += 1;
            } else {
                refused += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let after = snapshot(&host);
    v.check(before == after, || diff("bootstrap", &before, &after));
    println!(
        "races: bootstrap {rounds} times against a racer ({} swaps) in {:.1}s: {ok} succeeded, {refused} refused; host files changed: {}",
        swaps.load(Ordering::Relaxed),
        t.elapsed().as_secs_f64(),
        if before == after { 0 } else { count_diff(&before, &after) }
    );

    // --- remove --delete-state against a racer
    let (mut removed, mut incomplete) = (0, 0);
    let swaps = AtomicUsize::new(0);
    let t = Instant::now();
    let del_rounds = rounds / 10;
    for round in 0..del_rounds {
        let o = env.cli(&["create", "r", "--system", &systems[0], "--no-start"]);
        if !o.status.success() && !error_line(&o).contains("already exists") {
            v.fail(format!("round {round}: create r: {}", error_line(&o)));
            continue;
        }
        // A tree worth deleting: nested directories with files, links to the
        // host, a hard link to a host file.
        for i in 0..20 {
            let d = tree.join(format!("d{i}/sub/deeper"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("f"), "container data").unwrap();
            let _ = symlink(&host, tree.join(format!("d{i}/hostlink")));
        }
        let _ = std::fs::hard_link(host.join("keep"), tree.join("hardlink-to-host"));
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    i = (i + 1) % 20;
                    let d = tree.join(format!("d{i}/sub"));
                    let l = tree.join(format!("d{i}/.evil"));
                    let _ = std::fs::remove_file(&l);
                    let _ = symlink(&host, &l);
                    if exchange(&d, &l) {
                        swaps.fetch_add(1, Ordering::Relaxed);
                        std::thread::yield_now();
                        exchange(&d, &l);
                    }
                }
            });
            let o = env.cli(&["remove", "r", "--delete-state"]);
            stop.store(true, Ordering::Relaxed);
            if o.status.success() && !crate::common::exists(&tree) {
                removed += 1;
            } else {
                incomplete += 1;
                if incomplete == 1 {
                    println!(
                        "  e.g. remove --delete-state under the racer: {}: {}",
                        o.status,
                        String::from_utf8_lossy(&o.stderr)
                            .lines()
                            .filter(|l| l.starts_with("error"))
                            .collect::<Vec<_>>()
                            .join(" / ")
                            .chars()
                            .take(400)
                            .collect::<String>()
                    );
                }
            }
        });
        // Whatever is left of the tree goes the plain way before the next
        // round (nothing races now); the host must be intact first.
        let after = snapshot(&host);
        if before != after {
            v.fail(diff(
                &format!("remove --delete-state round {round}"),
                &before,
                &after,
            ));
            break;
        }
        let _ = env.cli(&["remove", "r"]);
        let _ = std::fs::remove_dir_all(&tree);
    }
    let after = snapshot(&host);
    println!(
        "  remove --delete-state {del_rounds} times against a racer ({} swaps) in {:.1}s: {removed} deleted completely, {incomplete} refused or partial; host files changed: {}",
        swaps.load(Ordering::Relaxed),
        t.elapsed().as_secs_f64(),
        if before == after { 0 } else { count_diff(&before, &after) }
    );
    v.check(before == after, || {
        diff("after all rounds", &before, &after)
    });
    v
}

fn count_diff(a: &BTreeMap<PathBuf, String>, b: &BTreeMap<PathBuf, String>) -> usize {
    a.keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .count()
}

fn diff(what: &str, a: &BTreeMap<PathBuf, String>, b: &BTreeMap<PathBuf, String>) -> String {
    let mut lines = Vec::new();
    for k in a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        if a.get(k) != b.get(k) {
            lines.push(format!("{}: {:?} -> {:?}", k.display(), a.get(k), b.get(k)));
        }
    }
    format!("{what}: host files changed:\n{}", lines.join("\n"))
}
