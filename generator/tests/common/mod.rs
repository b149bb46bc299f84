//! Shared by the generator's integration tests: golden cases under
//! `tests/golden/<case>/`, copying them to a temporary root, running the
//! generator and snapshotting trees.
//!
//! A case is `input/` (a root tree: `etc/nixos-nspawn/…`, optionally `run/…`
//! files that exist before the run), an optional `setup` file with directives
//! for what git cannot hold, and `expected/` with `normal/` (the generator's
//! output directory), `run/` (the root's whole `/run` afterwards) and `log.txt`
//! (the warnings and errors logged, root paths shown as `$ROOT`).
//!
//! `setup` directives, one a line (`#` comments):
//! - `dir PATH`: an empty directory at PATH (relative to the root)
//! - `big PATH BYTES`: a JSON file of exactly BYTES bytes
//! - `root-env VALUE`: render with `NIXOS_NSPAWN_ROOT=VALUE` passed to the helpers

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nixos_nspawn_core::render::Context;
use nixos_nspawn_core::Root;
use nixos_nspawn_generator::{kmsg, run, Report};

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden")
}

/// Every case, sorted by name.
pub fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no golden cases found");
    cases
}

/// Every case, prepared: its name, its directory and its temporary root.
pub fn prepared_cases() -> impl Iterator<Item = (String, PathBuf, Prepared)> {
    cases().into_iter().map(|case| {
        let p = prepare(&case);
        (case_name(&case), case, p)
    })
}

pub fn case_name(case: &Path) -> String {
    case.file_name().unwrap().to_string_lossy().into_owned()
}

/// The fixed rendering context of the golden tests, with the addressing
/// settings of the case's root (its `etc/nixos-nspawn/network.json` and
/// `etc/machine-id`, as the generator reads them).
pub fn golden_context(root: &Root) -> Context {
    Context {
        helper_dir: PathBuf::from("/usr/lib/nixos-nspawn"),
        root_env: None,
        unit_dir: PathBuf::from("/usr/lib/systemd/system"),
        nspawn_exe: "systemd-nspawn".into(),
        host_network: nixos_nspawn_core::addressing::load_host_network(root),
    }
}

/// A file or link in a tree (directories are implied by their contents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File(Vec<u8>),
    Link(PathBuf),
}

pub type Tree = BTreeMap<PathBuf, Node>;

/// Every entry below `dir`, a directory before what it holds: `visit` gets
/// its path, its path relative to `dir` joined to `rel`, and its type (a
/// link's own). A missing `dir` holds nothing.
fn walk(dir: &Path, rel: &Path, visit: &mut dyn FnMut(&Path, &Path, std::fs::FileType)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let e = e.unwrap();
        let (path, rel) = (e.path(), rel.join(e.file_name()));
        let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
        visit(&path, &rel, kind);
        if kind.is_dir() {
            walk(&path, &rel, visit);
        }
    }
}

/// Every file and symlink below `dir`, keyed by path relative to `dir`,
/// prefixed with `prefix`. A missing `dir` is an empty tree.
pub fn snapshot(dir: &Path, prefix: &Path) -> Tree {
    let mut tree = Tree::new();
    walk(dir, prefix, &mut |path, rel, kind| {
        if kind.is_symlink() {
            tree.insert(rel.into(), Node::Link(std::fs::read_link(path).unwrap()));
        } else if !kind.is_dir() {
            tree.insert(rel.into(), Node::File(std::fs::read(path).unwrap()));
        }
    });
    tree
}

/// Copy a tree, keeping symlinks as links.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    walk(from, to, &mut |src, dst, kind| {
        if kind.is_symlink() {
            symlink(std::fs::read_link(src).unwrap(), dst).unwrap();
        } else if kind.is_dir() {
            std::fs::create_dir_all(dst).unwrap();
        } else {
            std::fs::copy(src, dst).unwrap();
        }
    });
}

/// Write a tree (for `UPDATE_GOLDEN=1`).
pub fn write_tree(dir: &Path, tree: &Tree) {
    for (rel, node) in tree {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        match node {
            Node::File(bytes) => std::fs::write(&path, bytes).unwrap(),
            Node::Link(target) => symlink(target, &path).unwrap(),
        }
    }
}

/// A case copied into a temporary directory: `root/` and `normal/`.
pub struct Prepared {
    pub tmp: tempfile::TempDir,
    pub ctx: Context,
}

impl Prepared {
    pub fn root(&self) -> Root {
        Root::new(self.root_dir())
    }
    pub fn root_dir(&self) -> PathBuf {
        self.tmp.path().join("root")
    }
    pub fn normal_dir(&self) -> PathBuf {
        self.tmp.path().join("normal")
    }

    /// One generator run; the addressing settings are read again from the
    /// root, as every real run does.
    pub fn run(&self) -> Report {
        let mut ctx = self.ctx.clone();
        ctx.host_network = nixos_nspawn_core::addressing::load_host_network(&self.root());
        run(&self.root(), &self.normal_dir(), &ctx).expect("generator run")
    }

    /// Run into a fresh, empty output directory, as systemd does on every
    /// daemon-reload.
    pub fn rerun(&self) -> Report {
        let _ = std::fs::remove_dir_all(self.normal_dir());
        self.run()
    }

    /// The log lines of a report as `log.txt` holds them.
    pub fn log_text(&self, report: &Report) -> String {
        let root = self.root_dir().display().to_string();
        let normal = self.normal_dir().display().to_string();
        report
            .messages()
            .into_iter()
            .map(|(level, msg)| {
                let msg = msg.replace(&normal, "$NORMAL").replace(&root, "$ROOT");
                format!("{}: {msg}\n", kmsg::level_word(level))
            })
            .collect()
    }

    /// What the golden files describe: `normal/…`, `run/…` and `log.txt`.
    pub fn output_tree(&self, report: &Report) -> Tree {
        let mut tree = snapshot(&self.normal_dir(), Path::new("normal"));
        tree.extend(snapshot(&self.root_dir().join("run"), Path::new("run")));
        tree.insert(
            PathBuf::from("log.txt"),
            Node::File(self.log_text(report).into_bytes()),
        );
        tree
    }

    /// Everything in the root outside `/run`.
    pub fn non_run_tree(&self) -> Tree {
        let mut t = snapshot(&self.root_dir(), Path::new(""));
        t.retain(|k, _| !k.starts_with("run"));
        t
    }
}

/// Copy a case's input to a temporary root and apply its `setup` file.
pub fn prepare(case: &Path) -> Prepared {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    copy_tree(&case.join("input"), &root);
    let mut ctx = golden_context(&Root::new(&root));
    if let Ok(setup) = std::fs::read_to_string(case.join("setup")) {
        for line in setup.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (directive, rest) = line.split_once(' ').unwrap_or((line, ""));
            match directive {
                "dir" => std::fs::create_dir_all(root.join(rest)).unwrap(),
                "big" => {
                    let (path, size) = rest.rsplit_once(' ').expect("big PATH BYTES");
                    let size: usize = size.parse().unwrap();
                    let head = b"{\"version\": 1, \"name\": \"";
                    let tail = b"\"}\n";
                    let mut bytes = head.to_vec();
                    bytes.resize(size - tail.len(), b'x');
                    bytes.extend_from_slice(tail);
                    let path = root.join(path);
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(path, bytes).unwrap();
                }
                "root-env" => ctx.root_env = Some(PathBuf::from(rest)),
                other => panic!("{}: unknown setup directive {other:?}", case.display()),
            }
        }
    }
    Prepared { tmp, ctx }
}

/// A readable description of how two trees differ, empty when they do not.
pub fn diff_trees(expected: &Tree, actual: &Tree) -> String {
    let mut out = String::new();
    for k in expected.keys().filter(|k| !actual.contains_key(*k)) {
        out.push_str(&format!("  missing: {}\n", k.display()));
    }
    for k in actual.keys().filter(|k| !expected.contains_key(*k)) {
        out.push_str(&format!("  unexpected: {}\n", k.display()));
    }
    for (k, want) in expected {
        let Some(got) = actual.get(k) else { continue };
        if want == got {
            continue;
        }
        out.push_str(&format!("  differs: {}\n", k.display()));
        match (want, got) {
            (Node::File(a), Node::File(b)) => {
                let a = String::from_utf8_lossy(a);
                let b = String::from_utf8_lossy(b);
                let (al, bl): (Vec<_>, Vec<_>) = (a.lines().collect(), b.lines().collect());
                for i in 0..al.len().max(bl.len()) {
                    let (x, y) = (al.get(i), bl.get(i));
                    if x != y {
                        out.push_str(&format!(
                            "    line {}:\n      expected: {}\n      actual:   {}\n",
                            i + 1,
                            x.map_or("<none>".into(), |s| format!("{s:?}")),
                            y.map_or("<none>".into(), |s| format!("{s:?}"))
                        ));
                        break;
                    }
                }
            }
            (a, b) => out.push_str(&format!("    expected {a:?}\n    actual   {b:?}\n")),
        }
    }
    out
}
