//! `nixos-nspawn-hardening`: crash-consistency, concurrency, generator
//! robustness and hostile-rootfs race runs against the built binaries, printing the figures and a
//! final `N passed, N failed` line (exit 1 when anything failed).
//!
//! ```text
//! nixos-nspawn-hardening [--quick] [--bin-dir DIR] [--seed N] [--kills N]
//!                        [--procs N] [--edits N] [generator|crash|concurrency|races]...
//! ```
//!
//! Defaults: 1000 kills, 16 processes x 50 edits, 1000 + 100 race rounds;
//! `--quick`: 100 kills, 16 x 10, 40 + 4. `--bin-dir` holds nixos-nspawn, nixos-nspawn-bootstrap and
//! nixos-nspawn-generator (default target/release). Needs `nix-store` (the
//! test systems are added to the store), runs everything else under a
//! throwaway root (NIXOS_NSPAWN_ROOT) with systemd made unavailable to the CLI
//! (NIXOS_NSPAWN_SYSTEMCTL= etc.); the read-only /run cases need to be root
//! (`unshare -m`), and are skipped with a note where mounting is not allowed.

mod common;
mod concurrency;
mod crash;
mod generator;
mod races;

use std::path::PathBuf;

use common::{Opts, Rng, Verdict};

const USAGE: &str = "usage: nixos-nspawn-hardening [--quick] [--bin-dir DIR] [--seed N] [--kills N] [--procs N] [--edits N] [generator|crash|concurrency|races]...";

fn main() {
    let mut args = std::env::args().skip(1);
    let mut quick = false;
    let mut bin_dir = PathBuf::from("target/release");
    let mut seed = None;
    let (mut kills, mut procs, mut edits) = (None, None, None);
    let mut only = Vec::new();
    let num = |v: Option<String>, what: &str| -> u64 {
        v.and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            eprintln!("{what} takes a number\n{USAGE}");
            std::process::exit(2)
        })
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--bin-dir" => bin_dir = PathBuf::from(args.next().unwrap_or_default()),
            "--seed" => seed = Some(num(args.next(), "--seed")),
            "--kills" => kills = Some(num(args.next(), "--kills") as usize),
            "--procs" => procs = Some(num(args.next(), "--procs") as usize),
            "--edits" => edits = Some(num(args.next(), "--edits") as usize),
            "generator" | "crash" | "concurrency" | "races" => only.push(a),
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => {
                eprintln!("unknown argument {other:?}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let opts = Opts {
        quick,
        bin_dir: std::fs::canonicalize(&bin_dir).unwrap_or(bin_dir),
        seed,
        kills: kills.unwrap_or(if quick { 100 } else { 1000 }),
        procs: procs.unwrap_or(16),
        edits: edits.unwrap_or(if quick { 10 } else { 50 }),
    };
    let wanted = |c: &str| only.is_empty() || only.iter().any(|o| o == c);
    for exe in [
        "nixos-nspawn",
        "nixos-nspawn-bootstrap",
        "nixos-nspawn-generator",
    ] {
        if !opts.bin_dir.join(exe).is_file() {
            eprintln!(
                "{} is missing: cargo build --release -p nixos-nspawn -p nixos-nspawn-helpers -p nixos-nspawn-generator",
                opts.bin_dir.join(exe).display()
            );
            std::process::exit(2);
        }
    }
    println!(
        "nixos-nspawn hardening ({}), binaries from {}, seed {}",
        if opts.quick { "quick" } else { "full" },
        opts.bin_dir.display(),
        opts.seed
    );
    let mut verdicts: Vec<Verdict> = Vec::new();
    if wanted("generator") {
        verdicts.push(generator::run_all(&opts));
    }
    if wanted("crash") || wanted("concurrency") || wanted("races") {
        let systems = match common::store_systems(3) {
            Ok(s) => s,
            Err(e) => {
                let mut v = Verdict::new("test systems");
                v.fail(e);
                verdicts.push(v);
                Vec::new()
            }
        };
        if !systems.is_empty() {
            if wanted("crash") {
                let mut rng = Rng::new(opts.seed);
                verdicts.push(crash::run(&opts, &mut rng, &systems));
            }
            if wanted("concurrency") {
                verdicts.push(concurrency::run(&opts, &systems));
            }
            if wanted("races") {
                verdicts.push(races::run(&opts, &systems));
            }
        }
    }
    let failed = verdicts.iter().filter(|v| !v.failures.is_empty()).count();
    for v in &verdicts {
        println!(
            "{}: {}",
            v.name,
            if v.failures.is_empty() {
                "passed".to_owned()
            } else {
                format!("FAILED ({} problems)", v.failures.len())
            }
        );
    }
    println!("{} passed, {} failed", verdicts.len() - failed, failed);
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
