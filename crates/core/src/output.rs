//! The one place that writes generated files: atomic, idempotent writes (a
//! file whose bytes are already right is not touched), and pruning of our own
//! files under `/run` (only files that start with [`HEADER_PREFIX`]).
//!
//! The generator writes every container's `/run` files through
//! [`sync_run_files`]; the bootstrap helper calls the same function for its own
//! container before `ExecStart=`, so a systemd that forbids generators to write
//! `/run` costs nothing but a networkd reload.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::paths::{self, Root};
use crate::render::{Contents, Dest, OutputFile};
use crate::HEADER_PREFIX;

/// Open a directory and fsync it, so a rename in it is durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let d = std::fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    d.sync_all()
        .with_context(|| format!("syncing directory {}", dir.display()))
}

fn create_dirs(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("creating directory {}", dir.display()))
}

/// Write `contents` to `path` atomically: a temporary file in the same
/// directory, fsync, rename over `path`, fsync the directory. Returns false
/// (and writes nothing) when `path` already holds exactly these bytes.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<bool> {
    if let Ok(existing) = std::fs::symlink_metadata(path) {
        if existing.is_file()
            && existing.len() == contents.len() as u64
            && existing.permissions().mode() & 0o7777 == mode
            && std::fs::read(path).is_ok_and(|b| b == contents)
        {
            return Ok(false);
        }
    }
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    create_dirs(dir)?;
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(contents)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming into place {}", path.display()))?;
    fsync_dir(dir)?;
    Ok(true)
}

/// Point `path` at `target` atomically (symlink under a temporary name, then
/// rename). Returns false when it already does.
pub fn symlink_atomic(path: &Path, target: &Path) -> Result<bool> {
    if std::fs::read_link(path).is_ok_and(|t| t == target) {
        return Ok(false);
    }
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    create_dirs(dir)?;
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    // Try a few names: a leftover from a killed process must not block us.
    for attempt in 0..16u32 {
        let tmp = dir.join(format!(".{file_name}.{}.{attempt}.tmp", std::process::id()));
        match std::os::unix::fs::symlink(target, &tmp) {
            Ok(()) => {
                std::fs::rename(&tmp, path).with_context(|| {
                    let _ = std::fs::remove_file(&tmp);
                    format!("renaming into place {}", path.display())
                })?;
                fsync_dir(dir)?;
                return Ok(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(&tmp);
            }
            Err(e) => return Err(e).with_context(|| format!("creating symlink {}", tmp.display())),
        }
    }
    anyhow::bail!("could not create a temporary symlink in {}", dir.display())
}

/// Write the generator-directory part of `files` into `dir` (the generator's
/// normal output directory, which systemd empties before every run: plain
/// writes suffice, nothing else reads it until the generator exits).
pub fn write_generator_files(dir: &Path, files: &[OutputFile]) -> Result<usize> {
    let mut made_dirs = BTreeSet::new();
    let mut n = 0;
    for f in files {
        let Dest::Generator(rel) = &f.dest else {
            continue;
        };
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            if made_dirs.insert(parent.to_path_buf()) {
                create_dirs(parent)?;
            }
        }
        match &f.contents {
            Contents::File(text) => std::fs::write(&path, text)
                .with_context(|| format!("writing {}", path.display()))?,
            Contents::Symlink(target) => {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("replacing {}", path.display()))
                    }
                }
                std::os::unix::fs::symlink(target, &path)
                    .with_context(|| format!("creating symlink {}", path.display()))?
            }
        }
        n += 1;
    }
    Ok(n)
}

/// What [`sync_run_files`] changed, as logical paths.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RunChanges {
    pub written: Vec<PathBuf>,
    pub pruned: Vec<PathBuf>,
    pub unchanged: usize,
}

impl RunChanges {
    /// Whether networkd must reload to see the change.
    pub fn network_changed(&self) -> bool {
        self.written
            .iter()
            .chain(&self.pruned)
            .any(|p| p.starts_with(paths::NETWORK_DIR))
    }
}

/// Whether a file was written by us: a regular file (not a link) whose first
/// line is our header.
pub fn is_ours(path: &Path) -> bool {
    use std::io::Read as _;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    let mut buf = [0u8; HEADER_PREFIX.len()];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok_and(|()| buf == HEADER_PREFIX.as_bytes())
}

/// Write the `/run` part of `files` under `root`, atomically and only where the
/// bytes differ. A file of someone else's at one of our paths is left alone
/// and reported as an error. With `prune`, every file of ours in the nspawn and
/// network directories that is not in `files` is removed (the generator passes
/// the complete set; the bootstrap helper passes one container's and does not
/// prune). A file that cannot be written does not stop the others: every
/// problem is reported together at the end.
pub fn sync_run_files(root: &Root, files: &[OutputFile], prune: bool) -> Result<RunChanges> {
    let mut changes = RunChanges::default();
    let mut keep = BTreeSet::new();
    let mut foreign = Vec::new();
    let mut failed = Failures::default();
    for f in files {
        let Dest::Run(logical) = &f.dest else {
            continue;
        };
        keep.insert(logical.clone());
        let path = root.join(logical);
        let Contents::File(text) = &f.contents else {
            anyhow::bail!(
                "{}: only regular files are written to /run",
                logical.display()
            );
        };
        if std::fs::symlink_metadata(&path).is_ok() && !is_ours(&path) {
            foreign.push(logical.display().to_string());
            continue;
        }
        match write_atomic(&path, text.as_bytes(), 0o644) {
            Ok(true) => changes.written.push(logical.clone()),
            Ok(false) => changes.unchanged += 1,
            Err(e) => failed.push(e),
        }
    }
    if prune {
        for dir in [paths::NSPAWN_DIR, paths::NETWORK_DIR] {
            let real = root.join(dir);
            let entries = match std::fs::read_dir(&real) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    failed
                        .push(anyhow::Error::new(e).context(format!("listing {}", real.display())));
                    continue;
                }
            };
            let mut names: Vec<_> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name())
                .collect();
            names.sort();
            for name in names {
                let logical = Path::new(dir).join(&name);
                if keep.contains(&logical) || name.to_string_lossy().starts_with('.') {
                    continue;
                }
                let path = real.join(&name);
                if is_ours(&path) {
                    match std::fs::remove_file(&path) {
                        Ok(()) => changes.pruned.push(logical),
                        Err(e) => failed.push(
                            anyhow::Error::new(e)
                                .context(format!("removing stale {}", path.display())),
                        ),
                    }
                }
            }
        }
    }
    if !foreign.is_empty() {
        failed.push(anyhow::anyhow!(
            "not overwriting {} (not written by nixos-nspawn; move it away or rename it)",
            foreign.join(", ")
        ));
    }
    failed.into_result(changes)
}

/// Problems collected while syncing, each reported once (a directory that
/// cannot be created fails every file in it the same way).
#[derive(Default)]
struct Failures {
    errors: Vec<anyhow::Error>,
    seen: BTreeSet<String>,
}

impl Failures {
    /// At most this many problems are spelled out.
    const SHOWN: usize = 5;

    fn push(&mut self, e: anyhow::Error) {
        if self.seen.insert(format!("{e:#}")) {
            self.errors.push(e);
        }
    }

    fn into_result<T>(mut self, ok: T) -> Result<T> {
        match self.errors.len() {
            0 => Ok(ok),
            1 => Err(self.errors.remove(0)),
            n => {
                let mut text: Vec<String> = self
                    .errors
                    .iter()
                    .take(Self::SHOWN)
                    .map(|e| format!("{e:#}"))
                    .collect();
                if n > Self::SHOWN {
                    text.push(format!("and {} more", n - Self::SHOWN));
                }
                Err(anyhow::anyhow!("{n} problems: {}", text.join("; ")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_file(p: &str, text: &str) -> OutputFile {
        OutputFile {
            dest: Dest::Run(PathBuf::from(p)),
            contents: Contents::File(format!("{HEADER_PREFIX}x\n{text}")),
        }
    }

    #[test]
    fn atomic_write_is_idempotent() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b/c.txt");
        assert!(write_atomic(&p, b"one", 0o644).unwrap());
        assert!(!write_atomic(&p, b"one", 0o644).unwrap());
        assert!(write_atomic(&p, b"two", 0o644).unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert!(
            write_atomic(&p, b"two", 0o600).unwrap(),
            "mode change rewrites"
        );
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left behind");
    }

    #[test]
    fn symlink_is_replaced_atomically() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("link");
        assert!(symlink_atomic(&p, Path::new("/a")).unwrap());
        assert!(!symlink_atomic(&p, Path::new("/a")).unwrap());
        assert!(symlink_atomic(&p, Path::new("/b")).unwrap());
        assert_eq!(std::fs::read_link(&p).unwrap(), Path::new("/b"));
    }

    #[test]
    fn sync_prunes_only_our_files() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        let a = run_file("/run/systemd/nspawn/a.nspawn", "a");
        let b = run_file("/run/systemd/network/20-nixos-nspawn-ve-b.network", "b");
        let c = sync_run_files(&root, &[a.clone(), b], true).unwrap();
        assert_eq!(c.written.len(), 2);
        assert!(c.network_changed());
        // Someone else's file in the same directory survives pruning.
        let theirs = root.join("/run/systemd/network/10-theirs.network");
        std::fs::write(&theirs, "[Match]\n").unwrap();
        let c = sync_run_files(&root, std::slice::from_ref(&a), true).unwrap();
        assert_eq!(c.written, Vec::<PathBuf>::new());
        assert_eq!(
            c.pruned,
            vec![PathBuf::from(
                "/run/systemd/network/20-nixos-nspawn-ve-b.network"
            )]
        );
        assert!(!c.network_changed() || !c.pruned.is_empty());
        assert!(theirs.exists());
        // Second identical run changes nothing.
        let c = sync_run_files(&root, &[a], true).unwrap();
        assert_eq!(
            c,
            RunChanges {
                unchanged: 1,
                ..RunChanges::default()
            }
        );
    }

    #[test]
    fn one_unwritable_directory_does_not_stop_the_others() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        let net = root.join(paths::NETWORK_DIR);
        std::fs::create_dir_all(net.parent().unwrap()).unwrap();
        std::fs::write(&net, "not a directory").unwrap();
        let files = [
            run_file("/run/systemd/network/20-nixos-nspawn-ve-a.network", "a"),
            run_file("/run/systemd/network/20-nixos-nspawn-ve-b.network", "b"),
            run_file("/run/systemd/nspawn/a.nspawn", "a"),
        ];
        let err = sync_run_files(&root, &files, true).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.starts_with("2 problems: creating directory"), "{text}");
        assert_eq!(text.matches("creating directory").count(), 1, "{text}");
        assert!(text.contains("listing"), "{text}");
        assert!(root.join("/run/systemd/nspawn/a.nspawn").exists());
    }

    #[test]
    fn never_overwrites_foreign_files() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        let p = root.join("/run/systemd/nspawn/a.nspawn");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "[Exec]\nBoot=yes\n").unwrap();
        let a = run_file("/run/systemd/nspawn/a.nspawn", "a");
        let b = run_file("/run/systemd/nspawn/b.nspawn", "b");
        let err = sync_run_files(&root, &[a, b], true).unwrap_err();
        assert!(
            err.to_string().contains("not written by nixos-nspawn"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "[Exec]\nBoot=yes\n");
        assert!(
            root.join("/run/systemd/nspawn/b.nspawn").exists(),
            "others still written"
        );
    }
}
