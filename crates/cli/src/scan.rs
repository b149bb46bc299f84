//! Reading every container entry fast, for `list`: one directory listing,
//! then per file `openat` relative to the directory, `fstat`, one `read`,
//! `close` (a link, as declarative entries are, gets one `statat` first, so a
//! FIFO or device is never opened; the listing's file type says which are
//! links). Parsing and validation are the library's
//! ([`registry::parse_entry`]); file problems read like
//! [`registry::read_file`]'s. Large registries are read by two threads.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use nixos_nspawn::registry::{self, Entry, MAX_FILE_SIZE};
use nixos_nspawn::{paths, EntryError, Root};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

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

struct Candidate {
    name: Vec<u8>,
    kind: FileType,
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
    dir: &OwnedFd,
    profiles: Option<&OwnedFd>,
    c: &Candidate,
) -> Result<Scanned, Vec<EntryError>> {
    let name = OsStr::from_bytes(&c.name);
    let logical = Path::new(paths::REGISTRY_DIR).join(name);
    let fail = |msg: String| vec![EntryError::file(&logical, msg)];
    let io = |e: rustix::io::Errno| std::io::Error::from_raw_os_error(e.raw_os_error());
    let link = c.kind == FileType::Symlink;
    if c.kind != FileType::RegularFile {
        // Links and unknown types: what is there, before opening anything.
        let st = rustix::fs::statat(dir, name, AtFlags::empty())
            .map_err(|e| fail(format!("cannot be read: {}", io(e))))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(fail("is not a regular file".into()));
        }
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail(format!("cannot be read: {}", io(e))))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| fail(format!("cannot be read: {}", io(e))))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(fail("is not a regular file".into()));
    }
    let size = st.st_size as u64;
    if size > MAX_FILE_SIZE {
        return Err(fail(format!(
            "is {size} bytes; registry files have at most {MAX_FILE_SIZE}"
        )));
    }
    // One read of size + 1 bytes: fewer than asked means the end.
    let mut buf = vec![0u8; size as usize + 1];
    let mut len = 0;
    loop {
        let n = rustix::io::read(fd.as_fd(), &mut buf[len..])
            .map_err(|e| fail(format!("cannot be read: {}", io(e))))?;
        len += n;
        if n == 0 || len < buf.len() {
            break;
        }
        if buf.len() as u64 > MAX_FILE_SIZE {
            return Err(fail(format!("is larger than {MAX_FILE_SIZE} bytes")));
        }
        buf.resize(buf.len() * 2, 0);
    }
    drop(fd);
    buf.truncate(len);
    let entry = registry::parse_entry(&logical, &buf)?;
    Ok(Scanned {
        generation: generation(profiles, &entry.name),
        entry,
        link,
    })
}

/// Read every `*.json` file of the registry directory (names starting with
/// `.` skipped, as the library does). A missing directory is empty.
pub fn scan(root: &Root) -> Scan {
    let dir_path: PathBuf = root.registry_dir();
    let logical_dir = Path::new(paths::REGISTRY_DIR);
    let mut scan = Scan::default();
    let dir = match rustix::fs::open(
        &dir_path,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(d) => d,
        Err(rustix::io::Errno::NOENT) => return scan,
        Err(e) => {
            scan.errors.push(EntryError::file(
                logical_dir,
                format!(
                    "cannot be listed: {}",
                    std::io::Error::from_raw_os_error(e.raw_os_error())
                ),
            ));
            return scan;
        }
    };
    let mut candidates = Vec::new();
    match rustix::fs::Dir::read_from(&dir) {
        Ok(mut listing) => {
            while let Some(Ok(e)) = listing.read() {
                let name = e.file_name().to_bytes();
                if name.starts_with(b".") || !name.ends_with(b".json") {
                    continue;
                }
                candidates.push(Candidate {
                    name: name.to_vec(),
                    kind: e.file_type(),
                });
            }
        }
        Err(e) => {
            scan.errors.push(EntryError::file(
                logical_dir,
                format!(
                    "cannot be listed: {}",
                    std::io::Error::from_raw_os_error(e.raw_os_error())
                ),
            ));
            return scan;
        }
    }
    candidates.sort_by(|a, b| a.name.cmp(&b.name));
    let profiles = rustix::fs::open(
        root.profiles_dir(),
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok();
    let profiles = profiles.as_ref();
    let results: Vec<Result<Scanned, Vec<EntryError>>> = if candidates.len() >= 256 {
        let half = candidates.len() / 2;
        let (first, second) = candidates.split_at(half);
        std::thread::scope(|s| {
            let t = s.spawn(|| {
                second
                    .iter()
                    .map(|c| read_one(&dir, profiles, c))
                    .collect::<Vec<_>>()
            });
            let mut a: Vec<_> = first.iter().map(|c| read_one(&dir, profiles, c)).collect();
            a.extend(t.join().expect("the reader thread does not panic"));
            a
        })
    } else {
        candidates
            .iter()
            .map(|c| read_one(&dir, profiles, c))
            .collect()
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
