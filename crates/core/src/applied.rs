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

/// Forget a container's applied state (it stopped, or was removed).
pub fn remove(root: &Root, name: &str) -> Result<()> {
    let path = root.join(paths::applied_file(name));
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
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
}
