//! Deleting a container's state directory (`/var/lib/machines/NAME`) when the
//! container's root may have planted anything in it: no symlink is followed and
//! no mount point is crossed.
//!
//! - The machines directory is opened by path (the host owns it; it may be a
//!   link the host made); `NAME` is opened with `openat2(RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS)` and `O_NOFOLLOW`: a link there is refused, not
//!   followed.
//! - Before anything is removed, `/proc/self/mountinfo` is checked for mount
//!   points below the directory: if there are any, nothing is deleted and the
//!   caller gets a [`Refused`] naming them (unmount them first). The top itself
//!   may be a mount point (its own file system or btrfs subvolume): it is
//!   emptied and then removed when the kernel allows it.
//! - The walk holds directory file descriptors only. Every subdirectory is
//!   opened relative to its parent's descriptor with `O_NOFOLLOW` and
//!   `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//!   RESOLVE_NO_XDEV`, after `fstatat(AT_SYMLINK_NOFOLLOW)` and `statx`
//!   showed it is a directory on the same device and mount as the top (a mount
//!   that appeared after the check is skipped and reported, never entered).
//!   Everything else (files, links, FIFOs, devices, sockets) is removed with
//!   `unlinkat`, which never follows anything and never opens a FIFO or a
//!   device.
//! - Immutable and append-only flags (NixOS containers make `/var/empty`
//!   immutable) are cleared on directories and regular files, through a
//!   descriptor, when they are in the way — never on a file with more than one
//!   link: it may be a host file hard-linked into the tree (same file system),
//!   and the flag belongs to the inode, so clearing it would change the host's
//!   file. Such a name cannot be unlinked while the flag is set, so it is left
//!   in place with its parents and reported ([`Deleted::kept_linked`]).
//! - Depth is bounded: a directory deeper than [`MAX_DEPTH`] is moved (renamed,
//!   same file system, its own immutable flag cleared first) up to the top and
//!   deleted from there, so a hostile tree of any depth needs at most
//!   [`MAX_DEPTH`] + 1 descriptors.
//!
//! Whether the container runs is for the caller to check (it asks systemd):
//! deleting a live container's root is refused by the CLI before this is
//! called.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rustix::fs::{AtFlags, FileType, IFlags, Mode, OFlags, ResolveFlags, StatxFlags};
use rustix::io::Errno;

use crate::paths::{self, Root};

/// At most this many directories are held open at once.
pub const MAX_DEPTH: usize = 128;

/// Why the deletion was refused before anything was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// What a deletion did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Whether there was a state directory at all.
    pub existed: bool,
    /// Non-directory entries removed (files, links, FIFOs, devices, sockets).
    pub files: u64,
    /// Directories removed, the top included.
    pub dirs: u64,
    /// Entries whose immutable/append-only flag had to be cleared.
    pub flags_cleared: u64,
    /// Directories moved up because they were deeper than [`MAX_DEPTH`].
    pub moved_up: u64,
    /// Mount points found during the walk (appeared after the up-front
    /// check): skipped, never entered, and so left in place with their parents.
    pub skipped_mounts: Vec<PathBuf>,
    /// The top directory was emptied but could not be removed (e.g. it is a
    /// mount point of its own).
    pub top_left: Option<String>,
    /// Immutable or append-only files with more than one link: left in
    /// place (with their parents), their flags untouched. Such a file may be
    /// a host file hard-linked into the tree; clearing the flag would change
    /// the host's file, and the name cannot be removed without clearing it.
    pub kept_linked: Vec<PathBuf>,
}

impl Deleted {
    /// Whether everything is gone.
    pub fn complete(&self) -> bool {
        self.skipped_mounts.is_empty() && self.top_left.is_none() && self.kept_linked.is_empty()
    }

    /// Whether something was left in place on purpose (so its parent
    /// directories cannot be removed).
    fn left_something(&self) -> bool {
        !self.skipped_mounts.is_empty() || !self.kept_linked.is_empty()
    }
}

/// Identity of a directory's mount: device and (where `statx` has it) mount id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MountId {
    dev: (u32, u32),
    mnt_id: Option<u64>,
}

fn mount_id_at(
    dirfd: BorrowedFd<'_>,
    name: &OsStr,
) -> std::result::Result<(FileType, MountId), Errno> {
    let flags = if name.is_empty() {
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    let st = rustix::fs::statx(dirfd, name, flags, StatxFlags::TYPE | StatxFlags::MNT_ID)?;
    let kind = FileType::from_raw_mode(u32::from(st.stx_mode));
    let mnt_id = (st.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(st.stx_mnt_id);
    Ok((
        kind,
        MountId {
            dev: (st.stx_dev_major, st.stx_dev_minor),
            mnt_id,
        },
    ))
}

/// The mount points at or below `dir` (a path as the kernel shows it), from
/// `/proc/self/mountinfo`.
fn mounts_below(dir: &Path) -> Result<(bool, Vec<PathBuf>)> {
    let text = std::fs::read("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mut top_is_mount = false;
    let mut below = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        // id parent major:minor root mount-point options ...
        let Some(field) = line.split(|b| *b == b' ').nth(4) else {
            continue;
        };
        let mp = PathBuf::from(OsString::from_vec(unescape_mountinfo(field)));
        if mp == dir {
            top_is_mount = true;
        } else if mp.starts_with(dir) {
            below.push(mp);
        }
    }
    below.sort();
    below.dedup();
    Ok((top_is_mount, below))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\'
            && i + 4 <= s.len()
            && s[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (s[i + 1] - b'0') as u32 * 64
                + (s[i + 2] - b'0') as u32 * 8
                + (s[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// The path the kernel gives an open descriptor (for the mountinfo check).
fn fd_path(fd: BorrowedFd<'_>) -> Result<PathBuf> {
    use std::os::fd::AsRawFd as _;
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    std::fs::read_link(&link).with_context(|| format!("reading {link}"))
}

const OPEN_DIR: OFlags = OFlags::DIRECTORY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC);
const WALK: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Clear the immutable and append-only flags of an open file or directory.
/// Returns whether there were any. File systems without flags are fine.
fn clear_flags(fd: BorrowedFd<'_>) -> std::result::Result<bool, Errno> {
    let flags = match rustix::fs::ioctl_getflags(fd) {
        Ok(f) => f,
        Err(Errno::NOTTY | Errno::NOSYS | Errno::OPNOTSUPP | Errno::INVAL) => return Ok(false),
        Err(e) => return Err(e),
    };
    let sticky = || IFlags::IMMUTABLE | IFlags::APPEND;
    if !flags.intersects(sticky()) {
        return Ok(false);
    }
    rustix::fs::ioctl_setflags(fd, flags - sticky())?;
    Ok(true)
}

fn list(fd: BorrowedFd<'_>, path: &Path) -> Result<Vec<OsString>> {
    let mut dir = rustix::fs::Dir::read_from(fd)
        .map_err(std::io::Error::from)
        .with_context(|| format!("listing {}", path.display()))?;
    let mut names = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry
            .map_err(std::io::Error::from)
            .with_context(|| format!("listing {}", path.display()))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
    // Removed from the end: keep the order deterministic (reverse sorted).
    names.sort_unstable_by(|a, b| b.cmp(a));
    Ok(names)
}

struct Frame {
    fd: OwnedFd,
    /// Name in the parent frame (`None` for the top).
    name: Option<OsString>,
    path: PathBuf,
    pending: Vec<OsString>,
}

/// Delete `/var/lib/machines/NAME` under `root`. A missing directory is not an
/// error (`existed` is false). Errors of type [`Refused`] (found in the
/// chain) mean nothing was deleted.
pub fn delete(root: &Root, name: &str) -> Result<Deleted> {
    delete_inner(root, name, true)
}

/// The checks [`delete`] makes before it removes anything, without deleting:
/// `NAME` must not be a link or a non-directory, and nothing may be mounted
/// below it. `Ok(false)`: there is no state directory. Errors of type
/// [`Refused`] say why it would be refused.
pub fn check(root: &Root, name: &str) -> Result<bool> {
    let Some(opened) = open_top(root, name)? else {
        return Ok(false);
    };
    refuse_mounts_below(&opened)?;
    Ok(true)
}

struct Opened {
    machines_fd: OwnedFd,
    top: OwnedFd,
    top_path: PathBuf,
}

/// Open `/var/lib/machines/NAME` without following a link; `None` when it
/// does not exist.
fn open_top(root: &Root, name: &str) -> Result<Option<Opened>> {
    crate::names::check_machine_name(name)
        .map_err(|e| anyhow::anyhow!("{name:?} is not a valid container name: it {e}"))?;
    let machines = root.machines_dir();
    let logical = paths::machine_dir(name);
    let top_path = root.join(&logical);
    let machines_fd = match rustix::fs::open(
        &machines,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => {
            return Err(std::io::Error::from(e))
                .with_context(|| format!("opening {}", machines.display()))
        }
    };
    let top = match rustix::fs::openat2(
        &machines_fd,
        name,
        OPEN_DIR,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP | Errno::NOTDIR) => {
            let what = match rustix::fs::statat(&machines_fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    let target = rustix::fs::readlinkat(&machines_fd, name, Vec::new())
                        .map(|t| PathBuf::from(OsString::from_vec(t.into_bytes())))
                        .unwrap_or_default();
                    format!("a symbolic link (to {}), which is never followed; remove the link yourself if you mean to", target.display())
                }
                _ => "not a directory".to_owned(),
            };
            return Err(Refused(format!("{} is {what}", top_path.display())).into());
        }
        Err(e) => {
            return Err(std::io::Error::from(e))
                .with_context(|| format!("opening {}", top_path.display()))
        }
    };
    Ok(Some(Opened {
        machines_fd,
        top,
        top_path,
    }))
}

/// No mount point below the top, or nothing is touched.
fn refuse_mounts_below(o: &Opened) -> Result<()> {
    let kernel_path = fd_path(o.top.as_fd())?;
    let (_, below) = mounts_below(&kernel_path)?;
    if !below.is_empty() {
        let list: Vec<String> = below.iter().map(|p| p.display().to_string()).collect();
        return Err(Refused(format!(
            "{} has {} mounted below it ({}); nothing was deleted: unmount {} first",
            o.top_path.display(),
            if below.len() == 1 {
                "a file system"
            } else {
                "file systems"
            },
            list.join(", "),
            if below.len() == 1 { "it" } else { "them" },
        ))
        .into());
    }
    Ok(())
}

/// `precheck`: look for mount points in mountinfo first (tests turn it off
/// to exercise the walk's own check).
fn delete_inner(root: &Root, name: &str, precheck: bool) -> Result<Deleted> {
    let mut done = Deleted::default();
    let Some(opened) = open_top(root, name)? else {
        return Ok(done);
    };
    done.existed = true;
    if precheck {
        refuse_mounts_below(&opened)?;
    }
    let Opened {
        machines_fd,
        top,
        top_path,
    } = opened;
    empty_top(top, &top_path, &mut done)?;
    if !done.left_something() {
        remove_top(&machines_fd, name, &top_path, &mut done)?;
    }
    Ok(done)
}

/// Deletes everything below `top` that lies on its mount, one directory
/// descriptor a level (at most [`MAX_DEPTH`]); closes `top`.
fn empty_top(top: OwnedFd, top_path: &Path, done: &mut Deleted) -> Result<()> {
    let (_, top_id) = mount_id_at(top.as_fd(), OsStr::new(""))
        .map_err(std::io::Error::from)
        .with_context(|| format!("checking {}", top_path.display()))?;
    clear_flags_counted(top.as_fd(), top_path, done)?;
    let pending = list(top.as_fd(), top_path)?;
    let mut stack = vec![Frame {
        fd: top,
        name: None,
        path: top_path.to_path_buf(),
        pending,
    }];
    let mut moved = 0u64;
    loop {
        let depth = stack.len();
        let Some(frame) = stack.last_mut() else { break };
        let Some(entry) = frame.pending.pop() else {
            if !remove_finished_dir(&mut stack, done)? {
                break;
            }
            continue;
        };
        let path = frame.path.join(&entry);
        let (kind, id) = match mount_id_at(frame.fd.as_fd(), &entry) {
            Ok(v) => v,
            Err(Errno::NOENT) => continue,
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("checking {}", path.display()))
            }
        };
        if kind != FileType::Directory {
            remove_file(frame.fd.as_fd(), &entry, kind, &path, done)?;
            continue;
        }
        if id.dev != top_id.dev
            || (id.mnt_id.is_some() && top_id.mnt_id.is_some() && id.mnt_id != top_id.mnt_id)
        {
            skip_mount(path, done);
            continue;
        }
        // Deeper than MAX_DEPTH: moved up to the top (same mount: a rename
        // never crosses one). An immutable or append-only directory cannot
        // be renamed: its flags are cleared first, through a descriptor
        // checked like any other.
        let Some(fd) = open_checked_dir(frame.fd.as_fd(), &entry, path.clone(), id, done)? else {
            continue;
        };
        if depth >= MAX_DEPTH {
            drop(fd);
            move_up(&mut stack, &entry, &path, &mut moved)?;
            done.moved_up += 1;
            continue;
        }
        let pending = list(fd.as_fd(), &path)?;
        stack.push(Frame {
            fd,
            name: Some(entry),
            path,
            pending,
        });
    }
    Ok(())
}

/// A mount point below the top: not entered, reported.
fn skip_mount(path: PathBuf, done: &mut Deleted) {
    log::warn!(
        "{} is a mount point: not entered, left in place",
        path.display()
    );
    done.skipped_mounts.push(path);
}

/// `clear_flags`, counted in `done`.
fn clear_flags_counted(fd: BorrowedFd<'_>, path: &Path, done: &mut Deleted) -> Result<()> {
    if clear_flags(fd)
        .map_err(std::io::Error::from)
        .with_context(|| format!("clearing the flags of {}", path.display()))?
    {
        done.flags_cleared += 1;
    }
    Ok(())
}

/// Opens directory `entry` of `parent` (no-follow, never crossing a mount),
/// checks that what it holds is what was checked (a directory with mount
/// identity `id`) and clears its flags. `None`: it is gone, or it is a mount
/// point (then reported).
fn open_checked_dir(
    parent: BorrowedFd<'_>,
    entry: &OsStr,
    path: PathBuf,
    id: MountId,
    done: &mut Deleted,
) -> Result<Option<OwnedFd>> {
    let fd = match rustix::fs::openat2(parent, entry, OPEN_DIR, Mode::empty(), WALK) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::XDEV) => {
            skip_mount(path, done);
            return Ok(None);
        }
        Err(e) => {
            return Err(std::io::Error::from(e))
                .with_context(|| format!("opening directory {}", path.display()))
        }
    };
    // What we hold must be what we checked: a directory on the top's mount.
    let (kind2, id2) = mount_id_at(fd.as_fd(), OsStr::new(""))
        .map_err(std::io::Error::from)
        .with_context(|| format!("checking {}", path.display()))?;
    if kind2 != FileType::Directory || id2 != id {
        anyhow::bail!("{} changed while being deleted", path.display());
    }
    clear_flags_counted(fd.as_fd(), &path, done)?;
    Ok(Some(fd))
}

/// Renames directory `entry` of the innermost frame into the top under a
/// fresh name, where the walk takes it up again.
fn move_up(stack: &mut [Frame], entry: &OsStr, path: &Path, moved: &mut u64) -> Result<()> {
    let new_name = loop {
        *moved += 1;
        let candidate = OsString::from(format!(".nixos-nspawn-deleting-{moved}"));
        match rustix::fs::statat(&stack[0].fd, &candidate, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => break candidate,
            _ => continue,
        }
    };
    let innermost = &stack[stack.len() - 1];
    rustix::fs::renameat(&innermost.fd, entry, &stack[0].fd, &new_name)
        .map_err(std::io::Error::from)
        .with_context(|| format!("moving {} up for deletion", path.display()))?;
    stack[0].pending.push(new_name);
    Ok(())
}

/// The innermost frame is listed through: closes it and removes its
/// directory from its parent's. `false` when it was the top (the walk is over).
fn remove_finished_dir(stack: &mut Vec<Frame>, done: &mut Deleted) -> Result<bool> {
    let frame = stack.pop().expect("non-empty");
    let Some(name) = frame.name else {
        return Ok(false);
    };
    drop(frame.fd);
    let parent = stack.last().expect("the top is below");
    match rustix::fs::unlinkat(&parent.fd, name.as_os_str(), AtFlags::REMOVEDIR) {
        Ok(()) => done.dirs += 1,
        // It holds a skipped mount point or a kept file (reported already).
        Err(Errno::NOTEMPTY | Errno::BUSY) if done.left_something() => {}
        Err(e) => {
            return Err(std::io::Error::from(e))
                .with_context(|| format!("removing directory {}", frame.path.display()))
        }
    }
    Ok(true)
}

/// The emptied top itself, from the machines directory.
fn remove_top(
    machines_fd: &OwnedFd,
    name: &str,
    top_path: &Path,
    done: &mut Deleted,
) -> Result<()> {
    match rustix::fs::unlinkat(machines_fd, name, AtFlags::REMOVEDIR) {
        Ok(()) => done.dirs += 1,
        Err(e @ (Errno::BUSY | Errno::PERM | Errno::ACCESS)) => {
            done.top_left = Some(format!(
                "{} was emptied but not removed: {}",
                top_path.display(),
                std::io::Error::from(e)
            ));
        }
        Err(e) => {
            return Err(std::io::Error::from(e))
                .with_context(|| format!("removing directory {}", top_path.display()))
        }
    }
    Ok(())
}

fn remove_file(
    dirfd: BorrowedFd<'_>,
    name: &OsStr,
    kind: FileType,
    path: &Path,
    done: &mut Deleted,
) -> Result<()> {
    match rustix::fs::unlinkat(dirfd, name, AtFlags::empty()) {
        Ok(()) => {
            done.files += 1;
            return Ok(());
        }
        Err(Errno::NOENT) => return Ok(()),
        Err(Errno::PERM) if kind == FileType::RegularFile => {}
        Err(e) => {
            return Err(std::io::Error::from(e))
                .with_context(|| format!("removing {}", path.display()))
        }
    }
    // An immutable or append-only regular file: clear its flags through a
    // descriptor (opening a regular file has no side effects) and retry.
    let fd = rustix::fs::openat2(
        dirfd,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
        WALK,
    )
    .map_err(std::io::Error::from)
    .with_context(|| format!("opening {} to clear its flags", path.display()))?;
    let st = rustix::fs::fstat(&fd)
        .map_err(std::io::Error::from)
        .with_context(|| format!("checking {}", path.display()))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        anyhow::bail!("{} changed while being deleted", path.display());
    }
    if st.st_nlink > 1 {
        // Another name for this inode exists, maybe outside the tree (a host
        // file hard-linked in): its flags are not ours to change.
        log::warn!(
            "{} is immutable or append-only and has {} links (it may be a host file hard-linked into the container): left in place, its flags untouched",
            path.display(),
            st.st_nlink
        );
        done.kept_linked.push(path.to_path_buf());
        return Ok(());
    }
    if clear_flags(fd.as_fd())
        .map_err(std::io::Error::from)
        .with_context(|| format!("clearing the flags of {}", path.display()))?
    {
        done.flags_cleared += 1;
    }
    drop(fd);
    rustix::fs::unlinkat(dirfd, name, AtFlags::empty())
        .map_err(std::io::Error::from)
        .with_context(|| format!("removing {}", path.display()))?;
    done.files += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `err` (or anything in its chain) is a [`Refused`], as the CLI
    /// tells it.
    fn is_refused(err: &anyhow::Error) -> bool {
        err.chain().any(|c| c.downcast_ref::<Refused>().is_some())
    }
    use std::os::unix::fs::symlink;

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// Whether the test can set `chattr +i` (root); if not, says it is skipped.
    fn may_set_immutable() -> bool {
        let root = is_root();
        if !root {
            eprintln!("skipped: needs CAP_LINUX_IMMUTABLE (root)");
        }
        root
    }

    /// A state dir full of traps pointing at host sentinels.
    fn plant(root: &Root, name: &str, host: &Path) {
        let top = root.join(paths::machine_dir(name));
        std::fs::create_dir_all(top.join("etc/deep")).unwrap();
        std::fs::create_dir_all(top.join("var/lib")).unwrap();
        std::fs::write(top.join("etc/os-release"), "ID=nixos\n").unwrap();
        std::fs::write(top.join("etc/deep/file"), "x").unwrap();
        // Links to the host: to a file, to a directory, relative escapes.
        symlink(host.join("sentinel"), top.join("etc/passwd")).unwrap();
        symlink(host, top.join("var/lib/hostdir")).unwrap();
        symlink("../../../../../../..", top.join("var/up")).unwrap();
        symlink(host.join("dir"), top.join("dirlink")).unwrap();
        // A hard link to a host file (same file system): only the name goes.
        let _ = std::fs::hard_link(host.join("hardlinked"), top.join("hard"));
        // A FIFO (never opened).
        crate::testing::mkfifo(&top.join("fifo"));
    }

    fn host_sentinels(d: &Path) -> PathBuf {
        let host = d.join("host");
        std::fs::create_dir_all(host.join("dir")).unwrap();
        std::fs::write(host.join("sentinel"), "keep").unwrap();
        std::fs::write(host.join("dir/inner"), "keep").unwrap();
        std::fs::write(host.join("hardlinked"), "keep").unwrap();
        host
    }

    fn assert_host_intact(host: &Path) {
        assert_eq!(
            std::fs::read_to_string(host.join("sentinel")).unwrap(),
            "keep"
        );
        assert_eq!(
            std::fs::read_to_string(host.join("dir/inner")).unwrap(),
            "keep"
        );
        assert_eq!(
            std::fs::read_to_string(host.join("hardlinked")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn deletes_without_following_links() {
        let d = tempfile::tempdir().unwrap();
        let host = host_sentinels(d.path());
        let root = Root::new(d.path().join("root"));
        plant(&root, "web", &host);
        let done = delete(&root, "web").unwrap();
        assert!(done.existed && done.complete(), "{done:?}");
        assert!(done.files >= 7, "{done:?}");
        assert!(!root.join("/var/lib/machines/web").exists());
        assert!(root.machines_dir().exists(), "the machines dir stays");
        assert_host_intact(&host);
        // Nothing there: fine.
        let again = delete(&root, "web").unwrap();
        assert!(!again.existed);
        assert!(delete(&root, "../etc").is_err());
    }

    #[test]
    fn refuses_a_linked_state_dir() {
        let d = tempfile::tempdir().unwrap();
        let host = host_sentinels(d.path());
        let root = Root::new(d.path().join("root"));
        std::fs::create_dir_all(root.machines_dir()).unwrap();
        symlink(host.join("dir"), root.join("/var/lib/machines/web")).unwrap();
        let err = delete(&root, "web").unwrap_err();
        assert!(is_refused(&err), "{err:#}");
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        assert_host_intact(&host);
        assert!(root
            .join("/var/lib/machines/web")
            .symlink_metadata()
            .is_ok());
    }

    #[test]
    fn deep_trees_need_bounded_descriptors() {
        let (_d, root) = crate::testing::temp_root();
        let top = root.join(paths::machine_dir("deep"));
        // Deeper than MAX_DEPTH, built relative to stay under PATH_MAX.
        let mut dir = std::fs::File::open({
            std::fs::create_dir_all(&top).unwrap();
            &top
        })
        .unwrap();
        for i in 0..(MAX_DEPTH * 3) {
            rustix::fs::mkdirat(&dir, "d", Mode::from_raw_mode(0o755)).unwrap();
            if i % 50 == 0 {
                let f = rustix::fs::openat(
                    &dir,
                    "f",
                    OFlags::CREATE | OFlags::WRONLY,
                    Mode::from_raw_mode(0o644),
                )
                .unwrap();
                drop(f);
            }
            let next =
                rustix::fs::openat(&dir, "d", OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())
                    .unwrap();
            dir = std::fs::File::from(next);
        }
        let done = delete(&root, "deep").unwrap();
        assert!(done.complete(), "{done:?}");
        assert!(done.moved_up >= 1, "{done:?}");
        assert_eq!(done.dirs as usize, MAX_DEPTH * 3 + 1);
        assert!(!top.exists());
    }

    #[test]
    fn clears_immutable_flags() {
        if !may_set_immutable() {
            return;
        }
        let (_d, root) = crate::testing::temp_root();
        let top = root.join(paths::machine_dir("web"));
        std::fs::create_dir_all(top.join("var/empty")).unwrap();
        std::fs::write(top.join("var/immutable-file"), "x").unwrap();
        let set = |p: &Path| {
            let f = std::fs::File::open(p).unwrap();
            rustix::fs::ioctl_setflags(&f, IFlags::IMMUTABLE).is_ok()
        };
        if !set(&top.join("var/empty")) || !set(&top.join("var/immutable-file")) {
            eprintln!("skipped: this file system has no immutable flag");
            return;
        }
        let done = delete(&root, "web").unwrap();
        assert!(done.complete());
        assert_eq!(done.flags_cleared, 2, "{done:?}");
        assert!(!top.exists());
    }

    /// Issue 12: a hostile tree deeper than MAX_DEPTH with `chattr +i` on
    /// its directories defeated the move-up ("moving … up for deletion":
    /// EPERM, an immutable directory cannot be renamed).
    #[test]
    fn deep_immutable_trees() {
        if !may_set_immutable() {
            return;
        }
        let (_d, root) = crate::testing::temp_root();
        let top = root.join(paths::machine_dir("deep"));
        std::fs::create_dir_all(&top).unwrap();
        let mut fds = vec![std::fs::File::open(&top).unwrap()];
        for _ in 0..(MAX_DEPTH * 2) {
            let dir = fds.last().unwrap();
            rustix::fs::mkdirat(dir, "d", Mode::from_raw_mode(0o755)).unwrap();
            let next =
                rustix::fs::openat(dir, "d", OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())
                    .unwrap();
            fds.push(std::fs::File::from(next));
        }
        // Immutable from the bottom up (an immutable directory takes no new
        // entries), around and below the depth where the walk moves things up.
        let mut set = 0;
        for f in fds.iter().rev().take(MAX_DEPTH + 10) {
            if rustix::fs::ioctl_setflags(f, IFlags::IMMUTABLE).is_ok() {
                set += 1;
            }
        }
        drop(fds);
        if set == 0 {
            eprintln!("skipped: this file system has no immutable flag");
            return;
        }
        let done = delete(&root, "deep").unwrap();
        assert!(done.complete(), "{done:?}");
        assert!(done.moved_up >= 1, "{done:?}");
        assert_eq!(done.flags_cleared, set, "{done:?}");
        assert!(!top.exists());
    }

    /// Issue 11: an immutable file with more than one link may be a host file
    /// hard-linked into the tree: its flag is never cleared (that would change
    /// the host's file); it is left in place and reported, the rest deleted.
    #[test]
    fn never_clears_the_flags_of_a_hard_linked_file() {
        if !may_set_immutable() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let host = host_sentinels(d.path());
        let root = Root::new(d.path().join("root"));
        plant(&root, "web", &host);
        let top = root.join(paths::machine_dir("web"));
        std::fs::create_dir_all(top.join("deep/er")).unwrap();
        std::fs::write(top.join("deep/other"), "x").unwrap();
        std::fs::hard_link(host.join("sentinel"), top.join("deep/er/hostfile")).unwrap();
        let f = std::fs::File::open(host.join("sentinel")).unwrap();
        if rustix::fs::ioctl_setflags(&f, IFlags::IMMUTABLE).is_err() {
            eprintln!("skipped: this file system has no immutable flag");
            return;
        }
        struct Clear(std::fs::File);
        impl Drop for Clear {
            fn drop(&mut self) {
                let _ = rustix::fs::ioctl_setflags(&self.0, IFlags::empty());
            }
        }
        let f = Clear(f);
        let done = delete(&root, "web").unwrap();
        assert_eq!(
            done.kept_linked,
            vec![top.join("deep/er/hostfile")],
            "{done:?}"
        );
        assert!(!done.complete());
        assert!(
            rustix::fs::ioctl_getflags(&f.0)
                .unwrap()
                .contains(IFlags::IMMUTABLE),
            "the host file's immutable flag was cleared"
        );
        assert!(top.join("deep/er/hostfile").exists());
        assert!(!top.join("deep/other").exists() && !top.join("etc").exists());
        drop(f);
        assert_host_intact(&host);
    }

    /// A tmpfs mounted inside the state dir (as a bind mount from a container
    /// might be left behind): refused up front, nothing deleted, the mount's
    /// content untouched.
    #[test]
    fn refuses_mount_points_below() {
        if !is_root() {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let host = host_sentinels(d.path());
        let root = Root::new(d.path().join("root"));
        plant(&root, "web", &host);
        let mnt = root.join("/var/lib/machines/web/var/lib/mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        if let Err(e) = rustix::mount::mount(
            "tmpfs",
            &mnt,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            "size=1m",
        ) {
            eprintln!("skipped: cannot mount a tmpfs here: {e}");
            return;
        }
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
            }
        }
        let _guard = Unmount(mnt.clone());
        std::fs::write(mnt.join("precious"), "data").unwrap();
        let err = delete(&root, "web").unwrap_err();
        let text = format!("{err:#}");
        assert!(is_refused(&err), "{text}");
        assert!(
            text.contains("mounted below it") && text.contains("var/lib/mnt"),
            "{text}"
        );
        assert!(text.contains("nothing was deleted"), "{text}");
        assert_eq!(
            std::fs::read_to_string(mnt.join("precious")).unwrap(),
            "data"
        );
        assert!(
            root.join("/var/lib/machines/web/etc/os-release").exists(),
            "nothing deleted"
        );
        assert_host_intact(&host);

        // A bind mount of a host directory, also refused; after unmounting
        // everything the deletion goes through and the host dir survives.
        drop(_guard);
        let bind = root.join("/var/lib/machines/web/etc/deep");
        rustix::mount::mount_bind(host.join("dir"), &bind).unwrap();
        let _guard = Unmount(bind.clone());
        let err = delete(&root, "web").unwrap_err();
        assert!(is_refused(&err), "{err:#}");
        drop(_guard);
        let done = delete(&root, "web").unwrap();
        assert!(done.complete(), "{done:?}");
        assert_host_intact(&host);
    }

    /// The walk's own check, for a mount that appears after the up-front
    /// check: told apart by device/mount id, never entered (openat2 with
    /// RESOLVE_NO_XDEV would refuse it too), left in place with its parents,
    /// everything else deleted.
    #[test]
    fn walk_skips_mounts_it_finds() {
        if !is_root() {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let (_d, root) = crate::testing::temp_root();
        let top = root.join(paths::machine_dir("web"));
        std::fs::create_dir_all(top.join("a/m")).unwrap();
        std::fs::create_dir_all(top.join("b/c")).unwrap();
        std::fs::write(top.join("a/file"), "x").unwrap();
        std::fs::write(top.join("b/c/file"), "x").unwrap();
        let m = top.join("a/m");
        if rustix::mount::mount(
            "tmpfs",
            &m,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            "size=1m",
        )
        .is_err()
        {
            eprintln!("skipped: cannot mount a tmpfs here");
            return;
        }
        std::fs::write(m.join("precious"), "data").unwrap();
        let a = std::fs::File::open(top.join("a")).unwrap();
        assert_eq!(
            rustix::fs::openat2(&a, "m", OPEN_DIR, Mode::empty(), WALK).unwrap_err(),
            Errno::XDEV
        );
        drop(a);
        let done = delete_inner(&root, "web", false);
        let _ = rustix::mount::unmount(&m, rustix::mount::UnmountFlags::empty());
        let done = done.unwrap();
        assert_eq!(done.skipped_mounts, vec![m.clone()]);
        assert!(!done.complete());
        assert!(!top.join("a/file").exists() && !top.join("b").exists());
        assert!(m.is_dir(), "the mount point and its parents stay");
    }

    #[test]
    fn mountinfo_unescaping() {
        assert_eq!(unescape_mountinfo(br"/a\040b\134c"), b"/a b\\c".to_vec());
        assert_eq!(unescape_mountinfo(br"/plain"), b"/plain".to_vec());
        assert_eq!(unescape_mountinfo(br"/x\04"), br"/x\04".to_vec());
    }
}
