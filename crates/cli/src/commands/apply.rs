//! `apply [--dry-run] [NAME…]` and `autostart [--dry-run]`.
//!
//! apply: daemon-reload (not in a dry run, and not when systemd has loaded
//! the registry as it is, [`nixos_nspawn_core::loaded`]), then for every container in the
//! registry, every name with an applied record (removed from the registry but
//! maybe still running) and every invalid registry file, the decision of
//! [`nixos_nspawn_core::plan::decide`] from the entry, the applied record and the
//! unit's state (one D-Bus call, `ListUnitsByPatterns`). The plan is printed
//! (`NAME: ACTION — REASON`), then carried out, a few units at a time; a
//! failing action (a failing reload is a failing switch-to-configuration)
//! does not stop the others and makes the exit status 1. A container whose
//! registry file is invalid is left alone (never stopped because of a typo)
//! and also makes the exit status 1.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use nixos_nspawn_core::plan::{self, Action};
use nixos_nspawn_core::registry;
use nixos_nspawn_core::{applied, loaded, paths};

use crate::args::{ApplyArgs, AutostartArgs};
use crate::report::Printable;
use crate::systemd::{Systemd, UnitState, Verb};
use crate::{edit, not_found, Ctx, EXIT_ERROR, EXIT_OK};

/// At most this many systemctl jobs at once.
const PARALLEL: usize = 8;

#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub name: String,
    pub action: Action,
    pub reason: String,
    /// planned (dry run), done, failed, skipped (invalid entry), nothing
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

const AUTOSTART_NONE: &str = "Every container with autoStart runs already.";

/// The plan (`NAME: ACTION — REASON` lines, or the second field when there
/// is nothing), and with its outcome the JSON of `apply` and `autostart`.
#[derive(Serialize)]
#[serde(transparent)]
struct Plans<'a>(&'a [Planned], #[serde(skip)] &'static str);

impl Printable for Plans<'_> {
    fn text(&self) -> String {
        if self.0.is_empty() {
            return self.1.to_owned();
        }
        let lines: Vec<String> = self
            .0
            .iter()
            .map(|p| format!("{}: {} — {}", p.name, p.action.as_str(), p.reason))
            .collect();
        lines.join("\n")
    }
}

fn verb(action: Action) -> Option<Verb> {
    match action {
        Action::Nothing => None,
        Action::Start => Some(Verb::Start),
        Action::Reload => Some(Verb::Reload),
        Action::Restart => Some(Verb::Restart),
        Action::Stop => Some(Verb::Stop),
    }
}

/// Carry out the plans' actions, [`PARALLEL`] at a time.
fn execute(sys: &dyn Systemd, plans: &mut [Planned]) {
    let todo: Vec<usize> = (0..plans.len())
        .filter(|i| verb(plans[*i].action).is_some() && plans[*i].result == "planned")
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<BTreeMap<usize, Result<(), String>>> = Mutex::new(BTreeMap::new());
    let jobs: Vec<(usize, Verb, String)> = todo
        .iter()
        .map(|i| {
            (
                *i,
                verb(plans[*i].action).expect("filtered"),
                plans[*i].name.clone(),
            )
        })
        .collect();
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(jobs.len()) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some((i, v, name)) = jobs.get(k) else {
                    break;
                };
                log::debug!("{} {name}", v.as_str());
                let r = sys.unit(*v, name).map_err(|e| format!("{e:#}"));
                results.lock().expect("not poisoned").insert(*i, r);
            });
        }
    });
    for (i, r) in results.into_inner().expect("not poisoned") {
        match r {
            Ok(()) => plans[i].result = "done",
            Err(e) => {
                plans[i].result = "failed";
                plans[i].error = Some(e);
            }
        }
    }
}

/// A container about to be started, restarted or reloaded whose unit has no
/// drop-in from the generator would run systemd's plain template (or fail
/// with "No image"): mark it failed with the reason instead.
fn refuse_without_drop_in(ctx: &Ctx, reg: &registry::Registry, plans: &mut [Planned]) {
    let acting: Vec<String> = plans
        .iter()
        .filter(|p| {
            matches!(p.action, Action::Start | Action::Restart | Action::Reload)
                && reg.get(&p.name).is_some()
        })
        .map(|p| p.name.clone())
        .collect();
    if acting.is_empty() {
        return;
    }
    let drop_ins = match ctx.sys.drop_ins(&acting) {
        Ok(d) => d,
        Err(e) => {
            log::warn!("cannot ask systemd for the containers' drop-ins: {e:#}");
            return;
        }
    };
    for p in plans.iter_mut().filter(|p| acting.contains(&p.name)) {
        let details = crate::systemd::UnitDetails {
            drop_ins: drop_ins.get(&p.name).cloned().unwrap_or_default(),
            ..Default::default()
        };
        if !details.has_generated_drop_in(&p.name) {
            p.result = "failed";
            p.error = Some(format!(
                "not done: systemd has no drop-in from the nixos-nspawn generator for systemd-nspawn@{}.service \
                 (the generator is not installed, or not where systemd looks)",
                p.name
            ));
        }
    }
}

fn unit_states(ctx: &Ctx, dry_run: bool) -> Result<BTreeMap<String, UnitState>> {
    if !ctx.sys.available() {
        if dry_run {
            log::warn!("systemd is not running here: planning as if no container runs");
            return Ok(BTreeMap::new());
        }
        bail!("systemd is not running here: nothing can be applied (--dry-run shows the plan)");
    }
    ctx.sys
        .unit_states()
        .context("asking systemd for the containers' states")
}

/// Exit 1 naming the directory when the registry (or the zones) cannot be
/// listed: a dangling link to a file system that is not mounted yet, a file
/// in its place, no permission.
fn refuse_unreadable(reg: &registry::Registry) -> Result<()> {
    if let Some(e) = reg.errors.iter().find(|e| registry::is_unreadable_dir(e)) {
        bail!("not applying anything: {e}; no container was started, stopped or changed");
    }
    Ok(())
}

/// Warn about every admin's `.nspawn` file that replaces ours.
fn warn_overrides(ctx: &Ctx, plans: &[Planned]) {
    for p in plans {
        if let Some(f) = nixos_nspawn_core::output::nspawn_override(&ctx.root, &p.name) {
            log::warn!(
                "{}",
                nixos_nspawn_core::output::nspawn_override_warning(&p.name, &f)
            );
        }
    }
}

/// What to do with each of `all` ([`plan::decide`]; invalid entries are
/// skipped).
fn decide_all(
    ctx: &Ctx,
    reg: &registry::Registry,
    invalid: &BTreeSet<String>,
    all: &BTreeSet<String>,
    states: &BTreeMap<String, UnitState>,
) -> Vec<Planned> {
    let mut plans = Vec::with_capacity(all.len());
    for name in all {
        if invalid.contains(name) {
            plans.push(Planned {
                name: name.clone(),
                action: Action::Nothing,
                reason: "its registry file is invalid (see the errors above); left alone".into(),
                result: "skipped",
                error: None,
            });
            continue;
        }
        let desired = reg.get(name);
        let applied = applied::read(&ctx.root, name).unwrap_or_else(|e| {
            log::warn!("ignoring the applied state of {name}: {e:#}");
            None
        });
        let running = states.get(name).is_some_and(UnitState::is_running);
        let d = plan::decide(desired, applied.as_ref().map(|a| &a.entry), running);
        plans.push(Planned {
            name: name.clone(),
            result: "planned",
            action: d.action,
            reason: d.reason,
            error: None,
        });
    }
    plans
}

/// After carrying out: "nothing" for what needed nothing, and the applied
/// record of what no longer runs and is no longer registered removed.
fn forget_gone(
    ctx: &Ctx,
    reg: &registry::Registry,
    invalid: &BTreeSet<String>,
    plans: &mut [Planned],
) {
    for p in plans.iter_mut() {
        if p.action == Action::Nothing && p.result == "planned" {
            p.result = "nothing";
        }
        // Forget what no longer runs and is no longer registered.
        let gone = reg.get(&p.name).is_none() && !invalid.contains(&p.name);
        let stopped = (p.action == Action::Stop && p.result == "done")
            || (p.action == Action::Nothing && gone);
        if gone && stopped {
            if let Err(e) = applied::remove(&ctx.root, &p.name) {
                log::warn!("removing the applied state of {}: {e:#}", p.name);
            }
        }
    }
}

pub fn run_apply(ctx: &mut Ctx, a: ApplyArgs) -> Result<i32> {
    for n in &a.names {
        edit::check_name(n)?;
    }
    // Asked before the registry is read: files written after this make the
    // record stale for the next apply, never this plan older than systemd.
    let current = !a.dry_run && loaded::is_current(&ctx.root);
    // An unreadable registry says nothing about what should run: never stop
    // (or start) anything on it, and do not let the generator drop the units.
    let mut reg = registry::load(&ctx.root);
    refuse_unreadable(&reg)?;
    if !a.dry_run {
        if !ctx.sys.available() {
            bail!("systemd is not running here: nothing can be applied (--dry-run shows the plan)");
        }
        if current {
            // The generator's last run (at boot, or the last daemon-reload
            // of anyone) read the registry as it is: a reload changes nothing.
            log::info!(
                "systemd has loaded the registry as it is ({} is current): not reloading it",
                paths::SYSTEMD_RECORD
            );
        } else {
            ctx.sys
                .daemon_reload()
                .context("systemctl daemon-reload failed")?;
            // The plan follows what the generator just read.
            reg = registry::load(&ctx.root);
            refuse_unreadable(&reg)?;
        }
        super::sync_networkd(ctx);
    }
    let mut invalid = BTreeSet::new();
    for e in &reg.errors {
        log::error!("{e}");
        if e.file.parent() == Some(Path::new(paths::REGISTRY_DIR)) {
            if let Some(stem) = e.file.file_stem().and_then(|s| s.to_str()) {
                invalid.insert(stem.to_owned());
            }
        }
    }
    let autostart = reg.containers.iter().filter(|e| e.auto_start).count() as u64;
    for w in super::host_warnings(&ctx.root, &reg, autostart, None) {
        log::warn!("{w}");
    }
    let applied_names = applied::names(&ctx.root).unwrap_or_else(|e| {
        log::warn!("cannot list the applied states: {e:#}");
        Vec::new()
    });
    let states = unit_states(ctx, a.dry_run)?;
    let mut all: BTreeSet<String> = reg.containers.iter().map(|e| e.name.clone()).collect();
    all.extend(applied_names);
    all.extend(invalid.iter().cloned());
    if !a.names.is_empty() {
        for n in &a.names {
            if !all.contains(n) {
                return Err(not_found(format!(
                    "there is no container {n} (neither in the registry nor applied)"
                )));
            }
        }
        all = a.names.iter().cloned().collect();
    }

    let mut plans = decide_all(ctx, &reg, &invalid, &all, &states);
    warn_overrides(ctx, &plans);
    ctx.preview(a.json, &Plans(&plans, "No containers."))?;
    if !a.dry_run {
        ctx.flush()?;
        refuse_without_drop_in(ctx, &reg, &mut plans);
        execute(ctx.sys, &mut plans);
        forget_gone(ctx, &reg, &invalid, &mut plans);
    }
    let failed: Vec<&Planned> = plans.iter().filter(|p| p.result == "failed").collect();
    for p in &failed {
        log::error!(
            "{}: {} failed: {}",
            p.name,
            p.action.as_str(),
            p.error.as_deref().unwrap_or("")
        );
    }
    if !failed.is_empty() || !invalid.is_empty() {
        log::error!("nixos-nspawn doctor checks the host and says how to fix what it finds");
    }
    ctx.outcome(a.json, &Plans(&plans, ""))?;
    Ok(if failed.is_empty() && invalid.is_empty() {
        EXIT_OK
    } else {
        EXIT_ERROR
    })
}

pub fn run_autostart(ctx: &mut Ctx, a: AutostartArgs) -> Result<i32> {
    let reg = registry::load(&ctx.root);
    for e in &reg.errors {
        log::warn!("{e}");
    }
    let states = unit_states(ctx, a.dry_run)?;
    let mut plans: Vec<Planned> = reg
        .containers
        .iter()
        .filter(|e| e.auto_start && !states.get(&e.name).is_some_and(UnitState::is_running))
        .map(|e| Planned {
            name: e.name.clone(),
            action: Action::Start,
            reason: "autoStart is on and it is not running".into(),
            result: "planned",
            error: None,
        })
        .collect();
    warn_overrides(ctx, &plans);
    ctx.preview(a.json, &Plans(&plans, AUTOSTART_NONE))?;
    if !a.dry_run {
        ctx.flush()?;
        refuse_without_drop_in(ctx, &reg, &mut plans);
        execute(ctx.sys, &mut plans);
    }
    let failed = plans.iter().filter(|p| p.result == "failed").count();
    for p in plans.iter().filter(|p| p.result == "failed") {
        log::error!(
            "{}: start failed: {}",
            p.name,
            p.error.as_deref().unwrap_or("")
        );
    }
    ctx.outcome(a.json, &Plans(&plans, AUTOSTART_NONE))?;
    Ok(if failed == 0 { EXIT_OK } else { EXIT_ERROR })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Env;
    use crate::{exit_code, EXIT_NOT_FOUND};
    use nixos_nspawn_core::applied::Applied;
    use nixos_nspawn_core::registry::{BindMount, Entry, Strategy};

    fn args(dry_run: bool, json: bool, names: &[&str]) -> ApplyArgs {
        ApplyArgs {
            verbose: false,
            dry_run,
            json,
            names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Runs `apply` with those arguments and returns its exit code.
    fn apply(env: &mut Env, dry_run: bool, json: bool, names: &[&str]) -> i32 {
        run_apply(&mut env.ctx(), args(dry_run, json, names)).unwrap()
    }

    /// web: only system changed (reload); db: bind mounts changed (restart);
    /// cache: not running, autoStart (start); old: removed but running
    /// (stop); idle: not running, no autoStart; same: up to date.
    fn scenario(env: &Env) {
        let root = env.root();
        let put = |e: &Entry, applied_as: Option<&Entry>, running: bool| {
            edit::write_entry(&root, e).unwrap();
            if let Some(a) = applied_as {
                applied::write(&root, &Applied::now(a.clone(), Some(1), "start")).unwrap();
            }
            if running {
                env.sys.set_running(&e.name);
            }
        };
        let web = Entry::new("web", "/nix/store/bbbb-web");
        put(&web, Some(&Entry::new("web", "/nix/store/aaaa-web")), true);
        let mut db = Entry::new("db", "/nix/store/aaaa-db");
        let db_old = db.clone();
        db.bind_mounts.push(BindMount::parse("/srv").unwrap());
        put(&db, Some(&db_old), true);
        put(&Entry::new("cache", "/nix/store/aaaa-cache"), None, false);
        let mut idle = Entry::new("idle", "/nix/store/aaaa-idle");
        idle.auto_start = false;
        put(&idle, None, false);
        let same = Entry::new("same", "/nix/store/aaaa-same");
        put(&same, Some(&same), true);
        applied::write(
            &root,
            &Applied::now(Entry::new("old", "/nix/store/aaaa-old"), Some(1), "start"),
        )
        .unwrap();
        env.sys.set_running("old");
    }

    #[test]
    fn plans_and_reasons() {
        let mut env = Env::new();
        scenario(&env);
        assert_eq!(apply(&mut env, true, false, &[]), 0);
        assert_eq!(
            env.output(),
            "cache: start — not running and autoStart is on\n\
             db: restart — bindMounts changed\n\
             idle: nothing — not running and autoStart is off\n\
             old: stop — removed from the registry but still running\n\
             same: nothing — up to date\n\
             web: reload — only system changed\n"
        );
        assert_eq!(
            env.sys.calls(),
            vec!["unit-states"],
            "a dry run changes nothing"
        );
    }

    #[test]
    fn executes_everything() {
        let mut env = Env::new();
        scenario(&env);
        assert_eq!(apply(&mut env, false, true, &[]), 0);
        let v: serde_json::Value = serde_json::from_str(&env.output()).unwrap();
        let results: Vec<(String, String)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().into(),
                    p["result"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert!(results.contains(&("web".into(), "done".into())));
        assert!(results.contains(&("same".into(), "nothing".into())));
        let mut calls = env.sys.calls();
        assert_eq!(calls[0], "daemon-reload");
        calls.sort();
        assert_eq!(
            calls,
            vec![
                "daemon-reload",
                "reload web",
                "restart db",
                "show drop-ins",
                "start cache",
                "stop old",
                "unit-states"
            ]
        );
        assert!(
            applied::read(&env.root(), "old").unwrap().is_none(),
            "stopped and gone: forgotten"
        );
    }

    #[test]
    fn failures_do_not_stop_the_rest() {
        let mut env = Env::new();
        scenario(&env);
        env.sys.fail_on("reload web");
        assert_eq!(apply(&mut env, false, false, &[]), 1);
        let calls = env.sys.calls();
        assert!(
            calls.contains(&"restart db".to_string()) && calls.contains(&"stop old".to_string())
        );
    }

    #[test]
    fn only_named_and_invalid_ones_are_left_alone() {
        let mut env = Env::new();
        scenario(&env);
        assert_eq!(apply(&mut env, false, false, &["web"]), 0);
        assert_eq!(env.output(), "web: reload — only system changed\n");
        let err = run_apply(&mut env.ctx(), args(true, false, &["nope"])).unwrap_err();
        assert_eq!(exit_code(&err), EXIT_NOT_FOUND);
        // A typo in a running container's file never stops it.
        std::fs::write(
            edit::registry_path(&env.root(), "same"),
            "{\"version\": 1, \"name\": \"same\"",
        )
        .unwrap();
        env.sys.clear();
        assert_eq!(apply(&mut env, false, false, &["same"]), 1);
        assert!(env
            .output()
            .contains("same: nothing — its registry file is invalid"));
        assert_eq!(env.sys.calls(), vec!["daemon-reload", "unit-states"]);
    }

    #[test]
    fn strategy_none_is_never_touched() {
        let mut env = Env::new();
        let root = env.root();
        let mut e = Entry::new("web", "/nix/store/bbbb");
        e.activation.strategy = Strategy::None;
        let mut old = e.clone();
        old.system = "/nix/store/aaaa".into();
        edit::write_entry(&root, &e).unwrap();
        applied::write(&root, &Applied::now(old, Some(1), "start")).unwrap();
        env.sys.set_running("web");
        apply(&mut env, false, false, &[]);
        assert_eq!(
            env.output(),
            "web: nothing — system changed, but the strategy is none\n"
        );
        assert_eq!(env.sys.calls(), vec!["daemon-reload", "unit-states"]);
    }

    /// Issue 12: a registry directory that cannot be listed (a dangling link
    /// to a /persist not mounted yet, a file in its place) made apply stop
    /// every running container, delete their applied records and exit 0.
    #[test]
    fn an_unreadable_registry_stops_nothing() {
        for how in ["dangling link", "file"] {
            let mut env = Env::new();
            scenario(&env);
            let root = env.root();
            let dir = root.registry_dir();
            std::fs::rename(&dir, root.join("/etc/nixos-nspawn/moved")).unwrap();
            match how {
                "file" => std::fs::write(&dir, "").unwrap(),
                _ => std::os::unix::fs::symlink("/persist/etc/nixos-nspawn/containers", &dir)
                    .unwrap(),
            }
            env.sys.clear();
            let err = run_apply(&mut env.ctx(), args(false, false, &[])).unwrap_err();
            let text = format!("{err:#}");
            assert!(
                text.starts_with(
                    "not applying anything: /etc/nixos-nspawn/containers: cannot be listed"
                ),
                "{how}: {text}"
            );
            if how == "dangling link" {
                assert!(
                    text.contains("/persist/etc/nixos-nspawn/containers, which does not exist"),
                    "{text}"
                );
            }
            assert_eq!(exit_code(&err), 1);
            assert!(env.sys.calls().is_empty(), "{how}: {:?}", env.sys.calls());
            assert!(applied::read(&root, "old").unwrap().is_some(), "{how}");
            assert!(applied::read(&root, "web").unwrap().is_some(), "{how}");
        }
    }

    /// The generator rewrote a networkd file at daemon-reload: apply makes
    /// networkd load it, once.
    #[test]
    fn reloads_networkd_when_our_files_changed() {
        let mut env = Env::new();
        scenario(&env);
        let root = env.root();
        let dir = root.network_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("20-nixos-nspawn-ve-web.network"),
            format!(
                "{}x\n[Match]\nName=ve-web\n",
                nixos_nspawn_core::HEADER_PREFIX
            ),
        )
        .unwrap();
        apply(&mut env, false, false, &[]);
        let calls = env.sys.calls();
        assert_eq!(
            &calls[..2],
            ["daemon-reload", "networkctl reload"],
            "{calls:?}"
        );
        env.sys.clear();
        apply(&mut env, false, false, &[]);
        assert!(!env.sys.calls().contains(&"networkctl reload".to_string()));
    }

    /// The generator recorded the registry it rendered (when systemd ran
    /// it): apply does not reload systemd until the registry changes.
    #[test]
    fn reloads_systemd_only_when_the_registry_changed_since_the_generator_ran() {
        let mut env = Env::new();
        scenario(&env);
        let root = env.root();
        nixos_nspawn_core::loaded::record(&root, &loaded::inputs(&root)).unwrap();
        apply(&mut env, false, false, &[]);
        let calls = env.sys.calls();
        assert!(!calls.contains(&"daemon-reload".to_string()), "{calls:?}");
        // The plan is still carried out.
        assert!(
            calls.iter().any(|c| c.starts_with("reload web")),
            "{calls:?}"
        );

        env.sys.clear();
        let mut web = Entry::new("web", "/nix/store/cccc-web");
        web.auto_start = true;
        edit::write_entry(&root, &web).unwrap();
        apply(&mut env, false, false, &[]);
        let calls = env.sys.calls();
        assert_eq!(
            calls.first().map(String::as_str),
            Some("daemon-reload"),
            "{calls:?}"
        );
    }

    #[test]
    fn without_systemd() {
        let mut env = Env::new();
        scenario(&env);
        env.sys.unavailable = true;
        assert!(run_apply(&mut env.ctx(), args(false, false, &[])).is_err());
        apply(&mut env, true, false, &[]);
        let out = env.output();
        assert!(
            out.contains("web: start — not running and autoStart is on"),
            "{out}"
        );
    }

    fn autostart(env: &mut Env, dry_run: bool, json: bool) {
        run_autostart(
            &mut env.ctx(),
            AutostartArgs {
                verbose: false,
                dry_run,
                json,
            },
        )
        .unwrap();
    }

    #[test]
    fn autostart_starts_what_is_due() {
        let mut env = Env::new();
        scenario(&env);
        autostart(&mut env, true, false);
        assert_eq!(
            env.output(),
            "cache: start — autoStart is on and it is not running\n"
        );
        assert_eq!(env.sys.calls(), vec!["unit-states"]);
        env.sys.clear();
        autostart(&mut env, false, true);
        assert_eq!(
            env.sys.calls(),
            vec!["unit-states", "show drop-ins", "start cache"]
        );
        let v: serde_json::Value = serde_json::from_str(&env.output()).unwrap();
        assert_eq!(v[0]["result"], "done");
        env.sys.clear();
        autostart(&mut env, false, false);
        assert_eq!(
            env.output(),
            "Every container with autoStart runs already.\n"
        );
    }

    #[test]
    fn without_the_generator_nothing_is_started() {
        let mut env = Env::new();
        scenario(&env);
        env.sys.no_generator = true;
        assert_eq!(apply(&mut env, false, true, &[]), EXIT_ERROR);
        let v: serde_json::Value = serde_json::from_str(&env.output()).unwrap();
        let cache = v
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "cache")
            .unwrap();
        assert_eq!(cache["result"], "failed");
        assert!(
            cache["error"]
                .as_str()
                .unwrap()
                .contains("no drop-in from the nixos-nspawn generator"),
            "{cache}"
        );
        // Only the stop of a removed container went to systemd.
        let acted: Vec<String> = env
            .sys
            .calls()
            .into_iter()
            .filter(|c| {
                ["start ", "reload ", "restart "]
                    .iter()
                    .any(|v| c.starts_with(v))
            })
            .collect();
        assert!(acted.is_empty(), "{acted:?}");
        assert!(env.sys.calls().contains(&"stop old".to_owned()));
    }
}
