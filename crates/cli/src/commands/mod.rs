//! The commands, one module each, and what they share: daemon-reload and the
//! activation of a changed entry (update, rollback, import).

use anyhow::{Context as _, Result};
use serde::Serialize;

use nixos_nspawn_core::plan::{self, Action};
use nixos_nspawn_core::registry::{Entry, Strategy};
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

/// Warnings about the host for the containers registered (`names`, all of
/// the registry's file names; `autostart` of them start at boot): kernel
/// limits too low for them ([`nixos_nspawn_core::limits`]), a bad
/// `/etc/nixos-nspawn/network.json`, and derived addresses that collide (for
/// `only` that one container's, else all). `status` and `apply` log them.
pub fn host_warnings(
    root: &nixos_nspawn_core::Root,
    names: &[&str],
    autostart: u64,
    only: Option<&str>,
) -> Vec<String> {
    use nixos_nspawn_core::{addressing, limits};
    let mut out: Vec<String> = limits::check(names.len() as u64, autostart, limits::read(root))
        .into_iter()
        .map(|f| f.message)
        .collect();
    match addressing::load_host_network(root) {
        Ok(host) => out.extend(
            addressing::collisions(&host, names.iter().copied())
                .into_iter()
                .filter(|(later, message)| {
                    only.is_none_or(|n| n == later || message.contains(&format!("{n:?} and")))
                })
                .map(|(_, message)| message),
        ),
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

    #[test]
    fn host_warnings_name_the_limit_and_the_colliding_containers() {
        let (_d, root) = nixos_nspawn_core::testing::temp_root();
        let names: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        // A test root without /proc/sys: nothing to say.
        assert_eq!(host_warnings(&root, &names, 20, None), Vec::<String>::new());
        let proc = root.join("/proc/sys/fs/inotify");
        std::fs::create_dir_all(&proc).unwrap();
        std::fs::write(proc.join("max_user_instances"), "128\n").unwrap();
        let w = host_warnings(&root, &names, 20, None);
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
        let w = host_warnings(&root, &["mu", "alpha", "gamma"], 0, None);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("containers \"gamma\" and \"mu\" derive the same address block"));
        assert_eq!(
            host_warnings(&root, &["mu", "alpha", "gamma"], 0, Some("gamma")),
            w
        );
        assert_eq!(
            host_warnings(&root, &["mu", "alpha", "gamma"], 0, Some("mu")),
            w
        );
        assert!(host_warnings(&root, &["mu", "alpha", "gamma"], 0, Some("alpha")).is_empty());
        std::fs::write(
            root.join(nixos_nspawn_core::addressing::HOST_NETWORK_FILE),
            "{",
        )
        .unwrap();
        let w = host_warnings(&root, &["alpha"], 0, None);
        assert!(
            w[0].starts_with("/etc/nixos-nspawn/network.json: is not valid JSON"),
            "{w:?}"
        );
    }
}
