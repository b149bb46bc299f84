//! Fixtures the workspace's tests share (unit tests here and in the other
//! crates, `tests/` of every crate): not for production code; each panics on
//! failure, as a test wants.

use std::path::{Path, PathBuf};

use crate::Root;

/// A throwaway root (an empty temporary directory): keep the directory alive
/// as long as the root is used.
pub fn temp_root() -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let root = Root::new(dir.path());
    (dir, root)
}

/// The directory `logical` (a [`crate::paths`] constant) under `root`, created.
pub fn created_dir(root: &Root, logical: &str) -> PathBuf {
    let dir = root.join(logical);
    std::fs::create_dir_all(&dir).expect("creating a directory");
    dir
}

/// An executable file at `path` (mode 0755) holding `contents`: a fake tool
/// or system for a test.
pub fn write_script(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) {
    use std::os::unix::fs::PermissionsExt as _;
    let path = path.as_ref();
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod 755 {}: {e}", path.display()));
}

/// A FIFO at `path` (mode 0644), what a hostile writer plants where a file
/// belongs: opening it for reading blocks until a writer comes.
pub fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// The standard output of a program run WHAT that must have succeeded;
/// otherwise a panic naming WHAT, its status and its standard error.
pub fn stdout_of_success(what: &str, o: std::process::Output) -> String {
    assert!(
        o.status.success(),
        "{what}: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("standard output in UTF-8")
}

/// `nix-instantiate --eval --strict --json ARGS…` run in `dir` with `env`
/// added: the printed JSON, or `None` when Nix is not installed (a package's
/// build sandbox). Any other failure panics with Nix's message.
pub fn nix_eval(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Option<serde_json::Value> {
    let out = match std::process::Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run nix-instantiate: {e}"),
    };
    assert!(
        out.status.success(),
        "nix-instantiate {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("nix-instantiate printed JSON"))
}

/// A tmpfs mounted for a test, lazily unmounted (`MNT_DETACH`) when dropped.
pub struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// A tmpfs with `options` (`size=64k`) at the directory `path`, or
    /// `None` (and a line saying the test is skipped) where this process may
    /// not mount.
    pub fn mount(path: &Path, options: &str) -> Option<Tmpfs> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let flags = rustix::mount::MountFlags::empty();
        if rustix::mount::mount("tmpfs", path, "tmpfs", flags, options).is_err() {
            eprintln!("skipped: cannot mount a tmpfs here");
            return None;
        }
        Some(Tmpfs(path.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures() {
        let (d, root) = temp_root();
        assert_eq!(root.path(), d.path());
        assert!(std::fs::read_dir(d.path()).unwrap().next().is_none());
        let fifo = d.path().join("f");
        mkfifo(&fifo);
        let t = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&t));
    }

    #[test]
    fn tmpfs_goes_with_its_guard() {
        let (d, _) = temp_root();
        let Some(t) = Tmpfs::mount(d.path(), "size=64k") else {
            return;
        };
        std::fs::write(d.path().join("on-tmpfs"), "x").unwrap();
        drop(t);
        assert!(!d.path().join("on-tmpfs").exists());
    }

    #[test]
    fn build_time_or_falls_back_without_the_variable() {
        const UNSET: &str = crate::build_time_or!("NIXOS_NSPAWN_TEST_NEVER_SET", "nix-store");
        assert_eq!(UNSET, "nix-store");
        const SET: &str = crate::build_time_or!("CARGO_PKG_NAME", "x");
        assert_eq!(SET, "nixos-nspawn-core");
    }
}
