//! The manual pages in `man/` (installed by every route): they describe
//! every command and flag the binaries have, carry the workspace's version,
//! and format without a warning.

use std::path::{Path, PathBuf};
use std::process::Command;

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../man")
}

/// A page's text with roff's `\-` as `-`.
fn page(name: &str) -> String {
    std::fs::read_to_string(man_dir().join(name))
        .unwrap_or_else(|e| panic!("man/{name}: {e}"))
        .replace("\\-", "-")
}

fn help(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_nixos-nspawn"))
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{args:?}");
    String::from_utf8(o.stdout).unwrap()
}

/// The lines of a `--help` section (`Commands:`, `Options:`) up to the next one.
fn section<'a>(text: &'a str, title: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| l.trim() != title)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect()
}

#[test]
fn the_cli_page_has_every_command_and_flag() {
    let man = page("nixos-nspawn.1");
    let top = help(&["--help"]);
    let commands: Vec<&str> = section(&top, "Commands:")
        .iter()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(commands.len() >= 11, "{commands:?}");
    let mut missing = Vec::new();
    for c in &commands {
        if !man.contains(&format!("\n.B {c}")) && !man.contains(&format!("\"{c} ")) {
            missing.push(c.to_string());
        }
        for line in section(&help(&[c, "--help"]), "Options:") {
            for flag in line
                .split_whitespace()
                .take(2)
                .map(|w| w.trim_end_matches([',', ')']))
                .filter(|w| w.starts_with("--"))
            {
                if flag != "--help" && !man.contains(flag) {
                    missing.push(format!("{c} {flag}"));
                }
            }
        }
    }
    for global in ["--verbose", "--version", "--help"] {
        if !man.contains(global) {
            missing.push(global.into());
        }
    }
    assert!(missing.is_empty(), "not in man/nixos-nspawn.1: {missing:?}");
}

#[test]
fn the_generator_and_helper_pages_have_their_options() {
    for (page_name, options) in [
        (
            "nixos-nspawn-generator.8",
            &["--clean", "--help", "--version"][..],
        ),
        ("nixos-nspawn-bootstrap.8", &["--help", "--version"]),
        ("nixos-nspawn-activate.8", &["--help", "--version"]),
    ] {
        let man = page(page_name);
        for o in options {
            assert!(man.contains(o), "man/{page_name} lacks {o}");
        }
    }
}

#[test]
fn every_page_carries_the_version_and_formats_cleanly() {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(man_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    assert_eq!(pages.len(), 4, "{pages:?}");
    for p in &pages {
        let text = std::fs::read_to_string(p).unwrap();
        let th = text.lines().find(|l| l.starts_with(".TH ")).unwrap_or("");
        assert!(
            th.contains(&format!("\"nixos-nspawn {}\"", env!("CARGO_PKG_VERSION"))),
            "{}: {th}",
            p.display()
        );
        // groff is part of every Debian system (groff-base); scripts/setup installs it.
        let o = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(p)
            .output()
            .expect("groff (groff-base) is needed to check the manual pages");
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
