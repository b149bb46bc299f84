//! The registry: one JSON file per container (`/etc/nixos-nspawn/containers/NAME.json`)
//! and per zone (`/etc/nixos-nspawn/zones/ZONE.json`), schema version 1. This is the
//! contract with the NixOS module; see DESIGN.md and the README's "Registry format".
//!
//! Parsing is strict and complete: every problem in a file is reported, each
//! naming the file, the field and the bad value; one bad file never hides the
//! others.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use ipnet::IpNet;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::{show_value, EntryError};
use crate::names;
use crate::paths;
use crate::settings::Settings;
use crate::unit::check_value;

pub const SCHEMA_VERSION: u64 = 1;
/// Registry files larger than this are refused (they are a few hundred bytes).
pub const MAX_FILE_SIZE: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub version: u64,
    pub name: String,
    pub declarative: bool,
    pub system: String,
    pub auto_start: bool,
    pub ephemeral: bool,
    pub user_namespacing: bool,
    pub timeout_start_sec: String,
    pub system_call_filter: Option<String>,
    pub shared_nix: bool,
    pub mount_daemon_socket: bool,
    pub bind_mounts: Vec<BindMount>,
    pub forward_ports: Vec<PortForward>,
    pub credentials: Vec<Credential>,
    pub network: Network,
    pub activation: Activation,
    pub extra_nspawn: Option<Settings>,
    pub extra_service: Option<Settings>,
    /// How the CLI built the system (imperative containers only; optional,
    /// never read by the generator or the activation plan).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<BuildSource>,
}

impl Entry {
    /// A new imperative entry with every default, as `nixos-nspawn create` starts it.
    pub fn new(name: &str, system: &str) -> Entry {
        Entry {
            version: SCHEMA_VERSION,
            name: name.to_owned(),
            declarative: false,
            system: system.to_owned(),
            auto_start: true,
            ephemeral: false,
            user_namespacing: false,
            timeout_start_sec: "90s".into(),
            system_call_filter: None,
            shared_nix: true,
            mount_daemon_socket: false,
            bind_mounts: Vec::new(),
            forward_ports: Vec::new(),
            credentials: Vec::new(),
            network: Network::default(),
            activation: Activation::default(),
            extra_nspawn: None,
            extra_service: None,
            source: None,
        }
    }

    /// What `nixos-nspawn create` starts from when the system brings no
    /// entry of its own: the schema defaults, except that new containers get
    /// a user namespace. (An entry *without* the field still means
    /// `userNamespacing: false`: existing entries keep what they had; see the
    /// README's registry format.)
    pub fn new_imperative(name: &str, system: &str) -> Entry {
        Entry {
            user_namespacing: true,
            ..Entry::new(name, system)
        }
    }

    /// The logical path of this entry's registry file.
    pub fn file(&self) -> PathBuf {
        paths::registry_file(&self.name)
    }

    /// Canonical JSON, as the CLI writes it (pretty, trailing newline).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("entry serializes");
        s.push('\n');
        s
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub host: String,
    pub container: String,
    pub read_only: bool,
    /// nspawn bind options other than `ro`/`rw` (e.g. `norbind`, `idmap`).
    pub options: Vec<String>,
}

/// Options `Bind=` understands (systemd.nspawn(5)), besides our `ro`/`rw`.
const BIND_OPTIONS: &[&str] = &["rbind", "norbind", "idmap", "noidmap", "rootidmap"];

impl BindMount {
    /// Parse `host[:container[:opt,opt]]`.
    pub fn parse(s: &str) -> Result<BindMount, String> {
        let mut parts = s.split(':');
        let host = parts.next().unwrap_or_default();
        let container = parts.next().filter(|c| !c.is_empty()).unwrap_or(host);
        let opts = parts.next();
        if parts.next().is_some() {
            return Err(format!(
                "{s:?} has more than three ':'-separated parts; expected host[:container[:options]]"
            ));
        }
        for (what, p) in [("host path", host), ("container path", container)] {
            check_bind_path(p).map_err(|e| format!("{s:?}: {what} {e}"))?;
        }
        check_bind_source(host).map_err(|e| format!("{s:?}: host path {host:?} {e}"))?;
        check_bind_target(container)
            .map_err(|e| format!("{s:?}: container path {container:?} {e}"))?;
        let mut read_only = false;
        let mut options = Vec::new();
        for opt in opts.into_iter().flat_map(|o| o.split(',')) {
            match opt {
                "ro" => read_only = true,
                "rw" => read_only = false,
                o if BIND_OPTIONS.contains(&o) => options.push(o.to_owned()),
                o => {
                    return Err(format!(
                        "{s:?}: unknown option {o:?}; expected ro, rw, {}",
                        BIND_OPTIONS.join(", ")
                    ))
                }
            }
        }
        Ok(BindMount {
            host: host.to_owned(),
            container: container.to_owned(),
            read_only,
            options,
        })
    }
}

impl std::fmt::Display for BindMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.container)?;
        let mut opts: Vec<&str> = Vec::new();
        if self.read_only {
            opts.push("ro");
        }
        opts.extend(self.options.iter().map(String::as_str));
        if !opts.is_empty() {
            write!(f, ":{}", opts.join(","))?;
        }
        Ok(())
    }
}

impl Serialize for BindMount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Whether the normalised absolute path `p` is `dir` or lies below it.
pub fn at_or_below(p: &str, dir: &str) -> bool {
    p == dir
        || (dir == "/" && p.starts_with('/'))
        || p.strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Host directories containers can write below (their trees; their profile
/// directories, which a container without user namespacing can remount
/// read-write): a bind source there would be resolved through links a
/// container planted, by the host's bootstrap and by nspawn.
const CONTAINER_WRITABLE: &[(&str, &str)] = &[
    (
        paths::MACHINES_DIR,
        "where the containers' root file systems are",
    ),
    (paths::PROFILES_DIR, "where the containers' profiles are"),
];

fn check_bind_source(host: &str) -> Result<(), String> {
    for (dir, what) in CONTAINER_WRITABLE {
        if at_or_below(host, dir) {
            return Err(format!(
                "lies inside {dir}, {what}: a container can plant links there, which the host \
                 would follow; bind a directory outside it"
            ));
        }
    }
    Ok(())
}

/// Where nixos-nspawn mounts things itself inside every container, and
/// whether paths below count too: a bind mount there would replace them (the
/// store, the profile the container boots from).
const OWN_TARGETS: &[(&str, bool, &str)] = &[
    ("/", false, "the container's root file system"),
    (
        "/nix/store",
        true,
        "where nixos-nspawn mounts the Nix store",
    ),
    (
        paths::CONTAINER_PROFILES_DIR,
        true,
        "where nixos-nspawn mounts the container's profile (it boots from it)",
    ),
];

fn check_bind_target(container: &str) -> Result<(), String> {
    for (dir, below, what) in OWN_TARGETS {
        if container == *dir {
            return Err(format!("is {what}; bind elsewhere"));
        }
        if *below && at_or_below(container, dir) {
            return Err(format!("lies below {dir}, {what}; bind elsewhere"));
        }
    }
    Ok(())
}

fn check_bind_path(p: &str) -> Result<(), String> {
    check_abs_path(p)?;
    if let Some(c) = p
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '\\' | '"' | '\''))
    {
        return Err(format!(
            "{p:?} contains {c:?}, which bind mount paths may not contain"
        ));
    }
    Ok(())
}

/// An absolute, normalised path: starts with `/`, no `.`/`..` components, no
/// empty components, and a valid unit-file value.
pub fn check_abs_path(p: &str) -> Result<(), String> {
    check_value(p)?;
    if !p.starts_with('/') {
        return Err(format!("{p:?} is not an absolute path"));
    }
    if p.len() > 4096 {
        return Err("is longer than PATH_MAX (4096)".into());
    }
    if p.len() > 1 && (p.ends_with('/') || p.contains("//")) {
        return Err(format!("{p:?} is not normalised (empty component)"));
    }
    if Path::new(p)
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        || p.split('/').any(|c| c == "." || c == "..")
    {
        return Err(format!("{p:?} contains '.' or '..' components"));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortForward {
    pub protocol: Protocol,
    pub host_port: u16,
    /// `None`: the same as the host port.
    pub container_port: Option<u16>,
}

impl PortForward {
    /// Parse `[tcp|udp:]HOST[:CONTAINER]` (nspawn's `--port` syntax, the
    /// inverse of [`PortForward::nspawn_value`]); ports 1-65535.
    pub fn parse(s: &str) -> Result<PortForward, String> {
        let (protocol, rest) = match s.split_once(':') {
            Some(("tcp", r)) => (Protocol::Tcp, r),
            Some(("udp", r)) => (Protocol::Udp, r),
            Some((p, _)) if p.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                return Err(format!(
                    "{s}: unknown protocol {p:?} (tcp or udp; systemd-nspawn forwards nothing else)"
                ))
            }
            _ => (Protocol::Tcp, s),
        };
        let num = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{s}: {p:?} is not a port number (1-65535)"))
        };
        let (host_port, container_port) = match rest.split_once(':') {
            Some((h, c)) => (num(h)?, Some(num(c)?)),
            None => (num(rest)?, None),
        };
        Ok(PortForward {
            protocol,
            host_port,
            container_port,
        })
    }

    /// `tcp:8080:80`, as nspawn's `Port=` wants it.
    pub fn nspawn_value(&self) -> String {
        let proto = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        format!(
            "{proto}:{}:{}",
            self.host_port,
            self.container_port.unwrap_or(self.host_port)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credential {
    pub id: String,
    /// An absolute path on the host, or the name of a credential of the
    /// service manager (passed on from `$CREDENTIALS_DIRECTORY`).
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    Veth,
    Zone,
    Bridge,
    Host,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Network {
    pub mode: NetworkMode,
    pub zone: Option<String>,
    pub bridge: Option<String>,
    /// Settings merged over the host-side `ve-NAME` network defaults.
    pub host: Option<Settings>,
    /// Fixed addresses of the veth pair instead of the ones derived from the
    /// name ([`crate::addressing`]): host side and container side, IPv4 and
    /// IPv6 (the classic module's `hostAddress`, `localAddress`, …).
    #[serde(rename = "hostAddress", skip_serializing_if = "Option::is_none")]
    pub host_address: Option<String>,
    #[serde(rename = "localAddress", skip_serializing_if = "Option::is_none")]
    pub local_address: Option<String>,
    #[serde(rename = "hostAddress6", skip_serializing_if = "Option::is_none")]
    pub host_address6: Option<String>,
    #[serde(rename = "localAddress6", skip_serializing_if = "Option::is_none")]
    pub local_address6: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    None,
    Reload,
    Restart,
    #[default]
    Dynamic,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Activation {
    pub strategy: Strategy,
    pub reload_script: Option<String>,
}

/// What `nixos-nspawn create`/`update` built an imperative container's system
/// from, so that `update NAME` without a source rebuilds it (the registry's
/// optional `source` field, written only by the CLI):
/// `{"config": "/abs/file.nix" | "expression": "TEXT" | "flake": "REF#ATTR",
///   "platform": "x86_64-linux" | null, "nixArgs": ["--option", "K", "V", …]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSource {
    pub kind: SourceKind,
    /// The file's absolute path, the expression's text, or the flake
    /// installable that was built (attribute path resolved).
    pub value: String,
    /// `--platform`, when one was given.
    pub platform: Option<String>,
    /// The Nix options passed to the build, as arguments (`--option K V`,
    /// `--impure`, `--override-input I REF`).
    pub nix_args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// `--config FILE`: a NixOS configuration file.
    Config,
    /// `--config 'TEXT'`: attribute definitions of a NixOS module, inline.
    Expression,
    /// `--flake REF#ATTR`.
    Flake,
}

impl SourceKind {
    pub fn key(self) -> &'static str {
        match self {
            SourceKind::Config => "config",
            SourceKind::Expression => "expression",
            SourceKind::Flake => "flake",
        }
    }
}

impl Serialize for BuildSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry(self.kind.key(), &self.value)?;
        m.serialize_entry("platform", &self.platform)?;
        m.serialize_entry("nixArgs", &self.nix_args)?;
        m.end()
    }
}

/// A zone: host-side settings for the `vz-ZONE` bridge shared by containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Zone {
    pub version: u64,
    pub name: String,
    /// Merged over the `vz-ZONE` network defaults.
    pub network: Option<Settings>,
    /// When set, networkd creates the bridge (merged over `Name=vz-ZONE`, `Kind=bridge`).
    pub netdev: Option<Settings>,
    /// The zone's IPv4 subnet instead of the derived one
    /// ([`crate::addressing`]): the bridge takes its first address.
    #[serde(rename = "ipv4Subnet", skip_serializing_if = "Option::is_none")]
    pub ipv4_subnet: Option<ipnet::Ipv4Net>,
    /// The zone's IPv6 `/64` instead of the derived one.
    #[serde(rename = "ipv6Subnet", skip_serializing_if = "Option::is_none")]
    pub ipv6_subnet: Option<ipnet::Ipv6Net>,
}

impl Zone {
    /// A zone that is used by a container but not declared: systemd's defaults.
    pub fn undeclared(name: &str) -> Zone {
        Zone {
            version: SCHEMA_VERSION,
            name: name.to_owned(),
            network: None,
            netdev: None,
            ipv4_subnet: None,
            ipv6_subnet: None,
        }
    }
}

/// What `mountDaemonSocket` binds into the container.
pub const DAEMON_TARGETS: &[&str] = &["/nix/var/nix/db", "/nix/var/nix/daemon-socket"];

/// The sections of a `.nspawn` file: systemd.nspawn(5) of 252 and upstream's
/// settings parser (`nspawn-gperf.gperf`, 257 and later) know exactly these.
pub const NSPAWN_SECTIONS: &[&str] = &["Exec", "Files", "Network"];

/// Refuse settings that would change which link or device a networkd file
/// configures: `[Match]` (networkd files we render match exactly `ve-NAME` /
/// `vz-ZONE`) and, for a zone's `.netdev`, `[NetDev] Name=` — changed, they
/// could point `DHCPServer=` or `IPMasquerade=` at the host's uplink.
fn check_link_identity(s: &Settings, path: &str, netdev: bool) -> Vec<(String, String)> {
    use crate::settings::SectionBody;
    let mut errors = Vec::new();
    for (section, body) in &s.sections {
        if section == "Match" {
            errors.push((
                format!("{path}.Match"),
                "the [Match] section decides which link these settings configure (nixos-nspawn \
                 matches its own link by name); it cannot be set here"
                    .to_owned(),
            ));
        }
        if netdev && section == "NetDev" {
            let names_it = match body {
                SectionBody::Single(keys) => keys.iter().any(|(k, _)| k == "Name"),
                SectionBody::Repeated(_) => true,
            };
            if names_it {
                errors.push((
                    format!("{path}.NetDev"),
                    "the bridge's name is the zone's (vz-ZONE): [NetDev] Name= cannot be set, and \
                     [NetDev] cannot be repeated"
                        .to_owned(),
                ));
            }
        }
    }
    errors
}

/// Collects every problem found in one file.
struct Ctx<'a> {
    file: &'a Path,
    errors: Vec<EntryError>,
}

impl Ctx<'_> {
    fn err(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .push(EntryError::field(self.file, field, message.into()));
    }
}

/// One JSON object being read; unknown keys are reported by [`Obj::finish`].
struct Obj<'v> {
    prefix: String,
    map: &'v Map<String, Value>,
    known: Vec<&'static str>,
}

impl<'v> Obj<'v> {
    fn new(ctx: &mut Ctx, value: &'v Value, prefix: &str) -> Option<Obj<'v>> {
        match value {
            Value::Object(map) => Some(Obj {
                prefix: prefix.to_owned(),
                map,
                known: Vec::new(),
            }),
            other => {
                let field = if prefix.is_empty() {
                    "(top level)"
                } else {
                    prefix
                };
                ctx.err(
                    field,
                    format!("expected an object, found {}", show_value(other)),
                );
                None
            }
        }
    }

    fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// The value of `key`, `None` when absent or `null`.
    fn get(&mut self, key: &'static str) -> Option<&'v Value> {
        self.known.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn required(&mut self, ctx: &mut Ctx, key: &'static str) -> Option<&'v Value> {
        let v = self.get(key);
        if v.is_none() {
            ctx.err(&self.path(key), "is required");
        }
        v
    }

    fn bool(&mut self, ctx: &mut Ctx, key: &'static str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                ctx.err(
                    &self.path(key),
                    format!("expected true or false, found {}", show_value(other)),
                );
                default
            }
        }
    }

    fn string(&mut self, ctx: &mut Ctx, key: &'static str) -> Option<String> {
        let path = self.path(key);
        let v = self.get(key)?;
        as_string(ctx, &path, v)
    }

    fn list(&mut self, ctx: &mut Ctx, key: &'static str) -> Vec<(String, &'v Value)> {
        let path = self.path(key);
        match self.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{path}[{i}]"), v))
                .collect(),
            Some(other) => {
                ctx.err(
                    &path,
                    format!("expected a list, found {}", show_value(other)),
                );
                Vec::new()
            }
        }
    }

    fn settings(&mut self, ctx: &mut Ctx, key: &'static str) -> Option<Settings> {
        self.settings_checked(ctx, key, false)
    }

    /// Settings for a networkd `.network` file: addresses and prefixes must
    /// parse as IP addresses or CIDRs.
    fn network_settings(&mut self, ctx: &mut Ctx, key: &'static str) -> Option<Settings> {
        self.settings_checked(ctx, key, true)
    }

    fn settings_checked(
        &mut self,
        ctx: &mut Ctx,
        key: &'static str,
        network: bool,
    ) -> Option<Settings> {
        let path = self.path(key);
        let v = self.get(key)?;
        let parsed = Settings::from_json(v, &path).and_then(|s| {
            let errors = if network {
                check_network_settings(&s, &path)
            } else {
                Vec::new()
            };
            if errors.is_empty() {
                Ok(s)
            } else {
                Err(errors)
            }
        });
        match parsed {
            Ok(s) => Some(s),
            Err(errors) => {
                for (field, message) in errors {
                    ctx.err(&field, message);
                }
                None
            }
        }
    }

    fn finish(self, ctx: &mut Ctx) {
        for key in self.map.keys() {
            if !self.known.contains(&key.as_str()) {
                let mut known = self.known.clone();
                known.sort_unstable();
                known.dedup();
                ctx.err(
                    &self.path(key),
                    format!("unknown field; expected one of: {}", known.join(", ")),
                );
            }
        }
    }
}

fn as_string(ctx: &mut Ctx, path: &str, v: &Value) -> Option<String> {
    match v {
        Value::String(s) => match check_value(s) {
            Ok(()) => Some(s.clone()),
            Err(e) => {
                ctx.err(path, e);
                None
            }
        },
        other => {
            ctx.err(
                path,
                format!("expected a string, found {}", show_value(other)),
            );
            None
        }
    }
}

fn port(ctx: &mut Ctx, path: &str, v: &Value) -> Option<u16> {
    match v.as_u64() {
        Some(p) if (1..=65535).contains(&p) => Some(p as u16),
        _ => {
            ctx.err(
                path,
                format!("{} is not a port number (1-65535)", show_value(v)),
            );
            None
        }
    }
}

fn enum_value<T: Copy>(
    ctx: &mut Ctx,
    path: &str,
    v: Option<&Value>,
    choices: &[(&str, T)],
    default: T,
) -> T {
    let Some(v) = v else { return default };
    if let Some(s) = v.as_str() {
        if let Some((_, t)) = choices.iter().find(|(n, _)| *n == s) {
            return *t;
        }
    }
    let names: Vec<_> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
    ctx.err(
        path,
        format!("{} is not one of {}", show_value(v), names.join(", ")),
    );
    default
}

/// A systemd time span as `TimeoutStartSec=` takes it: `infinity`, or numbers
/// with optional units (`90`, `90s`, `5min 30s`, `1.5h`).
pub fn check_timespan(s: &str) -> Result<(), String> {
    parse_timespan(s).map(drop)
}

/// Parse a time span the way systemd's `parse_sec()` does (time-util.c):
/// `infinity` (`Ok(None)`), or one or more `NUMBER[.FRACTION] [UNIT]`
/// components (default unit seconds), summed in microseconds. What systemd
/// rejects is rejected here, notably a total that does not fit its 64-bit
/// microsecond counter (`99999999999999999999999y`: systemd ignores such a
/// `TimeoutStartSec=` with a warning and keeps its default).
pub fn parse_timespan(s: &str) -> Result<Option<u64>, String> {
    const US: u64 = 1;
    const MS: u64 = 1_000;
    const SEC: u64 = 1_000_000;
    const MIN: u64 = 60 * SEC;
    const HOUR: u64 = 60 * MIN;
    const DAY: u64 = 24 * HOUR;
    const WEEK: u64 = 7 * DAY;
    const MONTH: u64 = 2_629_800 * SEC; // 30.44 days, as systemd
    const YEAR: u64 = 31_557_600 * SEC; // 365.25 days, as systemd
                                        // Longest first where one is a prefix of another (systemd's table order).
    const UNITS: &[(&str, u64)] = &[
        ("seconds", SEC),
        ("second", SEC),
        ("sec", SEC),
        ("s", SEC),
        ("minutes", MIN),
        ("minute", MIN),
        ("min", MIN),
        ("months", MONTH),
        ("month", MONTH),
        ("M", MONTH),
        ("msec", MS),
        ("ms", MS),
        ("m", MIN),
        ("hours", HOUR),
        ("hour", HOUR),
        ("hr", HOUR),
        ("h", HOUR),
        ("days", DAY),
        ("day", DAY),
        ("d", DAY),
        ("weeks", WEEK),
        ("week", WEEK),
        ("w", WEEK),
        ("years", YEAR),
        ("year", YEAR),
        ("y", YEAR),
        ("usec", US),
        ("us", US),
        ("\u{b5}s", US),
        ("\u{3bc}s", US),
    ];
    let bad = || format!("{s:?} is not a systemd time span (e.g. \"90s\", \"5min\", \"infinity\")");
    let too_long = || {
        format!("{s:?} is longer than systemd can count (at most about 584,000 years; use \"infinity\")")
    };
    if s.trim() == "infinity" {
        return Ok(None);
    }
    let mut rest = s.trim_start();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, mut after) = rest.split_at(int_end);
        let mut frac = "";
        if let Some(f) = after.strip_prefix('.') {
            let frac_end = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
            frac = &f[..frac_end];
            after = &f[frac_end..];
        } else if int.is_empty() {
            return Err(bad());
        }
        // strtoll: a value beyond a signed 64-bit integer is ERANGE.
        let whole: u64 = if int.is_empty() {
            0
        } else {
            match int.parse::<i64>() {
                Ok(v) => v as u64,
                Err(_) => return Err(too_long()),
            }
        };
        let unit_text = after.trim_start();
        let (unit_len, mult) = UNITS
            .iter()
            .find(|(u, _)| unit_text.starts_with(u))
            .map_or((0, SEC), |(u, m)| (u.len(), *m));
        if unit_len == 0 && !unit_text.is_empty() && unit_text.len() == after.len() {
            // "12.34.56" or "5x": no unit and no space before what follows.
            return Err(bad());
        }
        if unit_len == 0
            && !unit_text.is_empty()
            && !unit_text.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        {
            return Err(bad());
        }
        if whole >= u64::MAX / mult {
            return Err(too_long());
        }
        let mut k = whole * mult;
        // The fraction, digit by digit, as systemd does.
        let mut m = mult;
        for d in frac.bytes() {
            m /= 10;
            k += u64::from(d - b'0') * m;
        }
        if k >= u64::MAX - total {
            return Err(too_long());
        }
        total += k;
        rest = unit_text[unit_len..].trim_start();
    }
    Ok(Some(total))
}

/// A `SystemCallFilter=` value: syscall names and `@groups`, optionally
/// prefixed with `~`, separated by spaces.
fn check_syscall_filter(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty (use null for no filter)".into());
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '~' | ':' | '-' | ' ')))
    {
        Some(c) => Err(format!(
            "{s:?} contains {c:?}; expected syscall names and @groups"
        )),
        None => Ok(()),
    }
}

/// Keys of a `.network` file whose values are addresses: `(section, key, what)`.
const ADDRESS_KEYS: &[(&str, &str, AddrKind)] = &[
    ("Network", "Address", AddrKind::AddrOrCidr),
    ("Network", "Gateway", AddrKind::Gateway),
    ("Network", "DNS", AddrKind::Addr),
    ("Address", "Address", AddrKind::AddrOrCidr),
    ("Address", "Peer", AddrKind::AddrOrCidr),
    ("Route", "Destination", AddrKind::AddrOrCidr),
    ("Route", "Gateway", AddrKind::Gateway),
    ("IPv6Prefix", "Prefix", AddrKind::Cidr),
    ("DHCPServerStaticLease", "Address", AddrKind::Addr),
];

#[derive(Clone, Copy)]
enum AddrKind {
    Addr,
    Cidr,
    AddrOrCidr,
    Gateway,
}

fn check_address(kind: AddrKind, v: &str) -> Result<(), String> {
    use std::net::IpAddr;
    let addr = || v.parse::<IpAddr>().is_ok();
    let cidr = || v.parse::<IpNet>().is_ok();
    let ok = v.is_empty() // an empty assignment resets the list in systemd
        || match kind {
            AddrKind::Addr => addr(),
            AddrKind::Cidr => cidr(),
            AddrKind::AddrOrCidr => addr() || cidr(),
            AddrKind::Gateway => addr() || matches!(v, "_dhcp4" | "_ipv6ra"),
        };
    if ok {
        return Ok(());
    }
    let expected = match kind {
        AddrKind::Addr => "an IP address",
        AddrKind::Cidr => "a CIDR prefix like fd00::/64",
        AddrKind::AddrOrCidr => "an IP address or CIDR like 10.0.0.1/24",
        AddrKind::Gateway => "an IP address, _dhcp4 or _ipv6ra",
    };
    Err(format!("{v:?} is not {expected}"))
}

fn check_network_settings(s: &Settings, path: &str) -> Vec<(String, String)> {
    use crate::settings::{Scalar, SectionBody};
    let mut errors = Vec::new();
    let mut check = |section: &str, spath: &str, key: &str, vals: &[Scalar]| {
        for (sec, k, kind) in ADDRESS_KEYS {
            if *sec != section || *k != key {
                continue;
            }
            for (i, v) in vals.iter().enumerate() {
                let text = v.to_unit_string();
                if let Err(e) = check_address(*kind, &text) {
                    let field = if vals.len() > 1 {
                        format!("{spath}.{key}[{i}]")
                    } else {
                        format!("{spath}.{key}")
                    };
                    errors.push((field, e));
                }
            }
        }
    };
    for (section, body) in &s.sections {
        match body {
            SectionBody::Single(entries) => {
                for (key, vals) in entries {
                    if let Some(vals) = vals {
                        check(section, &format!("{path}.{section}"), key, vals);
                    }
                }
            }
            SectionBody::Repeated(list) => {
                for (i, entries) in list.iter().enumerate() {
                    for (key, vals) in entries {
                        check(section, &format!("{path}.{section}[{i}]"), key, vals);
                    }
                }
            }
        }
    }
    errors
}

fn stem_of(file: &Path) -> Option<&str> {
    file.file_stem().and_then(|s| s.to_str())
}

/// Parse a registry file's JSON: strict UTF-8, not empty, and no object
/// with a key given twice (serde_json would silently keep the last one, so a
/// reviewer reading the first could be shown one value while another counts).
pub fn parse_json(file: &Path, bytes: &[u8]) -> Result<Value, Vec<EntryError>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        vec![EntryError::file(
            file,
            format!("is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )]
    })?;
    if text.trim().is_empty() {
        return Err(vec![EntryError::file(file, "is empty")]);
    }
    strict_json::from_str(text).map_err(|e| match e {
        strict_json::Error::Duplicate { path, line, column } => vec![EntryError::field(
            file,
            path,
            format!(
                "is given twice (line {line}, column {column}); a key may appear only once in \
                 an object"
            ),
        )],
        strict_json::Error::Json(e) => {
            vec![EntryError::file(file, format!("is not valid JSON: {e}"))]
        }
    })
}

/// JSON into a [`Value`] like `serde_json::from_str`, but an object that
/// repeats a key is an error naming its path. The same single pass as
/// serde_json's own `Value` (its parser, its recursion limit); the path is
/// only built when a duplicate is found.
mod strict_json {
    use std::cell::RefCell;
    use std::fmt;

    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};

    pub enum Error {
        Duplicate {
            path: String,
            line: usize,
            column: usize,
        },
        Json(serde_json::Error),
    }

    pub fn from_str(text: &str) -> Result<Value, Error> {
        let dup = RefCell::new(None);
        let mut de = serde_json::Deserializer::from_str(text);
        let res = Seed { dup: &dup }
            .deserialize(&mut de)
            .and_then(|v| de.end().map(|()| v));
        match (res, dup.into_inner()) {
            (Err(e), Some(segments)) => Err(Error::Duplicate {
                path: join(&segments),
                line: e.line(),
                column: e.column(),
            }),
            (Err(e), None) => Err(Error::Json(e)),
            (Ok(v), _) => Ok(v),
        }
    }

    /// Segments innermost first (`key`, `[i]`) → `a.b[2].c`.
    fn join(segments: &[String]) -> String {
        let mut out = String::new();
        for seg in segments.iter().rev() {
            if !seg.starts_with('[') && !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
        out
    }

    /// The path of the duplicate, innermost segment first, filled while the
    /// error unwinds.
    type Dup = RefCell<Option<Vec<String>>>;

    #[derive(Clone, Copy)]
    struct Seed<'a> {
        dup: &'a Dup,
    }

    impl Seed<'_> {
        fn on_err(&self, segment: impl FnOnce() -> String) {
            if let Some(p) = self.dup.borrow_mut().as_mut() {
                p.push(segment());
            }
        }
    }

    impl<'de> DeserializeSeed<'de> for Seed<'_> {
        type Value = Value;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Seed<'_> {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            self.deserialize(d)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut out = Vec::new();
            loop {
                match seq.next_element_seed(self) {
                    Ok(Some(v)) => out.push(v),
                    Ok(None) => return Ok(Value::Array(out)),
                    Err(e) => {
                        let i = out.len();
                        self.on_err(|| format!("[{i}]"));
                        return Err(e);
                    }
                }
            }
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                match out.entry(key) {
                    serde_json::map::Entry::Occupied(o) => {
                        let key = o.key().clone();
                        let msg = format!("duplicate key {key:?}");
                        *self.dup.borrow_mut() = Some(vec![key]);
                        return Err(de::Error::custom(msg));
                    }
                    serde_json::map::Entry::Vacant(slot) => match map.next_value_seed(self) {
                        Ok(v) => {
                            slot.insert(v);
                        }
                        Err(e) => {
                            let key = slot.key().clone();
                            self.on_err(|| key);
                            return Err(e);
                        }
                    },
                }
            }
            Ok(Value::Object(out))
        }
    }
}

fn check_version(ctx: &mut Ctx, obj: &mut Obj) -> bool {
    match obj.required(ctx, "version") {
        Some(v) if v.as_u64() == Some(SCHEMA_VERSION) => true,
        Some(v) => {
            ctx.err(
                "version",
                format!(
                    "{} is not a supported schema version (this nixos-nspawn reads version {SCHEMA_VERSION})",
                    show_value(v)
                ),
            );
            false
        }
        None => false,
    }
}

/// Parse and validate one container entry. `file` is the logical path; its
/// stem must equal `name`.
pub fn parse_entry(file: &Path, bytes: &[u8]) -> Result<Entry, Vec<EntryError>> {
    let value = parse_json(file, bytes)?;
    parse_entry_value(file, &value)
}

/// Validate an entry that is already JSON (e.g. embedded in an applied-state
/// record); `file` names it in errors and its stem must equal `name`.
pub fn parse_entry_value(file: &Path, value: &Value) -> Result<Entry, Vec<EntryError>> {
    parse_versioned(file, value, entry_from_obj)
}

/// The one frame of every registry file (entries, zones, network.json): an
/// object whose `version` is ours, then `body` on its fields; `Ok` only when
/// nothing was reported. A different schema version stops there: reporting
/// its fields against ours would only confuse.
fn parse_versioned<T>(
    file: &Path,
    value: &Value,
    body: impl FnOnce(&mut Ctx, Obj) -> Option<T>,
) -> Result<T, Vec<EntryError>> {
    let mut ctx = Ctx {
        file,
        errors: Vec::new(),
    };
    let parsed = Obj::new(&mut ctx, value, "").and_then(|mut obj| {
        if !check_version(&mut ctx, &mut obj) {
            return None;
        }
        body(&mut ctx, obj)
    });
    match parsed {
        Some(v) if ctx.errors.is_empty() => Ok(v),
        _ => Err(ctx.errors),
    }
}

fn entry_from_obj(ctx: &mut Ctx, mut obj: Obj) -> Option<Entry> {
    let name = parse_name(ctx, &mut obj);
    let declarative = obj.bool(ctx, "declarative", false);
    let system = required_string(ctx, &mut obj, "system", "system");
    if let Some(s) = &system {
        if let Err(e) = check_abs_path(s) {
            ctx.err("system", e);
        }
    }
    let auto_start = obj.bool(ctx, "autoStart", true);
    let ephemeral = obj.bool(ctx, "ephemeral", false);
    let user_namespacing = obj.bool(ctx, "userNamespacing", false);
    let timeout_start_sec = obj
        .string(ctx, "timeoutStartSec")
        .unwrap_or_else(|| "90s".into());
    if let Err(e) = check_timespan(&timeout_start_sec) {
        ctx.err("timeoutStartSec", e);
    }
    let system_call_filter = obj.string(ctx, "systemCallFilter");
    if let Some(f) = &system_call_filter {
        if let Err(e) = check_syscall_filter(f) {
            ctx.err("systemCallFilter", e);
        }
    }
    let shared_nix = obj.bool(ctx, "sharedNix", true);
    let mount_daemon_socket = obj.bool(ctx, "mountDaemonSocket", false);
    let bind_mounts = parse_bind_mounts(ctx, &mut obj, mount_daemon_socket);
    let forward_ports = parse_forward_ports(ctx, &mut obj);
    let credentials = parse_credentials(ctx, &mut obj);
    let network = match obj.get("network") {
        None => Network::default(),
        Some(v) => parse_network(ctx, v).unwrap_or_default(),
    };
    if !forward_ports.is_empty() && matches!(network.mode, NetworkMode::Host | NetworkMode::None) {
        ctx.err(
            "forwardPorts",
            format!(
                "port forwarding needs a private network with an interface, but network.mode is {:?}",
                mode_name(network.mode)
            ),
        );
    }
    let activation = match obj.get("activation") {
        None => Activation::default(),
        Some(v) => parse_activation(ctx, v).unwrap_or_default(),
    };
    let extra_nspawn = parse_extra_nspawn(ctx, &mut obj);
    let extra_service = parse_extra_service(ctx, &mut obj);
    let source = obj.get("source").and_then(|v| parse_source(ctx, v));
    obj.finish(ctx);

    Some(Entry {
        version: SCHEMA_VERSION,
        name: name?,
        declarative,
        system: system?,
        auto_start,
        ephemeral,
        user_namespacing,
        timeout_start_sec,
        system_call_filter,
        shared_nix,
        mount_daemon_socket,
        bind_mounts,
        forward_ports,
        credentials,
        network,
        activation,
        extra_nspawn,
        extra_service,
        source,
    })
}

/// A string field that must be there; `field` is its name in errors.
fn required_string(ctx: &mut Ctx, obj: &mut Obj, key: &'static str, field: &str) -> Option<String> {
    let value = obj.string(ctx, key);
    if obj.get(key).is_none() {
        ctx.err(field, "is required");
    }
    value
}

/// `name`: required, a machine name, and the stem of the file it is in.
fn parse_name(ctx: &mut Ctx, obj: &mut Obj) -> Option<String> {
    let name = required_string(ctx, obj, "name", "name");
    if let Some(name) = &name {
        if let Err(e) = names::check_machine_name(name) {
            ctx.err("name", format!("{name:?} {e}"));
        } else if stem_of(ctx.file) != Some(name.as_str()) {
            ctx.err(
                "name",
                format!(
                    "{name:?} does not match the file name (expected {:?})",
                    stem_of(ctx.file).unwrap_or_default()
                ),
            );
        }
    }
    name
}

/// `bindMounts`: each parsed, none over what `mountDaemonSocket` mounts,
/// no container path twice.
fn parse_bind_mounts(ctx: &mut Ctx, obj: &mut Obj, mount_daemon_socket: bool) -> Vec<BindMount> {
    // With their index in the file: a bad one before does not shift the
    // field named for a later one.
    let mut indexed = Vec::new();
    for (i, (path, v)) in obj.list(ctx, "bindMounts").into_iter().enumerate() {
        if let Some(s) = as_string(ctx, &path, v) {
            match BindMount::parse(&s) {
                Ok(b) => indexed.push((i, b)),
                Err(e) => ctx.err(&path, e),
            }
        }
    }
    if mount_daemon_socket {
        for (i, b) in &indexed {
            for dir in DAEMON_TARGETS {
                if at_or_below(&b.container, dir) {
                    ctx.err(
                        &format!("bindMounts[{i}]"),
                        format!(
                            "{:?}: container path {:?} is (or lies below) {dir}, which \
                             mountDaemonSocket mounts itself: bind elsewhere",
                            b.to_string(),
                            b.container
                        ),
                    );
                }
            }
        }
    }
    let mut seen_targets = BTreeMap::new();
    for (i, b) in &indexed {
        if let Some(first) = seen_targets.insert(b.container.clone(), *i) {
            ctx.err(
                &format!("bindMounts[{i}]"),
                format!(
                    "mounts over {:?} again (already bindMounts[{first}])",
                    b.container
                ),
            );
        }
    }
    indexed.into_iter().map(|(_, b)| b).collect()
}

/// `forwardPorts`: each parsed, no host port (per protocol) twice.
fn parse_forward_ports(ctx: &mut Ctx, obj: &mut Obj) -> Vec<PortForward> {
    let mut forward_ports = Vec::new();
    for (path, v) in obj.list(ctx, "forwardPorts") {
        let Some(mut o) = Obj::new(ctx, v, &path) else {
            continue;
        };
        let protocol = enum_value(
            ctx,
            &o.path("protocol"),
            o.get("protocol"),
            &[("tcp", Protocol::Tcp), ("udp", Protocol::Udp)],
            Protocol::Tcp,
        );
        let host_port = o
            .required(ctx, "hostPort")
            .and_then(|v| port(ctx, &format!("{path}.hostPort"), v));
        let container_port = o
            .get("containerPort")
            .and_then(|v| port(ctx, &format!("{path}.containerPort"), v));
        o.finish(ctx);
        if let Some(host_port) = host_port {
            forward_ports.push(PortForward {
                protocol,
                host_port,
                container_port,
            });
        }
    }
    for (i, p) in forward_ports.iter().enumerate() {
        if forward_ports[..i]
            .iter()
            .any(|q| q.protocol == p.protocol && q.host_port == p.host_port)
        {
            ctx.err(
                &format!("forwardPorts[{i}]"),
                format!("forwards host port {} twice", p.nspawn_value()),
            );
        }
    }
    forward_ports
}

/// `credentials`: each an id (given once) and an absolute path or a
/// credential name.
fn parse_credentials(ctx: &mut Ctx, obj: &mut Obj) -> Vec<Credential> {
    let mut credentials: Vec<Credential> = Vec::new();
    for (path, v) in obj.list(ctx, "credentials") {
        let Some(mut o) = Obj::new(ctx, v, &path) else {
            continue;
        };
        let id = required_string(ctx, &mut o, "id", &format!("{path}.id"));
        let cred_path = required_string(ctx, &mut o, "path", &format!("{path}.path"));
        o.finish(ctx);
        if let Some(id) = &id {
            if let Err(e) = names::check_credential_id(id) {
                ctx.err(&format!("{path}.id"), format!("{id:?} {e}"));
            } else if credentials.iter().any(|c| &c.id == id) {
                ctx.err(&format!("{path}.id"), format!("{id:?} is given twice"));
            }
        }
        if let Some(p) = &cred_path {
            let valid = if p.starts_with('/') {
                check_abs_path(p)
            } else {
                names::check_credential_id(p).map_err(|e| {
                    format!("{p:?} is neither an absolute path nor a credential name: it {e}")
                })
            };
            if let Err(e) = valid {
                ctx.err(&format!("{path}.path"), e);
            }
        }
        if let (Some(id), Some(path)) = (id, cred_path) {
            credentials.push(Credential { id, path });
        }
    }
    credentials
}

/// `extraNspawn`: settings whose sections are all `.nspawn` sections.
fn parse_extra_nspawn(ctx: &mut Ctx, obj: &mut Obj) -> Option<Settings> {
    let extra_nspawn = obj.settings(ctx, "extraNspawn");
    if let Some(x) = &extra_nspawn {
        for (section, _) in &x.sections {
            if !NSPAWN_SECTIONS.contains(&section.as_str()) {
                ctx.err(
                    &format!("extraNspawn.{section}"),
                    format!(
                        "{section:?} is not a section of .nspawn files (systemd.nspawn(5): {}); \
                         nspawn would ignore it",
                        NSPAWN_SECTIONS.join(", ")
                    ),
                );
            }
        }
    }
    extra_nspawn
}

/// `extraService`: settings that do not add a second `ExecStart=`.
fn parse_extra_service(ctx: &mut Ctx, obj: &mut Obj) -> Option<Settings> {
    let extra_service = obj.settings(ctx, "extraService");
    if let Some(Some(vals)) = extra_service
        .as_ref()
        .and_then(|x| x.value("Service", "ExecStart"))
    {
        if vals.first().is_some_and(|v| v.to_unit_string() != "") {
            // systemd refuses a drop-in that adds a second ExecStart= to a
            // service (only Type=oneshot may have several): the unit would
            // not load at all.
            ctx.err(
                "extraService.Service.ExecStart",
                format!(
                    "{} would be a second ExecStart= of the service, which systemd refuses; reset the generated one first: [\"\", {}]",
                    show_value(&serde_json::to_value(&vals[0]).unwrap_or_default()),
                    serde_json::to_string(&vals[0]).unwrap_or_default()
                ),
            );
        }
    }
    extra_service
}

/// Text without NUL or control characters other than line breaks and tabs
/// (an inline configuration is never written into a unit file).
fn check_text(s: &str) -> Result<(), String> {
    match s
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        Some(c) => Err(format!(
            "contains the control character {c:?}, which a Nix expression does not need"
        )),
        None => Ok(()),
    }
}

fn parse_source(ctx: &mut Ctx, v: &Value) -> Option<BuildSource> {
    let mut o = Obj::new(ctx, v, "source")?;
    let mut found: Vec<(SourceKind, String)> = Vec::new();
    let mut bad = 0;
    for kind in [
        SourceKind::Config,
        SourceKind::Expression,
        SourceKind::Flake,
    ] {
        let key = kind.key();
        let path = format!("source.{key}");
        let Some(value) = o.get(key) else { continue };
        let Value::String(s) = value else {
            bad += 1;
            ctx.err(
                &path,
                format!("expected a string, found {}", show_value(value)),
            );
            continue;
        };
        let checked = match kind {
            SourceKind::Config => check_abs_path(s),
            SourceKind::Expression => check_text(s),
            SourceKind::Flake => check_value(s).and_then(|()| {
                if s.is_empty() || s.contains(char::is_whitespace) {
                    Err(format!(
                        "{s:?} is not a flake reference (empty or with whitespace)"
                    ))
                } else {
                    Ok(())
                }
            }),
        };
        match checked {
            Ok(()) => found.push((kind, s.clone())),
            Err(e) => {
                bad += 1;
                ctx.err(&path, e);
            }
        }
    }
    let platform = o.string(ctx, "platform");
    if let Some(p) = &platform {
        if p.is_empty() || p.contains(char::is_whitespace) {
            ctx.err("source.platform", format!("{p:?} is not a Nix platform"));
        }
    }
    let mut nix_args = Vec::new();
    for (path, v) in o.list(ctx, "nixArgs") {
        match v {
            Value::String(s) => match check_text(s) {
                Ok(()) if !s.contains('\n') => nix_args.push(s.clone()),
                Ok(()) => ctx.err(&path, format!("{s:?} contains a line break")),
                Err(e) => ctx.err(&path, e),
            },
            other => ctx.err(
                &path,
                format!("expected a string, found {}", show_value(other)),
            ),
        }
    }
    o.finish(ctx);
    if found.len() + bad > 1 {
        ctx.err(
            "source",
            "has more than one of config, expression and flake",
        );
        return None;
    }
    if found.is_empty() {
        if bad == 0 {
            ctx.err("source", "needs one of config, expression or flake");
        }
        return None;
    }
    let (kind, value) = found.pop()?;
    Some(BuildSource {
        kind,
        value,
        platform,
        nix_args,
    })
}

pub fn mode_name(mode: NetworkMode) -> &'static str {
    match mode {
        NetworkMode::Veth => "veth",
        NetworkMode::Zone => "zone",
        NetworkMode::Bridge => "bridge",
        NetworkMode::Host => "host",
        NetworkMode::None => "none",
    }
}

fn parse_network(ctx: &mut Ctx, v: &Value) -> Option<Network> {
    let mut o = Obj::new(ctx, v, "network")?;
    let mode = enum_value(
        ctx,
        "network.mode",
        o.get("mode"),
        &[
            ("veth", NetworkMode::Veth),
            ("zone", NetworkMode::Zone),
            ("bridge", NetworkMode::Bridge),
            ("host", NetworkMode::Host),
            ("none", NetworkMode::None),
        ],
        NetworkMode::Veth,
    );
    let zone = o.string(ctx, "zone");
    let bridge = o.string(ctx, "bridge");
    let host = o.network_settings(ctx, "host");
    let host_address = o.string(ctx, "hostAddress");
    let local_address = o.string(ctx, "localAddress");
    let host_address6 = o.string(ctx, "hostAddress6");
    let local_address6 = o.string(ctx, "localAddress6");
    if let Some(h) = &host {
        for (field, message) in check_link_identity(h, "network.host", false) {
            ctx.err(&field, message);
        }
    }
    o.finish(ctx);
    let mode_str = mode_name(mode);
    check_fixed_pair::<std::net::Ipv4Addr>(
        ctx,
        mode,
        host.as_ref(),
        ("hostAddress", &host_address),
        ("localAddress", &local_address),
    );
    check_fixed_pair::<std::net::Ipv6Addr>(
        ctx,
        mode,
        host.as_ref(),
        ("hostAddress6", &host_address6),
        ("localAddress6", &local_address6),
    );
    match (&zone, mode) {
        (None, NetworkMode::Zone) => {
            ctx.err("network.zone", "is required when network.mode is \"zone\"")
        }
        (Some(z), NetworkMode::Zone) => {
            if let Err(e) = names::check_zone_name(z) {
                ctx.err("network.zone", format!("{z:?} {e}"));
            }
        }
        (Some(z), _) => ctx.err(
            "network.zone",
            format!("{z:?} is set but network.mode is {mode_str:?}, not \"zone\""),
        ),
        (None, _) => {}
    }
    match (&bridge, mode) {
        (None, NetworkMode::Bridge) => ctx.err(
            "network.bridge",
            "is required when network.mode is \"bridge\"",
        ),
        (Some(b), NetworkMode::Bridge) => {
            if let Err(e) = names::check_ifname(b) {
                ctx.err("network.bridge", format!("{b:?} {e}"));
            }
        }
        (Some(b), _) => ctx.err(
            "network.bridge",
            format!("{b:?} is set but network.mode is {mode_str:?}, not \"bridge\""),
        ),
        (None, _) => {}
    }
    if host.is_some() && mode != NetworkMode::Veth {
        ctx.err(
            "network.host",
            format!(
                "host-side settings apply to the ve- link of mode \"veth\" only, but network.mode is {mode_str:?}{}",
                if mode == NetworkMode::Zone { " (configure the zone in its zone file)" } else { "" }
            ),
        );
    }
    Some(Network {
        mode,
        zone,
        bridge,
        host,
        host_address,
        local_address,
        host_address6,
        local_address6,
    })
}

/// `network.hostAddress` + `network.localAddress` (or the `…6` pair): both or
/// neither, a valid pair ([`crate::addressing::parse_pair`]), mode veth only,
/// and not together with host-side addresses in `network.host`.
fn check_fixed_pair<A: crate::addressing::Family>(
    ctx: &mut Ctx,
    mode: NetworkMode,
    host: Option<&Settings>,
    (hk, hv): (&str, &Option<String>),
    (lk, lv): (&str, &Option<String>),
) {
    let (h, l) = match (hv, lv) {
        (None, None) => return,
        (Some(_), None) => {
            return ctx.err(
                &format!("network.{lk}"),
                format!("is required with network.{hk}"),
            )
        }
        (None, Some(_)) => {
            return ctx.err(
                &format!("network.{hk}"),
                format!("is required with network.{lk}"),
            )
        }
        (Some(h), Some(l)) => (h, l),
    };
    if mode != NetworkMode::Veth {
        return ctx.err(
            &format!("network.{hk}"),
            format!(
                "fixed addresses apply to the ve- link of mode \"veth\" only, but network.mode is {:?}",
                mode_name(mode)
            ),
        );
    }
    if let Err(e) = crate::addressing::parse_pair::<A>(h, l) {
        return ctx.err(&format!("network.{hk}"), e);
    }
    if crate::addressing::host_side_customised(host) {
        ctx.err(
            &format!("network.{hk}"),
            "network.host also sets the host side's addresses (Network.Address or [Address]); use one or the other",
        );
    }
}

/// Parse the host's addressing settings, `/etc/nixos-nspawn/network.json`:
/// `{"version": 1, "ipv4Pool": CIDR|null, "ipv6Prefix": CIDR|false|null,
/// "zonePool": CIDR|null}`.
pub fn parse_host_network(
    file: &Path,
    bytes: &[u8],
) -> Result<
    (
        ipnet::Ipv4Net,
        crate::addressing::Ipv6Setting,
        ipnet::Ipv4Net,
    ),
    Vec<EntryError>,
> {
    use crate::addressing::{
        parse_ipv4_net, Ipv6Setting, DEFAULT_IPV4_POOL, DEFAULT_ZONE_POOL, POOL_PREFIX_MAX,
        POOL_PREFIX_MIN, ZONE_POOL_PREFIX_MAX, ZONE_POOL_PREFIX_MIN,
    };
    let value = parse_json(file, bytes)?;
    parse_versioned(file, &value, |ctx, mut obj| {
        let pool = match obj.string(ctx, "ipv4Pool") {
            None => DEFAULT_IPV4_POOL,
            Some(s) => parse_ipv4_net(&s, "the pool's", POOL_PREFIX_MIN, POOL_PREFIX_MAX)
                .unwrap_or_else(|e| {
                    ctx.err("ipv4Pool", e);
                    DEFAULT_IPV4_POOL
                }),
        };
        let zone_pool = match obj.string(ctx, "zonePool") {
            None => DEFAULT_ZONE_POOL,
            Some(s) => match parse_ipv4_net(
                &s,
                "the zone pool's",
                ZONE_POOL_PREFIX_MIN,
                ZONE_POOL_PREFIX_MAX,
            ) {
                Ok(n) if n.contains(&pool.network()) || pool.contains(&n.network()) => {
                    ctx.err(
                        "zonePool",
                        format!("{s:?} overlaps the pool of veth addresses {pool} (ipv4Pool)"),
                    );
                    DEFAULT_ZONE_POOL
                }
                Ok(n) => n,
                Err(e) => {
                    ctx.err("zonePool", e);
                    DEFAULT_ZONE_POOL
                }
            },
        };
        if obj.get("zonePool").is_none()
            && (zone_pool.contains(&pool.network()) || pool.contains(&zone_pool.network()))
        {
            ctx.err(
                "ipv4Pool",
                format!("{pool} overlaps the default zone pool {DEFAULT_ZONE_POOL}: set zonePool to a network outside it"),
            );
        }
        let v6 = match obj.get("ipv6Prefix") {
            None => Ipv6Setting::Derived,
            Some(Value::Bool(false)) => Ipv6Setting::Off,
            Some(Value::String(s)) => match s.parse::<ipnet::Ipv6Net>() {
                Ok(n) if n.prefix_len() <= 48 => Ipv6Setting::Prefix(
                    ipnet::Ipv6Net::new(n.network(), 48).expect("48 is a valid prefix length"),
                ),
                Ok(_) => {
                    ctx.err("ipv6Prefix", format!("{s:?}: the prefix must be /48 or shorter (each container takes a /64 of a /48)"));
                    Ipv6Setting::Off
                }
                Err(_) => {
                    ctx.err(
                        "ipv6Prefix",
                        format!("{s:?} is not an IPv6 CIDR like fd42:1:2::/48"),
                    );
                    Ipv6Setting::Off
                }
            },
            Some(other) => {
                ctx.err(
                    "ipv6Prefix",
                    format!(
                        "expected an IPv6 CIDR, false or null, found {}",
                        show_value(other)
                    ),
                );
                Ipv6Setting::Off
            }
        };
        obj.finish(ctx);
        Some((pool, v6, zone_pool))
    })
}

fn parse_activation(ctx: &mut Ctx, v: &Value) -> Option<Activation> {
    let mut o = Obj::new(ctx, v, "activation")?;
    let strategy = enum_value(
        ctx,
        "activation.strategy",
        o.get("strategy"),
        &[
            ("none", Strategy::None),
            ("reload", Strategy::Reload),
            ("restart", Strategy::Restart),
            ("dynamic", Strategy::Dynamic),
        ],
        Strategy::Dynamic,
    );
    let reload_script = o.string(ctx, "reloadScript");
    if let Some(s) = &reload_script {
        if let Err(e) = check_abs_path(s) {
            ctx.err("activation.reloadScript", e);
        }
    }
    o.finish(ctx);
    Some(Activation {
        strategy,
        reload_script,
    })
}

/// Parse and validate one zone file; its stem must equal `name`.
pub fn parse_zone(file: &Path, bytes: &[u8]) -> Result<Zone, Vec<EntryError>> {
    let value = parse_json(file, bytes)?;
    parse_versioned(file, &value, |ctx, mut obj| {
        let name = obj.string(ctx, "name");
        if obj.get("name").is_none() {
            ctx.err("name", "is required");
        }
        if let Some(n) = &name {
            if let Err(e) = names::check_zone_name(n) {
                ctx.err("name", format!("{n:?} {e}"));
            } else if stem_of(file) != Some(n.as_str()) {
                ctx.err(
                    "name",
                    format!(
                        "{n:?} does not match the file name (expected {:?})",
                        stem_of(file).unwrap_or_default()
                    ),
                );
            }
        }
        let network = obj.network_settings(ctx, "network");
        let netdev = obj.settings(ctx, "netdev");
        let ipv4_subnet = obj.string(ctx, "ipv4Subnet").and_then(|s| {
            use crate::addressing::{ZONE_SUBNET_PREFIX_MAX, ZONE_SUBNET_PREFIX_MIN};
            crate::addressing::parse_ipv4_net(
                &s,
                "the subnet's",
                ZONE_SUBNET_PREFIX_MIN,
                ZONE_SUBNET_PREFIX_MAX,
            )
            .map_err(|e| ctx.err("ipv4Subnet", e))
            .ok()
        });
        let ipv6_subnet =
            obj.string(ctx, "ipv6Subnet")
                .and_then(|s| match s.parse::<ipnet::Ipv6Net>() {
                    Ok(n) if n.prefix_len() != 64 => {
                        ctx.err("ipv6Subnet", format!("{s:?}: the subnet must be a /64"));
                        None
                    }
                    Ok(n) if n.network() != n.addr() => {
                        ctx.err(
                            "ipv6Subnet",
                            format!(
                                "{s:?} is not a network address (its host bits are set; {} is)",
                                n.trunc()
                            ),
                        );
                        None
                    }
                    Ok(n) => Some(n),
                    Err(_) => {
                        ctx.err(
                            "ipv6Subnet",
                            format!("{s:?} is not an IPv6 CIDR like fd42:1:2:3::/64"),
                        );
                        None
                    }
                });
        if (ipv4_subnet.is_some() || ipv6_subnet.is_some())
            && crate::addressing::host_side_customised(network.as_ref())
        {
            ctx.err(
                if ipv4_subnet.is_some() {
                    "ipv4Subnet"
                } else {
                    "ipv6Subnet"
                },
                "network also sets the bridge's addresses (Network.Address or [Address]); use one or the other",
            );
        }
        for (field, message) in network
            .as_ref()
            .map(|n| check_link_identity(n, "network", false))
            .into_iter()
            .chain(
                netdev
                    .as_ref()
                    .map(|n| check_link_identity(n, "netdev", true)),
            )
            .flatten()
        {
            ctx.err(&field, message);
        }
        obj.finish(ctx);
        Some(Zone {
            version: SCHEMA_VERSION,
            name: name?,
            network,
            netdev,
            ipv4_subnet,
            ipv6_subnet,
        })
    })
}

/// The whole registry as loaded: valid entries plus every problem found.
#[derive(Debug, Default)]
pub struct Registry {
    /// Valid containers, sorted by name.
    pub containers: Vec<Entry>,
    /// Valid zones by name.
    pub zones: BTreeMap<String, Zone>,
    /// The closures next to `sharedNix = false` entries, by name (only those
    /// of the entry's system; see [`RegistryDir::closure`]).
    pub closures: BTreeMap<String, Vec<String>>,
    pub errors: Vec<EntryError>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.containers.iter().find(|e| e.name == name)
    }

    /// Every name that claims a derived address ([`crate::addressing::Claims`]):
    /// the stem of every container file, valid or not.
    pub fn claimant_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.containers.iter().map(|e| e.name.as_str()).collect();
        names.extend(self.errors.iter().filter_map(|e| {
            (e.file.parent() == Some(Path::new(paths::REGISTRY_DIR))
                && e.file.extension().is_some_and(|x| x == "json"))
            .then(|| e.file.file_stem().and_then(|s| s.to_str()))
            .flatten()
        }));
        names.sort_unstable();
        names.dedup();
        names
    }
}

#[path = "registry_read.rs"]
mod read;
pub use read::*;

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
