//! The closure of a `sharedNix = false` container's system written next to
//! its entry (`NAME.closure`, as the NixOS module and the CLI write it): the
//! generator binds exactly it before the first start, and the bootstrap
//! helper starts the container with the same `.nspawn`.

use anyhow::{ensure, Context as _, Result};
use serde_json::json;

use crate::fixtures::{entry, Sys};
use crate::scenarios::{ensure_contains, nspawn_path, start_unit};
use crate::suite::{Outcome, Suite, Test};

pub fn all() -> Vec<Test> {
    vec![Test {
        name: "closure_first_start",
        about: "sharedNix=false with NAME.closure next to the entry: the generator's .nspawn binds the closure before the first start, and the bootstrap starts with the same file",
        f: closure_first_start,
    }]
}

fn closure_first_start(s: &Suite) -> Result<Outcome> {
    let system = s.fx.system(&Sys::new("first-start"))?;
    let out = std::process::Command::new("nix-store")
        .args(["--query", "--requisites", &system])
        .output()
        .context("running nix-store --query --requisites")?;
    ensure!(
        out.status.success(),
        "nix-store --query --requisites {system} failed"
    );
    let closure = String::from_utf8(out.stdout)?;
    let mut e = entry("fs", &system);
    e["sharedNix"] = json!(false);
    e["autoStart"] = json!(false);
    let h = s.host_with("first-start", vec![e])?;
    let file = h.registry_file("fs").with_extension("closure");
    std::fs::write(&file, &closure).with_context(|| format!("writing {}", file.display()))?;
    h.daemon_reload()?;
    let before = h.read(&nspawn_path("fs"))?;
    for path in closure.lines().filter(|l| !l.is_empty()) {
        ensure_contains(
            &before,
            &format!("BindReadOnly={path}\n"),
            "fs.nspawn before the first start",
        )?;
    }
    ensure!(
        !before.lines().any(|l| l == "BindReadOnly=/nix/store"),
        "sharedNix=false but the whole store is bound:\n{before}"
    );
    start_unit(&h, "fs")?;
    let after = h.read(&nspawn_path("fs"))?;
    ensure!(
        after == before,
        "the bootstrap changed the generator's .nspawn:\n--- generator\n{before}\n--- at start\n{after}"
    );
    ensure!(
        !h.exists("/run/nixos-nspawn/applied/closure/fs.json"),
        "the bootstrap still records a closure under /run"
    );
    let leader = h.machine_leader("fs")?;
    let seen = h.ok(&["ls", &format!("/proc/{leader}/root/nix/store")])?;
    ensure!(
        seen.contains(system.trim_start_matches("/nix/store/")),
        "the guest does not see its own system:\n{seen}"
    );
    s.metric(format!(
        "closure_first_start: {} store paths bound before the first start",
        closure.lines().count()
    ));
    Ok(Outcome::Pass)
}
