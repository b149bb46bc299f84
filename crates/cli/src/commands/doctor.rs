//! `doctor [--json]`: check that this host can run containers, and say how to
//! fix what is wrong. Every finding is `ok`, `warning` (works, with a
//! limitation) or `problem` (something does not work); the exit status is 1
//! when there is a problem.
//!
//! Only machine-readable sources are read: `systemctl show` properties,
//! `networkctl --json=short status`, `/proc/sys`, the registry through the
//! library, the generator's own drop-ins and `--version` lines, and the
//! `hosts:` line of `/etc/nsswitch.conf`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use nixos_nspawn_core::registry::{self, Entry, NetworkMode};
use nixos_nspawn_core::render;

use crate::args::DoctorArgs;
use crate::nixbuild::{tool_version, version_cmp, FLAKE_MIN_NIX};
use crate::report::Printable;
use crate::systemd::UnitState;
use crate::{Ctx, EXIT_ERROR, EXIT_OK};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warning,
    Problem,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What was checked: root, systemd, generator, registry, units, networkd,
    /// network-files, forwarding, nix, nss.
    pub check: &'static str,
    pub level: Level,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn ok(check: &'static str, message: impl Into<String>) -> Finding {
    Finding {
        check,
        level: Level::Ok,
        message: message.into(),
        fix: None,
    }
}

fn warning(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        check,
        level: Level::Warning,
        message: message.into(),
        fix: Some(fix.into()),
    }
}

fn problem(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        level: Level::Problem,
        ..warning(check, message, fix)
    }
}

/// Where systemd looks for system generators, highest priority first
/// (systemd.generator(7); `/lib` for split-/usr systems). A generator in
/// a directory masks one of the same name further down.
pub const GENERATOR_DIRS: &[&str] = &[
    "/run/systemd/system-generators",
    "/etc/systemd/system-generators",
    "/usr/local/lib/systemd/system-generators",
    "/usr/lib/systemd/system-generators",
    "/lib/systemd/system-generators",
];

pub const GENERATOR: &str = "nixos-nspawn-generator";

/// The checks of the host's own setup, in the order doctor reports them: on a
/// host set up for nixos-nspawn with a running veth container each is `ok`
/// (the unit tests and the integration suite's doctor scenario hold doctor to
/// that). `nss`, `nix` and `limits` depend on the distribution and are not here.
pub const HOST_CHECKS: &[&str] = &[
    "root",
    "systemd",
    "generator",
    "registry",
    "units",
    "networkd",
    "network-files",
    "forwarding",
];

/// One installed generator.
#[derive(Debug, Clone)]
struct Installed {
    /// Where systemd finds it (logical path).
    path: PathBuf,
    /// The executable it resolves to (None: a dangling link).
    target: Option<PathBuf>,
}

/// Every `nixos-nspawn-generator` in the generator directories, in priority
/// order; a directory that is a link to one already seen (`/lib` ->
/// `usr/lib`) is not counted twice.
fn installed_generators(ctx: &Ctx) -> Vec<Installed> {
    let mut seen_dirs = Vec::new();
    let mut out = Vec::new();
    for dir in GENERATOR_DIRS {
        let real_dir = ctx.root.join(dir);
        let canonical = real_dir.canonicalize().unwrap_or(real_dir.clone());
        if seen_dirs.contains(&canonical) {
            continue;
        }
        seen_dirs.push(canonical);
        let file = real_dir.join(GENERATOR);
        if std::fs::symlink_metadata(&file).is_err() {
            continue;
        }
        out.push(Installed {
            path: Path::new(dir).join(GENERATOR),
            target: file.canonicalize().ok(),
        });
    }
    out
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// How to install the generator, as precisely as this CLI's own location
/// allows (a Nix package has the link next to its binaries).
fn generator_fix() -> String {
    let own = std::env::current_exe()
        .ok()
        .and_then(|e| e.canonicalize().ok())
        .and_then(|e| e.parent().and_then(Path::parent).map(Path::to_path_buf));
    if let Some(prefix) = own {
        let packaged = prefix.join("lib/systemd/system-generators").join(GENERATOR);
        if packaged.exists() && !prefix.starts_with("/usr") {
            return format!(
                "mkdir -p /etc/systemd/system-generators && ln -s {} /etc/systemd/system-generators/ && systemctl daemon-reload",
                packaged.display()
            );
        }
    }
    "install nixos-nspawn as the README's Install section says (the .deb or scripts/install put the generator \
     where systemd looks), then systemctl daemon-reload"
        .into()
}

fn check_generator(ctx: &Ctx, findings: &mut Vec<Finding>) {
    let all = installed_generators(ctx);
    let Some(first) = all.first() else {
        let dirs: Vec<&str> = GENERATOR_DIRS.to_vec();
        findings.push(problem(
            "generator",
            format!(
                "the generator is not installed: no {GENERATOR} in {}, so systemd-nspawn@NAME.service knows nothing of the registry",
                dirs.join(", ")
            ),
            generator_fix(),
        ));
        return;
    };
    let shown = first.path.display();
    let Some(target) = &first.target else {
        findings.push(problem(
            "generator",
            format!("{shown} is a dangling link"),
            format!(
                "remove it and install the generator again: {}",
                generator_fix()
            ),
        ));
        return;
    };
    if target == Path::new("/dev/null") {
        findings.push(problem(
            "generator",
            format!("{shown} is masked (a link to /dev/null)"),
            format!("rm {shown}; systemctl daemon-reload"),
        ));
        return;
    }
    if !is_executable(target) {
        findings.push(problem(
            "generator",
            format!("{shown} ({}) is not an executable file", target.display()),
            generator_fix(),
        ));
        return;
    }
    // The generator points the units at the helpers next to its executable.
    let dir = target.parent().unwrap_or(Path::new("/"));
    let missing: Vec<String> = [render::BOOTSTRAP_EXE, render::ACTIVATE_EXE]
        .iter()
        .filter(|h| !is_executable(&dir.join(h)))
        .map(|h| dir.join(h).display().to_string())
        .collect();
    if !missing.is_empty() {
        findings.push(problem(
            "generator",
            format!(
                "{shown} resolves to {}, but its helpers are missing: {}",
                target.display(),
                missing.join(", ")
            ),
            "reinstall nixos-nspawn (the helpers belong next to the generator's executable)",
        ));
        return;
    }
    let version = nixos_nspawn_core::hosttools::output(target, &["--version"])
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let mine = nixos_nspawn_core::version_line(GENERATOR);
    match version {
        Some(v) if v == mine => findings.push(ok(
            "generator",
            format!("{shown} -> {} ({v})", target.display()),
        )),
        Some(v) => findings.push(warning(
            "generator",
            format!(
                "{shown} -> {} is {v:?}, this CLI is {}",
                target.display(),
                nixos_nspawn_core::VERSION
            ),
            "install the same version of both (two installations?); after an upgrade systemctl daemon-reload",
        )),
        None => findings.push(warning(
            "generator",
            format!("{shown} -> {} does not answer --version", target.display()),
            "it is older than this CLI: reinstall nixos-nspawn, then systemctl daemon-reload",
        )),
    }
    for other in &all[1..] {
        findings.push(warning(
            "generator",
            format!(
                "another generator is installed at {} (not run: {shown} masks it)",
                other.path.display()
            ),
            "remove one of the two installations",
        ));
    }
}

/// The helper a generated drop-in runs (`ExecStartPre=`), from the drop-in
/// file itself (the generator's own output).
fn drop_in_helper(ctx: &Ctx, drop_in: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(ctx.root.join(drop_in)).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("ExecStartPre="))?;
    let exe = line
        .trim_start_matches(['-', '@', ':', '+', '!'])
        .split_whitespace()
        .next()?
        .trim_matches('"');
    Some(PathBuf::from(exe))
}

fn check_units(ctx: &Ctx, entries: &[&Entry], findings: &mut Vec<Finding>) {
    if entries.is_empty() {
        findings.push(ok("units", "no containers are registered"));
        return;
    }
    let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
    let drop_ins = match ctx.sys.drop_ins(&names) {
        Ok(d) => d,
        Err(e) => {
            findings.push(problem(
                "units",
                format!("cannot ask systemd about the containers' units: {e:#}"),
                "check that systemctl works (systemctl status)",
            ));
            return;
        }
    };
    let suffix = |n: &str| {
        format!(
            "/{}.d/{}",
            nixos_nspawn_core::paths::unit_name(n),
            render::DROPIN_NAME
        )
    };
    let mut unloaded = Vec::new();
    let mut stale = Vec::new();
    for n in &names {
        let ours = drop_ins
            .get(n)
            .and_then(|d| d.iter().find(|p| p.ends_with(&suffix(n))));
        match ours {
            None => unloaded.push(n.clone()),
            Some(p) => {
                if let Some(helper) = drop_in_helper(ctx, p) {
                    if !is_executable(&ctx.root.join(&helper)) {
                        stale.push(format!("{n} ({} is gone)", helper.display()));
                    }
                }
            }
        }
    }
    if !unloaded.is_empty() {
        findings.push(problem(
            "units",
            format!(
                "systemd has no drop-in from the generator for {} of {} containers: {}",
                unloaded.len(),
                names.len(),
                unloaded.join(", ")
            ),
            "systemctl daemon-reload (the generator runs at every reload; if that does not help, see the generator finding and journalctl -b -t nixos-nspawn-generator)",
        ));
    }
    if !stale.is_empty() {
        findings.push(problem(
            "units",
            format!(
                "the loaded drop-ins name helpers that are not there any more: {}",
                stale.join(", ")
            ),
            "systemctl daemon-reload (nixos-nspawn was moved or upgraded since the last reload)",
        ));
    }
    if unloaded.is_empty() && stale.is_empty() {
        findings.push(ok(
            "units",
            format!(
                "all {} registered containers have the generator's drop-in",
                names.len()
            ),
        ));
    }
}

/// The links networkd should configure with our files for the running
/// containers: (link name, expected network file, what it is for).
fn expected_links(entries: &[&Entry], running: &[&str]) -> Vec<(String, PathBuf, String)> {
    let mut out = Vec::new();
    let mut zones = std::collections::BTreeSet::new();
    for e in entries
        .iter()
        .filter(|e| running.contains(&e.name.as_str()))
    {
        match e.network.mode {
            NetworkMode::Veth => out.push((
                render::veth_link_name(&e.name),
                render::veth_network_path(&e.name),
                format!("container {}", e.name),
            )),
            NetworkMode::Zone => {
                if let Some(z) = &e.network.zone {
                    zones.insert(z.clone());
                }
            }
            _ => {}
        }
    }
    for z in zones {
        out.push((
            render::zone_link_name(&z),
            render::zone_network_path(&z),
            format!("zone {z}"),
        ));
    }
    out
}

fn check_network(
    ctx: &Ctx,
    entries: &[&Entry],
    states: &BTreeMap<String, UnitState>,
    findings: &mut Vec<Finding>,
) {
    let private: Vec<&&Entry> = entries
        .iter()
        .filter(|e| matches!(e.network.mode, NetworkMode::Veth | NetworkMode::Zone))
        .collect();
    if private.is_empty() {
        findings.push(ok(
            "networkd",
            "no container uses a veth or zone network (networkd not needed)",
        ));
        return;
    }
    let networkd = ctx.sys.other_unit("systemd-networkd.service");
    match networkd {
        Ok(s) if s.active_state == "active" => {
            findings.push(ok("networkd", "systemd-networkd is running"));
        }
        Ok(s) => {
            findings.push(problem(
                "networkd",
                format!(
                    "systemd-networkd is {} ({}): containers with a veth or zone network get no address and no NAT",
                    s.active_state, s.sub_state
                ),
                "systemctl start systemd-networkd (the containers' units want it; journalctl -b -u systemd-networkd says why it stopped)",
            ));
            return;
        }
        Err(e) => {
            findings.push(problem(
                "networkd",
                format!("cannot ask systemd about systemd-networkd: {e:#}"),
                "check that systemctl works",
            ));
            return;
        }
    }
    let running: Vec<&str> = states
        .iter()
        .filter(|(_, s)| s.is_running())
        .map(|(n, _)| n.as_str())
        .collect();
    let expected = expected_links(entries, &running);
    if expected.is_empty() {
        findings.push(ok(
            "network-files",
            "no running container with a veth or zone network",
        ));
    } else {
        check_network_files(ctx, &expected, findings);
    }
    check_forwarding(ctx, findings);
}

fn check_network_files(
    ctx: &Ctx,
    expected: &[(String, PathBuf, String)],
    findings: &mut Vec<Finding>,
) {
    let desc = match ctx.sys.network_description() {
        Ok(d) => d,
        Err(e) => {
            findings.push(warning(
                "network-files",
                format!("cannot ask networkd which files it uses: {e:#}"),
                "networkctl status ve-NAME shows the Network File by hand",
            ));
            return;
        }
    };
    let links = desc["Interfaces"].as_array().cloned().unwrap_or_default();
    let find = |name: &str| {
        links.iter().find(|l| {
            l["Name"].as_str() == Some(name)
                || l["AlternativeNames"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|n| n.as_str() == Some(name)))
        })
    };
    let mut bad = Vec::new();
    for (link, file, what) in expected {
        let want = file.display().to_string();
        match find(link) {
            None => bad.push(format!("{link} ({what}) does not exist")),
            Some(l) => match l["NetworkFile"].as_str() {
                Some(f) if f == want => {}
                Some(f) => bad.push(format!("{link} ({what}) is configured by {f}, not {want}")),
                None => bad.push(format!(
                    "{link} ({what}) is {} by networkd, without a network file",
                    l["SetupState"].as_str().unwrap_or("not managed")
                )),
            },
        }
    }
    if bad.is_empty() {
        findings.push(ok(
            "network-files",
            format!(
                "networkd configures all {} container links with the generated files",
                expected.len()
            ),
        ));
    } else {
        findings.push(problem(
            "network-files",
            format!("networkd does not use the generated files: {}", bad.join("; ")),
            "networkctl reload (the generator writes /run/systemd/network/20-nixos-nspawn-*; a file of yours with a lower name in /etc/systemd/network that matches ve-*/vz-* wins over them: rename it)",
        ));
    }
}

fn check_forwarding(ctx: &Ctx, findings: &mut Vec<Finding>) {
    let file = ctx.root.join("/proc/sys/net/ipv4/ip_forward");
    match std::fs::read_to_string(&file).map(|s| s.trim().to_owned()) {
        Ok(v) if v == "1" => findings.push(ok("forwarding", "IPv4 forwarding is on")),
        Ok(v) => findings.push(problem(
            "forwarding",
            format!("IPv4 forwarding is off (net.ipv4.ip_forward = {v}): containers reach the host but nothing beyond it"),
            "networkd turns it on when a container link comes up (IPMasquerade=); something turned it off again: \
             grep -rs forward /etc/sysctl.conf /etc/sysctl.d; sysctl -w net.ipv4.ip_forward=1",
        )),
        Err(e) => findings.push(warning(
            "forwarding",
            format!("cannot read {}: {e}", file.display()),
            "sysctl net.ipv4.ip_forward shows it by hand",
        )),
    }
}

/// Kernel limits for the registered containers and colliding derived
/// addresses: the same warnings `status` and `apply` log
/// ([`super::host_warnings`]).
fn check_limits(ctx: &Ctx, reg: &registry::Registry, findings: &mut Vec<Finding>) {
    let autostart = reg.containers.iter().filter(|e| e.auto_start).count() as u64;
    let warnings = super::host_warnings(&ctx.root, reg, autostart, None);
    if warnings.is_empty() {
        findings.push(ok(
            "limits",
            "kernel limits (inotify) suffice for the registered containers; no address collides",
        ));
    }
    for w in warnings {
        findings.push(warning(
            "limits",
            w,
            "as the message says; the package's sysctl.d/60-nixos-nspawn.conf (NixOS: the module) raises the inotify limits",
        ));
    }
}

fn check_nix(ctx: &Ctx, findings: &mut Vec<Finding>) {
    if let Err(e) = tool_version(&ctx.nix.nix_store) {
        findings.push(problem(
            "nix",
            format!("nix-store does not work: {e:#}"),
            "install Nix (Debian: apt install nix-bin nix-setup-systemd); containers boot systems from /nix/store",
        ));
        return;
    }
    match tool_version(&ctx.nix.nix) {
        Ok(v) if version_cmp(&v, FLAKE_MIN_NIX).is_ge() => findings.push(ok(
            "nix",
            format!("Nix {v}: create --system, --config and --flake work"),
        )),
        Ok(v) => findings.push(warning(
            "nix",
            format!(
                "Nix {v} is older than {FLAKE_MIN_NIX}: create --system works; --flake needs {FLAKE_MIN_NIX}, \
                 --config what its nixpkgs says (current nixpkgs: {FLAKE_MIN_NIX})"
            ),
            "build systems where a newer Nix runs and create them with --system (README), or install a newer Nix",
        )),
        Err(e) => findings.push(warning(
            "nix",
            format!("the nix command does not work ({e:#}): create --system works, --flake does not"),
            "install a Nix with the nix command (>= 2.18)",
        )),
    }
}

fn check_nss(ctx: &Ctx, findings: &mut Vec<Finding>) {
    let file = ctx.root.join("/etc/nsswitch.conf");
    let hosts = std::fs::read_to_string(&file).ok().and_then(|t| {
        t.lines()
            .map(|l| l.split('#').next().unwrap_or("").trim().to_owned())
            .find_map(|l| l.strip_prefix("hosts:").map(str::to_owned))
    });
    match hosts {
        Some(h) if h.split_whitespace().any(|w| w == "mymachines") => findings.push(ok(
            "nss",
            "container names resolve on the host (nss-mymachines)",
        )),
        _ => findings.push(warning(
            "nss",
            "container names do not resolve on the host (no mymachines in the hosts: line of /etc/nsswitch.conf): ping NAME fails",
            "apt install libnss-mymachines (Debian; it adds mymachines to nsswitch.conf), or add mymachines to the hosts: line by hand",
        )),
    }
}

/// Every finding, in the order they are printed.
pub fn findings(ctx: &Ctx, euid: u32) -> Vec<Finding> {
    let mut f = Vec::new();
    if euid == 0 {
        f.push(ok("root", "running as root"));
    } else {
        f.push(warning(
            "root",
            "not running as root: some files cannot be read, and every command that changes containers refuses",
            "sudo nixos-nspawn doctor",
        ));
    }
    let systemd = ctx.sys.available();
    if systemd {
        f.push(ok("systemd", "systemd is the service manager"));
    } else {
        f.push(problem(
            "systemd",
            "systemd is not running here (no /run/systemd/system): containers are systemd units",
            "run nixos-nspawn on a host booted with systemd",
        ));
    }
    check_generator(ctx, &mut f);
    let reg = registry::load(&ctx.root);
    if reg.errors.is_empty() {
        f.push(ok(
            "registry",
            format!(
                "{} containers, {} zones, no errors",
                reg.containers.len(),
                reg.zones.len()
            ),
        ));
    } else {
        for e in &reg.errors {
            f.push(problem(
                "registry",
                e.to_string(),
                "fix the file (or remove it): it is skipped until then",
            ));
        }
    }
    let entries: Vec<&Entry> = reg.containers.iter().collect();
    if systemd {
        check_units(ctx, &entries, &mut f);
        let states = ctx.sys.unit_states().unwrap_or_default();
        let failed: Vec<&str> = states
            .iter()
            .filter(|(n, s)| s.active_state == "failed" && reg.get(n).is_some())
            .map(|(n, _)| n.as_str())
            .collect();
        if !failed.is_empty() {
            f.push(warning(
                "units",
                format!("failed containers: {}", failed.join(", ")),
                "nixos-nspawn status NAME, and journalctl -b -u systemd-nspawn@NAME.service says why",
            ));
        }
        check_network(ctx, &entries, &states, &mut f);
    }
    check_limits(ctx, &reg, &mut f);
    check_nix(ctx, &mut f);
    check_nss(ctx, &mut f);
    f
}

pub fn run(ctx: &mut Ctx, a: DoctorArgs) -> Result<i32> {
    let euid = rustix::process::geteuid().as_raw();
    let all = findings(ctx, euid);
    let problems = all.iter().filter(|f| f.level == Level::Problem).count();
    ctx.print(a.json, &Findings(all))?;
    Ok(if problems == 0 { EXIT_OK } else { EXIT_ERROR })
}

/// `doctor`'s result: every finding, then the count of problems and warnings.
#[derive(Serialize)]
#[serde(transparent)]
struct Findings(Vec<Finding>);

impl Printable for Findings {
    fn text(&self) -> String {
        let count = |l: Level| self.0.iter().filter(|f| f.level == l).count();
        let (problems, warnings) = (count(Level::Problem), count(Level::Warning));
        let mut lines = Vec::new();
        for f in &self.0 {
            let word = match f.level {
                Level::Ok => "ok",
                Level::Warning => "warning",
                Level::Problem => "PROBLEM",
            };
            lines.push(format!("{word:<8} {:<14} {}", f.check, f.message));
            if let Some(fix) = &f.fix {
                lines.push(format!("{:<8} {:<14} fix: {fix}", "", ""));
            }
        }
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        lines.push(match (problems, warnings) {
            (0, 0) => "No problems found.".to_owned(),
            (0, w) => format!("No problems found ({}).", plural(w, "warning")),
            (p, w) => format!("{}, {}.", plural(p, "problem"), plural(w, "warning")),
        });
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit;
    use crate::testing::Env;
    use serde_json::json;

    fn levels(f: &[Finding], check: &str) -> Vec<Level> {
        f.iter()
            .filter(|x| x.check == check)
            .map(|x| x.level)
            .collect()
    }

    fn message(f: &[Finding], check: &str) -> String {
        f.iter()
            .filter(|x| x.check == check)
            .map(|x| format!("{} / {}", x.message, x.fix.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// CHECK found exactly one thing, at LEVEL (else: what it said).
    fn assert_level(f: &[Finding], check: &str, level: Level) {
        assert_eq!(
            levels(f, check),
            vec![level],
            "{check}: {}",
            message(f, check)
        );
    }

    /// What CHECK said contains TEXT (else: what it said).
    fn assert_says(f: &[Finding], check: &str, text: &str) {
        let said = message(f, check);
        assert!(said.contains(text), "{check}: {said}");
    }

    /// A root with the generator linked (a fake that answers --version) and
    /// its helpers next to it.
    fn installed(env: &Env) {
        let root = env.root();
        let lib = root.join("usr/lib/nixos-nspawn");
        std::fs::create_dir_all(&lib).unwrap();
        let script = format!(
            "#!/bin/sh\necho '{}'\n",
            nixos_nspawn_core::version_line(GENERATOR)
        );
        for (f, text) in [
            (GENERATOR, script.as_str()),
            (render::BOOTSTRAP_EXE, "#!/bin/sh\n"),
            (render::ACTIVATE_EXE, "#!/bin/sh\n"),
        ] {
            nixos_nspawn_core::testing::write_script(lib.join(f), text);
        }
        let gens = root.join("usr/lib/systemd/system-generators");
        std::fs::create_dir_all(&gens).unwrap();
        std::os::unix::fs::symlink(
            "../../nixos-nspawn/nixos-nspawn-generator",
            gens.join(GENERATOR),
        )
        .unwrap();
    }

    fn set_nsswitch(env: &Env, hosts: &str) {
        let etc = env.root().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("nsswitch.conf"),
            format!("passwd: files\nhosts: {hosts}\n"),
        )
        .unwrap();
    }

    fn set_forwarding(env: &Env, v: &str) {
        let d = env.root().join("proc/sys/net/ipv4");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("ip_forward"), format!("{v}\n")).unwrap();
    }

    fn network(links: &[(&str, &str)]) -> serde_json::Value {
        json!({ "Interfaces": links.iter().map(|(n, f)| json!({
            "Name": n, "AlternativeNames": [format!("alt-{n}")], "NetworkFile": f, "SetupState": "configured"
        })).collect::<Vec<_>>() })
    }

    /// The inotify limit of a stock kernel (128) is too low for 20
    /// registered containers: doctor warns with the sysctl to raise.
    #[test]
    fn low_inotify_limits_are_a_warning() {
        let mut env = Env::new();
        let root = env.root();
        for i in 0..20 {
            edit::write_entry(
                &root,
                &nixos_nspawn_core::registry::Entry::new(&format!("c{i}"), "/nix/store/aaaa-a"),
            )
            .unwrap();
        }
        let d = root.join("proc/sys/fs/inotify");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("max_user_instances"), "128\n").unwrap();
        let f = findings(&env.ctx(), 0);
        assert_level(&f, "limits", Level::Warning);
        assert_says(&f, "limits", "fs.inotify.max_user_instances is 128");
        std::fs::write(d.join("max_user_instances"), "8192\n").unwrap();
        let f = findings(&env.ctx(), 0);
        assert_level(&f, "limits", Level::Ok);
    }

    #[test]
    fn a_healthy_host_has_no_problems() {
        let mut env = Env::new();
        installed(&env);
        set_nsswitch(&env, "files mymachines dns");
        set_forwarding(&env, "1");
        let root = env.root();
        edit::write_entry(&root, &Entry::new("web", "/nix/store/aaaa-a")).unwrap();
        env.sys.set_running("web");
        env.sys.set_running("systemd-networkd.service");
        env.sys.network = Some(network(&[(
            "ve-web",
            "/run/systemd/network/20-nixos-nspawn-ve-web.network",
        )]));
        let f = findings(&env.ctx(), 0);
        for check in HOST_CHECKS.iter().copied().chain(["nss"]) {
            assert_level(&f, check, Level::Ok);
        }
        assert!(message(&f, "generator")
            .contains("/usr/lib/systemd/system-generators/nixos-nspawn-generator -> "));
    }

    #[test]
    fn every_problem_is_named_with_its_fix() {
        let mut env = Env::new();
        set_nsswitch(&env, "files dns");
        set_forwarding(&env, "0");
        let root = env.root();
        edit::write_entry(&root, &Entry::new("web", "/nix/store/aaaa-a")).unwrap();
        std::fs::write(edit::registry_path(&root, "bad"), "{").unwrap();
        env.sys.no_generator = true;
        env.sys.set_running("web");
        let f = findings(&env.ctx(), 1000);
        assert_eq!(levels(&f, "root"), vec![Level::Warning]);
        assert_eq!(levels(&f, "generator"), vec![Level::Problem]);
        assert_says(&f, "generator", "not installed");
        assert_eq!(levels(&f, "registry"), vec![Level::Problem]);
        assert!(message(&f, "registry").contains("bad.json"));
        assert!(message(&f, "units")
            .contains("no drop-in from the generator for 1 of 1 containers: web"));
        assert!(message(&f, "units").contains("systemctl daemon-reload"));
        assert_eq!(
            levels(&f, "networkd"),
            vec![Level::Problem],
            "networkd is not running"
        );
        assert_eq!(levels(&f, "nss"), vec![Level::Warning]);
        assert!(f.iter().all(|x| x.level == Level::Ok || x.fix.is_some()));
        // Exit status 1, one summary line.
        let code = run(
            &mut env.ctx(),
            DoctorArgs {
                verbose: false,
                json: false,
            },
        )
        .unwrap();
        assert_eq!(code, EXIT_ERROR);
        let out = env.output();
        assert!(out.lines().last().unwrap().contains(" problems, "), "{out}");
        assert!(out.contains("PROBLEM  generator"), "{out}");
        // JSON: the same findings.
        run(
            &mut env.ctx(),
            DoctorArgs {
                verbose: false,
                json: true,
            },
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&env.output()).unwrap();
        assert!(v
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["check"] == "generator" && x["level"] == "problem"));
    }

    #[test]
    fn networkd_with_other_files_and_forwarding_off() {
        let mut env = Env::new();
        installed(&env);
        set_forwarding(&env, "0");
        let root = env.root();
        let mut db = Entry::new("db", "/nix/store/aaaa-a");
        db.network.mode = NetworkMode::Zone;
        db.network.zone = Some("lan".into());
        edit::write_entry(&root, &Entry::new("web", "/nix/store/aaaa-a")).unwrap();
        edit::write_entry(&root, &db).unwrap();
        edit::write_entry(&root, &Entry::new("idle", "/nix/store/aaaa-a")).unwrap();
        env.sys.set_running("web");
        env.sys.set_running("db");
        env.sys.set_running("systemd-networkd.service");
        // The veth link is matched by its alternative name (nspawn shortens long names).
        env.sys.network = Some(network(&[
            (
                "ve-web-short",
                "/usr/lib/systemd/network/80-container-ve.network",
            ),
            (
                "vz-lan",
                "/run/systemd/network/20-nixos-nspawn-vz-lan.network",
            ),
        ]));
        let mut desc = env.sys.network.clone().unwrap();
        desc["Interfaces"][0]["AlternativeNames"] = json!(["ve-web"]);
        env.sys.network = Some(desc);
        let f = findings(&env.ctx(), 0);
        assert_eq!(levels(&f, "network-files"), vec![Level::Problem]);
        let m = message(&f, "network-files");
        assert!(
            m.contains("ve-web (container web) is configured by /usr/lib/systemd/network/80-container-ve.network")
                && !m.contains("vz-lan")
                && !m.contains("idle"),
            "{m}"
        );
        assert_eq!(levels(&f, "forwarding"), vec![Level::Problem]);
        // A link networkd does not know.
        env.sys.network = Some(json!({"Interfaces": []}));
        let f = findings(&env.ctx(), 0);
        assert!(message(&f, "network-files").contains("ve-web (container web) does not exist"));
    }

    #[test]
    fn generator_installed_wrongly() {
        let mut env = Env::new();
        installed(&env);
        let root = env.root();
        std::fs::remove_file(root.join("usr/lib/nixos-nspawn").join(render::ACTIVATE_EXE)).unwrap();
        let f = findings(&env.ctx(), 0);
        assert_says(&f, "generator", "helpers are missing");
        // A second, dangling one in /etc masks it.
        let etc = root.join("etc/systemd/system-generators");
        std::fs::create_dir_all(&etc).unwrap();
        std::os::unix::fs::symlink("/nonexistent/nixos-nspawn-generator", etc.join(GENERATOR))
            .unwrap();
        let f = findings(&env.ctx(), 0);
        assert!(message(&f, "generator")
            .contains("/etc/systemd/system-generators/nixos-nspawn-generator is a dangling link"));
    }
}
