//! A classic container's `.conf` settings as a registry entry, with the notes
//! and the settings that cannot be carried over, as docs/migration.md's
//! tables say. Pure: the parsed file in, a typed [`Entry`] out; `import-classic`
//! validates it with the registry parser before writing it.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Serialize;
use serde_json::{json, Map, Value};

use nixos_nspawn_core::addressing::parse_pair;
use nixos_nspawn_core::registry::{BindMount, Entry, NetworkMode, PortForward};
use nixos_nspawn_core::settings::Settings;

use super::conf::Conf;
use super::flags::{self, Effects};
use crate::commands::addressing::StaticAddresses;

/// What a `.conf` file converts to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Converted {
    /// The registry entry (`declarative: false`); its `system` is empty when
    /// neither the caller nor `SYSTEM_PATH=` names one.
    pub entry: Entry,
    /// What the container's own configuration needs instead of the classic
    /// init's eth0 setup (`nixosContainer.containerNetworkConfig`), or null.
    pub container: Option<Value>,
    pub notes: Vec<String>,
    /// Settings with no equivalent: refused unless `--force` (then dropped).
    pub unsupported: Vec<String>,
}

fn with_prefix(plen: &str, a: &str) -> String {
    if a.contains('/') {
        a.to_owned()
    } else {
        format!("{a}/{plen}")
    }
}

/// Classic static addresses (`HOST_ADDRESS`, `LOCAL_ADDRESS` and the IPv6
/// pair; empty strings for unset).
struct Addresses<'c> {
    host4: &'c str,
    local4: &'c str,
    host6: &'c str,
    local6: &'c str,
}

impl Addresses<'_> {
    fn any(&self) -> bool {
        [self.host4, self.local4, self.host6, self.local6]
            .iter()
            .any(|a| !a.is_empty())
    }

    /// Whether the registry's fixed pair fields mean what classic meant: every
    /// family given has both sides, a point-to-point pair (no prefix) or two
    /// addresses of one subnet, as `network.hostAddress`/`localAddress` take them.
    fn fit_fixed_pairs(&self) -> bool {
        let v4 = (self.host4.is_empty() && self.local4.is_empty())
            || parse_pair::<Ipv4Addr>(self.host4, self.local4).is_ok();
        let v6 = (self.host6.is_empty() && self.local6.is_empty())
            || parse_pair::<Ipv6Addr>(self.host6, self.local6).is_ok();
        v4 && v6
    }

    /// Otherwise the host side as `network.host` settings of the `ve-` link:
    /// `Address=H` with `Peer=L` (`/32`, `/128` unless a prefix is given)
    /// instead of the DHCP server's pool; only a local address: a route to it.
    fn host_settings(&self) -> Value {
        let pair = |host: &str, local: &str, plen: &str| -> Option<Value> {
            match (host.is_empty(), local.is_empty()) {
                (false, false) => Some(
                    json!({"Address": with_prefix(plen, host), "Peer": with_prefix(plen, local)}),
                ),
                (false, true) => Some(json!({"Address": with_prefix(plen, host)})),
                _ => None,
            }
        };
        let route = |host: &str, local: &str, plen: &str| {
            (host.is_empty() && !local.is_empty())
                .then(|| json!({"Destination": with_prefix(plen, local)}))
        };
        let addrs: Vec<Value> = [
            pair(self.host4, self.local4, "32"),
            pair(self.host6, self.local6, "128"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let routes: Vec<Value> = [
            route(self.host4, self.local4, "32"),
            route(self.host6, self.local6, "128"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut m = Map::new();
        m.insert(
            "Network".into(),
            json!({"Address": null, "DHCPServer": false}),
        );
        if !addrs.is_empty() {
            m.insert("Address".into(), Value::Array(addrs));
        }
        if !routes.is_empty() {
            m.insert("Route".into(), Value::Array(routes));
        }
        Value::Object(m)
    }
}

/// The container side of classic static addresses (empty strings for unset):
/// the `nixosContainer.containerNetworkConfig` a container's own configuration
/// needs when it does not read the `nixos-nspawn.host0` credential (the classic
/// init set them on `eth0`; networkd inside configures `host0` now).
pub fn container_side(host4: &str, local4: &str, host6: &str, local6: &str, mac: &str) -> Value {
    let pair = |local: &str, host: &str, plen: &str| -> Option<Value> {
        if local.is_empty() {
            return None;
        }
        let mut m = Map::new();
        m.insert("Address".into(), Value::String(with_prefix(plen, local)));
        if !host.is_empty() {
            m.insert("Peer".into(), Value::String(with_prefix(plen, host)));
        }
        Some(Value::Object(m))
    };
    let addresses: Vec<Value> = [pair(local4, host4, "32"), pair(local6, host6, "128")]
        .into_iter()
        .flatten()
        .collect();
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

/// Settings from JSON the conversion built; what the settings form refuses
/// (a value systemd would mangle) cannot be carried over.
fn settings(value: Value, field: &str, report: &mut Report) -> Option<Settings> {
    match Settings::from_json(&value, field) {
        Ok(s) => Some(s),
        Err(errors) => {
            report.unsupported.extend(
                errors
                    .into_iter()
                    .map(|(path, message)| format!("{path}: {message}")),
            );
            None
        }
    }
}

/// Notes and settings that cannot be carried over, as the conversion finds them.
#[derive(Default)]
struct Report {
    notes: Vec<String>,
    unsupported: Vec<String>,
}

/// `HOST_PORT` (comma-separated) and the `--port`/`-p` flags, in nspawn's
/// `--port` syntax, read by the CLI's one port parser. Also whether any was given.
fn forward_ports(conf: &Conf, fx: &Effects, report: &mut Report) -> (Vec<PortForward>, bool) {
    let given: Vec<&str> = conf
        .get("HOST_PORT")
        .split(',')
        .filter(|p| !p.is_empty())
        .chain(fx.ports.iter().map(String::as_str))
        .collect();
    let mut ports = Vec::new();
    for p in &given {
        match crate::commands::create::parse_port(p) {
            Ok(f) => ports.push(f),
            Err(e) => report.unsupported.push(format!(
                "HOST_PORT entry {}: {e:#}; expected [tcp:|udp:]HOSTPORT[:CONTAINERPORT]",
                json!(p)
            )),
        }
    }
    (ports, !given.is_empty())
}

/// What the network conversion decided, for the notes.
struct NetworkFacts {
    private: bool,
    /// The registry's fixed pair carries the static addresses.
    fixed: bool,
    mac: String,
    container: Option<Value>,
}

/// The network mode as the classic start script chose its flags, and the
/// static addresses: `--network-bridge` when `HOST_BRIDGE` is set,
/// `--network-veth` when an address or a MAC address is set (here also for
/// ports, which need an interface), else only `--private-network`; moved
/// interfaces imply a private network.
fn network(conf: &Conf, any_port: bool, entry: &mut Entry, report: &mut Report) -> NetworkFacts {
    let private = conf.get("PRIVATE_NETWORK") == "1";
    let bridge = conf.get("HOST_BRIDGE");
    let addrs = Addresses {
        host4: conf.get("HOST_ADDRESS"),
        local4: conf.get("LOCAL_ADDRESS"),
        host6: conf.get("HOST_ADDRESS6"),
        local6: conf.get("LOCAL_ADDRESS6"),
    };
    let mac = conf.get("LOCAL_MAC_ADDRESS");
    let moved = !conf.words("INTERFACES").is_empty() || !conf.words("MACVLANS").is_empty();
    entry.network.mode = if !bridge.is_empty() {
        NetworkMode::Bridge
    } else if private && (addrs.any() || !mac.is_empty() || any_port) {
        NetworkMode::Veth
    } else if private || moved {
        NetworkMode::None
    } else {
        NetworkMode::Host
    };
    if !bridge.is_empty() {
        entry.network.bridge = Some(bridge.to_owned());
    }
    let static_veth = entry.network.mode == NetworkMode::Veth && addrs.any();
    let fixed = static_veth && addrs.fit_fixed_pairs();
    if fixed {
        // The registry's fixed pair, as `create --host-address` writes it.
        let pair = StaticAddresses {
            host4: addrs.host4.to_owned(),
            local4: addrs.local4.to_owned(),
            host6: addrs.host6.to_owned(),
            local6: addrs.local6.to_owned(),
        };
        match crate::commands::addressing::apply(entry, &pair) {
            Ok(note) => report.notes.push(note),
            Err(e) => report.unsupported.push(format!("{e:#}")),
        }
    } else if static_veth {
        entry.network.host = settings(addrs.host_settings(), "network.host", report);
    }
    let container = (static_veth || !mac.is_empty())
        .then(|| container_side(addrs.host4, addrs.local4, addrs.host6, addrs.local6, mac));
    NetworkFacts {
        private,
        fixed,
        mac: mac.to_owned(),
        container,
    }
}

/// `extraNspawn`: the flags' settings, `INTERFACES`, `MACVLANS`, and a
/// `PRIVATE_USERS` other than `no`/`pick`.
fn extra_nspawn(
    conf: &Conf,
    fx: &mut Effects,
    private_users: &str,
    report: &mut Report,
) -> Option<Settings> {
    let mut items = std::mem::take(&mut fx.nspawn);
    for (key, setting) in [("INTERFACES", "Interface"), ("MACVLANS", "MACVLAN")] {
        items.extend(
            conf.words(key)
                .into_iter()
                .map(|i| ("Network".into(), setting.into(), vec![Value::String(i)])),
        );
    }
    if private_users != "no" && private_users != "pick" {
        items.push((
            "Exec".into(),
            "PrivateUsers".into(),
            vec![Value::String(private_users.to_owned())],
        ));
    }
    grouped(items, "extraNspawn", report)
}

/// (section, key, values) items as settings, each key's values in order.
fn grouped(
    items: Vec<(String, String, Vec<Value>)>,
    field: &str,
    report: &mut Report,
) -> Option<Settings> {
    let mut extra: BTreeMap<String, BTreeMap<String, Vec<Value>>> = BTreeMap::new();
    for (s, k, v) in items {
        extra.entry(s).or_default().entry(k).or_default().extend(v);
    }
    if extra.is_empty() {
        return None;
    }
    settings(json!(extra), field, report)
}

/// The notes about what changes with the import.
fn notes(
    name: &str,
    conf: &Conf,
    entry: &Entry,
    net: &NetworkFacts,
    private_users: &str,
    report: &mut Report,
) {
    let notes = &mut report.notes;
    if !conf.get("FLAKE").is_empty() {
        notes.push(format!(
            "FLAKE={}: the system was built from nixosConfigurations.<attr> of that flake; to keep updating it from a flake, expose it as nixosContainers.<system>.<attr> = nixos-nspawn.lib.mkContainer {{ ... }} and run `nixos-nspawn update {name} --flake REF#ATTR`",
            conf.get("FLAKE")
        ));
    }
    if conf.get("COPY_RESOLV_CONF") == "1" {
        notes.push("COPY_RESOLV_CONF=1 dropped: the container gets DNS servers from the host's DHCP server (networkd) and runs systemd-resolved; with static addresses set DNS in containerNetworkConfig".into());
    }
    if let Some(c) = net
        .container
        .as_ref()
        .filter(|_| !net.fixed || !net.mac.is_empty())
    {
        notes.push(format!(
            "the classic init configured eth0 from the addresses in the .conf file; nixos-nspawn's containers configure host0 with networkd themselves: rebuild the container with nixos-nspawn's container profile and nixosContainer.containerNetworkConfig = {c}"
        ));
    }
    if entry.network.mode == NetworkMode::None && net.private {
        notes.push("PRIVATE_NETWORK=1 without addresses, bridge or ports gave the container a private network without interfaces (network mode \"none\")".into());
    }
    if entry.network.mode == NetworkMode::Veth {
        notes.push(format!(
            "the host side of ve-{name} now also masquerades the container's traffic (IPMasquerade=both, systemd's default); the classic module needed networking.nat for that"
        ));
    }
    if !conf.get("PRIVATE_USERS").is_empty() && private_users != "no" && private_users != "pick" {
        notes.push(format!(
            "PRIVATE_USERS={private_users} kept as extraNspawn Exec.PrivateUsers; the host's /nix bind mounts are not idmapped in that mode"
        ));
    }
    for (k, v) in conf.unknown() {
        notes.push(format!(
            "{k}={v} is not a setting the classic module writes; it was ignored"
        ));
    }
    notes.push(format!(
        "the classic profile /nix/var/nix/profiles/per-container/{name} and gcroots /nix/var/nix/gcroots/per-container/{name} are left in place; remove them when the container runs well"
    ));
}

/// Convert a classic `.conf` file. `system`: the system to run (the target
/// of the classic per-container profile); `None` uses `SYSTEM_PATH=`.
pub fn convert(name: &str, conf: &Conf, system: Option<&str>) -> Converted {
    let mut fx = Effects::default();
    for (flag, value) in conf.extra_flags() {
        flags::effect(&mut fx, &flag, value.as_deref());
    }
    let mut report = Report {
        notes: std::mem::take(&mut fx.notes),
        unsupported: Vec::new(),
    };
    let netns = conf.get("NETWORK_NAMESPACE_PATH");
    if !netns.is_empty() {
        report.unsupported.push(format!(
            "NETWORK_NAMESPACE_PATH={netns}: joining an existing network namespace has no .nspawn setting; nixos-nspawn cannot express it"
        ));
    }
    let mut entry = Entry::new(name, system.unwrap_or(conf.get("SYSTEM_PATH")));
    let (ports, any_port) = forward_ports(conf, &fx, &mut report);
    entry.forward_ports = ports;
    let net = network(conf, any_port, &mut entry, &mut report);

    // The last of PRIVATE_USERS and --private-users counts.
    let private_users = fx
        .private_users
        .last()
        .map(String::as_str)
        .or(Some(conf.get("PRIVATE_USERS")).filter(|p| !p.is_empty()))
        .unwrap_or("no")
        .to_owned();
    entry.extra_nspawn = extra_nspawn(conf, &mut fx, &private_users, &mut report);
    entry.extra_service = grouped(std::mem::take(&mut fx.service), "extraService", &mut report);
    for b in &fx.binds {
        match BindMount::parse(b) {
            Ok(m) => entry.bind_mounts.push(m),
            Err(e) => report
                .unsupported
                .push(format!("EXTRA_NSPAWN_FLAGS: a bind mount {e}")),
        }
    }
    entry.auto_start = conf.get("AUTO_START") == "1";
    entry.ephemeral = fx.ephemeral;
    entry.user_namespacing = private_users == "pick";
    entry.timeout_start_sec = "1min".into();
    entry.system_call_filter = (!fx.syscalls.is_empty()).then(|| fx.syscalls.join(" "));
    entry.mount_daemon_socket = true;

    notes(name, conf, &entry, &net, &private_users, &mut report);
    report.unsupported.append(&mut fx.unsupported);
    Converted {
        entry,
        container: net.container,
        notes: report.notes,
        unsupported: report.unsupported,
    }
}
