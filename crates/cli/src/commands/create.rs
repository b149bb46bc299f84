//! `create NAME (--config|--flake|--system …) [options]`.
//!
//! Order: check the name is free, build (outside any lock), compute and
//! validate the entry, then under the registry lock make the system
//! generation 1 (or the next generation of a leftover profile) and write the
//! entry;
//! then daemon-reload and start, as steps of a [`Transaction`]: a failure
//! undoes the steps before in reverse (the container stopped, the applied
//! record and a state directory the start caused removed, its entry removed
//! (only if it is still ours) and systemd reloaded, the profile put back).

use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Serialize;

use nixos_nspawn_core::lock::lock_registry;
use nixos_nspawn_core::registry::{BindMount, Entry, NetworkMode, PortForward, Strategy};
use nixos_nspawn_core::{applied, names, paths, profile, statedir};

use super::addressing::{self, StaticAddresses};
use crate::args::CreateArgs;
use crate::edit::{self, Found};
use crate::nixbuild::{check_system, NixFlags, Source};
use crate::report::Printable;
use crate::systemd::Verb;
use crate::txn::Transaction;
use crate::{refused, usage, Ctx, EXIT_OK};

/// Parse `--port [tcp|udp:]HOST[:CONTAINER]` ([`PortForward::parse`]).
pub fn parse_port(s: &str) -> Result<PortForward> {
    PortForward::parse(s).map_err(|e| usage(format!("--port {e}")))
}

/// The network flags, at most one.
fn network_override(a: &CreateArgs) -> Result<Option<(NetworkMode, Option<String>)>> {
    crate::at_most_one(
        &[a.zone.is_some(), a.bridge.is_some(), a.host_network],
        "give at most one of --zone, --bridge and --host-network",
    )?;
    if let Some(z) = &a.zone {
        names::check_zone_name(z).map_err(|e| usage(format!("--zone {z:?}: it {e}")))?;
        return Ok(Some((NetworkMode::Zone, Some(z.clone()))));
    }
    if let Some(b) = &a.bridge {
        names::check_ifname(b).map_err(|e| usage(format!("--bridge {b:?}: it {e}")))?;
        return Ok(Some((NetworkMode::Bridge, Some(b.clone()))));
    }
    Ok(a.host_network.then_some((NetworkMode::Host, None)))
}

/// Apply the command-line settings over the base entry.
fn apply_flags(
    entry: &mut Entry,
    a: &CreateArgs,
    binds: Vec<BindMount>,
    ports: Vec<PortForward>,
    network: Option<(NetworkMode, Option<String>)>,
) {
    if let Some((mode, value)) = network {
        entry.network.mode = mode;
        entry.network.zone = None;
        entry.network.bridge = None;
        entry.network.host = None;
        match mode {
            NetworkMode::Zone => entry.network.zone = value,
            NetworkMode::Bridge => entry.network.bridge = value,
            _ => {}
        }
    }
    entry.bind_mounts.extend(binds);
    entry.forward_ports.extend(ports);
    if a.ephemeral {
        entry.ephemeral = true;
    }
    if a.user_namespacing {
        entry.user_namespacing = true;
    }
    if a.no_user_namespacing {
        entry.user_namespacing = false;
    }
    if let Some(s) = a.strategy {
        entry.activation.strategy = s;
    }
    if a.no_autostart {
        entry.auto_start = false;
    }
    if a.auto_start {
        entry.auto_start = true;
    }
}

/// Whether `name` is in use: a registry entry (of any kind, even invalid),
/// a state directory or a profile.
fn taken(ctx: &Ctx, name: &str) -> Result<bool> {
    if !matches!(edit::find(&ctx.root, name)?, Found::Missing) {
        return Ok(true);
    }
    Ok([paths::machine_dir(name), paths::profile_dir(name)]
        .iter()
        .any(|p| std::fs::symlink_metadata(ctx.root.join(p)).is_ok()))
}

/// `--ensure-unique-name`: NAME if it is free, else the first free one of
/// NAME-0, NAME-1, … (as classic nixos-container does).
pub fn unique_name(ctx: &Ctx, base: &str) -> Result<String> {
    if !taken(ctx, base)? {
        return Ok(base.to_owned());
    }
    for n in 0u32.. {
        let candidate = format!("{base}-{n}");
        edit::check_name(&candidate).map_err(|e| {
            e.context(format!(
                "--ensure-unique-name: {base} and its numbered names are taken"
            ))
        })?;
        if !taken(ctx, &candidate)? {
            return Ok(candidate);
        }
    }
    unreachable!("u32 names run out")
}

#[derive(Serialize)]
struct Created<'a> {
    name: &'a str,
    generation: u64,
    system: &'a str,
    started: bool,
    /// What it was built from (recorded in the entry), null for --system.
    source: Option<&'a nixos_nspawn_core::registry::BuildSource>,
    /// `--ensure-unique-name`: the text is the name alone (as classic
    /// nixos-container prints it, for scripts).
    #[serde(skip)]
    name_only: bool,
}

impl Created<'_> {
    fn summary(&self) -> String {
        format!(
            "Created container {}: generation {}, {}{}",
            self.name,
            self.generation,
            self.system,
            if self.started { ", running" } else { "" }
        )
    }
}

impl Printable for Created<'_> {
    fn text(&self) -> String {
        if self.name_only {
            return self.name.to_owned();
        }
        self.summary()
    }
}

/// The checked command line: everything but the build.
struct Request {
    name: String,
    source: Source,
    flags: NixFlags,
    addresses: Option<StaticAddresses>,
    binds: Vec<BindMount>,
    ports: Vec<PortForward>,
    network: Option<(NetworkMode, Option<String>)>,
}

/// Check the command line and pick the name (no build, no write).
fn request(ctx: &Ctx, a: &CreateArgs) -> Result<Request> {
    edit::check_name(&a.name)?;
    let build = a.build_flags();
    let source = build.source()?.ok_or_else(|| {
        usage("one of --config FILE|'TEXT', --config-file FILE, --flake REF#ATTR or --system PATH is required")
    })?;
    let flags = build.nix_flags()?;
    flags.check_for(&source)?;
    if a.auto_start && a.no_autostart {
        return Err(usage("give --auto-start or --no-autostart, not both"));
    }
    let addresses = StaticAddresses::from_flags(
        a.host_address.as_deref(),
        a.local_address.as_deref(),
        a.host_address6.as_deref(),
        a.local_address6.as_deref(),
    )?;
    if addresses.is_some() && (a.zone.is_some() || a.bridge.is_some() || a.host_network) {
        return Err(usage(
            "--host-address/--local-address configure the container's own veth link; they cannot go with --zone, --bridge or --host-network",
        ));
    }
    let name = if a.ensure_unique_name {
        unique_name(ctx, &a.name)?
    } else {
        a.name.clone()
    };
    let binds = a
        .bind
        .iter()
        .map(|b| BindMount::parse(b).map_err(|e| usage(format!("--bind {e}"))))
        .collect::<Result<Vec<_>>>()?;
    let ports = a
        .port
        .iter()
        .map(|p| parse_port(p))
        .collect::<Result<Vec<_>>>()?;
    let network = network_override(a)?;
    crate::at_most_one(
        &[a.user_namespacing, a.no_user_namespacing],
        "give at most one of --user-namespacing and --no-user-namespacing",
    )?;
    super::remove::refuse_if_interrupted(&ctx.root, &name)?;
    if !matches!(edit::find(&ctx.root, &name)?, Found::Missing) {
        return Err(refused(format!(
            "container {name} already exists ({}); use nixos-nspawn update {name} to change it",
            paths::registry_file(&name).display()
        )));
    }
    Ok(Request {
        name,
        source,
        flags,
        addresses,
        binds,
        ports,
        network,
    })
}

/// Under the registry lock: the system becomes a profile generation, then
/// the entry is written. Returns the generation. A failure puts the profile
/// back (through `tx`) and says so.
fn register(ctx: &Ctx, tx: &mut Transaction, entry: &Entry) -> Result<u64> {
    let name = &entry.name;
    let _lock = lock_registry(&ctx.root)?;
    super::remove::refuse_if_interrupted(&ctx.root, name)?;
    if !matches!(edit::find(&ctx.root, name)?, Found::Missing) {
        return Err(refused(format!(
            "container {name} was created meanwhile by someone else"
        )));
    }
    // Under the lock, once NAME is known to be free: another container's
    // closure is never overwritten, and the lock's sweep of temporary files
    // never meets one being written. (Left behind if what follows fails:
    // nothing reads a closure without its entry, and the next create of NAME
    // writes it again.)
    ctx.nix
        .record_closure(&ctx.root, name, entry.shared_nix, Path::new(&entry.system))?;
    let gens = profile::generations(&ctx.root, name)?;
    let profile_existed = !gens.is_empty();
    let previous = gens.iter().find(|g| g.current).map(|g| g.number);
    if profile_existed {
        log::warn!(
            "{name} has a profile already (generations {}); the new system becomes the next generation",
            gens.iter().map(|g| g.number.to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let set = profile::set_system(&ctx.root, name, Path::new(&entry.system))
        .with_context(|| format!("setting the profile of {name} (nothing was created)"))?;
    tx.done("restoring its profile", {
        let name = name.clone();
        move |ctx| {
            if !profile_existed {
                profile::remove(&ctx.root, &name)
            } else if set.created {
                profile::undo_set(&ctx.root, &name, set.generation, previous).map(|_| ())
            } else {
                Ok(())
            }
        }
    });
    let written = edit::write_entry(&ctx.root, entry);
    let bytes = tx.finish(ctx, written).map_err(|f| {
        f.report(
            &format!("writing the registry entry of {name}"),
            "the profile was put back",
            "putting the profile back left problems",
        )
    })?;
    tx.done("removing its registry entry", {
        let name = name.clone();
        move |ctx| {
            let _lock = lock_registry(&ctx.root)?;
            if !edit::remove_entry_if(&ctx.root, &name, Some(&bytes))? {
                log::warn!("the registry entry of {name} changed meanwhile: left in place");
            }
            // The generator forgets the container.
            if ctx.sys.available() {
                ctx.sys.daemon_reload().context("reloading systemd")?;
            }
            Ok(())
        }
    });
    Ok(set.generation)
}

/// daemon-reload, the generator's drop-in checked, and (unless `no_start`)
/// the start. Returns whether it started.
fn bring_up(ctx: &Ctx, tx: &mut Transaction, name: &str, no_start: bool) -> Result<bool> {
    if ctx.sys.available() {
        ctx.sys
            .daemon_reload()
            .context("systemctl daemon-reload failed")?;
    } else if !no_start {
        anyhow::bail!(
            "cannot start {name}: systemd is not running here (no /run/systemd/system); use --no-start to only register it"
        );
    } else {
        log::warn!("systemd is not running here: not reloading it");
    }
    if ctx.sys.available() {
        // Without the generator's drop-in systemd-nspawn@NAME.service is
        // systemd's plain template, which fails with "No image for
        // machine" in the journal: say what is really wrong.
        let unit = ctx
            .sys
            .unit_details(name)
            .with_context(|| format!("asking systemd about {name}"))?;
        if !unit.has_generated_drop_in(name) {
            let what = format!(
                "the nixos-nspawn generator is not installed (or not where systemd looks): after daemon-reload \
                 systemd-nspawn@{name}.service has no drop-in from it; nixos-nspawn doctor says what to fix"
            );
            if !no_start {
                anyhow::bail!(what);
            }
            log::warn!("{what} ({name} is registered but cannot start until it is)");
        }
    }
    if no_start {
        return Ok(false);
    }
    // Recorded first: a start that failed half-way leaves a unit, an
    // applied record and maybe a state directory behind.
    let state_existed = std::fs::symlink_metadata(ctx.root.join(paths::machine_dir(name))).is_ok();
    tx.done("removing the state directory it got", {
        let name = name.to_owned();
        move |ctx| {
            if state_existed {
                return Ok(());
            }
            statedir::delete(&ctx.root, &name).map(|_| ())
        }
    });
    tx.done("removing its applied state", {
        let name = name.to_owned();
        move |ctx| applied::remove(&ctx.root, &name)
    });
    tx.done("stopping it", {
        let name = name.to_owned();
        move |ctx| {
            if !ctx.sys.available() {
                return Ok(());
            }
            ctx.sys.unit(Verb::Stop, &name)
        }
    });
    log::info!("starting {name}");
    ctx.sys.unit(Verb::Start, name).with_context(|| {
        format!("starting {name} failed (see journalctl -u systemd-nspawn@{name}.service)")
    })?;
    Ok(true)
}

pub fn run(ctx: &mut Ctx, a: CreateArgs) -> Result<i32> {
    // Gather and decide: the arguments, the build, the entry.
    let req = request(ctx, &a)?;
    let name = req.name.clone();
    let built = ctx
        .nix
        .build(&name, &req.source, a.platform.as_deref(), &req.flags)?;
    let system = built.system.clone();
    let mut entry = edit::base_entry(&system, &name)?;
    apply_flags(&mut entry, &a, req.binds, req.ports, req.network);
    let address_note = match &req.addresses {
        Some(pair) => Some(addressing::apply(&mut entry, pair)?),
        None => None,
    };
    entry.source = built.record.clone();
    check_system(&system, entry.activation.strategy != Strategy::None)?;
    let entry = edit::validate(&entry)?;

    // Act: profile, entry, daemon-reload, start; undone in reverse on failure.
    let mut tx = Transaction::new();
    let generation = register(ctx, &mut tx, &entry)?;
    // The profile generation is a GC root now.
    drop(built);
    let up = bring_up(ctx, &mut tx, &name, a.no_start);
    let started = tx.finish(ctx, up).map_err(|f| {
        // The top line says what went wrong (the cause, not repeated below).
        let top = f.error.to_string();
        f.report(
            &format!("creating {name} failed: {top}"),
            "everything was rolled back",
            "rolling back left problems",
        )
    })?;
    if let Some(note) = &address_note {
        log::warn!("{note}");
    }
    let created = Created {
        name: &name,
        generation,
        system: &entry.system,
        started,
        source: entry.source.as_ref(),
        name_only: a.ensure_unique_name,
    };
    if a.ensure_unique_name && !a.json {
        log::info!("{}", created.summary());
    }
    ctx.print(a.json, &created)?;
    Ok(EXIT_OK)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::{exit_of, Env};
    use crate::{exit_code, EXIT_REFUSED, EXIT_USAGE};
    use nixos_nspawn_core::registry;

    pub(crate) fn args(name: &str, system: &Path) -> CreateArgs {
        CreateArgs {
            name: name.into(),
            system: Some(system.display().to_string()),
            ..CreateArgs::default()
        }
    }

    #[test]
    fn ports() {
        let p = parse_port("udp:53:5353").unwrap();
        assert_eq!(p.nspawn_value(), "udp:53:5353");
        assert_eq!(parse_port("8080").unwrap().nspawn_value(), "tcp:8080:8080");
        assert_eq!(parse_port("tcp:80").unwrap().nspawn_value(), "tcp:80:80");
        assert_eq!(exit_of(parse_port("x:1")), EXIT_USAGE);
        assert!(parse_port("0").is_err());
        assert_eq!(
            parse_port("sctp:1").unwrap_err().to_string(),
            "--port sctp:1: unknown protocol \"sctp\" (tcp or udp; systemd-nspawn forwards nothing else)"
        );
        assert_eq!(
            parse_port("udp:53:70000").unwrap_err().to_string(),
            "--port udp:53:70000: \"70000\" is not a port number (1-65535)"
        );
        // The inverse of the rendered Port= value.
        for v in ["tcp:1:65535", "udp:8080:80"] {
            assert_eq!(PortForward::parse(v).unwrap().nspawn_value(), v);
        }
    }

    #[test]
    fn creates_and_starts() {
        let mut env = Env::new();
        let s = env.system("a", Some(serde_json::json!({"version": 1, "name": "web", "system": "/x", "bindMounts": ["/srv"]})));
        let mut a = args("web", &s);
        a.bind = vec!["/data:/data:ro".into()];
        a.port = vec!["8080:80".into()];
        a.strategy = Some(Strategy::Restart);
        assert_eq!(run(&mut env.ctx(), a).unwrap(), 0);
        let out = env.output();
        assert!(
            out.starts_with("Created container web: generation 1"),
            "{out}"
        );
        assert_eq!(env.sys.calls(), vec!["daemon-reload", "start web"]);
        let root = env.root();
        let e = registry::load_entry(&root, "web").unwrap();
        assert!(!e.declarative);
        assert_eq!(e.system, s.to_str().unwrap());
        assert_eq!(e.bind_mounts.len(), 2, "system's own bind plus --bind");
        assert_eq!(e.forward_ports.len(), 1);
        assert_eq!(e.activation.strategy, Strategy::Restart);
        assert!(
            !e.user_namespacing,
            "the system's own entry (without the field) counts"
        );
        let gens = profile::generations(&root, "web").unwrap();
        assert_eq!(gens.len(), 1);
        assert!(gens[0].current && gens[0].system == s);
        // Again: refused, nothing touched.
        let err = run(&mut env.ctx(), args("web", &s)).unwrap_err();
        assert_eq!(exit_code(&err), EXIT_REFUSED, "{err:#}");
    }

    /// New containers get a user namespace unless told otherwise (issue 11);
    /// a system's own entry (its nixosContainer settings) decides for itself.
    #[test]
    fn user_namespacing_is_the_default_for_new_containers() {
        let mut env = Env::new();
        let root = env.root();
        let plain = env.system("plain", None);
        run(&mut env.ctx(), args("a", &plain)).unwrap();
        assert!(registry::load_entry(&root, "a").unwrap().user_namespacing);
        let mut no = args("b", &plain);
        no.no_user_namespacing = true;
        run(&mut env.ctx(), no).unwrap();
        assert!(!registry::load_entry(&root, "b").unwrap().user_namespacing);
        let own = env.system(
            "own",
            Some(serde_json::json!({"version": 1, "name": "c", "system": "/x", "userNamespacing": false})),
        );
        run(&mut env.ctx(), args("c", &own)).unwrap();
        assert!(!registry::load_entry(&root, "c").unwrap().user_namespacing);
        let mut yes = args("d", &own);
        yes.user_namespacing = true;
        run(&mut env.ctx(), yes).unwrap();
        assert!(registry::load_entry(&root, "d").unwrap().user_namespacing);
        let mut both = args("e", &plain);
        both.user_namespacing = true;
        both.no_user_namespacing = true;
        let err = run(&mut env.ctx(), both).unwrap_err();
        assert_eq!(exit_code(&err), EXIT_USAGE, "{err:#}");
    }

    #[test]
    fn failed_start_rolls_back_everything() {
        let mut env = Env::new();
        let s = env.system("a", None);
        env.sys.fail_on("start web");
        let err = run(&mut env.ctx(), args("web", &s)).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("everything was rolled back"), "{text}");
        assert_eq!(exit_code(&err), 1);
        let root = env.root();
        assert!(!edit::registry_path(&root, "web").exists());
        assert!(profile::generations(&root, "web").unwrap().is_empty());
        assert!(!root.join(paths::profile_dir("web")).exists());
        assert_eq!(
            env.sys.calls(),
            vec!["daemon-reload", "start web", "stop web", "daemon-reload"]
        );
        // And a second try succeeds from a clean slate.
        env.sys.fail.lock().unwrap().clear();
        run(&mut env.ctx(), args("web", &s)).unwrap();
        assert_eq!(profile::current(&root, "web").unwrap().unwrap().number, 1);
    }

    #[test]
    fn without_the_generator_create_says_so_and_rolls_back() {
        let mut env = Env::new();
        let s = env.system("a", None);
        env.sys.no_generator = true;
        let err = run(&mut env.ctx(), args("web", &s)).unwrap_err();
        let top = err.to_string();
        assert!(
            top.starts_with("creating web failed: the nixos-nspawn generator is not installed")
                && top.contains("nixos-nspawn doctor")
                && top.ends_with("everything was rolled back"),
            "{top}"
        );
        // Never started: systemd's plain template would only fail.
        assert_eq!(env.sys.calls(), vec!["daemon-reload", "daemon-reload"]);
        assert!(!edit::registry_path(&env.root(), "web").exists());
        // --no-start registers it with a warning.
        let mut a = args("web", &s);
        a.no_start = true;
        run(&mut env.ctx(), a).unwrap();
        assert!(edit::registry_path(&env.root(), "web").exists());
    }

    #[test]
    fn failed_reload_rolls_back_and_keeps_a_leftover_profile() {
        let mut env = Env::new();
        let root = env.root();
        let old = env.system("old", None);
        let s = env.system("a", None);
        profile::set_system(&root, "web", &old).unwrap();
        env.sys.fail_on("daemon-reload");
        let err = run(&mut env.ctx(), args("web", &s)).unwrap_err();
        assert!(format!("{err:#}").contains("daemon-reload"), "{err:#}");
        let gens = profile::generations(&root, "web").unwrap();
        assert_eq!(gens.len(), 1);
        assert!(
            gens[0].current && gens[0].system == old,
            "leftover profile as it was"
        );
        assert!(!edit::registry_path(&root, "web").exists());
    }

    #[test]
    fn no_systemd() {
        let mut env = Env::new();
        env.sys.unavailable = true;
        let s = env.system("a", None);
        let err = run(&mut env.ctx(), args("web", &s)).unwrap_err();
        assert!(format!("{err:#}").contains("--no-start"), "{err:#}");
        assert!(!edit::registry_path(&env.root(), "web").exists());
        let mut a = args("web", &s);
        a.no_start = true;
        a.json = true;
        run(&mut env.ctx(), a).unwrap();
        let v: serde_json::Value = serde_json::from_str(&env.output()).unwrap();
        assert_eq!(v["generation"], 1);
        assert_eq!(v["started"], false);
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        let mut env = Env::new();
        let s = env.system("a", None);
        for (what, f) in [
            (
                "name",
                Box::new(|a: &mut CreateArgs| a.name = "bad name".into())
                    as Box<dyn Fn(&mut CreateArgs)>,
            ),
            (
                "bind",
                Box::new(|a: &mut CreateArgs| a.bind = vec!["relative".into()]),
            ),
            (
                "network",
                Box::new(|a: &mut CreateArgs| {
                    a.zone = Some("z".into());
                    a.host_network = true;
                }),
            ),
            (
                "zone",
                Box::new(|a: &mut CreateArgs| a.zone = Some("a-zone-name-too-long".into())),
            ),
            (
                "source",
                Box::new(|a: &mut CreateArgs| a.config = Some("x.nix".into())),
            ),
        ] {
            let mut a = args("web", &s);
            f(&mut a);
            let err = run(&mut env.ctx(), a).unwrap_err();
            assert_eq!(exit_code(&err), EXIT_USAGE, "{what}: {err:#}");
        }
        assert!(env.sys.calls().is_empty());
    }

    #[test]
    fn invalid_combination_is_caught_before_writing() {
        let mut env = Env::new();
        let s = env.system("a", None);
        let mut a = args("web", &s);
        a.host_network = true;
        a.port = vec!["80".into()];
        let err = run(&mut env.ctx(), a).unwrap_err();
        assert!(format!("{err:#}").contains("forwardPorts"), "{err:#}");
        assert!(!edit::registry_path(&env.root(), "web").exists());
        assert!(env.sys.calls().is_empty());
    }

    #[test]
    fn strategy_none_needs_no_switch() {
        let mut env = Env::new();
        let s = env.system("a", None);
        std::fs::remove_file(s.join("bin/switch-to-configuration")).unwrap();
        let err = run(&mut env.ctx(), args("web", &s)).unwrap_err();
        assert!(format!("{err:#}").contains("switch-to-configuration"));
        let mut a = args("web", &s);
        a.strategy = Some(Strategy::None);
        run(&mut env.ctx(), a).unwrap();
    }
}
