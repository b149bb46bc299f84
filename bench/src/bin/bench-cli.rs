//! Benchmark of `nixos-nspawn list --json`: whole-process wall time (median
//! of many runs) with N registered containers in a temporary root and no
//! systemd (NIXOS_NSPAWN_SYSTEMCTL/MACHINECTL/BUSCTL empty, so nothing is
//! spawned), next to `/bin/true` (the floor: spawning a process) and, when a
//! python-nixos-nspawn checkout and a Python with `rich` are available, next
//! to its `list --json` over the same N containers. Prints PASS/FAIL against
//! the targets (≤ 20 ms at 1,000 containers, ≥ 10× faster than the Python
//! tool); asserts nothing.
//!
//! ```text
//! cargo build --release -p nixos-nspawn -p nixos-nspawn-bench
//! target/release/bench-cli [--n 1000] [--runs 31] [--dir DIR] [--cli PATH]
//!                          [--pynspawn DIR] [--python PATH] [--python-runs 5] [--keep]
//! ```
//!
//! The containers: 1,000 entries (veth, zone, bridge and host networks, bind
//! mounts, ports; every tenth a declarative entry linked from a "store"
//! directory, as the NixOS module links them), each with a profile of one to
//! three generations.
//!
//! The Python tool (github.com/m1cr0man/python-nixos-nspawn, not part of this
//! repository): `--pynspawn DIR` is an extracted checkout (default
//! /tmp/pynspawn), `--python` an interpreter that can `import rich` (default
//! /tmp/pyvenv/bin/python, else python3). Its paths are fixed in its code, so
//! it is run through a `python -c` wrapper that points its module constants
//! (profiles directory, declarative directory, state directory) into the
//! temporary root and passes `--unit-file-dir`; it lists the same N
//! containers (one `NAME.nspawn` unit file and one profile `data.json` each).
//! It asks `machinectl` for every container's state, as it does on any host.
//!
//! With `--running N` it measures on a booted systemd instead (issue 13): a
//! throwaway test host of the integration suite (`--systemd host|debian13`)
//! with N running containers (autoStart, veth), and inside it, each run as a
//! whole process through `nsenter` into the test host, next to `nsenter …
//! /bin/true` (the floor): `nixos-nspawn list --json`, `nixos-nspawn status
//! NAME`, a `nixos-nspawn apply` that has nothing to do (systemd has loaded
//! the registry as it is: the plan only), the same after one entry was
//! rewritten unchanged (a new file: daemon-reload, then the plan; shown, no
//! target), and python-nixos-nspawn's `list --json` over the same N
//! containers (its checkout and venv bound in read-only; on `host` only, whose
//! `/usr` has the Python the venv was made with). Targets: ≤ 50 ms, ≤ 50 ms,
//! ≤ 1 s.
//!
//! ```text
//! target/release/bench-cli --running 100 [--systemd host] [--runs 21] [--python-runs 3]
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nixos_nspawn_bench::{number, parse_args};
use nixos_nspawn_core::registry::{BindMount, Entry, NetworkMode, PortForward, Protocol};
use nixos_nspawn_core::{paths, Root};

const TARGET_MS: f64 = 20.0;
const TARGET_RATIO: f64 = 10.0;

struct Options {
    n: usize,
    /// Measure on a booted test host with this many running containers.
    running: Option<usize>,
    systemd: String,
    runs: usize,
    python_runs: usize,
    dir: Option<PathBuf>,
    cli: Option<PathBuf>,
    pynspawn: PathBuf,
    python: Option<PathBuf>,
    keep: bool,
}

fn parse_options() -> Result<Options> {
    let mut o = Options {
        n: 1000,
        running: None,
        systemd: "host".into(),
        runs: 31,
        python_runs: 5,
        dir: None,
        cli: None,
        pynspawn: PathBuf::from("/tmp/pynspawn"),
        python: None,
        keep: false,
    };
    parse_args(
        "usage: bench-cli [--n 1000] [--runs 31] [--dir DIR] [--cli PATH] [--pynspawn DIR] [--python PATH] [--python-runs 5] [--keep]\n       bench-cli --running N [--systemd host|debian13] [--runs 21] [--python-runs 3] [--pynspawn DIR] [--python PATH] [--keep]",
        |a, value| {
            match a {
                "--n" => o.n = number(a, value()?)?,
                "--running" => o.running = Some(number(a, value()?)?),
                "--systemd" => o.systemd = value()?,
                "--runs" => o.runs = number(a, value()?)?,
                "--python-runs" => o.python_runs = number(a, value()?)?,
                "--dir" => o.dir = Some(value()?.into()),
                "--cli" => o.cli = Some(value()?.into()),
                "--pynspawn" => o.pynspawn = value()?.into(),
                "--python" => o.python = Some(value()?.into()),
                "--keep" => o.keep = true,
                _ => return Ok(false),
            }
            Ok(true)
        },
    )?;
    if o.runs == 0 || o.n == 0 {
        bail!("--n and --runs must be positive");
    }
    Ok(o)
}

/// The release CLI next to this benchmark's executable.
fn find_cli(o: &Options) -> Result<PathBuf> {
    if let Some(c) = &o.cli {
        return Ok(c.clone());
    }
    let exe = std::env::current_exe()?;
    let cli = exe.with_file_name("nixos-nspawn");
    if !cli.exists() {
        bail!(
            "{} not found: cargo build --release -p nixos-nspawn (or pass --cli)",
            cli.display()
        );
    }
    Ok(cli)
}

fn entry(i: usize) -> Entry {
    let name = format!("container-{i:04}");
    let mut e = Entry::new(
        &name,
        &format!("/nix/store/{:032}-nixos-system-{name}-25.05", i),
    );
    match i % 4 {
        0 => {}
        1 => {
            e.network.mode = NetworkMode::Zone;
            e.network.zone = Some(format!("zone{}", i % 7));
        }
        2 => {
            e.network.mode = NetworkMode::Bridge;
            e.network.bridge = Some("br0".into());
        }
        _ => e.network.mode = NetworkMode::Host,
    }
    e.bind_mounts
        .push(BindMount::parse(&format!("/srv/{name}:/var/lib/data")).expect("valid"));
    if e.network.mode != NetworkMode::Host {
        e.forward_ports.push(PortForward {
            protocol: Protocol::Tcp,
            host_port: 10_000 + i as u16,
            container_port: Some(80),
        });
    }
    e.auto_start = i % 3 >= 1;
    e
}

/// Our layout: registry files (every tenth declarative, linked from a store
/// directory) and profiles with 1-3 generations.
fn populate(root: &Root, n: usize) -> Result<()> {
    let reg = root.registry_dir();
    std::fs::create_dir_all(&reg)?;
    let store = root.join("/store-entries");
    std::fs::create_dir_all(&store)?;
    for i in 0..n {
        let mut e = entry(i);
        let file = reg.join(format!("{}.json", e.name));
        if i % 10 == 0 {
            e.declarative = true;
            let target = store.join(format!("{}.json", e.name));
            std::fs::write(&target, e.to_json())?;
            std::os::unix::fs::symlink(&target, &file)?;
        } else {
            std::fs::write(&file, e.to_json())?;
        }
        let prof = root.join(paths::profile_dir(&e.name));
        std::fs::create_dir_all(&prof)?;
        let gens = 1 + i % 3;
        for g in 1..=gens {
            std::os::unix::fs::symlink(&e.system, prof.join(format!("system-{g}-link")))?;
        }
        std::os::unix::fs::symlink(format!("system-{gens}-link"), prof.join("system"))?;
    }
    Ok(())
}

/// The Python tool's layout for the same containers: unit files and profile data.
fn populate_python(dir: &Path, n: usize) -> Result<()> {
    std::fs::create_dir_all(dir.join("nspawn"))?;
    std::fs::create_dir_all(dir.join("declarative.d"))?;
    for i in 0..n {
        let e = entry(i);
        std::fs::write(
            dir.join(format!("nspawn/{}.nspawn", e.name)),
            "[Exec]\nBoot=no\nParameters=/nix/var/nix/profiles/system/init\n",
        )?;
        let data = dir.join(format!("profiles/{}/system/nixos-nspawn", e.name));
        std::fs::create_dir_all(&data)?;
        let json = serde_json::json!({
            "declarative": i % 10 == 0,
            "activation": { "strategy": "dynamic", "autoStart": e.auto_start },
            "zone": e.network.zone,
            "bindMounts": e.bind_mounts.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
        });
        std::fs::write(data.join("data.json"), json.to_string())?;
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Wall time of `runs` runs (stdout to /dev/null), after one warm-up run.
fn measure(make: &dyn Fn() -> Command, runs: usize) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(runs);
    for i in 0..=runs {
        let mut c = make();
        c.stdout(Stdio::null()).stderr(Stdio::null());
        let t = Instant::now();
        let status = c.status().context("running the benchmarked command")?;
        let dt = t.elapsed();
        if !status.success() {
            bail!("{c:?} failed ({status})");
        }
        if i > 0 {
            times.push(dt);
        }
    }
    Ok(times)
}

fn summary(label: &str, times: &[Duration]) -> String {
    let mut v = times.to_vec();
    v.sort();
    format!(
        "{label:<44} median {:>9.2} ms   min {:>9.2} ms   max {:>9.2} ms   ({} runs)",
        ms(v[v.len() / 2]),
        ms(v[0]),
        ms(v[v.len() - 1]),
        v.len()
    )
}

fn python_wrapper(py_root: &Path) -> String {
    let p = py_root.display();
    format!(
        "import sys\n\
         from pathlib import Path\n\
         import nixos_nspawn.models.container as c\n\
         c.NIX_PROFILE_DIR = Path('{p}/profiles')\n\
         c.DECLARATIVE_CONFIG_DIR = Path('{p}/declarative.d')\n\
         c.MACHINE_STATE_DIR = Path('{p}/machines')\n\
         from nixos_nspawn.main import main\n\
         sys.exit(main(['nixos-nspawn', '--unit-file-dir', '{p}/nspawn', 'list', '--json']))\n"
    )
}

fn find_python(o: &Options) -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match &o.python {
        Some(p) => vec![p.clone()],
        None => vec!["/tmp/pyvenv/bin/python".into(), "python3".into()],
    };
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import rich"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn main() -> Result<()> {
    nixos_nspawn_bench::guardian_if_asked();
    let o = parse_options()?;
    if let Some(n) = o.running {
        return running(&o, n);
    }
    let cli = find_cli(&o)?;
    let base = o.dir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("bench-cli.")
        .tempdir_in(&base)
        .with_context(|| format!("creating a temporary directory in {}", base.display()))?;
    let root = Root::new(tmp.path().join("root"));
    populate(&root, o.n)?;

    let ours = || {
        let mut c = Command::new(&cli);
        c.args(["list", "--json"])
            .env("NIXOS_NSPAWN_ROOT", root.path())
            .env("NIXOS_NSPAWN_SYSTEMCTL", "")
            .env("NIXOS_NSPAWN_MACHINECTL", "")
            .env("NIXOS_NSPAWN_BUSCTL", "");
        c
    };
    // Sanity: it lists every container.
    let out = ours().output()?;
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{} list --json printed no JSON", cli.display()))?;
    let count = listed.as_array().map_or(0, Vec::len);
    if count != o.n {
        bail!("nixos-nspawn listed {count} containers, not {}", o.n);
    }

    println!(
        "bench-cli: `list --json`, {} containers, temporary root in {}",
        o.n,
        base.display()
    );
    let floor = measure(&|| Command::new("/bin/true"), o.runs)?;
    println!("{}", summary("/bin/true (process spawn floor)", &floor));
    let t_ours = measure(&ours, o.runs)?;
    println!("{}", summary("nixos-nspawn list --json", &t_ours));
    let t_table = measure(
        &|| {
            let mut c = ours();
            c.args(["--type", "imperative"]);
            c.arg("--json");
            c
        },
        o.runs,
    )?;
    println!(
        "{}",
        summary("nixos-nspawn list --type imperative --json", &t_table)
    );
    let m_ours = ms(median(t_ours.clone()));
    let m_floor = ms(median(floor));

    let mut python_median = None;
    let py_pkg = o.pynspawn.join("nixos_nspawn");
    match (py_pkg.is_dir(), find_python(&o)) {
        (true, Some(python)) => {
            let py_root = tmp.path().join("python");
            populate_python(&py_root, o.n)?;
            let wrapper = python_wrapper(&py_root);
            let py = || {
                let mut c = Command::new(&python);
                c.arg("-c").arg(&wrapper).current_dir(&o.pynspawn);
                c
            };
            let out = py().output()?;
            let listed: serde_json::Value =
                serde_json::from_slice(&out.stdout).with_context(|| {
                    format!(
                        "python-nixos-nspawn printed no JSON: {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                })?;
            let count = listed.as_array().map_or(0, Vec::len);
            if count != o.n {
                bail!("python-nixos-nspawn listed {count} containers, not {}", o.n);
            }
            let t_py = measure(&py, o.python_runs)?;
            println!(
                "{}",
                summary(
                    &format!("python-nixos-nspawn list --json ({})", python.display()),
                    &t_py
                )
            );
            python_median = Some(ms(median(t_py)));
        }
        (false, _) => println!(
            "python-nixos-nspawn: no checkout at {} (--pynspawn DIR); not compared",
            o.pynspawn.display()
        ),
        (true, None) => println!(
            "python-nixos-nspawn: no Python that can `import rich` (--python PATH); not compared"
        ),
    }

    println!();
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!(
        "{} nixos-nspawn list --json with {} containers: {m_ours:.2} ms median (target ≤ {TARGET_MS} ms; /bin/true {m_floor:.2} ms)",
        verdict(m_ours <= TARGET_MS),
        o.n
    );
    if let Some(py) = python_median {
        let ratio = py / m_ours;
        println!(
            "{} {ratio:.0}× faster than python-nixos-nspawn ({py:.0} ms; target ≥ {TARGET_RATIO}×)",
            verdict(ratio >= TARGET_RATIO)
        );
    }
    if o.keep {
        let kept = tmp.keep();
        println!("kept {}", kept.display());
    }
    Ok(())
}

/// `--running N`: the CLI on a booted systemd with N running containers.
fn running(o: &Options, n: usize) -> Result<()> {
    use nixos_nspawn_integration::fixtures::{entry, Fixtures, Sys};
    use nixos_nspawn_integration::host::{secs, HostOpts, TestHost, BIN_IN_HOST, CLI};
    use nixos_nspawn_integration::watch;

    let _guard = nixos_nspawn_bench::Guard::start()?;
    let (os, version) = nixos_nspawn_bench::os_root(&o.systemd)?;
    let bins = nixos_nspawn_bench::bin_dir(o.cli.as_deref().and_then(Path::parent))?;
    let limit = watch::OuterLimit::ensure(nixos_nspawn_core::limits::RECOMMENDED_INSTANCES)?;
    let fx = Fixtures::new()?;
    let sys = fx.system(&Sys::new("bench-cli"))?;
    let names: Vec<String> = (0..n).map(|i| format!("container-{i:04}")).collect();
    let containers = names
        .iter()
        .map(|name| {
            let mut e = entry(name, &sys);
            e["autoStart"] = serde_json::json!(true);
            e
        })
        .collect();
    let python = (o.systemd == "host")
        .then(|| find_python(o))
        .flatten()
        .filter(|_| o.pynspawn.join("nixos_nspawn").is_dir());
    // Bound under /opt (the test host mounts a fresh /tmp over anything there).
    let mut bind_ro = Vec::new();
    let mut python_inside = None;
    let pyn_inside = "/opt/bench-cli/pynspawn";
    if let Some(py) = &python {
        bind_ro.push(format!("{}:{pyn_inside}", o.pynspawn.display()));
        // A venv (python is VENV/bin/python) is bound too; a system Python is
        // the test host's own (it has this machine's /usr).
        python_inside = Some(match py.parent().and_then(Path::parent) {
            Some(venv) if venv.join("pyvenv.cfg").exists() => {
                bind_ro.push(format!("{}:/opt/bench-cli/venv", venv.display()));
                format!(
                    "/opt/bench-cli/venv/bin/{}",
                    py.file_name().unwrap_or_default().to_string_lossy()
                )
            }
            _ => py.display().to_string(),
        });
    }
    let h = TestHost::boot(
        &format!("bc{}-running", std::process::id()),
        &os,
        &bins,
        &HostOpts {
            containers,
            boot_timeout: Some(secs(900)),
            bind_ro,
            ..Default::default()
        },
        o.keep,
    )?;
    let up = watch::container_leaders(h.leader).len();
    // Measure the steady state, once the N guests have finished their boot.
    let (waited, used) = watch::settle(h.leader, Duration::from_secs(180));
    println!(
        "settled {:.0} s after boot (the test host's processes used {used:.2} s CPU in the last 2 s)",
        waited.as_secs_f64()
    );
    println!(
        "bench-cli --running: {up} of {n} containers running in a test host, {version}; {}; load {}",
        limit.describe(),
        watch::loadavg()
    );
    if up < n {
        bail!("only {up} of {n} containers run");
    }
    let leader = h.leader.to_string();
    let inside = |argv: &[&str]| {
        let mut c = Command::new("nsenter");
        c.args(["-t", &leader, "-a", "--"]).args(argv);
        c
    };
    let exe = format!("{BIN_IN_HOST}/{CLI}");
    // Sanity: list sees every container running.
    let out = inside(&[&exe, "list", "--json"]).output()?;
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("list --json: {}", String::from_utf8_lossy(&out.stderr)))?;
    let count = listed.as_array().map_or(0, Vec::len);
    if count != n {
        bail!("nixos-nspawn list shows {count} containers, not {n}");
    }
    let floor = measure(&|| inside(&["/bin/true"]), o.runs)?;
    println!("{}", summary("nsenter … /bin/true (floor)", &floor));
    let t_list = measure(&|| inside(&[&exe, "list", "--json"]), o.runs)?;
    println!("{}", summary("nixos-nspawn list --json", &t_list));
    let t_status = measure(&|| inside(&[&exe, "status", &names[n / 2]]), o.runs)?;
    println!("{}", summary("nixos-nspawn status NAME", &t_status));
    let apply_runs = o.runs.min(7);
    let t_apply = measure(&|| inside(&[&exe, "apply"]), apply_runs)?;
    println!(
        "{}",
        summary("nixos-nspawn apply (nothing to do)", &t_apply)
    );
    let rewrite = format!(
        "f=/etc/nixos-nspawn/containers/{}.json; cp -p \"$f\" \"$f.new\" && mv \"$f.new\" \"$f\" && exec \"$1\" apply",
        names[0]
    );
    let t_reload = measure(&|| inside(&["sh", "-c", &rewrite, "sh", &exe]), apply_runs)?;
    println!(
        "{}",
        summary("nixos-nspawn apply (an entry rewritten)", &t_reload)
    );
    let mut py_median = None;
    if let Some(py) = &python_inside {
        // Its layout for the same containers, in the test host's /tmp.
        let py_root = Path::new("/tmp/bench-cli-python");
        populate_python(&h.path(&py_root.display().to_string()), 0)?;
        let data_root = h.path(&py_root.display().to_string());
        for name in &names {
            std::fs::write(
                data_root.join(format!("nspawn/{name}.nspawn")),
                "[Exec]\nBoot=no\nParameters=/nix/var/nix/profiles/system/init\n",
            )?;
            let data = data_root.join(format!("profiles/{name}/system/nixos-nspawn"));
            std::fs::create_dir_all(&data)?;
            std::fs::write(
                data.join("data.json"),
                r#"{"declarative": false, "activation": {"strategy": "dynamic", "autoStart": true}, "zone": null, "bindMounts": []}"#,
            )?;
        }
        let wrapper = python_wrapper(py_root);
        let run_py = || {
            let mut c = inside(&[
                "sh",
                "-c",
                "cd \"$1\" && exec \"$2\" -c \"$3\"",
                "sh",
                pyn_inside,
                py,
                &wrapper,
            ]);
            c.env_remove("PYTHONPATH");
            c
        };
        let out = run_py().output()?;
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "python-nixos-nspawn printed no JSON: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        let count = listed.as_array().map_or(0, Vec::len);
        if count != n {
            bail!("python-nixos-nspawn listed {count} containers, not {n}");
        }
        let t_py = measure(&run_py, o.python_runs)?;
        println!("{}", summary("python-nixos-nspawn list --json", &t_py));
        py_median = Some(ms(median(t_py)));
    } else {
        println!(
            "python-nixos-nspawn: not compared (needs --systemd host, a checkout at {} and a Python with rich)",
            o.pynspawn.display()
        );
    }
    println!();
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let (l, st, ap) = (
        ms(median(t_list)),
        ms(median(t_status)),
        ms(median(t_apply)),
    );
    let fl = ms(median(floor));
    println!(
        "{} list --json with {n} running: {l:.1} ms median (target ≤ 50 ms; floor {fl:.1} ms)",
        verdict(l <= 50.0)
    );
    println!(
        "{} status NAME with {n} running: {st:.1} ms median (target ≤ 50 ms)",
        verdict(st <= 50.0)
    );
    println!(
        "{} apply, nothing to do, {n} running: {ap:.0} ms median (target ≤ 1000 ms)",
        verdict(ap <= 1000.0)
    );
    if let Some(py) = py_median {
        println!(
            "     python-nixos-nspawn list --json: {py:.0} ms ({:.0}× ours)",
            py / l
        );
    }
    println!("load after {}", watch::loadavg());
    drop(h);
    drop(limit);
    Ok(())
}
