//! `list-generations NAME [--json]`: the profile's generations, as
//! `nix-env --list-generations` shows them, the current one marked.

use anyhow::Result;
use serde::Serialize;

use nixos_nspawn_core::profile;

use crate::args::ListGenerationsArgs;
use crate::edit::{self, Found};
use crate::report::Printable;
use crate::text::{epoch_secs, table, utc};
use crate::{not_found, Ctx, EXIT_OK};

#[derive(Serialize)]
struct Gen {
    generation: u64,
    /// Seconds since the epoch (the link's mtime, as nix-env uses).
    created: u64,
    date: String,
    system: String,
    current: bool,
}

pub fn run(ctx: &mut Ctx, a: ListGenerationsArgs) -> Result<i32> {
    edit::check_name(&a.name)?;
    let gens = profile::generations(&ctx.root, &a.name)?;
    if gens.is_empty() && matches!(edit::find(&ctx.root, &a.name)?, Found::Missing) {
        return Err(not_found(format!("there is no container {}", a.name)));
    }
    let list: Vec<Gen> = gens
        .iter()
        .map(|g| Gen {
            generation: g.number,
            created: epoch_secs(g.created),
            date: utc(epoch_secs(g.created)),
            system: g.system.display().to_string(),
            current: g.current,
        })
        .collect();
    ctx.print(
        a.json,
        &Generations {
            name: a.name.clone(),
            list,
        },
    )?;
    Ok(EXIT_OK)
}

/// The generations of `name`'s profile (JSON: the list alone).
struct Generations {
    name: String,
    list: Vec<Gen>,
}

impl Serialize for Generations {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.list.serialize(s)
    }
}

impl Printable for Generations {
    fn text(&self) -> String {
        if self.list.is_empty() {
            return format!("{} has no generations.", self.name);
        }
        let rows: Vec<Vec<String>> = self
            .list
            .iter()
            .map(|g| {
                vec![
                    format!("{:>4}", g.generation),
                    g.date.clone(),
                    g.system.clone(),
                    if g.current {
                        "(current)".into()
                    } else {
                        String::new()
                    },
                ]
            })
            .collect();
        table(&rows).trim_end().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Env;
    use crate::{exit_code, EXIT_NOT_FOUND};
    use std::path::Path;

    #[test]
    fn marks_the_current_one() {
        let mut env = Env::new();
        let root = env.root();
        profile::set_system(&root, "web", Path::new("/nix/store/aaaa-a")).unwrap();
        profile::set_system(&root, "web", Path::new("/nix/store/bbbb-b")).unwrap();
        profile::switch_generation(&root, "web", 1).unwrap();
        run(
            &mut env.ctx(),
            ListGenerationsArgs {
                verbose: false,
                name: "web".into(),
                json: false,
            },
        )
        .unwrap();
        let out = env.output();
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].trim_start().starts_with("1 ") && lines[0].ends_with("(current)"),
            "{out}"
        );
        assert!(
            lines[1].contains("/nix/store/bbbb-b") && !lines[1].contains("current"),
            "{out}"
        );
        run(
            &mut env.ctx(),
            ListGenerationsArgs {
                verbose: false,
                name: "web".into(),
                json: true,
            },
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&env.output()).unwrap();
        assert_eq!(v[0]["current"], true);
        assert_eq!(v[1]["generation"], 2);
        let err = run(
            &mut env.ctx(),
            ListGenerationsArgs {
                verbose: false,
                name: "nope".into(),
                json: false,
            },
        )
        .unwrap_err();
        assert_eq!(exit_code(&err), EXIT_NOT_FOUND);
    }
}
