//! `remove NAME [--delete-state]`: stop it, remove its registry entry (under
//! the lock), its profile and its applied record, daemon-reload; with
//! `--delete-state` also `/var/lib/machines/NAME` through
//! [`nixos_nspawn::statedir`], refused while the container runs.

use anyhow::{Context as _, Result};

use nixos_nspawn::lock::lock_registry;
use nixos_nspawn::{applied, paths, profile, statedir};

use super::daemon_reload;
use crate::args::RemoveArgs;
use crate::edit::{self, Found};
use crate::systemd::Verb;
use crate::{not_found, refused, Ctx, EXIT_ERROR, EXIT_OK};

/// Whether the container runs (its unit, or machined knows it).
fn running(ctx: &Ctx, name: &str) -> Result<bool> {
    if !ctx.sys.available() {
        return Ok(false);
    }
    let state = ctx.sys.unit_details(name)?.state;
    Ok(
        state.is_running()
            || state.active_state == "deactivating"
            || ctx.sys.leader(name).is_some(),
    )
}

/// Whether `/var/lib/machines/NAME` exists (as anything, links included).
fn has_state(ctx: &Ctx, name: &str) -> bool {
    std::fs::symlink_metadata(ctx.root.join(paths::machine_dir(name))).is_ok()
}

/// Delete the state directory (the container is stopped and its entry
/// gone); returns the note for the summary line, pushes what was left.
fn delete_state(ctx: &Ctx, name: &str, problems: &mut Vec<String>) -> Result<String> {
    // Checked again: something may have started it in between.
    if running(ctx, name)? {
        return Err(refused(format!(
            "not deleting {}: {name} was started again meanwhile (its registry entry and profile are gone already); stop it with machinectl terminate {name} and delete the directory by hand",
            paths::machine_dir(name).display()
        )));
    }
    let done = statedir::delete(&ctx.root, name)
        .with_context(|| format!("{name} was removed, but its state directory was not deleted"))?;
    if !done.existed {
        return Ok(format!(
            "it had no state directory {}",
            paths::machine_dir(name).display()
        ));
    }
    if done.complete() {
        return Ok(format!(
            "deleted {} ({} files, {} directories)",
            paths::machine_dir(name).display(),
            done.files,
            done.dirs
        ));
    }
    if !done.skipped_mounts.is_empty() {
        let list: Vec<String> = done
            .skipped_mounts
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        problems.push(format!(
            "mount points left in place (unmount them and remove them by hand): {}",
            list.join(", ")
        ));
    }
    if let Some(t) = &done.top_left {
        problems.push(t.clone());
    }
    Ok(format!(
        "{} was deleted only in part",
        paths::machine_dir(name).display()
    ))
}

/// The note for a state directory that is kept (none when there is none).
fn kept_state_note(ctx: &Ctx, name: &str) -> Option<String> {
    has_state(ctx, name).then(|| {
        format!(
            "kept its state directory {} (nixos-nspawn remove {name} --delete-state deletes it)",
            paths::machine_dir(name).display()
        )
    })
}

fn finish(ctx: &mut Ctx, line: String, problems: Vec<String>) -> Result<i32> {
    ctx.println(line)?;
    if problems.is_empty() {
        Ok(EXIT_OK)
    } else {
        for p in &problems {
            log::error!("{p}");
        }
        Ok(EXIT_ERROR)
    }
}

/// No registry entry: finish what a remove interrupted after the entry went,
/// or an entry removed by hand (its profile, applied record, and with
/// `--delete-state` its state directory).
fn remove_leftovers(ctx: &mut Ctx, name: &str, delete: bool) -> Result<i32> {
    let file = paths::registry_file(name);
    let profile_left = std::fs::symlink_metadata(ctx.root.join(paths::profile_dir(name))).is_ok();
    let applied_left = std::fs::symlink_metadata(ctx.root.join(paths::applied_file(name))).is_ok();
    let state_left = has_state(ctx, name);
    if !(profile_left || applied_left || (delete && state_left)) {
        let hint = if state_left {
            format!(
                "; its state directory {} is still there: nixos-nspawn remove {name} --delete-state deletes it",
                paths::machine_dir(name).display()
            )
        } else {
            String::new()
        };
        return Err(not_found(format!(
            "there is no container {name} ({} does not exist){hint}",
            file.display()
        )));
    }
    if delete && running(ctx, name)? {
        return Err(refused(format!(
            "not deleting {}: {name} is running (without a registry entry); stop it with machinectl terminate {name} first",
            paths::machine_dir(name).display()
        )));
    }
    let mut removed = Vec::new();
    {
        let _lock = lock_registry(&ctx.root)?;
        if !matches!(edit::find(&ctx.root, name)?, Found::Missing) {
            return Err(refused(format!(
                "{name} was created again meanwhile; run nixos-nspawn remove {name} again to remove it"
            )));
        }
        if profile_left {
            profile::remove(&ctx.root, name)
                .with_context(|| format!("removing the leftover profile of {name}"))?;
            removed.push("profile");
        }
        if applied_left {
            applied::remove(&ctx.root, name)?;
            removed.push("applied state");
        }
    }
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    if !removed.is_empty() {
        notes.push(format!("removed its {}", removed.join(" and ")));
    }
    if delete {
        notes.push(delete_state(ctx, name, &mut problems)?);
    } else {
        notes.extend(kept_state_note(ctx, name));
    }
    finish(
        ctx,
        format!(
            "Removed what was left of {name} ({} did not exist): {}",
            file.display(),
            notes.join("; ")
        ),
        problems,
    )
}

pub fn run(ctx: &mut Ctx, a: RemoveArgs) -> Result<i32> {
    let name = a.name.clone();
    edit::check_name(&name)?;
    match edit::find(&ctx.root, &name)? {
        Found::Missing => return remove_leftovers(ctx, &name, a.delete_state),
        Found::Declarative { why, .. } => {
            return Err(edit::declarative_refusal(&name, &why, "removing"))
        }
        Found::Invalid(errors) => {
            log::warn!(
                "the registry entry of {name} is invalid ({}); removing it anyway",
                edit::entry_errors(&errors)
            );
        }
        Found::Imperative(_) => {}
    }
    if running(ctx, &name)? {
        log::info!("stopping {name}");
        ctx.sys
            .unit(Verb::Stop, &name)
            .with_context(|| format!("stopping {name} failed; nothing was removed"))?;
    }
    if a.delete_state && running(ctx, &name)? {
        return Err(refused(format!(
            "not deleting {}: {name} is still running after being stopped; nothing was removed",
            paths::machine_dir(&name).display()
        )));
    }
    let mut problems = Vec::new();
    {
        // Entry, profile and applied record go under the registry lock, so a
        // create or update of the same name cannot come in between.
        let _lock = lock_registry(&ctx.root)?;
        match edit::find(&ctx.root, &name)? {
            Found::Declarative { why, .. } => {
                return Err(edit::declarative_refusal(&name, &why, "removing"))
            }
            Found::Missing => log::warn!("{name} was removed meanwhile by someone else"),
            _ => {
                edit::remove_entry_if(&ctx.root, &name, None)?;
            }
        }
        if let Err(e) = profile::remove(&ctx.root, &name) {
            problems.push(format!("removing its profile: {e:#}"));
        }
        if let Err(e) = applied::remove(&ctx.root, &name) {
            problems.push(format!("removing its applied state: {e:#}"));
        }
    }
    if let Err(e) = daemon_reload(ctx) {
        problems.push(format!("{e:#}"));
    }
    let state_note = if a.delete_state {
        Some(delete_state(ctx, &name, &mut problems)?)
    } else {
        kept_state_note(ctx, &name)
    };
    let line = match state_note {
        Some(note) => format!("Removed container {name}; {note}"),
        None => format!("Removed container {name}"),
    };
    finish(ctx, line, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::create;
    use crate::testing::Env;
    use crate::{exit_code, EXIT_NOT_FOUND, EXIT_REFUSED};
    use nixos_nspawn::registry::Entry;

    fn args(name: &str, delete_state: bool) -> RemoveArgs {
        RemoveArgs {
            verbose: false,
            name: name.into(),
            delete_state,
        }
    }

    #[test]
    fn removes_everything() {
        let mut env = Env::new();
        let s = env.system("a", None);
        create::run(&mut env.ctx(), create::tests::args("web", &s)).unwrap();
        let root = env.root();
        let state = root.join(paths::machine_dir("web"));
        std::fs::create_dir_all(state.join("etc")).unwrap();
        std::fs::write(state.join("etc/os-release"), "").unwrap();
        env.sys.clear();
        env.output();
        assert_eq!(run(&mut env.ctx(), args("web", true)).unwrap(), 0);
        assert_eq!(env.sys.calls(), vec!["stop web", "daemon-reload"]);
        assert!(env.output().contains("deleted /var/lib/machines/web"));
        assert!(!edit::registry_path(&root, "web").exists());
        assert!(!root.join(paths::profile_dir("web")).exists());
        assert!(!state.exists());
        assert_eq!(
            exit_code(&run(&mut env.ctx(), args("web", false)).unwrap_err()),
            EXIT_NOT_FOUND
        );
    }

    #[test]
    fn keeps_state_by_default_and_stopped_is_not_stopped() {
        let mut env = Env::new();
        let s = env.system("a", None);
        let mut c = create::tests::args("web", &s);
        c.no_start = true;
        create::run(&mut env.ctx(), c).unwrap();
        let state = env.root().join(paths::machine_dir("web"));
        std::fs::create_dir_all(&state).unwrap();
        env.sys.clear();
        run(&mut env.ctx(), args("web", false)).unwrap();
        assert_eq!(env.sys.calls(), vec!["daemon-reload"]);
        assert!(state.exists());
    }

    #[test]
    fn finishes_an_interrupted_remove() {
        // A remove killed after the entry went leaves a profile behind.
        let mut env = Env::new();
        let root = env.root();
        profile::set_system(&root, "web", std::path::Path::new("/nix/store/aaaa-system")).unwrap();
        assert_eq!(run(&mut env.ctx(), args("web", false)).unwrap(), 0);
        let out = env.output();
        assert_eq!(
            out.trim(),
            "Removed what was left of web (/etc/nixos-nspawn/containers/web.json did not exist): removed its profile"
        );
        assert!(!root.join(paths::profile_dir("web")).exists());
        assert_eq!(
            exit_code(&run(&mut env.ctx(), args("web", false)).unwrap_err()),
            EXIT_NOT_FOUND
        );
    }

    #[test]
    fn failing_stop_removes_nothing() {
        let mut env = Env::new();
        let s = env.system("a", None);
        create::run(&mut env.ctx(), create::tests::args("web", &s)).unwrap();
        env.sys.fail_on("stop web");
        assert!(run(&mut env.ctx(), args("web", true)).is_err());
        assert!(edit::registry_path(&env.root(), "web").exists());
    }

    #[test]
    fn declarative_and_invalid() {
        let mut env = Env::new();
        let root = env.root();
        let mut e = Entry::new("db", "/nix/store/x");
        e.declarative = true;
        edit::write_entry(&root, &e).unwrap();
        assert_eq!(
            exit_code(&run(&mut env.ctx(), args("db", false)).unwrap_err()),
            EXIT_REFUSED
        );
        assert!(edit::registry_path(&root, "db").exists());
        std::fs::write(edit::registry_path(&root, "bad"), "{\"version\": 1").unwrap();
        run(&mut env.ctx(), args("bad", false)).unwrap();
        assert!(!edit::registry_path(&root, "bad").exists());
    }

    #[test]
    fn state_deletion_never_follows_links() {
        let mut env = Env::new();
        let s = env.system("a", None);
        let mut c = create::tests::args("web", &s);
        c.no_start = true;
        create::run(&mut env.ctx(), c).unwrap();
        let host = env.dir.path().join("host-sentinel");
        std::fs::write(&host, "keep").unwrap();
        let state = env.root().join(paths::machine_dir("web"));
        std::fs::create_dir_all(state.join("etc")).unwrap();
        std::os::unix::fs::symlink(&host, state.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink(env.dir.path(), state.join("hostroot")).unwrap();
        run(&mut env.ctx(), args("web", true)).unwrap();
        assert_eq!(std::fs::read_to_string(&host).unwrap(), "keep");
        assert!(!state.exists());
    }

    #[test]
    fn says_when_the_state_directory_is_kept() {
        let mut env = Env::new();
        let s = env.system("a", None);
        create::run(&mut env.ctx(), create::tests::args("web", &s)).unwrap();
        let state = env.root().join(paths::machine_dir("web"));
        std::fs::create_dir_all(state.join("etc")).unwrap();
        env.output();
        run(&mut env.ctx(), args("web", false)).unwrap();
        assert_eq!(
            env.output().trim(),
            "Removed container web; kept its state directory /var/lib/machines/web \
             (nixos-nspawn remove web --delete-state deletes it)"
        );
        assert!(state.exists());
        // Without a state directory, nothing to say about it.
        create::run(&mut env.ctx(), create::tests::args("db", &s)).unwrap();
        env.output();
        run(&mut env.ctx(), args("db", false)).unwrap();
        assert_eq!(env.output().trim(), "Removed container db");
    }

    #[test]
    fn delete_state_of_an_entry_removed_by_hand() {
        let mut env = Env::new();
        let s = env.system("a", None);
        create::run(&mut env.ctx(), create::tests::args("web", &s)).unwrap();
        crate::systemd::Systemd::unit(&env.sys, Verb::Stop, "web").unwrap();
        let root = env.root();
        let state = root.join(paths::machine_dir("web"));
        std::fs::create_dir_all(state.join("etc")).unwrap();
        std::fs::write(state.join("etc/os-release"), "").unwrap();
        std::fs::remove_file(edit::registry_path(&root, "web")).unwrap();
        env.output();
        // Without --delete-state: not found, and the way to delete it named.
        let err = run(&mut env.ctx(), args("web", false));
        // The profile is still there: that is finished, the state kept and said so.
        assert!(err.is_ok(), "{err:?}");
        let out = env.output();
        assert!(
            out.contains("removed its profile") && out.contains("kept its state directory"),
            "{out}"
        );
        let err = run(&mut env.ctx(), args("web", false)).unwrap_err();
        assert_eq!(exit_code(&err), EXIT_NOT_FOUND);
        assert!(
            err.to_string()
                .contains("nixos-nspawn remove web --delete-state deletes it"),
            "{err}"
        );
        // With it: deleted, and said so.
        run(&mut env.ctx(), args("web", true)).unwrap();
        let out = env.output();
        assert!(
            out.contains("deleted /var/lib/machines/web (1 files, 2 directories)"),
            "{out}"
        );
        assert!(!state.exists());
        assert_eq!(
            exit_code(&run(&mut env.ctx(), args("web", true)).unwrap_err()),
            EXIT_NOT_FOUND
        );
    }

    #[test]
    fn delete_state_refused_while_a_leftover_runs() {
        let mut env = Env::new();
        let root = env.root();
        std::fs::create_dir_all(root.join(paths::machine_dir("web"))).unwrap();
        env.sys.set_running("web");
        let err = run(&mut env.ctx(), args("web", true)).unwrap_err();
        assert_eq!(exit_code(&err), EXIT_REFUSED, "{err:#}");
        assert!(root.join(paths::machine_dir("web")).exists());
    }
}
