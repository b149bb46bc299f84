//! The activation decision, as a pure function with table tests: given the
//! registry entry, the applied state and whether the container runs, what
//! `nixos-nspawn apply` does and why.

use crate::registry::{Entry, Strategy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Nothing,
    Start,
    Reload,
    Restart,
    Stop,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Nothing => "nothing",
            Action::Start => "start",
            Action::Reload => "reload",
            Action::Restart => "restart",
            Action::Stop => "stop",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    pub action: Action,
    /// Why, in words a person can act on.
    pub reason: String,
}

fn decision(action: Action, reason: impl Into<String>) -> Decision {
    Decision {
        action,
        reason: reason.into(),
    }
}

/// Fields of an entry that only affect the unit or the registry, not the
/// running container: changing them needs a daemon-reload, never a restart.
const UNIT_ONLY: &[&str] = &["autoStart", "declarative", "timeoutStartSec", "activation"];

/// The top-level fields that differ between two entries, in schema order.
/// `source` (how the CLI built the system) is not among them: a container
/// rebuilt from another source differs in `system` when it matters.
pub fn changed_fields(old: &Entry, new: &Entry) -> Vec<&'static str> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return vec!["(entry)"];
    };
    const FIELDS: &[&str] = &[
        "version",
        "name",
        "declarative",
        "system",
        "autoStart",
        "ephemeral",
        "userNamespacing",
        "timeoutStartSec",
        "systemCallFilter",
        "sharedNix",
        "mountDaemonSocket",
        "bindMounts",
        "forwardPorts",
        "credentials",
        "network",
        "activation",
        "extraNspawn",
        "extraService",
    ];
    FIELDS
        .iter()
        .copied()
        .filter(|f| a.get(*f) != b.get(*f))
        .collect()
}

/// Decide what to do with one container.
///
/// - `desired`: its registry entry (`None`: removed from the registry).
/// - `applied`: what it last started or reloaded with (`None`: no record).
/// - `running`: whether its unit is active (or activating/reloading).
pub fn decide(desired: Option<&Entry>, applied: Option<&Entry>, running: bool) -> Decision {
    let Some(desired) = desired else {
        return if running {
            decision(Action::Stop, "removed from the registry but still running")
        } else {
            decision(Action::Nothing, "removed from the registry and not running")
        };
    };
    if !running {
        return if desired.auto_start {
            decision(Action::Start, "not running and autoStart is on")
        } else {
            decision(Action::Nothing, "not running and autoStart is off")
        };
    }
    let strategy = desired.activation.strategy;
    let Some(applied) = applied else {
        return match strategy {
            Strategy::None => decision(
                Action::Nothing,
                "running without an applied record, but the strategy is none",
            ),
            _ => decision(
                Action::Restart,
                "running without an applied record (started outside nixos-nspawn)",
            ),
        };
    };
    let changed = changed_fields(applied, desired);
    let container_changes: Vec<&str> = changed
        .iter()
        .copied()
        .filter(|f| !UNIT_ONLY.contains(f))
        .collect();
    if container_changes.is_empty() {
        return if changed.is_empty() {
            decision(Action::Nothing, "up to date")
        } else {
            decision(
                Action::Nothing,
                format!(
                    "only {} changed (takes effect without touching the container)",
                    changed.join(", ")
                ),
            )
        };
    }
    let what = container_changes.join(", ");
    let only_system = container_changes == ["system"];
    if !desired.shared_nix && container_changes.contains(&"system") && strategy != Strategy::None {
        // Only the old closure is mounted: a reload cannot see the new system.
        return decision(
            Action::Restart,
            format!("{what} changed; sharedNix is off, so only a restart mounts the new closure"),
        );
    }
    match strategy {
        Strategy::None => decision(
            Action::Nothing,
            format!("{what} changed, but the strategy is none"),
        ),
        Strategy::Reload if only_system => decision(Action::Reload, "only system changed"),
        Strategy::Reload => decision(
            Action::Reload,
            format!("{what} changed; strategy reload (changes other than system take effect at the next restart)"),
        ),
        Strategy::Restart => decision(Action::Restart, format!("{what} changed; strategy restart")),
        Strategy::Dynamic if only_system => decision(Action::Reload, "only system changed"),
        Strategy::Dynamic => decision(Action::Restart, format!("{what} changed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{BindMount, Entry};

    fn entry(strategy: Strategy) -> Entry {
        let mut e = Entry::new("web", "/nix/store/aaaa-system");
        e.activation.strategy = strategy;
        e
    }

    fn with_system(mut e: Entry) -> Entry {
        e.system = "/nix/store/bbbb-system".into();
        e
    }

    fn closure(mut e: Entry) -> Entry {
        e.shared_nix = false;
        e
    }

    fn with_bind(mut e: Entry) -> Entry {
        e.bind_mounts
            .push(BindMount::parse("/srv:/srv:ro").unwrap());
        e
    }

    /// (what, desired, applied, running, expected action, expected reason)
    type Case = (
        &'static str,
        Option<Entry>,
        Option<Entry>,
        bool,
        Action,
        &'static str,
    );

    #[test]
    fn table() {
        use Action::*;
        use Strategy as S;
        let no_autostart = {
            let mut e = entry(S::Dynamic);
            e.auto_start = false;
            e
        };
        let timeout = {
            let mut e = entry(S::Dynamic);
            e.timeout_start_sec = "5min".into();
            e
        };
        let sourced = {
            let mut e = entry(S::Dynamic);
            e.source = Some(crate::registry::BuildSource {
                kind: crate::registry::SourceKind::Flake,
                value: "/srv/f#nixosContainers.x86_64-linux.web".into(),
                platform: None,
                nix_args: vec!["--impure".into()],
            });
            e
        };
        let cases: Vec<Case> = vec![
            ("removed, running", None, Some(entry(S::Dynamic)), true, Stop, "removed from the registry but still running"),
            ("removed, stopped", None, Some(entry(S::Dynamic)), false, Nothing, "removed from the registry and not running"),
            ("stopped, autostart", Some(entry(S::Dynamic)), None, false, Start, "not running and autoStart is on"),
            ("stopped, no autostart", Some(no_autostart), None, false, Nothing, "not running and autoStart is off"),
            ("unchanged", Some(entry(S::Dynamic)), Some(entry(S::Dynamic)), true, Nothing, "up to date"),
            ("dynamic, system", Some(with_system(entry(S::Dynamic))), Some(entry(S::Dynamic)), true, Reload, "only system changed"),
            ("dynamic, bind", Some(with_bind(entry(S::Dynamic))), Some(entry(S::Dynamic)), true, Restart, "bindMounts changed"),
            ("dynamic, both", Some(with_bind(with_system(entry(S::Dynamic)))), Some(entry(S::Dynamic)), true, Restart, "system, bindMounts changed"),
            ("reload, system", Some(with_system(entry(S::Reload))), Some(entry(S::Reload)), true, Reload, "only system changed"),
            ("reload, bind", Some(with_bind(entry(S::Reload))), Some(entry(S::Reload)), true, Reload, "bindMounts changed; strategy reload (changes other than system take effect at the next restart)"),
            ("restart, system", Some(with_system(entry(S::Restart))), Some(entry(S::Restart)), true, Restart, "system changed; strategy restart"),
            ("none, system", Some(with_system(entry(S::None))), Some(entry(S::None)), true, Nothing, "system changed, but the strategy is none"),
            ("closure, system", Some(closure(with_system(entry(S::Reload)))), Some(closure(entry(S::Reload))), true, Restart, "system changed; sharedNix is off, so only a restart mounts the new closure"),
            ("closure, none", Some(closure(with_system(entry(S::None)))), Some(closure(entry(S::None))), true, Nothing, "system changed, but the strategy is none"),
            ("no record", Some(entry(S::Dynamic)), None, true, Restart, "running without an applied record (started outside nixos-nspawn)"),
            ("no record, none", Some(entry(S::None)), None, true, Nothing, "running without an applied record, but the strategy is none"),
            ("unit only", Some(timeout), Some(entry(S::Dynamic)), true, Nothing, "only timeoutStartSec changed (takes effect without touching the container)"),
            ("strategy only", Some(entry(S::Restart)), Some(entry(S::Dynamic)), true, Nothing, "only activation changed (takes effect without touching the container)"),
            ("source only", Some(sourced), Some(entry(S::Dynamic)), true, Nothing, "up to date"),
        ];
        for (what, desired, applied, running, action, reason) in cases {
            let d = decide(desired.as_ref(), applied.as_ref(), running);
            assert_eq!(
                d,
                Decision {
                    action,
                    reason: reason.into()
                },
                "{what}"
            );
        }
    }
}
