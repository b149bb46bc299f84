//! The one place that decides whether systemd-networkd must be told about our
//! files in `/run/systemd/network`, and tells it.
//!
//! The generator writes those files at boot and at every `daemon-reload`, but
//! a generator must not talk to daemons, and networkd reads its files only when
//! it starts or is reloaded. So whoever runs after a daemon-reload — the CLI
//! after each registry edit and `apply` (after every `nixos-rebuild switch`),
//! the bootstrap helper before each container start — calls [`sync`], which
//! compares our files now with what networkd was last made to load, recorded
//! in `/run/nixos-nspawn/networkd-loaded.json` (name → length and hash of the
//! contents), and when they differ runs `networkctl reload` (networkd then
//! reconfigures every link whose `.network` file is new, changed or removed,
//! and creates new netdevs) and records the new state. Nothing to do costs
//! one directory listing and the reads of a few small files.
//!
//! Without a record (first call after boot, or networkd was not running last
//! time) it reloads once when we have files: harmless when networkd already
//! has them (unchanged links are left alone) and right when it has not.
//! Without files of ours and without a record nothing is done (a host with
//! host-network containers only never talks to networkd).
//!
//! networkd creates netdevs but never deletes one whose `.netdev` file is
//! gone: a zone removed after boot would leave its bridge `vz-ZONE` and its
//! port `vd-ZONE` behind. So the reload is told the links whose `.netdev`
//! of ours was removed and that have no `.network` of ours any more
//! ([`Changes::removed_netdevs`]: a zone still used by a container keeps its
//! bridge), and deletes them after reloading (`networkctl delete`).
//!
//! A failed reload (networkd not running, no `networkctl`) leaves the record
//! as it was, so the next caller tries again; the caller gets the error to
//! report (it is never fatal: networkd reads the files when it starts).
//! Callers are serialised with a `flock` on the record's directory, so eight
//! containers starting at once cause one reload, not eight.

use std::collections::BTreeMap;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::output::{is_ours, write_atomic};
use crate::paths::{self, Root};

/// What networkd was last made to load: our file names → fingerprint.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub files: BTreeMap<String, String>,
}

/// The difference between our files now and the [`Record`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// No record existed (or it could not be read): a reload is due anyway.
    pub no_record: bool,
    /// Files that are new or whose contents changed.
    pub changed: Vec<String>,
    /// Files that are gone.
    pub removed: Vec<String>,
}

impl Changes {
    pub fn any(&self) -> bool {
        self.no_record || !self.changed.is_empty() || !self.removed.is_empty()
    }

    /// The links whose `.network` file is new, changed or removed (`ve-NAME`,
    /// `vz-ZONE`), from our file names.
    pub fn links(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .changed
            .iter()
            .chain(&self.removed)
            .filter_map(|f| link_of(f))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The links to delete: those whose `.netdev` file of ours was removed
    /// and that have no `.network` file of ours in `now` (networkd does not
    /// delete netdevs itself).
    pub fn removed_netdevs(&self, now: &Record) -> Vec<String> {
        let mut v: Vec<String> = self
            .removed
            .iter()
            .filter(|f| f.ends_with(".netdev"))
            .filter_map(|f| link_of(f))
            .filter(|link| {
                !now.files
                    .contains_key(&format!("20-nixos-nspawn-{link}.network"))
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// One line for the log.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.no_record {
            parts.push("no record of what networkd loaded".to_owned());
        }
        if !self.changed.is_empty() {
            parts.push(format!("new or changed: {}", self.changed.join(", ")));
        }
        if !self.removed.is_empty() {
            parts.push(format!("removed: {}", self.removed.join(", ")));
        }
        parts.join("; ")
    }
}

/// What [`sync`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Synced {
    pub changes: Changes,
    /// Whether `networkctl reload` ran (and succeeded).
    pub reloaded: bool,
}

/// `20-nixos-nspawn-ve-NAME.network` → `ve-NAME` (also `vz-ZONE`, and the
/// `.netdev` of a zone).
pub fn link_of(file: &str) -> Option<String> {
    let rest = file.strip_prefix("20-nixos-nspawn-")?;
    let link = rest
        .strip_suffix(".network")
        .or_else(|| rest.strip_suffix(".netdev"))?;
    (link.starts_with("ve-") || link.starts_with("vz-") || link.starts_with("vd-"))
        .then(|| link.to_owned())
}

/// FNV-1a (64 bits) of the contents with their length: enough to tell our
/// own files' versions apart (they are not adversarial: root writes the
/// registry they come from).
pub(crate) fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}:{h:016x}", bytes.len())
}

/// Our files in `/run/systemd/network` now (a missing directory is empty).
pub fn current(root: &Root) -> Result<Record> {
    let dir = root.network_dir();
    let mut rec = Record::default();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(rec),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for e in rd {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || !(name.ends_with(".network") || name.ends_with(".netdev")) {
            continue;
        }
        let path = e.path();
        if !is_ours(&path) {
            continue;
        }
        match std::fs::read(&path) {
            Ok(bytes) => {
                rec.files.insert(name, fingerprint(&bytes));
            }
            // Pruned meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(rec)
}

fn record_path(root: &Root) -> PathBuf {
    root.join(paths::NETWORKD_RECORD)
}

/// The record, `None` when there is none or it is unreadable.
pub fn recorded(root: &Root) -> Option<Record> {
    let bytes = std::fs::read(record_path(root)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Compare `now` with `recorded`.
pub fn diff(recorded: Option<&Record>, now: &Record) -> Changes {
    let Some(old) = recorded else {
        if now.files.is_empty() {
            // Nothing of ours for networkd to load (host-network containers
            // only, or none): no reason to talk to it.
            return Changes::default();
        }
        return Changes {
            no_record: true,
            changed: now.files.keys().cloned().collect(),
            removed: Vec::new(),
        };
    };
    Changes {
        no_record: false,
        changed: now
            .files
            .iter()
            .filter(|(k, v)| old.files.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .collect(),
        removed: old
            .files
            .keys()
            .filter(|k| !now.files.contains_key(*k))
            .cloned()
            .collect(),
    }
}

/// What is due, without doing anything (for `status`, tests).
pub fn pending(root: &Root) -> Result<Changes> {
    Ok(diff(recorded(root).as_ref(), &current(root)?))
}

/// Make networkd load our files if they changed since it last did: `reload`
/// runs `networkctl reload` and then deletes the links it is given
/// ([`Changes::removed_netdevs`]; the caller's program and its way of running
/// it, e.g. [`networkctl_reload`]). `Err` only when the reload was due and
/// failed, or the files could not be read; the record is then left as it was.
pub fn sync(root: &Root, reload: &mut dyn FnMut(&[String]) -> Result<()>) -> Result<Synced> {
    let lock_dir = root.join(paths::STATE_DIR);
    std::fs::create_dir_all(&lock_dir)
        .with_context(|| format!("creating directory {}", lock_dir.display()))?;
    let lock = std::fs::File::open(&lock_dir)
        .with_context(|| format!("opening {}", lock_dir.display()))?;
    loop {
        match rustix::fs::flock(lock.as_fd(), rustix::fs::FlockOperation::LockExclusive) {
            Ok(()) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("locking {}", lock_dir.display()))
            }
        }
    }
    let now = current(root)?;
    let changes = diff(recorded(root).as_ref(), &now);
    if !changes.any() {
        return Ok(Synced {
            changes,
            reloaded: false,
        });
    }
    let delete = changes.removed_netdevs(&now);
    reload(&delete).with_context(|| {
        format!(
            "networkd was not reloaded ({}); it reads the files when it starts",
            changes.describe()
        )
    })?;
    let bytes = serde_json::to_vec_pretty(&now).expect("a map of strings serialises");
    write_atomic(&record_path(root), &bytes, 0o644)?;
    drop(lock);
    Ok(Synced {
        changes,
        reloaded: true,
    })
}

/// `networkctl reload` with `networkctl` (a path or a name in `PATH`), then
/// `networkctl delete LINK…` for `delete` (links already gone are not an
/// error: a bridge systemd-nspawn created may have left with its last
/// container).
pub fn networkctl_reload(networkctl: &Path, delete: &[String]) -> Result<()> {
    crate::hosttools::capture(networkctl, &["reload"])?;
    for link in delete {
        // One at a time: networkctl stops at the first link it cannot find.
        let args = ["delete", link.as_str()];
        let out = crate::hosttools::output(networkctl, &args)?;
        if !out.status.success() && !is_no_such_link(&String::from_utf8_lossy(&out.stderr)) {
            return Err(crate::hosttools::failed(networkctl, &args, &out));
        }
    }
    Ok(())
}

/// networkctl's complaint about a link that does not exist (252: "Failed to
/// resolve interface \"x\": No such device"; 257 alike).
fn is_no_such_link(stderr: &str) -> bool {
    stderr.contains("No such device") || stderr.contains("not found")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HEADER_PREFIX;

    fn write(root: &Root, name: &str, body: &str) {
        let dir = root.network_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), format!("{HEADER_PREFIX}x\n{body}")).unwrap();
    }

    #[test]
    fn reloads_only_when_our_files_changed() {
        let (_d, root) = crate::testing::temp_root();
        let mut calls = 0;
        let mut reload = |delete: &[String]| {
            assert!(delete.is_empty(), "{delete:?}");
            calls += 1;
            Ok(())
        };
        // Nothing of ours: networkd is not bothered.
        assert!(!sync(&root, &mut reload).unwrap().reloaded);
        write(
            &root,
            "20-nixos-nspawn-ve-web.network",
            "[Network]\nAddress=10.0.0.1/24\n",
        );
        // A foreign file is not ours to track.
        std::fs::write(root.network_dir().join("10-admin.network"), "[Match]\n").unwrap();
        // No record yet: one reload.
        let s = sync(&root, &mut reload).unwrap();
        assert!(s.reloaded && s.changes.no_record);
        assert_eq!(s.changes.changed, vec!["20-nixos-nspawn-ve-web.network"]);
        assert_eq!(s.changes.links(), vec!["ve-web"]);
        assert!(!sync(&root, &mut reload).unwrap().reloaded);
        // Same length, other bytes.
        write(
            &root,
            "20-nixos-nspawn-ve-web.network",
            "[Network]\nAddress=10.0.0.2/24\n",
        );
        assert!(sync(&root, &mut reload).unwrap().reloaded);
        std::fs::remove_file(root.network_dir().join("20-nixos-nspawn-ve-web.network")).unwrap();
        let s = sync(&root, &mut reload).unwrap();
        assert_eq!(s.changes.removed, vec!["20-nixos-nspawn-ve-web.network"]);
        assert!(s.reloaded);
        assert_eq!(calls, 3);
    }

    #[test]
    fn a_failed_reload_is_retried_by_the_next_caller() {
        let (_d, root) = crate::testing::temp_root();
        write(&root, "20-nixos-nspawn-vz-lab.netdev", "[NetDev]\n");
        let err = sync(&root, &mut |_| anyhow::bail!("networkd is not running")).unwrap_err();
        assert!(format!("{err:#}").contains("not reloaded"), "{err:#}");
        assert!(recorded(&root).is_none());
        let s = sync(&root, &mut |_| Ok(())).unwrap();
        assert!(s.reloaded);
        assert_eq!(s.changes.links(), vec!["vz-lab"]);
        assert!(!pending(&root).unwrap().any());
    }

    /// A zone removed after boot: its bridge and port netdevs are deleted;
    /// a zone whose netdev goes but that a container still uses keeps its
    /// bridge (only the port goes).
    #[test]
    fn removed_netdevs_are_deleted() {
        let (_d, root) = crate::testing::temp_root();
        for zone in ["lab", "dev"] {
            for f in [
                format!("20-nixos-nspawn-vz-{zone}.netdev"),
                format!("20-nixos-nspawn-vz-{zone}.network"),
                format!("20-nixos-nspawn-vd-{zone}.netdev"),
                format!("20-nixos-nspawn-vd-{zone}.network"),
            ] {
                write(&root, &f, "[Match]\n");
            }
        }
        sync(&root, &mut |d| {
            assert!(d.is_empty());
            Ok(())
        })
        .unwrap();
        let dir = root.network_dir();
        for f in [
            "vz-lab.netdev",
            "vz-lab.network",
            "vd-lab.netdev",
            "vd-lab.network",
        ] {
            std::fs::remove_file(dir.join(format!("20-nixos-nspawn-{f}"))).unwrap();
        }
        // dev: undeclared now, still used: its .network stays.
        for f in ["vz-dev.netdev", "vd-dev.netdev", "vd-dev.network"] {
            std::fs::remove_file(dir.join(format!("20-nixos-nspawn-{f}"))).unwrap();
        }
        let mut deleted = Vec::new();
        let s = sync(&root, &mut |d| {
            deleted = d.to_vec();
            Ok(())
        })
        .unwrap();
        assert!(s.reloaded);
        assert_eq!(deleted, vec!["vd-dev", "vd-lab", "vz-lab"]);
    }

    /// `networkctl_reload` runs reload, then one delete per link, and
    /// tolerates links that are already gone.
    #[test]
    fn networkctl_reload_deletes_links() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("log");
        let exe = d.path().join("networkctl");
        crate::testing::write_script(
            &exe,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}\n[ \"$2\" = gone ] && {{ echo 'Failed to resolve interface \"gone\": No such device' >&2; exit 1; }}\n[ \"$2\" = busy ] && {{ echo 'Operation not permitted' >&2; exit 1; }}\nexit 0\n",
                log.display()
            ),
        );
        networkctl_reload(&exe, &["vz-lab".into(), "gone".into()]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "reload\ndelete vz-lab\ndelete gone\n"
        );
        let e = networkctl_reload(&exe, &["busy".into()]).unwrap_err();
        assert!(format!("{e:#}").contains("delete busy failed"), "{e:#}");
    }

    #[test]
    fn link_names() {
        for (file, link) in [
            ("20-nixos-nspawn-ve-a.b.network", Some("ve-a.b")),
            ("20-nixos-nspawn-vz-lab.netdev", Some("vz-lab")),
            ("80-container-ve.network", None),
        ] {
            assert_eq!(link_of(file).as_deref(), link, "{file}");
        }
    }
}
