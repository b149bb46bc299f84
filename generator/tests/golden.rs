//! Golden directory tests: every case under `tests/golden/` is copied to a
//! temporary root, the generator runs, and the whole output (the generator's
//! output directory, the root's `/run` and the log) must equal `expected/`
//! byte for byte. `UPDATE_GOLDEN=1 cargo test -p nixos-nspawn-generator --test
//! golden` rewrites `expected/`; review the diff before committing it.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;
use nixos_nspawn_core::unit::{self, Dialect};
use nixos_nspawn_core::HEADER_PREFIX;

#[test]
fn golden_trees() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut failures = String::new();
    for (name, case, p) in prepared_cases() {
        let before = p.non_run_tree();
        let report = p.run();
        let actual = p.output_tree(&report);
        assert_eq!(
            p.non_run_tree(),
            before,
            "{name}: something was written outside /run and the output directory"
        );
        let expected_dir = case.join("expected");
        if update {
            let _ = std::fs::remove_dir_all(&expected_dir);
            write_tree(&expected_dir, &actual);
            continue;
        }
        let expected = snapshot(&expected_dir, Path::new(""));
        let diff = diff_trees(&expected, &actual);
        if !diff.is_empty() {
            failures.push_str(&format!("{name}:\n{diff}"));
        }
    }
    assert!(
        failures.is_empty(),
        "golden output differs (UPDATE_GOLDEN=1 rewrites expected/; review the diff):\n{failures}"
    );
}

/// Inode and modification time of every file under the root's `/run`.
fn run_stamps(p: &Prepared) -> BTreeMap<PathBuf, (u64, i64, i64)> {
    snapshot(&p.root_dir().join("run"), Path::new(""))
        .into_keys()
        .map(|rel| {
            let m = std::fs::symlink_metadata(p.root_dir().join("run").join(&rel)).unwrap();
            (rel, (m.ino(), m.mtime(), m.mtime_nsec()))
        })
        .collect()
}

#[test]
fn second_run_changes_nothing() {
    for (name, _, p) in prepared_cases() {
        let first = p.run();
        let tree = p.output_tree(&first);
        let stamps = run_stamps(&p);
        // Into the same output directory (a manual re-run) and into a fresh
        // one (what systemd does on daemon-reload).
        for second in [p.run(), p.rerun()] {
            assert_eq!(
                diff_trees(&tree, &p.output_tree(&second)),
                "",
                "{name}: second run changed the output"
            );
            assert_eq!(
                run_stamps(&p),
                stamps,
                "{name}: second run rewrote files under /run"
            );
            if let Ok(c) = &second.run {
                assert_eq!(c.written, Vec::<PathBuf>::new(), "{name}");
                assert_eq!(c.pruned, Vec::<PathBuf>::new(), "{name}");
            }
        }
    }
}

fn is_ours(node: &Node) -> bool {
    matches!(node, Node::File(b) if b.starts_with(HEADER_PREFIX.as_bytes()))
}

#[test]
fn removing_entries_prunes_their_files() {
    for (name, _, p) in prepared_cases() {
        let first = p.run();
        let registry = p.root_dir().join("etc/nixos-nspawn");
        if let Some(gone) = first.containers.first() {
            std::fs::remove_file(registry.join(format!("containers/{gone}.json"))).unwrap();
            let second = p.rerun();
            assert!(!second.containers.contains(gone), "{name}");
            assert_eq!(second.containers.len(), first.containers.len() - 1);
            for (path, node) in p.output_tree(&second) {
                let s = path.to_string_lossy();
                let about_gone = s.contains(&format!("@{gone}.service"))
                    || s.ends_with(&format!("/{gone}.nspawn"))
                    || s.ends_with(&format!("-ve-{gone}.network"));
                assert!(
                    !about_gone || (s.starts_with("run/") && !is_ours(&node)),
                    "{name}: {s} left behind after removing {gone}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&registry);
        let last = p.rerun();
        assert!(
            last.containers.is_empty() && last.errors.is_empty(),
            "{name}"
        );
        for (path, node) in p.output_tree(&last) {
            let s = path.to_string_lossy();
            // Dot files may be another writer's temporary files: never pruned.
            let hidden = path.file_name().unwrap().to_string_lossy().starts_with('.');
            assert!(
                s == "log.txt" || (s.starts_with("run/") && (hidden || !is_ours(&node))),
                "{name}: {s} left behind after removing the registry"
            );
        }
    }
}

/// The dialect a generated file is read in, `None` for files we do not parse.
fn dialect(path: &Path) -> Option<Dialect> {
    match path.extension()?.to_str()? {
        "conf" => Some(Dialect::Unit),
        "nspawn" | "network" | "netdev" => Some(Dialect::Plain),
        _ => None,
    }
}

#[test]
fn rendered_files_parse_back() {
    let mut checked = 0;
    for (name, _, p) in prepared_cases() {
        let report = p.run();
        for (path, node) in p.output_tree(&report) {
            let Node::File(bytes) = &node else { continue };
            let Some(dialect) = dialect(&path) else {
                continue;
            };
            if path.starts_with("run") && !is_ours(&node) {
                continue; // a foreign file the case keeps around
            }
            let what = format!("{name}: {}", path.display());
            let text = std::str::from_utf8(bytes).unwrap_or_else(|_| panic!("{what}: not UTF-8"));
            assert!(text.starts_with(HEADER_PREFIX), "{what}: no header");
            assert!(text.ends_with('\n'), "{what}: no final newline");
            let parsed = unit::parse(text, dialect).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(!parsed.is_empty(), "{what}: no sections");
            for (section, keys) in &parsed {
                assert!(unit::check_name(section).is_ok(), "{what}: [{section}]");
                for (key, value) in keys {
                    assert!(unit::check_name(key).is_ok(), "{what}: {key}");
                    if dialect == Dialect::Unit && key.starts_with("Exec") && !value.is_empty() {
                        unit::split_exec(value).unwrap_or_else(|e| panic!("{what}: {key}: {e}"));
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} files checked");
}

/// The `escaping` case: registry strings with specifiers, `$`, quotes and
/// backslashes read back exactly as given.
#[test]
fn escaped_values_read_back_unchanged() {
    let case = golden_dir().join("escaping");
    let p = prepare(&case);
    let report = p.run();
    assert_eq!(report.errors, vec![], "the escaping case is valid");
    let entry: serde_json::Value = serde_json::from_slice(
        &std::fs::read(case.join("input/etc/nixos-nspawn/containers/esc.json")).unwrap(),
    )
    .unwrap();
    let dropin = std::fs::read_to_string(
        p.normal_dir()
            .join("systemd-nspawn@esc.service.d/50-nixos-nspawn.conf"),
    )
    .unwrap();
    let parsed = unit::parse(&dropin, Dialect::Unit).unwrap();
    let get = |section: &str, key: &str| -> Vec<String> {
        parsed
            .iter()
            .filter(|(s, _)| s == section)
            .flat_map(|(_, keys)| keys.iter().filter(|(k, _)| k == key))
            .map(|(_, v)| v.clone())
            .collect()
    };
    let description = entry["extraService"]["Unit"]["Description"]
        .as_str()
        .unwrap();
    assert_eq!(get("Unit", "Description").last().unwrap(), description);
    assert!(dropin.contains("%%n"), "{dropin}");
    // Credentials are passed on systemd-nspawn's command line.
    let exec = get("Service", "ExecStart");
    let argv = unit::split_exec(exec.last().unwrap()).unwrap();
    for cred in entry["credentials"].as_array().unwrap() {
        let want = format!(
            "--load-credential={}:{}",
            cred["id"].as_str().unwrap(),
            cred["path"].as_str().unwrap()
        );
        assert!(argv.contains(&want), "{want} not in {argv:?}");
    }
    // Bind mount sources are required mounts, `%` escaped.
    for b in entry["bindMounts"].as_array().unwrap() {
        let host = b.as_str().unwrap().split(':').next().unwrap();
        assert!(get("Unit", "RequiresMountsFor").contains(&host.to_string()));
    }
    // Plain files keep `%`, `$` and quotes as they are.
    let nspawn =
        std::fs::read_to_string(p.root_dir().join("run/systemd/nspawn/esc.nspawn")).unwrap();
    let parsed = unit::parse(&nspawn, Dialect::Plain).unwrap();
    for (key, want) in entry["extraNspawn"]["Exec"].as_object().unwrap() {
        let got: Vec<&str> = parsed
            .iter()
            .filter(|(s, _)| s == "Exec")
            .flat_map(|(_, keys)| keys.iter().filter(|(k, _)| k == key))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(got, vec![want.as_str().unwrap()], "Exec.{key}");
    }
}

/// `run()` renders and writes one container at a time; what it writes must be
/// exactly [`render::render_registry`]'s output.
#[test]
fn streamed_output_equals_render_registry() {
    use nixos_nspawn_core::registry;
    use nixos_nspawn_core::render::{self, Contents, Dest};
    for (name, _, p) in prepared_cases() {
        let rendered = render::render_registry(&registry::load(&p.root()), &p.ctx);
        let report = p.run();
        assert_eq!(report.containers, rendered.containers, "{name}");
        assert_eq!(report.errors, rendered.errors, "{name}");
        let mut want = BTreeMap::new();
        for f in &rendered.files {
            let (key, ours) = match &f.dest {
                Dest::Generator(rel) => (Path::new("normal").join(rel), true),
                Dest::Run(logical) => (
                    Path::new("run").join(logical.strip_prefix("/run").unwrap()),
                    false,
                ),
            };
            let node = match &f.contents {
                Contents::File(text) => Node::File(text.clone().into_bytes()),
                Contents::Symlink(target) => Node::Link(target.clone()),
            };
            want.insert(key, (node, ours));
        }
        let got = p.output_tree(&report);
        for (key, (node, in_normal)) in &want {
            // Under /run: not over someone else's file, and not where the
            // case makes writing fail.
            let foreign_there = got.get(key).is_some_and(|n| !is_ours(n));
            let unwritable = report.run.is_err() && !got.contains_key(key);
            if *in_normal || !(foreign_there || unwritable) {
                assert_eq!(got.get(key), Some(node), "{name}: {}", key.display());
            }
        }
        let normal_files = got.keys().filter(|k| k.starts_with("normal")).count();
        assert_eq!(
            normal_files,
            rendered
                .files
                .iter()
                .filter(|f| matches!(f.dest, Dest::Generator(_)))
                .count(),
            "{name}"
        );
        assert_eq!(report.generator_files, normal_files, "{name}");
    }
}
