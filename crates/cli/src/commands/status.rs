//! `status NAME [--json]`: desired (registry) against applied generation, the
//! unit's state, the machine's leader and addresses, the last activation and
//! what `apply` would do now.

use anyhow::Result;
use serde::Serialize;

use nixos_nspawn_core::plan::{self, Decision};
use nixos_nspawn_core::registry::Entry;
use nixos_nspawn_core::{applied, paths, profile};

use crate::args::StatusArgs;
use crate::edit::{self, Found};
use crate::report::Printable;
use crate::systemd::UnitDetails;
use crate::text::utc;
use crate::{not_found, Ctx, EXIT_OK};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Desired {
    system: String,
    /// The profile generation holding that system (the current one when it does).
    generation: Option<u64>,
    /// The profile's current generation.
    current_generation: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AppliedView {
    generation: Option<u64>,
    system: String,
    /// How it was applied last: start (bootstrap) or reload (activate).
    action: String,
    time: u64,
    date: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    name: String,
    /// imperative, declarative, invalid, or removed (applied but not in the registry)
    kind: &'static str,
    file: String,
    desired: Option<Desired>,
    applied: Option<AppliedView>,
    /// running, starting, …, unknown (no systemd)
    state: String,
    unit: Option<UnitDetails>,
    leader: Option<u32>,
    addresses: Vec<String>,
    /// What apply would do now, and why.
    next: Option<Decision>,
    errors: Vec<String>,
    /// An admin's /etc/systemd/nspawn/NAME.nspawn that replaces ours.
    nspawn_override: Option<String>,
    /// What is off with this container's host side, each with its fix.
    problems: Vec<String>,
    /// What the system was built from (the entry's `source`), when recorded.
    source: Option<nixos_nspawn_core::registry::BuildSource>,
}

/// What is off with a container's unit, each with its fix (`nixos-nspawn
/// doctor` checks the whole host).
fn problems(name: &str, registered: bool, unit: Option<&UnitDetails>) -> Vec<String> {
    let mut out = Vec::new();
    let Some(u) = unit else {
        return out;
    };
    if registered && !u.has_generated_drop_in(name) {
        out.push(format!(
            "systemd has no drop-in from the nixos-nspawn generator for systemd-nspawn@{name}.service: \
             the generator is not installed, or systemd was not reloaded since the entry was written \
             (systemctl daemon-reload)"
        ));
    }
    if u.state.active_state == "failed" {
        out.push(format!(
            "the unit failed ({}): journalctl -b -u systemd-nspawn@{name}.service says why",
            u.result.as_deref().unwrap_or("no result")
        ));
    }
    out
}

/// Everything `status` shows about `name`, from the registry, the profile,
/// the applied record and systemd.
fn gather(ctx: &Ctx, name: &str) -> Result<Status> {
    let name = name.to_owned();
    let found = edit::find(&ctx.root, &name)?;
    let applied = match applied::read(&ctx.root, &name) {
        Ok(a) => a,
        Err(e) => {
            log::warn!("ignoring the applied state of {name}: {e:#}");
            None
        }
    };
    let (kind, entry, errors): (&str, Option<Entry>, Vec<String>) = match found {
        Found::Missing if applied.is_none() => {
            return Err(not_found(format!("there is no container {name}")))
        }
        Found::Missing => ("removed", None, Vec::new()),
        Found::Imperative(e) => ("imperative", Some(e), Vec::new()),
        Found::Declarative { entry, .. } => ("declarative", entry, Vec::new()),
        Found::Invalid(errs) => (
            "invalid",
            None,
            errs.iter().map(ToString::to_string).collect(),
        ),
    };
    // The host's limits and this container's derived addresses.
    let reg = nixos_nspawn_core::registry::load(&ctx.root);
    for w in super::host_warnings(&ctx.root, &reg, 0, Some(&name)) {
        log::warn!("{w}");
    }
    let gens = profile::generations(&ctx.root, &name).unwrap_or_default();
    let current_generation = gens.iter().find(|g| g.current).map(|g| g.number);
    let desired = entry.as_ref().map(|e| Desired {
        system: e.system.clone(),
        generation: gens
            .iter()
            .filter(|g| g.system.as_os_str() == e.system.as_str())
            .max_by_key(|g| (g.current, g.number))
            .map(|g| g.number),
        current_generation,
    });
    let unit = ctx.ask_systemd(&format!("about {name}"), |sys| sys.unit_details(&name));
    let running = unit.as_ref().is_some_and(|u| u.state.is_running());
    let leader = if running { ctx.sys.leader(&name) } else { None };
    let addresses = if running {
        ctx.sys.addresses(&name)
    } else {
        Vec::new()
    };
    let next = (kind != "invalid" && unit.is_some())
        .then(|| plan::decide(entry.as_ref(), applied.as_ref().map(|a| &a.entry), running));
    let problems = problems(&name, entry.is_some(), unit.as_ref());
    Ok(Status {
        name: name.clone(),
        kind,
        file: paths::registry_file(&name).display().to_string(),
        desired,
        applied: applied.as_ref().map(|a| AppliedView {
            generation: a.generation,
            system: a.entry.system.clone(),
            action: a.action.clone(),
            time: a.time,
            date: utc(a.time),
        }),
        state: unit
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), |u| u.state.word().to_owned()),
        unit,
        leader,
        addresses,
        next,
        errors,
        nspawn_override: nixos_nspawn_core::output::nspawn_override(&ctx.root, &name)
            .map(|p| p.display().to_string()),
        problems,
        source: entry.as_ref().and_then(|e| e.source.clone()),
    })
}

pub fn run(ctx: &mut Ctx, a: StatusArgs) -> Result<i32> {
    edit::check_name(&a.name)?;
    let status = gather(ctx, &a.name)?;
    if let Some(f) = &status.nspawn_override {
        log::warn!(
            "{}",
            nixos_nspawn_core::output::nspawn_override_warning(
                &status.name,
                std::path::Path::new(f)
            )
        );
    }
    ctx.print(a.json, &status)?;
    Ok(EXIT_OK)
}

impl Printable for Status {
    fn text(&self) -> String {
        let gen = |g: Option<u64>| g.map_or_else(|| "-".to_owned(), |g| g.to_string());
        let mut lines = vec![
            format!("{} ({})", self.name, self.kind),
            format!("  Registry:    {}", self.file),
        ];
        if let Some(d) = &self.desired {
            lines.push(format!(
                "  Desired:     generation {}  {}",
                gen(d.generation),
                d.system
            ));
            if d.current_generation != d.generation {
                lines.push(format!(
                    "  Profile:     generation {} is current",
                    gen(d.current_generation)
                ));
            }
        }
        if let Some(src) = &self.source {
            lines.push(format!(
                "  Source:      {}",
                crate::nixbuild::describe_record(src)
            ));
        }
        match &self.applied {
            Some(ap) => lines.push(format!(
                "  Applied:     generation {}  {} ({} at {} UTC)",
                gen(ap.generation),
                ap.system,
                ap.action,
                ap.date
            )),
            None => lines.push("  Applied:     - (not started by nixos-nspawn since boot)".into()),
        }
        match &self.unit {
            Some(u) => {
                let mut line = format!(
                    "  Unit:        systemd-nspawn@{}.service  {} ({})",
                    self.name, u.state.active_state, u.state.sub_state
                );
                if let Some(since) = &u.since {
                    line.push_str(&format!(" since {since}"));
                }
                lines.push(line);
                if let Some(r) = &u.result {
                    lines.push(format!("  Last result: {r}"));
                }
            }
            None => lines.push("  Unit:        unknown (systemd is not running here)".into()),
        }
        if let Some(l) = self.leader {
            lines.push(format!("  Leader:      {l}"));
        }
        if !self.addresses.is_empty() {
            lines.push(format!("  Addresses:   {}", self.addresses.join(", ")));
        }
        if let Some(n) = &self.next {
            lines.push(format!(
                "  Next apply:  {} — {}",
                n.action.as_str(),
                n.reason
            ));
        }
        if let Some(f) = &self.nspawn_override {
            lines.push(format!(
                "  Override:    {f} REPLACES the generated .nspawn file (see the warning)"
            ));
        }
        for e in &self.errors {
            lines.push(format!("  Error:       {e}"));
        }
        for p in &self.problems {
            lines.push(format!("  Problem:     {p}"));
        }
        if !self.problems.is_empty() || !self.errors.is_empty() {
            lines.push(
                "  (nixos-nspawn doctor checks the whole host and says how to fix it)".into(),
            );
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{exit_of, Env};
    use crate::EXIT_NOT_FOUND;
    use nixos_nspawn_core::applied::Applied;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn args(name: &str, json: bool) -> StatusArgs {
        StatusArgs {
            verbose: false,
            name: name.into(),
            json,
        }
    }

    /// What `status NAME [--json]` prints.
    fn status(env: &mut Env, name: &str, json: bool) -> String {
        run(&mut env.ctx(), args(name, json)).unwrap();
        env.output()
    }

    #[test]
    fn desired_against_applied() {
        let mut env = Env::new();
        let root = env.root();
        let old = Entry::new("web", "/nix/store/aaaa-a");
        let new = Entry::new("web", "/nix/store/bbbb-b");
        profile::set_system(&root, "web", Path::new(&old.system)).unwrap();
        profile::set_system(&root, "web", Path::new(&new.system)).unwrap();
        edit::write_entry(&root, &new).unwrap();
        applied::write(&root, &Applied::now(old, Some(1), "start")).unwrap();
        env.sys.set_running("web");
        env.sys.addresses = BTreeMap::from([("web".to_owned(), vec!["10.0.0.2".to_owned()])]);
        let out = status(&mut env, "web", false);
        assert!(
            out.contains("Desired:     generation 2  /nix/store/bbbb-b"),
            "{out}"
        );
        assert!(
            out.contains("Applied:     generation 1  /nix/store/aaaa-a (start at"),
            "{out}"
        );
        assert!(
            out.contains("active (running)") && out.contains("Leader:      4243"),
            "{out}"
        );
        assert!(out.contains("Addresses:   10.0.0.2"), "{out}");
        assert!(
            out.contains("Next apply:  reload — only system changed"),
            "{out}"
        );
        let v: serde_json::Value = serde_json::from_str(&status(&mut env, "web", true)).unwrap();
        assert_eq!(v["desired"]["generation"], 2);
        assert_eq!(v["applied"]["generation"], 1);
        assert_eq!(v["next"]["action"], "reload");
        assert_eq!(v["state"], "running");
        assert_eq!(v["problems"], serde_json::json!([]));
        assert_eq!(
            exit_of(run(&mut env.ctx(), args("x", false))),
            EXIT_NOT_FOUND
        );
    }

    /// Issue 12: an admin's /etc/systemd/nspawn/NAME.nspawn silently replaced
    /// the generated file; status says so (text and JSON).
    #[test]
    fn names_an_nspawn_file_that_replaces_ours() {
        let mut env = Env::new();
        let root = env.root();
        edit::write_entry(&root, &Entry::new("web", "/nix/store/aaaa-a")).unwrap();
        assert!(!status(&mut env, "web", false).contains("Override:"));
        let etc = root.join(paths::ETC_NSPAWN_DIR);
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("web.nspawn"), "[Network]\nPrivate=no\n").unwrap();
        let out = status(&mut env, "web", false);
        assert!(
            out.contains(
                "Override:    /etc/systemd/nspawn/web.nspawn REPLACES the generated .nspawn file"
            ),
            "{out}"
        );
        let v: serde_json::Value = serde_json::from_str(&status(&mut env, "web", true)).unwrap();
        assert_eq!(v["nspawnOverride"], "/etc/systemd/nspawn/web.nspawn");
    }

    #[test]
    fn a_unit_without_the_generators_drop_in_points_at_doctor() {
        let mut env = Env::new();
        let root = env.root();
        edit::write_entry(&root, &Entry::new("web", "/nix/store/aaaa-a")).unwrap();
        env.sys.no_generator = true;
        let out = status(&mut env, "web", false);
        assert!(
            out.contains("Problem:     systemd has no drop-in from the nixos-nspawn generator")
                && out.contains("nixos-nspawn doctor"),
            "{out}"
        );
        env.sys.no_generator = false;
        assert!(!status(&mut env, "web", false).contains("doctor"));
    }
}
