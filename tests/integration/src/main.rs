//! nixos-nspawn's integration suite on real systemd.
//!
//! ```text
//! nixos-nspawn-integration [--bin-dir DIR] [--systemd host|debian13|debian12|both]
//!                          [--only NAME[,NAME…]]… [--keep] [--list]
//! nixos-nspawn-integration [--bin-dir DIR] [--systemd …] [--keep] demo
//! ```
//!
//! Every test boots its own throwaway systemd host (`systemd-nspawn -D ROOT
//! --volatile=yes --private-network -b`, ROOT `/` for this machine's systemd or
//! a cached Debian root made with debootstrap for another release; the whole
//! suite runs once per release) with the built generator, helpers and
//! CLI bound in, and drives real `systemd-nspawn@NAME.service` containers in
//! it whose "NixOS systems" are built with the real Nix
//! (`tests/fixtures/system.nix`). See `docs/testing.md`.
//!
//! Without `--bin-dir` the binaries are built first with
//! `cargo build --release -p nixos-nspawn-generator -p nixos-nspawn-helpers -p nixos-nspawn`.

mod cmd;
mod debian;
mod demo;
mod fixtures;
mod guard;
mod host;
mod probe;
mod scenarios;
mod scenarios_afterboot;
mod scenarios_closure;
mod scenarios_hostnet;
mod scenarios_install;
mod scenarios_parity;
mod scenarios_perf;
mod scenarios_scale;
mod scenarios_security;
mod scenarios_zones;
mod suite;
mod watch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};

use crate::host::{secs, BINARIES};

struct Args {
    bin_dir: Option<PathBuf>,
    /// The releases to run on, in order.
    systemd: Vec<String>,
    only: Vec<String>,
    keep: bool,
    list: bool,
    demo: bool,
}

const USAGE: &str = "usage: nixos-nspawn-integration [--bin-dir DIR] [--systemd RELEASES] [--only NAME[,NAME...]]... [--keep] [--list] [demo]

  --bin-dir DIR   take nixos-nspawn-generator, -bootstrap, -activate and nixos-nspawn from DIR
                  (default: build them with cargo build --release and use target/release)
  --systemd R     the systemd releases to run the suite on, comma-separated: host (this
                  machine's /usr), debian13 (trixie, systemd 257), debian12 (bookworm, 252),
                  both (= host,debian13; the default). Debian roots are made with debootstrap
                  and cached in /var/cache/nixos-nspawn-tests
  --only NAMES    run only these tests (exact names, or a prefix ending in '*')
  --keep          leave the test hosts running (prints how to enter and remove them)
  --list          list the tests and exit
  demo            the README's main job: a test host with two example containers";

fn parse_args() -> Result<Args> {
    let mut a = Args {
        bin_dir: None,
        systemd: Vec::new(),
        only: Vec::new(),
        keep: false,
        list: false,
        demo: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bin-dir" => a.bin_dir = Some(it.next().context("--bin-dir needs a value")?.into()),
            "--only" => a.only.extend(
                it.next()
                    .context("--only needs a value")?
                    .split(',')
                    .map(String::from),
            ),
            "--systemd" => a
                .systemd
                .extend(releases(&it.next().context("--systemd needs a value")?)?),
            "--keep" => a.keep = true,
            "--list" => a.list = true,
            "demo" => a.demo = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            s if s.starts_with("--bin-dir=") => a.bin_dir = Some(s["--bin-dir=".len()..].into()),
            s if s.starts_with("--systemd=") => {
                a.systemd.extend(releases(&s["--systemd=".len()..])?)
            }
            s if s.starts_with("--only=") => a
                .only
                .extend(s["--only=".len()..].split(',').map(String::from)),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if a.systemd.is_empty() {
        a.systemd = releases("both")?;
    }
    a.systemd.dedup();
    Ok(a)
}

/// `--systemd` values: a comma-separated list of releases.
fn releases(v: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for r in v.split(',') {
        match r {
            "both" => out.extend(["host".to_string(), "debian13".to_string()]),
            "host" | "debian13" | "debian12" => out.push(r.to_string()),
            other => bail!("--systemd: unknown release {other:?} (host, debian13, debian12, both)"),
        }
    }
    Ok(out)
}

/// The OS tree of a release and its systemd version.
fn resolve_os(label: &str) -> Result<suite::Os> {
    let (root, systemd_version) = debian::os_root(label)?;
    Ok(suite::Os {
        label: label.to_string(),
        root,
        systemd_version,
    })
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Build the product binaries and return cargo's release directory.
fn build_binaries() -> Result<PathBuf> {
    let root = workspace_root();
    println!("building the binaries (cargo build --release) …");
    let out = cmd::run(
        &[
            "cargo",
            "build",
            "--release",
            "--manifest-path",
            root.join("Cargo.toml").to_str().unwrap(),
            "-p",
            "nixos-nspawn-generator",
            "-p",
            "nixos-nspawn-helpers",
            "-p",
            "nixos-nspawn",
        ],
        secs(1800),
    )?;
    if !out.success() {
        bail!("{}", out.describe_failure());
    }
    let meta = cmd::run(
        &[
            "cargo",
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
            root.join("Cargo.toml").to_str().unwrap(),
        ],
        secs(120),
    )?
    .ok()?;
    let v: serde_json::Value = serde_json::from_str(&meta).context("cargo metadata output")?;
    let target = v["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    Ok(PathBuf::from(target).join("release"))
}

/// Copy the binaries into a private directory (a rebuild during the run must
/// not change what the test hosts see). Missing ones are reported, not fatal:
/// the tests that need them fail with the reason.
fn stage_binaries(from: &Path) -> Result<PathBuf> {
    let dir = tempfile::Builder::new()
        .prefix(guard::TMP_PREFIX)
        .tempdir()?
        .keep();
    guard::register_dir(&dir);
    for b in BINARIES {
        let src = from.join(b);
        match std::fs::copy(&src, dir.join(b)) {
            Ok(_) => {}
            Err(e) => println!(
                "warning: {}: {e}; tests that need it will fail",
                src.display()
            ),
        }
    }
    // The test hosts see this directory read-only at /opt/nixos-nspawn/bin.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(dir)
}

fn preflight() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("the integration suite must run as root (it boots systemd-nspawn test hosts)");
    }
    for (exe, pkg) in [
        ("systemd-nspawn", "systemd-container"),
        ("nix-build", "nix-bin"),
        ("nsenter", "util-linux"),
        ("curl", "curl"),
        ("ip", "iproute2"),
    ] {
        if cmd::run(&["sh", "-c", &format!("command -v {exe}")], secs(5))?.code != Some(0) {
            bail!("{exe} is missing (install {pkg})");
        }
    }
    if !Path::new("/bin/busybox").exists() {
        bail!("/bin/busybox is missing (install busybox-static)");
    }
    Ok(())
}

fn main() -> ExitCode {
    if let Some(out) = probe::invoked() {
        return ExitCode::from(probe::main(&out) as u8);
    }
    if std::env::args().nth(1).as_deref() == Some("--guardian") {
        return ExitCode::from(guard::guardian_main() as u8);
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(2);
        }
    };
    let tests = scenarios::all();
    if args.list {
        for t in &tests {
            println!("{:<28} {}", t.name, t.about);
        }
        return ExitCode::SUCCESS;
    }
    let selected: Vec<&suite::Test> = if args.only.is_empty() {
        tests.iter().collect()
    } else {
        let sel: Vec<&suite::Test> = tests
            .iter()
            .filter(|t| {
                args.only.iter().any(|o| match o.strip_suffix('*') {
                    Some(prefix) => t.name.starts_with(prefix),
                    None => t.name == o,
                })
            })
            .collect();
        if sel.is_empty() {
            eprintln!("no test matches {:?}; see --list", args.only);
            return ExitCode::from(2);
        }
        sel
    };
    if let Err(e) = preflight() {
        eprintln!("preflight: {e:#}");
        return ExitCode::from(2);
    }
    if let Err(e) = guard::start() {
        eprintln!("{e:#}");
        return ExitCode::from(2);
    }
    let code = run(&args, &selected);
    guard::finish();
    code
}

fn run(args: &Args, selected: &[&suite::Test]) -> ExitCode {
    let from = match &args.bin_dir {
        Some(d) => d.clone(),
        None => match build_binaries() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("building the binaries failed: {e:#}");
                println!("0 passed, {} failed", selected.len());
                return ExitCode::FAILURE;
            }
        },
    };
    let bin_dir = match stage_binaries(&from) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("staging the binaries: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let fx = match fixtures::Fixtures::new() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    if args.demo {
        let start = std::time::Instant::now();
        let result = resolve_os(&args.systemd[0]).and_then(|os| {
            let suite = suite::Suite::new(bin_dir.clone(), os, fx, args.keep);
            let r = demo::demo(&suite);
            drop(suite);
            r
        });
        release_bin_dir(&bin_dir, args.keep);
        // One verdict line, last, after the cleanup.
        let secs = start.elapsed().as_secs_f64();
        return match result {
            Ok(what) => {
                println!("demo: passed in {secs:.1} s: {what}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("demo: FAILED after {secs:.1} s: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let start = std::time::Instant::now();
    let (mut p, mut f, mut s) = (0, 0, 0);
    let mut runs: Vec<String> = Vec::new();
    let mut fx = Some(fx);
    for label in &args.systemd {
        let os = match resolve_os(label) {
            Ok(os) => os,
            Err(e) => {
                println!("FAIL the test hosts of release {label} cannot be made: {e:#}");
                f += selected.len();
                runs.push(format!(
                    "{label}: not run ({} failed): {e:#}",
                    selected.len()
                ));
                continue;
            }
        };
        println!(
            "\n##### release {label}: {} (test hosts boot {})",
            os.systemd_version,
            os.root.display()
        );
        let run_start = std::time::Instant::now();
        let suite = suite::Suite::new(
            bin_dir.clone(),
            os.clone(),
            fx.take().expect("fixtures"),
            args.keep,
        );
        let (rp, rf, rs, _) = suite.run(selected);
        fx = Some(suite.into_fixtures());
        p += rp;
        f += rf;
        s += rs;
        let mut line = format!("{label} ({}): {rp} passed, {rf} failed", os.systemd_version);
        if rs > 0 {
            line.push_str(&format!(", {rs} skipped"));
        }
        line.push_str(&format!(" in {:.1} s", run_start.elapsed().as_secs_f64()));
        runs.push(line);
    }
    println!("\nReleases:");
    for r in &runs {
        println!("  {r}");
    }
    println!("  total {:.1} s", start.elapsed().as_secs_f64());
    let mut line = format!("{p} passed, {f} failed");
    if s > 0 {
        line.push_str(&format!(", {s} skipped"));
    }
    // Tear down before the final line, so it really is the last one.
    drop(fx);
    release_bin_dir(&bin_dir, args.keep);
    guard::finish();
    println!("{line}");
    if f == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Kept hosts still bind the staged binaries: keep them too.
fn release_bin_dir(bin_dir: &Path, keep: bool) {
    if keep {
        eprintln!("  kept the staged binaries in {}", bin_dir.display());
    } else {
        guard::remove_tmp_dir(bin_dir);
    }
    guard::release_dir(bin_dir);
}
