//! `scripts/install` into a DESTDIR: every file lands in the distribution's
//! place, the generator's link finds its helpers, the apply unit names the
//! installed CLI, an upgrade leaves nothing stale, and `--uninstall` leaves
//! the tree exactly as it was (directories that were there before kept).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nixos_nspawn_core::testing::stdout_of_success;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Stand-ins for the four binaries (what is installed, not how they work).
fn fake_bins(dir: &Path) -> PathBuf {
    let bins = dir.join("bins");
    std::fs::create_dir_all(&bins).unwrap();
    for b in [
        "nixos-nspawn",
        "nixos-nspawn-generator",
        "nixos-nspawn-bootstrap",
        "nixos-nspawn-activate",
    ] {
        nixos_nspawn_core::testing::write_script(
            bins.join(b),
            format!("#!/bin/sh\necho '{b} 0.1.0'\n"),
        );
    }
    bins
}

fn install(args: &[&str]) -> Output {
    Command::new(repo().join("scripts/install"))
        .args(args)
        .env_remove("PREFIX")
        .env_remove("DESTDIR")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    stdout_of_success(&format!("scripts/install {args:?}"), install(args))
}

/// Every path under `dir` with what it is: file contents and mode, link
/// targets, directories.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, d: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().to_path_buf();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("link {}", std::fs::read_link(&p).unwrap().display()),
                );
            } else if m.is_dir() {
                out.insert(rel, "dir".into());
                walk(base, &p, out);
            } else {
                let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
                out.insert(rel, format!("{:o} {text}", m.permissions().mode() & 0o7777));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for (p, what) in snapshot(dir) {
        if what != "dir" {
            v.push(p);
        }
    }
    v
}

#[test]
fn install_puts_everything_in_place_and_uninstall_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bins = fake_bins(tmp.path());
    let dest = tmp.path().join("dest");
    // What a distribution has already: man directories with a page of someone else's.
    std::fs::create_dir_all(dest.join("usr/local/share/man/man1")).unwrap();
    std::fs::write(
        dest.join("usr/local/share/man/man1/other.1"),
        ".TH OTHER 1\n",
    )
    .unwrap();
    let before = snapshot(&dest);
    let d = dest.to_str().unwrap();
    let b = bins.to_str().unwrap();

    let out = ok(&["--destdir", d, "--bin-dir", b]);
    assert!(
        out.starts_with("Installed nixos-nspawn 0.1.0 into "),
        "{out}"
    );
    let root = dest.join("usr/local");
    for exe in [
        "bin/nixos-nspawn",
        "lib/nixos-nspawn/nixos-nspawn-generator",
        "lib/nixos-nspawn/nixos-nspawn-bootstrap",
        "lib/nixos-nspawn/nixos-nspawn-activate",
    ] {
        let m = std::fs::metadata(root.join(exe)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o755, "{exe}");
    }
    // The generator's link, where systemd looks, resolves to the binary
    // with its helpers next to it (how the generator finds them).
    let link = root.join("lib/systemd/system-generators/nixos-nspawn-generator");
    let target = link.canonicalize().unwrap();
    assert_eq!(
        target,
        root.join("lib/nixos-nspawn/nixos-nspawn-generator")
            .canonicalize()
            .unwrap()
    );
    for h in ["nixos-nspawn-bootstrap", "nixos-nspawn-activate"] {
        assert!(target.parent().unwrap().join(h).is_file());
    }
    // The apply unit runs the installed CLI.
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/nixos-nspawn-apply.service"))
        .unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/local/bin/nixos-nspawn apply\n"),
        "{unit}"
    );
    // Every file of dist/ (PREFIX/lib/…), units/, man/ and the Nix files.
    let repo = repo();
    for f in files_under(&repo.join("dist")) {
        assert!(
            std::fs::symlink_metadata(root.join("lib").join(&f)).is_ok(),
            "dist/{} is not installed",
            f.display()
        );
    }
    for f in files_under(&repo.join("man")) {
        let section = f.extension().unwrap().to_str().unwrap();
        assert!(
            root.join(format!("share/man/man{section}"))
                .join(&f)
                .is_file(),
            "man/{}",
            f.display()
        );
    }
    assert!(root
        .join("share/nixos-nspawn/nix/eval-container.nix")
        .is_file());
    assert!(root
        .join("share/nixos-nspawn/nix/modules/container.nix")
        .is_file());
    // --list names exactly what was installed.
    let listed: Vec<String> = ok(&["--list"]).lines().map(str::to_owned).collect();
    let mut installed: Vec<String> = files_under(&dest)
        .iter()
        .map(|p| format!("/{}", p.display()))
        .filter(|p| p != "/usr/local/share/man/man1/other.1")
        .collect();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    installed.sort();
    assert_eq!(listed_sorted, installed);

    // An upgrade over it: a file the old version had and this one does not goes.
    let manifest = root.join("lib/nixos-nspawn/install-manifest");
    let mut m = std::fs::read_to_string(&manifest).unwrap();
    m.push_str("f /usr/local/lib/nixos-nspawn/old-helper\n");
    std::fs::write(&manifest, m).unwrap();
    std::fs::write(root.join("lib/nixos-nspawn/old-helper"), "old").unwrap();
    ok(&["--destdir", d, "--bin-dir", b]);
    assert!(!root.join("lib/nixos-nspawn/old-helper").exists());

    let out = ok(&["--uninstall", "--destdir", d]);
    assert!(out.starts_with("Removed nixos-nspawn from "), "{out}");
    assert_eq!(
        snapshot(&dest),
        before,
        "uninstall left something behind or took too much"
    );
    // Again: nothing to uninstall, said so.
    let o = install(&["--uninstall", "--destdir", d]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to uninstall"));
}

#[test]
fn another_prefix_and_its_unit_path() {
    let tmp = tempfile::tempdir().unwrap();
    let bins = fake_bins(tmp.path());
    let dest = tmp.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let (d, b) = (dest.to_str().unwrap(), bins.to_str().unwrap());
    ok(&["--destdir", d, "--bin-dir", b, "--prefix", "/opt/nn"]);
    let unit =
        std::fs::read_to_string(dest.join("opt/nn/lib/systemd/system/nixos-nspawn-apply.service"))
            .unwrap();
    assert!(
        unit.contains("ExecStart=/opt/nn/bin/nixos-nspawn apply"),
        "{unit}"
    );
    ok(&["--uninstall", "--destdir", d, "--prefix", "/opt/nn"]);
    assert!(snapshot(&dest).is_empty());
    // A relative prefix is refused.
    assert_eq!(install(&["--prefix", "usr"]).status.code(), Some(2));
}
