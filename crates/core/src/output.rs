//! The one place that writes generated files: atomic, idempotent writes (a
//! file whose bytes are already right is not touched), and pruning of our own
//! files under `/run` (only files that start with [`HEADER_PREFIX`]).
//!
//! The generator writes every container's `/run` files through
//! [`sync_run_files`]; the bootstrap helper calls the same function for its own
//! container before `ExecStart=`, so a systemd that forbids generators to write
//! `/run` costs nothing but a networkd reload.

use std::collections::{BTreeMap, BTreeSet};
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

/// Write the generator-directory part of `files` into `dir` (the generator's
/// normal output directory, which systemd empties before every run: plain
/// writes suffice, nothing else reads it until the generator exits).
pub fn write_generator_files(dir: &Path, files: &[OutputFile]) -> Result<usize> {
    GeneratorDir::new(dir).write(files)
}

/// [`write_generator_files`] for a caller that renders one container at a
/// time: the last few directories made are remembered between calls (each
/// container has its own drop-in directory; the `.wants/` ones are shared),
/// so memory does not grow with the number of containers.
#[derive(Debug)]
pub struct GeneratorDir {
    dir: PathBuf,
    recent_dirs: Vec<PathBuf>,
}

impl GeneratorDir {
    const RECENT: usize = 4;

    pub fn new(dir: &Path) -> GeneratorDir {
        GeneratorDir {
            dir: dir.to_path_buf(),
            recent_dirs: Vec::with_capacity(Self::RECENT),
        }
    }

    /// Write the `Dest::Generator` files of `files`; returns how many.
    pub fn write(&mut self, files: &[OutputFile]) -> Result<usize> {
        let mut n = 0;
        for f in files {
            let Dest::Generator(rel) = &f.dest else {
                continue;
            };
            let path = self.dir.join(rel);
            if let Some(parent) = path.parent() {
                // Least recently used first.
                match self.recent_dirs.iter().position(|d| d == parent) {
                    Some(i) => self.recent_dirs[i..].rotate_left(1),
                    None => {
                        create_dirs(parent)?;
                        if self.recent_dirs.len() == Self::RECENT {
                            self.recent_dirs.remove(0);
                        }
                        self.recent_dirs.push(parent.to_path_buf());
                    }
                }
            }
            match &f.contents {
                Contents::File(text) => std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                Contents::Symlink(target) => replace_symlink(target, &path)?,
            }
            n += 1;
        }
        Ok(n)
    }
}

/// Create a symlink, replacing whatever is at `path` (not atomically: for the
/// generator directory only).
fn replace_symlink(target: &Path, path: &Path) -> Result<()> {
    match std::os::unix::fs::symlink(target, path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(path).with_context(|| format!("replacing {}", path.display()))?;
            std::os::unix::fs::symlink(target, path)
        }
        other => other,
    }
    .with_context(|| format!("creating symlink {}", path.display()))
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

/// An admin's `/etc/systemd/nspawn/NAME.nspawn`, when there is one: nspawn
/// reads only the first `.nspawn` file it finds (`/etc` before `/run`, no
/// drop-ins), so it replaces the generated `/run/systemd/nspawn/NAME.nspawn`
/// as a whole — the store and profile binds, the network, the ports. We do
/// not merge it (nspawn would still read it instead of ours); every place
/// that acts on a container warns loudly instead: the bootstrap helper at
/// each start (the unit's journal), `status`, `apply`.
pub fn nspawn_override(root: &Root, name: &str) -> Option<PathBuf> {
    let logical = Path::new(paths::ETC_NSPAWN_DIR).join(format!("{name}.nspawn"));
    std::fs::symlink_metadata(root.join(&logical))
        .is_ok()
        .then_some(logical)
}

/// The warning for [`nspawn_override`].
pub fn nspawn_override_warning(name: &str, file: &Path) -> String {
    format!(
        "{} replaces the generated {}/{name}.nspawn completely (nspawn reads only one .nspawn file): the container runs without the Nix store and profile binds, network and ports nixos-nspawn set up; put your settings in extraNspawn instead, or start from a copy of the generated file",
        file.display(),
        paths::NSPAWN_DIR
    )
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
    let mut sync = RunSync::new(root);
    sync.write(files)?;
    sync.finish(prune)
}

/// [`sync_run_files`] for a caller that renders one container at a time and
/// does not want to hold every file in memory: [`RunSync::write`] each batch,
/// then [`RunSync::finish`] (which prunes what no batch had).
///
/// Each file costs as few system calls as the job allows. A directory with
/// more than one file to write is listed once; a file whose name is not there is written without looking
/// (temporary file, one write, a rename that refuses to replace anything, so a
/// file someone created meanwhile is still never overwritten), one that is
/// there is opened and read once to compare. Directories are created once, and
/// where `fsync` means something (not on tmpfs, where `/run` lives and it is a
/// no-op) the files are synced before their rename and each directory once at
/// the end. The listings serve pruning too.
pub struct RunSync<'a> {
    root: &'a Root,
    keep: BTreeSet<PathBuf>,
    foreign: Vec<String>,
    failed: Failures,
    changes: RunChanges,
    /// Directories seen so far.
    dirs: BTreeMap<PathBuf, DirState>,
    /// What each directory held when first seen.
    listings: BTreeMap<PathBuf, Listing>,
    /// Directories to fsync at the end (renames happened in them).
    dirty: BTreeSet<PathBuf>,
}

#[derive(Clone, Copy)]
enum DirState {
    /// Exists; whether files in it need fsync.
    Ready { sync: bool },
    /// No file can be created in it (the error is recorded once).
    Broken,
}

/// The names in a directory before we wrote (most of) it.
enum Listing {
    /// One file in it seen so far, looked at directly: a caller writing one
    /// container's files (the bootstrap helper) never lists a directory of
    /// thousands.
    Pending,
    /// It did not exist.
    Absent,
    Names(BTreeSet<std::ffi::OsString>),
    /// It could not be listed: every file is looked at.
    Unknown(anyhow::Error),
}

fn list_dir(dir: &Path) -> Listing {
    match std::fs::read_dir(dir) {
        Ok(entries) => Listing::Names(
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name())
                .collect(),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Listing::Absent,
        Err(e) => {
            Listing::Unknown(anyhow::Error::new(e).context(format!("listing {}", dir.display())))
        }
    }
}

/// What is at one of our `/run` paths.
enum Existing {
    Missing,
    /// Ours, with the same bytes and mode as wanted.
    Same,
    /// Ours, but different.
    Stale,
    /// Not ours (no header, not a regular file, a link, unreadable).
    Foreign,
}

/// Magic numbers of file systems where `fsync` does nothing (statfs(2)).
const TMPFS_MAGIC: u32 = 0x0102_1994;
const RAMFS_MAGIC: u32 = 0x8584_58f6;

fn needs_fsync(dir: &Path) -> bool {
    match rustix::fs::statfs(dir) {
        Ok(st) => !matches!(st.f_type as u32, TMPFS_MAGIC | RAMFS_MAGIC),
        Err(_) => true,
    }
}

/// Compare what is at `path` with `contents` (mode 0644), reading at most
/// the header unless the sizes match.
fn existing(path: &Path, contents: &[u8]) -> Existing {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let flags = (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits();
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags as i32)
        .open(path)
    {
        Ok(f) => f,
        // Nothing there, or a parent that is not a directory: writing will
        // say what is wrong.
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
        {
            return Existing::Missing
        }
        // A symlink (O_NOFOLLOW), a socket, something unreadable.
        Err(_) => return Existing::Foreign,
    };
    let Ok(meta) = file.metadata() else {
        return Existing::Foreign;
    };
    if !meta.is_file() {
        return Existing::Foreign;
    }
    let header = HEADER_PREFIX.as_bytes();
    if meta.len() == contents.len() as u64 {
        let mut buf = vec![0; contents.len()];
        if file.read_exact(&mut buf).is_err() || !buf.starts_with(header) {
            return Existing::Foreign;
        }
        if buf == contents && meta.permissions().mode() & 0o7777 == 0o644 {
            Existing::Same
        } else {
            Existing::Stale
        }
    } else {
        let mut buf = vec![0; header.len()];
        if file.read_exact(&mut buf).is_ok() && buf == header {
            Existing::Stale
        } else {
            Existing::Foreign
        }
    }
}

impl<'a> RunSync<'a> {
    pub fn new(root: &'a Root) -> RunSync<'a> {
        RunSync {
            root,
            keep: BTreeSet::new(),
            foreign: Vec::new(),
            failed: Failures::default(),
            changes: RunChanges::default(),
            dirs: BTreeMap::new(),
            listings: BTreeMap::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// Whether `path` was absent from its directory's listing (listing the
    /// directory when first seen).
    fn listed_absent(&mut self, path: &Path) -> bool {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return false;
        };
        let listing = match self.listings.get_mut(dir) {
            None => {
                self.listings.insert(dir.to_path_buf(), Listing::Pending);
                return false;
            }
            Some(l) => l,
        };
        if matches!(listing, Listing::Pending) {
            *listing = list_dir(dir);
        }
        match listing {
            Listing::Absent => true,
            Listing::Names(names) => !names.contains(name),
            Listing::Pending | Listing::Unknown(_) => false,
        }
    }

    /// Write the `Dest::Run` files of `files`. Errs only for a file that is
    /// not a regular file (a caller bug); write problems are kept for
    /// [`RunSync::finish`].
    pub fn write(&mut self, files: &[OutputFile]) -> Result<()> {
        for f in files {
            let Dest::Run(logical) = &f.dest else {
                continue;
            };
            let Contents::File(text) = &f.contents else {
                anyhow::bail!(
                    "{}: only regular files are written to /run",
                    logical.display()
                );
            };
            self.keep.insert(logical.clone());
            let path = self.root.join(logical);
            let absent = self.listed_absent(&path);
            let found = if absent {
                Existing::Missing
            } else {
                existing(&path, text.as_bytes())
            };
            let found = match found {
                Existing::Missing | Existing::Stale => {
                    match self.replace(&path, text.as_bytes(), absent) {
                        Ok(None) => {
                            self.changes.written.push(logical.clone());
                            continue;
                        }
                        Ok(Some(raced)) => raced,
                        Err(e) => {
                            self.failed.push(e);
                            continue;
                        }
                    }
                }
                other => other,
            };
            match found {
                Existing::Same => self.changes.unchanged += 1,
                Existing::Foreign => self.foreign.push(logical.display().to_string()),
                // replace() settles these itself.
                Existing::Missing | Existing::Stale => {}
            }
        }
        Ok(())
    }

    /// Atomically put `contents` at `path`: temporary file, rename. With
    /// `absent` (the listing did not have it) the rename refuses to replace;
    /// if a file appeared meanwhile, what it is is returned (`Same` or
    /// `Foreign`: nothing written) or, if it is a stale one of ours, it is
    /// replaced after all.
    fn replace(&mut self, path: &Path, contents: &[u8], absent: bool) -> Result<Option<Existing>> {
        let dir = path
            .parent()
            .with_context(|| format!("{} has no parent directory", path.display()))?;
        let sync = match self.dirs.get(dir) {
            Some(DirState::Ready { sync }) => *sync,
            // Already reported: every file in it would fail the same way.
            Some(DirState::Broken) => return Ok(None),
            None => {
                if let Err(e) = create_dirs(dir) {
                    self.dirs.insert(dir.to_path_buf(), DirState::Broken);
                    return Err(e);
                }
                let sync = needs_fsync(dir);
                self.dirs
                    .insert(dir.to_path_buf(), DirState::Ready { sync });
                sync
            }
        };
        let file_name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{file_name}."))
            .suffix(".tmp")
            .permissions(std::fs::Permissions::from_mode(0o644))
            .tempfile_in(dir);
        let mut tmp = match tmp {
            Ok(t) => t,
            Err(e) => {
                let broken = matches!(
                    e.raw_os_error(),
                    Some(code) if code == rustix::io::Errno::ROFS.raw_os_error()
                        || code == rustix::io::Errno::ACCESS.raw_os_error()
                );
                if broken {
                    self.dirs.insert(dir.to_path_buf(), DirState::Broken);
                }
                return Err(e)
                    .with_context(|| format!("creating a temporary file in {}", dir.display()));
            }
        };
        tmp.write_all(contents)
            .and_then(|()| {
                if sync {
                    tmp.as_file().sync_all()
                } else {
                    Ok(())
                }
            })
            .with_context(|| format!("writing {}", path.display()))?;
        let persisted = if absent {
            match tmp.persist_noclobber(path) {
                Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                    match existing(path, contents) {
                        Existing::Stale | Existing::Missing => e.file.persist(path).map(drop),
                        other => return Ok(Some(other)),
                    }
                }
                other => other.map(drop),
            }
        } else {
            tmp.persist(path).map(drop)
        };
        persisted.with_context(|| format!("renaming into place {}", path.display()))?;
        if sync {
            self.dirty.insert(dir.to_path_buf());
        }
        Ok(None)
    }

    /// Sync the directories written to, prune (with `prune`) our files that
    /// no batch had, and report.
    pub fn finish(mut self, prune: bool) -> Result<RunChanges> {
        for dir in std::mem::take(&mut self.dirty) {
            if let Err(e) = fsync_dir(&dir) {
                self.failed.push(e);
            }
        }
        if prune {
            self.prune();
        }
        if !self.foreign.is_empty() {
            self.foreign.sort();
            self.failed.push(anyhow::anyhow!(
                "not overwriting {} (not written by nixos-nspawn; move it away or rename it)",
                self.foreign.join(", ")
            ));
        }
        self.failed.into_result(self.changes)
    }

    fn prune(&mut self) {
        for dir in [paths::NSPAWN_DIR, paths::NETWORK_DIR] {
            let real = self.root.join(dir);
            // The listing taken before writing: what was there besides what
            // we wrote (anything created since is ours, or not ours to prune).
            let listing = match self.listings.remove(&real) {
                Some(Listing::Unknown(_) | Listing::Pending) | None => list_dir(&real),
                Some(l) => l,
            };
            let names = match listing {
                Listing::Absent | Listing::Pending => continue,
                Listing::Names(names) => names,
                Listing::Unknown(e) => {
                    self.failed.push(e);
                    continue;
                }
            };
            let mut removed = false;
            for name in names {
                let logical = Path::new(dir).join(&name);
                if self.keep.contains(&logical) || name.to_string_lossy().starts_with('.') {
                    continue;
                }
                let path = real.join(&name);
                if is_ours(&path) {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {
                            self.changes.pruned.push(logical);
                            removed = true;
                        }
                        Err(e) => self.failed.push(
                            anyhow::Error::new(e)
                                .context(format!("removing stale {}", path.display())),
                        ),
                    }
                }
            }
            if removed && needs_fsync(&real) {
                if let Err(e) = fsync_dir(&real) {
                    self.failed.push(e);
                }
            }
        }
    }
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
    fn links_fifos_and_directories_are_foreign() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        let dir = root.join(paths::NSPAWN_DIR);
        std::fs::create_dir_all(dir.join("d.nspawn")).unwrap();
        let ours = run_file("/run/systemd/nspawn/real.nspawn", "r");
        sync_run_files(&root, std::slice::from_ref(&ours), false).unwrap();
        std::os::unix::fs::symlink(dir.join("real.nspawn"), dir.join("l.nspawn")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.join("f.nspawn"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let files: Vec<_> = ["d", "f", "l"]
            .iter()
            .map(|n| run_file(&format!("/run/systemd/nspawn/{n}.nspawn"), n))
            .chain([ours])
            .collect();
        let err = sync_run_files(&root, &files, true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not overwriting /run/systemd/nspawn/d.nspawn, /run/systemd/nspawn/f.nspawn, \
             /run/systemd/nspawn/l.nspawn (not written by nixos-nspawn; move it away or rename it)"
        );
        assert!(dir.join("l.nspawn").is_symlink());
    }

    #[test]
    fn a_mode_change_rewrites() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        let a = run_file("/run/systemd/nspawn/a.nspawn", "a");
        sync_run_files(&root, std::slice::from_ref(&a), true).unwrap();
        let p = root.join("/run/systemd/nspawn/a.nspawn");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = sync_run_files(&root, std::slice::from_ref(&a), true).unwrap();
        assert_eq!(c.written.len(), 1);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o644
        );
        let c = sync_run_files(&root, &[a], true).unwrap();
        assert_eq!(c.unchanged, 1);
    }

    #[test]
    fn incremental_sync_prunes_what_no_batch_had() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        let a = run_file("/run/systemd/nspawn/a.nspawn", "a");
        let b = run_file("/run/systemd/nspawn/b.nspawn", "b");
        sync_run_files(&root, &[a.clone(), b.clone()], true).unwrap();
        let mut sync = RunSync::new(&root);
        sync.write(&[a]).unwrap();
        sync.write(&[]).unwrap();
        let c = sync.finish(true).unwrap();
        assert_eq!(
            c.pruned,
            vec![PathBuf::from("/run/systemd/nspawn/b.nspawn")]
        );
        assert_eq!(c.unchanged, 1);
    }

    #[test]
    fn files_created_after_the_listing_are_still_respected() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        let dir = root.join(paths::NSPAWN_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        let mut sync = RunSync::new(&root);
        // The second file makes it list the directory.
        sync.write(&[
            run_file("/run/systemd/nspawn/a.nspawn", "a"),
            run_file("/run/systemd/nspawn/x.nspawn", "x"),
        ])
        .unwrap();
        assert!(matches!(
            sync.listings.get(&dir),
            Some(Listing::Names(names)) if names.len() == 1
        ));
        // Appear after the directory was listed.
        std::fs::write(dir.join("b.nspawn"), "[Exec]\nBoot=yes\n").unwrap();
        std::fs::write(dir.join("c.nspawn"), format!("{HEADER_PREFIX}old\n")).unwrap();
        let c = run_file("/run/systemd/nspawn/c.nspawn", "c");
        sync.write(&[run_file("/run/systemd/nspawn/b.nspawn", "b"), c.clone()])
            .unwrap();
        let err = sync.finish(true).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("not overwriting /run/systemd/nspawn/b.nspawn"));
        assert_eq!(
            std::fs::read_to_string(dir.join("b.nspawn")).unwrap(),
            "[Exec]\nBoot=yes\n"
        );
        let Contents::File(text) = &c.contents else {
            unreachable!()
        };
        assert_eq!(
            &std::fs::read_to_string(dir.join("c.nspawn")).unwrap(),
            text
        );
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
