//! systemd-nspawn flags of `EXTRA_NSPAWN_FLAGS` and what each becomes in a
//! registry entry, as the one table `nix/lib/nspawn-flags.json` says (the
//! NixOS module's `extraFlags` reads the same table: nix/lib/nspawn-flags.nix).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::Value;

/// The table, as the Nix package installs it next to nix/lib/*.nix.
const TABLE: &str = include_str!("../../../../nix/lib/nspawn-flags.json");

/// What a flag becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Kind {
    Nspawn,
    Service,
    Rlimit,
    Bind,
    BindReadOnly,
    Syscalls,
    PrivateUsers,
    Port,
    Ephemeral,
    Ignored,
    Note,
    Unsupported,
}

/// One flag of the table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Row {
    pub(crate) kind: Kind,
    pub(crate) value: bool,
    #[serde(default)]
    section: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    split: Option<String>,
    #[serde(default)]
    set: Option<Value>,
    #[serde(default)]
    default: Option<Value>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    invalid: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    #[allow(dead_code)]
    about: Vec<String>,
    rlimits: Vec<String>,
    flags: BTreeMap<String, Row>,
}

struct Lookup {
    table: Table,
    /// every spelling (aliases included) -> its flag in `table.flags`
    names: BTreeMap<String, String>,
}

static LOOKUP: LazyLock<Lookup> = LazyLock::new(|| {
    let table: Table = serde_json::from_str(TABLE).expect("nix/lib/nspawn-flags.json is the table");
    let mut names = BTreeMap::new();
    for (flag, row) in &table.flags {
        for name in std::iter::once(flag).chain(&row.aliases) {
            names.insert(name.clone(), flag.clone());
        }
    }
    Lookup { table, names }
});

/// The table's row of `flag` (any spelling), if it has one.
pub(crate) fn row(flag: &str) -> Option<&'static Row> {
    let l = &*LOOKUP;
    l.names.get(flag).map(|f| &l.table.flags[f])
}

/// Every flag of the table with its aliases.
#[cfg(test)]
pub(crate) fn spellings() -> Vec<&'static str> {
    LOOKUP.names.keys().map(String::as_str).collect()
}

/// Whether `flag` takes a value (`--flag VALUE` as well as `--flag=VALUE`).
pub(crate) fn takes_value(flag: &str) -> bool {
    row(flag).is_some_and(|r| r.value)
}

/// What the `EXTRA_NSPAWN_FLAGS` amount to.
#[derive(Default)]
pub(crate) struct Effects {
    pub(crate) binds: Vec<String>,
    /// (section, key, values) of `extraNspawn`
    pub(crate) nspawn: Vec<(String, String, Vec<Value>)>,
    /// (section, key, values) of `extraService`
    pub(crate) service: Vec<(String, String, Vec<Value>)>,
    pub(crate) syscalls: Vec<String>,
    pub(crate) private_users: Vec<String>,
    pub(crate) ports: Vec<String>,
    pub(crate) ephemeral: bool,
    pub(crate) notes: Vec<String>,
    pub(crate) unsupported: Vec<String>,
}

/// nspawn's `--bind[-ro]=SRC[:DST[:OPTS]]` as a registry bind mount string.
fn bind_of(read_only: bool, v: &str) -> String {
    let parts: Vec<&str> = v.split(':').collect();
    let src = parts[0];
    let dst = parts
        .get(1)
        .copied()
        .filter(|d| !d.is_empty())
        .unwrap_or(src);
    let mut all: Vec<&str> = if read_only { vec!["ro"] } else { vec![] };
    if let Some(o) = parts.get(2) {
        all.extend(o.split(',').filter(|o| !o.is_empty() && *o != "ro"));
    }
    if all.is_empty() {
        format!("{src}:{dst}")
    } else {
        format!("{src}:{dst}:{}", all.join(","))
    }
}

/// `--rlimit`'s NAME (`RLIMIT_NAME`, `LimitNAME` or `NAME`) as the table names it.
fn rlimit_name(n: &str) -> Option<&'static str> {
    let bare = n
        .strip_prefix("RLIMIT_")
        .or_else(|| n.strip_prefix("Limit"))
        .unwrap_or(n);
    LOOKUP
        .table
        .rlimits
        .iter()
        .find(|r| *r == bare)
        .map(String::as_str)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Add what one flag (`v`: its value, if any) amounts to.
pub(crate) fn effect(fx: &mut Effects, flag: &str, v: Option<&str>) {
    let unsupported = || {
        format!(
            "EXTRA_NSPAWN_FLAGS: {flag}{} has no nixos-nspawn equivalent; add it to extraNspawn (systemd.nspawn(5)) by hand if it has a .nspawn setting",
            v.map_or_else(String::new, |v| format!("={v}"))
        )
    };
    let Some(row) = row(flag) else {
        fx.unsupported.push(unsupported());
        return;
    };
    let value: Value = match (&row.set, v, &row.default) {
        (Some(set), _, _) => set.clone(),
        (None, Some(v), _) => Value::String(v.to_owned()),
        (None, None, Some(d)) => d.clone(),
        (None, None, None) => Value::String(String::new()),
    };
    let val = text(&value);
    let assignment = val.split_once('=');
    let invalid = || {
        format!(
            "EXTRA_NSPAWN_FLAGS: {flag}={val} {}",
            row.invalid.as_deref().unwrap_or("is not valid")
        )
    };
    match row.kind {
        Kind::Nspawn => {
            let values = match (&row.split, &value) {
                (Some(sep), Value::String(s)) => s
                    .split(sep.as_str())
                    .map(|x| Value::String(x.to_owned()))
                    .collect(),
                _ => vec![value.clone()],
            };
            let (s, k) = (row.section.clone(), row.key.clone());
            fx.nspawn.push((
                s.expect("an nspawn row has a section"),
                k.expect("an nspawn row has a key"),
                values,
            ));
        }
        Kind::Service => match assignment {
            Some((name, value)) if !name.is_empty() => fx.service.push((
                "Service".into(),
                name.to_owned(),
                vec![Value::String(value.to_owned())],
            )),
            _ => fx.unsupported.push(invalid()),
        },
        Kind::Rlimit => match assignment.and_then(|(n, l)| Some((rlimit_name(n)?, l))) {
            Some((name, limit)) => fx.nspawn.push((
                "Exec".into(),
                format!("Limit{name}"),
                vec![Value::String(limit.to_owned())],
            )),
            None => fx.unsupported.push(invalid()),
        },
        Kind::Bind => fx.binds.push(bind_of(false, &val)),
        Kind::BindReadOnly => fx.binds.push(bind_of(true, &val)),
        Kind::Syscalls => fx.syscalls.push(val),
        Kind::PrivateUsers => fx.private_users.push(val),
        Kind::Port => fx.ports.push(val),
        Kind::Ephemeral => fx.ephemeral = true,
        Kind::Ignored => {}
        Kind::Note => fx.notes.push(format!(
            "EXTRA_NSPAWN_FLAGS: {flag}={val} {}",
            row.note.as_deref().unwrap_or("dropped")
        )),
        Kind::Unsupported => fx.unsupported.push(unsupported()),
    }
}
