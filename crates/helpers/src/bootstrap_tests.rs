//! Bootstrap tests against a throwaway `NIXOS_NSPAWN_ROOT`, including the
//! hostile-rootfs suite: whatever the container's root planted, no file
//! outside the rootfs is read, created, truncated or chmod-ed.

use super::*;
use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, MetadataExt as _, PermissionsExt as _};
use std::time::Duration;

use nixos_nspawn_core::testing::mkfifo;

const SYSTEM: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-web";
const SYSTEM2: &str = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-web";

pub(crate) struct Fixture {
    pub dir: tempfile::TempDir,
    pub root: Root,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path().join("root"));
        let f = Fixture { dir, root };
        f.fake_system(SYSTEM);
        f.fake_system(SYSTEM2);
        f.write_entry(&Entry::new("web", SYSTEM));
        f
    }

    pub fn fake_system(&self, system: &str) {
        let p = self.root.join(system);
        std::fs::create_dir_all(p.join("bin")).unwrap();
        std::fs::write(p.join("init"), "#!/bin/sh\n").unwrap();
    }

    pub fn write_entry(&self, e: &Entry) {
        let p = self.root.join(paths::registry_file(&e.name));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, e.to_json()).unwrap();
    }

    pub fn rootfs(&self) -> PathBuf {
        self.root.join(paths::machine_dir("web"))
    }

    /// A directory outside the root, standing for the host's files.
    pub fn host(&self) -> PathBuf {
        let p = self.dir.path().join("host");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn run(&self) -> Result<Report, Failure> {
        bootstrap(&self.root, "web", &Tools::default())
    }
}

fn ok(r: Result<Report, Failure>) -> Report {
    match r {
        Ok(r) => r,
        Err(f) => panic!("bootstrap failed: {f:?}"),
    }
}

fn err(r: Result<Report, Failure>) -> String {
    match r {
        Ok(r) => panic!("bootstrap succeeded: {r:?}"),
        Err(Failure::Error(e)) => format!("{e:#}"),
        Err(f) => format!("{f:?}"),
    }
}

/// Everything observable about a tree, without following links: type,
/// mode, owner, link count, size, mtime (ns), link target, content.
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let extra = if ft.is_symlink() {
            format!("-> {}", std::fs::read_link(&p).unwrap().display())
        } else if ft.is_file() {
            format!("{:?}", std::fs::read(&p).unwrap())
        } else if ft.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            String::new()
        } else {
            String::new()
        };
        out.insert(
            p.clone(),
            format!(
                "{:o} {}:{} n{} s{} m{}.{} c{}.{} {extra}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.nlink(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec()
            ),
        );
    }
    out
}

/// Host files whose every property must survive any attack.
pub(crate) struct Sentinel {
    dir: PathBuf,
    before: BTreeMap<PathBuf, String>,
}

impl Sentinel {
    pub fn new(dir: &Path) -> Sentinel {
        std::fs::write(dir.join("secret"), "host secret\n").unwrap();
        std::fs::set_permissions(dir.join("secret"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        // Let mtimes be distinguishable from anything written later.
        std::thread::sleep(Duration::from_millis(5));
        Sentinel {
            dir: dir.to_path_buf(),
            before: snapshot(dir),
        }
    }

    pub fn assert_untouched(&self) {
        assert_eq!(
            snapshot(&self.dir),
            self.before,
            "a host file was created, changed or chmod-ed"
        );
    }

    /// Take the reference state again (after planting hard links, which
    /// change the host file's link count and ctime).
    pub fn rearm(&mut self) {
        self.before = snapshot(&self.dir);
    }
}

#[test]
fn fresh_bootstrap_makes_the_skeleton_profile_run_files_and_record() {
    let f = Fixture::new();
    let r = ok(f.run());
    assert!(r.changed());
    assert_eq!((r.generation, r.new_generation), (1, true));
    let rootfs = f.rootfs();
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&f.root.machines_dir()), 0o700);
    assert_eq!(mode(&rootfs), 0o755);
    for d in ["etc", "var", "usr"] {
        assert!(rootfs.join(d).is_dir());
        assert_eq!(mode(&rootfs.join(d)), 0o755);
    }
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/os-release")).unwrap(),
        OS_RELEASE
    );
    assert_eq!(mode(&rootfs.join("etc/os-release")), 0o644);
    assert_eq!(std::fs::read(rootfs.join("etc/machine-id")).unwrap(), b"");
    assert_eq!(mode(&rootfs.join("etc/machine-id")), 0o444);

    let cur = profile::current(&f.root, "web").unwrap().unwrap();
    assert_eq!((cur.number, cur.system.as_path()), (1, Path::new(SYSTEM)));
    let nspawn = std::fs::read_to_string(f.root.join(render::nspawn_path("web"))).unwrap();
    assert!(nspawn.contains("BindReadOnly=/nix/store\n"), "{nspawn}");
    assert!(f.root.join(render::veth_network_path("web")).exists());
    assert!(
        !r.networkd_reloaded,
        "never reloads the real networkd for a test root"
    );

    let a = applied::read(&f.root, "web").unwrap().unwrap();
    assert_eq!((a.generation, a.action.as_str()), (Some(1), "start"));
    assert_eq!(a.entry.system, SYSTEM);
}

#[test]
fn second_run_changes_nothing() {
    let f = Fixture::new();
    ok(f.run());
    let before = snapshot(f.root.path());
    std::thread::sleep(Duration::from_millis(10));
    let r = ok(f.run());
    assert!(!r.changed(), "{r:?}");
    assert_eq!(snapshot(f.root.path()), before);
}

#[test]
fn a_new_system_makes_a_new_generation_and_record() {
    let f = Fixture::new();
    ok(f.run());
    f.write_entry(&Entry::new("web", SYSTEM2));
    let r = ok(f.run());
    assert_eq!((r.generation, r.new_generation), (2, true));
    assert!(r.rootfs.is_empty());
    let a = applied::read(&f.root, "web").unwrap().unwrap();
    assert_eq!((a.generation, a.entry.system.as_str()), (Some(2), SYSTEM2));
    // Back to the first system: a third generation, as nix-env would.
    f.write_entry(&Entry::new("web", SYSTEM));
    assert_eq!(ok(f.run()).generation, 3);
}

#[test]
fn missing_or_invalid_entry_is_reported_and_nothing_is_made() {
    let f = Fixture::new();
    match bootstrap(&f.root, "db", &Tools::default()) {
        Err(Failure::Entry(errs)) => {
            assert_eq!(errs.len(), 1);
            let msg = errs[0].to_string();
            assert!(
                msg.starts_with("/etc/nixos-nspawn/containers/db.json: cannot be read"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    let p = f.root.join(paths::registry_file("web"));
    std::fs::write(
        &p,
        r#"{"version": 1, "name": "web", "system": "relative", "bogus": 1, "autoStart": 3}"#,
    )
    .unwrap();
    match f.run() {
        Err(Failure::Entry(errs)) => {
            let all: Vec<String> = errs.iter().map(ToString::to_string).collect();
            assert!(all.len() >= 3, "every problem is reported: {all:?}");
            assert!(all.iter().any(|m| m.contains("system")), "{all:?}");
            assert!(all.iter().any(|m| m.contains("bogus")), "{all:?}");
            assert!(all.iter().any(|m| m.contains("autoStart")), "{all:?}");
        }
        other => panic!("{other:?}"),
    }
    match bootstrap(&f.root, "..", &Tools::default()) {
        Err(Failure::Entry(errs)) => {
            assert!(errs[0].to_string().contains("not a valid container name"))
        }
        other => panic!("{other:?}"),
    }
    assert!(!f.root.machines_dir().exists(), "nothing made");
    assert!(profile::generations(&f.root, "web").unwrap().is_empty());
    assert!(applied::read(&f.root, "web").unwrap().is_none());
    let f2 = Failure::Entry(vec![]);
    assert_eq!(f2.exit_code(), 1);
}

#[test]
fn a_system_without_init_is_refused_before_anything_changes() {
    let f = Fixture::new();
    f.write_entry(&Entry::new(
        "web",
        "/nix/store/cccccccccccccccccccccccccccccccc-gone",
    ));
    let e = err(f.run());
    assert!(e.contains("has no init"), "{e}");
    assert!(!f.root.machines_dir().exists());
}

#[test]
fn bind_mount_sources_are_created_on_the_host() {
    let f = Fixture::new();
    let mut e = Entry::new("web", SYSTEM);
    e.bind_mounts = vec![
        registry::BindMount::parse("/srv/web/data:/var/www").unwrap(),
        registry::BindMount::parse("/srv/existing:/x:ro").unwrap(),
    ];
    f.write_entry(&e);
    let existing = f.root.join("/srv/existing");
    std::fs::create_dir_all(&existing).unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o711)).unwrap();
    let r = ok(f.run());
    assert_eq!(r.bind_sources, vec![f.root.join("/srv/web/data")]);
    assert!(f.root.join("/srv/web/data").is_dir());
    assert_eq!(
        std::fs::metadata(&existing).unwrap().mode() & 0o777,
        0o711,
        "existing source left alone"
    );
    assert!(ok(f.run()).bind_sources.is_empty());
}

/// A source below a directory a container can write: its links are never
/// followed when the host creates the source.
#[test]
fn attack_bind_source_under_a_planted_link() {
    let f = Fixture::new();
    let host = f.host();
    // What another container with a rw bind of /srv/shared planted there.
    std::fs::create_dir_all(f.root.join("/srv/shared")).unwrap();
    std::os::unix::fs::symlink(&host, f.root.join("/srv/shared/sub")).unwrap();
    let mut e = Entry::new("web", SYSTEM);
    e.bind_mounts = vec![registry::BindMount::parse("/srv/shared/sub/data:/data").unwrap()];
    f.write_entry(&e);
    let msg = err(f.run());
    assert!(
        msg.contains("/srv/shared/sub is a symbolic link")
            && msg.contains("never followed when creating a bind-mount source"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_dir(&host).unwrap().count(),
        0,
        "nothing created on the host"
    );
    // A dangling link (to a host path that does not exist yet) neither.
    std::fs::remove_file(f.root.join("/srv/shared/sub")).unwrap();
    std::os::unix::fs::symlink(host.join("new"), f.root.join("/srv/shared/sub")).unwrap();
    let msg = err(f.run());
    assert!(msg.contains("is a symbolic link"), "{msg}");
    assert!(!host.join("new").exists());
    // A file in the way.
    std::fs::remove_file(f.root.join("/srv/shared/sub")).unwrap();
    std::fs::write(f.root.join("/srv/shared/sub"), "").unwrap();
    let msg = err(f.run());
    assert!(msg.contains("is a regular file, not a directory"), "{msg}");
}

fn fake_nix_store(f: &Fixture, script: &str) -> Tools {
    let p = f.dir.path().join("nix-store");
    nixos_nspawn_core::testing::write_script(&p, format!("#!/bin/sh\n{script}\n"));
    Tools {
        nix_store: p,
        ..Tools::default()
    }
}

#[test]
fn without_shared_nix_only_the_closure_is_mounted() {
    let f = Fixture::new();
    let mut e = Entry::new("web", SYSTEM);
    e.shared_nix = false;
    f.write_entry(&e);
    let tools = fake_nix_store(
        &f,
        &format!(
            "[ \"$1 $2 $3\" = \"--query --requisites {SYSTEM}\" ] || exit 3\n\
             echo {SYSTEM}\necho /nix/store/dddddddddddddddddddddddddddddddd-glibc\n\
             echo /nix/store/dddddddddddddddddddddddddddddddd-glibc"
        ),
    );
    ok(bootstrap(&f.root, "web", &tools));
    let nspawn = std::fs::read_to_string(f.root.join(render::nspawn_path("web"))).unwrap();
    assert!(!nspawn.contains("BindReadOnly=/nix/store\n"), "{nspawn}");
    assert!(
        nspawn.contains(&format!("BindReadOnly={SYSTEM}\n")),
        "{nspawn}"
    );
    assert_eq!(
        nspawn
            .matches("dddddddddddddddddddddddddddddddd-glibc")
            .count(),
        1,
        "{nspawn}"
    );

    let failing = fake_nix_store(&f, "echo 'error: path is not valid' >&2; exit 1");
    let e = err(bootstrap(&f.root, "web", &failing));
    assert!(e.contains("path is not valid"), "{e}");
    let bad = fake_nix_store(&f, "echo 'not/absolute'");
    let e = err(bootstrap(&f.root, "web", &bad));
    assert!(e.contains("is not an absolute path"), "{e}");
    let other = fake_nix_store(&f, "echo /nix/store/dddddddddddddddddddddddddddddddd-glibc");
    let e = err(bootstrap(&f.root, "web", &other));
    assert!(e.contains("does not contain the system"), "{e}");
}

/// The closure written next to the entry (by the module or the CLI) is what
/// the bootstrap binds, without asking nix-store, so its `.nspawn` is the
/// generator's from the first start on; it records no closure of its own.
#[test]
fn the_registry_closure_is_used_from_the_first_start() {
    let f = Fixture::new();
    let mut e = Entry::new("web", SYSTEM);
    e.shared_nix = false;
    f.write_entry(&e);
    let glibc = "/nix/store/dddddddddddddddddddddddddddddddd-glibc";
    std::fs::write(
        f.root.join(paths::closure_file("web")),
        format!("{SYSTEM}\n{glibc}\n"),
    )
    .unwrap();
    let never = fake_nix_store(&f, "echo 'must not be asked' >&2; exit 1");
    ok(bootstrap(&f.root, "web", &never));
    let nspawn = std::fs::read_to_string(f.root.join(render::nspawn_path("web"))).unwrap();
    let closure = registry::load_closure(&f.root, "web", SYSTEM).unwrap();
    let assignment = nixos_nspawn_core::addressing::assign(
        &e,
        nixos_nspawn_core::addressing::load_host_network(&f.root)
            .as_ref()
            .map_err(|_| ()),
        &nixos_nspawn_core::addressing::Claims::of_registry(
            &f.root,
            nixos_nspawn_core::addressing::DEFAULT_IPV4_POOL,
        )
        .unwrap(),
    )
    .unwrap();
    let rendered = render::container_files_with_closure(
        &e,
        &render::Context::default(),
        Some(&closure),
        &assignment,
    )
    .unwrap();
    let generators = rendered
        .iter()
        .find_map(|file| match (&file.dest, &file.contents) {
            (render::Dest::Run(p), render::Contents::File(t))
                if *p == render::nspawn_path("web") =>
            {
                Some(t.clone())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(nspawn, generators);
    assert!(
        nspawn.contains(&format!("BindReadOnly={glibc}\n")),
        "{nspawn}"
    );
    assert!(!f.root.join("/run/nixos-nspawn/applied/closure").exists());
    // A closure of another system is not used: nix-store is asked.
    std::fs::write(
        f.root.join(paths::closure_file("web")),
        format!("{glibc}\n"),
    )
    .unwrap();
    let e = err(bootstrap(&f.root, "web", &never));
    assert!(e.contains("must not be asked"), "{e}");
}

#[test]
fn a_foreign_nspawn_file_is_not_overwritten() {
    let f = Fixture::new();
    let p = f.root.join(render::nspawn_path("web"));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, "[Exec]\nBoot=yes\n").unwrap();
    let e = err(f.run());
    assert!(e.contains("not written by nixos-nspawn"), "{e}");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "[Exec]\nBoot=yes\n");
}

#[test]
fn user_namespaced_trees_get_entries_owned_by_their_root() {
    let f = Fixture::new();
    let rootfs = f.rootfs();
    std::fs::create_dir_all(&rootfs).unwrap();
    if std::os::unix::fs::chown(&rootfs, Some(0x5e90000), Some(0x5e90000)).is_err() {
        eprintln!("skipped: chown needs root");
        return;
    }
    ok(f.run());
    for p in ["etc", "var", "usr", "etc/os-release", "etc/machine-id"] {
        let m = std::fs::symlink_metadata(rootfs.join(p)).unwrap();
        assert_eq!((m.uid(), m.gid()), (0x5e90000, 0x5e90000), "{p}");
    }
}

#[test]
fn existing_files_are_left_alone_whatever_their_mode() {
    let f = Fixture::new();
    let etc = f.rootfs().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("os-release"), "ID=custom\n").unwrap();
    std::fs::set_permissions(
        etc.join("os-release"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(etc.join("machine-id"), "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o700)).unwrap();
    let before = snapshot(&etc);
    std::thread::sleep(Duration::from_millis(5));
    ok(f.run());
    assert_eq!(snapshot(&etc), before);
}

// ---- The hostile-rootfs suite -------------------------------------------

/// Plant something with `plant(rootfs, host)` in a rootfs that already went
/// through one bootstrap (or none, with `fresh`), run the bootstrap, check
/// the host sentinel is untouched, and return the result.
fn attack(fresh: bool, plant: impl FnOnce(&Path, &Path)) -> (Fixture, Result<Report, Failure>) {
    let f = Fixture::new();
    if !fresh {
        ok(f.run());
    }
    let host = f.host();
    let mut sentinel = Sentinel::new(&host);
    let rootfs = f.rootfs();
    std::fs::create_dir_all(&rootfs).unwrap();
    plant(&rootfs, &host);
    sentinel.rearm();
    std::thread::sleep(Duration::from_millis(5));
    let r = run_with_timeout(&f);
    sentinel.assert_untouched();
    (f, r)
}

/// Run the bootstrap in a thread: a FIFO opened by mistake would block it.
fn run_with_timeout(f: &Fixture) -> Result<Report, Failure> {
    let root = f.root.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(bootstrap(&root, "web", &Tools::default()));
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("bootstrap blocked (opened a FIFO?)")
}

/// The type of what is at `path` itself (a link's own).
fn kind(path: &Path) -> std::fs::FileType {
    std::fs::symlink_metadata(path).unwrap().file_type()
}

/// What `make` makes at each of `names` in the rootfs's `etc`, instead of
/// what was there.
fn plant_in_etc(rootfs: &Path, names: &[&str], make: impl Fn(&Path)) {
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    for name in names {
        let p = rootfs.join("etc").join(name);
        replace(&p);
        make(&p);
    }
}

fn replace(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).unwrap(),
        Ok(_) => std::fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
}

#[test]
fn attack_symlink_to_host_file_at_os_release_and_machine_id() {
    for fresh in [true, false] {
        let (f, r) = attack(fresh, |rootfs, host| {
            plant_in_etc(rootfs, &["os-release", "machine-id"], |p| {
                symlink(host.join("secret"), p).unwrap()
            })
        });
        ok(r);
        // Symlinks are legitimate there (NixOS links etc/os-release): kept,
        // never followed.
        let etc = f.rootfs().join("etc");
        assert!(kind(&etc.join("machine-id")).is_symlink());
    }
}

#[test]
fn attack_dangling_symlink_to_a_new_host_file() {
    let (f, r) = attack(true, |rootfs, host| {
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        symlink(
            host.join("created-by-bootstrap"),
            rootfs.join("etc/machine-id"),
        )
        .unwrap();
        symlink(host.join("sub/also"), rootfs.join("etc/os-release")).unwrap();
    });
    ok(r);
    assert!(!f.host().join("created-by-bootstrap").exists());
    assert!(!f.host().join("sub/also").exists());
}

#[test]
fn attack_symlinked_etc_var_usr_directories() {
    for dir in ["etc", "var", "usr"] {
        for fresh in [true, false] {
            let (f, r) = attack(fresh, |rootfs, host| {
                replace(&rootfs.join(dir));
                symlink(host, rootfs.join(dir)).unwrap();
            });
            let e = err(r);
            assert!(
                e.contains(&format!("{dir} is a symbolic link")) && e.contains("never followed"),
                "{e}"
            );
            assert!(!f.host().join("os-release").exists());
            assert!(!f.host().join("machine-id").exists());
        }
    }
}

#[test]
fn attack_dot_dot_tricks() {
    // Relative links climbing out of the tree, at every level.
    let (_, r) = attack(true, |rootfs, _| {
        symlink("../../../../../../host", rootfs.join("etc")).unwrap();
    });
    assert!(err(r).contains("symbolic link"));
    let (_, r) = attack(true, |rootfs, _| {
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        symlink(
            "../../../../../../../host/secret",
            rootfs.join("etc/machine-id"),
        )
        .unwrap();
        symlink("..", rootfs.join("etc/os-release")).unwrap();
    });
    ok(r);
    // The rootfs itself replaced by a link to the host (the host owns
    // /var/lib/machines, but it is opened with O_NOFOLLOW all the same).
    let (_, r) = attack(true, |rootfs, host| {
        std::fs::remove_dir(rootfs).unwrap();
        symlink(host, rootfs).unwrap();
    });
    let e = err(r);
    assert!(e.contains("symbolic link"), "{e}");
    let (_, r) = attack(true, |rootfs, _| {
        std::fs::remove_dir(rootfs).unwrap();
        symlink("../../../../host", rootfs).unwrap();
    });
    assert!(err(r).contains("symbolic link"));
}

#[test]
fn attack_fifo_does_not_block_and_is_replaced() {
    for fresh in [true, false] {
        let (f, r) = attack(fresh, |rootfs, _| {
            plant_in_etc(rootfs, &["machine-id", "os-release"], mkfifo)
        });
        let r = ok(r);
        assert!(
            r.rootfs.iter().any(|l| l.contains("FIFO")),
            "{:?}",
            r.rootfs
        );
        let m = std::fs::symlink_metadata(f.rootfs().join("etc/machine-id")).unwrap();
        assert!(m.is_file() && m.len() == 0);
        assert_eq!(
            std::fs::read_to_string(f.rootfs().join("etc/os-release")).unwrap(),
            OS_RELEASE
        );
    }
}

#[test]
fn attack_hard_link_to_a_host_file() {
    for fresh in [true, false] {
        let (f, r) = attack(fresh, |rootfs, host| {
            plant_in_etc(rootfs, &["machine-id", "os-release"], |p| {
                std::fs::hard_link(host.join("secret"), p).unwrap()
            })
        });
        // The sentinel (content, mode 0600, mtime, ctime, 3 links) is
        // untouched: existing files are never opened, written or chmod-ed.
        ok(r);
        assert_eq!(
            std::fs::metadata(f.host().join("secret")).unwrap().nlink(),
            3
        );
    }
}

#[test]
fn attack_device_nodes_and_sockets_are_replaced_unopened() {
    let f = Fixture::new();
    ok(f.run());
    let etc = f.rootfs().join("etc");
    replace(&etc.join("os-release"));
    // /dev/null's numbers: opening it would be harmless, but it is not even
    // opened (no FIFO-like blocking, no device side effects).
    let dev = rustix::fs::mknodat(
        rustix::fs::CWD,
        etc.join("os-release"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    );
    if dev.is_err() {
        eprintln!("skipped the device part: mknod needs CAP_MKNOD");
        std::fs::write(etc.join("os-release"), "x").unwrap();
    }
    replace(&etc.join("machine-id"));
    let _listener = std::os::unix::net::UnixListener::bind(etc.join("machine-id")).unwrap();
    let r = ok(run_with_timeout(&f));
    assert!(
        r.rootfs.iter().any(|l| l.contains("socket")),
        "{:?}",
        r.rootfs
    );
    if dev.is_ok() {
        assert!(r.rootfs.iter().any(|l| l.contains("character device")));
        assert!(kind(&etc.join("os-release")).is_file());
    }
    assert!(kind(&etc.join("machine-id")).is_file());
}

#[test]
fn attack_wrong_types_are_refused_without_deleting_anything() {
    // A directory where a file belongs.
    let (f, r) = attack(true, |rootfs, _| {
        std::fs::create_dir_all(rootfs.join("etc/machine-id/keep")).unwrap();
    });
    assert!(err(r).contains("machine-id is a directory"));
    assert!(f.rootfs().join("etc/machine-id/keep").is_dir());
    // A file where a directory belongs.
    let (f, r) = attack(false, |rootfs, _| {
        replace(&rootfs.join("var"));
        std::fs::write(rootfs.join("var"), "data").unwrap();
    });
    assert!(err(r).contains("var is a regular file"));
    assert_eq!(std::fs::read(f.rootfs().join("var")).unwrap(), b"data");
    // A FIFO where a directory belongs: not opened either.
    let (_, r) = attack(true, |rootfs, _| mkfifo(&rootfs.join("etc")));
    assert!(err(r).contains("etc is a FIFO"));
}

/// A thread keeps swapping `etc/` (and `var/`) between a real directory and a
/// symlink to the host while the bootstrap runs again and again (with the
/// files removed each time, so it keeps trying to create them). Runs may
/// fail; the host must stay untouched and nothing may appear there.
#[test]
fn attack_race_swapping_directories_for_symlinks() {
    let f = Fixture::new();
    ok(f.run());
    let host = f.host();
    let sentinel = Sentinel::new(&host);
    let rootfs = f.rootfs();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for d in ["etc", "var"] {
        symlink(&host, rootfs.join(format!("{d}.link"))).unwrap();
    }
    // Atomic swaps (renameat2 RENAME_EXCHANGE): at every instant `etc` is
    // either the real directory or a symlink to the host.
    let swapper = {
        let (rootfs, stop) = (rootfs.clone(), stop.clone());
        std::thread::spawn(move || {
            let dir = std::fs::File::open(&rootfs).unwrap();
            let exchange = |d: &str| {
                rustix::fs::renameat_with(
                    &dir,
                    d,
                    &dir,
                    format!("{d}.link"),
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .unwrap()
            };
            let mut swaps = 0u64;
            let mut round = 0u8;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                round ^= 1;
                // Alternate a millisecond of furious swapping with a quiet
                // one, so that runs both collide and get through.
                if round == 0 {
                    std::thread::sleep(Duration::from_millis(3));
                    continue;
                }
                let until = std::time::Instant::now() + Duration::from_millis(1);
                while std::time::Instant::now() < until {
                    for d in ["etc", "var"] {
                        exchange(d);
                        std::thread::yield_now();
                        exchange(d);
                        swaps += 2;
                    }
                }
            }
            swaps
        })
    };
    let (mut oks, mut errs) = (0, 0);
    let start = std::time::Instant::now();
    // At least 300 runs and 300 ms, spread over both phases of the swapper.
    while oks + errs < 300 || start.elapsed() < Duration::from_millis(300) {
        let _ = std::fs::remove_file(rootfs.join("etc/machine-id"));
        let _ = std::fs::remove_file(rootfs.join("etc/os-release"));
        match prepare_rootfs(&f.root, "web") {
            Ok(_) => oks += 1,
            Err(e) => {
                let e = format!("{e:#}");
                // Any refusal is fine (what matters is the sentinel below);
                // which one depends on where the swap lands in resolution.
                assert!(
                    e.contains("symbolic link")
                        || e.contains("disappeared")
                        || e.contains("is not a directory"),
                    "{e}"
                );
                errs += 1
            }
        }
        std::thread::sleep(Duration::from_micros(200));
        if start.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    sentinel.assert_untouched();
    eprintln!("race: {oks} runs succeeded, {errs} refused, {swaps} swaps");
    assert!(swaps > 100, "{swaps} swaps");
    assert!(oks > 0 && errs > 0, "runs both got through and collided");
    // Afterwards a clean run repairs everything.
    ok(f.run());
}

#[test]
fn addresses_are_the_generators_including_collisions() {
    use nixos_nspawn_core::addressing::HOST_NETWORK_FILE;
    let f = Fixture::new();
    // In a /24 (64 blocks) "gamma" and "mu" derive the same block: "gamma"
    // keeps it, "mu" falls back to a pool address.
    std::fs::write(
        f.root.join(HOST_NETWORK_FILE),
        r#"{"version": 1, "ipv4Pool": "10.99.0.0/24"}"#,
    )
    .unwrap();
    for n in ["gamma", "mu"] {
        f.write_entry(&Entry::new(n, SYSTEM));
    }
    let (rendered, files) = bootstrap_writes_the_generators_ve_files(&f, &["gamma", "mu", "web"]);
    assert_eq!(rendered.errors.len(), 1, "{:?}", rendered.errors);
    assert!(rendered.errors[0].message.contains("\"gamma\" and \"mu\""));
    for (name, expected) in files {
        let fallback = expected.contains("Address=0.0.0.0/28");
        assert_eq!(fallback, name == "mu", "{name}:\n{expected}");
    }
}

/// A container whose network.host gives the host side one IPv4 address gets
/// its address in that subnet from the bootstrap as from the generator, even
/// while network.json is invalid (nothing else is derived then).
#[test]
fn host_subnet_addresses_need_no_host_settings() {
    use nixos_nspawn_core::addressing::HOST_NETWORK_FILE;
    let f = Fixture::new();
    std::fs::write(
        f.root.join(HOST_NETWORK_FILE),
        r#"{"version": 1, "ipv4Pool": 7}"#,
    )
    .unwrap();
    let mut e = Entry::new("ab", SYSTEM);
    e.network.host = Some(
        nixos_nspawn_core::settings::Settings::default()
            .single("Network", &[("Address", &["10.231.8.1/24"])]),
    );
    f.write_entry(&e);
    f.write_entry(&Entry::new("web", SYSTEM));
    let (_, files) = bootstrap_writes_the_generators_ve_files(&f, &["ab", "web"]);
    for (name, expected) in files {
        let derived = expected.contains("[DHCPServer]\nPoolOffset=215\nPoolSize=1\n");
        assert_eq!(derived, name == "ab", "{name}:\n{expected}");
        assert_eq!(expected.contains("Address=0.0.0.0/28"), name == "web");
    }
}

/// A networkctl that appends its arguments to a log next to it.
fn fake_networkctl(f: &Fixture) -> (Tools, PathBuf) {
    let p = f.dir.path().join("networkctl");
    let log = f.dir.path().join("networkctl.log");
    nixos_nspawn_core::testing::write_script(
        &p,
        format!("#!/bin/sh\necho \"$*\" >> {}\n", log.display()),
    );
    (
        Tools {
            networkctl: p,
            ..Tools::default()
        },
        log,
    )
}

/// The generator writes the networkd files at daemon-reload, before the
/// bootstrap runs: the bootstrap finds them unchanged, yet networkd has not
/// loaded them (issue 12: a container created or changed at run time kept
/// 80-container-ve.network or its old address). It must reload networkd
/// whenever our files differ from what networkd last loaded, and only then.
#[test]
fn reloads_networkd_for_files_the_generator_wrote() {
    let f = Fixture::new();
    let (tools, log) = fake_networkctl(&f);
    let calls = || std::fs::read_to_string(&log).unwrap_or_default();
    let generator_writes = |e: &Entry| {
        // network.host sets the address: the container's is derived in its
        // subnet, whatever the host's settings and claims.
        use nixos_nspawn_core::addressing::{assign, Assignment, Claims};
        let a = assign(e, Err(()), &Claims::default()).unwrap();
        assert!(matches!(a, Assignment::Static(_)), "{a:?}");
        let files = render::run_files(e, Store::Shared, &a).unwrap();
        output::sync_run_files(&f.root, &files, false).unwrap();
    };
    let with_address = |a: &str| {
        let text = format!(
            r#"{{"version": 1, "name": "web", "system": "{SYSTEM}", "network": {{"mode": "veth", "host": {{"Network": {{"Address": "{a}"}}}}}}}}"#
        );
        let p = f.root.join(paths::registry_file("web"));
        std::fs::write(&p, text).unwrap();
        registry::load_entry(&f.root, "web").unwrap()
    };
    let e = with_address("10.231.8.1/24");
    generator_writes(&e);
    let r = ok(bootstrap(&f.root, "web", &tools));
    assert!(
        r.run.written.is_empty(),
        "the generator wrote them: {:?}",
        r.run
    );
    assert!(r.networkd_reloaded);
    assert_eq!(calls(), "reload\n");
    // Started again, nothing changed: networkd is not bothered.
    let r = ok(bootstrap(&f.root, "web", &tools));
    assert!(!r.networkd_reloaded);
    assert_eq!(calls(), "reload\n");
    // network.host changed + daemon-reload (the generator rewrites the file).
    let e = with_address("10.231.9.1/24");
    generator_writes(&e);
    let r = ok(bootstrap(&f.root, "web", &tools));
    assert!(r.networkd_reloaded);
    assert_eq!(calls(), "reload\nreload\n");
    // A failing networkctl is a warning, and the next start tries again.
    generator_writes(&with_address("10.231.10.1/24"));
    let broken = Tools {
        networkctl: f.dir.path().join("no-such-networkctl"),
        ..Tools::default()
    };
    let r = ok(bootstrap(&f.root, "web", &broken));
    assert!(!r.networkd_reloaded);
    let r = ok(bootstrap(&f.root, "web", &tools));
    assert!(r.networkd_reloaded);
    assert_eq!(calls(), "reload\nreload\nreload\n");
}

/// Issue 12: a disk-full during the bootstrap left a 0-byte etc/os-release
/// that later runs kept. Writes are atomic now, and an empty one (left by an
/// older version) is replaced.
#[test]
fn an_empty_os_release_is_replaced() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.rootfs().join("etc")).unwrap();
    std::fs::write(f.rootfs().join("etc/os-release"), "").unwrap();
    let r = ok(f.run());
    assert!(
        r.rootfs.iter().any(|l| l.contains("replaced the empty")),
        "{:?}",
        r.rootfs
    );
    assert_eq!(
        std::fs::read_to_string(f.rootfs().join("etc/os-release")).unwrap(),
        OS_RELEASE
    );
    // A real one is left alone.
    std::fs::write(f.rootfs().join("etc/os-release"), "ID=nixos\n").unwrap();
    ok(f.run());
    assert_eq!(
        std::fs::read_to_string(f.rootfs().join("etc/os-release")).unwrap(),
        "ID=nixos\n"
    );
}

#[test]
fn a_full_disk_leaves_no_short_os_release() {
    let f = Fixture::new();
    let machines = f.root.join(paths::MACHINES_DIR);
    std::fs::create_dir_all(&machines).unwrap();
    let Some(_tmpfs) = nixos_nspawn_core::testing::Tmpfs::mount(&machines, "size=64k") else {
        return;
    };
    // Fill it up.
    let filler = machines.join("filler");
    {
        use std::io::Write as _;
        let mut w = std::fs::File::create(&filler).unwrap();
        let block = [0u8; 4096];
        while w.write_all(&block).is_ok() {}
    }
    let e = err(f.run());
    assert!(e.contains("os-release"), "{e}");
    let os = f.rootfs().join("etc/os-release");
    assert!(
        std::fs::symlink_metadata(&os).is_err(),
        "a failed write left {} ({:?} bytes)",
        os.display(),
        std::fs::metadata(&os).map(|m| m.len())
    );
    let names: Vec<_> = std::fs::read_dir(f.rootfs().join("etc"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.is_empty(), "left in etc/: {names:?}");
    // Room again: the next start writes it whole.
    std::fs::remove_file(&filler).unwrap();
    ok(f.run());
    assert_eq!(std::fs::read_to_string(&os).unwrap(), OS_RELEASE);
}

/// Issue 12: an admin's /etc/systemd/nspawn/NAME.nspawn replaces ours; the
/// bootstrap reports it (and logs the warning to the unit's journal).
#[test]
fn reports_an_nspawn_file_that_replaces_ours() {
    let f = Fixture::new();
    assert_eq!(ok(f.run()).nspawn_override, None);
    let etc = f.root.join(paths::ETC_NSPAWN_DIR);
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("web.nspawn"), "[Exec]\nBoot=yes\n").unwrap();
    assert_eq!(
        ok(f.run()).nspawn_override.as_deref(),
        Some(Path::new("/etc/systemd/nspawn/web.nspawn"))
    );
}

/// Each container's bootstrap writes the `ve-NAME` network file the
/// generator renders for the registry (with the host's network.json as it
/// is); returns the generator's result and each name with that file.
fn bootstrap_writes_the_generators_ve_files<'a>(
    f: &Fixture,
    names: &[&'a str],
) -> (render::Rendered, Vec<(&'a str, String)>) {
    let ctx = render::Context {
        host_network: nixos_nspawn_core::addressing::load_host_network(&f.root),
        ..render::Context::default()
    };
    let rendered = render::render_registry(&registry::load(&f.root), &ctx);
    let mut files = Vec::new();
    for &name in names {
        ok(bootstrap(&f.root, name, &Tools::default()));
        let path = render::veth_network_path(name);
        let expected = run_file(&rendered, &path);
        assert_eq!(
            std::fs::read_to_string(f.root.join(&path)).unwrap(),
            expected,
            "{name}"
        );
        files.push((name, expected));
    }
    (rendered, files)
}

/// The text the generator renders for `/run` file `path`.
fn run_file(rendered: &render::Rendered, path: &std::path::Path) -> String {
    use nixos_nspawn_core::render::{Contents, Dest};
    rendered
        .files
        .iter()
        .find_map(|file| match (&file.dest, &file.contents) {
            (Dest::Run(p), Contents::File(text)) if p == path => Some(text.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{} was not rendered", path.display()))
}
