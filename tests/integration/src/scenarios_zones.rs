//! Zone addressing on real systemd (issue 13): a zone's bridge has the subnet
//! derived from its name, each member the address derived from its own,
//! installed on host0 from the credential before the guest's networkd starts
//! (no DHCP exchange), the same after a restart; members reach each other and
//! the bridge. A zone created and removed after boot leaves no bridge or port
//! behind. Start→address times are reported, never asserted.

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use nixos_nspawn_core::addressing::{
    Addresses, Assignment, HostNetwork, Ipv6Setting, ZoneAssignment, ZoneNet, ZonePlan,
    DEFAULT_IPV4_POOL,
};
use nixos_nspawn_core::registry::{Entry, NetworkMode, Zone};
use serde_json::{json, Value};

use crate::cmd::wait_for;
use crate::fixtures::{entry, Sys};
use crate::host::{ms, secs, HostOpts, TestHost};
use crate::scenarios::{
    apply, cli_ok, ensure_contains, expect_running, ping, ping6, ping_from, unit,
};
use crate::suite::{Outcome, Suite, Test};
use crate::watch;

pub fn all() -> Vec<Test> {
    vec![
        Test {
            name: "zone_derived_address",
            about: "zone members: host0 has the address derived from the name (IPv4 in the zone's /20, ULA /64) right after start, the same after a restart; the bridge has the zone's derived subnet; a second member; ping between members, to the bridge, ping -6; start→address times",
            f: derived_address,
        },
        Test {
            name: "zone_afterboot_remove",
            about: "a zone with a netdev created after boot (its bridge gets the derived subnet, the member its address) and removed: the bridge vz-ZONE and its port vd-ZONE are deleted from the host",
            f: afterboot_remove,
        },
    ]
}

fn member(name: &str, sys: &str, zone: &str) -> Value {
    let mut e = entry(name, sys);
    e["network"] = json!({ "mode": "zone", "zone": zone });
    e
}

/// What the generator derives on this test host (its machine ID seeds the
/// ULA) for `zone` and `members`.
fn plan(h: &TestHost, zone: &Value, members: &[&str]) -> Result<(ZoneNet, Vec<Addresses>)> {
    let machine_id = h.read("/etc/machine-id")?;
    let host = HostNetwork::resolve(DEFAULT_IPV4_POOL, Ipv6Setting::Derived, Some(&machine_id));
    ensure!(host.ipv6_prefix.is_some(), "no ULA from {machine_id:?}");
    let z: Zone = {
        let name = zone["name"].as_str().context("zone name")?;
        nixos_nspawn_core::registry::parse_zone(
            &nixos_nspawn_core::paths::zone_file(name),
            zone.to_string().as_bytes(),
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
    };
    let plan = ZonePlan::new(
        Ok(&host),
        [&z],
        members.iter().map(|m| (*m, z.name.as_str())),
    );
    let ZoneAssignment::Static(net) = plan.zone(&z.name) else {
        anyhow::bail!("zone {} has no derived subnet", z.name);
    };
    let mut out = Vec::new();
    for m in members {
        let mut e = Entry::new(m, "/nix/store/x");
        e.network.mode = NetworkMode::Zone;
        e.network.zone = Some(z.name.clone());
        match plan.member(&e) {
            Assignment::Static(a) => out.push(a),
            other => anyhow::bail!("member {m} has no derived address: {other:?}"),
        }
    }
    Ok((net, out))
}

fn v4(a: &Addresses) -> String {
    a.ipv4.expect("IPv4").container.to_string()
}

fn stats(v: &[Duration]) -> String {
    let (median, p95) = watch::median_p95(v);
    let max = v.iter().max().copied().unwrap_or_default().as_secs_f64();
    format!("median {median:.2} / p95 {p95:.2} / max {max:.2} s")
}

/// Start `name`, timed; its first IPv4 address must be `want`.
fn start_expecting(h: &TestHost, name: &str, want: &str, what: &str) -> Result<Duration> {
    let t = watch::time_start(h, name, true, secs(30))?;
    let (d, a) = t.address.expect("asked for");
    ensure!(
        a == want,
        "{what}: {name}'s host0 has {a} first, not the derived {want}"
    );
    Ok(d)
}

fn derived_address(s: &Suite) -> Result<Outcome> {
    let sys = s.fx.system(&Sys::new("zoned"))?;
    let zone = json!({ "version": 1, "name": "zlab", "netdev": {} });
    let h = s.host(
        "zones",
        HostOpts {
            containers: vec![member("za", &sys, "zlab"), member("zb", &sys, "zlab")],
            zones: vec![zone.clone()],
            ..Default::default()
        },
    )?;
    let (net, addrs) = plan(&h, &zone, &["za", "zb"])?;
    let (a, b) = (&addrs[0], &addrs[1]);

    // The bridge exists from boot (its netdev) with the zone's fixed subnet.
    let bridge = format!("{}/{}", net.bridge4(), net.ipv4.prefix_len());
    wait_for("vz-zlab's derived address", secs(20), ms(100), || {
        Ok(h.host_ipv4("vz-zlab")?.contains(&bridge).then_some(()))
    })?;

    // Starts and restarts: the derived address first, every time.
    let mut addressed = Vec::new();
    for i in 0..3 {
        if i > 0 {
            h.exec_t(&["systemctl", "stop", &unit("za")], secs(60))?
                .ok()?;
        }
        addressed.push(start_expecting(
            &h,
            "za",
            &v4(a),
            &format!("start {}", i + 1),
        )?);
    }
    addressed.push(start_expecting(&h, "zb", &v4(b), "second member")?);
    s.metric(format!(
        "zone_derived_address [{}]: start→address {} (4 starts, load {})",
        s.os.label,
        stats(&addressed),
        watch::loadavg()
    ));
    expect_running(&h, "za")?;

    // The guest's networkd took the address from the credential's drop-in.
    let inner = h
        .in_container("za", &["ip", "-4", "-o", "addr", "show", "dev", "host0"])?
        .ok()?;
    ensure_contains(
        &inner,
        &a.ipv4.expect("IPv4").container_cidr(),
        "za's host0 addresses",
    )?;
    let guest_v6 = h
        .in_container("za", &["ip", "-6", "-o", "addr", "show", "dev", "host0"])?
        .ok()?;
    let a6 = a.ipv6.context("a derived IPv6 address")?;
    ensure_contains(&guest_v6, &a6.container_cidr(), "za's host0 IPv6 addresses")?;
    // Still the bridge's fixed address with members attached.
    ensure!(
        h.host_ipv4("vz-zlab")?.contains(&bridge),
        "vz-zlab lost {bridge}"
    );

    ping(&h, &v4(a))?;
    ping(&h, &v4(b))?;
    ping_from(&h, "za", &v4(b))?;
    ping_from(&h, "zb", &v4(a))?;
    ping_from(&h, "za", &net.bridge4().to_string())?;
    ping6(&h, &a6.container.to_string())?;

    // Both stopped: the bridge keeps its address (no re-pooling).
    for n in ["za", "zb"] {
        h.exec_t(&["systemctl", "stop", &unit(n)], secs(60))?.ok()?;
    }
    std::thread::sleep(Duration::from_secs(1));
    ensure!(
        h.host_ipv4("vz-zlab")?.contains(&bridge),
        "vz-zlab lost {bridge} when its last member stopped: {:?}",
        h.host_ipv4("vz-zlab")?
    );
    start_expecting(&h, "zb", &v4(b), "zb after the zone was idle")?;
    Ok(Outcome::Pass)
}

fn link_exists(h: &TestHost, link: &str) -> bool {
    h.exists(&format!("/sys/class/net/{link}"))
}

fn afterboot_remove(s: &Suite) -> Result<Outcome> {
    let sys = s.fx.system(&Sys::new("zone-rm"))?;
    let h = s.host("zone-rm", HostOpts::default())?;
    let zone = json!({ "version": 1, "name": "zrun", "netdev": {} });
    h.write_zone(&zone)?;
    cli_ok(
        &h,
        &[
            "create",
            "zr",
            "--system",
            &sys,
            "--bind",
            "/usr:/usr:ro",
            "--zone",
            "zrun",
        ],
    )?;
    expect_running(&h, "zr")?;
    let (net, addrs) = plan(&h, &zone, &["zr"])?;
    let bridge = format!("{}/{}", net.bridge4(), net.ipv4.prefix_len());
    let want = v4(&addrs[0]);
    let got = wait_for("zr's host0 address", secs(30), ms(20), || {
        Ok(h.container_ipv4("zr", "host0")?.into_iter().next())
    })?;
    let got = got.split('/').next().unwrap_or_default();
    ensure!(got == want, "zr's host0 has {got}, not the derived {want}");
    ensure!(
        h.host_ipv4("vz-zrun")?.contains(&bridge),
        "vz-zrun has {:?}, not {bridge}",
        h.host_ipv4("vz-zrun")?
    );
    ensure!(link_exists(&h, "vd-zrun"), "vz-zrun has no port vd-zrun");
    ping_from(&h, "zr", &net.bridge4().to_string())?;

    // Removed after boot: the member, then the zone; apply.
    cli_ok(&h, &["remove", "zr"])?;
    std::fs::remove_file(h.dir.join("etc-nixos-nspawn/zones/zrun.json"))?;
    apply(&h)?;
    wait_for(
        "vz-zrun and vd-zrun to be deleted",
        secs(20),
        ms(100),
        || {
            let left: Vec<&str> = ["vz-zrun", "vd-zrun", "vp-zrun"]
                .into_iter()
                .filter(|l| link_exists(&h, l))
                .collect();
            ensure!(left.is_empty(), "still on the host: {left:?}");
            Ok(Some(()))
        },
    )?;
    Ok(Outcome::Pass)
}
