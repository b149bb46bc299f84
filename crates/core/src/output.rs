//! The one place that writes generated files: atomic, idempotent writes (a
//! file whose bytes are already right is not touched), and pruning of our own
//! files under `/run` (only files that start with [`HEADER_PREFIX`]).
//!
//! The generator writes `/run` through [`RunSync`], the bootstrap helper its
//! own container's files through [`sync_run_files`], the same code (why:
//! docs/design.md, "From the registry to systemd and networkd").

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::os::fd::OwnedFd;

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

/// The generator's normal output directory (which systemd empties before
/// every run: plain writes suffice, nothing else reads it until the generator
/// exits), written one container at a time: the directory is opened once and
/// everything is written relative to
/// it (`mkdirat`, `openat`, `symlinkat`: no path walk from `/` per file); the
/// last few subdirectories made are remembered between calls (each container
/// has its own drop-in directory; the `.wants/` ones are shared), so memory
/// does not grow with the number of containers.
#[derive(Debug)]
pub struct GeneratorDir {
    dir: PathBuf,
    fd: Option<OwnedFd>,
    recent_dirs: Vec<PathBuf>,
}

impl GeneratorDir {
    const RECENT: usize = 4;

    pub fn new(dir: &Path) -> GeneratorDir {
        GeneratorDir {
            dir: dir.to_path_buf(),
            fd: None,
            recent_dirs: Vec::with_capacity(Self::RECENT),
        }
    }

    fn dir_fd(&mut self) -> Result<&OwnedFd> {
        if self.fd.is_none() {
            create_dirs(&self.dir)?;
            let fd = open_dir(&self.dir)
                .with_context(|| format!("opening directory {}", self.dir.display()))?;
            self.fd = Some(fd);
        }
        Ok(self.fd.as_ref().expect("just opened"))
    }

    /// Make the subdirectory `rel` (relative to the output directory).
    fn make_subdir(&mut self, rel: &Path) -> Result<()> {
        // Least recently used first.
        if let Some(i) = self
            .recent_dirs
            .iter()
            .position(|d| d.as_os_str() == rel.as_os_str())
        {
            self.recent_dirs[i..].rotate_left(1);
            return Ok(());
        }
        let full = self.dir.join(rel);
        match rustix::fs::mkdirat(self.dir_fd()?, rel, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            // A nested one whose parent is missing.
            Err(Errno::NOENT) => create_dirs(&full)?,
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("creating directory {}", full.display()))
            }
        }
        if self.recent_dirs.len() == Self::RECENT {
            self.recent_dirs.remove(0);
        }
        self.recent_dirs.push(rel.to_path_buf());
        Ok(())
    }

    /// Write the `Dest::Generator` files of `files`; returns how many.
    pub fn write(&mut self, files: &[OutputFile]) -> Result<usize> {
        let mut n = 0;
        for f in files {
            let Dest::Generator(rel) = &f.dest else {
                continue;
            };
            if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                self.make_subdir(parent)?;
            }
            let path = self.dir.join(rel);
            let dir = self.dir_fd()?;
            match &f.contents {
                Contents::File(text) => {
                    rustix::fs::openat(
                        dir,
                        rel,
                        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o666),
                    )
                    .map_err(std::io::Error::from)
                    .and_then(|fd| write_all(&fd, text.as_bytes()))
                    .with_context(|| format!("writing {}", path.display()))?;
                }
                Contents::Symlink(target) => replace_symlink_at(dir, target, rel, &path)?,
            }
            n += 1;
        }
        Ok(n)
    }
}

/// Open a directory (for `*at` calls relative to it).
fn open_dir(dir: &Path) -> std::io::Result<OwnedFd> {
    rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
}

/// Write all of `bytes` to `fd`.
fn write_all(fd: &OwnedFd, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Create a symlink, replacing whatever is at `rel` in `dir` (not atomically:
/// for the generator directory only). `path` names it in errors.
fn replace_symlink_at(dir: &OwnedFd, target: &Path, rel: &Path, path: &Path) -> Result<()> {
    match rustix::fs::symlinkat(target, dir, rel) {
        Err(Errno::EXIST) => {
            rustix::fs::unlinkat(dir, rel, AtFlags::empty())
                .map_err(std::io::Error::from)
                .with_context(|| format!("replacing {}", path.display()))?;
            rustix::fs::symlinkat(target, dir, rel)
        }
        other => other,
    }
    .map_err(std::io::Error::from)
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
    /// Logical paths of every file written or kept (bytes, not components:
    /// hashed and compared without parsing the path).
    keep: std::collections::HashSet<std::ffi::OsString>,
    foreign: Vec<String>,
    failed: Failures,
    changes: RunChanges,
    /// Directories seen so far.
    dirs: ByDir<DirState>,
    /// What each directory held when first seen.
    listings: ByDir<Listing>,
    /// Directories to fsync at the end (renames happened in them).
    dirty: BTreeSet<PathBuf>,
}

enum DirState {
    /// Exists, held open; whether files in it need fsync.
    Ready { fd: OwnedFd, sync: bool },
    /// No file can be created in it (the error is recorded once).
    Broken,
}

/// A few directories' state (there are two or three), found by comparing the
/// paths' bytes: no component parsing per file.
struct ByDir<V>(Vec<(PathBuf, V)>);

/// Syncs each of `dirty` that is open in `dirs` (what was renamed into it
/// reaches the disk); a failure goes to `failed`.
fn sync_dirs(dirty: BTreeSet<PathBuf>, dirs: &ByDir<DirState>, failed: &mut Failures) {
    for dir in dirty {
        if let Some(DirState::Ready { fd, .. }) = dirs.get(&dir) {
            if let Err(e) = rustix::fs::fsync(fd) {
                failed.push(
                    anyhow::Error::new(std::io::Error::from(e))
                        .context(format!("syncing directory {}", dir.display())),
                );
            }
        }
    }
}

impl<V> Default for ByDir<V> {
    fn default() -> Self {
        ByDir(Vec::new())
    }
}

impl<V> ByDir<V> {
    fn position(&self, dir: &Path) -> Option<usize> {
        self.0
            .iter()
            .position(|(p, _)| p.as_os_str() == dir.as_os_str())
    }
    fn get(&self, dir: &Path) -> Option<&V> {
        self.position(dir).map(|i| &self.0[i].1)
    }
    fn get_mut(&mut self, dir: &Path) -> Option<&mut V> {
        self.position(dir).map(|i| &mut self.0[i].1)
    }
    fn contains_key(&self, dir: &Path) -> bool {
        self.position(dir).is_some()
    }
    fn insert(&mut self, dir: PathBuf, v: V) {
        match self.position(&dir) {
            Some(i) => self.0[i].1 = v,
            None => self.0.push((dir, v)),
        }
    }
    fn remove(&mut self, dir: &Path) -> Option<V> {
        self.position(dir).map(|i| self.0.remove(i).1)
    }
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

fn needs_fsync_fd(dir: &OwnedFd) -> bool {
    match rustix::fs::fstatfs(dir) {
        Ok(st) => !matches!(st.f_type as u32, TMPFS_MAGIC | RAMFS_MAGIC),
        Err(_) => true,
    }
}

/// Read exactly `buf.len()` bytes.
fn read_exact(fd: &OwnedFd, mut buf: &mut [u8]) -> bool {
    while !buf.is_empty() {
        match rustix::io::read(fd, &mut *buf) {
            Ok(0) => return false,
            Ok(n) => buf = &mut buf[n..],
            Err(Errno::INTR) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Compare what is at `name` in `dir` with `contents` (mode 0644), reading at
/// most the header unless the sizes match. Never follows a link, never blocks.
fn existing_at(dir: &OwnedFd, name: &std::ffi::OsStr, contents: &[u8]) -> Existing {
    use rustix::fs::FileType;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(f) => f,
        // Nothing there: writing will say what else is wrong.
        Err(Errno::NOENT) => return Existing::Missing,
        // A symlink (O_NOFOLLOW), a socket, something unreadable.
        Err(_) => return Existing::Foreign,
    };
    let Ok(st) = rustix::fs::fstat(&file) else {
        return Existing::Foreign;
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Existing::Foreign;
    }
    let header = HEADER_PREFIX.as_bytes();
    if st.st_size as u64 == contents.len() as u64 {
        let mut buf = vec![0; contents.len()];
        if !read_exact(&file, &mut buf) || !buf.starts_with(header) {
            return Existing::Foreign;
        }
        if buf == contents && st.st_mode & 0o7777 == 0o644 {
            Existing::Same
        } else {
            Existing::Stale
        }
    } else {
        let mut buf = vec![0; header.len()];
        if read_exact(&file, &mut buf) && buf == header {
            Existing::Stale
        } else {
            Existing::Foreign
        }
    }
}

/// A new file's mode (0644 whatever the umask), contents and, with `sync`,
/// its data on disk.
fn fill(file: &OwnedFd, contents: &[u8], sync: bool) -> std::io::Result<()> {
    if umask_masks_0644() {
        rustix::fs::fchmod(file, Mode::from_raw_mode(0o644))?;
    }
    write_all(file, contents)?;
    if sync {
        rustix::fs::fsync(file)?;
    }
    Ok(())
}

/// Whether a file created with mode 0644 needs an `fchmod` to get it (the
/// process's umask, from `/proc/self/status`, masks some of those bits; when
/// it cannot be read, always).
fn umask_masks_0644() -> bool {
    static MASKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *MASKS.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .is_none_or(|m| m & 0o644 != 0)
    })
}

/// Why [`link_new`] did not create the file.
enum LinkNew {
    /// Something is at the name already.
    Exists,
    /// O_TMPFILE or linking it in is not possible here: use a named temporary file.
    Unsupported,
    Failed(std::io::Error),
}

/// Whether O_TMPFILE + linkat has failed as unsupported once (then it is not
/// tried again in this process).
static NO_TMPFILE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Create `name` in `dir` with `contents` (mode 0644) atomically: an
/// O_TMPFILE file, written (and synced with `sync`), linked in with
/// `linkat(AT_EMPTY_PATH)`, which fails when the name exists.
fn link_new(
    dir: &OwnedFd,
    name: &std::ffi::OsStr,
    contents: &[u8],
    sync: bool,
) -> Result<(), LinkNew> {
    use std::sync::atomic::Ordering;
    if NO_TMPFILE.load(Ordering::Relaxed) {
        return Err(LinkNew::Unsupported);
    }
    let unsupported = |e: Errno| {
        matches!(
            e,
            Errno::OPNOTSUPP
                | Errno::ISDIR
                | Errno::INVAL
                | Errno::PERM
                | Errno::NOENT
                | Errno::ACCESS
                | Errno::ROFS
        )
    };
    let file = match rustix::fs::openat(
        dir,
        ".",
        OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    ) {
        Ok(f) => f,
        Err(e) if unsupported(e) => {
            NO_TMPFILE.store(true, Ordering::Relaxed);
            return Err(LinkNew::Unsupported);
        }
        Err(e) => return Err(LinkNew::Failed(e.into())),
    };
    fill(&file, contents, sync).map_err(LinkNew::Failed)?;
    match rustix::fs::linkat(&file, "", dir, name, AtFlags::EMPTY_PATH) {
        Ok(()) => Ok(()),
        Err(Errno::EXIST) => Err(LinkNew::Exists),
        Err(e) if unsupported(e) => {
            NO_TMPFILE.store(true, Ordering::Relaxed);
            Err(LinkNew::Unsupported)
        }
        Err(e) => Err(LinkNew::Failed(e.into())),
    }
}

/// Temporary names are `.NAME.PID.N.tmp`: unique in this process, distinct
/// from other processes', skipped by pruning (a leading dot).
static TMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl<'a> RunSync<'a> {
    pub fn new(root: &'a Root) -> RunSync<'a> {
        RunSync {
            root,
            keep: Default::default(),
            foreign: Vec::new(),
            failed: Failures::default(),
            changes: RunChanges::default(),
            dirs: ByDir::default(),
            listings: ByDir::default(),
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

    /// The directory `dir`, open (made when missing); `None` when it cannot
    /// be made or opened (reported once).
    fn dir(&mut self, dir: &Path) -> Option<&OwnedFd> {
        if !self.dirs.contains_key(dir) {
            let opened = open_dir(dir).or_else(|_| {
                create_dirs(dir)?;
                open_dir(dir).with_context(|| format!("opening directory {}", dir.display()))
            });
            let state = match opened {
                Ok(fd) => DirState::Ready {
                    sync: needs_fsync_fd(&fd),
                    fd,
                },
                Err(e) => {
                    self.failed.push(e);
                    DirState::Broken
                }
            };
            self.dirs.insert(dir.to_path_buf(), state);
        }
        match self.dirs.get(dir) {
            Some(DirState::Ready { fd, .. }) => Some(fd),
            _ => None,
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
            self.keep.insert(logical.as_os_str().to_owned());
            let path = self.root.join(logical);
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                anyhow::bail!("{}: not a file path", logical.display());
            };
            let absent = self.listed_absent(&path);
            let Some(fd) = self.dir(dir) else {
                continue;
            };
            let found = if absent {
                Existing::Missing
            } else {
                existing_at(fd, name, text.as_bytes())
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

    /// Atomically put `contents` at `path` (in a directory already open):
    /// a temporary file, one write, a rename. With `absent` (the listing did
    /// not have it) the rename refuses to replace; if a file appeared
    /// meanwhile, what it is is returned (`Same` or `Foreign`: nothing
    /// written) or, if it is a stale one of ours, it is replaced after all.
    fn replace(&mut self, path: &Path, contents: &[u8], absent: bool) -> Result<Option<Existing>> {
        let (dir, name) = (
            path.parent().expect("checked"),
            path.file_name().expect("checked"),
        );
        let Some(DirState::Ready { fd, sync }) = self.dirs.get(dir) else {
            // Already reported: every file in it would fail the same way.
            return Ok(None);
        };
        let (fd, sync) = (fd, *sync);
        if absent {
            // The cheapest atomic creation: an unnamed file, written, then
            // linked in under its name (linkat refuses an existing name, as
            // renameat2 NOREPLACE does). Not every file system or process can
            // (O_TMPFILE support, CAP_DAC_READ_SEARCH for AT_EMPTY_PATH): then
            // a named temporary file below.
            match link_new(fd, name, contents, sync) {
                Ok(()) => {
                    if sync {
                        self.dirty.insert(dir.to_path_buf());
                    }
                    return Ok(None);
                }
                Err(LinkNew::Exists) => match existing_at(fd, name, contents) {
                    // A stale one of ours appeared: replace it by renaming.
                    Existing::Stale | Existing::Missing => {}
                    other => return Ok(Some(other)),
                },
                Err(LinkNew::Unsupported) => {}
                Err(LinkNew::Failed(e)) => {
                    return Err(e).with_context(|| format!("writing {}", path.display()))
                }
            }
        }
        let seq = TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = format!(
            ".{}.{}.{seq}.tmp",
            name.to_string_lossy(),
            std::process::id()
        );
        let created = rustix::fs::openat(
            fd,
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        );
        let file = match created {
            Ok(f) => f,
            Err(e) => {
                if matches!(e, Errno::ROFS | Errno::ACCESS) {
                    self.dirs.insert(dir.to_path_buf(), DirState::Broken);
                }
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("creating a temporary file in {}", dir.display()));
            }
        };
        let cleanup = |what: anyhow::Error| {
            let _ = rustix::fs::unlinkat(fd, &tmp, AtFlags::empty());
            what
        };
        let written = fill(&file, contents, sync);
        drop(file);
        written
            .with_context(|| format!("writing {}", path.display()))
            .map_err(cleanup)?;
        let renamed = if absent {
            match rustix::fs::renameat_with(fd, &tmp, fd, name, rustix::fs::RenameFlags::NOREPLACE)
            {
                Err(Errno::EXIST) => match existing_at(fd, name, contents) {
                    Existing::Stale | Existing::Missing => rustix::fs::renameat(fd, &tmp, fd, name),
                    other => {
                        let _ = rustix::fs::unlinkat(fd, &tmp, AtFlags::empty());
                        return Ok(Some(other));
                    }
                },
                other => other,
            }
        } else {
            rustix::fs::renameat(fd, &tmp, fd, name)
        };
        renamed
            .map_err(std::io::Error::from)
            .with_context(|| format!("renaming into place {}", path.display()))
            .map_err(cleanup)?;
        if sync {
            self.dirty.insert(dir.to_path_buf());
        }
        Ok(None)
    }

    /// Take over what another instance (another thread's share of the same
    /// files) did: its kept files (so pruning spares them), changes and
    /// problems; the directories it renamed into are synced now.
    pub fn absorb(&mut self, other: RunSync<'a>) {
        let mut other = other;
        sync_dirs(
            std::mem::take(&mut other.dirty),
            &other.dirs,
            &mut self.failed,
        );
        self.keep.extend(other.keep);
        self.foreign.extend(other.foreign);
        for e in other.failed.errors {
            self.failed.push(e);
        }
        self.changes.written.extend(other.changes.written);
        self.changes.pruned.extend(other.changes.pruned);
        self.changes.unchanged += other.changes.unchanged;
        for (dir, listing) in other.listings.0 {
            if !self.listings.contains_key(&dir) {
                self.listings.insert(dir, listing);
            }
        }
    }

    /// Sync the directories written to, prune (with `prune`) our files that
    /// no batch had, and report.
    pub fn finish(mut self, prune: bool) -> Result<RunChanges> {
        sync_dirs(
            std::mem::take(&mut self.dirty),
            &self.dirs,
            &mut self.failed,
        );
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
                if self.keep.contains(logical.as_os_str())
                    || name.to_string_lossy().starts_with('.')
                {
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
        let (_d, root) = crate::testing::temp_root();
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
        let (_d, root) = crate::testing::temp_root();
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
        let (_d, root) = crate::testing::temp_root();
        let dir = root.join(paths::NSPAWN_DIR);
        std::fs::create_dir_all(dir.join("d.nspawn")).unwrap();
        let ours = run_file("/run/systemd/nspawn/real.nspawn", "r");
        sync_run_files(&root, std::slice::from_ref(&ours), false).unwrap();
        std::os::unix::fs::symlink(dir.join("real.nspawn"), dir.join("l.nspawn")).unwrap();
        crate::testing::mkfifo(&dir.join("f.nspawn"));
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
        let (_d, root) = crate::testing::temp_root();
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
        let (_d, root) = crate::testing::temp_root();
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
        let (_d, root) = crate::testing::temp_root();
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
        let (_d, root) = crate::testing::temp_root();
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
