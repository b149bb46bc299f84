//! The commands, one module each, and what they share: daemon-reload and the
//! activation of a changed entry (update, rollback, import).

use anyhow::{Context as _, Result};
use serde::Serialize;

use nixos_nspawn::plan::{self, Action};
use nixos_nspawn::registry::{Entry, Strategy};
use nixos_nspawn::{applied, networkd};

use crate::systemd::Verb;
use crate::Ctx;

pub mod addressing;
pub mod apply;
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

/// After a daemon-reload (the generator rewrote our networkd files): make
/// networkd load them when they changed ([`networkd::sync`], the one place
/// that decides). A failure is a warning: networkd may not run, and it reads
/// the files when it starts; the next container start tries again.
pub fn sync_networkd(ctx: &Ctx) {
    match networkd::sync(&ctx.root, &mut || ctx.sys.networkd_reload()) {
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
