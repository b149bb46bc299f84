//! `nixos-nspawn-bootstrap NAME`, run as `ExecStartPre=` of
//! `systemd-nspawn@NAME.service`: everything the container needs before
//! systemd-nspawn starts it, idempotently (a second run changes nothing).
//!
//! 1. The registry entry (missing or invalid: every problem reported, exit 1,
//!    the container does not start).
//! 2. The rootfs skeleton in `/var/lib/machines/NAME` ([`prepare_rootfs`]),
//!    safe against anything the container's root planted there.
//! 3. Missing bind-mount source directories on the host (0755, created one
//!    component at a time without following any link).
//! 4. The per-container profile points at the entry's `system` (a new
//!    generation only when it differs).
//! 5. The container's `/run` files (`.nspawn`, host-side `ve-` network) through
//!    the same function the generator uses, with the closure of `system` when
//!    `sharedNix` is off and, for a user-namespaced container, the store and
//!    profile binds id-mapped where their file systems allow it; then
//!    [`nixos_nspawn_core::networkd::sync`]: `networkctl reload` when our networkd
//!    files differ from what networkd last loaded (also when the generator, not
//!    this run, wrote them at a daemon-reload).
//! 6. The applied record `/run/nixos-nspawn/applied/NAME.json`, rewritten only
//!    when the entry or generation changed.

use std::path::{Path, PathBuf};

use nixos_nspawn_core::networkd;

use anyhow::{anyhow, bail, Context as _, Result};
use nixos_nspawn_core::addressing::{self, Assignment, Claims};
use nixos_nspawn_core::applied::{self, Applied};
use nixos_nspawn_core::output::{self, RunChanges};
use nixos_nspawn_core::render::{self, Store};
use nixos_nspawn_core::rootfs::{Dir, Kind, Owner};
use nixos_nspawn_core::{paths, profile, registry, Entry, Root};

use crate::{Failure, Tools};

pub const IDENT: &str = "nixos-nspawn-bootstrap";

/// Written to `etc/os-release` when it does not exist: enough for nspawn,
/// machined and switch-to-configuration's "is this NixOS" check until the
/// container's activation replaces it with its own.
pub const OS_RELEASE: &str = "\
# Placeholder written by nixos-nspawn-bootstrap; NixOS's activation replaces it.
NAME=NixOS
ID=nixos
PRETTY_NAME=\"NixOS (nixos-nspawn container)\"
";

/// Directories of the skeleton, in the rootfs, with their mode when created.
/// `usr/` because systemd-nspawn refuses a tree without it.
pub const SKELETON_DIRS: &[(&str, u32)] = &[("etc", 0o755), ("var", 0o755), ("usr", 0o755)];

/// What one run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub name: String,
    /// Entries of the rootfs created or replaced (real paths), with why.
    pub rootfs: Vec<String>,
    /// Bind-mount source directories created on the host.
    pub bind_sources: Vec<PathBuf>,
    /// The profile generation the container starts with.
    pub generation: u64,
    /// Whether that generation was made by this run.
    pub new_generation: bool,
    pub run: RunChanges,
    /// Whether networkd was asked to reload (network files changed).
    pub networkd_reloaded: bool,
    pub applied_written: bool,
    /// An admin's `/etc/systemd/nspawn/NAME.nspawn`, which nspawn reads
    /// instead of ours (warned about at every start).
    pub nspawn_override: Option<PathBuf>,
}

impl Report {
    /// Whether this run changed anything at all.
    pub fn changed(&self) -> bool {
        !self.rootfs.is_empty()
            || !self.bind_sources.is_empty()
            || self.new_generation
            || !self.run.written.is_empty()
            || self.applied_written
    }

    pub fn log(&self) {
        for what in &self.rootfs {
            log::info!("{what}");
        }
        for p in &self.bind_sources {
            log::info!("created bind-mount source directory {}", p.display());
        }
        for p in &self.run.written {
            log::info!("wrote {}", p.display());
        }
        if let Some(f) = &self.nspawn_override {
            log::warn!("{}", output::nspawn_override_warning(&self.name, f));
        }
        log::info!(
            "container {} ready to start: profile generation {}{}{}",
            self.name,
            self.generation,
            if self.new_generation { " (new)" } else { "" },
            if self.changed() {
                ""
            } else {
                ", nothing changed"
            }
        );
    }
}

/// The whole bootstrap of container `name` under `root`.
pub fn bootstrap(root: &Root, name: &str, tools: &Tools) -> Result<Report, Failure> {
    let entry = registry::load_entry(root, name).map_err(Failure::Entry)?;
    let mut report = Report {
        name: entry.name.clone(),
        ..Report::default()
    };
    check_system(root, &entry)?;
    report.rootfs = prepare_rootfs(root, &entry.name)
        .with_context(|| format!("preparing the root file system of container {name}"))?;
    report.bind_sources = create_bind_sources(root, &entry)?;

    let system = Path::new(&entry.system);
    let set = profile::set_system(root, name, system).with_context(|| {
        format!(
            "pointing the profile of container {name} at {}",
            entry.system
        )
    })?;
    report.generation = set.generation;
    report.new_generation = set.created;

    let closure;
    let store = if entry.shared_nix {
        Store::Shared
    } else {
        // The closure the module or the CLI wrote next to the entry (what the
        // generator rendered); an entry without one gets it from nix-store.
        closure = match registry::load_closure(root, name, &entry.system) {
            Some(c) => c,
            None => {
                log::info!(
                    "{} has no closure of {}; asking nix-store (the generator binds no store paths for {name} until the module or nixos-nspawn update writes one)",
                    paths::closure_file(name).display(),
                    entry.system
                );
                store_closure(tools, &entry.system)?
            }
        };
        Store::Closure(&closure)
    };
    // The same addresses the generator rendered: the host's settings and the
    // registry's file names decide them.
    let host_network = addressing::load_host_network(root).map_err(|errs| {
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        anyhow!("{}", msgs.join("; "))
    });
    let assignment = match &host_network {
        Ok(h) => {
            let claims = Claims::of_registry(root, h.ipv4_pool).map_err(|e| anyhow!("{e}"))?;
            addressing::assign(&entry, Ok(h), &claims)
        }
        Err(e) => {
            let a = addressing::assign(&entry, Err(()), &Claims::default());
            if let Ok(Assignment::Static(_)) = &a {
                // An address in network.host's subnet needs no host settings.
                log::warn!("{e:#}");
            } else {
                log::warn!("{e:#}; container {name} gets a pool address by DHCP");
            }
            a
        }
    }
    .map_err(|e| anyhow!("container {name}: {e}"))?;
    if let Assignment::Pool {
        collision: Some(why),
    } = &assignment
    {
        log::warn!("{why}");
    }
    let idmap = idmap_for(root, &entry);
    let files = render::run_files_idmapped(&entry, store, &assignment, idmap)
        .map_err(|e| anyhow!("rendering the /run files of container {name}: {e}"))?;
    report.run = output::sync_run_files(root, &files, false)
        .with_context(|| format!("writing the /run files of container {name}"))?;
    // Never the real networkd for a test root (a test passes its own networkctl).
    if root.is_host_root()
        || tools.networkctl != nixos_nspawn_core::hosttools::NETWORKCTL.default_path()
    {
        report.networkd_reloaded = reload_networkd(root, tools);
    }

    report.applied_written = record_applied(root, entry, set.generation)?;
    report.nspawn_override = output::nspawn_override(root, name);
    Ok(report)
}

/// Which of our binds a user-namespaced container gets id-mapped: those whose
/// file system supports it ([`crate::idmap`]). nspawn refuses to start a
/// container whose `idmap` bind cannot be mapped, so where the store's or the
/// profile's file system cannot, that bind goes without (its files then
/// belong to `nobody` inside) and a warning says so. When the question
/// cannot be asked at all, the binds stay id-mapped and nspawn decides.
fn idmap_for(root: &Root, entry: &Entry) -> render::IdMap {
    let mut idmap = render::IdMap::default();
    if !entry.user_namespacing {
        return idmap;
    }
    let probe = match crate::idmap::Probe::new() {
        Ok(p) => p,
        Err(e) => {
            log::warn!(
                "container {}: cannot check whether the store and profile can be id-mapped \
                 ({e:#}); binding them id-mapped",
                entry.name
            );
            return idmap;
        }
    };
    let store = root.join(&entry.system);
    let profile = root.join(paths::profile_dir(&entry.name));
    for (path, what, flag) in [
        (&store, "the Nix store", &mut idmap.store),
        (&profile, "its profile", &mut idmap.profiles),
    ] {
        match probe.supports(path) {
            Ok(true) => {}
            Ok(false) => {
                *flag = false;
                log::warn!(
                    "container {}: {} is on a file system without id-mapped mounts, which \
                     nspawn would refuse to start the container with; {what} is bound \
                     without idmap, so inside the user-namespaced container it belongs to \
                     nobody",
                    entry.name,
                    path.display()
                );
            }
            Err(e) => log::warn!(
                "container {}: cannot check whether {} can be id-mapped ({e:#}); binding it \
                 id-mapped",
                entry.name,
                path.display()
            ),
        }
    }
    idmap
}

/// Refuse a `system` without `init`: nspawn would fail later with a less
/// helpful message.
fn check_system(root: &Root, entry: &Entry) -> Result<()> {
    let init = root.join(&entry.system).join("init");
    match std::fs::metadata(&init) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => bail!("{} is not a file", init.display()),
        Err(e) => Err(e).with_context(|| {
            format!(
                "container {}: its system {} has no init (is it a NixOS system, still in the store?)",
                entry.name, entry.system
            )
        }),
    }
}

/// Make `/var/lib/machines/NAME` a tree systemd-nspawn can start the NixOS
/// `init` in: `etc/` (with `os-release` and an empty `machine-id`, which
/// systemd initialises), `var/`, `usr/`. Returns what was created or replaced.
///
/// The container's root owns this tree and may have planted anything in it.
/// What exists with the right type is left alone, unread and untouched
/// (whatever its mode, owner or link count); only missing entries are created
/// (`O_EXCL`, relative to directory fds, never through a link). A FIFO, socket
/// or device node where a file belongs is removed (`unlinkat`, never opened)
/// and replaced; a symlink or any non-directory where a directory belongs, and
/// a directory where a file belongs, is an error (nothing is deleted).
pub fn prepare_rootfs(root: &Root, name: &str) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let machines_path = root.machines_dir();
    if std::fs::symlink_metadata(&machines_path).is_err() {
        create_machines_dir(&machines_path)?;
        done.push(format!("created {} (mode 0700)", machines_path.display()));
    }
    let machines = Dir::open_trusted(&machines_path)?;
    let rootfs = match machines.create_dir(name, 0o755, Owner::default())? {
        Some(d) => {
            done.push(format!("created {}", d.path().display()));
            d
        }
        None => machines.open_root(name)?,
    };
    // New entries belong to whoever owns the tree (the container's root when
    // a user-namespaced container's tree was chowned by nspawn).
    let meta = rootfs.meta()?;
    let owner = Owner {
        uid: meta.uid,
        gid: meta.gid,
    };
    let mut dirs = Vec::new();
    for (dir, mode) in SKELETON_DIRS {
        dirs.push(ensure_dir(&rootfs, dir, *mode, owner, &mut done)?);
    }
    let etc = &dirs[0];
    ensure_file(
        etc,
        "os-release",
        OS_RELEASE.as_bytes(),
        0o644,
        owner,
        &mut done,
    )?;
    ensure_file(etc, "machine-id", b"", 0o444, owner, &mut done)?;
    Ok(done)
}

/// `/var/lib/machines` as systemd makes it: 0700 (parents 0755).
fn create_machines_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

fn ensure_dir(
    parent: &Dir,
    name: &str,
    mode: u32,
    owner: Owner,
    done: &mut Vec<String>,
) -> Result<Dir> {
    if let Some(d) = parent.create_dir(name, mode, owner)? {
        done.push(format!("created {}", d.path().display()));
        return Ok(d);
    }
    existing_dir(
        parent,
        name,
        Dir::open_dir,
        NotADir {
            link: "; a NixOS container needs a directory there: remove the link (it was made \
                   inside the container)",
            other: "; a NixOS container needs a directory there: move it away",
            gone: " (is something else changing the container's tree?)",
        },
    )
}

/// What to add to each error of [`existing_dir`].
struct NotADir {
    link: &'static str,
    other: &'static str,
    gone: &'static str,
}

/// The existing directory `name` of `parent`, opened with `open` (which
/// refuses it if it was swapped for a link in the meantime); anything else
/// there is an error naming it, with `say`'s words for its kind.
fn existing_dir(
    parent: &Dir,
    name: &str,
    open: fn(&Dir, &str) -> Result<Dir>,
    say: NotADir,
) -> Result<Dir> {
    let path = parent.path().join(name);
    match parent.entry(name)? {
        Some(m) if m.kind == Kind::Dir => open(parent, name),
        Some(m) if m.kind == Kind::Symlink => bail!(
            "{} is a symbolic link (to {}), which is never followed{}",
            path.display(),
            parent.link_target(name).unwrap_or_default().display(),
            say.link
        ),
        Some(m) => bail!("{} is {}{}", path.display(), m.kind, say.other),
        None => bail!(
            "{} disappeared while being created{}",
            path.display(),
            say.gone
        ),
    }
}

fn ensure_file(
    dir: &Dir,
    name: &str,
    contents: &[u8],
    mode: u32,
    owner: Owner,
    done: &mut Vec<String>,
) -> Result<()> {
    let path = dir.path().join(name);
    // Two rounds at most: a special file is removed once, then the name is
    // created; anything racing us beyond that is an error.
    for _ in 0..2 {
        if dir.create_file(name, contents, mode, owner)? {
            done.push(format!("created {}", path.display()));
            return Ok(());
        }
        match dir.entry(name)? {
            // Left alone: never opened, read, truncated or chmod-ed. A symlink
            // is normal (NixOS links etc/os-release to /etc/static/...; nspawn
            // resolves it inside the container's root), and so is a file with
            // any mode, owner or link count.
            // An empty os-release is never valid (no NAME, no ID): the
            // remains of a write that failed (disk full) before the writes
            // were atomic. Replaced, as a missing one would be.
            Some(m)
                if m.kind == Kind::File
                    && m.size == 0
                    && !contents.is_empty()
                    && name == "os-release" =>
            {
                dir.remove_entry(name)?;
                log::warn!(
                    "{} was empty (a failed earlier write?); replacing it",
                    path.display()
                );
                done.push(format!("replaced the empty {}", path.display()));
            }
            Some(m) if matches!(m.kind, Kind::File | Kind::Symlink) => return Ok(()),
            Some(m) if m.kind.is_special() => {
                dir.remove_entry(name)?;
                log::warn!(
                    "{} was {} (made inside the container); removed it without opening it",
                    path.display(),
                    m.kind
                );
                done.push(format!(
                    "replaced {} ({}) with a file",
                    path.display(),
                    m.kind
                ));
            }
            Some(m) => bail!(
                "{} is {}; a NixOS container needs a file there: move it away",
                path.display(),
                m.kind
            ),
            None => {}
        }
    }
    bail!(
        "{} keeps changing while being created (is something else changing the container's tree?)",
        path.display()
    )
}

/// Missing bind-mount source directories, created on the host, mode 0755,
/// one component at a time relative to directory descriptors, never through
/// a symlink: a source below a directory a container can write (another
/// container's rw bind, its tree — which the registry refuses) must not let
/// that container's links decide where the host creates directories. A
/// symlink on the way is an error naming it. Existing sources are not
/// touched (nspawn binds them as they are).
fn create_bind_sources(root: &Root, entry: &Entry) -> Result<Vec<PathBuf>> {
    let mut made = Vec::new();
    for b in &entry.bind_mounts {
        let path = root.join(&b.host);
        if std::fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        if create_source(root, &b.host)
            .with_context(|| format!("creating bind-mount source {}", path.display()))?
        {
            made.push(path);
        }
    }
    Ok(made)
}

/// `mkdir -p` of the logical absolute path `source` under `root` that
/// never follows a link. Returns whether it created the last component.
fn create_source(root: &Root, source: &str) -> Result<bool> {
    let mut dir = Dir::open_trusted(root.path())?;
    let mut created = false;
    for comp in source.split('/').filter(|c| !c.is_empty()) {
        created = false;
        let next = match dir.create_dir(comp, 0o755, Owner::default())? {
            Some(d) => {
                created = true;
                d
            }
            None => existing_dir(
                &dir,
                comp,
                Dir::open_root,
                NotADir {
                    link: " when creating a bind-mount source (a container may have made it); \
                           create the directory yourself or write the real path in bindMounts",
                    other: ", not a directory",
                    gone: "",
                },
            )?,
        };
        dir = next;
    }
    Ok(created)
}

/// The closure of `system` (`nix-store --query --requisites`), sorted: the
/// store paths a `sharedNix = false` container sees.
pub fn store_closure(tools: &Tools, system: &str) -> Result<Vec<String>> {
    registry::query_closure(&tools.nix_store, system)
}

/// Make networkd load our files when they changed since it last did
/// ([`networkd::sync`]), best effort: a failure is a warning (networkd may not
/// run, and the container can still start). Returns whether it reloaded.
fn reload_networkd(root: &Root, tools: &Tools) -> bool {
    match networkd::sync(root, &mut |delete| {
        networkd::networkctl_reload(&tools.networkctl, delete)
    }) {
        Ok(s) => {
            if s.reloaded {
                log::info!("reloaded networkd ({})", s.changes.describe());
            }
            s.reloaded
        }
        Err(e) => {
            log::warn!("{e:#}; the host side of the network may be unconfigured");
            false
        }
    }
}

/// Record what the container starts with. An identical record (same entry
/// and generation, action "start") is left as it is, so a second run changes
/// nothing; its `time` is when this configuration was first started.
fn record_applied(root: &Root, entry: Entry, generation: u64) -> Result<bool> {
    let name = entry.name.clone();
    if let Ok(Some(old)) = applied::read(root, &name) {
        if old.entry == entry && old.generation == Some(generation) && old.action == "start" {
            return Ok(false);
        }
    }
    applied::write(root, &Applied::now(entry, Some(generation), "start")).with_context(|| {
        format!(
            "recording the applied state in {}",
            paths::applied_file(&name).display()
        )
    })?;
    Ok(true)
}

#[cfg(test)]
#[path = "bootstrap_tests.rs"]
pub(crate) mod tests;
