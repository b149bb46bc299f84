//! Per-container profiles: `/nix/var/nix/profiles/per-nspawn/NAME/system`, in
//! the layout nix-env uses (`system` -> `system-N-link` -> store path, relative
//! links, `system.lock` taken with flock like Nix does), so
//! `nix-env -p … --list-generations` works and every generation is a GC root
//! (`/nix/var/nix/gcroots/profiles` points at `/nix/var/nix/profiles`).
//!
//! The profile directory is mounted read-only into the container, but a
//! container without user namespacing can remount it read-write and plant
//! anything in it (a `system.lock` link to `/etc/nologin`, a FIFO, …). So
//! every operation inside it is relative to a directory descriptor and never
//! follows what is there ([`Dir`]: `openat(O_NOFOLLOW)`, `readlinkat`,
//! `symlinkat` + `renameat`, `unlinkat`); the lock file is only ever opened
//! when it is a regular file (else replaced unopened). The directory itself
//! (`per-nspawn/NAME`) is the host's: the container sees only its content.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context as _, Result};

use crate::paths::{self, Root};
use crate::rootfs::Dir;

pub const PROFILE_NAME: &str = "system";
const LOCK_NAME: &str = "system.lock";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub number: u64,
    /// Where the generation link points (a store path).
    pub system: PathBuf,
    /// When the link was made (its mtime), as nix-env shows it.
    pub created: SystemTime,
    pub current: bool,
}

fn link_name(n: u64) -> String {
    format!("{PROFILE_NAME}-{n}-link")
}

/// `system-N-link` -> N.
pub fn parse_link_name(name: &str) -> Option<u64> {
    name.strip_prefix("system-")?
        .strip_suffix("-link")?
        .parse()
        .ok()
}

/// The profile directory of `name`, opened; `None` when it does not exist
/// (and `create` is false).
fn open_dir(root: &Root, name: &str, create: bool) -> Result<Option<Dir>> {
    let path = root.join(paths::profile_dir(name));
    if create {
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    } else {
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            _ => {}
        }
    }
    Dir::open_trusted(&path).map(Some)
}

/// An exclusive lock on a container's profile, compatible with Nix's own
/// (`system.lock`, flock), with the profile directory it protects. Released
/// on drop.
pub struct ProfileLock {
    _file: std::fs::File,
    dir: Dir,
}

pub fn lock(root: &Root, name: &str) -> Result<ProfileLock> {
    let dir = open_dir(root, name, true)?.expect("created");
    let (file, replaced) = dir.lock_file(LOCK_NAME, 0o644)?;
    let path = dir.path().join(LOCK_NAME);
    if let Some(kind) = replaced {
        log::warn!(
            "{} was {kind} (made inside container {name}, which can write its profile \
             directory); replaced it with a lock file without following or opening it",
            path.display()
        );
    }
    rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(ProfileLock { _file: file, dir })
}

/// All generations, oldest first. A missing profile has none.
pub fn generations(root: &Root, name: &str) -> Result<Vec<Generation>> {
    match open_dir(root, name, false)? {
        Some(dir) => generations_in(&dir),
        None => Ok(Vec::new()),
    }
}

/// The generations in an open profile directory: every `system-N-link` that
/// is a symlink (anything else under such a name is not a generation, and is
/// skipped with a warning).
fn generations_in(dir: &Dir) -> Result<Vec<Generation>> {
    let current = dir
        .read_link(PROFILE_NAME)
        .ok()
        .flatten()
        .and_then(|t| t.to_str().and_then(parse_link_name));
    let mut gens = Vec::new();
    for file in dir.names()? {
        let Some(number) = file.to_str().and_then(parse_link_name) else {
            continue;
        };
        let file = file.to_str().unwrap_or_default();
        let system = match dir.read_link(file) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                log::warn!("{e:#}: not a generation, skipped");
                continue;
            }
        };
        let created = dir.entry(file)?.map_or(SystemTime::UNIX_EPOCH, |m| m.mtime);
        gens.push(Generation {
            number,
            system,
            created,
            current: current == Some(number),
        });
    }
    gens.sort_by_key(|g| g.number);
    Ok(gens)
}

/// The current generation, if the profile exists.
pub fn current(root: &Root, name: &str) -> Result<Option<Generation>> {
    Ok(generations(root, name)?.into_iter().find(|g| g.current))
}

/// What [`set_system`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetResult {
    pub generation: u64,
    /// False when the profile already pointed at `system`.
    pub created: bool,
}

/// Make `system` the current generation: nothing when it already is, else a
/// new `system-N-link` (N = highest + 1) and `system` switched to it, each
/// step atomic. Takes the profile lock.
pub fn set_system(root: &Root, name: &str, system: &Path) -> Result<SetResult> {
    let lock = lock(root, name)?;
    let dir = &lock.dir;
    let gens = generations_in(dir)?;
    if let Some(cur) = gens.iter().find(|g| g.current) {
        if cur.system == system {
            return Ok(SetResult {
                generation: cur.number,
                created: false,
            });
        }
    }
    let number = gens.last().map_or(1, |g| g.number + 1);
    dir.symlink_atomic(&link_name(number), system)?;
    dir.symlink_atomic(PROFILE_NAME, Path::new(&link_name(number)))?;
    Ok(SetResult {
        generation: number,
        created: true,
    })
}

/// Undo a [`set_system`] that created generation `made` (because the
/// activation it was made for failed): when `made` is still the current
/// generation, point the profile back at `previous` (or remove the `system`
/// link when there was none) and delete `made`'s link, so the profile is
/// exactly as before. Returns false (and changes nothing) when someone else
/// switched the profile in the meantime. Takes the profile lock.
pub fn undo_set(root: &Root, name: &str, made: u64, previous: Option<u64>) -> Result<bool> {
    let lock = lock(root, name)?;
    let dir = &lock.dir;
    let gens = generations_in(dir)?;
    if gens.iter().find(|g| g.current).map(|g| g.number) != Some(made) {
        return Ok(false);
    }
    match previous {
        Some(p) => {
            dir.symlink_atomic(PROFILE_NAME, Path::new(&link_name(p)))?;
        }
        None => {
            dir.remove_entry(PROFILE_NAME)?;
        }
    }
    dir.remove_entry(&link_name(made))?;
    dir.sync()?;
    Ok(true)
}

/// Make an existing generation current (rollback). Returns its store path.
pub fn switch_generation(root: &Root, name: &str, number: u64) -> Result<PathBuf> {
    let lock = lock(root, name)?;
    let gens = generations_in(&lock.dir)?;
    let Some(g) = gens.iter().find(|g| g.number == number) else {
        let have: Vec<String> = gens.iter().map(|g| g.number.to_string()).collect();
        bail!(
            "container {name} has no generation {number} (generations: {})",
            if have.is_empty() {
                "none".into()
            } else {
                have.join(", ")
            }
        );
    };
    lock.dir
        .symlink_atomic(PROFILE_NAME, Path::new(&link_name(number)))?;
    Ok(g.system.clone())
}

/// The generation before the current one, for `rollback` without `--to`.
pub fn previous_generation(root: &Root, name: &str) -> Result<Option<Generation>> {
    let gens = generations(root, name)?;
    let Some(pos) = gens.iter().position(|g| g.current) else {
        return Ok(None);
    };
    Ok(pos.checked_sub(1).map(|p| gens[p].clone()))
}

/// Remove the whole profile (all generation links, the lock, the directory),
/// releasing its GC roots. Only our own names are removed (with `unlinkat`,
/// never following them); anything else in the directory stays and is
/// reported.
pub fn remove(root: &Root, name: &str) -> Result<()> {
    let Some(dir) = open_dir(root, name, false)? else {
        return Ok(());
    };
    // `system` first (a remove killed halfway leaves no dangling `system`),
    // then the generations, leftovers of a killed symlink_atomic, the lock.
    let mut names: Vec<String> = Vec::new();
    let mut others = Vec::new();
    for file in dir.names()? {
        let file = file.to_string_lossy().into_owned();
        let ours = file == PROFILE_NAME
            || file == LOCK_NAME
            || parse_link_name(&file).is_some()
            || is_temporary_link(&file);
        if ours {
            names.push(file);
        } else {
            others.push(file);
        }
    }
    names.sort_by_key(|n| (n != PROFILE_NAME, n.ends_with(".lock")));
    for n in &names {
        // Already gone: a concurrent remove got there first.
        dir.remove_if_exists(n, false)?;
    }
    if !others.is_empty() {
        bail!(
            "left {} in place: not a profile link ({})",
            dir.path().display(),
            others.join(", ")
        );
    }
    let parent = Dir::open_trusted(&root.profiles_dir())?;
    parent.remove_if_exists(name, true)?;
    Ok(())
}

/// A temporary link [`Dir::symlink_atomic`] makes for one of our names
/// (`.system.PID.N.tmp`, `.system-N-link.PID.N.tmp`), left by a killed process.
fn is_temporary_link(file: &str) -> bool {
    let Some(rest) = file.strip_prefix('.').and_then(|f| f.strip_suffix(".tmp")) else {
        return false;
    };
    let mut parts = rest.rsplitn(3, '.');
    let (Some(n), Some(pid), Some(base)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    n.parse::<u32>().is_ok()
        && pid.parse::<u32>().is_ok()
        && (base == PROFILE_NAME || parse_link_name(base).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{mkfifo, temp_root};

    /// The systems the tests switch between.
    const SYSTEMS: [&str; 3] = [
        "/nix/store/aaaa-system",
        "/nix/store/bbbb-system",
        "/nix/store/cccc-system",
    ];

    #[test]
    fn generations_follow_nix_env_layout() {
        let (_d, root) = temp_root();
        assert_eq!(generations(&root, "web").unwrap(), vec![]);
        let [a, b, _] = SYSTEMS.map(Path::new);
        assert_eq!(
            set_system(&root, "web", a).unwrap(),
            SetResult {
                generation: 1,
                created: true
            }
        );
        assert_eq!(
            set_system(&root, "web", a).unwrap(),
            SetResult {
                generation: 1,
                created: false
            },
            "same system: no new generation"
        );
        assert_eq!(set_system(&root, "web", b).unwrap().generation, 2);
        let dir = root.join(paths::profile_dir("web"));
        assert_eq!(
            std::fs::read_link(dir.join("system")).unwrap(),
            Path::new("system-2-link")
        );
        assert_eq!(std::fs::read_link(dir.join("system-1-link")).unwrap(), a);

        let prev = previous_generation(&root, "web").unwrap().unwrap();
        assert_eq!(prev.number, 1);
        assert_eq!(switch_generation(&root, "web", 1).unwrap(), a);
        assert_eq!(current(&root, "web").unwrap().unwrap().number, 1);
        // Going forward again from a rolled-back profile makes generation 3.
        assert_eq!(set_system(&root, "web", b).unwrap().generation, 3);
        let err = switch_generation(&root, "web", 9).unwrap_err().to_string();
        assert!(
            err.contains("no generation 9 (generations: 1, 2, 3)"),
            "{err}"
        );

        remove(&root, "web").unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn remove_clears_leftovers_of_a_killed_write_and_tolerates_a_race() {
        let (_d, root) = temp_root();
        set_system(&root, "web", Path::new(SYSTEMS[0])).unwrap();
        let dir = root.join(paths::profile_dir("web"));
        std::os::unix::fs::symlink("system-1-link", dir.join(".system.4242.0.tmp")).unwrap();
        std::os::unix::fs::symlink("/nix/store/b", dir.join(".system-2-link.4242.1.tmp")).unwrap();
        assert!(!is_temporary_link(".other.4242.0.tmp"));
        assert!(!is_temporary_link(".system.x.0.tmp"));
        remove(&root, "web").unwrap();
        assert!(!dir.exists());
        // Already gone (a concurrent remove won): not an error.
        remove(&root, "web").unwrap();
    }

    /// What a container that remounted its profile directory read-write can
    /// plant there: the host never follows or opens it.
    #[test]
    fn planted_entries_are_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path().join("root"));
        let host = d.path().join("host");
        std::fs::create_dir_all(&host).unwrap();
        let [a, b, _] = SYSTEMS.map(Path::new);
        set_system(&root, "web", a).unwrap();
        let dir = root.join(paths::profile_dir("web"));
        // system.lock -> a new host file (the /etc/nologin attack).
        std::fs::remove_file(dir.join("system.lock")).unwrap();
        std::os::unix::fs::symlink(host.join("nologin"), dir.join("system.lock")).unwrap();
        assert_eq!(set_system(&root, "web", b).unwrap().generation, 2);
        assert!(!host.join("nologin").exists());
        assert!(std::fs::symlink_metadata(dir.join("system.lock"))
            .unwrap()
            .is_file());
        // A FIFO does not block.
        std::fs::remove_file(dir.join("system.lock")).unwrap();
        mkfifo(&dir.join("system.lock"));
        assert_eq!(switch_generation(&root, "web", 1).unwrap(), a);
        // A generation name that is not a link is not a generation; a `system`
        // that is a directory link is replaced, not followed.
        std::fs::write(dir.join("system-7-link"), "").unwrap();
        std::fs::remove_file(dir.join("system")).unwrap();
        std::os::unix::fs::symlink(&host, dir.join("system")).unwrap();
        let gens = generations(&root, "web").unwrap();
        assert_eq!(gens.iter().map(|g| g.number).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(set_system(&root, "web", b).unwrap().generation, 3);
        assert_eq!(std::fs::read_dir(&host).unwrap().count(), 0);
        assert_eq!(current(&root, "web").unwrap().unwrap().number, 3);
        // remove unlinks our names (whatever they are), never following
        // them, and leaves anything else.
        std::os::unix::fs::symlink(&host, dir.join("planted")).unwrap();
        let err = remove(&root, "web").unwrap_err().to_string();
        assert!(err.contains("not a profile link (planted)"), "{err}");
        assert!(!dir.join("system-7-link").exists() && !dir.join("system").exists());
        assert!(host.exists());
        std::fs::remove_file(dir.join("planted")).unwrap();
        remove(&root, "web").unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn undo_set_restores_the_profile() {
        let (_d, root) = temp_root();
        let [a, b, c] = SYSTEMS.map(Path::new);
        // No previous generation: the profile disappears again.
        let made = set_system(&root, "web", a).unwrap();
        assert!(undo_set(&root, "web", made.generation, None).unwrap());
        assert_eq!(generations(&root, "web").unwrap(), vec![]);
        set_system(&root, "web", a).unwrap();
        let before = current(&root, "web").unwrap().unwrap().number;
        let made = set_system(&root, "web", b).unwrap();
        assert!(undo_set(&root, "web", made.generation, Some(before)).unwrap());
        let gens = generations(&root, "web").unwrap();
        assert_eq!(gens.len(), 1);
        assert!(gens[0].current && gens[0].system == a);
        // Someone switched in between: leave their choice alone.
        let made = set_system(&root, "web", b).unwrap();
        set_system(&root, "web", c).unwrap();
        assert!(!undo_set(&root, "web", made.generation, Some(before)).unwrap());
        assert_eq!(current(&root, "web").unwrap().unwrap().system, c);
    }
}
