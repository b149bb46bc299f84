//! Host-side networking that the NixOS module relies on, against the real
//! systemd-networkd of the test host (252 on Debian 12): an idle zone's
//! address, and the DNS servers networkd's DHCP server hands to containers on
//! a host whose uplink networkd does not manage.

use std::time::Instant;

use anyhow::{ensure, Context as _, Result};
use serde_json::{json, Value};

use crate::cmd::wait_for;
use crate::fixtures::{entry, Sys};
use crate::host::{ms, secs, HostOpts, TestHost};
use crate::scenarios::{start_unit, unit, wait_dhcp};
use crate::suite::{Outcome, Suite, Test};

pub fn all() -> Vec<Test> {
    vec![
        Test {
            name: "net_zone_idle",
            about: "a declared zone with a netdev: its bridge has its address before any container and keeps it (same link) after the last one stops (dummy port vd-ZONE; nspawn removes empty zone bridges)",
            f: net_zone_idle,
        },
        Test {
            name: "net_dhcp_dns_uplink",
            about: "no networkd uplink, no resolved: leases carry no DNS server until nix/modules/uplink-dns.sh copies the host's resolv.conf where networkd's DHCP server reads it; then the host's servers (not loopback), refreshed on the next start",
            f: net_dhcp_dns_uplink,
        },
    ]
}

/// The script the NixOS module runs as nixos-nspawn-uplink-dns.service.
const UPLINK_DNS: &str = include_str!("../../../nix/modules/uplink-dns.sh");
const RESOLVED_FILE: &str = "/run/systemd/resolve/resolv.conf";

fn net_zone_idle(s: &Suite) -> Result<Outcome> {
    let sys = s.fx.system(&Sys::new("idle"))?;
    let mut e = entry("zi", &sys);
    e["network"] = json!({ "mode": "zone", "zone": "idle" });
    let zone = json!({
        "version": 1,
        "name": "idle",
        "network": { "Network": { "Address": "10.77.0.1/24" } },
        "netdev": {},
    });
    let h = s.host(
        "zoneidle",
        HostOpts {
            containers: vec![e],
            zones: vec![zone],
            ..Default::default()
        },
    )?;
    let configured = |when: &str| -> Result<()> {
        wait_for(
            &format!("{when}: vz-idle with 10.77.0.1/24 and its port vd-idle"),
            secs(30),
            ms(50),
            || {
                let addrs = h.host_ipv4("vz-idle")?;
                let ports = h.ok(&["ip", "-o", "link", "show", "master", "vz-idle"])?;
                Ok(
                    (addrs == vec!["10.77.0.1/24".to_string()] && ports.contains("vd-idle"))
                        .then_some(()),
                )
            },
        )
        .with_context(|| {
            format!(
                "{when}: {}",
                h.exec(&["ip", "addr", "show"])
                    .map(|o| o.stdout)
                    .unwrap_or_default()
            )
        })
    };
    // networkd made the bridge and its dummy port at boot; no container yet.
    let t0 = Instant::now();
    configured("before any container")?;
    s.metric(format!(
        "idle zone: vz-idle configured {:.2} s after the test host's boot finished",
        t0.elapsed().as_secs_f64()
    ));

    // A container comes and goes; nspawn removes a zone bridge its last
    // container leaves only when nothing else is attached: the port stays.
    let t1 = Instant::now();
    start_unit(&h, "zi")?;
    wait_dhcp(&h, "zi", t1, secs(40))?;
    let ifindex = h.read("/sys/class/net/vz-idle/ifindex")?;
    h.exec_t(&["systemctl", "stop", &unit("zi")], secs(60))?
        .ok()?;
    configured("after its last container stopped")?;
    ensure!(
        h.read("/sys/class/net/vz-idle/ifindex")? == ifindex,
        "vz-idle was removed and made again (ifindex changed) when its last container stopped"
    );
    // and it serves the next container
    let t2 = Instant::now();
    start_unit(&h, "zi")?;
    wait_dhcp(&h, "zi", t2, secs(40))?;
    Ok(Outcome::Pass)
}

/// The DNS servers in the DHCP lease of the container's host0, as its
/// networkd recorded them (`DNS=` of /run/systemd/netif/leases/IFINDEX).
fn lease_dns(h: &TestHost, name: &str) -> Result<Vec<String>> {
    let out = h
        .in_container(name, &["sh", "-c", "cat /run/systemd/netif/leases/*"])?
        .ok()?;
    Ok(out
        .lines()
        .filter_map(|l| l.strip_prefix("DNS="))
        .flat_map(|v| v.split_whitespace().map(str::to_string))
        .collect())
}

fn start_and_lease(h: &TestHost, name: &str) -> Result<Vec<String>> {
    let t0 = Instant::now();
    start_unit(h, name)?;
    wait_dhcp(h, name, t0, secs(30))?;
    // the lease file is written with the address
    wait_for(&format!("{name}'s lease file"), secs(10), ms(50), || {
        Ok(
            h.in_container(name, &["sh", "-c", "cat /run/systemd/netif/leases/*"])?
                .success()
                .then_some(()),
        )
    })?;
    lease_dns(h, name)
}

fn net_dhcp_dns_uplink(s: &Suite) -> Result<Outcome> {
    let sys = s.fx.system(&Sys::new("dns"))?;
    let entries: Vec<Value> = ["da", "db"].iter().map(|n| entry(n, &sys)).collect();
    let h = s.host(
        "dns",
        HostOpts {
            containers: entries,
            ..Default::default()
        },
    )?;
    if h.exists(RESOLVED_FILE) {
        return Ok(Outcome::Skip(format!(
            "{RESOLVED_FILE} exists in the test host (systemd-resolved runs): the case without resolved cannot be shown"
        )));
    }
    // The test host has no uplink networkd manages (a private network, no
    // default route) and no resolved: what a scripted-networking host has.
    h.sh("rm -f /etc/resolv.conf && printf 'nameserver 192.0.2.53\\nnameserver 127.0.0.53\\nnameserver 2001:db8::53\\nsearch lan\\n' > /etc/resolv.conf")?;
    h.sh(&format!(
        "cat > /run/uplink-dns.sh <<'NIXOS_NSPAWN_EOF'\n{UPLINK_DNS}NIXOS_NSPAWN_EOF"
    ))?;

    // Before: networkd's DHCP server has no DNS servers to hand out.
    let before = start_and_lease(&h, "da")?;
    ensure!(
        before.is_empty(),
        "without {RESOLVED_FILE} the lease should carry no DNS server, carries {before:?}"
    );
    h.exec_t(&["systemctl", "stop", &unit("da")], secs(60))?
        .ok()?;

    // The module's script: the host's servers, where networkd reads them.
    let out = h.sh("sh /run/uplink-dns.sh")?;
    ensure!(
        out.contains("3 nameserver line(s)"),
        "uplink-dns.sh said: {out}"
    );
    let written = h.read(RESOLVED_FILE)?;
    ensure!(
        written.contains("nameserver 192.0.2.53\n") && !written.contains("search"),
        "{RESOLVED_FILE}:\n{written}"
    );
    let dns = start_and_lease(&h, "db")?;
    ensure!(
        dns == vec!["192.0.2.53".to_string()],
        "the lease should carry the host's server 192.0.2.53 only (networkd skips loopback, IPv6 goes by RA), carries {dns:?}"
    );

    // The host's servers change (dhcpcd, NetworkManager): the next start has them.
    h.exec_t(&["systemctl", "stop", &unit("db")], secs(60))?
        .ok()?;
    h.sh("printf 'nameserver 192.0.2.54\\n' > /etc/resolv.conf && sh /run/uplink-dns.sh")?;
    let dns = start_and_lease(&h, "db")?;
    ensure!(
        dns == vec!["192.0.2.54".to_string()],
        "after the host's resolv.conf changed the lease should carry 192.0.2.54, carries {dns:?}"
    );

    // A file the script did not write (systemd-resolved's) is left alone.
    h.sh(&format!(
        "printf '# resolved\\nnameserver 198.51.100.1\\n' > {RESOLVED_FILE} && sh /run/uplink-dns.sh"
    ))?;
    let kept = h.read(RESOLVED_FILE)?;
    ensure!(
        kept == "# resolved\nnameserver 198.51.100.1\n",
        "uplink-dns.sh overwrote a file it did not write:\n{kept}"
    );
    Ok(Outcome::Pass)
}
