//! Every absolute path the project uses, resolved under an injectable root
//! (`NIXOS_NSPAWN_ROOT`, default `/`) so that tests, benchmarks and users can run
//! any binary against a throwaway tree.

use std::path::{Path, PathBuf};

/// Environment variable that relocates every path below another root.
pub const ROOT_ENV: &str = "NIXOS_NSPAWN_ROOT";

pub const REGISTRY_DIR: &str = "/etc/nixos-nspawn/containers";
pub const ZONES_DIR: &str = "/etc/nixos-nspawn/zones";
pub const NSPAWN_DIR: &str = "/run/systemd/nspawn";
/// The admin's `.nspawn` files: one here replaces ours in [`NSPAWN_DIR`]
/// completely (nspawn reads the first it finds, `/etc` before `/run`).
pub const ETC_NSPAWN_DIR: &str = "/etc/systemd/nspawn";
pub const NETWORK_DIR: &str = "/run/systemd/network";
pub const APPLIED_DIR: &str = "/run/nixos-nspawn/applied";
/// nixos-nspawn's run-time state (applied records, the networkd record).
pub const STATE_DIR: &str = "/run/nixos-nspawn";
/// What networkd was last made to load ([`crate::networkd`]).
pub const NETWORKD_RECORD: &str = "/run/nixos-nspawn/networkd-loaded.json";
/// What the generator's output that systemd loaded was rendered from ([`crate::loaded`]).
pub const SYSTEMD_RECORD: &str = "/run/nixos-nspawn/systemd-loaded";
/// The generator output directory systemd gives the system manager's generators.
pub const GENERATOR_DIR: &str = "/run/systemd/generator";
pub const MACHINES_DIR: &str = "/var/lib/machines";
pub const PROFILES_DIR: &str = "/nix/var/nix/profiles/per-nspawn";
/// Where a container's own profile directory is mounted inside the container.
pub const CONTAINER_PROFILES_DIR: &str = "/nix/var/nix/profiles";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    root: PathBuf,
}

impl Default for Root {
    fn default() -> Self {
        Root {
            root: PathBuf::from("/"),
        }
    }
}

impl Root {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Root { root: root.into() }
    }

    /// The root named by `NIXOS_NSPAWN_ROOT`, or `/`. An empty value means `/`.
    pub fn from_env() -> Self {
        match std::env::var_os(ROOT_ENV) {
            Some(v) if !v.is_empty() => Root::new(PathBuf::from(v)),
            _ => Root::default(),
        }
    }

    pub fn is_host_root(&self) -> bool {
        self.root == Path::new("/")
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Resolve a logical absolute path (e.g. `/etc/nixos-nspawn`) under the root.
    pub fn join(&self, logical: impl AsRef<Path>) -> PathBuf {
        let logical = logical.as_ref();
        let rel = logical.strip_prefix("/").unwrap_or(logical);
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    pub fn registry_dir(&self) -> PathBuf {
        self.join(REGISTRY_DIR)
    }
    pub fn network_dir(&self) -> PathBuf {
        self.join(NETWORK_DIR)
    }
    pub fn machines_dir(&self) -> PathBuf {
        self.join(MACHINES_DIR)
    }
    pub fn profiles_dir(&self) -> PathBuf {
        self.join(PROFILES_DIR)
    }
}

/// Logical path of a container's registry file.
pub fn registry_file(name: &str) -> PathBuf {
    Path::new(REGISTRY_DIR).join(format!("{name}.json"))
}
/// Logical path of the store closure of a container's system, next to its
/// registry file (for `sharedNix = false`; see [`crate::registry::parse_closure`]).
pub fn closure_file(name: &str) -> PathBuf {
    Path::new(REGISTRY_DIR).join(format!("{name}.closure"))
}
/// Logical path of a zone file.
pub fn zone_file(zone: &str) -> PathBuf {
    Path::new(ZONES_DIR).join(format!("{zone}.json"))
}
/// Logical path of a container's applied-state record.
pub fn applied_file(name: &str) -> PathBuf {
    Path::new(APPLIED_DIR).join(format!("{name}.json"))
}
/// Logical path of a container's state directory (its rootfs).
pub fn machine_dir(name: &str) -> PathBuf {
    Path::new(MACHINES_DIR).join(name)
}
/// Logical path of a container's profile directory (holds `system`, `system-N-link`).
pub fn profile_dir(name: &str) -> PathBuf {
    Path::new(PROFILES_DIR).join(name)
}
/// Logical path of a container's profile link.
pub fn profile_link(name: &str) -> PathBuf {
    profile_dir(name).join("system")
}
/// The systemd unit of a container.
pub fn unit_name(name: &str) -> String {
    format!("systemd-nspawn@{name}.service")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_under_root() {
        let r = Root::new("/tmp/x");
        assert_eq!(
            r.registry_dir(),
            Path::new("/tmp/x/etc/nixos-nspawn/containers")
        );
        assert_eq!(r.join("/"), Path::new("/tmp/x"));
        let host = Root::default();
        assert!(host.is_host_root());
        assert_eq!(host.join(NSPAWN_DIR), Path::new("/run/systemd/nspawn"));
    }
}
