//! `systemd-analyze verify` on every drop-in of every golden case, combined
//! with the real `systemd-nspawn@.service` template of this host. Skipped
//! (with a note on stderr) where systemd-analyze or the template is missing.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use nixos_nspawn_core::render::{ACTIVATE_EXE, BOOTSTRAP_EXE};

fn find_in_path(exe: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(exe))
            .find(|p| p.is_file())
    })
}

fn template() -> Option<PathBuf> {
    [
        "/usr/lib/systemd/system",
        "/lib/systemd/system",
        "/etc/systemd/system",
    ]
    .iter()
    .map(|d| Path::new(d).join("systemd-nspawn@.service"))
    .find(|p| p.is_file())
}

/// Executables that do nothing, standing in for the helpers.
fn fake_helpers(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let truth = ["/bin/true", "/usr/bin/true"]
        .iter()
        .find(|p| Path::new(p).is_file())
        .expect("true(1)");
    for exe in [BOOTSTRAP_EXE, ACTIVATE_EXE] {
        let p = dir.join(exe);
        std::fs::copy(truth, &p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn drop_ins_pass_systemd_analyze_verify() {
    let Some(analyze) = find_in_path("systemd-analyze") else {
        eprintln!("note: systemd-analyze not found; skipping the verify test");
        return;
    };
    let Some(template) = template() else {
        eprintln!("note: systemd-nspawn@.service not found; skipping the verify test");
        return;
    };
    let mut verified = 0;
    let mut problems = String::new();
    for (name, _, mut p) in prepared_cases() {
        let helpers = p.tmp.path().join("helpers");
        fake_helpers(&helpers);
        // nspawn_exe stays the default "systemd-nspawn" (systemd resolves
        // it) where it is installed.
        if find_in_path("systemd-nspawn").is_none() {
            p.ctx.nspawn_exe = helpers.join(BOOTSTRAP_EXE).display().to_string();
        }
        p.ctx.helper_dir = helpers;
        let report = p.run();
        if report.containers.is_empty() {
            continue;
        }
        let units = p.tmp.path().join("units");
        copy_tree(&p.normal_dir(), &units);
        std::fs::copy(&template, units.join("systemd-nspawn@.service")).unwrap();
        let names: Vec<String> = report
            .containers
            .iter()
            .map(|c| format!("systemd-nspawn@{c}.service"))
            .collect();
        let out = Command::new(&analyze)
            .arg("verify")
            .arg("--man=no")
            .args(&names)
            .env("SYSTEMD_UNIT_PATH", format!("{}:", units.display()))
            .env("SYSTEMD_LOG_LEVEL", "info")
            .output()
            .expect("running systemd-analyze");
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        let ours: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.contains(&*units.to_string_lossy())
                    || l.contains("systemd-nspawn@")
                    || l.contains("is not executable")
            })
            .collect();
        if !out.status.success() || !ours.is_empty() {
            problems.push_str(&format!(
                "{name} ({}): {}\n{}\n",
                names.join(" "),
                out.status,
                text
            ));
        } else if !text.trim().is_empty() {
            eprintln!("{name}: systemd-analyze said (not about our units):\n{text}");
        }
        verified += names.len();
    }
    assert!(problems.is_empty(), "systemd-analyze verify:\n{problems}");
    assert!(verified >= 30, "only {verified} units verified");
    eprintln!("systemd-analyze verify: {verified} units clean");
}
