//! The address scheme on real systemd (issue 13): a veth container's address
//! pair derived from its name, on host0 before networkd's DHCP exchange and the
//! same after every restart; IPv6 from the host's ULA (static and SLAAC);
//! fixed pairs; collisions. Start→address times are reported, never asserted.

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use nixos_nspawn_core::addressing::{self, HostNetwork, Ipv6Setting, DEFAULT_IPV4_POOL};
use serde_json::json;

use crate::cmd::wait_for;
use crate::fixtures::{entry, Sys};
use crate::host::{ms, secs, HostOpts, TestHost};
use crate::scenarios::{cli, ensure_contains, ping, ping6, unit};
use crate::suite::{Outcome, Suite, Test};
use crate::watch;

pub fn all() -> Vec<Test> {
    vec![
        Test {
            name: "net_derived_address",
            about: "veth: host0 has the pair derived from its name (IPv4 /30, ULA /64) before DHCP, the same after restarts; ping, ping -6, SLAAC; a fixed hostAddress/localAddress pair; start→address times",
            f: derived_address,
        },
        Test {
            name: "net_address_collision",
            about: "two names deriving one block (a /24 pool in network.json): the first keeps it, the other gets a pool address by DHCP; the generator's log and status name both",
            f: address_collision,
        },
    ]
}

/// The pair `name` derives on this test host (its machine ID seeds the ULA).
fn expected(h: &TestHost, pool: ipnet::Ipv4Net, name: &str) -> Result<HostNetwork> {
    let machine_id = h.read("/etc/machine-id")?;
    let host = HostNetwork::resolve(pool, Ipv6Setting::Derived, Some(&machine_id));
    ensure!(
        host.ipv6_prefix.is_some(),
        "no ULA from the test host's machine ID {machine_id:?} ({name})"
    );
    Ok(host)
}

fn stats(v: &[Duration]) -> String {
    let (median, p95) = watch::median_p95(v);
    let max = v.iter().max().copied().unwrap_or_default().as_secs_f64();
    format!("median {median:.2} / p95 {p95:.2} / max {max:.2} s")
}

fn derived_address(s: &Suite) -> Result<Outcome> {
    let sys = s.fx.system(&Sys::new("derived"))?;
    let mut classic = entry("classic", &sys);
    classic["network"] = json!({
        "mode": "veth", "hostAddress": "192.168.231.1", "localAddress": "192.168.231.2"
    });
    let h = s.host(
        "derived",
        HostOpts {
            containers: vec![entry("web", &sys), classic],
            ..Default::default()
        },
    )?;
    let host = expected(&h, DEFAULT_IPV4_POOL, "web")?;
    let slot = addressing::slot("web", host.ipv4_pool);
    let v4 = host.ipv4_pair(slot);
    let v6 = host.ipv6_pair(slot).expect("a ULA");

    // Five starts: the derived address every time, timed from outside.
    let (mut starts, mut addressed) = (Vec::new(), Vec::new());
    for i in 0..5 {
        if i > 0 {
            h.exec_t(&["systemctl", "stop", &unit("web")], secs(60))?
                .ok()?;
        }
        let t = watch::time_start(&h, "web", true, secs(30))?;
        let (d, a) = t.address.expect("asked for");
        ensure!(
            a == v4.container.to_string(),
            "start {}: host0 has {a}, not the derived {}",
            i + 1,
            v4.container
        );
        starts.push(t.start);
        addressed.push(d);
    }
    s.metric(format!(
        "net_derived_address [{}]: start→address {} ; systemctl start→READY {} (5 starts, load {})",
        s.os.label,
        stats(&addressed),
        stats(&starts),
        watch::loadavg()
    ));

    // The host side: the block's first address and the ULA ::1 on ve-web.
    let host_side = h.host_ipv4("ve-web")?;
    ensure!(
        host_side.contains(&v4.host_cidr()),
        "ve-web has {host_side:?}, not {}",
        v4.host_cidr()
    );
    let v6_host = h.ok(&["ip", "-6", "-o", "addr", "show", "dev", "ve-web"])?;
    ensure_contains(&v6_host, &v6.host_cidr(), "ve-web's IPv6 addresses")?;

    // The guest installed the credential as a drop-in for its host0 network,
    // readable by networkd, and has both static addresses.
    let dropin = "/run/systemd/network/20-host0.network.d/50-nixos-nspawn.conf";
    let mode = h
        .in_container("web", &["stat", "-c", "%a", dropin])?
        .ok()
        .context("the guest has no host0 drop-in from the credential")?;
    ensure!(mode.trim() == "644", "{dropin} has mode {mode}");
    let inner = h
        .in_container(
            "web",
            &["networkctl", "status", "--no-pager", "-n", "0", "host0"],
        )?
        .ok()?;
    ensure_contains(
        &inner,
        "/run/systemd/network/20-host0.network",
        "the guest's networkctl status host0",
    )?;
    let guest_v6 = h
        .in_container("web", &["ip", "-6", "-o", "addr", "show", "dev", "host0"])?
        .ok()?;
    ensure_contains(&guest_v6, &v6.container_cidr(), "host0's IPv6 addresses")?;

    ping(&h, &v4.container.to_string())?;
    ping6(&h, &v6.container.to_string())?;
    // SLAAC from the host's router advertisements: a second address in the /64.
    let prefix = v6.container_cidr();
    let prefix = prefix.rsplit_once("::").map(|(p, _)| p).unwrap_or(&prefix);
    let slaac = wait_for("a SLAAC address on host0", secs(20), ms(200), || {
        let out = h
            .in_container("web", &["ip", "-6", "-o", "addr", "show", "dev", "host0"])?
            .ok()?;
        Ok(out
            .split_whitespace()
            .find(|w| {
                w.starts_with(&format!("{prefix}:"))
                    && w.ends_with("/64")
                    && *w != v6.container_cidr()
            })
            .map(str::to_owned))
    })?;
    let m = h.ok(&["machinectl", "status", "--no-pager", "-n", "0", "web"])?;
    ensure_contains(&m, &v4.container.to_string(), "machinectl status web")?;

    // A fixed point-to-point pair, as the classic module's hostAddress/localAddress.
    let t = watch::time_start(&h, "classic", true, secs(30))?;
    let (d, a) = t.address.expect("asked for");
    ensure!(a == "192.168.231.2", "classic's host0 has {a}");
    let guest = h
        .in_container(
            "classic",
            &["ip", "-4", "-o", "addr", "show", "dev", "host0"],
        )?
        .ok()?;
    ensure_contains(
        &guest,
        "192.168.231.2 peer 192.168.231.1/32",
        "classic's host0",
    )?;
    ping(&h, "192.168.231.2")?;
    s.metric(format!(
        "net_derived_address [{}]: web {} / {}, SLAAC {slaac}; classic (fixed pair) start→address {:.2} s",
        s.os.label,
        v4.container_cidr(),
        v6.container_cidr(),
        d.as_secs_f64()
    ));
    Ok(Outcome::Pass)
}

fn address_collision(s: &Suite) -> Result<Outcome> {
    let sys = s.fx.system(&Sys::new("collide"))?;
    let h = s.host(
        "collide",
        HostOpts {
            containers: vec![entry("gamma", &sys), entry("mu", &sys)],
            kmsg: true,
            ..Default::default()
        },
    )?;
    // In a /24 (64 blocks) "gamma" and "mu" derive the same block.
    let pool: ipnet::Ipv4Net = "10.99.0.0/24".parse().unwrap();
    std::fs::write(
        h.dir.join("etc-nixos-nspawn/network.json"),
        format!(r#"{{"version": 1, "ipv4Pool": "{pool}"}}"#),
    )?;
    h.daemon_reload()?;
    let host = expected(&h, pool, "gamma")?;
    ensure!(
        addressing::slot("gamma", pool) == addressing::slot("mu", pool),
        "the fixture names no longer collide"
    );
    let gamma = host.ipv4_pair(addressing::slot("gamma", pool));

    // The daemon-reload's generator lines reach the kmsg FIFO a moment later.
    let needle = "containers \"gamma\" and \"mu\" derive the same address block";
    let deadline = std::time::Instant::now() + secs(15);
    let mut log = h.kmsg().unwrap_or_default();
    while !log.contains(needle) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        log = h.kmsg().unwrap_or_default();
    }
    ensure_contains(&log, needle, "the generator's log")?;
    let status = cli(&h, &["status", "mu"])?;
    ensure_contains(
        &status.stderr,
        "\"gamma\" keeps it and \"mu\" gets a pool address by DHCP",
        "nixos-nspawn status mu",
    )?;

    let g = watch::time_start(&h, "gamma", true, secs(30))?;
    ensure!(
        g.address.as_ref().map(|(_, a)| a.as_str()) == Some(&gamma.container.to_string()),
        "gamma has {:?}, not the derived {}",
        g.address,
        gamma.container
    );
    // mu: networkd's pool and a lease (which may take the DHCP retry).
    let m = watch::time_start(&h, "mu", true, secs(40))?;
    let (_, lease) = m.address.expect("asked for");
    ensure!(
        lease != gamma.container.to_string(),
        "mu got gamma's address"
    );
    let ve_mu = h.read(&crate::scenarios::ve_network_path("mu"))?;
    ensure_contains(&ve_mu, "Address=0.0.0.0/28", "mu's ve- network file")?;
    ping(&h, &gamma.container.to_string())?;
    ping(&h, &lease)?;
    Ok(Outcome::Pass)
}
