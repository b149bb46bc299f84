//! File operations inside directories a container can write: its root file
//! system (`/var/lib/machines/NAME`), whose content the container's root user
//! controls and may have filled with symlinks, hard links, FIFOs or device
//! nodes, and its profile directory (mounted read-only into the container,
//! but a container without user namespacing can remount it read-write).
//!
//! Everything is relative to a directory file descriptor. Paths inside the
//! tree are resolved with `openat2(2)` and
//! `RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`,
//! so a link is never followed (not even one that would stay inside the tree)
//! and no mount point is crossed; files are only ever *created* (`O_CREAT |
//! O_EXCL | O_NOFOLLOW`), never opened for writing when they exist; modes and
//! owners are set on the file descriptor just created, never through a path.
//! Existing entries are inspected with `fstatat(AT_SYMLINK_NOFOLLOW)` only, so
//! nothing is opened (a FIFO cannot block us, a device is never touched).
//!
//! The policy (what to create, what to refuse) belongs to the caller; this
//! module only offers operations that cannot be turned against the host.

use std::ffi::OsString;
use std::fmt;
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// How every path inside a container tree is resolved.
pub const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// What kind of file system object an entry is (from `lstat`, never opened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Unknown,
}

impl Kind {
    fn from_mode(mode: u32) -> Kind {
        match FileType::from_raw_mode(mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Fifo,
            FileType::Socket => Kind::Socket,
            FileType::CharacterDevice => Kind::CharDevice,
            FileType::BlockDevice => Kind::BlockDevice,
            FileType::Unknown => Kind::Unknown,
        }
    }

    /// Special files nothing legitimate puts where we need a file or a
    /// directory, and that may be removed without losing data.
    pub fn is_special(self) -> bool {
        matches!(
            self,
            Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice | Kind::Unknown
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::File => "a regular file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symbolic link",
            Kind::Fifo => "a FIFO",
            Kind::Socket => "a socket",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
            Kind::Unknown => "a file of unknown type",
        })
    }
}

/// `lstat` facts about an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub dev: u64,
    pub ino: u64,
    pub mtime: std::time::SystemTime,
    pub size: u64,
}

impl Meta {
    fn from_stat(st: &rustix::fs::Stat) -> Meta {
        Meta {
            kind: Kind::from_mode(st.st_mode),
            mode: st.st_mode & 0o7777,
            #[allow(clippy::useless_conversion)]
            nlink: u64::from(st.st_nlink),
            uid: st.st_uid,
            gid: st.st_gid,
            #[allow(clippy::useless_conversion)]
            dev: u64::from(st.st_dev),
            #[allow(clippy::useless_conversion)]
            ino: u64::from(st.st_ino),
            mtime: mtime(st),
            size: u64::try_from(st.st_size).unwrap_or(0),
        }
    }
}

#[allow(clippy::unnecessary_cast)]
fn mtime(st: &rustix::fs::Stat) -> std::time::SystemTime {
    let (sec, nsec) = (st.st_mtime as i64, st.st_mtime_nsec as u32);
    if sec >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::new(sec as u64, nsec)
    } else {
        std::time::UNIX_EPOCH - std::time::Duration::new(sec.unsigned_abs(), 0)
    }
}

/// An open directory inside (or the root of) a container tree. `path` is only
/// used in messages.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Owner to give to new entries (the owner of the tree's root directory, so
/// that a user-namespaced container sees them as its root's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        bail!("{name:?} is not a single file name");
    }
    Ok(())
}

impl Dir {
    /// Open a directory the host trusts by its path (it may be reached through
    /// symlinks the host made, e.g. `/var/lib/machines`).
    pub fn open_trusted(path: &Path) -> Result<Dir> {
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("opening directory {}", path.display()))?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Open the entry `name` of this directory as a directory, refusing a
    /// symlink (`O_NOFOLLOW`, `RESOLVE_NO_SYMLINKS`); a mount point is allowed
    /// (a container's root may be its own file system or btrfs subvolume).
    /// Use this to open a container's root inside the machines directory.
    pub fn open_root(&self, name: &str) -> Result<Dir> {
        check_name(name)?;
        self.open_dir_with(
            name,
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
    }

    /// Open a subdirectory (one or more components, relative) of this
    /// container tree directory: no symlink anywhere, no mount crossed.
    pub fn open_dir(&self, rel: &str) -> Result<Dir> {
        self.open_dir_with(rel, RESOLVE)
    }

    fn open_dir_with(&self, rel: &str, resolve: ResolveFlags) -> Result<Dir> {
        let path = self.path.join(rel);
        let fd = rustix::fs::openat2(
            &self.fd,
            rel,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        )
        .map_err(|e| self.explain(e, rel, &path))?;
        // Belt and braces: what we hold must be a directory.
        let st = rustix::fs::fstat(&fd)
            .map_err(std::io::Error::from)
            .with_context(|| format!("checking {}", path.display()))?;
        if Kind::from_mode(st.st_mode) != Kind::Dir {
            bail!("{} is not a directory", path.display());
        }
        Ok(Dir { fd, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `fstat` of this directory.
    pub fn meta(&self) -> Result<Meta> {
        let st = rustix::fs::fstat(&self.fd)
            .map_err(std::io::Error::from)
            .with_context(|| format!("checking {}", self.path.display()))?;
        Ok(Meta::from_stat(&st))
    }

    /// `lstat` of the entry `name` (never follows, never opens); `None` when
    /// it does not exist.
    pub fn entry(&self, name: &str) -> Result<Option<Meta>> {
        check_name(name)?;
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Meta::from_stat(&st))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(std::io::Error::from(e))
                .with_context(|| format!("checking {}", self.path.join(name).display())),
        }
    }

    /// The target of the symlink `name` (read, never followed), for messages.
    pub fn link_target(&self, name: &str) -> Option<PathBuf> {
        check_name(name).ok()?;
        rustix::fs::readlinkat(&self.fd, name, Vec::new())
            .ok()
            .map(|t| PathBuf::from(OsString::from_vec(t.into_bytes())))
    }

    /// Create the directory `name` with exactly `mode`, owned by `owner`.
    /// Returns `None` when something already exists under that name (the
    /// caller decides what to do about it).
    pub fn create_dir(&self, name: &str, mode: u32, owner: Owner) -> Result<Option<Dir>> {
        check_name(name)?;
        let path = self.path.join(name);
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode)) {
            Ok(()) => {}
            Err(Errno::EXIST) => return Ok(None),
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("creating {}", path.display()))
            }
        }
        // Fix up the mode (umask) and owner on the fd of what we just made.
        // Had it been swapped for a link in between, opening it fails.
        let dir = self.open_dir(name)?;
        set_mode_owner(dir.fd(), mode, owner, &path)?;
        Ok(Some(dir))
    }

    /// Create the regular file `name` with `contents`, exactly `mode`, owned
    /// by `owner`, atomically: written and synced under a temporary name
    /// (`.NAME.nixos-nspawn.tmp`, `O_CREAT | O_EXCL | O_NOFOLLOW`), then
    /// renamed with `RENAME_NOREPLACE`, so a failed write (disk full) or a
    /// kill never leaves a short or empty `NAME`. Returns false (and writes
    /// nothing) when something already exists under that name.
    pub fn create_file(
        &self,
        name: &str,
        contents: &[u8],
        mode: u32,
        owner: Owner,
    ) -> Result<bool> {
        check_name(name)?;
        let path = self.path.join(name);
        if self.entry(name)?.is_some() {
            return Ok(false);
        }
        let tmp = format!(".{name}.nixos-nspawn.tmp");
        let tmp_path = self.path.join(&tmp);
        // A leftover of a killed run, or anything planted under that name:
        // unlinkat never follows a link and never opens anything.
        match rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("removing {}", tmp_path.display()))
            }
        }
        let fd = match rustix::fs::openat2(
            &self.fd,
            tmp.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode & 0o777),
            RESOLVE,
        ) {
            Ok(fd) => fd,
            Err(e) => return Err(self.explain(e, &tmp, &tmp_path)),
        };
        let written = (|| -> Result<()> {
            let st = rustix::fs::fstat(&fd)
                .map_err(std::io::Error::from)
                .with_context(|| format!("checking {}", tmp_path.display()))?;
            if Kind::from_mode(st.st_mode) != Kind::File || st.st_nlink != 1 {
                bail!(
                    "{} changed under us while being created",
                    tmp_path.display()
                );
            }
            set_mode_owner(fd.as_fd(), mode, owner, &tmp_path)?;
            let mut file = std::fs::File::from(fd);
            file.write_all(contents)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(())
        })();
        let result = written.and_then(|()| {
            match rustix::fs::renameat_with(
                &self.fd,
                tmp.as_str(),
                &self.fd,
                name,
                rustix::fs::RenameFlags::NOREPLACE,
            ) {
                Ok(()) => Ok(true),
                // Someone made it meanwhile: theirs stays.
                Err(Errno::EXIST) => Ok(false),
                Err(e) => Err(std::io::Error::from(e))
                    .with_context(|| format!("renaming {} to {name}", tmp_path.display())),
            }
        });
        if !matches!(result, Ok(true)) {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
        }
        result
    }

    /// Read the regular file at `rel` (relative, no symlink anywhere, no
    /// mount crossed), at most `max` bytes; `None` when it does not exist.
    /// It is first opened with `O_PATH` and checked to be a regular file, and
    /// only then reopened for reading, so a FIFO or device is never opened.
    pub fn read_file(&self, rel: &str, max: u64) -> Result<Option<Vec<u8>>> {
        use std::io::Read as _;
        let path = self.path.join(rel);
        let fd = match rustix::fs::openat2(
            &self.fd,
            rel,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(self.explain(e, rel, &path)),
        };
        let st = rustix::fs::fstat(&fd)
            .map_err(std::io::Error::from)
            .with_context(|| format!("checking {}", path.display()))?;
        let kind = Kind::from_mode(st.st_mode);
        if kind != Kind::File {
            bail!("{} is {kind}, not a regular file", path.display());
        }
        if st.st_size as u64 > max {
            bail!(
                "{} is {} bytes, more than the {max} expected",
                path.display(),
                st.st_size
            );
        }
        // Reopen what we checked (not the path, which may have changed).
        let file = rustix::fs::open(
            format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)),
            OFlags::RDONLY | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("opening {}", path.display()))?;
        let mut bytes = Vec::new();
        std::fs::File::from(file)
            .take(max + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", path.display()))?;
        if bytes.len() as u64 > max {
            bail!(
                "{} grew beyond {max} bytes while being read",
                path.display()
            );
        }
        Ok(Some(bytes))
    }

    /// Turn a resolution error into a message a person can act on; for a
    /// single component, say what is there instead (from `lstat`).
    fn explain(&self, e: Errno, rel: &str, path: &Path) -> anyhow::Error {
        if matches!(e, Errno::LOOP | Errno::NOTDIR) && check_name(rel).is_ok() {
            if let Ok(Some(meta)) = self.entry(rel) {
                if meta.kind == Kind::Symlink {
                    let target = self.link_target(rel).unwrap_or_default();
                    return anyhow::anyhow!(
                        "{} is a symbolic link (to {}), which is never followed",
                        path.display(),
                        target.display()
                    );
                }
                if meta.kind != Kind::Dir {
                    return anyhow::anyhow!("{} is {}, not a directory", path.display(), meta.kind);
                }
            }
        }
        explain(e, path)
    }

    /// Remove the non-directory entry `name` (`unlinkat`, which never follows
    /// a link: a symlink is removed, not its target).
    pub fn remove_entry(&self, name: &str) -> Result<()> {
        self.remove_if_exists(name, false).map(drop)
    }

    /// Remove the entry `name` (a directory with `dir`, which must be empty),
    /// never following it. Returns false when there was none.
    pub fn remove_if_exists(&self, name: &str, dir: bool) -> Result<bool> {
        check_name(name)?;
        let flags = if dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        match rustix::fs::unlinkat(&self.fd, name, flags) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(std::io::Error::from(e))
                .with_context(|| format!("removing {}", self.path.join(name).display())),
        }
    }

    /// The names in this directory (without `.` and `..`), never following
    /// anything.
    pub fn names(&self) -> Result<Vec<OsString>> {
        let mut list = rustix::fs::Dir::read_from(&self.fd)
            .map_err(std::io::Error::from)
            .with_context(|| format!("listing {}", self.path.display()))?;
        let mut names = Vec::new();
        while let Some(entry) = list.read() {
            let entry = entry
                .map_err(std::io::Error::from)
                .with_context(|| format!("listing {}", self.path.display()))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        }
        Ok(names)
    }

    /// The target of the symlink `name` (read, never followed): `None` when
    /// nothing is there, an error when it is not a symlink.
    pub fn read_link(&self, name: &str) -> Result<Option<PathBuf>> {
        check_name(name)?;
        match rustix::fs::readlinkat(&self.fd, name, Vec::new()) {
            Ok(t) => Ok(Some(PathBuf::from(OsString::from_vec(t.into_bytes())))),
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::INVAL) => {
                let kind = self.entry(name)?.map_or(Kind::Unknown, |m| m.kind);
                bail!(
                    "{} is {kind}, not a symbolic link",
                    self.path.join(name).display()
                )
            }
            Err(e) => Err(std::io::Error::from(e))
                .with_context(|| format!("reading link {}", self.path.join(name).display())),
        }
    }

    /// Point the symlink `name` at `target` atomically: a new link under a
    /// temporary name (`.NAME.PID.N.tmp`), renamed over `name` (`renameat`
    /// replaces what is there, never following it), the directory synced.
    /// Returns false when `name` already is a link to `target`.
    pub fn symlink_atomic(&self, name: &str, target: &Path) -> Result<bool> {
        check_name(name)?;
        if matches!(self.read_link(name), Ok(Some(t)) if t == target) {
            return Ok(false);
        }
        let path = self.path.join(name);
        // Try a few names: a leftover from a killed process must not block us.
        for attempt in 0..16u32 {
            let tmp = format!(".{name}.{}.{attempt}.tmp", std::process::id());
            match rustix::fs::symlinkat(target, &self.fd, tmp.as_str()) {
                Ok(()) => {
                    if let Err(e) = rustix::fs::renameat(&self.fd, tmp.as_str(), &self.fd, name) {
                        let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
                        return Err(std::io::Error::from(e))
                            .with_context(|| format!("renaming into place {}", path.display()));
                    }
                    self.sync()?;
                    return Ok(true);
                }
                Err(Errno::EXIST) => {
                    let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
                }
                Err(e) => {
                    return Err(std::io::Error::from(e)).with_context(|| {
                        format!("creating symlink {}", self.path.join(&tmp).display())
                    })
                }
            }
        }
        bail!(
            "could not create a temporary symlink in {}",
            self.path.display()
        )
    }

    /// `fsync` of this directory, so renames in it are durable.
    pub fn sync(&self) -> Result<()> {
        rustix::fs::fsync(&self.fd)
            .map_err(std::io::Error::from)
            .with_context(|| format!("syncing directory {}", self.path.display()))
    }

    /// Open the regular file `name` to take an `flock` on it, creating it
    /// (`mode`, `O_EXCL`) when missing. Never follows a link and never opens
    /// anything but a regular file: an existing entry is opened `O_PATH |
    /// O_NOFOLLOW` and checked with `fstat`; a regular file is then reopened
    /// read-only through `/proc/self/fd` (exactly that inode: a FIFO or device
    /// swapped in meanwhile is never opened); a symlink, FIFO, socket or
    /// device node is removed unopened and the file created (returned as the
    /// second value, for a warning); a directory is an error.
    pub fn lock_file(&self, name: &str, mode: u32) -> Result<(std::fs::File, Option<Kind>)> {
        use std::os::fd::AsRawFd as _;
        check_name(name)?;
        let path = self.path.join(name);
        let mut replaced = None;
        for _ in 0..3 {
            match rustix::fs::openat(
                &self.fd,
                name,
                OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(mode),
            ) {
                Ok(fd) => {
                    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
                        .map_err(std::io::Error::from)
                        .with_context(|| format!("setting the mode of {}", path.display()))?;
                    return Ok((std::fs::File::from(fd), replaced));
                }
                Err(Errno::EXIST) => {}
                Err(e) => {
                    return Err(std::io::Error::from(e))
                        .with_context(|| format!("creating {}", path.display()))
                }
            }
            let pinned = match rustix::fs::openat(
                &self.fd,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => continue,
                Err(e) => {
                    return Err(std::io::Error::from(e))
                        .with_context(|| format!("opening {}", path.display()))
                }
            };
            let st = rustix::fs::fstat(&pinned)
                .map_err(std::io::Error::from)
                .with_context(|| format!("checking {}", path.display()))?;
            match Kind::from_mode(st.st_mode) {
                Kind::File => {
                    let fd = rustix::fs::open(
                        format!("/proc/self/fd/{}", pinned.as_raw_fd()),
                        OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(std::io::Error::from)
                    .with_context(|| format!("reopening {}", path.display()))?;
                    return Ok((std::fs::File::from(fd), replaced));
                }
                Kind::Dir => bail!(
                    "{} is a directory, not a lock file: move it away",
                    path.display()
                ),
                kind => {
                    self.remove_entry(name)?;
                    replaced = Some(kind);
                }
            }
        }
        bail!(
            "{} keeps changing while being opened (is something else changing {}?)",
            path.display(),
            self.path.display()
        )
    }
}

fn set_mode_owner(fd: BorrowedFd<'_>, mode: u32, owner: Owner, path: &Path) -> Result<()> {
    if owner != Owner::default() {
        if owner.uid == u32::MAX || owner.gid == u32::MAX {
            bail!("{}: owner {owner:?} is not a valid id", path.display());
        }
        // SAFETY: not -1 (checked above), which is the only invalid value.
        let (uid, gid) = unsafe {
            (
                rustix::fs::Uid::from_raw(owner.uid),
                rustix::fs::Gid::from_raw(owner.gid),
            )
        };
        rustix::fs::fchown(fd, Some(uid), Some(gid))
            .map_err(std::io::Error::from)
            .with_context(|| format!("setting the owner of {}", path.display()))?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))
        .map_err(std::io::Error::from)
        .with_context(|| format!("setting the mode of {}", path.display()))
}

/// Turn a resolution error into a message a person can act on.
fn explain(e: Errno, path: &Path) -> anyhow::Error {
    let why = match e {
        Errno::LOOP => "is (or lies under) a symbolic link, which is never followed",
        Errno::XDEV => "is (or lies under) a mount point, which is never crossed",
        Errno::NOTDIR => "is not a directory (or lies under something that is not)",
        Errno::AGAIN => "was renamed while being resolved",
        Errno::NOSYS => "cannot be resolved safely: openat2(2) needs Linux 5.6 or newer",
        _ => "",
    };
    if why.is_empty() {
        anyhow::Error::new(std::io::Error::from(e)).context(format!("opening {}", path.display()))
    } else {
        anyhow::anyhow!("{} {why}", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    #[test]
    fn never_follows_or_writes_through_links() {
        let (d, host) = with_host();
        std::fs::write(host.join("secret"), "host").unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        symlink(&host, root.join("etc")).unwrap();
        symlink(host.join("secret"), root.join("file")).unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        symlink("../..", root.join("sub/up")).unwrap();

        let machines = Dir::open_trusted(d.path()).unwrap();
        let r = machines.open_root("root").unwrap();
        let err = r.open_dir("etc").unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(r.open_dir("sub/up").is_err());
        // `..` cannot climb out: it stops at the tree's root, where there is no host/.
        assert!(r.open_dir("sub/../../host").is_err());
        assert!(r.open_dir("../host").is_err());
        assert!(!r
            .create_file("file", b"x", 0o644, Owner::default())
            .unwrap());
        assert_eq!(
            std::fs::read_to_string(host.join("secret")).unwrap(),
            "host"
        );
        assert_eq!(r.entry("file").unwrap().unwrap().kind, Kind::Symlink);
        assert_eq!(r.link_target("etc").unwrap(), host);
        r.remove_entry("file").unwrap();
        assert!(host.join("secret").exists());
        assert!(
            machines.open_root("root/etc").is_err(),
            "one component only"
        );
        assert!(r.create_file("../x", b"", 0o644, Owner::default()).is_err());
    }

    #[test]
    fn symlinks_are_replaced_atomically_without_following() {
        let (d, host) = with_host();
        let r = Dir::open_trusted(d.path()).unwrap();
        assert!(r.symlink_atomic("link", Path::new("/a")).unwrap());
        assert!(!r.symlink_atomic("link", Path::new("/a")).unwrap());
        assert!(r.symlink_atomic("link", Path::new("/b")).unwrap());
        assert_eq!(r.read_link("link").unwrap().unwrap(), Path::new("/b"));
        assert_eq!(r.read_link("none").unwrap(), None);
        std::fs::write(d.path().join("file"), "x").unwrap();
        let e = r.read_link("file").unwrap_err().to_string();
        assert!(
            e.ends_with("file is a regular file, not a symbolic link"),
            "{e}"
        );
        // A link to a host directory in the way is replaced, not followed.
        symlink(&host, d.path().join("dirlink")).unwrap();
        assert!(r.symlink_atomic("dirlink", Path::new("x")).unwrap());
        assert_eq!(std::fs::read_dir(&host).unwrap().count(), 0);
        let mut names: Vec<_> = r.names().unwrap();
        names.sort();
        assert_eq!(names, ["dirlink", "file", "host", "link"]);
        assert!(r.remove_if_exists("link", false).unwrap());
        assert!(!r.remove_if_exists("link", false).unwrap());
    }

    #[test]
    fn lock_files_are_never_followed_or_opened_unless_regular() {
        use std::os::unix::fs::FileTypeExt as _;
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let prof = d.path().join("prof");
        std::fs::create_dir(&prof).unwrap();
        let r = Dir::open_trusted(&prof).unwrap();
        let lock = prof.join("system.lock");
        // Fresh: created 0644.
        let (_f, replaced) = r.lock_file("system.lock", 0o644).unwrap();
        assert_eq!(replaced, None);
        let m = std::fs::symlink_metadata(&lock).unwrap();
        assert!(m.is_file() && m.permissions().mode() & 0o7777 == 0o644);
        // An existing regular file is used as it is.
        let ino = m.ino();
        let (_f, replaced) = r.lock_file("system.lock", 0o644).unwrap();
        assert_eq!(
            (replaced, std::fs::metadata(&lock).unwrap().ino()),
            (None, ino)
        );
        // A link to where a new host file would be: replaced, nothing created there.
        std::fs::remove_file(&lock).unwrap();
        symlink(outside.join("nologin"), &lock).unwrap();
        let (_f, replaced) = r.lock_file("system.lock", 0o644).unwrap();
        assert_eq!(replaced, Some(Kind::Symlink));
        assert!(std::fs::symlink_metadata(&lock).unwrap().is_file());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // A link to an existing host file: its content and mode untouched.
        std::fs::write(outside.join("secret"), "s").unwrap();
        std::fs::remove_file(&lock).unwrap();
        symlink(outside.join("secret"), &lock).unwrap();
        r.lock_file("system.lock", 0o644).unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join("secret")).unwrap(),
            "s"
        );
        // A FIFO: never opened (it would block), replaced.
        std::fs::remove_file(&lock).unwrap();
        crate::testing::mkfifo(&lock);
        assert!(std::fs::symlink_metadata(&lock)
            .unwrap()
            .file_type()
            .is_fifo());
        let (_f, replaced) = r.lock_file("system.lock", 0o644).unwrap();
        assert_eq!(replaced, Some(Kind::Fifo));
        // A directory: an error, nothing deleted.
        std::fs::remove_file(&lock).unwrap();
        std::fs::create_dir(&lock).unwrap();
        std::fs::write(lock.join("keep"), "").unwrap();
        let e = r.lock_file("system.lock", 0o644).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        assert!(lock.join("keep").exists());
    }

    #[test]
    fn creates_with_exact_modes() {
        let d = tempfile::tempdir().unwrap();
        let r = Dir::open_trusted(d.path()).unwrap();
        let sub = r
            .create_dir("etc", 0o755, Owner::default())
            .unwrap()
            .unwrap();
        assert!(r
            .create_dir("etc", 0o755, Owner::default())
            .unwrap()
            .is_none());
        assert!(sub.create_file("id", b"", 0o444, Owner::default()).unwrap());
        let m = std::fs::metadata(d.path().join("etc/id")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o444);
        assert_eq!(m.nlink(), 1);
        assert_eq!(
            r.open_dir("etc")
                .unwrap()
                .entry("id")
                .unwrap()
                .unwrap()
                .kind,
            Kind::File
        );
    }

    #[test]
    fn reads_only_regular_files_inside() {
        let d = tempfile::tempdir().unwrap();
        let host = d.path().join("host-secret");
        std::fs::write(&host, "host").unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
        std::fs::write(root.join("etc/ssh/key.pub"), "ssh-ed25519 AAAA x\n").unwrap();
        symlink(&host, root.join("etc/ssh/link.pub")).unwrap();
        symlink(&host, root.join("etc/abs")).unwrap();
        crate::testing::mkfifo(&root.join("etc/ssh/fifo.pub"));
        std::fs::create_dir(root.join("etc/ssh/dir.pub")).unwrap();
        std::fs::write(root.join("etc/big"), vec![b'x'; 100]).unwrap();
        let r = Dir::open_trusted(d.path())
            .unwrap()
            .open_root("root")
            .unwrap();
        assert_eq!(
            r.read_file("etc/ssh/key.pub", 4096).unwrap().unwrap(),
            b"ssh-ed25519 AAAA x\n"
        );
        assert!(r.read_file("etc/ssh/missing.pub", 4096).unwrap().is_none());
        let err = r
            .read_file("etc/ssh/link.pub", 4096)
            .unwrap_err()
            .to_string();
        assert!(err.contains("symbolic link"), "{err}");
        // Never opened (a FIFO would block a plain open).
        let err = r
            .read_file("etc/ssh/fifo.pub", 4096)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a FIFO, not a regular file"), "{err}");
        let err = r
            .read_file("etc/ssh/dir.pub", 4096)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a directory, not a regular file"), "{err}");
        assert!(r.read_file("etc/abs", 4096).is_err());
        assert!(r.read_file("../host-secret", 4096).unwrap().is_none());
        let err = r.read_file("etc/big", 10).unwrap_err().to_string();
        assert!(err.contains("100 bytes"), "{err}");
    }

    /// A temporary directory with an empty directory `host` in it: what the
    /// tree under test must never reach.
    fn with_host() -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let host = d.path().join("host");
        std::fs::create_dir(&host).unwrap();
        (d, host)
    }
}
