//! Reading every container entry fast, for `list`: the library's
//! [`RegistryDir`] (one listing, then per file `openat` relative to the
//! directory, `fstat`, one `read`, `close`; the generator reads the registry
//! the same way), plus one `readlinkat` of the profile's `system` link.
//! Parsing and validation are the library's ([`registry::parse_entry`]).
//! Large registries are read by two threads.

use std::os::fd::OwnedFd;

use nixos_nspawn::registry::{self, Entry, Listed, RegistryDir};
use nixos_nspawn::{paths, EntryError, Root};
use rustix::fs::{FileType, Mode, OFlags};

/// One registry file, read.
#[derive(Debug)]
pub struct Scanned {
    pub entry: Entry,
    /// The file is a symlink (the NixOS module's declarative entries are).
    pub link: bool,
    /// The current generation of its profile (from the `system` link alone).
    pub generation: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Scan {
    /// Valid entries, sorted by name.
    pub entries: Vec<Scanned>,
    pub errors: Vec<EntryError>,
}

/// `system-N-link` -> N.
pub fn link_generation(target: &[u8]) -> Option<u64> {
    nixos_nspawn::profile::parse_link_name(std::str::from_utf8(target).ok()?)
}

/// The current generation of `name`'s profile, relative to the profiles directory.
fn generation(profiles: Option<&OwnedFd>, name: &str) -> Option<u64> {
    let target = rustix::fs::readlinkat(profiles?, format!("{name}/system"), Vec::new()).ok()?;
    link_generation(target.as_bytes())
}

fn read_one(
    dir: &RegistryDir,
    profiles: Option<&OwnedFd>,
    f: &Listed,
) -> Result<Scanned, Vec<EntryError>> {
    let entry = dir.load(f, registry::parse_entry)?;
    Ok(Scanned {
        generation: generation(profiles, &entry.name),
        link: f.kind == FileType::Symlink,
        entry,
    })
}

/// Read every `*.json` file of the registry directory (names starting with
/// `.` skipped, as the library does). A missing directory is empty.
pub fn scan(root: &Root) -> Scan {
    let mut scan = Scan::default();
    let dir = match RegistryDir::open(root, paths::REGISTRY_DIR) {
        Ok(Some(d)) => d,
        Ok(None) => return scan,
        Err(e) => {
            scan.errors.push(e);
            return scan;
        }
    };
    let files = match dir.list() {
        Ok(f) => f,
        Err(e) => {
            scan.errors.push(e);
            return scan;
        }
    };
    let profiles = rustix::fs::open(
        root.profiles_dir(),
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok();
    let profiles = profiles.as_ref();
    let results: Vec<Result<Scanned, Vec<EntryError>>> = if files.len() >= 256 {
        let half = files.len() / 2;
        let (first, second) = files.split_at(half);
        std::thread::scope(|s| {
            let t = s.spawn(|| {
                second
                    .iter()
                    .map(|f| read_one(&dir, profiles, f))
                    .collect::<Vec<_>>()
            });
            let mut a: Vec<_> = first.iter().map(|f| read_one(&dir, profiles, f)).collect();
            a.extend(t.join().expect("the reader thread does not panic"));
            a
        })
    } else {
        files.iter().map(|f| read_one(&dir, profiles, f)).collect()
    };
    for r in results {
        match r {
            Ok(s) => scan.entries.push(s),
            Err(errs) => scan.errors.extend(errs),
        }
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit;

    /// The same entries and the same errors as the library's loader.
    #[test]
    fn agrees_with_the_library() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        for i in 0..300 {
            edit::write_entry(&root, &Entry::new(&format!("c{i}"), "/nix/store/x")).unwrap();
        }
        let reg = root.registry_dir();
        std::fs::write(reg.join("bad.json"), "{").unwrap();
        std::fs::write(reg.join("wrong.json"), Entry::new("other", "/x").to_json()).unwrap();
        std::fs::write(reg.join(".tmp.json"), "{").unwrap();
        std::fs::write(reg.join("notes.txt"), "{").unwrap();
        std::os::unix::fs::symlink(reg.join("c1.json"), reg.join("linked.json")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", reg.join("dangling.json")).unwrap();
        std::fs::create_dir(reg.join("dir.json")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            reg.join("fifo.json"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        std::fs::write(
            reg.join("linked-target.json"),
            Entry::new("linked", "/x").to_json(),
        )
        .unwrap();
        std::fs::remove_file(reg.join("linked.json")).unwrap();
        std::os::unix::fs::symlink(reg.join("linked-target.json"), reg.join("linked.json"))
            .unwrap();

        let ours = scan(&root);
        let lib = registry::load(&root);
        let names: Vec<&str> = ours.entries.iter().map(|s| s.entry.name.as_str()).collect();
        let lib_names: Vec<&str> = lib.containers.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, lib_names);
        assert_eq!(
            ours.entries.iter().map(|s| &s.entry).collect::<Vec<_>>(),
            lib.containers.iter().collect::<Vec<_>>()
        );
        let mut a: Vec<String> = ours.errors.iter().map(|e| e.to_string()).collect();
        let mut b: Vec<String> = lib.errors.iter().map(|e| e.to_string()).collect();
        a.sort();
        b.sort();
        assert_eq!(a.len(), b.len(), "{a:#?}\n{b:#?}");
        // Same files named; the messages agree on what is wrong.
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.split(':').next(), y.split(':').next(), "{x} / {y}");
        }
        assert!(ours
            .entries
            .iter()
            .any(|s| s.entry.name == "linked" && s.link));
        assert!(ours.entries.iter().filter(|s| s.link).count() == 1);
    }

    #[test]
    fn missing_directory_is_empty() {
        let d = tempfile::tempdir().unwrap();
        let s = scan(&Root::new(d.path().join("nothing")));
        assert!(s.entries.is_empty() && s.errors.is_empty());
    }
}
