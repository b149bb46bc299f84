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

pub fn run(ctx: &mut Ctx, a: RemoveArgs) -> Result<i32> {
    let name = a.name.clone();
    edit::check_name(&name)?;
    match edit::find(&ctx.root, &name)? {
        Found::Missing => {
            // A profile without an entry: left by a remove that was
            // interrupted after the entry went. Finish that remove.
            let dir = ctx.root.join(paths::profile_dir(&name));
            if std::fs::symlink_metadata(&dir).is_ok() {
                let _lock = lock_registry(&ctx.root)?;
                if matches!(edit::find(&ctx.root, &name)?, Found::Missing) {
                    profile::remove(&ctx.root, &name)
                        .with_context(|| format!("removing the leftover profile of {name}"))?;
                    applied::remove(&ctx.root, &name)?;
                    ctx.println(format!(
                        "Removed the leftover profile of {name} ({} did not exist)",
                        paths::registry_file(&name).display()
                    ))?;
                    return Ok(EXIT_OK);
                }
            }
            return Err(not_found(format!(
                "there is no container {name} ({} does not exist)",
                paths::registry_file(&name).display()
            )));
        }
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
    let mut state_note = String::new();
    if a.delete_state {
        // Checked again: something may have started it in between.
        if running(ctx, &name)? {
            return Err(refused(format!(
                "not deleting {}: {name} was started again meanwhile (its registry entry and profile are gone already); stop it with machinectl terminate {name} and delete the directory by hand",
                paths::machine_dir(&name).display()
            )));
        }
        let done = statedir::delete(&ctx.root, &name).with_context(|| {
            format!("{name} was removed, but its state directory was not deleted")
        })?;
        if !done.existed {
            state_note = format!(
                "; it had no state directory {}",
                paths::machine_dir(&name).display()
            );
        } else if done.complete() {
            state_note = format!(
                "; deleted {} ({} files, {} directories)",
                paths::machine_dir(&name).display(),
                done.files,
                done.dirs
            );
        } else {
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
            if !done.kept_linked.is_empty() {
                let list: Vec<String> = done
                    .kept_linked
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                problems.push(format!(
                    "immutable files with more than one link left in place, their flags untouched (each may be a host file hard-linked into the container: find its other names with find / -xdev -samefile FILE, then chattr -i and remove it by hand if it is the container's): {}",
                    list.join(", ")
                ));
            }
            if let Some(t) = &done.top_left {
                problems.push(t.clone());
            }
        }
    }
    ctx.println(format!("Removed container {name}{state_note}"))?;
    if problems.is_empty() {
        Ok(EXIT_OK)
    } else {
        for p in &problems {
            log::error!("{p}");
        }
        Ok(EXIT_ERROR)
    }
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
        assert!(env.output().contains("Removed the leftover profile of web"));
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
}
