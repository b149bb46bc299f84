//! The one reader of the registry: every program (generator, helpers, CLI)
//! reads registry files through [`RegistryDir`], and walks a registry
//! directory through [`Listing`].
//!
//! A directory is opened once (it may be reached through links the admin
//! made, e.g. to `/persist`) and listed once (the listing's file types say
//! which entries are links); each file is then read relative to it: `openat`
//! (no-follow for what the listing calls a regular file), `fstat`, one `read`,
//! `close`. A link (declarative entries are links into the store) or an entry
//! of unknown type gets a `statat` first, so a FIFO or a device is never
//! opened; every open is non-blocking and without a controlling terminal, and
//! the type is checked again on the descriptor, so one swapped in meanwhile
//! cannot block a reader either.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{parse_entry, parse_zone, Entry, Registry, MAX_FILE_SIZE};
use crate::error::EntryError;
use crate::names;
use crate::paths::{self, Root};

/// A registry directory held open (see the module documentation).
pub struct RegistryDir {
    fd: OwnedFd,
    logical: PathBuf,
}

/// One file of a [`RegistryDir`]: its name and what the listing said it is.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: OsString,
    pub kind: FileType,
}

impl Listed {
    /// The file's stem (the container or zone name it should hold).
    pub fn stem(&self) -> Option<&str> {
        Path::new(&self.name).file_stem().and_then(|s| s.to_str())
    }

    /// A file named without a listing (its type is looked up when it is read).
    pub fn named(name: &str) -> Listed {
        Listed {
            name: OsString::from(name),
            kind: FileType::Unknown,
        }
    }
}

impl RegistryDir {
    /// Open `logical_dir` under `root`; `None` when it does not exist (an
    /// empty registry). A dangling link on the way (to a file system not
    /// mounted yet) is an error, not an empty registry.
    pub fn open(root: &Root, logical_dir: &str) -> Result<Option<RegistryDir>, EntryError> {
        Self::open_for(root, logical_dir, "listed")
    }

    /// [`open`](Self::open); a problem says the directory cannot be `what`.
    fn open_for(
        root: &Root,
        logical_dir: &str,
        what: &str,
    ) -> Result<Option<RegistryDir>, EntryError> {
        let logical = PathBuf::from(logical_dir);
        match rustix::fs::open(
            root.join(logical_dir),
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(RegistryDir { fd, logical })),
            Err(Errno::NOENT) => match dangling_link_on_the_way(root, logical_dir) {
                Some(why) => Err(EntryError::file(
                    &logical,
                    format!("cannot be {what}: {why}"),
                )),
                None => Ok(None),
            },
            Err(e) => Err(EntryError::file(&logical, format!("cannot be {what}: {e}"))),
        }
    }

    /// Its `*.json` files, sorted by name. Names starting with `.` (temporary
    /// files of atomic writes) and names that are not UTF-8 are skipped.
    pub fn list(&self) -> Result<Vec<Listed>, EntryError> {
        let cannot = |e: Errno| EntryError::file(&self.logical, format!("cannot be listed: {e}"));
        let mut listing = rustix::fs::Dir::read_from(&self.fd).map_err(cannot)?;
        let mut out = Vec::new();
        while let Some(e) = listing.read() {
            let e = e.map_err(cannot)?;
            let name = e.file_name().to_bytes();
            if name.starts_with(b".")
                || !name.ends_with(b".json")
                || std::str::from_utf8(name).is_err()
            {
                continue;
            }
            out.push(Listed {
                name: OsStr::from_bytes(name).to_owned(),
                kind: e.file_type(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The logical path of a file of this directory.
    pub fn logical(&self, f: &Listed) -> PathBuf {
        self.logical.join(&f.name)
    }

    /// Read a file: a regular file (or a link to one) of at most
    /// [`MAX_FILE_SIZE`] bytes.
    pub fn read(&self, f: &Listed) -> Result<Vec<u8>, EntryError> {
        let logical = self.logical(f);
        let cannot = |e: Errno| EntryError::file(&logical, format!("cannot be read: {e}"));
        let not_regular = || EntryError::file(&logical, "is not a regular file");
        let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        if f.kind == FileType::RegularFile {
            // Whatever replaced it since the listing is not followed.
            flags |= OFlags::NOFOLLOW;
        } else {
            // Links and unknown types: what is there, before opening anything.
            let st = rustix::fs::statat(&self.fd, &f.name, AtFlags::empty()).map_err(cannot)?;
            if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                return Err(not_regular());
            }
        }
        let fd = match rustix::fs::openat(&self.fd, &f.name, flags, Mode::empty()) {
            Ok(fd) => fd,
            // A regular file swapped for a link since the listing.
            Err(Errno::LOOP) => return Err(not_regular()),
            Err(e) => return Err(cannot(e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(cannot)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(not_regular());
        }
        let size = st.st_size as u64;
        if size > MAX_FILE_SIZE {
            return Err(EntryError::file(
                &logical,
                format!("is {size} bytes; registry files have at most {MAX_FILE_SIZE}"),
            ));
        }
        // One read of size + 1 bytes: fewer than asked means the end.
        let mut buf = vec![0u8; size as usize + 1];
        let mut len = 0;
        loop {
            let n = rustix::io::read(&fd, &mut buf[len..]).map_err(cannot)?;
            len += n;
            if n == 0 || len < buf.len() {
                break;
            }
            if len as u64 > MAX_FILE_SIZE {
                // It grew after the size check.
                return Err(EntryError::file(
                    &logical,
                    format!(
                        "is more than {MAX_FILE_SIZE} bytes; registry files have at most {MAX_FILE_SIZE}"
                    ),
                ));
            }
            buf.resize((buf.len() * 2).min(MAX_FILE_SIZE as usize + 1), 0);
        }
        buf.truncate(len);
        Ok(buf)
    }

    /// Read and parse a file with `parse` ([`parse_entry`], [`parse_zone`]).
    pub fn load<T>(
        &self,
        f: &Listed,
        parse: fn(&Path, &[u8]) -> Result<T, Vec<EntryError>>,
    ) -> Result<T, Vec<EntryError>> {
        let bytes = self.read(f).map_err(|e| vec![e])?;
        parse(&self.logical(f), &bytes)
    }
}

impl RegistryDir {
    /// The closure of `system` recorded next to entry `name`
    /// ([`paths::closure_file`]), when there is one for exactly that system;
    /// anything else (missing, unreadable, malformed, another system's) is
    /// none: the bootstrap helper then computes the closure at start.
    pub fn closure(&self, name: &str, system: &str) -> Option<Vec<String>> {
        let bytes = self.read(&Listed::named(&format!("{name}.closure"))).ok()?;
        parse_closure(&bytes, system).ok()
    }
}

/// [`RegistryDir::closure`] of the registry under `root`.
pub fn load_closure(root: &Root, name: &str, system: &str) -> Option<Vec<String>> {
    RegistryDir::open(root, paths::REGISTRY_DIR)
        .ok()??
        .closure(name, system)
}

/// A store closure as `nix-store --query --requisites` prints it and nixpkgs'
/// `closureInfo` writes it (`store-paths`): one absolute path per line. It
/// must contain `system` (the closure of a system holds the system itself,
/// so a file left from another system is never taken for this one's), and
/// every path must be in `/nix/store` (each is bound into the container).
/// Sorted and without duplicates.
pub fn parse_closure(bytes: &[u8], system: &str) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "is not UTF-8".to_owned())?;
    let mut paths = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        super::check_abs_path(line)?;
        if !line.starts_with("/nix/store/") {
            return Err(format!("{line:?} is not in /nix/store"));
        }
        paths.push(line.to_owned());
    }
    paths.sort();
    paths.dedup();
    if paths.binary_search_by(|p| p.as_str().cmp(system)).is_err() {
        return Err(format!("does not contain the system {system}"));
    }
    Ok(paths)
}

/// The closure of `system` from `nix-store --query --requisites` (the
/// program `nix_store`), checked as [`parse_closure`] checks a file.
pub fn query_closure(nix_store: &Path, system: &str) -> anyhow::Result<Vec<String>> {
    let args = ["--query", "--requisites", system];
    let out = crate::hosttools::output(nix_store, &args)?;
    if !out.status.success() {
        return Err(crate::hosttools::failed(nix_store, &args, &out));
    }
    parse_closure(&out.stdout, system).map_err(|e| {
        anyhow::anyhow!(
            "the closure {} --query --requisites {system} printed is unusable: {e}",
            nix_store.display()
        )
    })
}

/// From this many files on, a [`Listing`] is walked by two threads.
pub const PARALLEL_FROM: usize = 256;

/// A registry directory and its `*.json` files: what the generator, the
/// CLI's `list` and [`load`] walk.
pub struct Listing {
    pub dir: RegistryDir,
    pub files: Vec<Listed>,
}

impl Listing {
    /// Open and list `logical_dir` under `root`; `None` when it does not exist.
    pub fn of(root: &Root, logical_dir: &str) -> Result<Option<Listing>, EntryError> {
        let Some(dir) = RegistryDir::open(root, logical_dir)? else {
            return Ok(None);
        };
        let files = dir.list()?;
        Ok(Some(Listing { dir, files }))
    }

    /// The file stems, in order (the names the files should hold).
    pub fn stems(&self) -> impl Iterator<Item = &str> {
        self.files.iter().filter_map(Listed::stem)
    }

    /// The walk: `first` over all the files on this thread or, from
    /// [`PARALLEL_FROM`] files on where there are two CPUs, `first` over the
    /// first half here and `second` over the second half on another thread.
    /// The results come in file order.
    pub fn walk<T: Send>(
        &self,
        first: impl FnOnce(&RegistryDir, &[Listed]) -> T,
        second: impl FnOnce(&RegistryDir, &[Listed]) -> T + Send,
    ) -> Vec<T> {
        let two = self.files.len() >= PARALLEL_FROM
            && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
        if !two {
            return vec![first(&self.dir, &self.files)];
        }
        let (a, b) = self.files.split_at(self.files.len() / 2);
        std::thread::scope(|scope| {
            let other = scope.spawn(|| second(&self.dir, b));
            let mine = first(&self.dir, a);
            let theirs = other
                .join()
                .expect("the second registry walker does not panic");
            vec![mine, theirs]
        })
    }

    /// `f` on every file, in file order ([`walk`](Self::walk)).
    pub fn map<T: Send>(&self, f: impl Fn(&RegistryDir, &Listed) -> T + Sync) -> Vec<T> {
        let part = |dir: &RegistryDir, files: &[Listed]| -> Vec<T> {
            files.iter().map(|file| f(dir, file)).collect()
        };
        self.walk(part, part).into_iter().flatten().collect()
    }
}

/// The first symbolic link on the way to `logical` (itself included) whose
/// target does not exist, described.
fn dangling_link_on_the_way(root: &Root, logical: &str) -> Option<String> {
    let mut dangling = None;
    for a in Path::new(logical).ancestors() {
        if a == Path::new("/") || a.as_os_str().is_empty() {
            break;
        }
        let p = root.join(a);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink())
            && std::fs::metadata(&p).is_err()
        {
            let target = std::fs::read_link(&p).unwrap_or_default();
            // The outermost one wins: it is the one to fix.
            dangling = Some(format!(
                "{} is a symbolic link to {}, which does not exist (a file system not mounted yet?)",
                a.display(),
                target.display()
            ));
        }
    }
    dangling
}

/// Whether `e` says a registry directory (containers or zones) as a whole
/// cannot be read: nothing can be concluded about any container then.
pub fn is_unreadable_dir(e: &EntryError) -> bool {
    e.field.is_none()
        && (e.file == Path::new(paths::REGISTRY_DIR) || e.file == Path::new(paths::ZONES_DIR))
}

/// Read and parse the file `logical` (under `root`) with `parse`, through its
/// directory's [`RegistryDir`].
pub fn load_file<T>(
    root: &Root,
    logical: &Path,
    parse: fn(&Path, &[u8]) -> Result<T, Vec<EntryError>>,
) -> Result<T, Vec<EntryError>> {
    let (Some(dir), Some(name)) = (
        logical.parent().and_then(Path::to_str),
        logical.file_name().and_then(OsStr::to_str),
    ) else {
        return Err(vec![EntryError::file(logical, "is not a file name")]);
    };
    let missing = || {
        vec![EntryError::file(
            logical,
            format!("cannot be read: {}", Errno::NOENT),
        )]
    };
    match RegistryDir::open_for(root, dir, "read") {
        Ok(Some(d)) => d.load(&Listed::named(name), parse),
        Ok(None) => Err(missing()),
        // The directory's problem, said of the file.
        Err(e) => Err(vec![EntryError::file(logical, e.message)]),
    }
}

/// Load one container entry by name.
pub fn load_entry(root: &Root, name: &str) -> Result<Entry, Vec<EntryError>> {
    let logical = paths::registry_file(name);
    if let Err(e) = names::check_machine_name(name) {
        return Err(vec![EntryError::file(
            &logical,
            format!("{name:?} is not a valid container name: it {e}"),
        )]);
    }
    load_file(root, &logical, parse_entry)
}

/// The names of the container files (their stems, valid entries or not), in
/// order: what claims a derived address ([`crate::addressing::Claims`]).
pub fn container_names(root: &Root) -> Result<Vec<String>, EntryError> {
    Ok(Listing::of(root, paths::REGISTRY_DIR)?
        .map(|l| l.stems().map(str::to_owned).collect())
        .unwrap_or_default())
}

/// Every file of `logical_dir` parsed with `parse`; problems go to `errors`.
fn load_dir<T: Send>(
    root: &Root,
    logical_dir: &str,
    parse: fn(&Path, &[u8]) -> Result<T, Vec<EntryError>>,
    errors: &mut Vec<EntryError>,
) -> Vec<T> {
    let listing = match Listing::of(root, logical_dir) {
        Ok(Some(l)) => l,
        Ok(None) => return Vec::new(),
        Err(e) => {
            errors.push(e);
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(listing.files.len());
    for r in listing.map(|dir, f| dir.load(f, parse)) {
        match r {
            Ok(t) => out.push(t),
            Err(errs) => errors.extend(errs),
        }
    }
    out
}

/// Load the whole registry. Never fails: problems are collected in `errors`.
pub fn load(root: &Root) -> Registry {
    let mut reg = Registry::default();
    for z in load_dir(root, paths::ZONES_DIR, parse_zone, &mut reg.errors) {
        reg.zones.insert(z.name.clone(), z);
    }
    reg.containers = load_dir(root, paths::REGISTRY_DIR, parse_entry, &mut reg.errors);
    let own_closure = || reg.containers.iter().filter(|e| !e.shared_nix);
    if own_closure().next().is_some() {
        if let Ok(Some(dir)) = RegistryDir::open(root, paths::REGISTRY_DIR) {
            let closures = own_closure()
                .filter_map(|e| Some((e.name.clone(), dir.closure(&e.name, &e.system)?)))
                .collect();
            reg.closures = closures;
        }
    }
    reg
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn mknod(path: &Path, kind: FileType, dev: u64) {
        rustix::fs::mknodat(rustix::fs::CWD, path, kind, Mode::from_raw_mode(0o644), dev).unwrap();
    }

    fn entry(name: &str) -> String {
        Entry::new(name, "/nix/store/x").to_json()
    }

    /// What the listing called a regular file is opened without following
    /// links: one swapped in afterwards is refused, not read.
    #[test]
    fn a_file_swapped_for_a_link_after_the_listing_is_not_followed() {
        let (d, root) = crate::testing::temp_root();
        let reg = crate::testing::created_dir(&root, paths::REGISTRY_DIR);
        std::fs::write(reg.join("web.json"), entry("web")).unwrap();
        let listing = Listing::of(&root, paths::REGISTRY_DIR).unwrap().unwrap();
        assert_eq!(listing.files[0].kind, FileType::RegularFile);
        let elsewhere = d.path().join("elsewhere.json");
        std::fs::write(&elsewhere, entry("web")).unwrap();
        std::fs::remove_file(reg.join("web.json")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, reg.join("web.json")).unwrap();
        let err = listing.dir.read(&listing.files[0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/nixos-nspawn/containers/web.json: is not a regular file"
        );
        // Listed afresh, it is a link, and links are followed (declarative entries).
        let listing = Listing::of(&root, paths::REGISTRY_DIR).unwrap().unwrap();
        assert_eq!(listing.files[0].kind, FileType::Symlink);
        assert!(listing.dir.load(&listing.files[0], parse_entry).is_ok());
    }

    /// A FIFO or a device in place of an entry, and a link to either, is
    /// refused at once, by name or from a listing: never opened, never waited on.
    #[test]
    fn fifos_and_devices_never_block() {
        let (_d, root) = crate::testing::temp_root();
        let reg = crate::testing::created_dir(&root, paths::REGISTRY_DIR);
        mknod(&reg.join("fifo.json"), FileType::Fifo, 0);
        std::os::unix::fs::symlink(reg.join("fifo.json"), reg.join("tofifo.json")).unwrap();
        let mut bad = vec!["fifo", "tofifo"];
        if rustix::process::geteuid().is_root() {
            // /dev/null's device number.
            mknod(
                &reg.join("dev.json"),
                FileType::CharacterDevice,
                rustix::fs::makedev(1, 3),
            );
            bad.push("dev");
        }
        std::fs::write(reg.join("ok.json"), entry("ok")).unwrap();
        let (tx, rx) = mpsc::channel();
        let names: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
        std::thread::spawn(move || {
            let by_name: Vec<String> = names
                .iter()
                .map(|n| load_entry(&root, n).unwrap_err()[0].to_string())
                .collect();
            let _ = tx.send((by_name, load(&root)));
        });
        let (by_name, reg) = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("reading a FIFO or device blocked");
        for (n, e) in bad.iter().zip(&by_name) {
            assert_eq!(
                e,
                &format!("/etc/nixos-nspawn/containers/{n}.json: is not a regular file")
            );
        }
        assert_eq!(reg.containers.len(), 1);
        let mut from_listing: Vec<String> = reg.errors.iter().map(ToString::to_string).collect();
        let mut by_name = by_name;
        from_listing.sort();
        by_name.sort();
        assert_eq!(from_listing, by_name);
    }

    /// The walk gives every file's result in file order, with two walkers
    /// from PARALLEL_FROM files on.
    #[test]
    fn the_walk_keeps_file_order() {
        let (_d, root) = crate::testing::temp_root();
        let reg = crate::testing::created_dir(&root, paths::ZONES_DIR);
        for i in 0..PARALLEL_FROM + 11 {
            std::fs::write(reg.join(format!("z{i:04}.json")), "").unwrap();
        }
        let listing = Listing::of(&root, paths::ZONES_DIR).unwrap().unwrap();
        let got = listing.map(|_, f| f.stem().unwrap().to_owned());
        let want: Vec<String> = (0..PARALLEL_FROM + 11)
            .map(|i| format!("z{i:04}"))
            .collect();
        assert_eq!(got, want);
        let parts = listing.walk(|_, f| f.len(), |_, f| f.len());
        assert_eq!(parts.iter().sum::<usize>(), want.len());
    }

    /// Single files by path: a missing directory or file says "cannot be read".
    #[test]
    fn load_file_by_path() {
        let (_d, root) = crate::testing::temp_root();
        let err = load_entry(&root, "web").unwrap_err()[0].to_string();
        assert_eq!(
            err,
            "/etc/nixos-nspawn/containers/web.json: cannot be read: No such file or directory (os error 2)"
        );
        std::fs::create_dir_all(root.join(paths::REGISTRY_DIR)).unwrap();
        assert_eq!(load_entry(&root, "web").unwrap_err()[0].to_string(), err);
        std::fs::write(root.join(paths::registry_file("web")), entry("web")).unwrap();
        assert_eq!(load_entry(&root, "web").unwrap().name, "web");
        assert!(load_entry(&root, "../web").is_err());
    }
}

#[cfg(test)]
mod closure_tests {
    use super::*;

    const SYSTEM: &str = "/nix/store/5k9wl3mb1vj7b6v2gk3n2fq6r3hx0d8a-nixos-system-web";
    const GLIBC: &str = "/nix/store/dddddddddddddddddddddddddddddddd-glibc";

    #[test]
    fn closure_files_are_used_only_for_their_system() {
        let (d, root) = crate::testing::temp_root();
        assert_eq!(load_closure(&root, "web", SYSTEM), None);
        crate::testing::created_dir(&root, paths::REGISTRY_DIR);
        assert_eq!(load_closure(&root, "web", SYSTEM), None);
        // closureInfo's store-paths: one a line, in any order.
        std::fs::write(
            root.join(paths::closure_file("web")),
            format!("{GLIBC}\n{SYSTEM}\n{GLIBC}\n"),
        )
        .unwrap();
        let want = Some(vec![SYSTEM.to_owned(), GLIBC.to_owned()]);
        assert_eq!(load_closure(&root, "web", SYSTEM), want);
        // Another system's closure (left from before an update) is none.
        assert_eq!(load_closure(&root, "web", "/nix/store/other-system"), None);
        // Through a link, as the module installs it.
        let store = d.path().join("store-paths");
        std::fs::rename(root.join(paths::closure_file("web")), &store).unwrap();
        std::os::unix::fs::symlink(&store, root.join(paths::closure_file("web"))).unwrap();
        assert_eq!(load_closure(&root, "web", SYSTEM), want);
        // Not an entry: the listing skips it.
        let listing = Listing::of(&root, paths::REGISTRY_DIR).unwrap().unwrap();
        assert!(listing.files.is_empty());
    }

    #[test]
    fn bad_closures_are_refused() {
        assert!(parse_closure(format!("{SYSTEM}\n").as_bytes(), SYSTEM).is_ok());
        let err = |text: &str| parse_closure(text.as_bytes(), SYSTEM).unwrap_err();
        assert_eq!(
            err(&format!("{GLIBC}\n")),
            format!("does not contain the system {SYSTEM}")
        );
        assert!(err(&format!("{SYSTEM}\nrelative\n")).contains("is not an absolute path"));
        assert!(err(&format!("{SYSTEM}\n/etc\n")).contains("is not in /nix/store"));
        assert!(err(&format!("{SYSTEM}\n/nix/store/../../etc\n")).contains("'..'"));
        assert_eq!(parse_closure(b"\xff", SYSTEM).unwrap_err(), "is not UTF-8");
    }
}
