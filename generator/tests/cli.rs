//! The `nixos-nspawn-generator` binary as systemd runs it: arguments, exit
//! status, log lines on stderr (a test root logs to stderr), the helper
//! directory found through a symlink.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const EXE: &str = env!("CARGO_BIN_EXE_nixos-nspawn-generator");

fn generator(root: &Path, args: &[&Path]) -> Output {
    generator_at(Path::new(EXE), root, args)
}

fn generator_at(exe: &Path, root: &Path, args: &[&Path]) -> Output {
    Command::new(exe)
        .args(args)
        .env("NIXOS_NSPAWN_ROOT", root)
        .env_remove("NIXOS_NSPAWN_LOG")
        .env_remove("SYSTEMD_LOG_LEVEL")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn wrong_arguments_are_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let o = generator(d, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("usage: nixos-nspawn-generator NORMAL_DIR"));
    let o = generator(d, &[d, d, d, d]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = generator(d, &[Path::new("--help")]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("usage:"));
    // Nothing was read or written for a usage error.
    assert_eq!(std::fs::read_dir(d).unwrap().count(), 0);
}

#[test]
fn bad_entries_are_logged_and_the_exit_status_is_zero() {
    let case = golden_dir().join("bad-fields");
    let p = prepare(&case);
    let normal = p.normal_dir();
    let (early, late) = (p.tmp.path().join("early"), p.tmp.path().join("late"));
    let o = generator(&p.root_dir(), &[&normal, &early, &late]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let expected: String = std::fs::read_to_string(case.join("expected/log.txt"))
        .unwrap()
        .lines()
        .map(|l| format!("nixos-nspawn-generator: {l}\n"))
        .collect();
    let text = stderr(&o);
    let (warnings, info) = text.split_at(expected.len());
    assert_eq!(warnings, expected);
    assert!(
        info.starts_with("nixos-nspawn-generator: info: 1 container(s) rendered, "),
        "{info}"
    );
    assert!(normal
        .join("systemd-nspawn@good.service.d/50-nixos-nspawn.conf")
        .is_file());
    assert!(
        !early.exists() && !late.exists(),
        "only NORMAL_DIR is written"
    );
}

fn dropin(normal: &Path, name: &str) -> String {
    std::fs::read_to_string(normal.join(format!(
        "systemd-nspawn@{name}.service.d/50-nixos-nspawn.conf"
    )))
    .unwrap()
}

#[test]
fn helpers_are_found_next_to_the_resolved_executable() {
    let p = prepare(&golden_dir().join("veth-default"));
    // As installed: a link in /etc/systemd/system-generators/ to the binary.
    let generators = p.tmp.path().join("system-generators");
    std::fs::create_dir_all(&generators).unwrap();
    let link = generators.join("nixos-nspawn-generator");
    std::os::unix::fs::symlink(EXE, &link).unwrap();
    let o = generator_at(&link, &p.root_dir(), &[&p.normal_dir()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = dropin(&p.normal_dir(), "web");
    let helper_dir = match nixos_nspawn_generator::HELPER_DIR {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => std::fs::canonicalize(EXE)
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf(),
    };
    let want = format!(
        "ExecStartPre={}/nixos-nspawn-bootstrap web\n",
        helper_dir.display()
    );
    assert!(text.contains(&want), "{want} not in\n{text}");
    // The test root is passed on to the helpers.
    let want = format!(
        "Environment=\"NIXOS_NSPAWN_ROOT={}\"\n",
        p.root_dir().display()
    );
    assert!(text.contains(&want), "{want} not in\n{text}");
}

#[test]
fn an_unwritable_output_directory_is_the_only_failure() {
    let p = prepare(&golden_dir().join("veth-default"));
    let normal = p.tmp.path().join("not-a-dir");
    std::fs::write(&normal, "").unwrap();
    let o = generator(&p.root_dir(), &[&normal]);
    assert_eq!(o.status.code(), Some(1));
    let text = stderr(&o);
    assert!(
        text.starts_with("nixos-nspawn-generator: error: creating output directory"),
        "{text}"
    );
}

#[test]
fn a_failing_run_write_still_writes_the_units() {
    let p = prepare(&golden_dir().join("run-not-writable"));
    let o = generator(&p.root_dir(), &[&p.normal_dir()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("error: not all files under /run could be written"),
        "{}",
        stderr(&o)
    );
    assert!(dropin(&p.normal_dir(), "web").contains("ExecStartPre="));
    assert!(p.root_dir().join("run/systemd/nspawn/web.nspawn").is_file());
}

#[test]
fn version_and_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let o = generator(d, &[Path::new("--version")]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("nixos-nspawn-generator {}\n", env!("CARGO_PKG_VERSION"))
    );
    // A run writes a .nspawn and a .network file under /run; --clean removes
    // exactly those, never a file of someone else's.
    let reg = d.join("root/etc/nixos-nspawn/containers");
    std::fs::create_dir_all(&reg).unwrap();
    std::fs::write(
        reg.join("web.json"),
        r#"{"version": 1, "name": "web", "system": "/nix/store/aaaa-system"}"#,
    )
    .unwrap();
    let root = d.join("root");
    let o = generator(&root, &[&d.join("normal")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let ours = [
        root.join("run/systemd/nspawn/web.nspawn"),
        root.join("run/systemd/network/20-nixos-nspawn-ve-web.network"),
    ];
    for f in &ours {
        assert!(f.exists(), "{}", f.display());
    }
    let foreign = root.join("run/systemd/network/10-mine.network");
    std::fs::write(&foreign, "[Match]\nName=eth0\n").unwrap();
    let o = generator(&root, &[Path::new("--clean")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "removed 2 file(s) of nixos-nspawn-generator under /run\n"
    );
    for f in &ours {
        assert!(!f.exists(), "{}", f.display());
    }
    assert!(foreign.exists());
}

/// Run as systemd runs it (into ROOT/run/systemd/generator), the generator
/// records what it rendered the registry from, so `apply` can tell that a
/// daemon-reload would change nothing; into any other directory (a run by
/// hand, a test) it records nothing.
#[test]
fn records_its_inputs_only_when_systemd_runs_it() {
    use nixos_nspawn_core::{loaded, paths, Root};
    let p = prepare(&golden_dir().join("veth-default"));
    let root = Root::new(p.root_dir());
    let record = root.join(paths::SYSTEMD_RECORD);

    let o = generator(&p.root_dir(), &[&p.normal_dir()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!record.exists(), "recorded from a run by hand");

    let systemd_dir = root.join(paths::GENERATOR_DIR);
    let o = generator(&p.root_dir(), &[&systemd_dir]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(record.is_file());
    assert!(loaded::is_current(&root));

    // A change after the run makes it stale.
    let entry = std::fs::read_dir(root.join(paths::REGISTRY_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let text = std::fs::read(&entry).unwrap();
    std::fs::remove_file(&entry).unwrap();
    std::fs::write(&entry, text).unwrap();
    assert!(!loaded::is_current(&root));
}
