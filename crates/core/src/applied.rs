//! The applied state of a container: what was last started or activated, kept
//! in `/run/nixos-nspawn/applied/NAME.json` (gone at reboot, like the running
//! container). `nixos-nspawn apply` diffs the registry against it.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use serde::Serialize;
use serde_json::Value;

use crate::output::write_atomic;
use crate::paths::{self, Root};
use crate::registry::{parse_entry_value, Entry};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// The registry entry as it was applied.
    pub entry: Entry,
    /// The profile generation it ran as.
    pub generation: Option<u64>,
    /// How it was applied: "start" (bootstrap) or "reload" (activate).
    pub action: String,
    /// Seconds since the epoch.
    pub time: u64,
}

impl Applied {
    pub fn now(entry: Entry, generation: Option<u64>, action: &str) -> Applied {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Applied {
            entry,
            generation,
            action: action.to_owned(),
            time,
        }
    }
}

/// Read a container's applied state; `None` when there is none.
pub fn read(root: &Root, name: &str) -> Result<Option<Applied>> {
    let logical = paths::applied_file(name);
    let path = root.join(&logical);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let value: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not valid JSON", logical.display()))?;
    let field = |k: &str| value.get(k).cloned().unwrap_or(Value::Null);
    let entry = parse_entry_value(&logical, &field("entry")).map_err(|errs| {
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}", msgs.join("; "))
    })?;
    Ok(Some(Applied {
        entry,
        generation: field("generation").as_u64(),
        action: field("action").as_str().unwrap_or_default().to_owned(),
        time: field("time").as_u64().unwrap_or(0),
    }))
}

/// Record a container's applied state atomically.
pub fn write(root: &Root, applied: &Applied) -> Result<()> {
    let path = root.join(paths::applied_file(&applied.entry.name));
    let mut text = serde_json::to_string_pretty(applied)?;
    text.push('\n');
    write_atomic(&path, text.as_bytes(), 0o644)?;
    Ok(())
}

/// Forget a container's applied state and recorded closure (it stopped, or
/// was removed).
pub fn remove(root: &Root, name: &str) -> Result<()> {
    for logical in [paths::applied_file(name), closure_file(name)] {
        let path = root.join(logical);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    Ok(())
}

/// Logical path of the recorded closure of a `sharedNix = false` container.
pub fn closure_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(paths::APPLIED_DIR)
        .join("closure")
        .join(format!("{name}.json"))
}

/// Record the store closure of `system` (computed by the bootstrap helper),
/// so the generator renders the same `.nspawn` at the next daemon-reload
/// instead of flapping between "no store paths" and the closure.
pub fn write_closure(root: &Root, name: &str, system: &str, paths: &[String]) -> Result<()> {
    let text = serde_json::json!({ "system": system, "paths": paths }).to_string();
    write_atomic(&root.join(closure_file(name)), text.as_bytes(), 0o644)?;
    Ok(())
}

/// The recorded closure of `system` for container `name`, if one was recorded
/// for exactly that system. Anything unreadable counts as none.
pub fn read_closure(root: &Root, name: &str, system: &str) -> Option<Vec<String>> {
    let bytes = std::fs::read(root.join(closure_file(name))).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    if value.get("system")?.as_str()? != system {
        return None;
    }
    value
        .get("paths")?
        .as_array()?
        .iter()
        .map(|p| {
            p.as_str()
                .filter(|p| crate::registry::check_abs_path(p).is_ok())
                .map(str::to_owned)
        })
        .collect()
}

/// Names with an applied record, sorted (to find containers removed from the
/// registry that may still run).
pub fn names(root: &Root) -> Result<Vec<String>> {
    let dir = root.join(paths::APPLIED_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn round_trip() {
        let (_d, root) = crate::testing::temp_root();
        assert_eq!(read(&root, "web").unwrap(), None);
        let a = Applied::now(
            Entry::new("web", "/nix/store/aaaa-system"),
            Some(3),
            "start",
        );
        write(&root, &a).unwrap();
        assert_eq!(read(&root, "web").unwrap(), Some(a));
        assert_eq!(names(&root).unwrap(), vec!["web".to_string()]);
        remove(&root, "web").unwrap();
        assert_eq!(read(&root, "web").unwrap(), None);
        assert!(!Path::new(&root.join(paths::applied_file("web"))).exists());
    }

    #[test]
    fn closure_is_only_used_for_the_same_system() {
        let (_d, root) = crate::testing::temp_root();
        let paths = vec!["/nix/store/a".to_string(), "/nix/store/b".to_string()];
        assert_eq!(read_closure(&root, "web", "/nix/store/s"), None);
        write_closure(&root, "web", "/nix/store/s", &paths).unwrap();
        assert_eq!(read_closure(&root, "web", "/nix/store/s"), Some(paths));
        assert_eq!(read_closure(&root, "web", "/nix/store/t"), None);
        // The closure record is not an applied record.
        assert_eq!(names(&root).unwrap(), Vec::<String>::new());
    }
}
