//! The commands, one module each, and what they share: daemon-reload and the
//! activation of a changed entry (update, rollback, import).

use anyhow::{Context as _, Result};
use serde::Serialize;

use nixos_nspawn_core::plan::{self, Action};
use nixos_nspawn_core::registry::{Entry, NetworkMode, Registry, Strategy};
use nixos_nspawn_core::{applied, networkd};

use crate::systemd::Verb;
use crate::Ctx;

pub mod addressing;
pub mod apply;
pub mod check;
pub mod classic;
pub mod create;
pub mod doctor;
pub mod generations;
pub mod list;
pub mod machine;
pub mod remove;
pub mod show;
pub mod status;
pub mod update;

/// `systemctl daemon-reload` so the generator sees the registry; without
/// systemd only a warning. Returns whether it reloaded.
pub fn daemon_reload(ctx: &Ctx) -> Result<bool> {
    if !ctx.sys.available() {
        log::warn!(
            "systemd is not running here: not reloading it (the change takes effect when it does)"
        );
        return Ok(false);
    }
    ctx.sys
        .daemon_reload()
        .context("systemctl daemon-reload failed (the registry was changed)")?;
    sync_networkd(ctx);
    Ok(true)
}

/// Warnings about the host for the containers registered (`reg`; `autostart`
/// of them start at boot): kernel limits too low for them
/// ([`nixos_nspawn_core::limits`]), a bad `/etc/nixos-nspawn/network.json`,
/// and derived addresses that collide: a veth container's block, a zone
/// member's address (the generator's messages; for `only` that one
/// container's, else all, and the zones' own problems). `status`, `apply`
/// and `doctor` log them.
pub fn host_warnings(
    root: &nixos_nspawn_core::Root,
    reg: &Registry,
    autostart: u64,
    only: Option<&str>,
) -> Vec<String> {
    use nixos_nspawn_core::{addressing, limits};
    let names = reg.claimant_names();
    let mut out: Vec<String> = limits::check(names.len() as u64, autostart, limits::read(root))
        .into_iter()
        .map(|f| f.message)
        .collect();
    // A collision concerns its later name and the one holding the address.
    let concerns = |later: &str, message: &str| {
        only.is_none_or(|n| n == later || message.contains(&format!("{n:?} and")))
    };
    match addressing::load_host_network(root) {
        Ok(host) => {
            // Every name claims a veth block (the generator's first-name
            // rule), but only a veth container (or a file that does not
            // parse) loses anything by not getting it.
            let not_veth: std::collections::BTreeSet<&str> = reg
                .containers
                .iter()
                .filter(|e| e.network.mode != NetworkMode::Veth)
                .map(|e| e.name.as_str())
                .collect();
            out.extend(
                addressing::collisions(&host, names.iter().copied())
                    .into_iter()
                    .filter(|(later, message)| {
                        !not_veth.contains(later.as_str()) && concerns(later, message)
                    })
                    .map(|(_, message)| message),
            );
            let members: Vec<&Entry> = reg
                .containers
                .iter()
                .filter(|e| e.network.mode == NetworkMode::Zone)
                .collect();
            let plan = addressing::ZonePlan::new(
                Ok(&host),
                reg.zones.values(),
                members.iter().map(|e| {
                    (
                        e.name.as_str(),
                        e.network.zone.as_deref().unwrap_or_default(),
                    )
                }),
            );
            out.extend(
                plan.errors()
                    .map(|e| e.to_string())
                    .filter(|_| only.is_none()),
            );
            for e in members {
                if let addressing::Assignment::Pool {
                    collision: Some(why),
                } = plan.member(e)
                {
                    if concerns(&e.name, &why) {
                        out.push(format!("{}: {why}", e.file().display()));
                    }
                }
            }
        }
        Err(errs) => out.extend(errs.iter().map(ToString::to_string)),
    }
    out
}

/// After a daemon-reload (the generator rewrote our networkd files): make
/// networkd load them when they changed ([`networkd::sync`], the one place
/// that decides). A failure is a warning: networkd may not run, and it reads
/// the files when it starts; the next container start tries again.
pub fn sync_networkd(ctx: &Ctx) {
    match networkd::sync(&ctx.root, &mut |delete| ctx.sys.networkd_reload(delete)) {
        Ok(s) if s.reloaded => log::info!("reloaded networkd ({})", s.changes.describe()),
        Ok(_) => {}
        Err(e) => log::warn!("{e:#}"),
    }
}

/// What activating a changed entry did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Activation {
    /// nothing, start, reload, restart
    pub action: Action,
    pub reason: String,
    /// Whether the container was running (and so was activated).
    pub running: bool,
}

/// Activate `entry` (just written) for a running container, as the plan says
/// (reload when only the system changed and the strategy allows it, restart
/// otherwise, nothing with strategy none). A stopped container is left alone:
/// it boots the new generation when it starts.
///
/// `again` (rollback): a running container that is up to date by its
/// applied record is reloaded anyway, unless its strategy is none: the
/// failed activation a rollback usually follows leaves the applied record
/// at the old system while the container may be partly switched to the new.
pub fn activate(ctx: &Ctx, entry: &Entry, again: bool) -> Result<Activation> {
    let name = &entry.name;
    if !ctx.sys.available() {
        return Ok(Activation {
            action: Action::Nothing,
            reason: "systemd is not running here; the new system is used when the container starts"
                .into(),
            running: false,
        });
    }
    let state = ctx
        .sys
        .unit_details(name)
        .with_context(|| format!("asking systemd about {name}"))?
        .state;
    if !state.is_running() {
        return Ok(Activation {
            action: Action::Nothing,
            reason: format!(
                "not running ({}); the new system is used when it starts",
                state.word()
            ),
            running: false,
        });
    }
    let applied = match applied::read(&ctx.root, name) {
        Ok(a) => a,
        Err(e) => {
            log::warn!("ignoring the applied state of {name}: {e:#}");
            None
        }
    };
    let mut d = plan::decide(Some(entry), applied.as_ref().map(|a| &a.entry), true);
    if again && d.action == Action::Nothing && entry.activation.strategy != Strategy::None {
        d = plan::Decision {
            action: Action::Reload,
            reason: "up to date by its applied record, activated again (a failed activation may have left it partly switched)".into(),
        };
    }
    // The caller prints the decision (once); -v shows it before it is carried out.
    log::debug!("{name}: {} — {}", d.action.as_str(), d.reason);
    let verb = match d.action {
        Action::Nothing => None,
        Action::Start => Some(Verb::Start),
        Action::Reload => Some(Verb::Reload),
        Action::Restart => Some(Verb::Restart),
        Action::Stop => Some(Verb::Stop),
    };
    if let Some(verb) = verb {
        ctx.sys.unit(verb, name).with_context(|| {
            format!(
                "activating {name} failed ({} of systemd-nspawn@{name}.service{}); the registry and profile \
                 keep the new system: fix it and update again, or go back with nixos-nspawn rollback {name}",
                verb.as_str(),
                if verb == Verb::Reload { ", which runs switch-to-configuration inside" } else { "" }
            )
        })?;
    }
    Ok(Activation {
        action: d.action,
        reason: d.reason,
        running: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry of these container names (veth entries) and, with `zone`
    /// (its subnet, member names), members of a zone `z`.
    fn registry(
        root: &nixos_nspawn_core::Root,
        names: &[&str],
        zone: Option<(&str, &[&str])>,
    ) -> Registry {
        let dir = root.join(nixos_nspawn_core::paths::REGISTRY_DIR);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for n in names {
            crate::edit::write_entry(root, &Entry::new(n, "/nix/store/x")).unwrap();
        }
        if let Some((subnet, members)) = zone {
            let zones =
                nixos_nspawn_core::testing::created_dir(root, nixos_nspawn_core::paths::ZONES_DIR);
            std::fs::write(
                zones.join("z.json"),
                format!(r#"{{"version": 1, "name": "z", "ipv4Subnet": "{subnet}"}}"#),
            )
            .unwrap();
            for n in members {
                let mut e = Entry::new(n, "/nix/store/x");
                e.network.mode = NetworkMode::Zone;
                e.network.zone = Some("z".into());
                crate::edit::write_entry(root, &e).unwrap();
            }
        }
        nixos_nspawn_core::registry::load(root)
    }

    #[test]
    fn host_warnings_name_the_limit_and_the_colliding_containers() {
        let (_d, root) = nixos_nspawn_core::testing::temp_root();
        let names: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let reg = registry(&root, &names, None);
        // A test root without /proc/sys: nothing to say.
        assert_eq!(host_warnings(&root, &reg, 20, None), Vec::<String>::new());
        let proc = root.join("/proc/sys/fs/inotify");
        std::fs::create_dir_all(&proc).unwrap();
        std::fs::write(proc.join("max_user_instances"), "128\n").unwrap();
        let w = host_warnings(&root, &reg, 20, None);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("fs.inotify.max_user_instances is 128, but 20 containers are registered (20 start at boot)"),
            "{w:?}"
        );
        std::fs::write(proc.join("max_user_instances"), "8192\n").unwrap();
        // "gamma" and "mu" collide in a /24.
        std::fs::create_dir_all(root.join("/etc/nixos-nspawn")).unwrap();
        std::fs::write(
            root.join(nixos_nspawn_core::addressing::HOST_NETWORK_FILE),
            r#"{"version": 1, "ipv4Pool": "10.99.0.0/24"}"#,
        )
        .unwrap();
        let reg = registry(&root, &["mu", "alpha", "gamma"], None);
        let w = host_warnings(&root, &reg, 0, None);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("containers \"gamma\" and \"mu\" derive the same address block"));
        assert_eq!(host_warnings(&root, &reg, 0, Some("gamma")), w);
        assert_eq!(host_warnings(&root, &reg, 0, Some("mu")), w);
        assert!(host_warnings(&root, &reg, 0, Some("alpha")).is_empty());

        // Zone members that derive one address in their zone's subnet (a
        // /26: 30 member addresses in its lower half, 40 members), named as
        // the generator names them; status of one member shows its own.
        let members: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
        let members: Vec<&str> = members.iter().map(String::as_str).collect();
        let reg = registry(&root, &[], Some(("10.77.0.0/26", &members)));
        assert!(reg.errors.is_empty(), "{:?}", reg.errors);
        // They claim veth blocks too (every name does), but lose nothing
        // when one is taken: no veth warning for them.
        assert!(
            !host_warnings(&root, &reg, 0, None)
                .iter()
                .any(|m| m.contains("derive the same address block")),
            "a veth collision reported for zone members"
        );
        let w = host_warnings(&root, &reg, 0, None);
        let zone: Vec<&String> = w
            .iter()
            .filter(|m| m.contains("of zone \"z\" derive the same address"))
            .collect();
        assert!(!zone.is_empty(), "{w:?}");
        assert!(
            zone[0].starts_with("/etc/nixos-nspawn/containers/m"),
            "{w:?}"
        );
        let later = zone[0]
            .strip_prefix("/etc/nixos-nspawn/containers/")
            .and_then(|s| s.split_once(".json"))
            .map(|(n, _)| n)
            .unwrap();
        assert!(host_warnings(&root, &reg, 0, Some(later)).contains(zone[0]));
        std::fs::write(
            root.join(nixos_nspawn_core::addressing::HOST_NETWORK_FILE),
            "{",
        )
        .unwrap();
        let w = host_warnings(&root, &registry(&root, &["alpha"], None), 0, None);
        assert!(
            w[0].starts_with("/etc/nixos-nspawn/network.json: is not valid JSON"),
            "{w:?}"
        );
    }
}
