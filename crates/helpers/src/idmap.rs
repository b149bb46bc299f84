//! Does a directory's file system support id-mapped mounts? Asked the way
//! nspawn makes its `idmap` binds, so the answer is nspawn's: a detached
//! clone of the mount (`open_tree(OPEN_TREE_CLONE)`) is given an id-mapping
//! for a user namespace that has one (`mount_setattr(MOUNT_ATTR_IDMAP)`).
//! Nothing is attached anywhere; the clone is gone when its descriptor is
//! closed. A file system without support (ramfs, NFS, ZFS before 2.2, tmpfs
//! before Linux 6.3, …) answers `EINVAL`, exactly what makes nspawn refuse
//! to start a container ("Failed to map ids for bind mount …: Invalid
//! argument", measured with systemd 252).

use std::ffi::CString;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use anyhow::{bail, Context as _, Result};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A user namespace with a mapping, to try id-mappings with.
pub struct Probe {
    userns: OwnedFd,
}

fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

impl Probe {
    /// Make a user namespace: a forked child unshares one and waits; its UID
    /// and GID maps are written from here, its namespace opened, then it
    /// exits.
    pub fn new() -> Result<Probe> {
        let mut ready = [0 as libc::c_int; 2];
        let mut go = [0 as libc::c_int; 2];
        // SAFETY: pipe2 fills the two-element arrays.
        unsafe {
            if libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                return Err(last_error()).context("pipe2");
            }
            if libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                let e = last_error();
                libc::close(ready[0]);
                libc::close(ready[1]);
                return Err(e).context("pipe2");
            }
        }
        // SAFETY: the child only makes async-signal-safe syscalls (close,
        // unshare, write, read, _exit) and never returns.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe {
                libc::close(ready[0]);
                libc::close(go[1]);
                let ok: u8 = u8::from(libc::unshare(libc::CLONE_NEWUSER) == 0);
                libc::write(ready[1], (&ok as *const u8).cast(), 1);
                let mut b = 0u8;
                libc::read(go[0], (&mut b as *mut u8).cast(), 1);
                libc::_exit(0);
            }
        }
        // SAFETY: each fd is ours and closed once.
        let (ready_r, go_w) = unsafe {
            libc::close(ready[1]);
            libc::close(go[0]);
            (OwnedFd::from_raw_fd(ready[0]), OwnedFd::from_raw_fd(go[1]))
        };
        if pid < 0 {
            return Err(last_error()).context("fork");
        }
        let result = (|| -> Result<OwnedFd> {
            let mut ok = 0u8;
            // SAFETY: reads one byte into `ok`.
            let n = unsafe { libc::read(ready_r.as_raw_fd(), (&mut ok as *mut u8).cast(), 1) };
            if n != 1 || ok != 1 {
                bail!("the helper process could not create a user namespace");
            }
            // Any range will do; this is where nspawn's `pick` starts.
            for map in ["uid_map", "gid_map"] {
                std::fs::write(format!("/proc/{pid}/{map}"), "0 1879048192 65536\n")
                    .with_context(|| format!("writing /proc/{pid}/{map}"))?;
            }
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/user"))
                .with_context(|| format!("opening /proc/{pid}/ns/user"))?;
            Ok(OwnedFd::from(ns))
        })();
        drop(go_w);
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        Ok(Probe { userns: result? })
    }

    /// Whether nspawn could id-map a bind mount of `path`: `Ok(false)` for a
    /// file system without support, `Err` when the question could not be
    /// asked at all.
    pub fn supports(&self, path: &Path) -> Result<bool> {
        let c = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: a path string and flags; returns a new fd or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                c.as_ptr(),
                OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(last_error()).with_context(|| format!("open_tree {}", path.display()));
        }
        // SAFETY: open_tree returned a new descriptor.
        let tree = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_IDMAP,
            attr_clr: 0,
            propagation: 0,
            userns_fd: self.userns.as_raw_fd() as u64,
        };
        // SAFETY: the detached tree, an empty path, a live mount_attr.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if r == 0 {
            return Ok(true);
        }
        let e = last_error();
        match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => Ok(false),
            _ => Err(e)
                .with_context(|| format!("mount_setattr(MOUNT_ATTR_IDMAP) {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root: a tmpdir on this machine's file system, and `/proc`, whose
    /// file system (like ramfs or NFS) has no id-mapped mounts.
    #[test]
    fn answers_like_nspawn() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let probe = match Probe::new() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("skipped: {e:#}");
                return;
            }
        };
        assert!(Probe::new().is_ok(), "a second probe");
        assert!(probe.supports(Path::new("/nonexistent/x")).is_err());
        let d = tempfile::tempdir().unwrap();
        let here = probe.supports(d.path()).unwrap();
        eprintln!(
            "{}: id-mapped mounts {}",
            d.path().display(),
            if here { "supported" } else { "not supported" }
        );
        assert!(!probe.supports(Path::new("/proc")).unwrap(), "procfs");
    }
}
