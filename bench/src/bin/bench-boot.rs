//! Benchmark: N autostart containers at a host's boot (issue 13, "100 boot on
//! a stock host"). A throwaway systemd test host (the integration suite's) is
//! booted with N registry entries (`autoStart`, veth, the address derived from
//! the name), and the benchmark reports, from the moment it starts the host:
//!
//! - the host's own systemd up (its `UserspaceTimestampMonotonic`),
//! - boot → all N units active (their `ActiveEnterTimestampMonotonic`), how
//!   many are not, how many failed,
//! - boot → all N addressed (host0's first IPv4 address, watched from outside
//!   through `/proc/PID/net/fib_trie` every 20 ms; no process is started for it),
//! - CPU time of everything that ran in the test host, and the PSS of its
//!   processes at the end,
//!
//! next to a floor measured in the same run: the same N guests without a
//! network (network.mode none, no networkd in the guest), booted the same way.
//! Prints figures; asserts nothing.
//!
//! The containers' inotify instances count against the outer machine's
//! `fs.inotify.max_user_instances` (a test host's `/proc/sys` is read-only);
//! it is raised to what the project installs (8192) for the run and restored.
//!
//! ```text
//! cargo build --release -p nixos-nspawn-generator -p nixos-nspawn-helpers -p nixos-nspawn -p nixos-nspawn-bench
//! target/release/bench-boot [--n 100] [--systemd host|debian13] [--no-floor] [--bin-dir DIR] [--keep]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use nixos_nspawn_bench::{
    bin_dir, guardian_if_asked, monotonic_us, number, os_root, parse_args, Guard,
};
use nixos_nspawn_integration::fixtures::{entry, Fixtures, Sys};
use nixos_nspawn_integration::host::{secs, HostOpts, TestHost};
use nixos_nspawn_integration::{guard, watch};
use serde_json::{json, Value};

struct Options {
    n: usize,
    systemd: String,
    floor: bool,
    keep: bool,
    bin_dir: Option<PathBuf>,
}

fn parse_options() -> Result<Options> {
    let mut o = Options {
        n: 100,
        systemd: "host".into(),
        floor: true,
        keep: false,
        bin_dir: None,
    };
    parse_args(
        "usage: bench-boot [--n 100] [--systemd host|debian13] [--no-floor] [--bin-dir DIR] [--keep]",
        |a, value| {
            match a {
                "--n" => o.n = number(a, value()?)?,
                "--systemd" => o.systemd = value()?,
                "--no-floor" => o.floor = false,
                "--keep" => o.keep = true,
                "--bin-dir" => o.bin_dir = Some(value()?.into()),
                _ => return Ok(false),
            }
            Ok(true)
        },
    )?;
    Ok(o)
}

#[derive(Debug, Default)]
struct Figures {
    what: String,
    host_up: f64,
    all_active: Option<f64>,
    active: usize,
    failed: usize,
    all_addressed: Option<f64>,
    addressed: usize,
    cpu: f64,
    pss_mib: f64,
    load: String,
}

/// Watch a test host boot from outside: find its systemd, then its
/// containers' init processes, and note when each first has an IPv4 address.
fn watch(machine: String, stop: Arc<AtomicBool>) -> BTreeMap<String, u64> {
    let mut addressed = BTreeMap::new();
    let mut host = None;
    let mut leaders: BTreeMap<String, i32> = BTreeMap::new();
    let mut last_scan = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match host {
            None => {
                host = std::fs::read_dir("/proc")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                    .find(|p| guard::is_our_nspawn(*p, &machine))
                    .and_then(|nspawn| {
                        // Its child systemd (nspawn may have a helper child first).
                        guard::children_of(nspawn).into_iter().find(|c| {
                            std::fs::read_to_string(format!("/proc/{c}/comm"))
                                .is_ok_and(|comm| comm.trim() == "systemd")
                        })
                    });
            }
            Some(h) => {
                let now = monotonic_us();
                if now - last_scan > 200_000 {
                    leaders.extend(watch::container_leaders(h));
                    last_scan = now;
                }
                for (name, pid) in &leaders {
                    if !addressed.contains_key(name) && !watch::ipv4_addresses(*pid).is_empty() {
                        addressed.insert(name.clone(), monotonic_us());
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    addressed
}

#[allow(clippy::too_many_arguments)]
fn boot(
    what: &str,
    machine: &str,
    os: &Path,
    bins: &Path,
    system: &str,
    network: Option<Value>,
    n: usize,
    keep: bool,
) -> Result<Figures> {
    let names: Vec<String> = (0..n).map(|i| format!("b{i:03}")).collect();
    let containers = names
        .iter()
        .map(|name| {
            let mut e = entry(name, system);
            e["autoStart"] = json!(true);
            if let Some(net) = &network {
                e["network"] = net.clone();
            }
            e
        })
        .collect();
    let opts = HostOpts {
        containers,
        boot_timeout: Some(secs(900)),
        ..Default::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (m, s) = (machine.to_string(), stop.clone());
        std::thread::spawn(move || watch(m, s))
    };
    let load_before = watch::loadavg();
    let t0 = monotonic_us();
    let h = TestHost::boot(machine, os, bins, &opts, keep);
    let h = match h {
        Ok(h) => h,
        Err(e) => {
            stop.store(true, Ordering::Relaxed);
            let _ = watcher.join();
            return Err(e);
        }
    };
    let secs_since = |t: u64| t.saturating_sub(t0) as f64 / 1e6;
    let units: Vec<String> = names
        .iter()
        .map(|n| format!("systemd-nspawn@{n}.service"))
        .collect();
    let (mut active, mut failed, mut last) = (0, 0, 0u64);
    for kv in h.show_units(
        &units,
        &["Id", "ActiveState", "ActiveEnterTimestampMonotonic"],
    )? {
        match kv.get("ActiveState").map(String::as_str) {
            Some("active") => {
                active += 1;
                last = last.max(
                    kv.get("ActiveEnterTimestampMonotonic")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                );
            }
            Some("failed") => failed += 1,
            _ => {}
        }
    }
    let userspace = h.userspace_monotonic_us().unwrap_or(0);
    // Addresses may come after the units are active (DHCP): wait for them.
    if network.is_none() {
        let deadline = monotonic_us() + 120_000_000;
        while monotonic_us() < deadline && !watcher.is_finished() {
            let leaders = watch::container_leaders(h.leader);
            if leaders.len() >= active
                && leaders
                    .values()
                    .all(|p| !watch::ipv4_addresses(*p).is_empty())
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // One more watcher round to note the last ones.
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let addressed = watcher.join().expect("the watcher does not panic");
    let tree = watch::descendants(h.leader);
    let figures = Figures {
        what: what.to_string(),
        host_up: secs_since(userspace),
        all_active: (active == n).then(|| secs_since(last)),
        active,
        failed,
        all_addressed: (network.is_none() && addressed.len() == n)
            .then(|| secs_since(addressed.values().copied().max().unwrap_or(0))),
        addressed: addressed.len(),
        cpu: watch::cpu_seconds(&tree),
        pss_mib: watch::pss_kib(&tree) as f64 / 1024.0,
        load: format!("{load_before} → {}", watch::loadavg()),
    };
    drop(h);
    Ok(figures)
}

fn print(f: &Figures, n: usize) {
    let opt = |v: Option<f64>, count: usize| match v {
        Some(s) => format!("{s:>7.1} s"),
        None => format!("    — ({count}/{n})"),
    };
    println!(
        "{:<44} host up {:>5.1} s   all active {}   all addressed {}   failed {:>3}   CPU {:>6.1} s ({:.2} s each)   PSS {:>6.0} MiB ({:.1} each)   load {}",
        f.what,
        f.host_up,
        opt(f.all_active, f.active),
        if f.what.contains("floor") { "      —".to_string() } else { opt(f.all_addressed, f.addressed) },
        f.failed,
        f.cpu,
        f.cpu / n as f64,
        f.pss_mib,
        f.pss_mib / n as f64,
        f.load
    );
}

fn main() -> Result<()> {
    guardian_if_asked();
    let o = parse_options()?;
    let _guard = Guard::start()?;
    let (os, version) = os_root(&o.systemd)?;
    let bins = bin_dir(o.bin_dir.as_deref())?;
    let limit = watch::OuterLimit::ensure(nixos_nspawn_core::limits::RECOMMENDED_INSTANCES)?;
    println!(
        "bench-boot: {} autostart containers at a test host's boot; {version} ({}); {}",
        o.n,
        os.display(),
        limit.describe()
    );
    let fx = Fixtures::new()?;
    let net_sys = fx.system(&Sys::new("bench-boot"))?;
    let floor_sys = fx.system(&Sys::new("bench-boot-floor").no_networkd())?;
    let pid = std::process::id();
    let ours = boot(
        "veth, derived addresses (the default)",
        &format!("bb{pid}-net"),
        &os,
        &bins,
        &net_sys,
        None,
        o.n,
        o.keep,
    )?;
    print(&ours, o.n);
    if o.floor {
        let floor = boot(
            "floor: same guests, no network (mode none)",
            &format!("bb{pid}-floor"),
            &os,
            &bins,
            &floor_sys,
            Some(json!({ "mode": "none" })),
            o.n,
            o.keep,
        )?;
        print(&floor, o.n);
    }
    println!(
        "target: {} containers all active ≤ 60 s after boot, 0 failed (issue 13)",
        o.n
    );
    drop(limit);
    Ok(())
}
