//! Benchmark of the two helpers as whole processes, side by side with
//! `/bin/true` (the floor: exec + dynamic loading + exit) in one run:
//!
//! - `nixos-nspawn-bootstrap web` on an existing rootfs (the normal case at
//!   every container start: everything is already in place, nothing changes),
//! - `nixos-nspawn-activate web` failing fast (the container is not running),
//!
//! both against a temporary `NIXOS_NSPAWN_ROOT`. Runs are interleaved (true,
//! bootstrap, activate, true, …) so that drift affects all three alike; the
//! figure is the median wall time. Also prints the size of both binaries.
//! Prints PASS/FAIL against the targets (≤ 3× `/bin/true`, ≤ 1 MiB); asserts
//! nothing.
//!
//! ```text
//! cargo build --release -p nixos-nspawn-helpers -p nixos-nspawn-bench
//! target/release/bench-helpers [--runs 1000] [--dir /dev/shm] [--bin-dir target/release]
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nixos_nspawn_bench::{number, parse_args};
use nixos_nspawn_core::{paths, Entry, Root};

const TARGET_RATIO: f64 = 3.0;
const TARGET_BYTES: u64 = 1 << 20;
const SYSTEM: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-web";

struct Options {
    runs: usize,
    dir: Option<PathBuf>,
    bin_dir: PathBuf,
}

fn parse_options() -> Result<Options> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut o = Options {
        runs: 1000,
        dir: None,
        bin_dir: exe.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    parse_args(
        "usage: bench-helpers [--runs 1000] [--dir DIR] [--bin-dir DIR]",
        |a, value| {
            match a {
                "--runs" => o.runs = number(a, value()?)?,
                "--dir" => o.dir = Some(value()?.into()),
                "--bin-dir" => o.bin_dir = value()?.into(),
                _ => return Ok(false),
            }
            Ok(true)
        },
    )?;
    if o.runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(o)
}

fn tmp_base(o: &Options) -> PathBuf {
    if let Some(d) = &o.dir {
        return d.clone();
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && tempfile::tempdir_in(shm).is_ok() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// One container `web` with a fake system (its `init` under the root).
fn make_root(dir: &Path) -> Result<Root> {
    let root = Root::new(dir);
    let entry = Entry::new("web", SYSTEM);
    let file = root.join(paths::registry_file("web"));
    std::fs::create_dir_all(file.parent().unwrap())?;
    std::fs::write(&file, entry.to_json())?;
    let system = root.join(SYSTEM);
    std::fs::create_dir_all(&system)?;
    std::fs::write(system.join("init"), "#!/bin/sh\n")?;
    // machined's state directory, without a file for web: not running.
    std::fs::create_dir_all(root.join("/run/systemd/machines"))?;
    Ok(root)
}

/// One run of `argv` with the root in the environment; its wall time and
/// exit code.
fn time_one(argv: &[&Path], arg: Option<&str>, root: &Root) -> Result<(Duration, i32)> {
    let mut cmd = Command::new(argv[0]);
    cmd.args(arg)
        .env(paths::ROOT_ENV, root.path())
        .env("NIXOS_NSPAWN_LOG", "stderr")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let start = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("running {}", argv[0].display()))?;
    Ok((start.elapsed(), status.code().unwrap_or(-1)))
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> Result<()> {
    let o = parse_options()?;
    let bootstrap = o.bin_dir.join("nixos-nspawn-bootstrap");
    let activate = o.bin_dir.join("nixos-nspawn-activate");
    let floor = Path::new("/bin/true");
    for exe in [&bootstrap, &activate] {
        if !exe.is_file() {
            bail!(
                "{} not found: cargo build --release -p nixos-nspawn-helpers (or --bin-dir)",
                exe.display()
            );
        }
    }
    let tmp = tempfile::tempdir_in(tmp_base(&o))?;
    let root = make_root(tmp.path())?;

    // Prime: the first bootstrap creates everything; later ones find it all
    // in place. Activate must fail (not running) without changing anything.
    let (_, code) = time_one(&[&bootstrap], Some("web"), &root)?;
    if code != 0 {
        bail!("the first bootstrap failed (exit {code})");
    }
    let (_, code) = time_one(&[&activate], Some("web"), &root)?;
    if code != 1 {
        bail!("activate of a stopped container exited {code}, expected 1");
    }

    let (mut t_true, mut t_boot, mut t_act) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..o.runs {
        t_true.push(time_one(&[floor], None, &root)?.0);
        let (d, code) = time_one(&[&bootstrap], Some("web"), &root)?;
        if code != 0 {
            bail!("bootstrap on an existing rootfs exited {code}");
        }
        t_boot.push(d);
        let (d, code) = time_one(&[&activate], Some("web"), &root)?;
        if code != 1 {
            bail!("activate of a stopped container exited {code}, expected 1");
        }
        t_act.push(d);
    }
    let floor_ms = ms(median(&mut t_true));
    println!(
        "helpers: median wall time of {} interleaved runs (root in {})",
        o.runs,
        tmp.path().display()
    );
    println!("  {:<48} {:>8.3} ms  (floor)", "/bin/true", floor_ms);
    let mut pass = true;
    for (what, times) in [
        ("nixos-nspawn-bootstrap web (existing rootfs)", &mut t_boot),
        (
            "nixos-nspawn-activate web (not running, exit 1)",
            &mut t_act,
        ),
    ] {
        let m = ms(median(times));
        let ratio = m / floor_ms;
        let ok = ratio <= TARGET_RATIO;
        pass &= ok;
        println!(
            "  {what:<48} {m:>8.3} ms  {ratio:>4.2}x /bin/true  {} (target <= {TARGET_RATIO}x)",
            if ok { "PASS" } else { "FAIL" }
        );
    }
    println!("binary sizes (release profile, stripped):");
    for exe in [&bootstrap, &activate] {
        let size = std::fs::metadata(exe)?.len();
        let ok = size <= TARGET_BYTES;
        pass &= ok;
        println!(
            "  {:<48} {:>8} bytes ({:.2} MiB)  {} (target <= 1 MiB)",
            exe.file_name().unwrap_or_default().to_string_lossy(),
            size,
            size as f64 / (1u64 << 20) as f64,
            if ok { "PASS" } else { "FAIL" }
        );
    }
    println!("{}", if pass { "PASS" } else { "FAIL" });
    Ok(())
}
