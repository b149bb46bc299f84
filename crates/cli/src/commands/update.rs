//! `update NAME (--config|--flake|--system …) [--strategy S]` and
//! `rollback NAME [--to N] [--strategy S]`.
//!
//! Both switch an imperative container to another system: under the registry
//! lock the current entry is re-read (so concurrent edits are never lost),
//! switched to the new system ([`edit::switch_system`]: the system's own
//! settings, the user's changes kept), validated, the profile switched (a new
//! generation, or an existing one for rollback) and the entry written, as
//! steps of a [`Transaction`]: if the write fails the profile is put back. Then daemon-reload and activation
//! ([`super::activate`]): reload or restart when the container runs.

use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Serialize;

use nixos_nspawn_core::lock::lock_registry;
use nixos_nspawn_core::profile;
use nixos_nspawn_core::registry::{BuildSource, Entry, Strategy};

use super::{activate, daemon_reload, Activation};
use crate::args::{RollbackArgs, UpdateArgs};
use crate::edit;
use crate::nixbuild::{check_system, NixFlags, Source};
use crate::report::Printable;
use crate::txn::Transaction;
use crate::{not_found, usage, Ctx, EXIT_OK};

#[derive(Serialize)]
struct Switched<'a> {
    name: &'a str,
    generation: u64,
    previous: Option<u64>,
    system: &'a str,
    activation: &'a Activation,
}

impl Printable for Switched<'_> {
    fn text(&self) -> String {
        format!(
            "{}: generation {} ({}); {} — {}",
            self.name,
            self.generation,
            self.system,
            self.activation.action.as_str(),
            self.activation.reason
        )
    }
}

/// Switch `name` to `system` under the lock: the profile first (by
/// `make_current`, which records how to put it back in `tx` and returns the
/// generation), then the entry; a failed write puts the profile back.
/// `source`: what to record as the entry's source (`None`: keep it).
fn switch<'a>(
    ctx: &Ctx,
    name: &str,
    system: &Path,
    strategy: Option<Strategy>,
    source: Option<Option<BuildSource>>,
    make_current: impl FnOnce(&Ctx, &mut Transaction<'a>) -> Result<u64>,
) -> Result<(Entry, u64, Option<u64>)> {
    let _lock = lock_registry(&ctx.root)?;
    let current = edit::require_imperative(&ctx.root, name, "changing")?;
    let mut entry = edit::switch_system(&current, system)?;
    if let Some(s) = strategy {
        entry.activation.strategy = s;
    }
    if let Some(source) = source {
        entry.source = source;
    }
    check_system(system, entry.activation.strategy != Strategy::None)?;
    let entry = edit::validate(&entry)?;
    ctx.nix
        .record_closure(&ctx.root, name, entry.shared_nix, system)?;
    let previous = profile::current(&ctx.root, name)?.map(|g| g.number);
    let mut tx = Transaction::new();
    let generation = make_current(ctx, &mut tx)?;
    let written = edit::write_entry(&ctx.root, &entry);
    tx.finish(ctx, written).map_err(|f| {
        for p in &f.undo_problems {
            log::error!("putting the profile of {name} back failed: {p}");
        }
        f.error.context(format!(
            "writing the registry entry of {name} (the profile was put back)"
        ))
    })?;
    Ok((entry, generation, previous))
}

fn finish(
    ctx: &mut Ctx,
    entry: &Entry,
    generation: u64,
    previous: Option<u64>,
    json: bool,
    again: bool,
) -> Result<i32> {
    daemon_reload(ctx)?;
    let activation = activate(ctx, entry, again)?;
    let switched = Switched {
        name: &entry.name,
        generation,
        previous,
        system: &entry.system,
        activation: &activation,
    };
    ctx.print(json, &switched)?;
    Ok(EXIT_OK)
}

/// What `update` builds: the source given on the command line (with its Nix
/// options), else the one recorded in the entry (its Nix options, plus those
/// given now).
fn update_source(a: &UpdateArgs, current: &Entry) -> Result<(Source, Option<String>, NixFlags)> {
    let given = a.build_flags().source()?;
    let flags = a.build_flags().nix_flags()?;
    if let Some(source) = given {
        return Ok((source, a.platform.clone(), flags));
    }
    let name = &current.name;
    let Some(rec) = &current.source else {
        return Err(usage(format!(
            "{name} has no recorded source to rebuild from (it was created or last updated with --system, \
             or by an older nixos-nspawn): give --config, --flake or --system"
        )));
    };
    let mut recorded = NixFlags::from_args(&rec.nix_args).map_err(|e| {
        anyhow::anyhow!(
            "{}: source.nixArgs: {e}",
            nixos_nspawn_core::paths::registry_file(name).display()
        )
    })?;
    recorded.merge(&flags);
    let source = Source::from_record(rec);
    log::info!("rebuilding {name} from its recorded {}", source.describe());
    Ok((
        source,
        a.platform.clone().or_else(|| rec.platform.clone()),
        recorded,
    ))
}

pub fn run_update(ctx: &mut Ctx, a: UpdateArgs) -> Result<i32> {
    let name = a.name.clone();
    edit::check_name(&name)?;
    // Refuse early (before a long build) when there is nothing to update.
    let current = edit::require_imperative(&ctx.root, &name, "updating")?;
    let (source, platform, flags) = update_source(&a, &current)?;
    let built = ctx.nix.build(&name, &source, platform.as_deref(), &flags)?;
    let system = built.system.clone();
    if built.record.is_none() && current.source.is_some() {
        log::info!(
            "{name}: the recorded source is dropped (the system was given with --system; give --config or --flake again to record one)"
        );
    }
    let record = Some(built.record.clone());
    let (entry, generation, previous) =
        switch(ctx, &name, &system, a.strategy, record, |ctx, tx| {
            let before = profile::current(&ctx.root, &name)?.map(|g| g.number);
            let set = profile::set_system(&ctx.root, &name, &system)?;
            let n = name.clone();
            tx.done("restoring its profile", move |ctx| {
                if set.created {
                    profile::undo_set(&ctx.root, &n, set.generation, before)?;
                }
                Ok(())
            });
            Ok(set.generation)
        })?;
    drop(built);
    finish(ctx, &entry, generation, previous, a.json, false)
}

pub fn run_rollback(ctx: &mut Ctx, a: RollbackArgs) -> Result<i32> {
    let name = a.name.clone();
    edit::check_name(&name)?;
    edit::require_imperative(&ctx.root, &name, "rolling back")?;
    let gens = profile::generations(&ctx.root, &name)?;
    let Some(cur) = gens.iter().find(|g| g.current) else {
        return Err(not_found(format!(
            "{name} has no profile generations to roll back to"
        )));
    };
    let target = match a.to {
        Some(n) => gens
            .iter()
            .find(|g| g.number == n)
            .ok_or_else(|| {
                let have: Vec<String> = gens.iter().map(|g| g.number.to_string()).collect();
                not_found(format!(
                    "{name} has no generation {n} (generations: {})",
                    have.join(", ")
                ))
            })?
            .clone(),
        None => profile::previous_generation(&ctx.root, &name)?.ok_or_else(|| {
            not_found(format!(
                "{name} has no generation before {} to roll back to",
                cur.number
            ))
        })?,
    };
    let current_number = cur.number;
    let system = target.system.clone();
    let (entry, generation, previous) =
        switch(ctx, &name, &system, a.strategy, None, |ctx, tx| {
            profile::switch_generation(&ctx.root, &name, target.number).with_context(|| {
                format!(
                    "switching the profile of {name} to generation {}",
                    target.number
                )
            })?;
            let n = name.clone();
            tx.done("restoring its profile", move |ctx| {
                profile::switch_generation(&ctx.root, &n, current_number).map(|_| ())
            });
            Ok(target.number)
        })?;
    finish(ctx, &entry, generation, previous, a.json, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::create;
    use crate::testing::{exit_of, Env};
    use crate::{exit_code, EXIT_NOT_FOUND, EXIT_REFUSED};
    use nixos_nspawn_core::applied::{self, Applied};
    use nixos_nspawn_core::registry;

    fn update_args(name: &str, system: &Path) -> UpdateArgs {
        UpdateArgs {
            name: name.into(),
            system: Some(system.display().to_string()),
            ..UpdateArgs::default()
        }
    }

    fn rollback_args(name: &str) -> RollbackArgs {
        RollbackArgs {
            verbose: false,
            name: name.into(),
            to: None,
            strategy: None,
            json: false,
        }
    }

    /// Builds one test system per tag and creates the container web at the
    /// first of them.
    fn web_at_first<const N: usize>(env: &mut Env, tags: [&str; N]) -> [std::path::PathBuf; N] {
        let systems = tags.map(|t| env.system(t, None));
        created(env, "web", &systems[0]);
        systems
    }

    /// Created and "started": the fake marks it running, and the bootstrap's
    /// applied record is written as the real helper would.
    fn created(env: &mut Env, name: &str, system: &Path) {
        create::run(&mut env.ctx(), create::tests::args(name, system)).unwrap();
        let root = env.root();
        let e = registry::load_entry(&root, name).unwrap();
        applied::write(&root, &Applied::now(e, Some(1), "start")).unwrap();
        env.sys.clear();
        env.output();
    }

    #[test]
    fn update_reloads_a_running_container() {
        let mut env = Env::new();
        let [_, b] = web_at_first(&mut env, ["a", "b"]);
        run_update(&mut env.ctx(), update_args("web", &b)).unwrap();
        let out = env.output();
        assert!(
            out.contains("web: generation 2") && out.contains("reload — only system changed"),
            "{out}"
        );
        assert_eq!(env.sys.calls(), vec!["daemon-reload", "reload web"]);
        let root = env.root();
        assert_eq!(
            registry::load_entry(&root, "web").unwrap().system,
            b.to_str().unwrap()
        );
        assert_eq!(profile::current(&root, "web").unwrap().unwrap().number, 2);
    }

    #[test]
    fn update_with_strategy_restart_restarts_and_keeps_it() {
        let mut env = Env::new();
        let [_, b, c] = web_at_first(&mut env, ["a", "b", "c"]);
        let mut u = update_args("web", &b);
        u.strategy = Some(Strategy::Restart);
        u.json = true;
        run_update(&mut env.ctx(), u).unwrap();
        let v: serde_json::Value = serde_json::from_str(&env.output()).unwrap();
        assert_eq!(v["activation"]["action"], "restart");
        assert_eq!(v["generation"], 2);
        assert_eq!(v["previous"], 1);
        assert_eq!(env.sys.calls(), vec!["daemon-reload", "restart web"]);
        // Kept in the registry for the next update.
        env.sys.clear();
        let e = registry::load_entry(&env.root(), "web").unwrap();
        applied::write(&env.root(), &Applied::now(e, Some(2), "start")).unwrap();
        run_update(&mut env.ctx(), update_args("web", &c)).unwrap();
        assert_eq!(env.sys.calls(), vec!["daemon-reload", "restart web"]);
    }

    #[test]
    fn stopped_container_is_not_started() {
        let mut env = Env::new();
        let [_, b] = web_at_first(&mut env, ["a", "b"]);
        crate::systemd::Systemd::unit(&env.sys, crate::systemd::Verb::Stop, "web").unwrap();
        env.sys.clear();
        run_update(&mut env.ctx(), update_args("web", &b)).unwrap();
        assert!(env.output().contains("not running"));
        assert_eq!(env.sys.calls(), vec!["daemon-reload"]);
    }

    #[test]
    fn failed_reload_is_an_error_with_a_way_back() {
        let mut env = Env::new();
        let [a, b] = web_at_first(&mut env, ["a", "b"]);
        env.sys.fail_on("reload web");
        let err = run_update(&mut env.ctx(), update_args("web", &b)).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("switch-to-configuration") && text.contains("rollback web"),
            "{text}"
        );
        assert_eq!(exit_code(&err), 1);
        // Rolling back works and reloads again.
        env.sys.fail.lock().unwrap().clear();
        env.sys.clear();
        run_rollback(&mut env.ctx(), rollback_args("web")).unwrap();
        assert_eq!(env.sys.calls(), vec!["daemon-reload", "reload web"]);
        let root = env.root();
        assert_eq!(
            registry::load_entry(&root, "web").unwrap().system,
            a.to_str().unwrap()
        );
        let cur = profile::current(&root, "web").unwrap().unwrap();
        assert_eq!((cur.number, cur.system), (1, a.clone()));
    }

    #[test]
    fn rollback_to_and_errors() {
        let mut env = Env::new();
        let [a, b, c] = web_at_first(&mut env, ["a", "b", "c"]);
        let err = run_rollback(&mut env.ctx(), rollback_args("web")).unwrap_err();
        assert_eq!(exit_code(&err), EXIT_NOT_FOUND, "{err:#}");
        run_update(&mut env.ctx(), update_args("web", &b)).unwrap();
        run_update(&mut env.ctx(), update_args("web", &c)).unwrap();
        let mut r = rollback_args("web");
        r.to = Some(9);
        assert_eq!(exit_of(run_rollback(&mut env.ctx(), r)), EXIT_NOT_FOUND);
        let mut r = rollback_args("web");
        r.to = Some(1);
        run_rollback(&mut env.ctx(), r).unwrap();
        assert_eq!(
            registry::load_entry(&env.root(), "web").unwrap().system,
            a.to_str().unwrap()
        );
        // Updating after a rollback makes a new generation (4), as nix-env does.
        run_update(&mut env.ctx(), update_args("web", &b)).unwrap();
        assert_eq!(
            profile::current(&env.root(), "web")
                .unwrap()
                .unwrap()
                .number,
            4
        );
        assert_eq!(
            exit_of(run_rollback(&mut env.ctx(), rollback_args("nope"))),
            EXIT_NOT_FOUND
        );
    }

    #[test]
    fn declarative_is_refused() {
        let mut env = Env::new();
        let root = env.root();
        let a = env.system("a", None);
        let mut e = Entry::new("db", a.to_str().unwrap());
        e.declarative = true;
        edit::write_entry(&root, &e).unwrap();
        let err = run_update(&mut env.ctx(), update_args("db", &a)).unwrap_err();
        assert_eq!(exit_code(&err), EXIT_REFUSED);
        assert!(
            err.to_string().contains("nixos.containers.instances.db"),
            "{err}"
        );
        assert_eq!(
            exit_of(run_rollback(&mut env.ctx(), rollback_args("db"))),
            EXIT_REFUSED
        );
        assert!(env.sys.calls().is_empty());
    }

    #[test]
    fn update_takes_the_systems_settings() {
        let mut env = Env::new();
        let a = env.system("a", Some(serde_json::json!({"version": 1, "name": "web", "system": "/x", "bindMounts": ["/srv/a"]})));
        let b = env.system("b", Some(serde_json::json!({"version": 1, "name": "web", "system": "/x", "bindMounts": ["/srv/b"]})));
        created(&mut env, "web", &a);
        run_update(&mut env.ctx(), update_args("web", &b)).unwrap();
        // bindMounts changed: dynamic strategy restarts.
        assert_eq!(env.sys.calls(), vec!["daemon-reload", "restart web"]);
        let e = registry::load_entry(&env.root(), "web").unwrap();
        assert_eq!(e.bind_mounts[0].host, "/srv/b");
    }
}
