//! Kernel limits that many containers run into, and what to do about them.
//!
//! Every container's systemd, logind, dbus-daemon, getty, … opens inotify
//! instances, and the kernel counts them per user: `fs.inotify.max_user_instances`
//! (128 by default) for all of root's processes together. A container without
//! a user namespace is root on the host; one *with* a user namespace is charged
//! too, because user-namespace counts (ucounts) are also charged to the
//! namespace's owner in the parent namespace, and nspawn's namespaces are owned
//! by root. So the budget is shared by the host's own root services and every
//! container, and at 128 a host runs out after about 15 minimal containers:
//! the rest fail at boot (networkd, logind, … cannot start; the unit times out).
//! Measured on systemd 252: a minimal guest (systemd, journald, logind,
//! dbus-daemon, getty, networkd) holds 7 instances and 14 watches; the test
//! host's own services 15 instances.
//!
//! [`check`] is pure: the container count and the limits in, findings with the
//! fix out. [`read`] reads the limits from `/proc/sys` (under the root, so a
//! test root has none and gets no findings). The project raises the instance
//! limit where it installs itself: the NixOS module (`boot.kernel.sysctl`) and
//! `dist/sysctl.d/60-nixos-nspawn.conf` for other distributions.

use crate::paths::Root;

pub const MAX_USER_INSTANCES: &str = "/proc/sys/fs/inotify/max_user_instances";
pub const MAX_USER_WATCHES: &str = "/proc/sys/fs/inotify/max_user_watches";

/// inotify instances one container needs (7 measured for a minimal guest; a
/// NixOS guest runs a few more services).
pub const INSTANCES_PER_CONTAINER: u64 = 8;
/// The host's own root services.
pub const HOST_INSTANCES: u64 = 32;
/// inotify watches one container needs (14 measured for a minimal guest; path
/// units and services that watch files take more).
pub const WATCHES_PER_CONTAINER: u64 = 128;
pub const HOST_WATCHES: u64 = 1024;
/// What the project installs (`dist/sysctl.d/60-nixos-nspawn.conf`, the NixOS
/// module): enough for about 1,000 containers.
pub const RECOMMENDED_INSTANCES: u64 = 8192;

/// The current limits; `None` where unknown (not readable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_user_instances: Option<u64>,
    pub max_user_watches: Option<u64>,
}

/// One limit that is too low for the containers registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The sysctl, e.g. `fs.inotify.max_user_instances`.
    pub sysctl: &'static str,
    pub current: u64,
    /// What the containers registered need, about.
    pub needed: u64,
    /// What to set it to.
    pub suggested: u64,
    pub message: String,
}

/// What `containers` registered containers need of `limits` (all of them
/// count: they may all run at once, and user namespaces do not give them a
/// budget of their own; `autostart` start together at boot).
pub fn check(containers: u64, autostart: u64, limits: Limits) -> Vec<Finding> {
    let mut out = Vec::new();
    if containers == 0 {
        return out;
    }
    let what = if autostart > 0 {
        format!("{containers} containers are registered ({autostart} start at boot)")
    } else {
        format!("{containers} containers are registered")
    };
    if let Some(current) = limits.max_user_instances {
        let needed = HOST_INSTANCES + INSTANCES_PER_CONTAINER * containers;
        if current < needed {
            let suggested = RECOMMENDED_INSTANCES.max(needed.next_power_of_two());
            out.push(Finding {
                sysctl: "fs.inotify.max_user_instances",
                current,
                needed,
                suggested,
                message: format!(
                    "fs.inotify.max_user_instances is {current}, but {what} and need about \
                     {needed} (about {INSTANCES_PER_CONTAINER} each, all charged to root, with or \
                     without user namespaces, plus the host's own services): containers beyond \
                     the limit fail to boot. Raise it: sysctl -w fs.inotify.max_user_instances={suggested}, \
                     and keep it with the package's sysctl.d/60-nixos-nspawn.conf (NixOS: \
                     boot.kernel.sysctl.\"fs.inotify.max_user_instances\")"
                ),
            });
        }
    }
    if let Some(current) = limits.max_user_watches {
        let needed = HOST_WATCHES + WATCHES_PER_CONTAINER * containers;
        if current < needed {
            let suggested = needed.next_power_of_two();
            out.push(Finding {
                sysctl: "fs.inotify.max_user_watches",
                current,
                needed,
                suggested,
                message: format!(
                    "fs.inotify.max_user_watches is {current}, but {what} and need about {needed} \
                     (about {WATCHES_PER_CONTAINER} each): raise it, e.g. sysctl -w \
                     fs.inotify.max_user_watches={suggested} and a sysctl.d file (NixOS: \
                     boot.kernel.sysctl.\"fs.inotify.max_user_watches\")"
                ),
            });
        }
    }
    out
}

/// Read the limits under `root` (a missing or unreadable file is unknown).
pub fn read(root: &Root) -> Limits {
    let get = |p: &str| {
        std::fs::read_to_string(root.join(p))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    };
    Limits {
        max_user_instances: get(MAX_USER_INSTANCES),
        max_user_watches: get(MAX_USER_WATCHES),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOCK: Limits = Limits {
        max_user_instances: Some(128),
        max_user_watches: Some(8192),
    };

    #[test]
    fn stock_limits_fit_a_few_containers_not_fifty() {
        assert_eq!(check(0, 0, STOCK), vec![]);
        assert_eq!(check(12, 12, STOCK), vec![]);
        let f = check(50, 50, STOCK);
        assert_eq!(f.len(), 1, "{f:?}");
        let f = &f[0];
        assert_eq!(f.sysctl, "fs.inotify.max_user_instances");
        assert_eq!((f.current, f.needed, f.suggested), (128, 432, 8192));
        assert!(f.message.starts_with(
            "fs.inotify.max_user_instances is 128, but 50 containers are registered (50 start at boot) and need about 432"
        ));
        assert!(f
            .message
            .contains("sysctl -w fs.inotify.max_user_instances=8192"));
    }

    #[test]
    fn what_the_project_installs_is_enough_for_a_thousand() {
        let installed = Limits {
            max_user_instances: Some(RECOMMENDED_INSTANCES),
            max_user_watches: Some(192_905),
        };
        assert_eq!(check(1000, 100, installed), vec![]);
        let f = check(2000, 0, installed);
        assert_eq!(f[0].suggested, 16384);
        assert!(f[0]
            .message
            .contains("2000 containers are registered and need"));
        assert_eq!(f[1].sysctl, "fs.inotify.max_user_watches");
    }

    #[test]
    fn unknown_limits_give_no_findings() {
        assert_eq!(check(500, 500, Limits::default()), vec![]);
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read(&Root::new(d.path())), Limits::default());
        std::fs::create_dir_all(d.path().join("proc/sys/fs/inotify")).unwrap();
        std::fs::write(
            d.path().join("proc/sys/fs/inotify/max_user_instances"),
            "128\n",
        )
        .unwrap();
        assert_eq!(
            read(&Root::new(d.path())),
            Limits {
                max_user_instances: Some(128),
                max_user_watches: None
            }
        );
    }
}
