//! Concurrency: many CLI processes editing at once.
//!
//! * distinct: each process updates its own container `edits` times;
//! * same: every process updates one shared container; the registry lock
//!   serialises them, so the profile generations made form one chain (each
//!   new generation's `previous` is the one before it, none twice, none
//!   missing) and the registry ends at the system of the last one: no lost
//!   update;
//! * mixed: create, update, rollback and remove of three shared names at
//!   once; every refusal is exit 3 or 4 with a clear message, and at the end
//!   every entry agrees with its profile.
//!
//! After each phase the registry loads without errors and every profile link
//! resolves.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Instant;

use nixos_nspawn_core::{profile, registry};

use crate::common::{error_line, Env, Opts, Rng, Verdict};

/// `update --json` output: (generation, previous).
fn switched(o: &Output) -> Option<(u64, Option<u64>, String)> {
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    Some((
        v["generation"].as_u64()?,
        v["previous"].as_u64(),
        v["system"].as_str()?.to_owned(),
    ))
}

fn after_phase(env: &Env, v: &mut Verdict, phase: &str, names: &[String]) {
    let reg = registry::load(&env.root());
    v.check(reg.errors.is_empty(), || {
        format!("{phase}: the registry has errors: {:?}", reg.errors)
    });
    for n in names {
        if let Err(e) = env.profile_links_ok(n) {
            v.fail(format!("{phase}: {e}"));
        }
    }
}

/// Runs `work` on each item in a thread of its own, all at once; the
/// results in the items' order.
fn in_parallel<I: Send, T: Send>(
    items: impl IntoIterator<Item = I>,
    work: impl Fn(I) -> T + Sync,
) -> Vec<T> {
    let work = &work;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .into_iter()
            .map(|item| s.spawn(move || work(item)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

pub fn run(opts: &Opts, systems: &[String]) -> Verdict {
    let mut v = Verdict::new("concurrency");
    let Some(env) = v.env(opts, systems) else {
        return v;
    };
    let (procs, edits) = (opts.procs, opts.edits);
    println!(
        "concurrency: {procs} processes x {edits} edits each, per phase (seed {})",
        opts.seed
    );

    // --- distinct containers
    let names: Vec<String> = (0..procs).map(|i| format!("p{i}")).collect();
    for n in &names {
        let o = env.cli(&["create", n, "--system", &systems[0], "--no-start"]);
        v.check(o.status.success(), || {
            format!("creating {n}: {}", error_line(&o))
        });
    }
    let t = Instant::now();
    let results: Vec<Vec<Output>> = in_parallel(&names, |n| {
        (0..edits)
            .map(|k| {
                let sys = &systems[(k + 1) % systems.len()];
                env.cli(&["update", n, "--system", sys, "--json"])
            })
            .collect()
    });
    let secs = t.elapsed().as_secs_f64();
    let mut ok = 0;
    for (n, outs) in names.iter().zip(&results) {
        for (k, o) in outs.iter().enumerate() {
            let want = (k as u64 + 2, Some(k as u64 + 1));
            match switched(o) {
                Some((g, p, _)) if o.status.success() && (g, p) == want => ok += 1,
                other => v.fail(format!(
                    "distinct: update {k} of {n}: {} {:?} (wanted generation {} after {}): {}",
                    o.status,
                    other,
                    want.0,
                    k + 1,
                    error_line(o)
                )),
            }
        }
        let last = &systems[edits % systems.len()];
        let entry = env.entry(n).map(|e| e.system);
        let cur = profile::current(&env.root(), n).ok().flatten();
        v.check(
            entry.as_deref() == Some(last.as_str())
                && cur.as_ref().map(|g| (g.number, g.system.display().to_string()))
                    == Some((edits as u64 + 1, last.clone())),
            || format!("distinct: {n} ends at entry {entry:?}, profile {cur:?}; wanted {last} in generation {}", edits + 1),
        );
    }
    after_phase(&env, &mut v, "distinct", &names);
    println!(
        "  distinct: {} updates on {procs} containers in {secs:.1}s ({:.0}/s): {ok} ok, each a new generation in order, registry and profile agree",
        procs * edits,
        (procs * edits) as f64 / secs
    );

    // --- one shared container
    let o = env.cli(&["create", "shared", "--system", &systems[0], "--no-start"]);
    v.check(o.status.success(), || {
        format!("creating shared: {}", error_line(&o))
    });
    let t = Instant::now();
    let results: Vec<Output> = in_parallel(0..procs, |i| {
        let mut rng = Rng::new(opts.seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9));
        (0..edits)
            .map(|_| {
                let sys = rng.pick(systems);
                env.cli(&["update", "shared", "--system", sys, "--json"])
            })
            .collect::<Vec<_>>()
    })
    .concat();
    let secs = t.elapsed().as_secs_f64();
    let mut made: BTreeMap<u64, (Option<u64>, String)> = BTreeMap::new();
    let mut unchanged = 0;
    let mut dup = 0;
    for o in &results {
        match switched(o) {
            Some((g, p, sys)) if o.status.success() => {
                if Some(g) == p {
                    unchanged += 1;
                } else if made.insert(g, (p, sys)).is_some() {
                    dup += 1;
                    v.fail(format!("same: generation {g} reported twice"));
                }
            }
            other => v.fail(format!(
                "same: update failed: {} {other:?}: {}",
                o.status,
                error_line(o)
            )),
        }
    }
    let max = made.keys().max().copied().unwrap_or(1);
    let chain_ok =
        made.keys().copied().eq(2..=max) && made.iter().all(|(g, (p, _))| *p == Some(g - 1));
    v.check(chain_ok, || {
        format!(
            "same: the generations made do not form a chain: {:?}",
            made.iter().map(|(g, (p, _))| (*g, *p)).collect::<Vec<_>>()
        )
    });
    let last_sys = made
        .get(&max)
        .map(|(_, s)| s.clone())
        .unwrap_or_else(|| systems[0].clone());
    let entry = env.entry("shared").map(|e| e.system);
    let cur = profile::current(&env.root(), "shared").ok().flatten();
    let gens = profile::generations(&env.root(), "shared")
        .map(|g| g.len())
        .unwrap_or(0);
    v.check(
        entry.as_deref() == Some(last_sys.as_str())
            && cur.as_ref().map(|g| (g.number, g.system.display().to_string()))
                == Some((max, last_sys.clone()))
            && gens as u64 == max,
        || {
            format!(
                "same: lost update: registry {entry:?}, profile {cur:?} ({gens} generations); the last generation made is {max} with {last_sys}"
            )
        },
    );
    after_phase(&env, &mut v, "same", &["shared".to_owned()]);
    println!(
        "  same: {} updates of one container in {secs:.1}s ({:.0}/s): {} new generations forming one chain 2..={max}, {unchanged} already current, {dup} duplicates; registry and profile end at the last one",
        results.len(),
        results.len() as f64 / secs,
        made.len()
    );

    // --- mixed create / update / rollback / remove on three shared names
    let mixed: Vec<String> = (0..3).map(|i| format!("m{i}")).collect();
    // In rounds of (at most) 5 commands per process; after each round, with
    // nothing running, every entry must agree with its profile.
    let t = Instant::now();
    let mut results: Vec<(Vec<String>, Output)> = Vec::new();
    let mut rngs: Vec<Rng> = (0..procs)
        .map(|i| Rng::new(opts.seed ^ (i as u64 + 101).wrapping_mul(0x9e37_79b9)))
        .collect();
    let mut rounds = 0;
    let mut inconsistent_rounds = 0;
    let mut done = 0;
    while done < edits {
        let this = (edits - done).min(5);
        done += this;
        rounds += 1;
        let round: Vec<(Vec<String>, Output)> = in_parallel(rngs.iter_mut(), |rng| {
            (0..this)
                .map(|_| {
                    let n = rng.pick(&mixed).clone();
                    let sys = rng.pick(systems).clone();
                    let args: Vec<String> = match rng.below(10) {
                        0..=2 => vec![
                            "create".into(),
                            n,
                            "--system".into(),
                            sys,
                            "--no-start".into(),
                        ],
                        3..=5 => vec!["update".into(), n, "--system".into(), sys],
                        6 | 7 => vec!["rollback".into(), n],
                        _ => vec!["remove".into(), n],
                    };
                    let a: Vec<&str> = args.iter().map(String::as_str).collect();
                    let o = env.cli(&a);
                    (args, o)
                })
                .collect::<Vec<_>>()
        })
        .concat();
        results.extend(round);
        let mut bad = Vec::new();
        for n in &mixed {
            let entry = env.entry(n).map(|e| e.system);
            let prof = env.profile_system(n);
            let dir = crate::common::exists(&env.profile_dir(n));
            let consistent = match (&entry, &prof) {
                (Some(e), Some(p)) => e == p,
                (None, None) => !dir,
                _ => false,
            };
            if !consistent {
                bad.push(format!(
                    "{n}: registry {entry:?}, profile {prof:?} (profile directory {})",
                    if dir { "present" } else { "absent" }
                ));
            }
        }
        if !bad.is_empty() {
            inconsistent_rounds += 1;
            v.fail_kind(
                "after a round of concurrent commands, an entry and its profile disagree (remove deletes the profile outside the registry lock, racing create/update)",
                format!("round {rounds}: {}", bad.join("; ")),
            );
            // Repair, so the next rounds start clean: the bootstrap helper
            // makes a profile follow its entry; an orphan profile is adopted
            // by create and removed again.
            for n in &mixed {
                if env.entry(n).is_some() {
                    let _ = env.command("nixos-nspawn-bootstrap").arg(n).output();
                } else if crate::common::exists(&env.profile_dir(n)) {
                    let _ = env.cli(&["create", n, "--system", &systems[0], "--no-start"]);
                    let _ = env.cli(&["remove", n]);
                }
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let mut codes: BTreeMap<(String, i32), usize> = BTreeMap::new();
    let mut messages: BTreeMap<String, usize> = BTreeMap::new();
    for (args, o) in &results {
        let code = o.status.code().unwrap_or(-1);
        *codes.entry((args[0].clone(), code)).or_default() += 1;
        if code == 0 {
            continue;
        }
        let line = error_line(o);
        // The refusals a concurrent edit can meet, each with its exit code.
        let clear = match code {
            3 => [
                "there is no container",
                "has no generation",
                "has no profile generations",
                "to roll back to",
            ]
            .iter()
            .any(|m| line.contains(m)),
            4 => ["already exists", "created meanwhile by someone else"]
                .iter()
                .any(|m| line.contains(m)),
            _ => false,
        };
        let shape: String = line.split(['(', ':']).take(2).collect::<Vec<_>>().join(":");
        *messages
            .entry(format!("exit {code}: {}", shape.replace(&args[1], "NAME")))
            .or_default() += 1;
        if code == 1 && args[0] == "remove" && line.contains("removing its profile") {
            v.fail_kind(
                "concurrent removes of one container: both delete the profile outside the registry lock, one fails (exit 1)",
                format!("{}: {line}", args.join(" ")),
            );
            continue;
        }
        v.check(clear && line.starts_with("error: "), || {
            format!(
                "mixed: {} exited {code} without a clear refusal: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            )
        });
    }
    after_phase(&env, &mut v, "mixed", &mixed);
    println!(
        "  mixed: {} commands on 3 shared names in {rounds} rounds, {secs:.1}s; entry and profile disagreed after {inconsistent_rounds} rounds; exit codes by command: {}",
        results.len(),
        codes
            .iter()
            .map(|((c, e), n)| format!("{c} {e}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (m, n) in &messages {
        println!("    {n:>4} x {m}");
    }
    v.print_kinds();
    v
}
