//! Installing and checking a host: `nixos-nspawn doctor` on a real systemd
//! host (healthy, then with networkd stopped and with the generator gone),
//! and what the CLI says then (status, create); and the README's install
//! section followed literally on a clean Debian 12 root (`install_debian12`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context as _, Result};
use nixos_nspawn_cli::commands::doctor::HOST_CHECKS;
use serde_json::{json, Value};

use crate::cmd;
use crate::host::{secs, HostOpts, TestHost, BIN_IN_HOST, CLI, GENERATOR};
use crate::scenarios::{unit, wait_dhcp};
use crate::suite::{Outcome, Suite, Test};

pub fn all() -> Vec<Test> {
    vec![
        Test {
            name: "doctor_real_host",
            about: "doctor: all ok with a running veth container (networkd uses our file); networkd stopped and the generator removed are problems with fixes; status and create say so",
            f: doctor_real_host,
        },
        Test {
            name: "install_debian12",
            about: "the README's install steps, block by block, on a clean Debian 12 root: the .deb and scripts/install each to a running, networked container, and removal leaves nothing behind",
            f: install_debian12,
        },
    ]
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
    for check in HOST_CHECKS {
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

// ------------------------------------------------------------ install_debian12

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `sh` blocks of the README that follow a `<!-- install-test: MARKER -->`
/// line, in order.
pub fn readme_blocks(readme: &str, marker: &str) -> Vec<String> {
    let tag = format!("<!-- install-test: {marker} -->");
    let mut out = Vec::new();
    let mut lines = readme.lines();
    while let Some(l) = lines.next() {
        if l.trim() != tag {
            continue;
        }
        let mut block = String::new();
        let mut inside = false;
        for l in lines.by_ref() {
            if !inside {
                if l.trim_start().starts_with("```") {
                    inside = true;
                }
                continue;
            }
            if l.trim_start().starts_with("```") {
                break;
            }
            block.push_str(l);
            block.push('\n');
        }
        out.push(block);
    }
    out
}

/// The Debian packages the README's `apt-get install` lines name (not the
/// local `.deb`).
pub fn apt_packages(blocks: &[String]) -> Vec<String> {
    let mut v = Vec::new();
    for b in blocks {
        for line in b.lines() {
            let words: Vec<&str> = line
                .split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            if words.len() > 2 && words[0] == "apt-get" && words[1] == "install" {
                v.extend(
                    words[2..]
                        .iter()
                        .filter(|w| !w.starts_with('-') && !w.starts_with("./"))
                        .map(|w| w.to_string()),
                );
            }
        }
    }
    v
}

/// Run a README block in the test host (as root, in `dir`), every command
/// shown, the first failure fatal.
fn run_block(h: &TestHost, dir: &str, block: &str, what: &str) -> Result<String> {
    let script = format!("set -euxo pipefail\ncd {dir}\n{block}");
    let out = h.exec_t(&["bash", "-c", &script], secs(600))?;
    if !out.success() {
        bail!(
            "the README's {what} step failed in the clean Debian 12 host:\n{}",
            out.describe_failure()
        );
    }
    Ok(format!("{}{}", out.stdout, out.stderr))
}

/// Everything nixos-nspawn could leave behind, as `KIND MODE SIZE LINK PATH`
/// lines (no times: only what is there): the OS tree and the data
/// directories, without what the OS itself changes while it runs (apt and
/// dpkg bookkeeping except dpkg's per-package file lists, systemd's and
/// D-Bus's own state), without /root (where the test puts its files) and
/// without what Nix keeps for itself (the store, where the system the README
/// imports stays, and `profiles/per-user`, which any Nix command as root
/// makes). Under /run/systemd/nspawn only `.nspawn` files count (nspawn keeps
/// its own locks there).
fn snapshot(h: &TestHost) -> Result<BTreeMap<String, String>> {
    let script = r#"
for d in /etc /usr /opt /srv /var/lib /nix/var/nix/profiles /run/systemd/generator \
         /run/systemd/network /run/nixos-nspawn; do
  [ -e "$d" ] || continue
  find "$d" \( -path /var/lib/apt -o -path /var/lib/systemd -o -path /var/lib/dpkg/triggers \
      -o -path /var/lib/dpkg/updates -o -path /var/lib/dpkg/status -o -path /var/lib/dpkg/status-old \
      -o -path /var/lib/dpkg/available -o -path '/var/lib/dpkg/lock*' -o -path /etc/ld.so.cache \
      -o -path /var/lib/dbus -o -path /nix/var/nix/profiles/per-user \) -prune -o -printf '%y %m %s %l %p\n'
done | sed 's/^d \([0-7]*\) [0-9]* /d \1 - /'
[ -d /run/systemd/nspawn ] && find /run/systemd/nspawn -name '*.nspawn' -printf '%y %m %s %l %p\n'
true
"#;
    let out = h.exec_t(&["bash", "-c", script], secs(120))?.ok()?;
    Ok(out
        .lines()
        .filter_map(|l| {
            l.rsplit_once(' ')
                .map(|(meta, p)| (p.to_string(), meta.to_string()))
        })
        .collect())
}

fn diff(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let mut d = Vec::new();
    for (p, m) in after {
        match before.get(p) {
            None => d.push(format!("left behind: {p} ({m})")),
            Some(b) if b != m => d.push(format!("changed: {p} ({b} -> {m})")),
            _ => {}
        }
    }
    for p in before.keys() {
        if !after.contains_key(p) {
            d.push(format!("removed: {p}"));
        }
    }
    d
}

/// Copy `from` into the test host at `to` (through its /proc root: the
/// overlay it writes to).
fn copy_in(h: &TestHost, from: &Path, to: &str) -> Result<()> {
    let dest = h.path(to);
    std::fs::create_dir_all(dest.parent().context("no parent")?)?;
    cmd::run(
        &[
            "cp",
            "-a",
            from.to_str().context("path")?,
            dest.to_str().context("path")?,
        ],
        secs(120),
    )?
    .ok()
    .with_context(|| format!("copying {} into the test host at {to}", from.display()))?;
    Ok(())
}

/// A running, networked container named `example`: its unit is active, it
/// has a DHCP address on host0 from the host's networkd, doctor is happy.
/// One install route in a clean test host: the README's install block, its
/// first container (checked), its removal block, all run in `dir`; afterwards
/// the tree is exactly as before.
struct Route<'a> {
    dir: &'a str,
    name: &'a str,
    /// The block and what it is called in errors.
    install: (&'a str, &'a str),
    /// The same, and what the removal is in the error about what it left.
    remove: (&'a str, &'a str, &'a str),
}

impl Route<'_> {
    fn run(
        &self,
        h: &TestHost,
        closure: &Path,
        container: &str,
        clean: &BTreeMap<String, String>,
    ) -> Result<()> {
        copy_in(h, closure, &format!("{}/example.closure", self.dir))?;
        run_block(h, self.dir, self.install.0, self.install.1)?;
        let first = format!("first container ({})", self.name);
        run_block(h, self.dir, container, &first)?;
        check_container(h, self.name)?;
        run_block(h, self.dir, self.remove.0, self.remove.1)?;
        let d = diff(clean, &snapshot(h)?);
        ensure!(
            d.is_empty(),
            "after {}:\n  {}",
            self.remove.2,
            d.join("\n  ")
        );
        Ok(())
    }
}

fn check_container(h: &TestHost, route: &str) -> Result<()> {
    let state = h.exec(&["systemctl", "is-active", &unit("example")])?;
    ensure!(
        state.stdout.trim() == "active",
        "{route}: systemd-nspawn@example is {} after the README's steps",
        state.stdout.trim()
    );
    let (addr, _) = wait_dhcp(h, "example", std::time::Instant::now(), secs(60))
        .with_context(|| format!("{route}: the container got no address"))?;
    let out = h.exec(&["nixos-nspawn", "doctor", "--json"])?;
    let f: Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("{route}: doctor --json: {}", out.describe_failure()))?;
    let problems: Vec<&Value> = f
        .as_array()
        .map(|a| a.iter().filter(|x| x["level"] == "problem").collect())
        .unwrap_or_default();
    ensure!(
        out.code == Some(0) && problems.is_empty(),
        "{route}: doctor finds problems with the container running: {problems:#?}"
    );
    let files = f
        .as_array()
        .and_then(|a| a.iter().find(|x| x["check"] == "network-files"))
        .context("doctor has no network-files finding")?;
    ensure!(files["level"] == "ok", "{route}: {files}");
    println!("    {route}: example runs, {addr} on host0, doctor: no problems");
    Ok(())
}

fn install_debian12(s: &Suite) -> Result<Outcome> {
    if s.os.label == "debian13" {
        return Ok(Outcome::Skip(
            "boots its own clean Debian 12 root: it runs in the host and debian12 passes".into(),
        ));
    }
    let readme = std::fs::read_to_string(repo().join("README.md"))?;
    let block = |m: &str| -> Result<String> {
        let b = readme_blocks(&readme, m);
        ensure!(
            b.len() == 1,
            "README.md has {} blocks marked install-test: {m}",
            b.len()
        );
        Ok(b[0].clone())
    };
    let (deb_build, deb_install, deb_remove) = (
        block("debian-build")?,
        block("debian-install")?,
        block("debian-remove")?,
    );
    let (other_build, other_install, other_remove) = (
        block("other-build")?,
        block("other-install")?,
        block("other-remove")?,
    );
    let container = block("container")?;
    ensure!(!block("elsewhere")?.is_empty(), "no elsewhere block");

    // The clean root has what the README's apt-get line installs, as its own
    // packages (the test host has no network); iputils-ping is the reader's ping.
    let mut packages = apt_packages(std::slice::from_ref(&deb_install));
    ensure!(
        packages.iter().any(|p| p == "nix-setup-systemd"),
        "the README's apt-get line: {packages:?}"
    );
    packages.push("iputils-ping".into());
    let pkgs: Vec<&str> = packages.iter().map(String::as_str).collect();
    let root = crate::debian::debian_root("bookworm", &pkgs)?;

    // The build steps, as the README says, in this checkout.
    for (what, b) in [("Debian build", &deb_build), ("build", &other_build)] {
        let out = cmd::run(
            &[
                "bash",
                "-c",
                &format!("set -euxo pipefail\ncd {}\n{b}", repo().display()),
            ],
            secs(1800),
        )?;
        ensure!(
            out.success(),
            "the README's {what} step: {}",
            out.describe_failure()
        );
    }
    let debs: Vec<PathBuf> = std::fs::read_dir(repo().join("target/debian"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&format!("nixos-nspawn_{}-", env!("CARGO_PKG_VERSION")))
                    && n.ends_with(".deb")
            })
        })
        .collect();
    ensure!(debs.len() == 1, "target/debian has {debs:?}");
    check_deb_matches_install_script(&debs[0])?;

    // "Elsewhere": a system that brings its settings along (the host's /usr
    // for the stand-in guest), exported with its closure as the README does.
    let sys = s
        .fx
        .system(&crate::fixtures::Sys::new("install-example").entry(
        &json!({"version": 1, "name": "example", "system": "/x", "bindMounts": ["/usr:/usr:ro"]}),
    ))?;
    let work = tempfile::Builder::new()
        .prefix(crate::guard::TMP_PREFIX)
        .tempdir()?;
    let closure = work.path().join("example.closure");
    let out = cmd::run(
        &[
            "sh",
            "-c",
            &format!(
                "nix-store --export $(nix-store --query --requisites {sys}) > {}",
                closure.display()
            ),
        ],
        secs(300),
    )?;
    ensure!(
        out.success(),
        "exporting the example system: {}",
        out.describe_failure()
    );

    let h = s.host_on(
        "install",
        &root,
        HostOpts {
            clean_os: true,
            ..Default::default()
        },
    )?;
    ensure!(
        h.systemd_version.starts_with("systemd 252 "),
        "the clean root runs {}",
        h.systemd_version
    );
    ensure!(
        !h.exists("/usr/bin/nixos-nspawn") && !h.exists("/etc/nixos-nspawn"),
        "the clean root is not clean"
    );
    let clean = snapshot(&h)?;

    // The routes' inputs (outside what `snapshot` compares): the Debian
    // package; a checkout's files and the built binaries for scripts/install.
    copy_in(
        &h,
        &debs[0],
        &format!(
            "/root/deb/{}",
            debs[0].file_name().unwrap().to_string_lossy()
        ),
    )?;
    for part in ["scripts", "dist", "units", "man", "nix", "packaging"] {
        copy_in(&h, &repo().join(part), &format!("/root/src/{part}"))?;
    }
    let release = repo().join("target/release");
    std::fs::create_dir_all(h.path("/root/src/target/release"))?;
    for b in crate::host::BINARIES {
        copy_in(
            &h,
            &release.join(b),
            &format!("/root/src/target/release/{b}"),
        )?;
    }
    for route in [
        Route {
            dir: "/root/deb",
            name: "Debian package",
            install: (&deb_install, "Debian install"),
            remove: (&deb_remove, "Debian removal", "apt-get purge"),
        },
        Route {
            dir: "/root/src",
            name: "scripts/install",
            install: (&other_install, "scripts/install"),
            remove: (
                &other_remove,
                "scripts/install --uninstall",
                "scripts/install --uninstall",
            ),
        },
    ] {
        route.run(&h, &closure, &container, &clean)?;
    }
    Ok(Outcome::Pass)
}

/// The package and `scripts/install --prefix /usr` install the same paths
/// (the package compresses manual pages and adds its copyright file; the
/// script adds its manifest).
fn check_deb_matches_install_script(deb: &Path) -> Result<()> {
    let listing = cmd::run(
        &["dpkg-deb", "--contents", deb.to_str().context("path")?],
        secs(60),
    )?
    .ok()?;
    let mut in_deb: Vec<String> = listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| {
            p.trim_start_matches('.')
                .trim_end_matches(".gz")
                .to_string()
        })
        .filter(|p| !p.starts_with("/usr/share/doc/"))
        .collect();
    let script = cmd::run(
        &[
            repo().join("scripts/install").to_str().context("path")?,
            "--list",
            "--prefix",
            "/usr",
        ],
        secs(60),
    )?
    .ok()?;
    let mut listed: Vec<String> = script
        .lines()
        .filter(|p| !p.ends_with("/install-manifest"))
        .map(String::from)
        .collect();
    in_deb.sort();
    listed.sort();
    ensure!(
        in_deb == listed,
        "the Debian package and scripts/install --prefix /usr differ:\n  .deb: {in_deb:?}\n  script: {listed:?}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_blocks_and_packages() {
        let text = "x\n<!-- install-test: a -->\n\n```sh\napt-get install -y p1 p2 ./x.deb  # c\necho hi\n```\n\
                    <!-- install-test: b -->\n```sh\nb\n```\n<!-- install-test: a -->\n```sh\nsecond\n```\n";
        let a = readme_blocks(text, "a");
        assert_eq!(
            a,
            vec![
                "apt-get install -y p1 p2 ./x.deb  # c\necho hi\n",
                "second\n"
            ]
        );
        assert_eq!(apt_packages(&a), vec!["p1", "p2"]);
        assert_eq!(readme_blocks(text, "b"), vec!["b\n"]);
        assert!(readme_blocks(text, "c").is_empty());
    }

    #[test]
    fn the_readme_has_every_install_block() {
        let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
        for m in [
            "debian-build",
            "debian-install",
            "debian-remove",
            "other-build",
            "other-install",
            "other-remove",
            "container",
            "elsewhere",
        ] {
            assert_eq!(readme_blocks(&readme, m).len(), 1, "{m}");
        }
    }
}
