//! Reading every container entry fast, for `list`: the library's registry
//! walk ([`Listing`], as the generator reads it), plus one `readlinkat` of
//! the profile's `system` link per container.

use std::os::fd::OwnedFd;

use nixos_nspawn_core::registry::{self, Entry, Listing};
use nixos_nspawn_core::{paths, EntryError, Root};
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
    nixos_nspawn_core::profile::parse_link_name(std::str::from_utf8(target).ok()?)
}

/// The current generation of `name`'s profile, relative to the profiles directory.
fn generation(profiles: Option<&OwnedFd>, name: &str) -> Option<u64> {
    let target = rustix::fs::readlinkat(profiles?, format!("{name}/system"), Vec::new()).ok()?;
    link_generation(target.as_bytes())
}

/// Read every `*.json` file of the registry directory through the library's
/// walk ([`Listing::map`]). A missing directory is empty.
pub fn scan(root: &Root) -> Scan {
    let mut scan = Scan::default();
    let listing = match Listing::of(root, paths::REGISTRY_DIR) {
        Ok(Some(l)) => l,
        Ok(None) => return scan,
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
    let results = listing.map(|dir, f| -> Result<Scanned, Vec<EntryError>> {
        let entry = dir.load(f, registry::parse_entry)?;
        Ok(Scanned {
            generation: generation(profiles, &entry.name),
            link: f.kind == FileType::Symlink,
            entry,
        })
    });
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

    /// Every valid entry in file order (two walkers: more than
    /// `PARALLEL_FROM` files), links told apart, one error per bad file, and
    /// neither a FIFO nor a directory stops or hangs it.
    #[test]
    fn entries_links_and_bad_files() {
        let (d, root) = nixos_nspawn_core::testing::temp_root();
        for i in 0..300 {
            edit::write_entry(&root, &Entry::new(&format!("c{i:03}"), "/nix/store/x")).unwrap();
        }
        let reg = root.registry_dir();
        std::fs::write(reg.join("bad.json"), "{").unwrap();
        std::fs::write(reg.join("wrong.json"), Entry::new("other", "/x").to_json()).unwrap();
        std::fs::write(reg.join(".tmp.json"), "{").unwrap();
        std::fs::write(reg.join("notes.txt"), "{").unwrap();
        std::os::unix::fs::symlink("/nonexistent", reg.join("dangling.json")).unwrap();
        std::fs::create_dir(reg.join("dir.json")).unwrap();
        nixos_nspawn_core::testing::mkfifo(&reg.join("fifo.json"));
        let target = d.path().join("store-entry.json");
        std::fs::write(&target, Entry::new("linked", "/x").to_json()).unwrap();
        std::os::unix::fs::symlink(&target, reg.join("linked.json")).unwrap();

        let s = scan(&root);
        let names: Vec<&str> = s.entries.iter().map(|s| s.entry.name.as_str()).collect();
        let mut want: Vec<String> = (0..300).map(|i| format!("c{i:03}")).collect();
        want.push("linked".into());
        assert_eq!(names, want);
        let links: Vec<&str> = s
            .entries
            .iter()
            .filter(|s| s.link)
            .map(|s| s.entry.name.as_str())
            .collect();
        assert_eq!(links, ["linked"]);
        let errors: Vec<String> = s.errors.iter().map(ToString::to_string).collect();
        let dir = "/etc/nixos-nspawn/containers";
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(errors[0].starts_with(&format!("{dir}/bad.json: ")));
        assert_eq!(
            errors[1],
            format!("{dir}/dangling.json: cannot be read: No such file or directory (os error 2)")
        );
        assert_eq!(errors[2], format!("{dir}/dir.json: is not a regular file"));
        assert_eq!(errors[3], format!("{dir}/fifo.json: is not a regular file"));
        assert!(errors[4].starts_with(&format!("{dir}/wrong.json: ")));
    }

    #[test]
    fn missing_directory_is_empty() {
        let d = tempfile::tempdir().unwrap();
        let s = scan(&Root::new(d.path().join("nothing")));
        assert!(s.entries.is_empty() && s.errors.is_empty());
    }
}
