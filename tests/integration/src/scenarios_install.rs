//! Installing and checking a host: `nixos-nspawn doctor` on a real systemd
//! host (healthy, then with networkd stopped and with the generator gone),
//! and what the CLI says then (status, create).

use anyhow::{ensure, Context as _, Result};
use serde_json::Value;

use crate::host::{secs, HostOpts, TestHost, BIN_IN_HOST, CLI, GENERATOR};
use crate::scenarios::{unit, wait_dhcp};
use crate::suite::{Outcome, Suite, Test};

pub fn all() -> Vec<Test> {
    vec![Test {
        name: "doctor_real_host",
        about: "doctor: all ok with a running veth container (networkd uses our file); networkd stopped and the generator removed are problems with fixes; status and create say so",
        f: doctor_real_host,
    }]
}

fn cli(h: &TestHost, args: &[&str]) -> Result<crate::cmd::Out> {
    let exe = format!("{BIN_IN_HOST}/{CLI}");
    let mut argv = vec![exe.as_str()];
    argv.extend_from_slice(args);
    h.exec_t(&argv, secs(180))
}

/// `doctor --json`: (exit code, findings).
fn doctor(h: &TestHost) -> Result<(i32, Vec<Value>)> {
    let out = cli(h, &["doctor", "--json"])?;
    let v: Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("doctor --json: {}", out.describe_failure()))?;
    Ok((
        out.code.unwrap_or(-1),
        v.as_array().cloned().unwrap_or_default(),
    ))
}

fn finding<'a>(f: &'a [Value], check: &str) -> Vec<&'a Value> {
    f.iter().filter(|x| x["check"] == check).collect()
}

fn levels(f: &[Value], check: &str) -> Vec<String> {
    finding(f, check)
        .iter()
        .map(|x| x["level"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn doctor_real_host(s: &Suite) -> Result<Outcome> {
    let sys = s.fx.system(&crate::fixtures::Sys::new("doctor"))?;
    let h = s.host("doctor", HostOpts::default())?;

    // Nothing registered yet: no problem (Nix 2.8 or nss may be warnings).
    let (code, f) = doctor(&h)?;
    ensure!(code == 0, "doctor on a fresh host exits {code}: {f:#?}");
    ensure!(levels(&f, "generator") == ["ok"], "generator: {f:#?}");

    let t0 = std::time::Instant::now();
    cli(
        &h,
        &["create", "web", "--system", &sys, "--bind", "/usr:/usr:ro"],
    )?
    .ok()
    .context("nixos-nspawn create")?;
    wait_dhcp(&h, "web", t0, secs(60))?;
    let (code, f) = doctor(&h)?;
    ensure!(
        code == 0,
        "doctor with a running container exits {code}: {f:#?}"
    );
    for check in [
        "root",
        "systemd",
        "generator",
        "registry",
        "units",
        "networkd",
        "network-files",
        "forwarding",
    ] {
        ensure!(levels(&f, check) == ["ok"], "{check} is not ok: {f:#?}");
    }
    // What networkd says about the link, read the way doctor reads it.
    let desc: Value = serde_json::from_str(&h.ok(&["networkctl", "--json=short", "status"])?)?;
    let ve = desc["Interfaces"]
        .as_array()
        .and_then(|a| a.iter().find(|l| l["Name"] == "ve-web"))
        .context("networkctl --json has no ve-web")?;
    ensure!(
        ve["NetworkFile"] == "/run/systemd/network/20-nixos-nspawn-ve-web.network",
        "ve-web's NetworkFile: {}",
        ve["NetworkFile"]
    );

    // networkd stopped: a problem with its fix, exit 1.
    h.ok(&[
        "systemctl",
        "stop",
        "systemd-networkd.socket",
        "systemd-networkd.service",
    ])?;
    let (code, f) = doctor(&h)?;
    ensure!(code == 1, "doctor with networkd stopped exits {code}");
    let n = finding(&f, "networkd");
    ensure!(
        n.len() == 1
            && n[0]["level"] == "problem"
            && n[0]["fix"]
                .as_str()
                .unwrap_or("")
                .contains("systemctl start systemd-networkd"),
        "networkd finding: {n:#?}"
    );
    h.ok(&[
        "systemctl",
        "start",
        "systemd-networkd.socket",
        "systemd-networkd.service",
    ])?;

    // A stopped container: status says since when it is stopped.
    h.ok(&["systemctl", "stop", &unit("web")])?;
    let st: Value = serde_json::from_str(&cli(&h, &["status", "web", "--json"])?.ok()?)?;
    let stopped_at = h.prop(&unit("web"), "InactiveEnterTimestamp")?;
    ensure!(
        st["unit"]["since"] == stopped_at.as_str(),
        "status since {} but systemd says it stopped at {stopped_at}",
        st["unit"]["since"]
    );

    // The generator gone: doctor names it, status and create say so.
    std::fs::remove_file(h.dir.join("generators").join(GENERATOR))?;
    h.daemon_reload()?;
    let (code, f) = doctor(&h)?;
    ensure!(code == 1, "doctor without the generator exits {code}");
    ensure!(levels(&f, "generator") == ["problem"], "{f:#?}");
    let units = finding(&f, "units");
    ensure!(
        units.iter().any(|u| u["message"]
            .as_str()
            .unwrap_or("")
            .contains("no drop-in from the generator for 1 of 1 containers: web")),
        "units: {units:#?}"
    );
    let st = cli(&h, &["status", "web"])?.ok()?;
    ensure!(
        st.contains("Problem:     systemd has no drop-in from the nixos-nspawn generator")
            && st.contains("nixos-nspawn doctor"),
        "status without the generator:\n{st}"
    );
    let out = cli(
        &h,
        &["create", "db", "--system", &sys, "--bind", "/usr:/usr:ro"],
    )?;
    let top = out.stderr.lines().next().unwrap_or("");
    ensure!(
        out.code == Some(1)
            && top.starts_with(
                "error: creating db failed: the nixos-nspawn generator is not installed"
            )
            && top.ends_with("everything was rolled back"),
        "create without the generator: {}",
        out.describe_failure()
    );
    ensure!(
        !h.exists("/etc/nixos-nspawn/containers/db.json"),
        "create without the generator left its entry"
    );
    Ok(Outcome::Pass)
}
