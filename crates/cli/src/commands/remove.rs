//! `remove NAME [--delete-state]`: stop it, then remove its registry entry,
//! profile and applied record (under the registry lock, in one go) and
//! daemon-reload.
//!
//! With `--delete-state` every check that can refuse (still running, a link
//! for a state directory, a mount below it) comes before anything is
//! removed; then the registry entry becomes a tombstone
//! (`/etc/nixos-nspawn/containers/.NAME.json.removing`, renamed under the
//! lock: invisible to the generator, so after the daemon-reload the
//! container cannot be started from the registry), then `/var/lib/machines/NAME`
//! is deleted through [`nixos_nspawn_core::statedir`], then the profile and the
//! applied record, and last the tombstone. The remove holds a `flock` on the
//! tombstone while it works. One killed or failed after the checks leaves the
//! tombstone: running `remove NAME` again finishes it, and `create NAME`
//! refuses until then ("in progress" while the flock is held, "interrupted"
//! otherwise), so it never silently reuses a half-deleted tree.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use nixos_nspawn_core::lock::lock_registry;
use nixos_nspawn_core::output::fsync_dir;
use nixos_nspawn_core::{applied, paths, profile, statedir, Root};

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

/// The tombstone of an interrupted remove of `name`.
pub fn tombstone(root: &Root, name: &str) -> PathBuf {
    root.registry_dir().join(format!(".{name}.json.removing"))
}

/// Refuse (exit 4) while a `remove --delete-state` of `name` is in progress
/// or was interrupted (for create).
pub fn refuse_if_interrupted(root: &Root, name: &str) -> Result<()> {
    let Ok(f) = std::fs::File::open(tombstone(root, name)) else {
        return Ok(());
    };
    let busy = rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared).is_err();
    let how = if busy {
        "is in progress"
    } else {
        "was interrupted"
    };
    Err(refused(format!(
        "a remove --delete-state of {name} {how} ({}/.{name}.json.removing exists, and maybe part of {}); {}",
        paths::REGISTRY_DIR,
        paths::machine_dir(name).display(),
        if busy {
            "try again when it is done".to_owned()
        } else {
            format!("finish it first with nixos-nspawn remove {name} --delete-state")
        }
    )))
}

/// Fault injection for the crash tests: `NIXOS_NSPAWN_TEST_CRASH_AT=remove:STEP`
/// kills this process (SIGKILL, as `kill -9` would) at that step.
fn crash_point(step: &str) {
    if std::env::var("NIXOS_NSPAWN_TEST_CRASH_AT").is_ok_and(|v| v == format!("remove:{step}")) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::Kill);
    }
}

/// Without `--delete-state`: entry, profile and applied record go under one
/// hold of the registry lock, so a create or update of the same name cannot
/// come in between; then daemon-reload. Nothing that can be half-deleted.
fn remove_keeping_state(ctx: &mut Ctx, name: &str) -> Result<i32> {
    let mut problems = Vec::new();
    {
        let _lock = lock_registry(&ctx.root)?;
        match edit::find(&ctx.root, name)? {
            Found::Declarative { why, .. } => {
                return Err(edit::declarative_refusal(name, &why, "removing"))
            }
            Found::Missing => log::warn!("{name} was removed meanwhile by someone else"),
            _ => {
                edit::remove_entry_if(&ctx.root, name, None)?;
            }
        }
        if let Err(e) = profile::remove(&ctx.root, name) {
            problems.push(format!("removing its profile: {e:#}"));
        }
        if let Err(e) = applied::remove(&ctx.root, name) {
            problems.push(format!("removing its applied state: {e:#}"));
        }
    }
    if let Err(e) = daemon_reload(ctx) {
        problems.push(format!("{e:#}"));
    }
    ctx.println(format!(
        "Removed container {name}{}",
        kept_state_note(ctx, name)
    ))?;
    if problems.is_empty() {
        Ok(EXIT_OK)
    } else {
        for p in &problems {
            log::error!("{p}");
        }
        Ok(EXIT_ERROR)
    }
}

/// Whether `/var/lib/machines/NAME` exists (as anything, links included).
fn has_state(ctx: &Ctx, name: &str) -> bool {
    std::fs::symlink_metadata(ctx.root.join(paths::machine_dir(name))).is_ok()
}

/// `; kept its state directory …` when there is one (a remove without
/// `--delete-state` says so).
fn kept_state_note(ctx: &Ctx, name: &str) -> String {
    if has_state(ctx, name) {
        format!(
            "; kept its state directory {} (nixos-nspawn remove {name} --delete-state deletes it)",
            paths::machine_dir(name).display()
        )
    } else {
        String::new()
    }
}

/// No registry entry (and no tombstone): finish what a remove of an earlier
/// version left (a profile without an entry), else not found.
fn remove_leftover(ctx: &mut Ctx, name: &str) -> Result<i32> {
    // A profile without an entry: left by a remove of an earlier
    // version that was interrupted after the entry went. Finish it.
    let dir = ctx.root.join(paths::profile_dir(name));
    if std::fs::symlink_metadata(&dir).is_ok() {
        let _lock = lock_registry(&ctx.root)?;
        if matches!(edit::find(&ctx.root, name)?, Found::Missing) {
            profile::remove(&ctx.root, name)
                .with_context(|| format!("removing the leftover profile of {name}"))?;
            applied::remove(&ctx.root, name)?;
            ctx.println(format!(
                "Removed the leftover profile of {name} ({} did not exist){}",
                paths::registry_file(name).display(),
                kept_state_note(ctx, name)
            ))?;
            return Ok(EXIT_OK);
        }
    }
    let hint = if has_state(ctx, name) {
        format!(
            "; its state directory {} is still there: nixos-nspawn remove {name} --delete-state deletes it",
            paths::machine_dir(name).display()
        )
    } else {
        String::new()
    };
    Err(not_found(format!(
        "there is no container {name} ({} does not exist){hint}",
        paths::registry_file(name).display()
    )))
}

/// Under the registry lock: the entry (or, without one, an empty file)
/// becomes the tombstone, opened and flock-ed (held until the remove is done:
/// create tells "in progress" from "interrupted").
fn make_tombstone(
    ctx: &Ctx,
    name: &str,
    tomb: &Path,
    resuming: bool,
    by_hand: bool,
) -> Result<std::fs::File> {
    let _lock = lock_registry(&ctx.root)?;
    match edit::find(&ctx.root, name)? {
        Found::Declarative { why, .. } => {
            return Err(edit::declarative_refusal(name, &why, "removing"))
        }
        Found::Missing if resuming => {}
        Found::Missing => {
            if !by_hand {
                log::warn!("{name} was removed meanwhile by someone else");
            }
            // No entry to turn into the tombstone: make an empty one.
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(tomb)
                .with_context(|| format!("creating {} (nothing was removed)", tomb.display()))?;
            fsync_dir(&ctx.root.registry_dir())?;
        }
        _ => {
            let entry = edit::registry_path(&ctx.root, name);
            std::fs::rename(&entry, tomb).with_context(|| {
                format!(
                    "moving {} to {} (nothing was removed)",
                    entry.display(),
                    tomb.display()
                )
            })?;
            fsync_dir(&ctx.root.registry_dir())?;
        }
    }
    // Held until we are done: create tells "in progress" from "interrupted".
    let held = std::fs::File::open(tomb).with_context(|| format!("opening {}", tomb.display()))?;
    let _ = rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive);
    Ok(held)
}

/// Delete `/var/lib/machines/NAME` (checked again not to run); returns the
/// note for the summary and whether everything is gone, `problems` get what
/// was left.
fn delete_state(ctx: &Ctx, name: &str, problems: &mut Vec<String>) -> Result<(String, bool)> {
    let state_dir = paths::machine_dir(name);
    let again = format!("run nixos-nspawn remove {name} --delete-state again to finish");
    let mut state_note = String::new();
    let mut state_complete = true;
    // Checked again: something may have started it in between.
    if running(ctx, name)? {
        return Err(refused(format!(
                "not deleting {}: {name} was started again meanwhile; stop it (machinectl terminate {name}) and {again}",
                state_dir.display()
            )));
    }
    let done = statedir::delete(&ctx.root, name)
        .with_context(|| format!("deleting the state of {name} failed; {again}"))?;
    if !done.existed {
        state_note = format!("; it had no state directory {}", state_dir.display());
    } else if done.complete() {
        state_note = format!(
            "; deleted {} ({} files, {} directories)",
            state_dir.display(),
            done.files,
            done.dirs
        );
    } else {
        state_complete = false;
        let list = |paths: &[PathBuf]| -> String {
            let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            names.join(", ")
        };
        if !done.skipped_mounts.is_empty() {
            problems.push(format!(
                "mount points left in place (unmount them, then {again}): {}",
                list(&done.skipped_mounts)
            ));
        }
        if !done.kept_linked.is_empty() {
            problems.push(format!(
                    "immutable files with more than one link left in place, their flags untouched (each may be a host file hard-linked into the container: find its other names with find / -xdev -samefile FILE; if it is the container's, chattr -i it and {again}): {}",
                    list(&done.kept_linked)
                ));
        }
        if let Some(t) = &done.top_left {
            problems.push(t.clone());
        }
    }
    Ok((state_note, state_complete))
}

/// Under the registry lock: the profile and the applied record, and last the
/// tombstone, only when nothing is left to finish.
fn finish_removal(
    ctx: &Ctx,
    name: &str,
    tomb: &Path,
    state_complete: bool,
    problems: &mut Vec<String>,
) -> Result<()> {
    let _lock = lock_registry(&ctx.root)?;
    if !matches!(edit::find(&ctx.root, name)?, Found::Missing) {
        // Someone made a new NAME by hand meanwhile (create refuses):
        // its profile is not ours to remove.
        problems.push(format!(
            "{} appeared meanwhile; its profile was left alone",
            paths::registry_file(name).display()
        ));
    } else if let Err(e) = profile::remove(&ctx.root, name) {
        problems.push(format!("removing its profile: {e:#}"));
    }
    if let Err(e) = applied::remove(&ctx.root, name) {
        problems.push(format!("removing its applied state: {e:#}"));
    }
    crash_point("profile-removed");
    // The tombstone goes last, and only when nothing is left to finish.
    // (Still under the registry lock: no create comes in between.)
    if problems.is_empty() && state_complete {
        match std::fs::remove_file(tomb) {
            Ok(()) => fsync_dir(&ctx.root.registry_dir())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("removing {}: {e}", tomb.display())),
        }
    }
    Ok(())
}

pub fn run(ctx: &mut Ctx, a: RemoveArgs) -> Result<i32> {
    let name = a.name.clone();
    edit::check_name(&name)?;
    let tomb = tombstone(&ctx.root, &name);
    let resuming = std::fs::symlink_metadata(&tomb).is_ok();
    // An entry removed by hand: --delete-state still deletes what is left.
    let mut by_hand = false;
    match edit::find(&ctx.root, &name)? {
        Found::Missing if resuming => {
            log::info!("finishing an interrupted remove of {name}");
        }
        Found::Missing if a.delete_state && has_state(ctx, &name) => {
            by_hand = true;
        }
        Found::Missing => return remove_leftover(ctx, &name),
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
    if !a.delete_state && !resuming {
        return remove_keeping_state(ctx, &name);
    }
    if resuming && !a.delete_state {
        log::warn!(
            "an interrupted remove --delete-state of {name} is finished: its state is deleted too"
        );
    }
    let state_dir = paths::machine_dir(&name);
    {
        // Everything that can refuse, before anything is removed.
        if running(ctx, &name)? {
            return Err(refused(format!(
                "not deleting {}: {name} is still running after being stopped; nothing was removed",
                state_dir.display()
            )));
        }
        statedir::check(&ctx.root, &name)
            .with_context(|| format!("not removing {name}: nothing was removed"))?;
    }
    crash_point("checked");

    // The entry becomes the tombstone, under the registry lock.
    let _held = make_tombstone(ctx, &name, &tomb, resuming, by_hand)?;
    crash_point("tombstoned");
    let mut problems = Vec::new();
    if let Err(e) = daemon_reload(ctx) {
        problems.push(format!("{e:#}"));
    }
    crash_point("reloaded");

    let (state_note, state_complete) = delete_state(ctx, &name, &mut problems)?;
    crash_point("state-deleted");

    finish_removal(ctx, &name, &tomb, state_complete, &mut problems)?;
    if by_hand {
        ctx.println(format!(
            "Removed what was left of {name} ({} did not exist){state_note}",
            paths::registry_file(&name).display()
        ))?;
    } else {
        ctx.println(format!("Removed container {name}{state_note}"))?;
    }
    if problems.is_empty() && state_complete {
        Ok(EXIT_OK)
    } else {
        for p in &problems {
            log::error!("{p}");
        }
        log::error!(
            "{name} is not completely removed: {} stays until nixos-nspawn remove {name} finishes",
            tomb.display()
        );
        Ok(EXIT_ERROR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::create;
    use crate::testing::{exit_of, Env};
    use crate::{exit_code, EXIT_NOT_FOUND, EXIT_REFUSED};
    use nixos_nspawn_core::registry::Entry;

    fn args(name: &str, delete_state: bool) -> RemoveArgs {
        RemoveArgs {
            verbose: false,
            name: name.into(),
            delete_state,
        }
    }

    /// Creates the container NAME, started or not.
    fn make(env: &mut Env, name: &str, start: bool) {
        let s = env.system("a", None);
        let mut c = create::tests::args(name, &s);
        c.no_start = !start;
        create::run(&mut env.ctx(), c).unwrap();
    }

    /// Neither entry nor profile is left, and removing again is "not found".
    fn assert_gone(env: &mut Env, name: &str) {
        let root = env.root();
        assert!(!edit::registry_path(&root, name).exists());
        assert!(!root.join(paths::profile_dir(name)).exists());
        assert_eq!(
            exit_of(run(&mut env.ctx(), args(name, false))),
            EXIT_NOT_FOUND
        );
    }

    #[test]
    fn removes_everything() {
        let mut env = Env::new();
        make(&mut env, "web", true);
        let root = env.root();
        let state = root.join(paths::machine_dir("web"));
        std::fs::create_dir_all(state.join("etc")).unwrap();
        std::fs::write(state.join("etc/os-release"), "").unwrap();
        env.sys.clear();
        env.output();
        assert_eq!(run(&mut env.ctx(), args("web", true)).unwrap(), 0);
        assert_eq!(env.sys.calls(), vec!["stop web", "daemon-reload"]);
        assert!(env.output().contains("deleted /var/lib/machines/web"));
        assert!(!state.exists());
        assert_gone(&mut env, "web");
    }

    #[test]
    fn keeps_state_by_default_and_stopped_is_not_stopped() {
        let mut env = Env::new();
        make(&mut env, "web", false);
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
        assert_gone(&mut env, "web");
    }

    #[test]
    fn failing_stop_removes_nothing() {
        let mut env = Env::new();
        make(&mut env, "web", true);
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
            exit_of(run(&mut env.ctx(), args("db", false))),
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
        make(&mut env, "web", false);
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
        make(&mut env, "web", true);
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
        make(&mut env, "db", true);
        env.output();
        run(&mut env.ctx(), args("db", false)).unwrap();
        assert_eq!(env.output().trim(), "Removed container db");
    }

    #[test]
    fn delete_state_of_an_entry_removed_by_hand() {
        let mut env = Env::new();
        make(&mut env, "web", true);
        crate::systemd::Systemd::unit(&env.sys, Verb::Stop, "web").unwrap();
        let root = env.root();
        let state = root.join(paths::machine_dir("web"));
        std::fs::create_dir_all(state.join("etc")).unwrap();
        std::fs::write(state.join("etc/os-release"), "").unwrap();
        std::fs::remove_file(edit::registry_path(&root, "web")).unwrap();
        env.output();
        // Without --delete-state: the leftover profile goes, the state is
        // kept, and said so; then there is nothing but the state, and the
        // not-found error names the way to delete it.
        run(&mut env.ctx(), args("web", false)).unwrap();
        let out = env.output();
        assert!(
            out.contains("Removed the leftover profile of web")
                && out.contains("kept its state directory"),
            "{out}"
        );
        let err = run(&mut env.ctx(), args("web", false)).unwrap_err();
        assert_eq!(exit_code(&err), EXIT_NOT_FOUND);
        assert!(
            err.to_string()
                .contains("nixos-nspawn remove web --delete-state deletes it"),
            "{err}"
        );
        // With it: deleted, and said so; no tombstone left.
        run(&mut env.ctx(), args("web", true)).unwrap();
        let out = env.output();
        assert!(
            out.starts_with("Removed what was left of web (/etc/nixos-nspawn/containers/web.json did not exist); deleted /var/lib/machines/web (1 files, 2 directories)"),
            "{out}"
        );
        assert!(!state.exists());
        assert!(!tombstone(&root, "web").exists());
        assert_eq!(
            exit_of(run(&mut env.ctx(), args("web", true))),
            EXIT_NOT_FOUND
        );
    }
}
