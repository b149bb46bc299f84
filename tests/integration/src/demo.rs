//! The README's "main job": a throwaway systemd host with the generator
//! installed, two containers created with the `nixos-nspawn` CLI (one veth
//! with a forwarded port, one in a zone), started, shown, cleaned up. Their
//! systems are stand-ins built with the real Nix from this machine's static
//! busybox (`tests/fixtures/system.nix`: an `init` that runs the host's
//! systemd, a `switch-to-configuration`), not NixOS: a NixOS system needs
//! nixpkgs, which is not available offline. Everything else is the real thing.

use std::time::Instant;

use anyhow::{ensure, Context as _, Result};

use crate::fixtures::Sys;
use crate::host::{secs, HostOpts, TestHost, BIN_IN_HOST, CLI};
use crate::scenarios::{unit, wait_dhcp};
use crate::suite::Suite;

fn cli(h: &TestHost, args: &[&str]) -> Result<String> {
    let exe = format!("{BIN_IN_HOST}/{CLI}");
    let mut argv = vec![exe.as_str()];
    argv.extend_from_slice(args);
    println!("   $ nixos-nspawn {}", args.join(" "));
    let out = h.exec_t(&argv, secs(180))?;
    let text = out.ok()?;
    print!("{text}");
    Ok(text)
}

/// Where a start's time went, from systemd's monotonic timestamps (the same
/// clock as `t0_us`, taken before `nixos-nspawn create`): until the unit's
/// start job began (the CLI: registry write, daemon-reload, systemctl start),
/// the bootstrap helper (ExecStartPre: rootfs, profile, /run files), nspawn
/// and the guest until READY; and when systemd-machined became active (the
/// first container start waits for it).
fn start_phases(h: &TestHost, name: &str, t0_us: u64) -> Result<String> {
    let p = h.show(
        &unit(name),
        &[
            "InactiveExitTimestampMonotonic",
            "ExecMainStartTimestampMonotonic",
            "ActiveEnterTimestampMonotonic",
        ],
    )?;
    let get = |k: &str| -> u64 { p.get(k).and_then(|v| v.parse().ok()).unwrap_or(0) };
    let (job, main, active) = (
        get("InactiveExitTimestampMonotonic"),
        get("ExecMainStartTimestampMonotonic"),
        get("ActiveEnterTimestampMonotonic"),
    );
    let machined: u64 = h
        .show(
            "systemd-machined.service",
            &["ActiveEnterTimestampMonotonic"],
        )?
        .get("ActiveEnterTimestampMonotonic")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let s = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e6;
    Ok(format!(
        "create → start job {:.2} s; bootstrap (ExecStartPre) {:.2} s; nspawn → READY {:.2} s; systemd-machined active at {:+.2} s",
        s(t0_us, job),
        s(job, main),
        s(main, active),
        (machined as f64 - t0_us as f64) / 1e6
    ))
}

/// Runs the demo; returns what the verdict line says about it.
pub fn demo(s: &Suite) -> Result<String> {
    println!("== building two stand-in systems with Nix (busybox + the host's systemd; not NixOS)");
    let web_sys = s.fx.system(&Sys::new("demo-web").http(80))?;
    let db_sys = s.fx.system(&Sys::new("demo-db"))?;
    println!("   web: {web_sys}\n   db:  {db_sys}");

    println!("== booting a throwaway systemd host (systemd-nspawn -D / --volatile=yes -b)");
    let h = s.host("demo", HostOpts::default())?;
    // As on a host that is up: right after boot systemd's mount monitor is
    // rate-limited (its boot-time mounts), which holds the first
    // container's start job for up to a second.
    let (waited, _) = crate::watch::settle(h.leader, std::time::Duration::from_secs(30));
    println!("   settled {:.1} s after boot", waited.as_secs_f64());

    println!("== creating the containers with the CLI (the stand-ins run the host's /usr)");
    let mut leases = Vec::new();
    for (name, system, extra, how) in [
        (
            "web",
            &web_sys,
            vec!["--port", "8080:80"],
            "derived from its name, passed as a credential",
        ),
        (
            "db",
            &db_sys,
            vec!["--zone", "backend"],
            "derived from its name in the zone's subnet, passed as a credential",
        ),
    ] {
        let t = Instant::now();
        let t_us = crate::watch::monotonic_us();
        let mut args = vec!["create", name, "--system", system, "--bind", "/usr:/usr:ro"];
        args.extend(extra);
        cli(&h, &args)?;
        let started = t.elapsed();
        let (addr, dhcp) = wait_dhcp(&h, name, t, secs(60))?;
        println!(
            "   {name}: running after {:.2} s, address {addr} on host0 ({how}) after {:.2} s",
            started.as_secs_f64(),
            dhcp.as_secs_f64()
        );
        println!("     {}", start_phases(&h, name, t_us)?);
        leases.push(format!("{name} {addr}"));
    }

    println!("== nixos-nspawn list");
    cli(&h, &["list"])?;
    println!("== machinectl list");
    print!("{}", h.ok(&["machinectl", "list", "--no-pager"])?);
    println!("== networkctl list (test host)");
    print!("{}", h.ok(&["networkctl", "list", "--no-pager"])?);
    let ve = h.host_ipv4("ve-web")?;
    let host_addr = ve.first().context("ve-web has no address")?;
    let url = format!("http://{}:8080/", crate::host::addr(host_addr));
    let out = h.exec(&["curl", "-s", "-m", "5", &url])?;
    println!(
        "== curl {url} (port 8080 forwarded to web:80) → {}",
        out.stdout.trim()
    );
    ensure!(
        out.stdout.contains("itest demo-web"),
        "the forwarded port did not reach web"
    );
    println!("== rendered units");
    for (label, path) in [
        (
            "drop-in",
            format!(
                "/run/systemd/generator/{}.d/50-nixos-nspawn.conf",
                unit("web")
            ),
        ),
        ("nspawn", "/run/systemd/nspawn/web.nspawn".into()),
        (
            "network",
            "/run/systemd/network/20-nixos-nspawn-ve-web.network".into(),
        ),
        ("nspawn", "/run/systemd/nspawn/db.nspawn".into()),
        (
            "network",
            "/run/systemd/network/20-nixos-nspawn-vz-backend.network".into(),
        ),
    ] {
        println!("--- {label}: {path}");
        print!(
            "{}",
            h.read(&path)
                .with_context(|| format!("{path} was not rendered"))?
        );
    }
    println!("== nixos-nspawn status web");
    cli(&h, &["status", "web"])?;
    println!("== nixos-nspawn doctor");
    cli(&h, &["doctor"])?;
    println!("== cleaning up");
    for name in ["web", "db"] {
        cli(&h, &["remove", name, "--delete-state"])?;
    }
    Ok(format!(
        "2 containers created with nixos-nspawn and addressed ({}), port 8080 reached web, both removed",
        leases.join(", ")
    ))
}
