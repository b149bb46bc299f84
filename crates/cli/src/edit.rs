//! Reading and writing registry entries for the CLI: what kind of entry a
//! name has, the refusal for declarative ones, validated atomic writes, and
//! the entry a system brings along (`<system>/nixos-nspawn/entry.json`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::{Map, Value};

use nixos_nspawn_core::output::{fsync_dir, write_atomic};
use nixos_nspawn_core::registry::{self, Entry};
use nixos_nspawn_core::{paths, EntryError, Root};

use crate::{not_found, refused, usage};

/// What the registry has under a name.
#[derive(Debug)]
pub enum Found {
    Missing,
    /// A regular file with a valid imperative entry.
    Imperative(Entry),
    /// A store link, or `declarative: true`.
    Declarative {
        entry: Option<Entry>,
        why: String,
    },
    /// A regular file that does not parse (may still be removed).
    Invalid(Vec<EntryError>),
}

/// The real path of a container's registry file.
pub fn registry_path(root: &Root, name: &str) -> PathBuf {
    root.join(paths::registry_file(name))
}

/// A usage error unless `name` is a valid machine name.
pub fn check_name(name: &str) -> Result<()> {
    nixos_nspawn_core::names::check_machine_name(name)
        .map_err(|e| usage(format!("{name:?} is not a valid container name: it {e}")))
}

pub fn find(root: &Root, name: &str) -> Result<Found> {
    let path = registry_path(root, name);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(e).with_context(|| format!("checking {}", path.display())),
    };
    let link = meta.file_type().is_symlink();
    let parsed = registry::load_entry(root, name);
    if link {
        let target = std::fs::read_link(&path).unwrap_or_default();
        return Ok(Found::Declarative {
            entry: parsed.ok(),
            why: format!(
                "its registry file {} is a link (to {}) written by the NixOS module",
                paths::registry_file(name).display(),
                target.display()
            ),
        });
    }
    match parsed {
        Ok(e) if e.declarative => Ok(Found::Declarative {
            entry: Some(e),
            why: format!(
                "its registry file {} says \"declarative\": true",
                paths::registry_file(name).display()
            ),
        }),
        Ok(e) => Ok(Found::Imperative(e)),
        Err(errors) => {
            // Invalid, but maybe still declarative by its own word.
            let raw: Option<Value> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if raw.as_ref().and_then(|v| v.get("declarative")) == Some(&Value::Bool(true)) {
                return Ok(Found::Declarative {
                    entry: None,
                    why: format!(
                        "its registry file {} says \"declarative\": true",
                        paths::registry_file(name).display()
                    ),
                });
            }
            Ok(Found::Invalid(errors))
        }
    }
}

/// The refusal for a declarative container.
pub fn declarative_refusal(name: &str, why: &str, what: &str) -> anyhow::Error {
    refused(format!(
        "not {what} {name}: it is a declarative container ({why}); change nixos.containers.instances.{name} \
         in the host's NixOS configuration and run nixos-rebuild switch instead"
    ))
}

/// All problems of an invalid entry as one error.
pub fn entry_errors(errors: &[EntryError]) -> anyhow::Error {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    anyhow::anyhow!("{}", lines.join("\n  "))
}

/// The imperative entry of `name`: not found (3), refused when declarative
/// (4), an error when invalid (1).
pub fn require_imperative(root: &Root, name: &str, what: &str) -> Result<Entry> {
    match find(root, name)? {
        Found::Missing => Err(not_found(format!("there is no container {name} ({} does not exist)", paths::registry_file(name).display()))),
        Found::Imperative(e) => Ok(e),
        Found::Declarative { why, .. } => Err(declarative_refusal(name, &why, what)),
        Found::Invalid(errors) => Err(entry_errors(&errors).context(format!(
            "the registry entry of {name} is invalid; fix it, or remove the container (nixos-nspawn remove {name})"
        ))),
    }
}

/// Validate an entry exactly as the generator will read it (round trip
/// through the parser).
pub fn validate(entry: &Entry) -> Result<Entry> {
    let file = paths::registry_file(&entry.name);
    registry::parse_entry(&file, entry.to_json().as_bytes()).map_err(|errors| {
        entry_errors(&errors).context(format!("the entry for {} would be invalid", entry.name))
    })
}

/// Write an entry atomically (validated first). Returns the bytes written.
pub fn write_entry(root: &Root, entry: &Entry) -> Result<Vec<u8>> {
    let entry = validate(entry)?;
    let bytes = entry.to_json().into_bytes();
    write_atomic(&registry_path(root, &entry.name), &bytes, 0o644)?;
    Ok(bytes)
}

/// Remove a registry file, but only when it still holds `expected` (so an
/// undo never removes someone else's later write). Returns whether it did.
pub fn remove_entry_if(root: &Root, name: &str, expected: Option<&[u8]>) -> Result<bool> {
    let path = registry_path(root, name);
    if let Some(expected) = expected {
        match std::fs::read(&path) {
            Ok(b) if b == expected => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    }
    // Its closure file goes with it (nothing reads one without an entry).
    let _ = std::fs::remove_file(root.join(nixos_nspawn_core::paths::closure_file(name)));
    fsync_dir(&root.registry_dir())?;
    Ok(true)
}

/// Where a system keeps the entry its `nixosContainer.*` options describe.
pub fn entry_json_path(system: &Path) -> PathBuf {
    system.join("nixos-nspawn/entry.json")
}

/// The entry a system brings along, made into `name`'s imperative entry
/// (name, system and declarative set), validated. `None` when the system has
/// none (built without the container profile, or not NixOS at all).
pub fn system_entry(system: &Path, name: &str) -> Result<Option<Entry>> {
    let path = entry_json_path(system);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut value: Value = registry::parse_json(&path, &bytes).map_err(|errors| {
        entry_errors(&errors).context(format!(
            "the container settings in {} (nixosContainer.* options) cannot be read",
            path.display()
        ))
    })?;
    let Value::Object(map) = &mut value else {
        anyhow::bail!("{} is not a JSON object", path.display());
    };
    if let Some(Value::String(built_for)) = map.get("name") {
        if built_for != name {
            log::warn!(
                "{} was built for container {built_for:?}, not {name:?} (its host name says so)",
                system.display()
            );
        }
    }
    let system_str = system
        .to_str()
        .context("the system path is not valid UTF-8")?;
    map.insert("name".into(), Value::String(name.to_owned()));
    map.insert("system".into(), Value::String(system_str.to_owned()));
    map.insert("declarative".into(), Value::Bool(false));
    registry::parse_entry_value(&paths::registry_file(name), &value)
        .map(Some)
        .map_err(|errors| {
            entry_errors(&errors).context(format!(
                "the container settings in {} (nixosContainer.* options) are invalid",
                path.display()
            ))
        })
}

/// The base entry for a new container: the system's own, or what `create`
/// starts from ([`Entry::new_imperative`]: the defaults, user-namespaced).
pub fn base_entry(system: &Path, name: &str) -> Result<Entry> {
    let system_str = system
        .to_str()
        .context("the system path is not valid UTF-8")?;
    Ok(system_entry(system, name)?.unwrap_or_else(|| Entry::new_imperative(name, system_str)))
}

fn fields(e: &Entry) -> Map<String, Value> {
    match serde_json::to_value(e) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// The entry after switching `current` to `system` (update, rollback): a
/// three-way merge per top-level field. A field the user changed (it differs
/// from what `current`'s own system brought along, or from the defaults when
/// that system brought nothing) keeps the user's value; every other field
/// takes the value the new system brings along (when it brings anything).
pub fn switch_system(current: &Entry, system: &Path) -> Result<Entry> {
    let system_str = system
        .to_str()
        .context("the system path is not valid UTF-8")?;
    let new_base = system_entry(system, &current.name)?;
    // What `create` made of the current system (its own entry, or the
    // creation defaults): a field that still has that value was not changed
    // by the user.
    let old_base = match system_entry(Path::new(&current.system), &current.name) {
        Ok(Some(e)) => e,
        Ok(None) => Entry::new_imperative(&current.name, &current.system),
        Err(e) => {
            log::debug!("ignoring the entry of the current system: {e:#}");
            Entry::new_imperative(&current.name, &current.system)
        }
    };
    let mut result = fields(current);
    if let Some(new_base) = &new_base {
        let old = fields(&old_base);
        let cur = fields(current);
        for (key, value) in fields(new_base) {
            if matches!(key.as_str(), "version" | "name" | "system" | "declarative") {
                continue;
            }
            let user_changed = cur.get(&key) != old.get(&key);
            if !user_changed {
                result.insert(key, value);
            }
        }
    }
    result.insert("system".into(), Value::String(system_str.to_owned()));
    registry::parse_entry_value(&paths::registry_file(&current.name), &Value::Object(result))
        .map_err(|errors| {
            entry_errors(&errors)
                .context(format!("the entry for {} would be invalid", current.name))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nixos_nspawn_core::registry::{BindMount, Strategy};

    fn system_with(dir: &Path, name: &str, entry: Option<serde_json::Value>) -> PathBuf {
        let s = dir.join(name);
        std::fs::create_dir_all(s.join("nixos-nspawn")).unwrap();
        if let Some(e) = entry {
            std::fs::write(entry_json_path(&s), e.to_string()).unwrap();
        }
        s
    }

    #[test]
    fn kinds() {
        let (d, root) = nixos_nspawn_core::testing::temp_root();
        assert!(matches!(find(&root, "web").unwrap(), Found::Missing));
        write_entry(&root, &Entry::new("web", "/nix/store/a")).unwrap();
        assert!(matches!(find(&root, "web").unwrap(), Found::Imperative(_)));
        let mut decl = Entry::new("db", "/nix/store/b");
        decl.declarative = true;
        write_entry(&root, &decl).unwrap();
        assert!(matches!(
            find(&root, "db").unwrap(),
            Found::Declarative { .. }
        ));
        // A link (as the module makes) is declarative even if it says otherwise.
        let store = d.path().join("store-entry.json");
        std::fs::write(&store, Entry::new("lnk", "/nix/store/c").to_json()).unwrap();
        std::os::unix::fs::symlink(&store, registry_path(&root, "lnk")).unwrap();
        let err = require_imperative(&root, "lnk", "updating").unwrap_err();
        assert_eq!(crate::exit_code(&err), crate::EXIT_REFUSED);
        assert!(err.to_string().contains("is a link"), "{err}");
        std::fs::write(registry_path(&root, "bad"), "{").unwrap();
        assert!(matches!(find(&root, "bad").unwrap(), Found::Invalid(_)));
        let err = require_imperative(&root, "nope", "updating").unwrap_err();
        assert_eq!(crate::exit_code(&err), crate::EXIT_NOT_FOUND);
    }

    #[test]
    fn remove_only_what_we_wrote() {
        let (_d, root) = nixos_nspawn_core::testing::temp_root();
        let bytes = write_entry(&root, &Entry::new("web", "/nix/store/a")).unwrap();
        write_entry(&root, &Entry::new("web", "/nix/store/b")).unwrap();
        assert!(!remove_entry_if(&root, "web", Some(&bytes)).unwrap());
        assert!(registry_path(&root, "web").exists());
        assert!(remove_entry_if(&root, "web", None).unwrap());
    }

    #[test]
    fn three_way_merge() {
        let d = tempfile::tempdir().unwrap();
        let entry = |binds: &[&str], auto: bool| serde_json::json!({"version": 1, "name": "built-for", "system": "/x", "bindMounts": binds, "autoStart": auto});
        let s1 = system_with(d.path(), "s1", Some(entry(&["/srv/a"], true)));
        let s2 = system_with(d.path(), "s2", Some(entry(&["/srv/b"], false)));
        let plain = system_with(d.path(), "plain", None);
        let mut cur = base_entry(&s1, "web").unwrap();
        assert_eq!(cur.bind_mounts, vec![BindMount::parse("/srv/a").unwrap()]);
        assert_eq!(cur.name, "web");
        assert!(!cur.declarative);
        // The user changed the strategy; the system changed binds and autoStart.
        cur.activation.strategy = Strategy::Restart;
        let next = switch_system(&cur, &s2).unwrap();
        assert_eq!(next.system, s2.to_str().unwrap());
        assert_eq!(next.bind_mounts, vec![BindMount::parse("/srv/b").unwrap()]);
        assert!(!next.auto_start);
        assert_eq!(
            next.activation.strategy,
            Strategy::Restart,
            "user's change kept"
        );
        // A user's own bind (differs from what s1 brought) survives too.
        let mut cur2 = base_entry(&s1, "web").unwrap();
        cur2.bind_mounts
            .push(BindMount::parse("/srv/mine").unwrap());
        let next = switch_system(&cur2, &s2).unwrap();
        assert_eq!(next.bind_mounts.len(), 2);
        // A system without entry.json: only the system changes.
        let next = switch_system(&cur, &plain).unwrap();
        assert_eq!(next.bind_mounts, cur.bind_mounts);
        assert_eq!(next.system, plain.to_str().unwrap());
    }
}
