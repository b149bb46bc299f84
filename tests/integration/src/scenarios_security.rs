//! Attacks by a hostile container root on the host side (issue 11), against
//! real systemd-nspawn: each scenario plants what a container's root can plant
//! and checks that the host-side helpers neither run it unconfined nor follow
//! it, and that a default container is user-namespaced with the store and
//! its profile id-mapped.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use anyhow::{ensure, Context as _, Result};
use serde_json::{json, Value};

use crate::fixtures::{entry, Sys};
use crate::host::{addr, secs, HostOpts, TestHost, BIN_IN_HOST};
use crate::scenarios::{
    cli, cli_ok, ensure_contains, expect_running, fields, ping, ping_from, profile_dir, start_unit,
    switch_log, unit, wait_dhcp,
};
use crate::scenarios_afterboot::create_with_usr;
use crate::suite::{Outcome, Suite, Test};

pub fn all() -> Vec<Test> {
    vec![
        Test {
            name: "sec_reload_confined",
            about: "a program the container planted over switch-to-configuration runs on reload with PID 1's seccomp filters, bounding set and cgroup, and cannot open_by_handle_at",
            f: reload_confined,
        },
        Test {
            name: "sec_profile_links",
            about: "a container that remounted its profile directory rw plants system.lock as a link and a FIFO: the host creates nothing outside, never blocks",
            f: profile_links,
        },
        Test {
            name: "sec_bind_sources",
            about: "bind sources under another container's tree are refused; under a directory a container can write, a planted link is never followed",
            f: bind_sources,
        },
        Test {
            name: "sec_default_userns",
            about: "a container created with defaults is user-namespaced: store and profile owned by root inside and not remountable, a service runs, reload goes through its own systemd, DHCP works",
            f: default_userns,
        },
    ]
}

/// `key=value` lines of one probe record.
fn probe_records(text: &str) -> Vec<BTreeMap<String, String>> {
    text.split("--\n")
        .filter(|r| !r.trim().is_empty())
        .map(|r| {
            r.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(':')))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// Copy the suite's own binary (the probe, see `probe.rs`) into the
/// container's root as `/itest-probe`.
fn install_probe(h: &TestHost, name: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let exe = std::env::current_exe().context("the suite's own executable")?;
    let dest = h.path(&format!("/var/lib/machines/{name}/itest-probe"));
    std::fs::copy(&exe, &dest)
        .with_context(|| format!("copying the probe into {name}'s root ({})", dest.display()))?;
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// `entry(name, system)` with `key` set to `value`.
fn entry_with(name: &str, system: &str, key: &str, value: Value) -> Value {
    let mut e = entry(name, system);
    e[key] = value;
    e
}

/// A test host with `containers` in its registry when it boots.
fn host_with(s: &Suite, label: &str, containers: Vec<Value>) -> Result<Rc<TestHost>> {
    s.host(
        label,
        HostOpts {
            containers,
            ..Default::default()
        },
    )
}

/// Item 1: the attack that opened the host's `/`: the container's root
/// bind-mounts its own program over `<system>/bin/switch-to-configuration`
/// in its mount namespace; the next reload must run it exactly as confined as
/// the container's own processes. Compared with the container's PID 1, never
/// with absolute numbers (the test host itself runs under the outer nspawn's
/// seccomp filter, which also blocks open_by_handle_at).
fn reload_confined(s: &Suite) -> Result<Outcome> {
    let sys = s.fx.system(&Sys::new("sec-probe"))?;
    let un = entry_with("un", &sys, "userNamespacing", json!(true));
    let plain = entry_with("plain", &sys, "userNamespacing", json!(false));
    let h = host_with(s, "secreload", vec![plain, un])?;
    let mut problems = Vec::new();
    for name in ["plain", "un"] {
        start_unit(&h, name)?;
        let leader = h.machine_leader(name)?;
        install_probe(&h, name)?;
        // What the container's root can do in its own mount namespace.
        h.in_container(
            name,
            &[
                "mount",
                "--bind",
                "/itest-probe",
                &format!("{sys}/bin/switch-to-configuration"),
            ],
        )?
        .ok()
        .with_context(|| format!("{name}: planting the probe over switch-to-configuration"))?;
        h.exec_t(&["systemctl", "reload", &unit(name)], secs(120))?
            .ok()
            .with_context(|| format!("{name}: systemctl reload with the planted program"))?;
        let log = h
            .read(&format!("/proc/{leader}/root{}", crate::probe::OUT))
            .with_context(|| format!("{name}: the planted program did not run on reload"))?;
        let recs = probe_records(&log);
        let rec = recs.last().context("an empty probe log")?;
        let pid1 = h.read(&format!("/proc/{leader}/status"))?;
        let want = |k: &str| status_field(&pid1, k);
        let got = |k: &str| rec.get(k).cloned().unwrap_or_default();
        s.metric(format!(
            "sec_reload_confined: {name}: planted program Seccomp_filters {} (PID 1: {}), CapBnd {} (PID 1: {}), open_by_handle_at {}, cgroup {}",
            got("seccomp_filters"),
            want("Seccomp_filters"),
            got("cap_bnd"),
            want("CapBnd"),
            got("open_by_handle_at"),
            got("cgroup")
        ));
        if got("seccomp_filters") != want("Seccomp_filters") {
            problems.push(format!(
                "{name}: the planted program ran with {} seccomp filters, the container's PID 1 has {}",
                got("seccomp_filters"),
                want("Seccomp_filters")
            ));
        }
        if got("cap_bnd") != want("CapBnd") {
            problems.push(format!(
                "{name}: bounding set {} differs from PID 1's {}",
                got("cap_bnd"),
                want("CapBnd")
            ));
        }
        if got("no_new_privs") != want("NoNewPrivs") {
            problems.push(format!(
                "{name}: no_new_privs {} differs from PID 1's {}",
                got("no_new_privs"),
                want("NoNewPrivs")
            ));
        }
        if got("open_by_handle_at") == "ok" {
            problems.push(format!("{name}: open_by_handle_at succeeded"));
        }
        // Inside the container's cgroup namespace every line of a member of
        // the container's subtree is below "/"; a process left in the
        // unit's own cgroup shows up as "/..".
        if got("cgroup").contains("/..") || got("cgroup").is_empty() {
            problems.push(format!(
                "{name}: the planted program ran outside the container's cgroup: {}",
                got("cgroup")
            ));
        }
        if got("args") != "test" {
            problems.push(format!("{name}: it ran with arguments {:?}", got("args")));
        }
        let j = h.journal(&unit(name), 300);
        if !j.contains("itest-probe ran: seccomp_filters=") {
            problems.push(format!(
                "{name}: the planted program's output is not in the unit's journal"
            ));
        }
    }
    ensure!(
        problems.is_empty(),
        "a program the container planted ran less confined than the container:\n  {}",
        problems.join("\n  ")
    );
    Ok(Outcome::Pass)
}

/// Item 2: `system.lock` in the profile directory, planted as a link to a
/// host path and as a FIFO by a container (without user namespacing) that
/// remounted its read-only profile directory read-write.
fn profile_links(s: &Suite) -> Result<Outcome> {
    let v1 = s.fx.system(&Sys::new("sec-lock-v1"))?;
    let v2 = s.fx.system(&Sys::new("sec-lock-v2"))?;
    let mk = |sys: &str| {
        let mut e = entry("pl", sys);
        e["userNamespacing"] = json!(false);
        e["timeoutStartSec"] = json!("30s");
        e
    };
    let h = host_with(s, "seclock", vec![mk(&v1)])?;
    start_unit(&h, "pl")?;
    // The mode's boundary as SECURITY.md states it: without a user namespace
    // the container's root can make its read-only store bind writable
    // (checked with findmnt and put back at once; nothing is written).
    let store = h
        .in_container(
            "pl",
            &[
                "sh",
                "-c",
                "mount -o remount,rw,bind /nix/store && findmnt -no OPTIONS /nix/store; \
                 mount -o remount,ro,bind /nix/store",
            ],
        )?
        .ok()
        .context("remounting /nix/store inside a container without user namespacing")?;
    ensure!(
        store.trim().starts_with("rw"),
        "a container without user namespacing could not remount /nix/store rw (SECURITY.md says it can): {store:?}"
    );
    let planted = "/etc/itest-planted-by-pl";
    h.in_container(
        "pl",
        &[
            "sh",
            "-c",
            &format!(
                "mount -o remount,rw,bind /nix/var/nix/profiles && \
                 rm -f /nix/var/nix/profiles/system.lock && \
                 ln -s {planted} /nix/var/nix/profiles/system.lock"
            ),
        ],
    )?
    .ok()
    .context("the container's root remounting its profile directory and planting a link")?;
    // Reload (activate switches the profile under its lock).
    h.write_entry(&mk(&v2))?;
    h.daemon_reload()?;
    let reload = h.exec_t(&["systemctl", "reload", &unit("pl")], secs(120))?;
    ensure!(
        !h.exists(planted),
        "the host followed the planted system.lock link and created {planted} (reload: {})",
        reload.describe_failure()
    );
    ensure!(
        reload.success(),
        "reload after the planted link: {}",
        reload.describe_failure()
    );
    let lock = format!("{}/system.lock", profile_dir("pl"));
    let meta = std::fs::symlink_metadata(h.path(&lock))?;
    ensure!(
        meta.file_type().is_file(),
        "{lock} is not a regular file again after the reload"
    );

    // A FIFO: opening it for writing would block the bootstrap until the
    // start times out.
    h.in_container(
        "pl",
        &[
            "sh",
            "-c",
            "rm -f /nix/var/nix/profiles/system.lock && mkfifo /nix/var/nix/profiles/system.lock",
        ],
    )?
    .ok()
    .context("planting a FIFO at system.lock")?;
    let t0 = Instant::now();
    let restart = h.exec_t(&["systemctl", "restart", &unit("pl")], secs(90))?;
    ensure!(
        restart.success(),
        "restart with a FIFO planted at system.lock: {} (after {:.1} s)",
        restart.describe_failure(),
        t0.elapsed().as_secs_f64()
    );
    expect_running(&h, "pl")?;
    ensure!(!h.exists(planted), "{planted} appeared on the host");
    let j = h.journal(&unit("pl"), 200);
    ensure_contains(
        &j,
        "system.lock",
        "the unit's journal (the warning about the replaced lock)",
    )?;
    Ok(Outcome::Pass)
}

/// Item 3: bind-mount sources the host must create, where a container
/// planted links on the way.
fn bind_sources(s: &Suite) -> Result<Outcome> {
    let sys = s.fx.system(&Sys::new("sec-binds"))?;
    let binds = json!(["/usr:/usr:ro", "/srv/itest-shared:/shared"]);
    let evil = entry_with("evil", &sys, "bindMounts", binds);
    let h = host_with(s, "secbinds", vec![evil])?;
    start_unit(&h, "evil")?;
    // Links to an existing host directory: mkdir -p through them creates
    // directories there.
    let (a, b) = ("/etc/itest-evil-a", "/etc/itest-evil-b");
    h.in_container(
        "evil",
        &["sh", "-c", "ln -s /etc /share && ln -s /etc /shared/sub"],
    )?
    .ok()
    .context("planting links in evil's tree and in its shared directory")?;
    let binds = |source: &str| json!(["/usr:/usr:ro", format!("{source}:/data")]);
    let v1 = entry_with(
        "victim1",
        &sys,
        "bindMounts",
        binds("/var/lib/machines/evil/share/itest-evil-a"),
    );
    let v2 = entry_with(
        "victim2",
        &sys,
        "bindMounts",
        binds("/srv/itest-shared/sub/itest-evil-b"),
    );
    h.write_entry(&v1)?;
    h.write_entry(&v2)?;
    h.daemon_reload()?;
    let r1 = h.exec_t(&["systemctl", "start", &unit("victim1")], secs(60))?;
    let r2 = h.exec_t(&["systemctl", "start", &unit("victim2")], secs(60))?;
    let mut problems = Vec::new();
    for p in [a, b] {
        if h.exists(p) {
            problems.push(format!("{p} was created on the host"));
        }
    }
    if r1.success() {
        problems.push("victim1 (a source inside /var/lib/machines) started".into());
    }
    if r2.success() {
        problems.push("victim2 (a source under a planted link) started".into());
    }
    // The reasons, from the helpers run by hand.
    let b1 = h.exec(&[&format!("{BIN_IN_HOST}/nixos-nspawn-bootstrap"), "victim1"])?;
    let t1 = format!("{}{}", b1.stdout, b1.stderr);
    if !(t1.contains("victim1.json")
        && t1.contains("bindMounts[1]")
        && t1.contains("/var/lib/machines"))
    {
        problems.push(format!(
            "bootstrap of victim1 does not name the file, field and value: {t1}"
        ));
    }
    let b2 = h.exec(&[&format!("{BIN_IN_HOST}/nixos-nspawn-bootstrap"), "victim2"])?;
    let t2 = format!("{}{}", b2.stdout, b2.stderr);
    if b2.success() || !t2.contains("symbolic link") {
        problems.push(format!(
            "bootstrap of victim2 does not refuse the link: {t2}"
        ));
    }
    for p in [a, b] {
        if h.exists(p) {
            problems.push(format!(
                "{p} was created on the host by a bootstrap run by hand"
            ));
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n  "));
    Ok(Outcome::Pass)
}

/// Item 5: what `nixos-nspawn create` makes without any flag.
fn default_userns(s: &Suite) -> Result<Outcome> {
    let v1 = s.fx.system(&Sys::new("sec-dflt-v1").http(18088))?;
    let v2 = s.fx.system(&Sys::new("sec-dflt-v2").http(18088))?;
    let h = s.host("secdflt", HostOpts::default())?;
    let t0 = Instant::now();
    create_with_usr(&h, "dflt", &v1, &["--no-autostart"])
        .context("nixos-nspawn create with default options")?;
    let e: Value = serde_json::from_str(&h.read("/etc/nixos-nspawn/containers/dflt.json")?)?;
    ensure!(
        e["userNamespacing"] == json!(true),
        "create wrote userNamespacing = {} by default",
        e["userNamespacing"]
    );
    expect_running(&h, "dflt")?;
    let leader = h.machine_leader("dflt")?;
    let map = h.read(&format!("/proc/{leader}/uid_map"))?;
    let base = map.split_whitespace().nth(1).unwrap_or("0").to_string();
    ensure!(
        base != "0",
        "the default container is not user-namespaced: uid_map {map:?}"
    );
    let owner = |p: &str| -> Result<String> {
        Ok(h.in_container("dflt", &["stat", "-c", "%u:%g", p])?
            .ok()?
            .trim()
            .to_string())
    };
    let store_path = owner(&v1)?;
    let profiles = owner("/nix/var/nix/profiles")?;
    let link = owner("/nix/var/nix/profiles/system-1-link")?;
    s.metric(format!(
        "sec_default_userns: UID base {base}; inside: {v1} {store_path}, /nix/var/nix/profiles {profiles}"
    ));
    ensure!(
        store_path == "0:0" && profiles.starts_with("0:") && link.starts_with("0:"),
        "inside the user-namespaced guest the store path is owned by {store_path}, the profile directory by {profiles}, system-1-link by {link} (expected root: the binds are id-mapped)"
    );
    // The read-only binds stay read-only for the container's root.
    for p in ["/nix/store", "/nix/var/nix/profiles"] {
        let r = h.in_container("dflt", &["mount", "-o", "remount,rw,bind", p])?;
        ensure!(
            !r.success(),
            "the user-namespaced container's root remounted {p} read-write"
        );
    }
    // A service runs and the network works both ways.
    let (a, _) = wait_dhcp(&h, "dflt", t0, secs(30))?;
    ping(&h, addr(&a))?;
    let gw = h
        .in_container("dflt", &["ip", "-4", "route", "show", "default"])?
        .ok()?;
    let gw = gw
        .split_whitespace()
        .skip_while(|w| *w != "via")
        .nth(1)
        .context("the guest has no default route")?
        .to_string();
    ping_from(&h, "dflt", &gw)?;
    let body = crate::cmd::wait_for("the guest's httpd", secs(20), crate::host::ms(100), || {
        let o = h.exec(&[
            "curl",
            "-s",
            "-m",
            "2",
            &format!("http://{}:18088/", addr(&a)),
        ])?;
        Ok(o.stdout.contains("itest sec-dflt-v1").then_some(o.stdout))
    })?;
    ensure_contains(&body, "sec-dflt-v1", "the guest's httpd")?;
    // A reload through the container's own service manager: switch's parent
    // is the guest's systemd (PID 1 of its namespace).
    cli_ok(&h, &["update", "dflt", "--system", &v2]).context("nixos-nspawn update (reload)")?;
    ensure!(
        h.machine_leader("dflt")? == leader,
        "update with only a new system restarted the container"
    );
    let log = switch_log(&h, "dflt")?;
    let last = log.last().cloned().unwrap_or_default();
    let f = fields(&last);
    let pidns = h.read_link(&format!("/proc/{leader}/ns/pid"))?;
    ensure!(
        f.get("tag").map(String::as_str) == Some("sec-dflt-v2")
            && f.get("pidns") == Some(&pidns)
            && f.get("ppid").map(String::as_str) == Some("1"),
        "the reload's switch-to-configuration: {last:?} (expected tag sec-dflt-v2, the container's PID namespace {pidns}, parent PID 1)"
    );
    let st = cli(&h, &["status", "dflt"])?;
    ensure!(st.success(), "{}", st.describe_failure());
    Ok(Outcome::Pass)
}
