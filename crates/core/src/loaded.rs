//! Whether systemd has loaded what the generator makes of the registry as it
//! is now, so `apply` (run after every `nixos-rebuild switch`) can leave out a
//! `daemon-reload` that would change nothing: with 100 containers one costs
//! half a second and re-runs every generator.
//!
//! The generator's output depends on its program and on a few files: the
//! container and zone directories (entries and closures), the host's
//! `network.json` and the machine ID (its ULA). [`inputs`] describes them as
//! they are (per name: type, device, inode, size, modification and change
//! time, links followed, so a declarative entry's store file counts), and the
//! generator, when systemd runs it, records that description taken *before*
//! it reads anything ([`record`] into `/run/nixos-nspawn/systemd-loaded`). A
//! file changed after that point differs from the record, so a stale record
//! can only cause a needless reload, never a missed one. Every write of ours
//! replaces a file (a new inode) and an edit in place changes the change
//! time, so equal descriptions mean the generator would read the same files.
//!
//! The record is in `/run`, gone at boot (where the generator runs anyway),
//! and carries the project's version, so a new version reloads once. Not
//! covered: a generator binary replaced without a version change and without
//! a daemon-reload (package managers reload after an upgrade;
//! `systemctl daemon-reload` does it by hand).

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use rustix::fs::{AtFlags, Mode, OFlags, Stat};

use crate::addressing::{HOST_NETWORK_FILE, MACHINE_ID_FILE};
use crate::output::write_atomic;
use crate::paths::{self, Root};

/// The generator's input files as they are now (see the module documentation).
pub fn inputs(root: &Root) -> String {
    let mut out = format!("nixos-nspawn {}\n", crate::VERSION);
    for dir in [paths::REGISTRY_DIR, paths::ZONES_DIR] {
        describe_dir(root, dir, &mut out);
    }
    for file in [HOST_NETWORK_FILE, MACHINE_ID_FILE] {
        let st = rustix::fs::stat(root.join(file));
        let _ = writeln!(out, "{file} {}", identity(st));
    }
    out
}

/// Record that systemd loads what the generator renders from `inputs`
/// (taken before it read them).
pub fn record(root: &Root, inputs: &str) -> Result<()> {
    let path = root.join(paths::SYSTEMD_RECORD);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_atomic(&path, summary(inputs).as_bytes(), 0o644)
        .map(|_| ())
        .with_context(|| format!("writing {}", path.display()))
}

/// Whether the record says systemd loaded the generator's output of the
/// inputs as they are now. No record, or one that cannot be read: false.
pub fn is_current(root: &Root) -> bool {
    std::fs::read_to_string(root.join(paths::SYSTEMD_RECORD))
        .is_ok_and(|recorded| recorded == summary(&inputs(root)))
}

/// What the record holds: the description's first line (the version) and
/// its length and hash.
fn summary(inputs: &str) -> String {
    let version = inputs.lines().next().unwrap_or_default();
    format!(
        "{version}\n{}\n",
        crate::networkd::fingerprint(inputs.as_bytes())
    )
}

fn identity(st: rustix::io::Result<Stat>) -> String {
    match st {
        Ok(st) => format!(
            "{:o} {}:{} {} {}.{} {}.{}",
            st.st_mode,
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime,
            st.st_mtime_nsec,
            st.st_ctime,
            st.st_ctime_nsec
        ),
        Err(e) => format!("({e})"),
    }
}

/// A directory and every name in it but dot files (temporary files of
/// atomic writes, which nothing reads), sorted.
fn describe_dir(root: &Root, logical: &str, out: &mut String) {
    let fd = match rustix::fs::open(
        root.join(logical),
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = writeln!(out, "{logical} ({e})");
            return;
        }
    };
    // Which directory (it may be a link the admin made); not its times,
    // which temporary files change.
    match rustix::fs::fstat(&fd) {
        Ok(st) => writeln!(out, "{logical} {}:{}", st.st_dev, st.st_ino),
        Err(e) => writeln!(out, "{logical} ({e})"),
    }
    .ok();
    let mut names = Vec::new();
    match rustix::fs::Dir::read_from(&fd) {
        Ok(mut dir) => {
            while let Some(entry) = dir.read() {
                match entry {
                    Ok(e) if !e.file_name().to_bytes().starts_with(b".") => {
                        names.push(e.file_name().to_bytes().to_owned());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = writeln!(out, "({e})");
                        break;
                    }
                }
            }
        }
        Err(e) => {
            let _ = writeln!(out, "({e})");
        }
    }
    names.sort();
    for name in names {
        let st = rustix::fs::statat(&fd, OsStr::from_bytes(&name), AtFlags::empty());
        let _ = writeln!(
            out,
            "{:?} {}",
            Path::new(OsStr::from_bytes(&name)),
            identity(st)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::temp_root;

    fn write(root: &Root, logical: &str, contents: &str) {
        let p = root.join(logical);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        crate::output::write_atomic(&p, contents.as_bytes(), 0o644).unwrap();
    }

    #[test]
    fn current_until_an_input_changes() {
        let (_t, root) = temp_root();
        write(&root, "/etc/nixos-nspawn/containers/web.json", "{}");
        assert!(!is_current(&root), "no record");
        record(&root, &inputs(&root)).unwrap();
        assert!(is_current(&root));

        // Each input, changed, makes it stale; recording again makes it current.
        type Change = Box<dyn Fn(&Root)>;
        let changes: Vec<(&str, Change)> = vec![
            (
                "an entry replaced",
                Box::new(|r| write(r, "/etc/nixos-nspawn/containers/web.json", "{ }")),
            ),
            (
                "an entry added",
                Box::new(|r| write(r, "/etc/nixos-nspawn/containers/db.json", "{}")),
            ),
            (
                "a closure added",
                Box::new(|r| {
                    write(
                        r,
                        "/etc/nixos-nspawn/containers/db.closure",
                        "/nix/store/x\n",
                    )
                }),
            ),
            (
                "an entry removed",
                Box::new(|r| {
                    std::fs::remove_file(r.join("/etc/nixos-nspawn/containers/db.json")).unwrap()
                }),
            ),
            (
                "a zone added",
                Box::new(|r| write(r, "/etc/nixos-nspawn/zones/z.json", "{}")),
            ),
            (
                "network.json added",
                Box::new(|r| write(r, "/etc/nixos-nspawn/network.json", "{}")),
            ),
            (
                "the machine ID written",
                Box::new(|r| write(r, "/etc/machine-id", "0123456789abcdef0123456789abcdef\n")),
            ),
            (
                "an entry edited in place, same size",
                Box::new(|r| {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    std::fs::write(r.join("/etc/nixos-nspawn/containers/web.json"), "{\t}")
                        .unwrap();
                }),
            ),
            (
                "the link of a declarative entry pointed elsewhere",
                Box::new(|r| {
                    write(r, "/store/a.json", "{}");
                    write(r, "/store/b.json", "{}");
                    let link = r.join("/etc/nixos-nspawn/containers/decl.json");
                    std::os::unix::fs::symlink(r.join("/store/a.json"), &link).unwrap();
                    record(r, &inputs(r)).unwrap();
                    std::fs::remove_file(&link).unwrap();
                    std::os::unix::fs::symlink(r.join("/store/b.json"), &link).unwrap();
                }),
            ),
        ];
        for (what, change) in changes {
            change(&root);
            assert!(!is_current(&root), "{what}: still current");
            record(&root, &inputs(&root)).unwrap();
            assert!(is_current(&root), "{what}: recorded, not current");
        }

        // Temporary files of atomic writes are not inputs.
        write(
            &root,
            "/etc/nixos-nspawn/containers/.web.json.1234.tmp",
            "{",
        );
        assert!(is_current(&root));
    }

    #[test]
    fn a_record_taken_before_a_change_is_stale() {
        let (_t, root) = temp_root();
        write(&root, "/etc/nixos-nspawn/containers/web.json", "{}");
        let before = inputs(&root);
        write(&root, "/etc/nixos-nspawn/containers/web.json", "{\"x\":1}");
        record(&root, &before).unwrap();
        assert!(!is_current(&root));
    }

    #[test]
    fn another_version_is_stale() {
        let (_t, root) = temp_root();
        let now = inputs(&root);
        record(&root, &now.replacen(crate::VERSION, "0.0.0-other", 1)).unwrap();
        assert!(!is_current(&root));
        std::fs::write(root.join(paths::SYSTEMD_RECORD), "garbage").unwrap();
        assert!(!is_current(&root));
    }
}
