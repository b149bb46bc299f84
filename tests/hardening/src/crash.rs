//! Crash consistency: `kill -9` the CLI at random points of create, update,
//! rollback and remove, many times, against one throwaway root.
//!
//! After every run: the registry loads without a single error; the entry is
//! byte for byte the old or the new version (the new one computed
//! independently with the library, and checked against every run that was not
//! killed); every profile link resolves. States between the two writes of one
//! command (registry and profile) are counted, and repaired by the documented
//! recovery, which is then checked:
//!
//! * entry and profile disagree, or an entry without a profile (a kill between
//!   the two writes of create, update or rollback): the bootstrap helper,
//!   which runs before every start, makes the profile follow the registry;
//! * a profile without an entry (a kill in remove after the entry is gone):
//!   `create` of the same name adopts it as its next generation.

use std::time::{Duration, Instant};

use nixos_nspawn_core::profile;
use nixos_nspawn_core::registry::{self, BindMount, Entry, PortForward, Protocol};

use crate::common::{error_line, Env, Opts, Rng, Verdict};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Create,
    Update,
    Rollback,
    Remove,
}

const KINDS: [Kind; 4] = [Kind::Create, Kind::Update, Kind::Rollback, Kind::Remove];

#[derive(Default, Clone, Copy)]
struct Tally {
    runs: usize,
    killed: usize,
    completed: usize,
    left_old: usize,
    left_new: usize,
}

/// What a run left between the registry and the profile.
#[derive(Default)]
struct States {
    consistent: usize,
    profile_differs: usize,
    entry_without_profile: usize,
    orphan_profile: usize,
}

pub fn run(opts: &Opts, rng: &mut Rng, systems: &[String]) -> Verdict {
    let mut v = Verdict::new("crash consistency");
    let Some(env) = v.env(opts, systems) else {
        return v;
    };
    let root = env.root();
    let names = ["c0", "c1", "c2", "c3"];
    let mut tally = [Tally::default(); 4];
    let mut mean_us = [30_000f64; 4];
    let mut states = States::default();
    let mut recovery = Recovery::default();
    let mut dangling_in_orphan = 0usize;
    let mut dangling = std::collections::BTreeSet::new();
    // Calibrate: how long each command takes when not killed, so the kills
    // are spread over the whole run (then kept up to date by every run that
    // completes).
    for name in names {
        let timed = |args: &[&str]| {
            let t = Instant::now();
            let o = env.cli(args);
            (t.elapsed().as_micros() as f64, o)
        };
        let steps: [(Kind, Vec<&str>); 4] = [
            (
                Kind::Create,
                vec!["create", name, "--system", &systems[0], "--no-start"],
            ),
            (Kind::Update, vec!["update", name, "--system", &systems[1]]),
            (Kind::Rollback, vec!["rollback", name]),
            (Kind::Remove, vec!["remove", name]),
        ];
        for (kind, args) in steps {
            let (us, o) = timed(&args);
            if !o.status.success() {
                v.fail(format!(
                    "calibration: {} failed: {}",
                    args.join(" "),
                    error_line(&o)
                ));
            }
            let k = kind as usize;
            mean_us[k] = if name == names[0] {
                us
            } else {
                0.5 * mean_us[k] + 0.5 * us
            };
        }
    }
    let started = Instant::now();

    for run in 0..opts.kills {
        let name = *rng.pick(&names);
        let before = env.entry_bytes(name);
        let old: Option<Entry> = env.entry(name);
        // Pick an operation that makes sense for the state, and compute the
        // entry it writes.
        let (kind, args, expected): (Kind, Vec<String>, Option<Vec<u8>>) = match &old {
            None => {
                let sys = rng.pick(systems).clone();
                // What create starts from (a system without entry.json).
                let mut e = Entry::new_imperative(name, &sys);
                let mut args: Vec<String> = vec![
                    "create".into(),
                    name.into(),
                    "--system".into(),
                    sys,
                    "--no-start".into(),
                ];
                if rng.chance(50) {
                    let b = format!("/srv/{name}:/data:ro");
                    e.bind_mounts.push(BindMount::parse(&b).unwrap());
                    args.extend(["--bind".into(), b]);
                }
                if rng.chance(30) {
                    e.forward_ports.push(PortForward {
                        protocol: Protocol::Tcp,
                        host_port: 8080,
                        container_port: None,
                    });
                    args.extend(["--port".into(), "8080".into()]);
                }
                (Kind::Create, args, Some(e.to_json().into_bytes()))
            }
            Some(e) => {
                let prev = profile::previous_generation(&root, name).ok().flatten();
                let r = rng.below(100);
                if r < 25 {
                    (Kind::Remove, vec!["remove".into(), name.into()], None)
                } else if r < 45 && prev.is_some() {
                    let target = prev.unwrap();
                    let mut n = e.clone();
                    n.system = target.system.display().to_string();
                    (
                        Kind::Rollback,
                        vec!["rollback".into(), name.into()],
                        Some(n.to_json().into_bytes()),
                    )
                } else {
                    let others: Vec<&String> = systems.iter().filter(|s| **s != e.system).collect();
                    let sys = (*rng.pick(&others)).clone();
                    let mut n = e.clone();
                    n.system = sys.clone();
                    (
                        Kind::Update,
                        vec!["update".into(), name.into(), "--system".into(), sys],
                        Some(n.to_json().into_bytes()),
                    )
                }
            }
        };
        let k = kind as usize;
        tally[k].runs += 1;

        let t0 = Instant::now();
        let mut child = env
            .command("nixos-nspawn")
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawning nixos-nspawn");
        let delay = rng.below((mean_us[k] * 1.15) as u64 + 1);
        std::thread::sleep(Duration::from_micros(delay));
        let killed = match child.try_wait() {
            Ok(Some(_)) => false,
            _ => {
                let _ = child.kill();
                true
            }
        };
        let out = child.wait_with_output().expect("waiting for nixos-nspawn");
        let what = format!("run {run}: {} (killed: {killed})", args.join(" "));
        if killed {
            tally[k].killed += 1;
        } else {
            tally[k].completed += 1;
            let us = t0.elapsed().as_micros() as f64;
            mean_us[k] = 0.8 * mean_us[k] + 0.2 * us;
        }

        // The registry always loads, completely.
        let reg = registry::load(&root);
        v.check(reg.errors.is_empty(), || {
            format!("{what}: the registry has errors: {:?}", reg.errors)
        });
        // Old or new, never anything else.
        let after = env.entry_bytes(name);
        if after == expected {
            tally[k].left_new += 1;
        } else if after == before {
            tally[k].left_old += 1;
        } else {
            v.fail(format!(
                "{what}: the entry is neither the old nor the new version: {:?}",
                after.as_deref().map(String::from_utf8_lossy)
            ));
        }
        let err = error_line(&out);
        if !killed && err.contains("not a profile link (.system") {
            // A temporary link of a killed profile write is in the way, for
            // good: every later remove fails the same way.
            v.fail_kind(
                "remove fails for good after a killed profile write left a temporary link (profile::remove does not know symlink_atomic's .NAME.PID.N.tmp)",
                format!("{what}: {err}"),
            );
        } else if !killed {
            v.check(out.status.success() && after == expected, || {
                format!(
                    "{what}: completed with {} but left {:?} (expected {:?}): {}",
                    out.status,
                    after.as_deref().map(String::from_utf8_lossy),
                    expected.as_deref().map(String::from_utf8_lossy),
                    error_line(&out)
                )
            });
        }
        for n in names {
            if env.profile_links_ok(n).is_ok() {
                dangling.remove(n);
            }
            if let Err(e) = env.profile_links_ok(n) {
                if env.entry_bytes(n).is_none() {
                    // A remove killed halfway through deleting the profile
                    // (its links go in directory order, `system` not first).
                    if !dangling.insert(n) {
                        continue; // seen already, still there
                    }
                    dangling_in_orphan += 1;
                    v.fail_kind(
                        "a killed remove leaves a dangling `system` link (profile::remove deletes in directory order)",
                        format!("{what}: {e}"),
                    );
                } else {
                    v.fail(format!("{what}: {e}"));
                }
            }
        }

        // Classify what the run left, and sometimes repair it right away (the
        // rest compounds with the next runs and is repaired at the end).
        let state = classify(&env, name);
        match state {
            State::Consistent => states.consistent += 1,
            State::ProfileDiffers => states.profile_differs += 1,
            State::EntryWithoutProfile => states.entry_without_profile += 1,
            State::OrphanProfile => states.orphan_profile += 1,
        }
        if state != State::Consistent && rng.chance(50) {
            recover(&env, name, state, &mut v, &mut recovery);
        }
    }
    for name in names {
        let state = classify(&env, name);
        if state != State::Consistent {
            recover(&env, name, state, &mut v, &mut recovery);
        }
    }
    let reg = registry::load(&root);
    v.check(reg.errors.is_empty(), || {
        format!("after recovery: the registry has errors: {:?}", reg.errors)
    });

    let total = |f: fn(&Tally) -> usize| tally.iter().map(f).sum::<usize>();
    println!(
        "crash: {} runs in {:.0}s, {} killed with SIGKILL before exiting, {} completed (seed {})",
        opts.kills,
        started.elapsed().as_secs_f64(),
        total(|t| t.killed),
        total(|t| t.completed),
        opts.seed
    );
    for kind in KINDS {
        let t = tally[kind as usize];
        println!(
            "  {:<8} {:>5} runs: {:>5} killed, {:>5} completed; entry left old {:>5}, new {:>5}; mean run {:.1} ms",
            format!("{kind:?}").to_lowercase(),
            t.runs,
            t.killed,
            t.completed,
            t.left_old,
            t.left_new,
            mean_us[kind as usize] / 1000.0
        );
    }
    println!(
        "  registry loaded with 0 errors after every run: {}; partial or foreign entries: {}",
        if v.failures.iter().any(|f| f.contains("registry has errors")) {
            "NO"
        } else {
            "yes"
        },
        v.failures
            .iter()
            .filter(|f| f.contains("neither the old"))
            .count()
    );
    println!(
        "  left by a run: consistent {}, profile != entry {}, entry without profile {}, orphan profile {}",
        states.consistent, states.profile_differs, states.entry_without_profile, states.orphan_profile
    );
    println!(
        "  recovered: {} by the bootstrap helper (profile follows the registry), {} orphan profiles adopted by create",
        recovery.by_bootstrap, recovery.adopted
    );
    if let Some(left) = recovery.remove_leaves_orphan {
        println!(
            "  note: `nixos-nspawn remove NAME` on an orphan profile {}",
            if left {
                "exits 3 and leaves the profile in place"
            } else {
                "removes it"
            }
        );
        if left {
            v.fail_kind(
                "an orphan profile (remove killed after the entry went) is not cleaned by `remove NAME` (exit 3); only `create NAME` adopts it",
                "remove NAME on an orphan profile: exit 3, profile left",
            );
        }
    }
    println!(
        "  orphan profiles with a dangling link (remove killed while deleting the profile): {dangling_in_orphan}"
    );
    println!(
        "  stale temporary files ('.'-names, ignored by every reader) left by killed runs: {}",
        env.stale_temporaries()
    );
    v.print_kinds();
    v
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Consistent,
    ProfileDiffers,
    EntryWithoutProfile,
    OrphanProfile,
}

fn classify(env: &Env, name: &str) -> State {
    let entry = env.entry(name);
    let profile = env.profile_system(name);
    let profile_dir = crate::common::exists(&env.profile_dir(name));
    match (entry, profile) {
        (Some(e), Some(p)) if e.system == p => State::Consistent,
        (Some(_), Some(_)) => State::ProfileDiffers,
        (Some(_), None) => State::EntryWithoutProfile,
        (None, Some(_)) => State::OrphanProfile,
        // A profile directory without a current generation and no entry.
        (None, None) if profile_dir => State::OrphanProfile,
        (None, None) => State::Consistent,
    }
}

/// What the repairs achieved over the run.
#[derive(Default)]
struct Recovery {
    /// Profiles brought back to the registry by the bootstrap helper.
    by_bootstrap: usize,
    /// Orphan profiles adopted by `create`.
    adopted: usize,
    /// What `remove NAME` made of an orphan profile (asked once): left it in place?
    remove_leaves_orphan: Option<bool>,
}

fn recover(env: &Env, name: &str, state: State, v: &mut Verdict, recovery: &mut Recovery) {
    match state {
        State::Consistent => {}
        State::ProfileDiffers | State::EntryWithoutProfile => {
            let out = env
                .command("nixos-nspawn-bootstrap")
                .arg(name)
                .output()
                .expect("running nixos-nspawn-bootstrap");
            let entry = env.entry(name).map(|e| e.system);
            let ok = out.status.success() && entry.is_some() && env.profile_system(name) == entry;
            v.check(ok, || {
                format!(
                    "recovering {name} ({state:?}) with nixos-nspawn-bootstrap: {} {}; profile {:?}, entry {:?}",
                    out.status,
                    error_line(&out),
                    env.profile_system(name),
                    entry
                )
            });
            if ok {
                recovery.by_bootstrap += 1;
            }
        }
        State::OrphanProfile => {
            let dir = env.profile_dir(name);
            if recovery.remove_leaves_orphan.is_none() {
                // Once: what does `remove` make of it?
                let _ = env.cli(&["remove", name]);
                let left = crate::common::exists(&dir);
                recovery.remove_leaves_orphan = Some(left);
                if !left {
                    return;
                }
            }
            let gens = profile::generations(&env.root(), name).unwrap_or_default();
            let sys = env.systems[0].clone();
            let expected_gen = match gens.iter().find(|g| g.current) {
                Some(c) if c.system.display().to_string() == sys => c.number,
                _ => gens.iter().map(|g| g.number).max().unwrap_or(0) + 1,
            };
            let out = env.cli(&["create", name, "--system", &sys, "--no-start"]);
            let now = profile::current(&env.root(), name).ok().flatten();
            let ok = out.status.success()
                && now
                    .as_ref()
                    .map(|g| (g.number, g.system.display().to_string()))
                    == Some((expected_gen, sys.clone()));
            v.check(ok, || {
                format!(
                    "adopting the orphan profile of {name} with create: {} {}; generations before {:?}, now {:?}",
                    out.status,
                    error_line(&out),
                    gens.iter().map(|g| (g.number, g.current)).collect::<Vec<_>>(),
                    now.map(|g| g.number)
                )
            });
            if ok {
                recovery.adopted += 1;
            }
        }
    }
}
