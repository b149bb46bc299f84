//! Benchmark: `systemctl start systemd-nspawn@NAME` → an IPv4 address on the
//! container's host0 (issue 13: "a container is on the network in under a
//! second"), CYCLES starts each, median and p95, on each systemd release asked
//! for, with in the same run and on the same test host:
//!
//! - `web`: veth with the address derived from its name (the default),
//! - `dhcp`: veth with networkd's pool and DHCP (`network.host` sets
//!   `Address=0.0.0.0/28`: what every veth container got before; the peer),
//! - `zoned`: the only container of a zone, with the address derived from its
//!   name in the zone's derived subnet (the default),
//! - `zdhcp`: the only container of a zone whose file sets the bridge's
//!   address (`Address=0.0.0.0/24`): DHCP from the bridge, what every zone
//!   member got before (the peer),
//! - `floor`: the same guest without a network (mode none, no networkd):
//!   `systemctl start` → READY is nspawn's and the guest's own start, the floor.
//!
//! The containers are started in turn (never together), stopped after each
//! start; the address is watched from outside every 5 ms
//! (`/proc/PID/net/fib_trie`), so measuring starts no process. Prints figures
//! and the machine's load; asserts nothing.
//!
//! ```text
//! cargo build --release -p nixos-nspawn-generator -p nixos-nspawn-helpers -p nixos-nspawn -p nixos-nspawn-bench
//! target/release/bench-start [--cycles 10] [--systemd host,debian13] [--bin-dir DIR] [--keep]
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use nixos_nspawn_bench::{bin_dir, guardian_if_asked, number, os_root, parse_args, Guard};
use nixos_nspawn_integration::fixtures::{entry, zone, Fixtures, Sys};
use nixos_nspawn_integration::host::{secs, HostOpts, TestHost};
use nixos_nspawn_integration::watch::{self, median_p95};
use serde_json::json;

struct Options {
    cycles: usize,
    systemd: Vec<String>,
    keep: bool,
    bin_dir: Option<PathBuf>,
}

fn parse_options() -> Result<Options> {
    let mut o = Options {
        cycles: 10,
        systemd: vec!["host".into(), "debian13".into()],
        keep: false,
        bin_dir: None,
    };
    parse_args(
        "usage: bench-start [--cycles 10] [--systemd host,debian13] [--bin-dir DIR] [--keep]",
        |a, value| {
            match a {
                "--cycles" => o.cycles = number(a, value()?)?,
                "--systemd" => o.systemd = value()?.split(',').map(String::from).collect(),
                "--keep" => o.keep = true,
                "--bin-dir" => o.bin_dir = Some(value()?.into()),
                _ => return Ok(false),
            }
            Ok(true)
        },
    )?;
    Ok(o)
}

/// (name, what, wants an address)
const CONTAINERS: &[(&str, &str, bool)] = &[
    ("web", "veth, address derived from the name", true),
    ("dhcp", "veth, networkd pool + DHCP (before)", true),
    ("zoned", "zone member, address derived", true),
    ("zdhcp", "zone member, DHCP (before)", true),
    ("floor", "floor: no network (mode none)", false),
];

fn row(label: &str, what: &str, v: &[Duration]) -> String {
    let (median, p95) = median_p95(v);
    let over = v.iter().filter(|d| d.as_secs_f64() > 1.0).count();
    format!(
        "  {label:<38} {what:<18} median {median:>5.2} s   p95 {p95:>5.2} s   max {:>5.2} s   {over}/{} over 1 s",
        v.iter().max().copied().unwrap_or_default().as_secs_f64(),
        v.len()
    )
}

fn main() -> Result<()> {
    guardian_if_asked();
    let o = parse_options()?;
    let _guard = Guard::start()?;
    let bins = bin_dir(o.bin_dir.as_deref())?;
    let fx = Fixtures::new()?;
    let net_sys = fx.system(&Sys::new("bench-start"))?;
    let floor_sys = fx.system(&Sys::new("bench-start-floor").no_networkd())?;
    let mut dhcp = entry("dhcp", &net_sys);
    dhcp["network"] = json!({ "mode": "veth", "host": { "Network": { "Address": "0.0.0.0/28" } } });
    let mut zoned = entry("zoned", &net_sys);
    zoned["network"] = json!({ "mode": "zone", "zone": "bench" });
    let mut zdhcp = entry("zdhcp", &net_sys);
    zdhcp["network"] = json!({ "mode": "zone", "zone": "benchdhcp" });
    let mut dhcp_zone = zone("benchdhcp");
    dhcp_zone["network"] = json!({ "Network": { "Address": "0.0.0.0/24" } });
    let mut floor = entry("floor", &floor_sys);
    floor["network"] = json!({ "mode": "none" });
    let opts = HostOpts {
        containers: vec![entry("web", &net_sys), dhcp, zoned, zdhcp, floor],
        zones: vec![zone("bench"), dhcp_zone],
        ..Default::default()
    };
    for label in &o.systemd {
        let (os, version) = os_root(label)?;
        let machine = format!("bs{}-{label}", std::process::id());
        let h = TestHost::boot(&machine, &os, &bins, &opts, o.keep)?;
        println!(
            "bench-start [{label}]: {version}, {} cycles, load before {}",
            o.cycles,
            watch::loadavg()
        );
        let stop = |h: &TestHost, name: &str| -> Result<()> {
            h.exec_t(
                &[
                    "systemctl",
                    "stop",
                    &format!("systemd-nspawn@{name}.service"),
                ],
                secs(60),
            )?
            .ok()
            .map(drop)
        };
        // Warm-up: the first start after the host's boot builds its caches.
        for (name, _, want) in CONTAINERS {
            watch::time_start(&h, name, *want, secs(60))?;
            stop(&h, name)?;
        }
        let mut ready = vec![Vec::new(); CONTAINERS.len()];
        let mut address = vec![Vec::new(); CONTAINERS.len()];
        for _ in 0..o.cycles {
            for (i, (name, _, want)) in CONTAINERS.iter().enumerate() {
                let t = watch::time_start(&h, name, *want, secs(60))?;
                ready[i].push(t.start);
                if let Some((d, _)) = t.address {
                    address[i].push(d);
                }
                stop(&h, name)?;
            }
        }
        for (i, (_, what, want)) in CONTAINERS.iter().enumerate() {
            if *want {
                println!("{}", row(what, "start→address", &address[i]));
            }
            println!("{}", row(what, "start→READY", &ready[i]));
        }
        println!(
            "  load after {}; target: start→address p95 ≤ 1 s (veth and zone member, derived)",
            watch::loadavg()
        );
        drop(h);
    }
    Ok(())
}
