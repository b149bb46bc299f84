//! `import-classic NAME [--move-state] [--force] [--start] [--json]`: a
//! classic imperative container (`nixos-container create`) becomes an
//! imperative nixos-nspawn container, as docs/migration.md describes.
//!
//! [`from_conf`] is the conversion of the `.conf` file; it mirrors
//! `nix/lib/classic.nix` (the reference, checked by nix/tests/contract.nix)
//! rule for rule and message for message, and a test runs both on the same
//! files and compares.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use serde_json::{json, Map, Value};

use nixos_nspawn::hosttools;
use nixos_nspawn::lock::lock_registry;
use nixos_nspawn::registry::{self, Entry};
use nixos_nspawn::{applied, names, paths, profile, statedir};

use super::daemon_reload;
use crate::args::ImportClassicArgs;
use crate::edit::{self, Found};
use crate::report::Printable;
use crate::systemd::Verb;
use crate::txn::Transaction;
use crate::{not_found, refused, Ctx, EXIT_OK};

/// What a `.conf` file converts to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Converted {
    /// The registry entry (schema v1, `declarative: false`), as JSON.
    pub entry: Value,
    /// What the container's own configuration needs instead of the classic
    /// init's eth0 setup (`nixosContainer.containerNetworkConfig`), or null.
    pub container: Option<Value>,
    pub notes: Vec<String>,
    /// Settings with no equivalent: refused unless `--force` (then dropped).
    pub unsupported: Vec<String>,
}

/// `KEY=VALUE` lines as systemd's `EnvironmentFile=` reads them (quotes
/// removed); the first assignment of a key counts, as in the reference.
pub fn parse_conf(text: &str) -> BTreeMap<String, String> {
    let mut conf = BTreeMap::new();
    for line in text.split('\n') {
        let l = line.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let Some((key, value)) = l.split_once('=') else {
            continue;
        };
        let mut chars = key.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            continue;
        }
        // The last assignment wins, as with systemd's EnvironmentFile= (which
        // is how the classic container@.service reads this file).
        conf.insert(key.to_owned(), unquote(value));
    }
    conf
}

fn unquote(v: &str) -> String {
    let t = v.trim_end_matches(|c: char| c.is_ascii_whitespace());
    for q in ['"', '\''] {
        if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) {
            return t[1..t.len() - 1].to_owned();
        }
    }
    if !t.contains(|c: char| c.is_ascii_whitespace()) {
        return t.to_owned();
    }
    v.to_owned()
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| c.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn with_prefix(plen: &str, a: &str) -> String {
    if a.contains('/') {
        a.to_owned()
    } else {
        format!("{a}/{plen}")
    }
}

/// nspawn's `--port` syntax: `[PROTOCOL:]HOSTPORT[:CONTAINERPORT]`.
fn parse_port(s: &str) -> Result<Value, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let proto = parts
        .first()
        .copied()
        .filter(|p| *p == "tcp" || *p == "udp");
    let rest = if proto.is_some() {
        &parts[1..]
    } else {
        &parts[..]
    };
    let num = |x: &str| -> Option<u64> {
        (!x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
            .then(|| x.parse().ok())
            .flatten()
    };
    let err = || {
        format!(
            "HOST_PORT entry {} is not [tcp:|udp:]HOSTPORT[:CONTAINERPORT]",
            json!(s)
        )
    };
    if rest.is_empty() || rest.len() > 2 {
        return Err(err());
    }
    let host = num(rest[0]).ok_or_else(err)?;
    let container = match rest.get(1) {
        Some(c) => Some(num(c).ok_or_else(err)?),
        None => None,
    };
    Ok(json!({"protocol": proto.unwrap_or("tcp"), "hostPort": host, "containerPort": container}))
}

const VALUE_FLAGS: &[&str] = &[
    "--bind",
    "--bind-ro",
    "--capability",
    "--drop-capability",
    "--tmpfs",
    "--system-call-filter",
    "--private-users",
    "--private-users-ownership",
    "--network-veth-extra",
    "--network-interface",
    "--network-macvlan",
    "--network-ipvlan",
    "--port",
    "-p",
    "--setenv",
    "-E",
    "--resolv-conf",
    "--timezone",
    "--link-journal",
    "--overlay",
    "--overlay-ro",
    "--inaccessible",
    "--personality",
    "--hostname",
    "--no-new-privileges",
    "--network-bridge",
    "--network-zone",
    "--kill-signal",
];

/// `--flag VALUE` and `--flag=VALUE` pairs; a value flag at the very end is dropped.
/// (`-p VALUE` is a value flag here; nix/lib/classic.nix lacks it and fails
/// on `-p 80`, the one input where the two differ.)
fn flag_pairs(tokens: &[String]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut pending: Option<&str> = None;
    for t in tokens {
        if let Some(flag) = pending.take() {
            out.push((flag.to_owned(), Some(t.clone())));
            continue;
        }
        if let Some((flag, value)) = t.split_once('=') {
            let f = flag.strip_prefix("--").or_else(|| flag.strip_prefix('-'));
            if f.is_some_and(|f| {
                !f.is_empty() && f.chars().all(|c| c.is_ascii_alphabetic() || c == '-')
            }) {
                out.push((flag.to_owned(), Some(value.to_owned())));
                continue;
            }
        }
        if VALUE_FLAGS.contains(&t.as_str()) {
            pending = Some(t);
        } else {
            out.push((t.clone(), None));
        }
    }
    out
}

/// nspawn's `--bind[-ro]=SRC[:DST[:OPTS]]` as a registry bind mount.
fn bind_of(read_only: bool, v: &str) -> String {
    let parts: Vec<&str> = v.split(':').collect();
    let src = parts[0];
    let dst = parts
        .get(1)
        .copied()
        .filter(|d| !d.is_empty())
        .unwrap_or(src);
    let opts: Vec<&str> = parts
        .get(2)
        .map(|o| o.split(',').filter(|o| !o.is_empty()).collect())
        .unwrap_or_default();
    let mut all: Vec<&str> = if read_only { vec!["ro"] } else { vec![] };
    all.extend(opts.into_iter().filter(|o| *o != "ro"));
    if all.is_empty() {
        format!("{src}:{dst}")
    } else {
        format!("{src}:{dst}:{}", all.join(","))
    }
}

#[derive(Default)]
struct Effects {
    binds: Vec<String>,
    /// (section, key, values)
    nspawn: Vec<(&'static str, &'static str, Vec<Value>)>,
    syscalls: Vec<String>,
    private_users: Vec<String>,
    ports: Vec<String>,
    ephemeral: bool,
    notes: Vec<String>,
    unsupported: Vec<String>,
}

fn flag_effect(fx: &mut Effects, flag: &str, v: Option<&str>) {
    let val = v.unwrap_or("");
    let one = |s: &str| vec![Value::String(s.to_owned())];
    let list = |s: &str| {
        s.split(',')
            .map(|x| Value::String(x.to_owned()))
            .collect::<Vec<_>>()
    };
    let nspawn: Option<(&'static str, &'static str, Vec<Value>)> = match flag {
        "--bind" => {
            fx.binds.push(bind_of(false, val));
            None
        }
        "--bind-ro" => {
            fx.binds.push(bind_of(true, val));
            None
        }
        "--capability" => Some(("Exec", "Capability", list(val))),
        "--drop-capability" => Some(("Exec", "DropCapability", list(val))),
        "--tmpfs" => Some(("Files", "TemporaryFileSystem", one(val))),
        "--system-call-filter" => {
            fx.syscalls.push(val.to_owned());
            None
        }
        "--private-users" => {
            fx.private_users.push(val.to_owned());
            None
        }
        "--private-users-ownership" => Some(("Files", "PrivateUsersOwnership", one(val))),
        "--network-veth-extra" => Some(("Network", "VirtualEthernetExtra", one(val))),
        "--network-interface" => Some(("Network", "Interface", one(val))),
        "--network-macvlan" => Some(("Network", "MACVLAN", one(val))),
        "--network-ipvlan" => Some(("Network", "IPVLAN", one(val))),
        "--port" | "-p" => {
            fx.ports.push(val.to_owned());
            None
        }
        "--setenv" | "-E" => Some(("Exec", "Environment", one(val))),
        "--resolv-conf" => Some(("Exec", "ResolvConf", one(val))),
        "--timezone" => Some(("Exec", "Timezone", one(val))),
        "--overlay" => Some(("Files", "Overlay", one(val))),
        "--overlay-ro" => Some(("Files", "OverlayReadOnly", one(val))),
        "--inaccessible" => Some(("Files", "Inaccessible", one(val))),
        "--personality" => Some(("Exec", "Personality", one(val))),
        "--hostname" => Some(("Exec", "Hostname", one(val))),
        "--no-new-privileges" => Some(("Exec", "NoNewPrivileges", one(val))),
        "--read-only" => Some(("Files", "ReadOnly", vec![Value::Bool(true)])),
        "--ephemeral" | "-x" => {
            fx.ephemeral = true;
            None
        }
        "--private-network" => None,
        "--link-journal" => {
            fx.notes.push(format!(
                "EXTRA_NSPAWN_FLAGS: {flag}={val} dropped: nixos-nspawn always uses LinkJournal=try-guest"
            ));
            None
        }
        _ => {
            fx.unsupported.push(format!(
                "EXTRA_NSPAWN_FLAGS: {flag}{} has no nixos-nspawn equivalent; add it to extraNspawn (systemd.nspawn(5)) by hand if it has a .nspawn setting",
                v.map_or_else(String::new, |v| format!("={v}"))
            ));
            None
        }
    };
    if let Some(item) = nspawn {
        fx.nspawn.push(item);
    }
}

const KNOWN: &[&str] = &[
    "SYSTEM_PATH",
    "FLAKE",
    "COPY_RESOLV_CONF",
    "PRIVATE_NETWORK",
    "HOST_BRIDGE",
    "HOST_PORT",
    "HOST_ADDRESS",
    "HOST_ADDRESS6",
    "LOCAL_ADDRESS",
    "LOCAL_ADDRESS6",
    "LOCAL_MAC_ADDRESS",
    "NETWORK_NAMESPACE_PATH",
    "PRIVATE_USERS",
    "INTERFACES",
    "MACVLANS",
    "AUTO_START",
    "EXTRA_NSPAWN_FLAGS",
];

/// Convert a classic `.conf` file. `system`: the system to run (the target
/// of the classic per-container profile); `None` uses `SYSTEM_PATH=`.
/// The host side of classic static addresses (`HOST_ADDRESS=H`,
/// `LOCAL_ADDRESS=L`, and the IPv6 pair; empty strings for unset): the
/// `network.host` settings of the `ve-` link, a point-to-point `Address=H`
/// with `Peer=L` (`/32`, `/128` unless a prefix is given) instead of the
/// DHCP server's pool, so several containers can share one host address as
/// with the classic scripts. Only a local address: a route to it.
pub fn host_side(host4: &str, local4: &str, host6: &str, local6: &str) -> Value {
    let pair = |host: &str, local: &str, plen: &str| -> Vec<Value> {
        if !host.is_empty() && !local.is_empty() {
            vec![json!({"Address": with_prefix(plen, host), "Peer": with_prefix(plen, local)})]
        } else if !host.is_empty() {
            vec![json!({"Address": with_prefix(plen, host)})]
        } else {
            vec![]
        }
    };
    let mut host_routes = Vec::new();
    if host4.is_empty() && !local4.is_empty() {
        host_routes.push(json!({"Destination": with_prefix("32", local4)}));
    }
    if host6.is_empty() && !local6.is_empty() {
        host_routes.push(json!({"Destination": with_prefix("128", local6)}));
    }
    let mut m = Map::new();
    m.insert(
        "Network".into(),
        json!({"Address": null, "DHCPServer": false}),
    );
    let mut addrs = pair(host4, local4, "32");
    addrs.extend(pair(host6, local6, "128"));
    if !addrs.is_empty() {
        m.insert("Address".into(), Value::Array(addrs));
    }
    if !host_routes.is_empty() {
        m.insert("Route".into(), Value::Array(host_routes));
    }
    Value::Object(m)
}

/// The container side of the same addresses: the
/// `nixosContainer.containerNetworkConfig` the container's own configuration
/// needs (the classic init set them on `eth0`; networkd inside configures
/// `host0` now).
pub fn container_side(host4: &str, local4: &str, host6: &str, local6: &str, mac: &str) -> Value {
    let container_pair = |local: &str, host: &str, plen: &str| -> Vec<Value> {
        if local.is_empty() {
            return vec![];
        }
        let mut m = Map::new();
        m.insert("Address".into(), Value::String(with_prefix(plen, local)));
        if !host.is_empty() {
            m.insert("Peer".into(), Value::String(with_prefix(plen, host)));
        }
        vec![Value::Object(m)]
    };
    let mut addresses = container_pair(local4, host4, "32");
    addresses.extend(container_pair(local6, host6, "128"));
    let gateway: Vec<&str> = [host4, host6]
        .into_iter()
        .filter(|h| !h.is_empty())
        .collect();
    let mut m = Map::new();
    m.insert("addresses".into(), Value::Array(addresses));
    m.insert("gateway".into(), json!(gateway));
    m.insert("networkConfig".into(), json!({"DHCP": "no"}));
    if !mac.is_empty() {
        m.insert("linkConfig".into(), json!({"MACAddress": mac}));
    }
    Value::Object(m)
}

pub fn from_conf(name: &str, text: &str, system: Option<&str>) -> Converted {
    let conf = parse_conf(text);
    let get = |k: &str| conf.get(k).cloned().unwrap_or_default();
    let mut fx = Effects::default();
    for (flag, value) in flag_pairs(&words(&get("EXTRA_NSPAWN_FLAGS"))) {
        flag_effect(&mut fx, &flag, value.as_deref());
    }
    let private = get("PRIVATE_NETWORK") == "1";
    let bridge = get("HOST_BRIDGE");
    let interfaces = words(&get("INTERFACES"));
    let macvlans = words(&get("MACVLANS"));
    let (host4, host6) = (get("HOST_ADDRESS"), get("HOST_ADDRESS6"));
    let (local4, local6) = (get("LOCAL_ADDRESS"), get("LOCAL_ADDRESS6"));
    let mac = get("LOCAL_MAC_ADDRESS");
    let any_address = [&host4, &host6, &local4, &local6]
        .iter()
        .any(|a| !a.is_empty());
    let port_strings: Vec<String> = get("HOST_PORT")
        .split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .chain(fx.ports.iter().cloned())
        .collect();
    let ports: Vec<Result<Value, String>> = port_strings.iter().map(|p| parse_port(p)).collect();

    // The classic start script: --network-bridge when HOST_BRIDGE is set,
    // --network-veth when an address or a MAC address is set (here also for
    // ports, which need an interface), else only --private-network; moved
    // interfaces imply a private network.
    let mode = if !bridge.is_empty() {
        "bridge"
    } else if private && (any_address || !mac.is_empty() || !ports.is_empty()) {
        "veth"
    } else if private || !interfaces.is_empty() || !macvlans.is_empty() {
        "none"
    } else {
        "host"
    };

    let host_network =
        (mode == "veth" && any_address).then(|| host_side(&host4, &local4, &host6, &local6));
    let container = ((mode == "veth" && any_address) || !mac.is_empty())
        .then(|| container_side(&host4, &local4, &host6, &local6, &mac));

    let mut private_users: Vec<String> = Vec::new();
    if !get("PRIVATE_USERS").is_empty() {
        private_users.push(get("PRIVATE_USERS"));
    }
    private_users.extend(fx.private_users.iter().cloned());
    let pu = private_users.last().cloned().unwrap_or_else(|| "no".into());

    let mut items = fx.nspawn.clone();
    items.extend(
        interfaces
            .iter()
            .map(|i| ("Network", "Interface", vec![Value::String(i.clone())])),
    );
    items.extend(
        macvlans
            .iter()
            .map(|i| ("Network", "MACVLAN", vec![Value::String(i.clone())])),
    );
    if pu != "no" && pu != "pick" {
        items.push(("Exec", "PrivateUsers", vec![Value::String(pu.clone())]));
    }
    let mut extra: BTreeMap<&str, BTreeMap<&str, Vec<Value>>> = BTreeMap::new();
    for (s, k, v) in items {
        extra.entry(s).or_default().entry(k).or_default().extend(v);
    }

    let system_path = system
        .map(str::to_owned)
        .unwrap_or_else(|| get("SYSTEM_PATH"));
    let entry = json!({
        "version": registry::SCHEMA_VERSION,
        "name": name,
        "declarative": false,
        "system": system_path,
        "autoStart": get("AUTO_START") == "1",
        "ephemeral": fx.ephemeral,
        "userNamespacing": pu == "pick",
        "timeoutStartSec": "1min",
        "systemCallFilter": if fx.syscalls.is_empty() { Value::Null } else { Value::String(fx.syscalls.join(" ")) },
        "sharedNix": true,
        "mountDaemonSocket": true,
        "bindMounts": fx.binds,
        "forwardPorts": ports.iter().filter_map(|p| p.as_ref().ok().cloned()).collect::<Vec<_>>(),
        "credentials": [],
        "network": {
            "mode": mode,
            "zone": null,
            "bridge": if bridge.is_empty() { Value::Null } else { Value::String(bridge.clone()) },
            "host": host_network,
        },
        "activation": {"strategy": "dynamic", "reloadScript": null},
        "extraNspawn": if extra.is_empty() { Value::Null } else { json!(extra) },
        "extraService": null,
    });

    let mut notes = fx.notes.clone();
    if !get("FLAKE").is_empty() {
        notes.push(format!(
            "FLAKE={}: the system was built from nixosConfigurations.<attr> of that flake; to keep updating it from a flake, expose it as nixosContainers.<system>.<attr> = nixos-nspawn.lib.mkContainer {{ ... }} and run `nixos-nspawn update {name} --flake REF#ATTR`",
            get("FLAKE")
        ));
    }
    if get("COPY_RESOLV_CONF") == "1" {
        notes.push("COPY_RESOLV_CONF=1 dropped: the container gets DNS servers from the host's DHCP server (networkd) and runs systemd-resolved; with static addresses set DNS in containerNetworkConfig".into());
    }
    if let Some(c) = &container {
        notes.push(format!(
            "the classic init configured eth0 from the addresses in the .conf file; nixos-nspawn's containers configure host0 with networkd themselves: rebuild the container with nixos-nspawn's container profile and nixosContainer.containerNetworkConfig = {c}"
        ));
    }
    if mode == "none" && private {
        notes.push("PRIVATE_NETWORK=1 without addresses, bridge or ports gave the container a private network without interfaces (network mode \"none\")".into());
    }
    if mode == "veth" {
        notes.push(format!(
            "the host side of ve-{name} now also masquerades the container's traffic (IPMasquerade=both, systemd's default); the classic module needed networking.nat for that"
        ));
    }
    if !get("PRIVATE_USERS").is_empty() && pu != "no" && pu != "pick" {
        notes.push(format!(
            "PRIVATE_USERS={pu} kept as extraNspawn Exec.PrivateUsers; the host's /nix bind mounts are not idmapped in that mode"
        ));
    }
    for (k, v) in &conf {
        if !KNOWN.contains(&k.as_str()) {
            notes.push(format!(
                "{k}={v} is not a setting the classic module writes; it was ignored"
            ));
        }
    }
    notes.push(format!(
        "the classic profile /nix/var/nix/profiles/per-container/{name} and gcroots /nix/var/nix/gcroots/per-container/{name} are left in place; remove them when the container runs well"
    ));

    let mut unsupported = Vec::new();
    if !get("NETWORK_NAMESPACE_PATH").is_empty() {
        unsupported.push(format!(
            "NETWORK_NAMESPACE_PATH={}: joining an existing network namespace has no .nspawn setting; nixos-nspawn cannot express it",
            get("NETWORK_NAMESPACE_PATH")
        ));
    }
    unsupported.extend(ports.iter().filter_map(|p| p.as_ref().err().cloned()));
    unsupported.extend(fx.unsupported);

    Converted {
        entry,
        container,
        notes,
        unsupported,
    }
}

/// Where a classic container's files are (new layout first).
struct Classic {
    conf: PathBuf,
    conf_logical: PathBuf,
    state: Option<PathBuf>,
}

fn find_classic(ctx: &Ctx, name: &str) -> Option<Classic> {
    let layouts = [
        ("/etc/nixos-containers", "/var/lib/nixos-containers"),
        ("/etc/containers", "/var/lib/containers"),
    ];
    let state_of = |dir: &str| {
        let p = ctx.root.join(Path::new(dir).join(name));
        std::fs::symlink_metadata(&p).is_ok().then_some(p)
    };
    for (etc, var) in layouts {
        let logical = Path::new(etc).join(format!("{name}.conf"));
        let conf = ctx.root.join(&logical);
        if std::fs::symlink_metadata(&conf).is_ok() {
            return Some(Classic {
                conf,
                conf_logical: logical,
                state: state_of(var).or_else(|| {
                    state_of(if var.contains("nixos-") {
                        "/var/lib/containers"
                    } else {
                        "/var/lib/nixos-containers"
                    })
                }),
            });
        }
    }
    None
}

/// The store path the classic per-container profile points at.
fn classic_profile_system(ctx: &Ctx, name: &str) -> Option<PathBuf> {
    let dir = ctx
        .root
        .join(Path::new("/nix/var/nix/profiles/per-container").join(name));
    let mut link = dir.join("system");
    for _ in 0..8 {
        let target = std::fs::read_link(&link).ok()?;
        if target.is_absolute() {
            return Some(target);
        }
        link = dir.join(target);
    }
    None
}

#[derive(Serialize)]
struct Imported<'a> {
    entry: &'a Entry,
    container: &'a Option<Value>,
    notes: &'a [String],
    dropped: &'a [String],
    state: Option<String>,
    started: bool,
}

/// How the state got to /var/lib/machines/NAME.
enum StateMove {
    None,
    Copied(PathBuf),
    Moved { from: PathBuf, to: PathBuf },
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    log::info!("copying {} to {}", from.display(), to.display());
    let utf8 = |p: &Path| {
        p.to_str()
            .map(str::to_owned)
            .with_context(|| format!("{} is not valid UTF-8", p.display()))
    };
    let args = [
        "--archive".to_owned(),
        "--reflink=auto".to_owned(),
        "--no-target-directory".to_owned(),
        "--".to_owned(),
        utf8(from)?,
        utf8(to)?,
    ];
    hosttools::run_visible(&hosttools::CP.path(), &args)
        .with_context(|| format!("copying {} to {} failed", from.display(), to.display()))
}

/// The act part of an import, each step recording its undo in `tx`.
fn import_steps(
    ctx: &Ctx,
    tx: &mut Transaction,
    a: &ImportClassicArgs,
    classic: &Classic,
    entry: &Entry,
    target_state: &Path,
) -> Result<(StateMove, bool)> {
    let name = &entry.name;
    let before = profile::current(&ctx.root, name)?.map(|g| g.number);
    let set = profile::set_system(&ctx.root, name, Path::new(&entry.system))?;
    tx.done("restoring its profile", {
        let n = name.clone();
        move |ctx| {
            if before.is_none() {
                profile::remove(&ctx.root, &n)
            } else if set.created {
                profile::undo_set(&ctx.root, &n, set.generation, before).map(|_| ())
            } else {
                Ok(())
            }
        }
    });
    let moved = move_state(tx, name, a.move_state, classic, target_state)?;
    {
        let _lock = lock_registry(&ctx.root)?;
        if !matches!(edit::find(&ctx.root, name)?, Found::Missing) {
            bail!("container {name} was created meanwhile by someone else");
        }
        let bytes = edit::write_entry(&ctx.root, entry)?;
        let n = name.clone();
        tx.done("removing its registry entry", move |ctx| {
            let _lock = lock_registry(&ctx.root)?;
            edit::remove_entry_if(&ctx.root, &n, Some(&bytes))?;
            // The generator forgets the container.
            if ctx.sys.available() {
                let _ = ctx.sys.daemon_reload();
            }
            Ok(())
        });
    }
    let imported = classic.conf.with_file_name(format!("{name}.conf.imported"));
    std::fs::rename(&classic.conf, &imported).with_context(|| {
        format!(
            "renaming {} to {}",
            classic.conf.display(),
            imported.display()
        )
    })?;
    let c = classic.conf.clone();
    tx.done("renaming the classic file back", move |_| {
        std::fs::rename(&imported, &c)
            .with_context(|| format!("renaming {} back", imported.display()))
    });
    daemon_reload(ctx)?;
    if !a.start {
        return Ok((moved, false));
    }
    // Recorded first: a start that failed half-way leaves a unit running.
    let n = name.clone();
    tx.done("removing its applied state", move |ctx| {
        applied::remove(&ctx.root, &n)
    });
    let n = name.clone();
    tx.done("stopping it", move |ctx| ctx.sys.unit(Verb::Stop, &n));
    ctx.sys.unit(Verb::Start, name).with_context(|| {
        format!("starting {name} failed (see journalctl -u systemd-nspawn@{name}.service)")
    })?;
    Ok((moved, true))
}

/// The classic state directory moved (`--move-state`: renamed) or copied
/// to `target`, the undo recorded in `tx`.
fn move_state(
    tx: &mut Transaction,
    name: &str,
    rename: bool,
    classic: &Classic,
    target: &Path,
) -> Result<StateMove> {
    let Some(from) = &classic.state else {
        return Ok(StateMove::None);
    };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    if !rename {
        // Recorded first: a copy that failed half-way leaves a part behind.
        let n = name.to_owned();
        tx.done("removing the copied state", move |ctx| {
            statedir::delete(&ctx.root, &n).map(|_| ())
        });
        copy_tree(from, target)?;
        return Ok(StateMove::Copied(from.clone()));
    }
    std::fs::rename(from, target).map_err(|e| {
        if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) {
            anyhow::anyhow!(
                "{} and {} are on different file systems: --move-state can only rename; without it the state is copied",
                from.display(),
                target.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("moving {} to {}", from.display(), target.display()))
        }
    })?;
    let (f, t) = (from.clone(), target.to_path_buf());
    tx.done("moving the state back", move |_| {
        std::fs::rename(&t, &f)
            .with_context(|| format!("moving {} back to {}", t.display(), f.display()))
    });
    Ok(StateMove::Moved {
        from: from.clone(),
        to: target.to_path_buf(),
    })
}

pub fn run(ctx: &mut Ctx, a: ImportClassicArgs) -> Result<i32> {
    let name = a.name.clone();
    let Some(classic) = find_classic(ctx, &name) else {
        return Err(not_found(format!(
            "there is no classic container {name} (neither /etc/nixos-containers/{name}.conf nor /etc/containers/{name}.conf)"
        )));
    };
    if let Ok(target) = std::fs::read_link(&classic.conf) {
        if target.starts_with("/etc/static") || target.starts_with("/nix/store") {
            return Err(refused(format!(
                "{} links to {}: {name} is a declarative classic container; migrate containers.{name} in configuration.nix as docs/migration.md describes",
                classic.conf_logical.display(),
                target.display()
            )));
        }
    }
    if let Err(e) = names::check_machine_name(&name) {
        return Err(refused(format!(
            "{name:?} cannot be a nixos-nspawn container name: it {e}"
        )));
    }
    if !matches!(edit::find(&ctx.root, &name)?, Found::Missing) {
        return Err(refused(format!(
            "container {name} exists already ({})",
            paths::registry_file(&name).display()
        )));
    }
    let target_state = ctx.root.join(paths::machine_dir(&name));
    if std::fs::symlink_metadata(&target_state).is_ok() {
        return Err(refused(format!(
            "{} exists already; move it away first",
            paths::machine_dir(&name).display()
        )));
    }
    if ctx.sys.available() {
        let unit = format!("container@{name}.service");
        let state = ctx.sys.other_unit(&unit)?;
        if state.is_running()
            || state.active_state == "deactivating"
            || ctx.sys.leader(&name).is_some()
        {
            return Err(refused(format!(
                "{name} is running ({unit} is {}); stop it first: nixos-container stop {name}",
                state.active_state
            )));
        }
    }
    let text = std::fs::read_to_string(&classic.conf)
        .with_context(|| format!("reading {}", classic.conf.display()))?;
    let system = classic_profile_system(ctx, &name);
    let conv = from_conf(&name, &text, system.as_ref().and_then(|p| p.to_str()));
    if conv.entry["system"].as_str().unwrap_or("").is_empty() {
        return Err(not_found(format!(
            "cannot tell which system {name} runs: no /nix/var/nix/profiles/per-container/{name}/system and no SYSTEM_PATH= in {}",
            classic.conf_logical.display()
        )));
    }
    if !conv.unsupported.is_empty() && !a.force {
        return Err(refused(format!(
            "{name} has settings nixos-nspawn cannot carry over (nothing was changed; --force drops them):\n  {}",
            conv.unsupported.join("\n  ")
        )));
    }
    // Imported containers keep what classic gave them (PRIVATE_USERS), so
    // their state stays owned as it is; a user namespace only when asked.
    let mut converted = conv.entry.clone();
    if a.user_namespacing {
        converted["userNamespacing"] = Value::Bool(true);
    }
    let entry = registry::parse_entry_value(&paths::registry_file(&name), &converted).map_err(
        |errors| {
            edit::entry_errors(&errors).context(format!("the converted entry of {name} is invalid"))
        },
    )?;
    let sys_path = PathBuf::from(&entry.system);
    crate::nixbuild::check_system(&sys_path, true)?;

    // Act: profile, state, entry, the classic file renamed, daemon-reload,
    // start; undone in reverse when a step fails.
    let mut tx = Transaction::new();
    let steps = import_steps(ctx, &mut tx, &a, &classic, &entry, &target_state);
    let (moved, started) = tx.finish(ctx, steps).map_err(|f| {
        f.report(
            &format!("importing {name} failed"),
            "everything was undone",
            "undoing left problems",
        )
    })?;
    let state = match &moved {
        StateMove::None => None,
        StateMove::Copied(from) => Some(format!(
            "copied {} to {}",
            from.display(),
            paths::machine_dir(&name).display()
        )),
        StateMove::Moved { from, to } => {
            Some(format!("moved {} to {}", from.display(), to.display()))
        }
    };
    let imported = Imported {
        entry: &entry,
        container: &conv.container,
        notes: &conv.notes,
        dropped: &conv.unsupported,
        state,
        started,
    };
    ctx.print(a.json, &imported)?;
    Ok(EXIT_OK)
}

impl Printable for Imported<'_> {
    fn text(&self) -> String {
        let name = &self.entry.name;
        let mut lines = vec![format!(
            "Imported classic container {name}: generation 1 of its profile is {}{}",
            self.entry.system,
            if self.started { ", running" } else { "" }
        )];
        match &self.state {
            Some(s) => lines.push(format!("State: {s}")),
            None => lines.push(format!(
                "State: the classic container had no state directory; {} starts empty",
                paths::machine_dir(name).display()
            )),
        }
        lines.push(format!(
            "Registry entry {}:",
            paths::registry_file(name).display()
        ));
        lines.push(self.entry.to_json().trim_end().to_owned());
        for d in self.dropped {
            lines.push(format!("dropped (--force): {d}"));
        }
        for n in self.notes {
            lines.push(format!("note: {n}"));
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Env;
    use crate::{exit_code, EXIT_NOT_FOUND, EXIT_REFUSED};
    use std::process::Command;

    const IMPERATIVE: &str = "PRIVATE_NETWORK=1\nHOST_ADDRESS=10.233.1.1\nLOCAL_ADDRESS=10.233.1.2\nHOST_BRIDGE=\nHOST_PORT=\nAUTO_START=0\n";
    const BRIDGED: &str = "PRIVATE_NETWORK=1\nHOST_ADDRESS=10.233.2.1\nLOCAL_ADDRESS=10.233.2.2\nHOST_BRIDGE=br0\nHOST_PORT=tcp:8080:80,udp:53\nAUTO_START=1\nFLAKE=github:example/config\n";
    const DECLARATIVE: &str = "SYSTEM_PATH=/nix/store/11111111111111111111111111111111-nixos-system-classic-declarative-25.05\n\nCOPY_RESOLV_CONF=1\nPRIVATE_NETWORK=1\nHOST_PORT=tcp:2222:22\nHOST_ADDRESS=10.231.136.1\nLOCAL_ADDRESS=10.231.136.2\nHOST_ADDRESS6=fc00::1\nLOCAL_ADDRESS6=fc00::2\nLOCAL_MAC_ADDRESS=de:b7:73:01:10:90\n\nPRIVATE_USERS=pick\nINTERFACES=\"\"\nMACVLANS=\"eth1\"\nAUTO_START=1\nEXTRA_NSPAWN_FLAGS=\" --bind=/home/alice:/home --bind-ro=/srv --capability=CAP_NET_ADMIN --tmpfs=/var/tmp\"\n";
    const HOSTIF: &str = "COPY_RESOLV_CONF=0\nPRIVATE_USERS=65536\nINTERFACES=\"eth2 eth3\"\nMACVLANS=\"\"\nEXTRA_NSPAWN_FLAGS=\" --bind-ro=/data:/data --drop-capability=CAP_SYS_CHROOT --ephemeral\"\n";
    const ODD: &str = "PRIVATE_NETWORK=1\nLOCAL_ADDRESS=10.0.0.2/24\nLOCAL_ADDRESS6=fd00::2\nHOST_PORT=tcp:x,80\nNETWORK_NAMESPACE_PATH=/run/netns/x\nEXTRA_NSPAWN_FLAGS=\"--link-journal=host --kill-signal SIGTERM --port 81 --read-only --system-call-filter=@a --system-call-filter=~@b --private-users=pick\"\nWEIRD='quoted value'\nWEIRD=second\n";
    const SYS: &str = "/nix/store/22222222222222222222222222222222-nixos-system-x";

    fn entry_of(c: &Converted, name: &str) -> Entry {
        registry::parse_entry_value(&paths::registry_file(name), &c.entry)
            .unwrap_or_else(|e| panic!("{name}: {e:?}\n{}", c.entry))
    }

    #[test]
    fn contract_cases() {
        let c = from_conf("classic-imperative", IMPERATIVE, Some(SYS));
        let e = entry_of(&c, "classic-imperative");
        assert_eq!(registry::mode_name(e.network.mode), "veth");
        assert!(!e.auto_start && e.timeout_start_sec == "1min" && e.mount_daemon_socket);
        assert_eq!(
            c.entry["network"]["host"],
            json!({"Network": {"Address": null, "DHCPServer": false}, "Address": [{"Address": "10.233.1.1/32", "Peer": "10.233.1.2/32"}]})
        );
        assert!(c.unsupported.is_empty());

        let c = from_conf("classic-bridged", BRIDGED, Some(SYS));
        let e = entry_of(&c, "classic-bridged");
        assert_eq!(e.network.bridge.as_deref(), Some("br0"));
        assert!(e.network.host.is_none() && e.auto_start);
        assert_eq!(
            c.entry["forwardPorts"],
            json!([{"protocol": "tcp", "hostPort": 8080, "containerPort": 80}, {"protocol": "udp", "hostPort": 53, "containerPort": null}])
        );
        assert!(c.notes[0].starts_with("FLAKE=github:example/config"));

        let c = from_conf("classic-declarative", DECLARATIVE, None);
        let e = entry_of(&c, "classic-declarative");
        assert!(
            e.system.ends_with("classic-declarative-25.05") && e.user_namespacing && e.auto_start
        );
        assert_eq!(
            c.entry["bindMounts"],
            json!(["/home/alice:/home", "/srv:/srv:ro"])
        );
        assert_eq!(
            c.entry["extraNspawn"],
            json!({"Exec": {"Capability": ["CAP_NET_ADMIN"]}, "Files": {"TemporaryFileSystem": ["/var/tmp"]}, "Network": {"MACVLAN": ["eth1"]}})
        );
        assert_eq!(
            c.entry["network"]["host"]["Address"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            c.container.as_ref().unwrap()["linkConfig"]["MACAddress"],
            "de:b7:73:01:10:90"
        );

        let c = from_conf("classic-hostif", HOSTIF, Some(SYS));
        let e = entry_of(&c, "classic-hostif");
        assert_eq!(registry::mode_name(e.network.mode), "none");
        assert!(e.ephemeral && !e.user_namespacing);
        assert_eq!(
            c.entry["extraNspawn"],
            json!({"Network": {"Interface": ["eth2", "eth3"]}, "Exec": {"DropCapability": ["CAP_SYS_CHROOT"], "PrivateUsers": ["65536"]}})
        );
        assert_eq!(c.entry["bindMounts"], json!(["/data:/data:ro"]));
    }

    #[test]
    fn odd_and_unsupported() {
        let c = from_conf("odd", ODD, Some(SYS));
        assert_eq!(
            c.entry["network"]["host"]["Route"],
            json!([{"Destination": "10.0.0.2/24"}, {"Destination": "fd00::2/128"}])
        );
        assert_eq!(c.entry["systemCallFilter"], "@a ~@b");
        assert_eq!(c.entry["userNamespacing"], true);
        assert_eq!(
            c.entry["forwardPorts"],
            json!([{"protocol": "tcp", "hostPort": 80, "containerPort": null}, {"protocol": "tcp", "hostPort": 81, "containerPort": null}])
        );
        assert_eq!(c.unsupported.len(), 3, "{:#?}", c.unsupported);
        // `-p VALUE` is a port too.
        let p = from_conf(
            "p",
            "PRIVATE_NETWORK=1\nEXTRA_NSPAWN_FLAGS=\"-p 8080:80\"\n",
            Some(SYS),
        );
        assert_eq!(p.entry["forwardPorts"][0]["containerPort"], 80);
        assert_eq!(p.entry["network"]["mode"], "veth");
        assert!(c.unsupported[0].starts_with("NETWORK_NAMESPACE_PATH"));
        assert!(c
            .unsupported
            .iter()
            .any(|u| u.contains("--kill-signal=SIGTERM")));
        assert!(c.notes.iter().any(
            |n| n == "WEIRD=second is not a setting the classic module writes; it was ignored"
        ));
        assert!(c.notes.iter().any(|n| n.contains("LinkJournal=try-guest")));
    }

    /// The same files through nix/lib/classic.nix (the reference): the same
    /// entries, container settings, notes and unsupported settings.
    #[test]
    fn matches_the_nix_reference() {
        let nix_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../nix/lib/classic.nix");
        if !nix_file.exists()
            || Command::new("nix-instantiate")
                .arg("--version")
                .output()
                .is_err()
        {
            eprintln!("skipped: needs nix-instantiate and nix/lib/classic.nix");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        for (name, text, system) in [
            ("classic-imperative", IMPERATIVE, Some(SYS)),
            ("classic-bridged", BRIDGED, Some(SYS)),
            ("classic-declarative", DECLARATIVE, None),
            ("classic-hostif", HOSTIF, Some(SYS)),
            ("odd", ODD, Some(SYS)),
        ] {
            let file = d.path().join(name);
            std::fs::write(&file, text).unwrap();
            let expr = format!(
                "(import {}).fromConf {{ name = \"{name}\"; text = builtins.readFile {}; system = {}; }}",
                nix_file.display(),
                file.display(),
                system.map_or("null".to_owned(), |s| format!("\"{s}\""))
            );
            let out = Command::new("nix-instantiate")
                .args(["--eval", "--strict", "--json", "--expr", &expr])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let nix: Value = serde_json::from_slice(&out.stdout).unwrap();
            let ours = from_conf(name, text, system);
            let nix_entry = registry::parse_entry_value(&paths::registry_file(name), &nix["entry"])
                .unwrap_or_else(|e| panic!("{name}: the reference's entry: {e:?}"));
            assert_eq!(entry_of(&ours, name), nix_entry, "{name}: entry");
            assert_eq!(
                ours.container.clone().unwrap_or(Value::Null),
                nix["container"],
                "{name}: container"
            );
            assert_eq!(json!(ours.notes), nix["notes"], "{name}: notes");
            assert_eq!(
                json!(ours.unsupported),
                nix["unsupported"],
                "{name}: unsupported"
            );
        }
    }

    fn setup(env: &Env, name: &str, conf: &str, with_state: bool) -> PathBuf {
        let root = env.root();
        let sys = env.system("classic", None);
        let conf_path = root.join(format!("/etc/nixos-containers/{name}.conf"));
        std::fs::create_dir_all(conf_path.parent().unwrap()).unwrap();
        std::fs::write(&conf_path, conf).unwrap();
        let prof = root.join(format!("/nix/var/nix/profiles/per-container/{name}"));
        std::fs::create_dir_all(&prof).unwrap();
        std::os::unix::fs::symlink(&sys, prof.join("system-1-link")).unwrap();
        std::os::unix::fs::symlink("system-1-link", prof.join("system")).unwrap();
        if with_state {
            let st = root.join(format!("/var/lib/nixos-containers/{name}"));
            std::fs::create_dir_all(st.join("etc")).unwrap();
            std::fs::write(st.join("etc/hostname"), name).unwrap();
            std::os::unix::fs::symlink("/etc/passwd", st.join("etc/link")).unwrap();
        }
        sys
    }

    fn args(name: &str) -> ImportClassicArgs {
        ImportClassicArgs {
            verbose: false,
            name: name.into(),
            move_state: false,
            force: false,
            start: false,
            user_namespacing: false,
            json: false,
        }
    }

    #[test]
    fn imports_by_copying() {
        let mut env = Env::new();
        let sys = setup(&env, "old", IMPERATIVE, true);
        run(&mut env.ctx(), args("old")).unwrap();
        let out = env.output();
        assert!(
            out.contains("Imported classic container old") && out.contains("State: copied"),
            "{out}"
        );
        let root = env.root();
        let e = registry::load_entry(&root, "old").unwrap();
        assert_eq!(e.system, sys.to_str().unwrap());
        assert!(
            !e.user_namespacing,
            "imported without a user namespace (classic's PRIVATE_USERS)"
        );
        assert_eq!(profile::current(&root, "old").unwrap().unwrap().number, 1);
        assert_eq!(
            std::fs::read_to_string(root.join("/var/lib/machines/old/etc/hostname")).unwrap(),
            "old"
        );
        assert!(
            std::fs::symlink_metadata(root.join("/var/lib/machines/old/etc/link"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(
            root.join("/var/lib/nixos-containers/old/etc/hostname")
                .exists(),
            "classic state kept"
        );
        assert!(root
            .join("/etc/nixos-containers/old.conf.imported")
            .exists());
        assert!(!root.join("/etc/nixos-containers/old.conf").exists());
        assert_eq!(env.sys.calls(), vec!["daemon-reload"]);
        // Again: there is no classic container any more.
        assert_eq!(
            exit_code(&run(&mut env.ctx(), args("old")).unwrap_err()),
            EXIT_NOT_FOUND
        );
    }

    #[test]
    fn imports_by_moving_and_starts() {
        let mut env = Env::new();
        setup(&env, "old", IMPERATIVE, true);
        let mut a = args("old");
        a.move_state = true;
        a.start = true;
        a.json = true;
        run(&mut env.ctx(), a).unwrap();
        let v: Value = serde_json::from_str(&env.output()).unwrap();
        assert_eq!(v["started"], true);
        assert!(v["state"].as_str().unwrap().starts_with("moved"));
        assert_eq!(v["entry"]["network"]["mode"], "veth");
        assert_eq!(v["entry"]["userNamespacing"], false);
        let root = env.root();
        assert!(!root.join("/var/lib/nixos-containers/old").exists());
        assert!(root.join("/var/lib/machines/old/etc/hostname").exists());
        assert_eq!(env.sys.calls(), vec!["daemon-reload", "start old"]);
    }

    #[test]
    fn a_user_namespace_only_when_asked() {
        let mut env = Env::new();
        setup(&env, "old", IMPERATIVE, true);
        let mut a = args("old");
        a.user_namespacing = true;
        run(&mut env.ctx(), a).unwrap();
        assert!(
            registry::load_entry(&env.root(), "old")
                .unwrap()
                .user_namespacing
        );
    }

    #[test]
    fn failure_undoes_everything() {
        let mut env = Env::new();
        setup(&env, "old", IMPERATIVE, true);
        env.sys.fail_on("start old");
        let mut a = args("old");
        a.move_state = true;
        a.start = true;
        let err = run(&mut env.ctx(), a).unwrap_err();
        assert!(
            format!("{err:#}").contains("everything was undone"),
            "{err:#}"
        );
        let root = env.root();
        assert!(
            root.join("/var/lib/nixos-containers/old/etc/hostname")
                .exists(),
            "moved back"
        );
        assert!(!root.join("/var/lib/machines/old").exists());
        assert!(root.join("/etc/nixos-containers/old.conf").exists());
        assert!(!edit::registry_path(&root, "old").exists());
        assert!(!root.join(paths::profile_dir("old")).exists());
        // A failed start is stopped (it may have left the unit half up), and
        // systemd reloaded once the entry is gone.
        let calls = env.sys.calls();
        let tail = &calls[calls.len() - 3..];
        assert_eq!(
            tail,
            ["start old", "stop old", "daemon-reload"],
            "{calls:?}"
        );
    }

    #[test]
    fn refusals() {
        let mut env = Env::new();
        setup(&env, "odd", ODD, false);
        let err = run(&mut env.ctx(), args("odd")).unwrap_err();
        assert_eq!(exit_code(&err), EXIT_REFUSED);
        assert!(err.to_string().contains("NETWORK_NAMESPACE_PATH"), "{err}");
        assert!(!edit::registry_path(&env.root(), "odd").exists());
        let mut a = args("odd");
        a.force = true;
        run(&mut env.ctx(), a).unwrap();
        let out = env.output();
        assert!(
            out.contains("dropped (--force): NETWORK_NAMESPACE_PATH")
                && out.contains("had no state directory"),
            "{out}"
        );

        setup(&env, "busy", IMPERATIVE, true);
        env.sys.states.lock().unwrap().insert(
            "container@busy.service".into(),
            crate::systemd::UnitState::new("active", "running"),
        );
        assert_eq!(
            exit_code(&run(&mut env.ctx(), args("busy")).unwrap_err()),
            EXIT_REFUSED
        );

        // A declarative classic container (its .conf links into /etc/static).
        let root = env.root();
        std::os::unix::fs::symlink(
            "/etc/static/nixos-containers/decl.conf",
            root.join("/etc/nixos-containers/decl.conf"),
        )
        .unwrap();
        assert_eq!(
            exit_code(&run(&mut env.ctx(), args("decl")).unwrap_err()),
            EXIT_REFUSED
        );
        // Names nixos-nspawn cannot take.
        std::fs::write(root.join("/etc/nixos-containers/bad_name.conf"), IMPERATIVE).unwrap();
        assert_eq!(
            exit_code(&run(&mut env.ctx(), args("bad_name")).unwrap_err()),
            EXIT_REFUSED
        );
    }
}
