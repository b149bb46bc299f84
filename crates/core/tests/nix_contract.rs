//! The contract between the NixOS module and the Rust registry parser.
//!
//! Evaluates `nix/tests/contract.nix` (nixpkgs-free: registry entries and zone files
//! as `nix/lib/registry-entry.nix` produces them from representative option values)
//! with the real `nix-instantiate`, and checks that
//! - every valid entry and zone is accepted by `registry::parse_entry` /
//!   `registry::parse_zone`, and means what the Nix side meant (the parsed value,
//!   serialized again, equals the Nix JSON up to normalisation);
//! - every invalid case (option values the Nix side maps without checking them:
//!   the parser is the one validator) is rejected, with an error naming the
//!   expected field;
//! - the Nix side's own self-check is empty.
//!
//! The host module itself is evaluated too (`nix/checks/module-eval.nix`, with
//! nixpkgs' lib when `NIXPKGS_LIB` points at its `lib/` directory, else with the
//! project's own `nix/checks/minilib`) and the registry files it would put in /etc
//! are parsed.
//!
//! `NIXOS_NSPAWN_CONTRACT_JSON` / `NIXOS_NSPAWN_MODULE_FILES_JSON` name files with
//! that JSON already evaluated (the flake's `contract` check, inside the sandbox).
//! Without them and without `nix-instantiate` on PATH the test prints "skipped" and
//! returns.

use std::path::{Path, PathBuf};

use nixos_nspawn_core::registry::{self, BindMount};
use nixos_nspawn_core::EntryError;
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `nix-instantiate --eval --strict --json ARGS…`, or `None` when Nix is not installed.
fn nix_eval(args: &[&str]) -> Option<Value> {
    nix_eval_env(args, &[])
}

fn nix_eval_env(args: &[&str], env: &[(&str, &str)]) -> Option<Value> {
    nixos_nspawn_core::testing::nix_eval(args, env, &repo_root())
}

fn container_file(name: &str) -> PathBuf {
    PathBuf::from(format!("/etc/nixos-nspawn/containers/{name}.json"))
}

fn zone_file(name: &str) -> PathBuf {
    PathBuf::from(format!("/etc/nixos-nspawn/zones/{name}.json"))
}

/// Make the Nix JSON and the parser's serialization comparable: a list holding one
/// scalar is that scalar (both mean one `Key=` line), and bind mounts are written in
/// the parser's canonical `host:container[:opts]` form.
fn normalise(v: &Value) -> Value {
    match v {
        Value::Array(items)
            if items.len() == 1 && !items[0].is_object() && !items[0].is_array() =>
        {
            items[0].clone()
        }
        Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if k == "bindMounts" {
                        Value::Array(
                            v.as_array()
                                .expect("bindMounts is a list")
                                .iter()
                                .map(|b| {
                                    let s = b.as_str().expect("bind mount is a string");
                                    Value::String(
                                        BindMount::parse(s)
                                            .unwrap_or_else(|e| panic!("{s:?}: {e}"))
                                            .to_string(),
                                    )
                                })
                                .collect(),
                        )
                    } else {
                        normalise(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn pretty(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap()
}

fn check_valid_entries(what: &str, containers: &serde_json::Map<String, Value>) -> usize {
    for (name, value) in containers {
        let file = container_file(name);
        let entry = registry::parse_entry(&file, &pretty(value)).unwrap_or_else(|errs| {
            panic!(
                "{what}: the parser rejects the entry Nix writes for {name}:\n{}\n{}",
                errs.iter()
                    .map(|e| format!("  {e}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                serde_json::to_string_pretty(value).unwrap()
            )
        });
        let back = serde_json::to_value(&entry).unwrap();
        assert_eq!(
            normalise(&back),
            normalise(value),
            "{what}: {name} means something else to the parser than to Nix"
        );
    }
    containers.len()
}

fn check_valid_zones(what: &str, zones: &serde_json::Map<String, Value>) -> usize {
    for (name, value) in zones {
        let zone = registry::parse_zone(&zone_file(name), &pretty(value)).unwrap_or_else(|errs| {
            panic!(
                "{what}: the parser rejects the zone file Nix writes for {name}:\n{}",
                errs.iter()
                    .map(|e| format!("  {e}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        let back = serde_json::to_value(&zone).unwrap();
        assert_eq!(
            normalise(&back),
            normalise(value),
            "{what}: zone {name} means something else to the parser than to Nix"
        );
    }
    zones.len()
}

/// JSON precomputed by Nix (the flake's `contract` check runs this test in the
/// build sandbox, where there is no nix-instantiate).
fn precomputed(var: &str) -> Option<Value> {
    let path = std::env::var_os(var).filter(|v| !v.is_empty())?;
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{var}={}: {e}", Path::new(&path).display()));
    Some(serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{var}: not JSON: {e}")))
}

/// `nix/tests/contract.nix` evaluated (or precomputed); `None`, saying what
/// was `not_checked`, where there is no Nix.
fn contract(not_checked: &str) -> Option<Value> {
    let contract =
        precomputed("NIXOS_NSPAWN_CONTRACT_JSON").or_else(|| nix_eval(&["nix/tests/contract.nix"]));
    if contract.is_none() {
        eprintln!("skipped: nix-instantiate is not on PATH, {not_checked}");
    }
    contract
}

#[test]
fn nix_module_output_is_accepted_by_the_parser() {
    let Some(contract) = contract("the Nix/Rust registry contract was not checked") else {
        return;
    };

    let self_check = contract["selfCheck"].as_array().expect("selfCheck");
    assert!(
        self_check.is_empty(),
        "the Nix side disagrees with itself:\n{self_check:#?}"
    );

    let n = check_valid_entries(
        "contract.nix",
        contract["containers"].as_object().expect("containers"),
    );
    assert!(n >= 5, "expected the representative entries, found {n}");
    let z = check_valid_zones(
        "contract.nix",
        contract["zones"].as_object().expect("zones"),
    );
    assert!(z >= 2, "expected the representative zones, found {z}");

    let invalid = contract["invalid"].as_array().expect("invalid");
    assert!(!invalid.is_empty());
    for case in invalid {
        let name = case["name"].as_str().unwrap();
        let field = case["field"].as_str().unwrap();
        let parsed = registry::parse_entry(&container_file(name), &pretty(&case["entry"]));
        assert_refused_naming(&format!("invalid case {name}"), field, parsed);
    }
    for case in contract["invalidZones"].as_array().expect("invalidZones") {
        let name = case["name"].as_str().unwrap();
        let field = case["field"].as_str().unwrap();
        let parsed = registry::parse_zone(&zone_file(name), &pretty(&case["zone"]));
        assert_refused_naming(&format!("invalid zone {name}"), field, parsed);
    }
    eprintln!(
        "nix contract: {n} entries and {z} zones accepted, {} invalid entries rejected with the same field",
        invalid.len()
    );
}

/// The host module's own output, evaluated with nixpkgs' lib (`NIXPKGS_LIB`) or the
/// minilib (see nix/checks/run).
#[test]
fn nixos_module_registry_files_are_accepted_by_the_parser() {
    if let Some(out) = precomputed("NIXOS_NSPAWN_MODULE_FILES_JSON") {
        return check_module_files(&out);
    }
    let Some(out) = module_eval("files", "the NixOS module's output") else {
        return;
    };
    check_module_files(&out);
}

/// `nix/checks/module-eval.nix -A ATTR`, with nixpkgs' lib (`NIXPKGS_LIB`) or
/// the minilib; `None` (after saying what was skipped) without them or Nix.
fn module_eval(attr: &str, what: &str) -> Option<Value> {
    let lib = match std::env::var_os("NIXPKGS_LIB").filter(|v| !v.is_empty()) {
        Some(lib) => PathBuf::from(lib),
        None => repo_root().join("nix/checks/minilib"),
    };
    // The package's source set (nix/package.nix) has no nix/checks; nor does the
    // Nix build have nix-instantiate.
    let Ok(lib) = std::fs::canonicalize(&lib) else {
        eprintln!(
            "skipped: {} does not exist here, {what} was not checked",
            lib.display()
        );
        return None;
    };
    let lib = lib.to_string_lossy().into_owned();
    // The host with `nixpkgsLib`, its containers (through the stand-in nixpkgs) with
    // NIXOS_NSPAWN_CHECK_LIB: the same lib for both.
    let out = nix_eval_env(
        &[
            "nix/checks/module-eval.nix",
            "--arg",
            "nixpkgsLib",
            &lib,
            "-A",
            attr,
        ],
        &[("NIXOS_NSPAWN_CHECK_LIB", &lib)],
    );
    if out.is_none() {
        eprintln!("skipped: nix-instantiate is not on PATH, {what} was not checked");
    }
    out
}

fn check_module_files(out: &Value) {
    let n = check_valid_entries(
        "module-eval.nix",
        out["containers"].as_object().expect("containers"),
    );
    let z = check_valid_zones("module-eval.nix", out["zones"].as_object().expect("zones"));
    assert!(n > 0 && z > 0);
    eprintln!("nixos module: {n} registry entries and {z} zone files accepted");
}

/// The classic short options (interfaces, macvlans, enableTun, allowedDevices,
/// tmpfs, additionalCapabilities, extraFlags): the golden case
/// `tests/golden/short-options` renders exactly the entries the Nix side
/// writes for them, so its expected files are what each option becomes.
#[test]
fn short_option_entries_are_the_golden_inputs() {
    let Some(contract) = contract("the short options were not checked") else {
        return;
    };
    let cases = contract["shortOptionCases"]
        .as_array()
        .expect("shortOptionCases");
    let golden = repo_root().join("tests/golden/short-options/input/etc/nixos-nspawn/containers");
    let mut on_disk: Vec<String> = std::fs::read_dir(&golden)
        .unwrap_or_else(|e| panic!("{}: {e}", golden.display()))
        .map(|d| {
            let name = d.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json").expect("a .json file").to_owned()
        })
        .collect();
    on_disk.sort();
    let mut names: Vec<String> = cases
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(
        on_disk, names,
        "the golden case's inputs are not the contract's short option cases"
    );
    for name in &names {
        let file = container_file(name);
        let from_nix = registry::parse_entry(&file, &pretty(&contract["containers"][name]))
            .unwrap_or_else(|e| panic!("{name}: the parser rejects the Nix entry: {e:?}"));
        let bytes = std::fs::read(golden.join(format!("{name}.json"))).unwrap();
        let from_golden = registry::parse_entry(&file, &bytes)
            .unwrap_or_else(|e| panic!("{name}: the parser rejects the golden input: {e:?}"));
        assert_eq!(
            from_golden, from_nix,
            "{name}: tests/golden/short-options/input is not what nix/tests/contract.nix gives \
             (regenerate it from `nix-instantiate --eval --strict --json nix/tests/contract.nix -A containers`)"
        );
    }
    assert!(names.len() >= 7, "expected one case per short option");
}

/// docs/migration.md's option mapping: a classic `containers.<name>`
/// configuration copied with the classic option names (`migration.classic` of
/// nix/checks/module-eval.nix, through the host module) renders the same
/// container (entry, `.nspawn` file, drop-in, networkd file) as its hand-written
/// nixos-nspawn equivalent (`migration.handwritten`).
#[test]
fn classic_style_configuration_renders_as_the_handwritten_one() {
    let Some(out) = module_eval("migration", "the migration mapping") else {
        return;
    };
    let render = |which: &str| {
        let entry = registry::parse_entry(&container_file("web"), &pretty(&out[which]))
            .unwrap_or_else(|e| panic!("{which}: the parser rejects the entry: {e:?}"));
        let files = nixos_nspawn_core::render::container_files(&entry, &Default::default())
            .unwrap_or_else(|e| panic!("{which}: {e}"));
        (entry, files)
    };
    let (classic, classic_files) = render("classic");
    let (handwritten, handwritten_files) = render("handwritten");
    assert_eq!(classic, handwritten, "the entries differ");
    assert_eq!(
        classic_files, handwritten_files,
        "the rendered files differ"
    );
    let nspawn = classic_files
        .iter()
        .find_map(|f| match &f.contents {
            nixos_nspawn_core::render::Contents::File(t) if t.contains("[Exec]") => Some(t.clone()),
            _ => None,
        })
        .expect("a .nspawn file");
    for line in [
        "Interface=eth1",
        "MACVLAN=eth2",
        "Capability=CAP_NET_ADMIN",
        "TemporaryFileSystem=/var/tmp",
    ] {
        assert!(
            nspawn.lines().any(|l| l == line),
            "{line} missing from\n{nspawn}"
        );
    }
}

/// A case Nix rejects for `field` is refused by the parser with an error
/// naming that field.
fn assert_refused_naming<T>(case: &str, field: &str, parsed: Result<T, Vec<EntryError>>) {
    match parsed {
        Ok(_) => panic!("{case}: rejected by Nix (field {field}) but accepted by the parser"),
        Err(errs) => assert!(
            errs.iter().any(|e| e.field.as_deref() == Some(field)),
            "{case}: expected an error naming {field}, got:\n{}",
            errs.iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}
