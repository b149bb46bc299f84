//! `list [--type imperative|declarative] [--json]`.
//!
//! Fast by construction: the registry is read once, the unit states come from
//! one D-Bus call (`ListUnitsByPatterns`; none without systemd), addresses from `/proc`
//! and only when something runs, and the current
//! generation is one `readlink` of the profile link per container.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use nixos_nspawn_core::registry::mode_name;
use nixos_nspawn_core::{paths, Root};

use crate::args::{Kind, ListArgs};
use crate::report::Printable;
use crate::systemd::UnitState;
use crate::text::table;
use crate::{Ctx, EXIT_OK};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub name: String,
    /// imperative, declarative, or invalid (the registry file does not parse)
    pub kind: &'static str,
    /// python-nixos-nspawn's field
    #[serde(rename = "is_imperative")]
    pub is_imperative: bool,
    /// running, starting, reloading, stopping, failed, stopped, unknown (no systemd)
    pub state: String,
    pub active_state: Option<String>,
    pub sub_state: Option<String>,
    /// Current generation of its profile.
    pub generation: Option<u64>,
    pub system: Option<String>,
    pub auto_start: Option<bool>,
    pub network: Option<&'static str>,
    pub addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The current generation number from the profile link alone.
pub fn current_generation(root: &Root, name: &str) -> Option<u64> {
    let link = std::fs::read_link(root.join(paths::profile_link(name))).ok()?;
    crate::scan::link_generation(link.as_os_str().as_encoded_bytes())
}

pub fn run(ctx: &mut Ctx, a: ListArgs) -> Result<i32> {
    let reg = crate::scan::scan(&ctx.root);
    let states: Option<BTreeMap<String, UnitState>> =
        ctx.ask_systemd("for the states", |sys| sys.unit_states());
    let any_running = states.as_ref().is_some_and(|s| {
        reg.entries
            .iter()
            .any(|e| s.get(&e.entry.name).is_some_and(UnitState::is_running))
    });
    let mut addresses = if any_running {
        ctx.sys.all_addresses()
    } else {
        BTreeMap::new()
    };

    let mut items = Vec::with_capacity(reg.entries.len());
    for scanned in &reg.entries {
        let e = &scanned.entry;
        let declarative = e.declarative || scanned.link;
        let kind = if declarative {
            Kind::Declarative
        } else {
            Kind::Imperative
        };
        if a.kind.is_some_and(|k| k != kind) {
            continue;
        }
        let unit = states.as_ref().map(|s| {
            s.get(&e.name)
                .cloned()
                .unwrap_or_else(|| UnitState::new("inactive", "dead"))
        });
        items.push(Item {
            name: e.name.clone(),
            kind: if declarative {
                "declarative"
            } else {
                "imperative"
            },
            is_imperative: !declarative,
            state: unit
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), |u| u.word().to_owned()),
            active_state: unit.as_ref().map(|u| u.active_state.clone()),
            sub_state: unit.as_ref().map(|u| u.sub_state.clone()),
            generation: scanned.generation,
            system: Some(e.system.clone()),
            auto_start: Some(e.auto_start),
            network: Some(mode_name(e.network.mode)),
            addresses: addresses.remove(&e.name).unwrap_or_default(),
            errors: Vec::new(),
        });
    }
    // Invalid files: reported, and listed unless a type was asked for.
    let mut invalid: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for err in &reg.errors {
        log::warn!("{err}");
        if err.file.parent() == Some(Path::new(paths::REGISTRY_DIR)) {
            if let Some(stem) = err.file.file_stem().and_then(|s| s.to_str()) {
                invalid
                    .entry(stem.to_owned())
                    .or_default()
                    .push(err.to_string());
            }
        }
    }
    if a.kind.is_none() {
        for (name, errors) in invalid {
            let unit = states
                .as_ref()
                .map(|s| s.get(&name).cloned().unwrap_or_default());
            items.push(Item {
                state: unit
                    .as_ref()
                    .map_or_else(|| "unknown".to_owned(), |u| u.word().to_owned()),
                active_state: unit.as_ref().map(|u| u.active_state.clone()),
                sub_state: unit.as_ref().map(|u| u.sub_state.clone()),
                generation: current_generation(&ctx.root, &name),
                name,
                kind: "invalid",
                is_imperative: false,
                system: None,
                auto_start: None,
                network: None,
                addresses: Vec::new(),
                errors,
            });
        }
        items.sort_by(|a, b| a.name.cmp(&b.name));
    }

    ctx.print(a.json, &Listing(items))?;
    Ok(EXIT_OK)
}

/// `list`'s result: the containers, sorted by name.
#[derive(Serialize)]
#[serde(transparent)]
struct Listing(Vec<Item>);

impl Printable for Listing {
    fn text(&self) -> String {
        if self.0.is_empty() {
            return "No containers.".into();
        }
        let mut rows = vec![vec![
            "NAME".to_owned(),
            "KIND".into(),
            "STATE".into(),
            "GEN".into(),
            "NETWORK".into(),
            "ADDRESSES".into(),
        ]];
        for i in &self.0 {
            rows.push(vec![
                i.name.clone(),
                i.kind.to_owned(),
                i.state.clone(),
                i.generation.map_or_else(|| "-".into(), |g| g.to_string()),
                i.network.unwrap_or("-").to_owned(),
                if i.addresses.is_empty() {
                    "-".into()
                } else {
                    i.addresses.join(", ")
                },
            ]);
        }
        table(&rows).trim_end().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit;
    use crate::testing::Env;
    use nixos_nspawn_core::profile;
    use nixos_nspawn_core::registry::Entry;

    fn setup(env: &Env) {
        let root = env.root();
        edit::write_entry(&root, &Entry::new("web", "/nix/store/aaaa-web")).unwrap();
        let mut db = Entry::new("db", "/nix/store/bbbb-db");
        db.declarative = true;
        edit::write_entry(&root, &db).unwrap();
        std::fs::write(edit::registry_path(&root, "broken"), "{}").unwrap();
        profile::set_system(&root, "web", Path::new("/nix/store/aaaa-web")).unwrap();
        profile::set_system(&root, "web", Path::new("/nix/store/cccc-web")).unwrap();
    }

    /// Runs `list` (not verbose) with the kind filter and output format given.
    fn list(env: &mut Env, kind: Option<Kind>, json: bool) {
        run(
            &mut env.ctx(),
            ListArgs {
                verbose: false,
                kind,
                json,
            },
        )
        .unwrap();
    }

    #[test]
    fn table_and_json() {
        let env = Env::new();
        setup(&env);
        env.sys.set_running("web");
        env.sys
            .states
            .lock()
            .unwrap()
            .insert("db".into(), UnitState::new("failed", "failed"));
        let mut env = env;
        env.sys.addresses = BTreeMap::from([("web".to_owned(), vec!["10.0.0.2".to_owned()])]);
        list(&mut env, None, false);
        let out = env.output();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{out}");
        assert!(
            lines[1].starts_with("broken") && lines[1].contains("invalid"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("db")
                && lines[2].contains("declarative")
                && lines[2].contains("failed"),
            "{out}"
        );
        assert!(
            lines[3].starts_with("web")
                && lines[3].contains("running")
                && lines[3].contains(" 2 ")
                && lines[3].contains("10.0.0.2"),
            "{out}"
        );
        assert_eq!(
            env.sys.calls(),
            vec!["unit-states"],
            "one call for the states"
        );

        list(&mut env, Some(Kind::Imperative), true);
        let v: serde_json::Value = serde_json::from_str(&env.output()).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1);
        assert_eq!(v[0]["name"], "web");
        assert_eq!(v[0]["is_imperative"], true);
        assert_eq!(v[0]["generation"], 2);
        assert_eq!(v[0]["state"], "running");
        assert_eq!(v[0]["network"], "veth");
    }

    #[test]
    fn without_systemd_states_are_unknown() {
        let mut env = Env::new();
        setup(&env);
        env.sys.unavailable = true;
        list(&mut env, Some(Kind::Declarative), true);
        let v: serde_json::Value = serde_json::from_str(&env.output()).unwrap();
        assert_eq!(v[0]["name"], "db");
        assert_eq!(v[0]["state"], "unknown");
        assert!(env.sys.calls().is_empty());
    }

    #[test]
    fn empty() {
        let mut env = Env::new();
        list(&mut env, None, false);
        assert_eq!(env.output(), "No containers.\n");
        list(&mut env, None, true);
        assert_eq!(env.output().trim(), "[]");
    }
}
