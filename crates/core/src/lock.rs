//! The registry lock: every edit of the registry (create, update, rollback,
//! remove, import) happens while holding an exclusive `flock(2)` on the
//! registry directory itself (`/etc/nixos-nspawn/containers`), so two CLIs at
//! once never lose an update: each one re-reads the entry under the lock,
//! changes it and writes it back atomically ([`crate::output::write_atomic`]).
//!
//! The lock is on the directory (no lock file to clean up, nothing the
//! generator or the NixOS module could mistake for an entry). Readers (the
//! generator, `list`) never take it: every write is an atomic rename.
//!
//! Long operations (Nix builds, `systemctl start`) run *outside* the lock: the
//! bootstrap helper runs inside `systemctl start` and must never wait for a CLI
//! that waits for it.

use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use rustix::fs::FlockOperation;

use crate::paths::Root;

/// An exclusive lock on the registry directory; released on drop.
#[derive(Debug)]
pub struct RegistryLock {
    _dir: std::fs::File,
    path: PathBuf,
}

impl RegistryLock {
    /// The directory that is locked (for messages).
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

fn open_dir(root: &Root) -> Result<(std::fs::File, PathBuf)> {
    let dir = root.registry_dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
        .with_context(|| format!("creating directory {}", dir.display()))?;
    let file = std::fs::File::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
    Ok((file, dir))
}

/// Take the registry lock, waiting for another holder to release it.
pub fn lock_registry(root: &Root) -> Result<RegistryLock> {
    let (file, path) = open_dir(root)?;
    loop {
        match rustix::fs::flock(file.as_fd(), FlockOperation::LockExclusive) {
            Ok(()) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("locking {}", path.display()))
            }
        }
    }
    sweep_temporary_files(&path);
    Ok(RegistryLock { _dir: file, path })
}

/// Remove temporary files that writers killed mid-write left behind
/// (`.NAME.json.XXXXXX.tmp` and `.NAME.closure.XXXXXX.tmp` from
/// [`crate::output::write_atomic`]). Only lock holders write entries and
/// closures, so under the lock none of them is in use. Readers
/// skip them anyway; this only keeps the directory clean.
fn sweep_temporary_files(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_temp = name.starts_with('.')
            && name.ends_with(".tmp")
            && (name.contains(".json.") || name.contains(".closure."));
        if is_temp && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_between_open_file_descriptions() {
        let (_d, root) = crate::testing::temp_root();
        let try_lock = || {
            let (other, _) = open_dir(&root).unwrap();
            rustix::fs::flock(other.as_fd(), FlockOperation::NonBlockingLockExclusive)
        };
        let held = lock_registry(&root).unwrap();
        assert!(root.registry_dir().is_dir());
        assert_eq!(
            try_lock(),
            Err(rustix::io::Errno::WOULDBLOCK),
            "second lock refused"
        );
        drop(held);
        assert_eq!(try_lock(), Ok(()));
    }

    #[test]
    fn waits_for_the_holder() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let (_d, root) = crate::testing::temp_root();
        let held = lock_registry(&root).unwrap();
        let released = AtomicBool::new(false);
        std::thread::scope(|s| {
            let t = s.spawn(|| {
                let _l = lock_registry(&root).unwrap();
                assert!(released.load(Ordering::SeqCst), "got the lock early");
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            released.store(true, Ordering::SeqCst);
            drop(held);
            t.join().unwrap();
        });
    }

    #[test]
    fn sweeps_leftovers_of_killed_writes() {
        let (_d, root) = crate::testing::temp_root();
        let dir = root.registry_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".web.json.a1B2c3.tmp"), "{").unwrap();
        std::fs::write(dir.join(".web.closure.d4E5f6.tmp"), "/nix/store/x").unwrap();
        std::fs::write(dir.join("web.json"), "{}").unwrap();
        std::fs::write(dir.join(".notes"), "mine").unwrap();
        drop(lock_registry(&root).unwrap());
        assert!(!dir.join(".web.json.a1B2c3.tmp").exists());
        assert!(!dir.join(".web.closure.d4E5f6.tmp").exists());
        assert!(dir.join("web.json").exists() && dir.join(".notes").exists());
    }
}
