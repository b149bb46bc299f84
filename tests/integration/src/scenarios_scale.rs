//! Many containers at once (issue 13): autostart containers at the test host's
//! boot all come up and get their addresses, within the kernel limits the
//! project installs.
//!
//! The limit that broke 50 containers is `fs.inotify.max_user_instances`,
//! counted for root across the whole machine (user namespaces do not help, see
//! crates/core/src/limits.rs). A test host cannot set it (its `/proc/sys` is
//! read-only; the outer machine's value applies) and shares it with every other
//! test host on this machine, so the scenario raises the *outer* value to what
//! `dist/sysctl.d/60-nixos-nspawn.conf` sets on a real host (8192) for its
//! duration and restores it after ([`watch::OuterLimit`]); it says so in its
//! output. It does not run containers at the stock 128: that would starve the
//! other test hosts on the machine. What they need is measured instead
//! (instances per container, reported) and the check is unit-tested
//! (`nixos_nspawn_core::limits`).

use std::collections::BTreeMap;

use anyhow::{ensure, Result};
use nixos_nspawn_core::limits;
use serde_json::json;

use crate::cmd::wait_for;
use crate::fixtures::{entry, Sys};
use crate::host::{ms, secs, HostOpts};
use crate::scenarios::{cli, unit};
use crate::suite::{Outcome, Suite, Test};
use crate::watch;

pub fn all() -> Vec<Test> {
    vec![Test {
        name: "scale_autostart",
        about: "32 autostart containers in the registry at boot: all active, 0 failed, all addressed; boot→active time, inotify instances per container (outer limit raised to the installed 8192)",
        f: scale_autostart,
    }]
}

const N: usize = 32;

fn scale_autostart(s: &Suite) -> Result<Outcome> {
    let limit = watch::OuterLimit::ensure(limits::RECOMMENDED_INSTANCES)?;
    s.metric(format!(
        "scale_autostart [{}]: {}",
        s.os.label,
        limit.describe()
    ));
    let sys = s.fx.system(&Sys::new("scale"))?;
    let names: Vec<String> = (0..N).map(|i| format!("s{i:02}")).collect();
    let containers = names
        .iter()
        .map(|n| {
            let mut e = entry(n, &sys);
            e["autoStart"] = json!(true);
            e
        })
        .collect();
    let h = s.host(
        "scale",
        HostOpts {
            containers,
            boot_timeout: Some(secs(300)),
            ..Default::default()
        },
    )?;

    // Booting included machines.target: every container is up, none failed.
    let units: Vec<String> = names.iter().map(|n| unit(n)).collect();
    let mut states = BTreeMap::new();
    for kv in h.show_units(
        &units,
        &["Id", "ActiveState", "ActiveEnterTimestampMonotonic"],
    )? {
        if let Some(id) = kv.get("Id") {
            states.insert(id.clone(), kv);
        }
    }
    let not_active: Vec<String> = units
        .iter()
        .filter(|u| {
            states
                .get(*u)
                .and_then(|k| k.get("ActiveState"))
                .map(String::as_str)
                != Some("active")
        })
        .map(|u| {
            format!(
                "{u}={}",
                states
                    .get(u)
                    .and_then(|k| k.get("ActiveState"))
                    .map_or("?", String::as_str)
            )
        })
        .collect();
    let failed = h.ok(&["systemctl", "--failed", "--no-legend", "--plain"])?;
    ensure!(
        not_active.is_empty(),
        "{} of {N} containers are not active after boot: {}\nfailed units: {failed}",
        not_active.len(),
        not_active.join(" ")
    );
    ensure!(
        !failed.contains("systemd-nspawn@"),
        "failed container units after boot:\n{failed}"
    );
    let userspace = h.userspace_monotonic_us()?;
    let last_active = states
        .values()
        .filter_map(|k| k.get("ActiveEnterTimestampMonotonic")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);

    // Every one has its derived address on host0.
    let leaders = wait_for(
        &format!("all {N} containers' init processes"),
        secs(30),
        ms(200),
        || {
            let l = watch::container_leaders(h.leader);
            Ok((l.len() >= N).then_some(l))
        },
    )?;
    let unaddressed = wait_for("an IPv4 address on every host0", secs(60), ms(200), || {
        let missing: Vec<&String> = leaders
            .iter()
            .filter(|(_, pid)| watch::ipv4_addresses(**pid).is_empty())
            .map(|(n, _)| n)
            .collect();
        Ok(missing.is_empty().then_some(()))
    });
    unaddressed?;

    // What they hold of root's inotify budget.
    let per_container: Vec<usize> = leaders
        .values()
        .map(|pid| watch::inotify_instances(&watch::descendants(*pid)))
        .collect();
    let host_tree = watch::descendants(h.leader);
    let total_host = watch::inotify_instances(&host_tree);
    let cpu = watch::cpu_seconds(&host_tree);
    let pss_mib = watch::pss_kib(&host_tree) as f64 / 1024.0;
    let avg = per_container.iter().sum::<usize>() as f64 / per_container.len().max(1) as f64;
    let max = per_container.iter().max().copied().unwrap_or(0);
    ensure!(
        max as u64 <= limits::INSTANCES_PER_CONTAINER,
        "a container holds {max} inotify instances, more than limits::INSTANCES_PER_CONTAINER ({}): the warning threshold is too low",
        limits::INSTANCES_PER_CONTAINER
    );

    // With the installed limit, apply has no limit warning to give.
    let dry = cli(&h, &["apply", "--dry-run"])?;
    ensure!(
        !dry.stderr.contains("max_user_instances"),
        "apply warns about the limit although it is {}:\n{}",
        limits::RECOMMENDED_INSTANCES,
        dry.stderr
    );
    s.metric(format!(
        "scale_autostart [{}]: {N} autostart containers active {:.1} s after the test host's systemd started (test host booted in {:.1} s), 0 failed, all addressed; inotify instances per container avg {avg:.1} / max {max}, whole test host {total_host}; the test host's processes: {cpu:.1} s CPU so far, {pss_mib:.0} MiB PSS; load {}",
        s.os.label,
        last_active.saturating_sub(userspace) as f64 / 1e6,
        h.boot_time.as_secs_f64(),
        watch::loadavg()
    ));
    drop(h);
    drop(limit);
    Ok(Outcome::Pass)
}
