//! `import-classic NAME [--move-state] [--force] [--start] [--json]`: a
//! classic imperative container (`nixos-container create`) becomes an
//! imperative nixos-nspawn container, as docs/migration.md describes. The
//! conversion of its `.conf` file is [`crate::classic`]'s; this is finding the
//! container, the refusals and applying the result.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use serde_json::Value;

use nixos_nspawn_core::hosttools;
use nixos_nspawn_core::lock::lock_registry;
use nixos_nspawn_core::registry::Entry;
use nixos_nspawn_core::{applied, names, paths, profile, statedir};

use super::daemon_reload;
use crate::args::ImportClassicArgs;
use crate::classic::{convert, Conf};
use crate::edit::{self, Found};
use crate::report::Printable;
use crate::systemd::Verb;
use crate::txn::Transaction;
use crate::{not_found, refused, Ctx, EXIT_OK};

/// Where a classic container's files are (new layout first).
struct Classic {
    conf: PathBuf,
    conf_logical: PathBuf,
    state: Option<PathBuf>,
}

fn find_classic(ctx: &Ctx, name: &str) -> Option<Classic> {
    let layouts = [
        ("/etc/nixos-containers", "/var/lib/nixos-containers"),
        ("/etc/containers", "/var/lib/containers"),
    ];
    let state_of = |dir: &str| {
        let p = ctx.root.join(Path::new(dir).join(name));
        std::fs::symlink_metadata(&p).is_ok().then_some(p)
    };
    for (etc, var) in layouts {
        let logical = Path::new(etc).join(format!("{name}.conf"));
        let conf = ctx.root.join(&logical);
        if std::fs::symlink_metadata(&conf).is_ok() {
            return Some(Classic {
                conf,
                conf_logical: logical,
                state: state_of(var).or_else(|| {
                    state_of(if var.contains("nixos-") {
                        "/var/lib/containers"
                    } else {
                        "/var/lib/nixos-containers"
                    })
                }),
            });
        }
    }
    None
}

/// The store path the classic per-container profile points at.
fn classic_profile_system(ctx: &Ctx, name: &str) -> Option<PathBuf> {
    let dir = ctx
        .root
        .join(Path::new("/nix/var/nix/profiles/per-container").join(name));
    let mut link = dir.join("system");
    for _ in 0..8 {
        let target = std::fs::read_link(&link).ok()?;
        if target.is_absolute() {
            return Some(target);
        }
        link = dir.join(target);
    }
    None
}

#[derive(Serialize)]
struct Imported<'a> {
    entry: &'a Entry,
    container: &'a Option<Value>,
    notes: &'a [String],
    dropped: &'a [String],
    state: Option<String>,
    started: bool,
}

/// How the state got to /var/lib/machines/NAME.
enum StateMove {
    None,
    Copied(PathBuf),
    Moved { from: PathBuf, to: PathBuf },
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    log::info!("copying {} to {}", from.display(), to.display());
    let utf8 = |p: &Path| {
        p.to_str()
            .map(str::to_owned)
            .with_context(|| format!("{} is not valid UTF-8", p.display()))
    };
    let args = [
        "--archive".to_owned(),
        "--reflink=auto".to_owned(),
        "--no-target-directory".to_owned(),
        "--".to_owned(),
        utf8(from)?,
        utf8(to)?,
    ];
    hosttools::run_visible(&hosttools::CP.path(), &args)
        .with_context(|| format!("copying {} to {} failed", from.display(), to.display()))
}

/// The act part of an import, each step recording its undo in `tx`.
fn import_steps(
    ctx: &Ctx,
    tx: &mut Transaction,
    a: &ImportClassicArgs,
    classic: &Classic,
    entry: &Entry,
    target_state: &Path,
) -> Result<(StateMove, bool)> {
    let name = &entry.name;
    let before = profile::current(&ctx.root, name)?.map(|g| g.number);
    let set = profile::set_system(&ctx.root, name, Path::new(&entry.system))?;
    tx.done("restoring its profile", {
        let n = name.clone();
        move |ctx| {
            if before.is_none() {
                profile::remove(&ctx.root, &n)
            } else if set.created {
                profile::undo_set(&ctx.root, &n, set.generation, before).map(|_| ())
            } else {
                Ok(())
            }
        }
    });
    let moved = move_state(tx, name, a.move_state, classic, target_state)?;
    {
        let _lock = lock_registry(&ctx.root)?;
        if !matches!(edit::find(&ctx.root, name)?, Found::Missing) {
            bail!("container {name} was created meanwhile by someone else");
        }
        let bytes = edit::write_entry(&ctx.root, entry)?;
        let n = name.clone();
        tx.done("removing its registry entry", move |ctx| {
            let _lock = lock_registry(&ctx.root)?;
            edit::remove_entry_if(&ctx.root, &n, Some(&bytes))?;
            // The generator forgets the container.
            if ctx.sys.available() {
                let _ = ctx.sys.daemon_reload();
            }
            Ok(())
        });
    }
    let imported = classic.conf.with_file_name(format!("{name}.conf.imported"));
    std::fs::rename(&classic.conf, &imported).with_context(|| {
        format!(
            "renaming {} to {}",
            classic.conf.display(),
            imported.display()
        )
    })?;
    let c = classic.conf.clone();
    tx.done("renaming the classic file back", move |_| {
        std::fs::rename(&imported, &c)
            .with_context(|| format!("renaming {} back", imported.display()))
    });
    daemon_reload(ctx)?;
    if !a.start {
        return Ok((moved, false));
    }
    // Recorded first: a start that failed half-way leaves a unit running.
    let n = name.clone();
    tx.done("removing its applied state", move |ctx| {
        applied::remove(&ctx.root, &n)
    });
    let n = name.clone();
    tx.done("stopping it", move |ctx| ctx.sys.unit(Verb::Stop, &n));
    ctx.sys.unit(Verb::Start, name).with_context(|| {
        format!("starting {name} failed (see journalctl -u systemd-nspawn@{name}.service)")
    })?;
    Ok((moved, true))
}

/// The classic state directory moved (`--move-state`: renamed) or copied
/// to `target`, the undo recorded in `tx`.
fn move_state(
    tx: &mut Transaction,
    name: &str,
    rename: bool,
    classic: &Classic,
    target: &Path,
) -> Result<StateMove> {
    let Some(from) = &classic.state else {
        return Ok(StateMove::None);
    };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    if !rename {
        // Recorded first: a copy that failed half-way leaves a part behind.
        let n = name.to_owned();
        tx.done("removing the copied state", move |ctx| {
            statedir::delete(&ctx.root, &n).map(|_| ())
        });
        copy_tree(from, target)?;
        return Ok(StateMove::Copied(from.clone()));
    }
    std::fs::rename(from, target).map_err(|e| {
        if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) {
            anyhow::anyhow!(
                "{} and {} are on different file systems: --move-state can only rename; without it the state is copied",
                from.display(),
                target.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("moving {} to {}", from.display(), target.display()))
        }
    })?;
    let (f, t) = (from.clone(), target.to_path_buf());
    tx.done("moving the state back", move |_| {
        std::fs::rename(&t, &f)
            .with_context(|| format!("moving {} back to {}", t.display(), f.display()))
    });
    Ok(StateMove::Moved {
        from: from.clone(),
        to: target.to_path_buf(),
    })
}

pub fn run(ctx: &mut Ctx, a: ImportClassicArgs) -> Result<i32> {
    let name = a.name.clone();
    let Some(classic) = find_classic(ctx, &name) else {
        return Err(not_found(format!(
            "there is no classic container {name} (neither /etc/nixos-containers/{name}.conf nor /etc/containers/{name}.conf)"
        )));
    };
    if let Ok(target) = std::fs::read_link(&classic.conf) {
        if target.starts_with("/etc/static") || target.starts_with("/nix/store") {
            return Err(refused(format!(
                "{} links to {}: {name} is a declarative classic container; migrate containers.{name} in configuration.nix as docs/migration.md describes",
                classic.conf_logical.display(),
                target.display()
            )));
        }
    }
    if let Err(e) = names::check_machine_name(&name) {
        return Err(refused(format!(
            "{name:?} cannot be a nixos-nspawn container name: it {e}"
        )));
    }
    if !matches!(edit::find(&ctx.root, &name)?, Found::Missing) {
        return Err(refused(format!(
            "container {name} exists already ({})",
            paths::registry_file(&name).display()
        )));
    }
    let target_state = ctx.root.join(paths::machine_dir(&name));
    if std::fs::symlink_metadata(&target_state).is_ok() {
        return Err(refused(format!(
            "{} exists already; move it away first",
            paths::machine_dir(&name).display()
        )));
    }
    if ctx.sys.available() {
        let unit = format!("container@{name}.service");
        let state = ctx.sys.other_unit(&unit)?;
        if state.is_running()
            || state.active_state == "deactivating"
            || ctx.sys.leader(&name).is_some()
        {
            return Err(refused(format!(
                "{name} is running ({unit} is {}); stop it first: nixos-container stop {name}",
                state.active_state
            )));
        }
    }
    let text = std::fs::read_to_string(&classic.conf)
        .with_context(|| format!("reading {}", classic.conf.display()))?;
    let system = classic_profile_system(ctx, &name);
    let conv = convert(
        &name,
        &Conf::parse(&text),
        system.as_ref().and_then(|p| p.to_str()),
    );
    if conv.entry.system.is_empty() {
        return Err(not_found(format!(
            "cannot tell which system {name} runs: no /nix/var/nix/profiles/per-container/{name}/system and no SYSTEM_PATH= in {}",
            classic.conf_logical.display()
        )));
    }
    if !conv.unsupported.is_empty() && !a.force {
        return Err(refused(format!(
            "{name} has settings nixos-nspawn cannot carry over (nothing was changed; --force drops them):\n  {}",
            conv.unsupported.join("\n  ")
        )));
    }
    // Imported containers keep what classic gave them (PRIVATE_USERS), so
    // their state stays owned as it is; a user namespace only when asked.
    let mut converted = conv.entry.clone();
    converted.user_namespacing |= a.user_namespacing;
    let entry = edit::validate(&converted)
        .with_context(|| format!("the converted entry of {name} is invalid"))?;
    let sys_path = PathBuf::from(&entry.system);
    crate::nixbuild::check_system(&sys_path, true)?;

    // Act: profile, state, entry, the classic file renamed, daemon-reload,
    // start; undone in reverse when a step fails.
    let mut tx = Transaction::new();
    let steps = import_steps(ctx, &mut tx, &a, &classic, &entry, &target_state);
    let (moved, started) = tx.finish(ctx, steps).map_err(|f| {
        f.report(
            &format!("importing {name} failed"),
            "everything was undone",
            "undoing left problems",
        )
    })?;
    let state = match &moved {
        StateMove::None => None,
        StateMove::Copied(from) => Some(format!(
            "copied {} to {}",
            from.display(),
            paths::machine_dir(&name).display()
        )),
        StateMove::Moved { from, to } => {
            Some(format!("moved {} to {}", from.display(), to.display()))
        }
    };
    let imported = Imported {
        entry: &entry,
        container: &conv.container,
        notes: &conv.notes,
        dropped: &conv.unsupported,
        state,
        started,
    };
    ctx.print(a.json, &imported)?;
    Ok(EXIT_OK)
}

impl Printable for Imported<'_> {
    fn text(&self) -> String {
        let name = &self.entry.name;
        let mut lines = vec![format!(
            "Imported classic container {name}: generation 1 of its profile is {}{}",
            self.entry.system,
            if self.started { ", running" } else { "" }
        )];
        match &self.state {
            Some(s) => lines.push(format!("State: {s}")),
            None => lines.push(format!(
                "State: the classic container had no state directory; {} starts empty",
                paths::machine_dir(name).display()
            )),
        }
        lines.push(format!(
            "Registry entry {}:",
            paths::registry_file(name).display()
        ));
        lines.push(self.entry.to_json().trim_end().to_owned());
        for d in self.dropped {
            lines.push(format!("dropped (--force): {d}"));
        }
        for n in self.notes {
            lines.push(format!("note: {n}"));
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{exit_of, Env};
    use crate::{exit_code, EXIT_NOT_FOUND, EXIT_REFUSED};
    use nixos_nspawn_core::registry;

    const ODD: &str = "PRIVATE_NETWORK=1\nLOCAL_ADDRESS=10.0.0.2/24\nHOST_PORT=tcp:x,80\nNETWORK_NAMESPACE_PATH=/run/netns/x\nEXTRA_NSPAWN_FLAGS=\"--kill-signal SIGTERM\"\n";

    const IMPERATIVE: &str = "PRIVATE_NETWORK=1\nHOST_ADDRESS=10.233.1.1\nLOCAL_ADDRESS=10.233.1.2\nHOST_BRIDGE=\nHOST_PORT=\nAUTO_START=0\n";
    fn setup(env: &Env, name: &str, conf: &str, with_state: bool) -> PathBuf {
        let root = env.root();
        let sys = env.system("classic", None);
        let conf_path = root.join(format!("/etc/nixos-containers/{name}.conf"));
        std::fs::create_dir_all(conf_path.parent().unwrap()).unwrap();
        std::fs::write(&conf_path, conf).unwrap();
        let prof = root.join(format!("/nix/var/nix/profiles/per-container/{name}"));
        std::fs::create_dir_all(&prof).unwrap();
        std::os::unix::fs::symlink(&sys, prof.join("system-1-link")).unwrap();
        std::os::unix::fs::symlink("system-1-link", prof.join("system")).unwrap();
        if with_state {
            let st = root.join(format!("/var/lib/nixos-containers/{name}"));
            std::fs::create_dir_all(st.join("etc")).unwrap();
            std::fs::write(st.join("etc/hostname"), name).unwrap();
            std::os::unix::fs::symlink("/etc/passwd", st.join("etc/link")).unwrap();
        }
        sys
    }

    /// The classic imperative container old, with state, and the arguments
    /// to import it.
    fn old() -> (Env, ImportClassicArgs) {
        let env = Env::new();
        setup(&env, "old", IMPERATIVE, true);
        (env, args("old"))
    }

    fn args(name: &str) -> ImportClassicArgs {
        ImportClassicArgs {
            verbose: false,
            name: name.into(),
            move_state: false,
            force: false,
            start: false,
            user_namespacing: false,
            json: false,
        }
    }

    #[test]
    fn imports_by_copying() {
        let mut env = Env::new();
        let sys = setup(&env, "old", IMPERATIVE, true);
        run(&mut env.ctx(), args("old")).unwrap();
        let out = env.output();
        assert!(
            out.contains("Imported classic container old") && out.contains("State: copied"),
            "{out}"
        );
        let root = env.root();
        let e = registry::load_entry(&root, "old").unwrap();
        assert_eq!(e.system, sys.to_str().unwrap());
        assert!(
            !e.user_namespacing,
            "imported without a user namespace (classic's PRIVATE_USERS)"
        );
        assert_eq!(profile::current(&root, "old").unwrap().unwrap().number, 1);
        assert_eq!(
            std::fs::read_to_string(root.join("/var/lib/machines/old/etc/hostname")).unwrap(),
            "old"
        );
        assert!(
            std::fs::symlink_metadata(root.join("/var/lib/machines/old/etc/link"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(
            root.join("/var/lib/nixos-containers/old/etc/hostname")
                .exists(),
            "classic state kept"
        );
        assert!(root
            .join("/etc/nixos-containers/old.conf.imported")
            .exists());
        assert!(!root.join("/etc/nixos-containers/old.conf").exists());
        assert_eq!(env.sys.calls(), vec!["daemon-reload"]);
        // Again: there is no classic container any more.
        assert_eq!(exit_of(run(&mut env.ctx(), args("old"))), EXIT_NOT_FOUND);
    }

    #[test]
    fn imports_by_moving_and_starts() {
        let (mut env, mut a) = old();
        a.move_state = true;
        a.start = true;
        a.json = true;
        run(&mut env.ctx(), a).unwrap();
        let v: Value = serde_json::from_str(&env.output()).unwrap();
        assert_eq!(v["started"], true);
        assert!(v["state"].as_str().unwrap().starts_with("moved"));
        assert_eq!(v["entry"]["network"]["mode"], "veth");
        assert_eq!(v["entry"]["userNamespacing"], false);
        let root = env.root();
        assert!(!root.join("/var/lib/nixos-containers/old").exists());
        assert!(root.join("/var/lib/machines/old/etc/hostname").exists());
        assert_eq!(env.sys.calls(), vec!["daemon-reload", "start old"]);
    }

    #[test]
    fn a_user_namespace_only_when_asked() {
        let (mut env, mut a) = old();
        a.user_namespacing = true;
        run(&mut env.ctx(), a).unwrap();
        assert!(
            registry::load_entry(&env.root(), "old")
                .unwrap()
                .user_namespacing
        );
    }

    #[test]
    fn failure_undoes_everything() {
        let (mut env, mut a) = old();
        env.sys.fail_on("start old");
        a.move_state = true;
        a.start = true;
        let err = run(&mut env.ctx(), a).unwrap_err();
        assert!(
            format!("{err:#}").contains("everything was undone"),
            "{err:#}"
        );
        let root = env.root();
        assert!(
            root.join("/var/lib/nixos-containers/old/etc/hostname")
                .exists(),
            "moved back"
        );
        assert!(!root.join("/var/lib/machines/old").exists());
        assert!(root.join("/etc/nixos-containers/old.conf").exists());
        assert!(!edit::registry_path(&root, "old").exists());
        assert!(!root.join(paths::profile_dir("old")).exists());
        // A failed start is stopped (it may have left the unit half up), and
        // systemd reloaded once the entry is gone.
        let calls = env.sys.calls();
        let tail = &calls[calls.len() - 3..];
        assert_eq!(
            tail,
            ["start old", "stop old", "daemon-reload"],
            "{calls:?}"
        );
    }

    #[test]
    fn refusals() {
        let mut env = Env::new();
        setup(&env, "odd", ODD, false);
        let err = run(&mut env.ctx(), args("odd")).unwrap_err();
        assert_eq!(exit_code(&err), EXIT_REFUSED);
        assert!(err.to_string().contains("NETWORK_NAMESPACE_PATH"), "{err}");
        assert!(!edit::registry_path(&env.root(), "odd").exists());
        let mut a = args("odd");
        a.force = true;
        run(&mut env.ctx(), a).unwrap();
        let out = env.output();
        assert!(
            out.contains("dropped (--force): NETWORK_NAMESPACE_PATH")
                && out.contains("had no state directory"),
            "{out}"
        );

        setup(&env, "busy", IMPERATIVE, true);
        env.sys.states.lock().unwrap().insert(
            "container@busy.service".into(),
            crate::systemd::UnitState::new("active", "running"),
        );
        assert_eq!(exit_of(run(&mut env.ctx(), args("busy"))), EXIT_REFUSED);

        // A declarative classic container (its .conf links into /etc/static).
        let root = env.root();
        std::os::unix::fs::symlink(
            "/etc/static/nixos-containers/decl.conf",
            root.join("/etc/nixos-containers/decl.conf"),
        )
        .unwrap();
        assert_eq!(exit_of(run(&mut env.ctx(), args("decl"))), EXIT_REFUSED);
        // Names nixos-nspawn cannot take.
        std::fs::write(root.join("/etc/nixos-containers/bad_name.conf"), IMPERATIVE).unwrap();
        assert_eq!(exit_of(run(&mut env.ctx(), args("bad_name"))), EXIT_REFUSED);
    }
}
