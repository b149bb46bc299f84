//! Debian roots for test hosts of another systemd release, made with
//! `debootstrap` from Debian's package registry and cached.
//!
//! [`debian_root`]`("trixie", &[])` gives a minbase root with systemd,
//! systemd-container, networkd, dbus, iproute2, util-linux, curl, busybox and
//! Nix: everything a test host runs (the suite enters it with `nsenter` and
//! runs `systemctl`, `machinectl`, `networkctl`, `ip`, `busybox ping`, `curl`,
//! `nix-env` there; the guests bind the test host's `/usr`, so they run its
//! systemd too). A test host boots it like `/`: `-D ROOT --volatile=yes`, so
//! only its `/usr` is used (read-only) and the cached tree is never changed.
//!
//! The cache is `/var/cache/nixos-nspawn-tests/SUITE-HASH` (HASH: of the
//! sorted package list and the recipe version), made atomically: debootstrap
//! fills `.tmp-SUITE-HASH.PID` in the same directory, in a mount namespace of
//! its own (so the `/proc` it mounts in the target dies with it), and the tree
//! is renamed into place only when it is complete and checked. A killed run
//! leaves only a temp directory, which the next run (under the same lock)
//! deletes. Concurrent runs wait for each other on a `flock`, which
//! debootstrap inherits: a run killed while debootstrap works keeps the lock
//! held until debootstrap ends, so its temp directory is never swept while
//! it is still being written.
//!
//! The mirror is the one apt uses on this machine (`/etc/apt/sources.list`,
//! `/etc/apt/sources.list.d/*`: the first `…/debian` URI that is not the
//! security archive), else `http://deb.debian.org/debian`;
//! `NIXOS_NSPAWN_TEST_MIRROR` overrides it.

use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use crate::cmd;
use crate::host::secs;

/// Where the roots are cached.
pub const CACHE_DIR: &str = "/var/cache/nixos-nspawn-tests";

/// Bumped when the way a root is made changes (a different tree for the same
/// package list).
const RECIPE: &str = "1";

/// What every test host needs. `libdbi-perl`: debootstrap does not resolve
/// virtual packages, and nix-bin's libdbd-sqlite3-perl needs `perl-dbdabi-94`.
pub const BASE_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-container",
    "dbus",
    "iproute2",
    "util-linux",
    "curl",
    "busybox-static",
    "nix-bin",
    "libdbi-perl",
];

/// Files a usable root has (checked before it goes into the cache).
const REQUIRED: &[&str] = &[
    "usr/lib/os-release",
    "usr/lib/systemd/systemd",
    "usr/lib/systemd/systemd-networkd",
    "usr/lib/systemd/systemd-machined",
    "usr/bin/systemctl",
    "usr/bin/machinectl",
    "usr/bin/networkctl",
    "usr/bin/systemd-nspawn",
    "usr/bin/nsenter",
    "usr/bin/ip",
    "usr/bin/busybox",
    "usr/bin/curl",
    "usr/bin/nix-store",
    "usr/bin/nix-env",
];

/// Name of the file written into a finished root: the package list and the
/// systemd version.
pub const STAMP: &str = "nixos-nspawn-tests.stamp";

/// A cached Debian `suite` root (e.g. `"trixie"`, `"bookworm"`) with
/// [`BASE_PACKAGES`] and `extra_packages`, made with debootstrap when it is not
/// cached yet.
pub fn debian_root(suite: &str, extra_packages: &[&str]) -> Result<PathBuf> {
    if suite.is_empty()
        || !suite
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        bail!("{suite:?} is not a Debian suite name");
    }
    let packages = package_list(extra_packages)?;
    let key = format!(
        "{suite}-{:016x}",
        fnv1a(&format!("{RECIPE}\n{}", packages.join(",")))
    );
    let cache = Path::new(CACHE_DIR);
    std::fs::create_dir_all(cache).with_context(|| format!("creating {CACHE_DIR}"))?;
    let root = cache.join(&key);
    if is_complete(&root) {
        return Ok(root);
    }
    let lock_path = cache.join(format!(".lock-{key}"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    rustix::fs::flock(lock.as_fd(), rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("locking {}", lock_path.display()))?;
    // Inherited by debootstrap (and what it runs): if this process is killed,
    // the lock stays held until debootstrap is gone too, so the next run
    // never sweeps a temp directory that is still being written.
    rustix::io::fcntl_setfd(lock.as_fd(), rustix::io::FdFlags::empty())
        .with_context(|| format!("making the lock on {} inheritable", lock_path.display()))?;
    // Someone else may have made it while we waited.
    if is_complete(&root) {
        return Ok(root);
    }
    sweep_temp_dirs(cache, &key)?;
    if root.exists() {
        // There but not complete (should not happen: it is renamed complete).
        remove_tree(&root)?;
    }
    let tmp = cache.join(format!(".tmp-{key}.{}", std::process::id()));
    let mirror = mirror();
    println!(
        "making a Debian {suite} root with debootstrap from {mirror} (cached in {})",
        root.display()
    );
    let start = Instant::now();
    let made = build(suite, &packages, &mirror, &tmp);
    if let Err(e) = made {
        let _ = remove_tree(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &root)
        .with_context(|| format!("renaming {} to {}", tmp.display(), root.display()))?;
    println!(
        "made the Debian {suite} root in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    drop(lock);
    Ok(root)
}

/// The sorted, deduplicated package list, checked.
fn package_list(extra: &[&str]) -> Result<Vec<String>> {
    let mut v: Vec<String> = BASE_PACKAGES
        .iter()
        .chain(extra)
        .map(|p| p.to_string())
        .collect();
    for p in &v {
        if p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
        {
            bail!("{p:?} is not a Debian package name");
        }
    }
    v.sort();
    v.dedup();
    Ok(v)
}

/// FNV-1a, 64 bits: stable across Rust releases (unlike `DefaultHasher`).
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn is_complete(root: &Path) -> bool {
    root.join(STAMP).is_file()
}

/// Remove `.tmp-KEY.PID` directories of runs that were killed (their PID is
/// gone; we hold the lock, so no live run of this key is building).
fn sweep_temp_dirs(cache: &Path, key: &str) -> Result<()> {
    let prefix = format!(".tmp-{key}.");
    for e in std::fs::read_dir(cache).with_context(|| format!("listing {}", cache.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) {
            println!("removing {} (left by a killed run)", e.path().display());
            remove_tree(&e.path())?;
        }
    }
    Ok(())
}

/// `rm -rf --one-file-system`: never into a mount that survived somewhere.
fn remove_tree(p: &Path) -> Result<()> {
    cmd::run(
        &[
            "rm",
            "-rf",
            "--one-file-system",
            "--",
            p.to_str().context("path")?,
        ],
        secs(300),
    )?
    .ok()
    .with_context(|| format!("removing {}", p.display()))?;
    Ok(())
}

fn build(suite: &str, packages: &[String], mirror: &str, tmp: &Path) -> Result<()> {
    if cmd::run(&["sh", "-c", "command -v debootstrap"], secs(5))?.code != Some(0) {
        bail!("debootstrap is missing (install it: apt-get install debootstrap, or run scripts/setup)");
    }
    let include = format!("--include={}", packages.join(","));
    let tmp_s = tmp.to_str().context("temp path")?;
    // Its own mount namespace: whatever debootstrap mounts in the target goes
    // away with it, even when it is killed.
    let out = cmd::run(
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "debootstrap",
            "--variant=minbase",
            &include,
            suite,
            tmp_s,
            mirror,
        ],
        secs(1200),
    )?;
    if !out.success() {
        let log =
            std::fs::read_to_string(tmp.join("debootstrap/debootstrap.log")).unwrap_or_default();
        bail!(
            "{}\n  debootstrap.log: {}",
            out.describe_failure(),
            cmd::indent(&cmd::tail(&log, 30), "    ")
        );
    }
    for f in REQUIRED {
        if std::fs::symlink_metadata(tmp.join(f)).is_err() {
            bail!("the new Debian {suite} root has no /{f}");
        }
    }
    // The downloaded packages are not needed any more.
    let archives = tmp.join("var/cache/apt/archives");
    if let Ok(rd) = std::fs::read_dir(&archives) {
        for e in rd.flatten() {
            if e.path().extension().is_some_and(|x| x == "deb") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let version = cmd::run(&["chroot", tmp_s, "systemctl", "--version"], secs(30))?
        .ok()
        .context("running systemctl --version in the new root")?;
    let version = version.lines().next().unwrap_or("").trim().to_string();
    std::fs::write(
        tmp.join(STAMP),
        format!(
            "suite={suite}\nmirror={mirror}\npackages={}\n{version}\n",
            packages.join(",")
        ),
    )?;
    Ok(())
}

/// The Debian mirror apt uses here (see the module documentation).
pub fn mirror() -> String {
    if let Ok(m) = std::env::var("NIXOS_NSPAWN_TEST_MIRROR") {
        if !m.is_empty() {
            return m;
        }
    }
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            if let Ok(t) = std::fs::read_to_string(&f) {
                texts.push(t);
            }
        }
    }
    texts
        .iter()
        .find_map(|t| mirror_in(t))
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_string())
}

/// The first Debian archive URI in an apt sources text (one-line `deb URI …`
/// or deb822 `URIs: URI …`).
fn mirror_in(text: &str) -> Option<String> {
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let uris: Vec<&str> = if let Some(rest) = line.strip_prefix("URIs:") {
            rest.split_whitespace().collect()
        } else if line.starts_with("deb ") {
            // deb [options] URI suite components
            let mut it = line.split_whitespace().skip(1).peekable();
            if it.peek().is_some_and(|t| t.starts_with('[')) {
                for t in it.by_ref() {
                    if t.ends_with(']') {
                        break;
                    }
                }
            }
            it.next().into_iter().collect()
        } else {
            continue;
        };
        for u in uris {
            let u = u.trim_end_matches('/');
            if (u.starts_with("http://") || u.starts_with("https://")) && u.ends_with("/debian") {
                return Some(u.to_string());
            }
        }
    }
    None
}

/// The systemd version line recorded in a root made by [`debian_root`].
/// The OS tree of a release (`host`: this machine's `/`; `debian13`,
/// `debian12`: a cached Debian tree) and its systemd version line: what the
/// suite's and the benches' `--systemd` values name.
pub fn os_root(label: &str) -> Result<(PathBuf, String)> {
    let root = match label {
        "host" => PathBuf::from("/"),
        "debian13" => debian_root("trixie", &[])?,
        "debian12" => debian_root("bookworm", &[])?,
        other => bail!("unknown release {other:?} (host, debian13, debian12)"),
    };
    let version = if label == "host" {
        cmd::run(&["systemctl", "--version"], secs(10))?
            .ok()?
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    } else {
        recorded_version(&root)
            .with_context(|| format!("{} records no systemd version", root.display()))?
    };
    Ok((root, version))
}

pub fn recorded_version(root: &Path) -> Option<String> {
    let s = std::fs::read_to_string(root.join(STAMP)).ok()?;
    s.lines()
        .find(|l| l.starts_with("systemd "))
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_mirror() {
        let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/2025\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n";
        assert_eq!(
            mirror_in(deb822).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let sec = "Types: deb\nURIs: http://deb.debian.org/debian-security\n";
        assert_eq!(mirror_in(sec), None);
        let one = "# deb http://x/debian\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main\n";
        assert_eq!(
            mirror_in(one).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_in("deb https://packages.cloud.google.com/apt cloud main"),
            None
        );
    }

    #[test]
    fn keys_are_stable_and_order_free() {
        assert_eq!(
            package_list(&["b", "a", "systemd"]).unwrap(),
            package_list(&["a", "b"]).unwrap()
        );
        assert!(package_list(&["bad name"]).is_err());
        // FNV-1a test vector.
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
