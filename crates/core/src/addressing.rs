//! Stable addresses for veth containers, known before the container boots.
//!
//! Every veth container gets a fixed address pair derived from its name:
//!
//! - IPv4: slot `s = SHA-256("nixos-nspawn:" + name)` (first 4 bytes, big
//!   endian) modulo the number of `/30` blocks in the pool (default
//!   [`DEFAULT_IPV4_POOL`], 16,384 blocks); the host side `ve-NAME` gets the
//!   block's first address, the container's `host0` the second, both `/30`.
//!   networkd's DHCP server stays on for guests that ignore the credential: in
//!   a `/30` its pool is exactly the container's address.
//! - IPv6: the host's ULA `/48` (RFC 4193; by default its 40-bit global ID is
//!   an HMAC-SHA-256 of `/etc/machine-id`, so the prefix is stable per host and
//!   does not reveal the machine ID) plus the slot as the 16-bit subnet ID:
//!   `PREFIX:s::1/64` on the host side, `PREFIX:s::2/64` in the container, and
//!   the `/64` advertised by router advertisements for SLAAC.
//!
//! The host side is rendered into the `ve-NAME` networkd file; the container
//! side travels as systemd credentials on nspawn's command line
//! ([`HOST0_DROPIN_CREDENTIAL`]: a drop-in the container profile installs for
//! its own `host0` network before networkd starts; [`HOST0_NETWORK_CREDENTIAL`]:
//! a complete `.network` file that systemd ≥ 256 guests install natively via
//! systemd-network-generator), so the guest has its address the moment networkd
//! sees the link, without waiting for a DHCP exchange.
//!
//! Overrides: `network.hostAddress`/`localAddress` (and `…6`) fix a pair (the
//! classic module's options; without a prefix they are a point-to-point pair,
//! so several containers may share one host address); they must lie outside the
//! derived pool. A `network.host` that sets `Network.Address` (or `[Address]`
//! sections) takes the host side over; when it gives exactly one IPv4 address
//! ([`host_given_ipv4`]) the container gets an address in that subnet derived
//! from its name ([`host_subnet_pair`], [`Origin::HostSubnet`]) by the same
//! credentials, and the DHCP server's pool is that address alone; anything
//! else gets networkd's DHCP, as before. The pool and prefix are host settings
//! (`/etc/nixos-nspawn/network.json`).
//!
//! Collisions: two names can hash to the same slot. Every registry file name
//! claims its slot (whatever its network mode, so editing one entry never moves
//! another); the name that sorts first keeps it, every later one falls back to a
//! pool address by DHCP and an error names both. The decision depends on the
//! set of file names only, so the generator and the bootstrap helper (which
//! renders its one container) agree without reading every entry.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::{Ipv4Net, Ipv6Net};
use sha2::{Digest, Sha256};

use crate::paths::Root;
use crate::registry::{Entry, NetworkMode, Zone};
use crate::EntryError;

/// Logical path of the host's addressing settings.
pub const HOST_NETWORK_FILE: &str = "/etc/nixos-nspawn/network.json";
/// Logical path of the host's machine ID (the default ULA prefix's seed).
pub const MACHINE_ID_FILE: &str = "/etc/machine-id";
/// The default pool of derived IPv4 pairs (mnemonic: RFC 108).
pub const DEFAULT_IPV4_POOL: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(10, 108, 0, 0), 16) {
    Ok(n) => n,
    Err(_) => panic!("valid"),
};
/// Pool sizes allowed: at most 2^16 blocks (one IPv6 subnet ID each), at least 4.
pub const POOL_PREFIX_MIN: u8 = 14;
pub const POOL_PREFIX_MAX: u8 = 28;
/// The default pool of zone subnets: 256 `/20`s.
pub const DEFAULT_ZONE_POOL: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(10, 112, 0, 0), 12) {
    Ok(n) => n,
    Err(_) => panic!("valid"),
};
/// The size of a derived zone subnet.
pub const ZONE_SUBNET_PREFIX: u8 = 20;
/// Zone pools allowed: 1 to 4,096 subnets of [`ZONE_SUBNET_PREFIX`].
pub const ZONE_POOL_PREFIX_MIN: u8 = 8;
pub const ZONE_POOL_PREFIX_MAX: u8 = ZONE_SUBNET_PREFIX;
/// A zone file's own subnet: at least 30 member addresses and 30 for DHCP.
pub const ZONE_SUBNET_PREFIX_MIN: u8 = 8;
pub const ZONE_SUBNET_PREFIX_MAX: u8 = 26;
/// Derived zone `/64`s take the subnet IDs from here up (veth containers
/// take `0 .. slots`, at most `0x8000` of them for a `/15` pool or smaller).
pub const ZONE_IPV6_SUBNET_BASE: u32 = 0x8000;

/// The credential the container profile turns into a drop-in for its `host0`
/// network (`/run/systemd/network/20-host0.network.d/50-nixos-nspawn.conf`).
pub const HOST0_DROPIN_CREDENTIAL: &str = "nixos-nspawn.host0";
/// The credential systemd-network-generator (systemd ≥ 256) installs as
/// `/run/systemd/network/70-nixos-nspawn-host0.network`: before systemd's
/// `80-container-host0.network`, after NixOS's `20-host0.network`.
pub const HOST0_NETWORK_CREDENTIAL: &str = "network.network.70-nixos-nspawn-host0";

/// An address pair of one family: the host side and the container side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair<A> {
    pub host: A,
    pub container: A,
    /// The prefix of both addresses; the family's full length (32, 128) is a
    /// point-to-point pair (`Address=` with `Peer=`).
    pub prefix_len: u8,
}

impl<A: Family> Pair<A> {
    /// Whether this is a point-to-point pair.
    pub fn is_peer(&self) -> bool {
        self.prefix_len == A::BITS
    }
    pub fn host_cidr(&self) -> String {
        format!("{}/{}", self.host, self.prefix_len)
    }
    pub fn container_cidr(&self) -> String {
        format!("{}/{}", self.container, self.prefix_len)
    }
}

/// The two address families, for [`Pair`].
pub trait Family: Copy + PartialEq + std::fmt::Display + std::str::FromStr {
    const BITS: u8;
    const NAME: &'static str;
    fn to_bits(self) -> u128;
}
impl Family for Ipv4Addr {
    const BITS: u8 = 32;
    const NAME: &'static str = "IPv4";
    fn to_bits(self) -> u128 {
        u32::from(self).into()
    }
}
impl Family for Ipv6Addr {
    const BITS: u8 = 128;
    const NAME: &'static str = "IPv6";
    fn to_bits(self) -> u128 {
        u128::from(self)
    }
}

/// Parse one side of a fixed pair: an address, optionally with a prefix length.
fn parse_side<A: Family>(s: &str) -> Result<(A, Option<u8>), String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let a: A = addr
        .parse()
        .map_err(|_| format!("{s:?} is not an {} address", A::NAME))?;
    let len = match len {
        None => None,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= A::BITS && !l.starts_with('+') => Some(n),
            _ => return Err(format!("{s:?} has an invalid prefix length {l:?}")),
        },
    };
    Ok((a, len))
}

fn masked<A: Family>(a: A, len: u8) -> u128 {
    let shift = u32::from(A::BITS - len);
    if shift >= 128 {
        0
    } else {
        (a.to_bits() >> shift) << shift
    }
}

/// Parse and check a fixed pair (`network.hostAddress` + `network.localAddress`,
/// or the `…6` fields): both without a prefix (a point-to-point pair) or both
/// with the same prefix, in the same subnet; different addresses.
pub fn parse_pair<A: Family>(host: &str, local: &str) -> Result<Pair<A>, String> {
    let (h, hl) = parse_side::<A>(host)?;
    let (l, ll) = parse_side::<A>(local)?;
    let prefix_len = match (hl, ll) {
        (None, None) => A::BITS,
        (Some(a), Some(b)) if a == b => {
            if a > A::BITS - 2 {
                return Err(format!(
                    "/{a} leaves no room for two addresses in one subnet; give both without a prefix for a point-to-point pair"
                ));
            }
            if masked(h, a) != masked(l, a) {
                return Err(format!(
                    "{host:?} and {local:?} are not in the same /{a} subnet"
                ));
            }
            a
        }
        _ => {
            return Err(format!(
                "{host:?} and {local:?}: give both addresses with the same prefix length, or both without one (a point-to-point pair)"
            ))
        }
    };
    if h == l {
        return Err(format!("the host and container addresses are both {h}"));
    }
    Ok(Pair {
        host: h,
        container: l,
        prefix_len,
    })
}

/// The host's addressing settings (`/etc/nixos-nspawn/network.json`, defaults
/// when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNetwork {
    pub ipv4_pool: Ipv4Net,
    /// The ULA (or other) `/48` the per-container `/64`s are taken from;
    /// `None`: no derived IPv6.
    pub ipv6_prefix: Option<Ipv6Net>,
    /// Where zone subnets ([`ZONE_SUBNET_PREFIX`]) are derived from.
    pub zone_pool: Ipv4Net,
}

/// The IPv6 setting of the host file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Setting {
    /// Absent or `null`: the ULA derived from `/etc/machine-id`.
    Derived,
    /// `false`: no derived IPv6.
    Off,
    Prefix(Ipv6Net),
}

/// Number of `/30` blocks in a pool.
pub fn slots(pool: Ipv4Net) -> u32 {
    1u32 << (30 - pool.prefix_len())
}

/// The 32-bit hash a name's slot is taken from.
pub fn name_hash(name: &str) -> u32 {
    let mut h = Sha256::new();
    h.update(b"nixos-nspawn:");
    h.update(name.as_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// The slot of `name` in `pool`.
pub fn slot(name: &str, pool: Ipv4Net) -> u32 {
    name_hash(name) % slots(pool)
}

/// HMAC-SHA-256 (RFC 2104) of `msg` with a key of at most 64 bytes.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The ULA `/48` of a host: `fd` and a 40-bit global ID, the first five bytes
/// of HMAC-SHA-256(machine ID, "nixos-nspawn ULA"), as systemd derives
/// application-specific IDs (sd_id128_get_machine_app_specific(3)) so the
/// machine ID itself is not exposed. `None` when `machine_id` is not 32 hex
/// digits.
pub fn ula_from_machine_id(machine_id: &str) -> Option<Ipv6Net> {
    let hex = machine_id.trim();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let key: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    if key.iter().all(|b| *b == 0) {
        return None;
    }
    let mac = hmac_sha256(&key, b"nixos-nspawn ULA");
    let mut bytes = [0u8; 16];
    bytes[0] = 0xfd;
    bytes[1..6].copy_from_slice(&mac[..5]);
    Ipv6Net::new(Ipv6Addr::from(bytes), 48).ok()
}

impl HostNetwork {
    /// The settings with the ULA of `machine_id` (read by the caller).
    pub fn resolve(pool: Ipv4Net, v6: Ipv6Setting, machine_id: Option<&str>) -> HostNetwork {
        let ipv6_prefix = match v6 {
            Ipv6Setting::Off => None,
            Ipv6Setting::Prefix(p) => Some(p),
            Ipv6Setting::Derived => machine_id.and_then(ula_from_machine_id),
        };
        HostNetwork {
            ipv4_pool: pool,
            ipv6_prefix,
            zone_pool: DEFAULT_ZONE_POOL,
        }
    }

    /// The derived pair of IPv4 slot `s`.
    pub fn ipv4_pair(&self, s: u32) -> Pair<Ipv4Addr> {
        let base = u32::from(self.ipv4_pool.network()) + 4 * s;
        Pair {
            host: Ipv4Addr::from(base + 1),
            container: Ipv4Addr::from(base + 2),
            prefix_len: 30,
        }
    }

    /// The derived IPv6 pair of slot `s` (`PREFIX:s::1/64`, `PREFIX:s::2/64`).
    pub fn ipv6_pair(&self, s: u32) -> Option<Pair<Ipv6Addr>> {
        let p = self.ipv6_prefix?;
        let net = u128::from(p.network()) | ((s as u128 & 0xffff) << 64);
        Some(Pair {
            host: Ipv6Addr::from(net | 1),
            container: Ipv6Addr::from(net | 2),
            prefix_len: 64,
        })
    }
}

/// Read the host's settings under `root`: the file if present (its problems
/// are returned; the caller then derives nothing), and `/etc/machine-id`.
pub fn load_host_network(root: &Root) -> Result<HostNetwork, Vec<EntryError>> {
    let file = Path::new(HOST_NETWORK_FILE);
    let (pool, v6, zone_pool) = match std::fs::symlink_metadata(root.join(file)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (DEFAULT_IPV4_POOL, Ipv6Setting::Derived, DEFAULT_ZONE_POOL)
        }
        _ => crate::registry::load_file(root, file, crate::registry::parse_host_network)
            .map_err(|mut errs| {
                errs.push(EntryError::file(
                    file,
                    "is invalid, so no addresses are derived: veth containers and zone members get pool addresses by DHCP until it is fixed",
                ));
                errs
            })?,
    };
    let machine_id = if v6 == Ipv6Setting::Derived {
        std::fs::read_to_string(root.join(MACHINE_ID_FILE)).ok()
    } else {
        None
    };
    Ok(HostNetwork {
        zone_pool,
        ..HostNetwork::resolve(pool, v6, machine_id.as_deref())
    })
}

/// Parse an IPv4 network (`what`: "the pool's", for the messages) whose
/// prefix length lies in `min..=max`.
pub fn parse_ipv4_net(s: &str, what: &str, min: u8, max: u8) -> Result<Ipv4Net, String> {
    match s.parse::<Ipv4Net>() {
        Ok(n) if n.network() != n.addr() => Err(format!(
            "{s:?} is not a network address (its host bits are set; {} is)",
            n.trunc()
        )),
        Ok(n) if !(min..=max).contains(&n.prefix_len()) => Err(format!(
            "{s:?}: {what} prefix length must be /{min} to /{max}"
        )),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not an IPv4 CIDR like 10.108.0.0/16")),
    }
}

/// Which name holds each slot: every registry file name claims the slot of
/// its name; the first in sorted order keeps it.
#[derive(Debug, Default, Clone)]
pub struct Claims {
    pool: Option<Ipv4Net>,
    first: HashMap<u32, String>,
}

impl Claims {
    /// From the registry's container names (in any order). Names that are not
    /// valid machine names claim nothing.
    pub fn new<'a>(pool: Ipv4Net, names: impl IntoIterator<Item = &'a str>) -> Claims {
        let mut sorted: Vec<&str> = names.into_iter().collect();
        sorted.sort_unstable();
        let mut first = HashMap::with_capacity(sorted.len());
        for n in sorted {
            if crate::names::check_machine_name(n).is_ok() {
                first.entry(slot(n, pool)).or_insert_with(|| n.to_owned());
            }
        }
        Claims {
            pool: Some(pool),
            first,
        }
    }

    /// The claims of the registry under `root` (file names only, nothing parsed).
    pub fn of_registry(root: &Root, pool: Ipv4Net) -> Result<Claims, EntryError> {
        let names = crate::registry::container_names(root)?;
        Ok(Claims::new(pool, names.iter().map(String::as_str)))
    }

    /// The name that holds `name`'s slot when it is another one.
    pub fn taken_by(&self, name: &str) -> Option<&str> {
        let pool = self.pool?;
        self.first
            .get(&slot(name, pool))
            .map(String::as_str)
            .filter(|n| *n != name)
    }
}

/// How a veth container's link is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// Not a veth container: nothing to assign.
    NotVeth,
    /// networkd's pool (`Address=0.0.0.0/28`) and DHCP, systemd's default:
    /// `network.host` sets the host side's addresses, the host's settings file
    /// is invalid (reported on its own), or `collision` (the error to report).
    Pool { collision: Option<String> },
    /// Fixed addresses, known before the container starts.
    Static(Addresses),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    pub ipv4: Option<Pair<Ipv4Addr>>,
    pub ipv6: Option<Pair<Ipv6Addr>>,
    pub origin: Origin,
}

/// Where a container's fixed addresses come from, which decides what else the
/// host side runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `network.hostAddress`/`localAddress` (`…6`): no DHCP server, no RA.
    Given,
    /// Derived from the name, in the pool or a zone: DHCP server and RA
    /// prefix on.
    Derived,
    /// The container side derived from the name in the subnet of the one IPv4
    /// address `network.host` gives the host side ([`host_subnet_pair`]): the
    /// host side's addresses are the admin's; our DHCP server's pool is the
    /// container's address alone, at this offset in the subnet (`None`: a
    /// `/31`, where networkd's DHCP server cannot run, so it is off).
    HostSubnet { dhcp_offset: Option<u32> },
}

impl Addresses {
    /// Whether the host side runs a DHCP server for the container (its lease
    /// brings DNS and is for the container's own address).
    pub fn dhcp_server(&self) -> bool {
        match self.origin {
            Origin::Given => false,
            Origin::Derived => true,
            Origin::HostSubnet { dhcp_offset } => dhcp_offset.is_some(),
        }
    }
}

/// Whether `network.host` takes the host side's addresses over.
pub fn host_side_customised(host: Option<&crate::settings::Settings>) -> bool {
    use crate::settings::SectionBody;
    host.is_some_and(|s| {
        s.sections.iter().any(|(name, body)| match body {
            SectionBody::Single(keys) if name == "Network" => {
                keys.iter().any(|(k, _)| k == "Address")
            }
            _ => name == "Address",
        })
    })
}

/// `[Address]` keys that leave an address an ordinary address of its subnet.
const PLAIN_ADDRESS_KEYS: &[&str] = &[
    "Address",
    "Label",
    "RouteMetric",
    "DuplicateAddressDetection",
];

/// The host side's one IPv4 address with its prefix, when `network.host` gives
/// exactly one that can be read: from `[Network] Address=` (the values after
/// the last `""`, which resets the list) and from `[Address]` sections (with no
/// key but [`PLAIN_ADDRESS_KEYS`]: no `Peer=`, no `Scope=`, …). IPv6 addresses
/// are left aside. `None` for anything else: no IPv4 address or several, a
/// value that is not an address with a prefix length, `0.0.0.0/N` (a pool
/// networkd picks from), an `[Address]` section with other keys, or DHCP
/// server settings of the admin's that decide what is handed out (`[Network]
/// DHCPServer=` other than yes, `[DHCPServer]` `PoolOffset=`, `PoolSize=` or
/// `ServerAddress=`, `[DHCPServerStaticLease]`): theirs win, as before.
pub fn host_given_ipv4(host: &crate::settings::Settings) -> Option<Ipv4Net> {
    use crate::settings::{Scalar, SectionBody};
    let mut v4 = Vec::new();
    // The IPv4 addresses among `vals`; `None`: one cannot be read.
    fn take(vals: &[Scalar], out: &mut Vec<Ipv4Net>) -> Option<()> {
        let empty = Scalar::Str(String::new());
        let start = vals.iter().rposition(|v| *v == empty).map_or(0, |i| i + 1);
        for v in &vals[start..] {
            let Scalar::Str(s) = v else { return None };
            if let Ok(n) = s.parse::<Ipv4Net>() {
                if n.addr().is_unspecified() {
                    return None;
                }
                out.push(n);
            } else if s.parse::<Ipv6Net>().is_err() {
                return None;
            }
        }
        Some(())
    }
    // One `[Address]` section.
    fn section<'a>(
        keys: impl Iterator<Item = (&'a str, &'a [Scalar])>,
        out: &mut Vec<Ipv4Net>,
    ) -> Option<()> {
        let mut found = Vec::new();
        let mut plain = true;
        for (k, vals) in keys {
            if k == "Address" {
                if vals.len() != 1 {
                    return None;
                }
                take(vals, &mut found)?;
            } else if !PLAIN_ADDRESS_KEYS.contains(&k) {
                plain = false;
            }
        }
        if !found.is_empty() && !plain {
            return None;
        }
        out.extend(found);
        Some(())
    }
    let yes = |v: &Scalar| match v {
        Scalar::Bool(b) => *b,
        Scalar::Str(s) => matches!(s.as_str(), "yes" | "true" | "on" | "1"),
        Scalar::Num(_) => false,
    };
    for (name, body) in &host.sections {
        match (name.as_str(), body) {
            ("Network", SectionBody::Single(keys)) => {
                for (k, vals) in keys {
                    match (k.as_str(), vals) {
                        ("Address", Some(vals)) => take(vals, &mut v4)?,
                        ("DHCPServer", Some(vals)) if vals.len() == 1 && yes(&vals[0]) => {}
                        ("DHCPServer", _) => return None,
                        _ => {}
                    }
                }
            }
            ("Address", SectionBody::Single(keys)) => section(
                keys.iter()
                    .filter_map(|(k, v)| v.as_deref().map(|v| (k.as_str(), v))),
                &mut v4,
            )?,
            ("Address", SectionBody::Repeated(list)) => {
                for keys in list {
                    section(
                        keys.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
                        &mut v4,
                    )?;
                }
            }
            ("DHCPServer", SectionBody::Single(keys))
                if keys.iter().any(|(k, _)| {
                    matches!(k.as_str(), "PoolOffset" | "PoolSize" | "ServerAddress")
                }) =>
            {
                return None
            }
            ("Network" | "DHCPServer", SectionBody::Repeated(_)) | ("DHCPServerStaticLease", _) => {
                return None
            }
            _ => {}
        }
    }
    match v4[..] {
        [one] => Some(one),
        _ => None,
    }
}

/// The container's address in the subnet of the host side's address `host`
/// (the one [`host_given_ipv4`] found), derived from `name`: the
/// `(hash mod free)`-th of the subnet's usable addresses without the host's
/// own (the same 32-bit [`name_hash`] as a veth slot; usable: all but the
/// network and broadcast address, both in a `/31`, RFC 3021), so a `/30`
/// gives the other usable address. With the DHCP pool's offset (the same host
/// number; `None` for a `/31`). `None` when no address is left (`/32`).
pub fn host_subnet_pair(name: &str, host: Ipv4Net) -> Option<(Pair<Ipv4Addr>, Option<u32>)> {
    let len = host.prefix_len();
    let size = 1u64 << (32 - u32::from(len));
    let (first, count) = match len {
        32 => return None,
        31 => (0, 2),
        _ => (1, size - 2),
    };
    let net = u64::from(u32::from(host.network()));
    let h = u64::from(u32::from(host.addr())) - net;
    let taken = (first..first + count).contains(&h);
    let free = count - u64::from(taken);
    if free == 0 {
        return None;
    }
    let mut n = first + u64::from(name_hash(name)) % free;
    if taken && n >= h {
        n += 1;
    }
    let container = Ipv4Addr::from(u32::try_from(net + n).expect("inside the subnet"));
    let offset = (len <= 30).then(|| u32::try_from(n).expect("inside the subnet"));
    Some((
        Pair {
            host: host.addr(),
            container,
            prefix_len: len,
        },
        offset,
    ))
}

/// The addresses of a veth container whose `network.host` gives the host side
/// one IPv4 address (see [`host_given_ipv4`]); `None`: DHCP, as before.
fn in_host_subnet(entry: &Entry) -> Option<Addresses> {
    let host = host_given_ipv4(entry.network.host.as_ref()?)?;
    let (pair, dhcp_offset) = host_subnet_pair(&entry.name, host)?;
    Some(Addresses {
        ipv4: Some(pair),
        ipv6: None,
        origin: Origin::HostSubnet { dhcp_offset },
    })
}

/// What `entry` gets, given the host's settings (`Err`: the settings file is
/// bad, reported elsewhere) and the registry's claims. `Err` for an entry whose
/// fixed addresses are not usable on this host (it is not rendered).
pub fn assign(
    entry: &Entry,
    host: Result<&HostNetwork, ()>,
    claims: &Claims,
) -> Result<Assignment, String> {
    if entry.network.mode != NetworkMode::Veth {
        return Ok(Assignment::NotVeth);
    }
    let net = &entry.network;
    let fixed4 = match (&net.host_address, &net.local_address) {
        (Some(h), Some(l)) => Some(parse_pair::<Ipv4Addr>(h, l)?),
        _ => None,
    };
    let fixed6 = match (&net.host_address6, &net.local_address6) {
        (Some(h), Some(l)) => Some(parse_pair::<Ipv6Addr>(h, l)?),
        _ => None,
    };
    if fixed4.is_some() || fixed6.is_some() {
        if let Ok(host) = host {
            if let Some(p) = &fixed4 {
                for (field, a) in [("hostAddress", p.host), ("localAddress", p.container)] {
                    if host.ipv4_pool.contains(&a) {
                        return Err(format!(
                            "network.{field} {a} lies in the pool of derived addresses {} ({HOST_NETWORK_FILE}, ipv4Pool): choose an address outside it",
                            host.ipv4_pool
                        ));
                    }
                }
            }
            if let (Some(p), Some(prefix)) = (&fixed6, host.ipv6_prefix) {
                for (field, a) in [("hostAddress6", p.host), ("localAddress6", p.container)] {
                    if prefix.contains(&a) {
                        return Err(format!(
                            "network.{field} {a} lies in the prefix of derived addresses {prefix}: choose an address outside it"
                        ));
                    }
                }
            }
        }
        return Ok(Assignment::Static(Addresses {
            ipv4: fixed4,
            ipv6: fixed6,
            origin: Origin::Given,
        }));
    }
    if host_side_customised(entry.network.host.as_ref()) {
        // Independent of the host's settings file and of the claims: the
        // subnet is the admin's, on this one link.
        return Ok(match in_host_subnet(entry) {
            Some(a) => Assignment::Static(a),
            None => Assignment::Pool { collision: None },
        });
    }
    let Ok(host) = host else {
        return Ok(Assignment::Pool { collision: None });
    };
    if let Some(other) = claims.taken_by(&entry.name) {
        let s = slot(&entry.name, host.ipv4_pool);
        return Ok(Assignment::Pool {
            collision: Some(collision_message(&entry.name, other, host, s)),
        });
    }
    let s = slot(&entry.name, host.ipv4_pool);
    Ok(Assignment::Static(Addresses {
        ipv4: Some(host.ipv4_pair(s)),
        ipv6: host.ipv6_pair(s),
        origin: Origin::Derived,
    }))
}

/// The error for a collision: both names, the address, the fix.
pub fn collision_message(name: &str, holder: &str, host: &HostNetwork, s: u32) -> String {
    let pair = host.ipv4_pair(s);
    format!(
        "containers {holder:?} and {name:?} derive the same address block {}/30 from their names; \
         {holder:?} keeps it and {name:?} gets a pool address by DHCP (slower to start, not stable) \
         until one of them is renamed or given fixed addresses (network.hostAddress and \
         network.localAddress, outside {})",
        Ipv4Addr::from(u32::from(pair.host) - 1),
        host.ipv4_pool
    )
}

/// Every collision in a registry: `(later name, its registry file, message)`,
/// for `status`, `apply` and the generator's log.
pub fn collisions<'a>(
    host: &HostNetwork,
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, String)> {
    let mut sorted: Vec<&str> = names.into_iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut first: HashMap<u32, &str> = HashMap::new();
    let mut out = Vec::new();
    for n in sorted {
        if crate::names::check_machine_name(n).is_err() {
            continue;
        }
        let s = slot(n, host.ipv4_pool);
        match first.get(&s) {
            Some(holder) => out.push((n.to_owned(), collision_message(n, holder, host, s))),
            None => {
                first.insert(s, n);
            }
        }
    }
    out
}

/// A zone's subnets: the bridge `vz-ZONE` takes the first address of each,
/// members the lower half of the IPv4 subnet (and the same host numbers in
/// the `/64`), networkd's DHCP server the upper half (for guests that ignore
/// the credential), so a DHCP lease never takes a member's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneNet {
    pub ipv4: Ipv4Net,
    pub ipv6: Option<Ipv6Net>,
}

impl ZoneNet {
    fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.ipv4.prefix_len()))
    }
    /// The bridge's IPv4 address (the subnet's first).
    pub fn bridge4(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.ipv4.network()) + 1)
    }
    /// The bridge's IPv6 address (`…::1`).
    pub fn bridge6(&self) -> Option<Ipv6Addr> {
        self.ipv6
            .map(|n| Ipv6Addr::from(u128::from(n.network()) | 1))
    }
    /// How many member addresses there are (host numbers `2 .. size/2`).
    pub fn member_slots(&self) -> u32 {
        self.size() / 2 - 2
    }
    /// The member slot of container `name`.
    pub fn member_slot(&self, name: &str) -> u32 {
        name_hash(name) % self.member_slots()
    }
    /// The DHCP server's pool: `(PoolOffset, PoolSize)`, the upper half
    /// without the broadcast address.
    pub fn dhcp_pool(&self) -> (u32, u32) {
        (self.size() / 2, self.size() / 2 - 1)
    }
    /// The addresses of member slot `i`: the member as the container side,
    /// the bridge as the host side (the gateway).
    pub fn member(&self, i: u32) -> Addresses {
        let host_number = 2 + i;
        Addresses {
            ipv4: Some(Pair {
                host: self.bridge4(),
                container: Ipv4Addr::from(u32::from(self.ipv4.network()) + host_number),
                prefix_len: self.ipv4.prefix_len(),
            }),
            ipv6: self.ipv6.map(|n| Pair {
                host: Ipv6Addr::from(u128::from(n.network()) | 1),
                container: Ipv6Addr::from(u128::from(n.network()) | u128::from(host_number)),
                prefix_len: 64,
            }),
            origin: Origin::Derived,
        }
    }
}

/// How a zone's bridge is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneAssignment {
    /// networkd's pool (`Address=0.0.0.0/24`) and DHCP, systemd's default:
    /// the zone file's `network` sets the bridge's addresses, the host's
    /// settings file is invalid, or a problem (reported by [`ZonePlan::errors`]).
    Pool,
    /// Fixed subnets, derived (or from the zone file).
    Static(ZoneNet),
}

/// The addresses of every zone and zone member, decided together: every zone
/// name (declared or used by a container) claims the subnet of its name in
/// the zone pool, the first in sorted order keeps it; within a zone every
/// member claims the slot of its name, the first keeps it. Only the generator
/// decides this (it sees every entry; the member addresses travel in the
/// service drop-in it writes, which the bootstrap helper does not render).
#[derive(Debug, Default, Clone)]
pub struct ZonePlan {
    zones: BTreeMap<String, ZoneAssignment>,
    /// Member name → its addresses, or the collision to report.
    members: HashMap<String, Result<Addresses, String>>,
    errors: Vec<(String, String)>,
}

/// Number of derived zone subnets in a zone pool.
pub fn zone_slots(zone_pool: Ipv4Net) -> u32 {
    1u32 << (ZONE_SUBNET_PREFIX - zone_pool.prefix_len())
}

/// The derived subnets of zone slot `z`.
pub fn zone_net(host: &HostNetwork, z: u32) -> ZoneNet {
    let base = u32::from(host.zone_pool.network()) + (z << (32 - u32::from(ZONE_SUBNET_PREFIX)));
    let ipv4 = Ipv4Net::new(Ipv4Addr::from(base), ZONE_SUBNET_PREFIX).expect("valid prefix");
    // Zone /64s sit above every veth container's (0 .. slots): none for a
    // pool of more than 0x8000 blocks.
    let ipv6 = host
        .ipv6_prefix
        .filter(|_| slots(host.ipv4_pool) <= ZONE_IPV6_SUBNET_BASE)
        .map(|p| {
            let id = u128::from(ZONE_IPV6_SUBNET_BASE + z) & 0xffff;
            Ipv6Net::new(Ipv6Addr::from(u128::from(p.network()) | (id << 64)), 64)
                .expect("valid prefix")
        });
    ZoneNet { ipv4, ipv6 }
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl ZonePlan {
    /// Decide the zones and their members: `declared` are the parsed zone
    /// files, `members` (container name, zone name) every zone member (their
    /// zones are used, declared or not).
    pub fn new<'a>(
        host: Result<&HostNetwork, ()>,
        declared: impl IntoIterator<Item = &'a Zone>,
        members: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> ZonePlan {
        let mut plan = ZonePlan::default();
        let Ok(host) = host else {
            return plan;
        };
        let mut members: Vec<(&str, &str)> = members.into_iter().collect();
        members.sort_unstable();
        members.dedup();
        let declared: BTreeMap<&str, &Zone> =
            declared.into_iter().map(|z| (z.name.as_str(), z)).collect();
        let mut names: Vec<&str> = declared
            .keys()
            .copied()
            .chain(members.iter().map(|(_, z)| *z))
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut holders: HashMap<u32, &str> = HashMap::new();
        for name in names {
            if crate::names::check_zone_name(name).is_err() {
                continue;
            }
            let file = crate::paths::zone_file(name).display().to_string();
            let z = name_hash(name) % zone_slots(host.zone_pool);
            let holder = *holders.entry(z).or_insert(name);
            let zone = declared.get(name).copied();
            if zone.is_some_and(|z| host_side_customised(z.network.as_ref())) {
                plan.zones.insert(name.to_owned(), ZoneAssignment::Pool);
                continue;
            }
            let derived = (holder == name).then(|| zone_net(host, z));
            let ipv4 = match zone.and_then(|z| z.ipv4_subnet) {
                Some(own) => {
                    if let Some(pool) = [host.ipv4_pool, host.zone_pool]
                        .into_iter()
                        .find(|p| overlaps(*p, own))
                    {
                        plan.errors.push((
                            file,
                            format!(
                                "ipv4Subnet {own} overlaps the pool of derived addresses {pool} \
                                 ({HOST_NETWORK_FILE}): choose a subnet outside it; until then \
                                 the zone gets a pool subnet by DHCP"
                            ),
                        ));
                        plan.zones.insert(name.to_owned(), ZoneAssignment::Pool);
                        continue;
                    }
                    Some(own)
                }
                None => derived.map(|d| d.ipv4),
            };
            let Some(ipv4) = ipv4 else {
                let d = zone_net(host, z);
                plan.errors.push((
                    file,
                    format!(
                        "zones {holder:?} and {name:?} derive the same subnet {} from their \
                         names; {holder:?} keeps it and {name:?} gets a pool subnet and its members get \
                         addresses by DHCP (slower to start, not stable) until one of them is \
                         renamed or given its own subnet (ipv4Subnet in its zone file, outside {})",
                        d.ipv4, host.zone_pool
                    ),
                ));
                plan.zones.insert(name.to_owned(), ZoneAssignment::Pool);
                continue;
            };
            let ipv6 = match zone.and_then(|z| z.ipv6_subnet) {
                Some(own) if host.ipv6_prefix.is_some_and(|p| p.contains(&own)) => {
                    plan.errors.push((
                        file,
                        format!(
                            "ipv6Subnet {own} lies in the prefix of derived addresses {}: \
                             choose a subnet outside it; until then the zone has no fixed IPv6 subnet",
                            host.ipv6_prefix.expect("checked")
                        ),
                    ));
                    None
                }
                Some(own) => Some(own),
                None => derived.and_then(|d| d.ipv6),
            };
            plan.zones.insert(
                name.to_owned(),
                ZoneAssignment::Static(ZoneNet { ipv4, ipv6 }),
            );
        }
        let mut taken: HashMap<(&str, u32), &str> = HashMap::new();
        for (member, zone) in members {
            let Some(ZoneAssignment::Static(net)) = plan.zones.get(zone) else {
                continue;
            };
            let i = net.member_slot(member);
            let holder = *taken.entry((zone, i)).or_insert(member);
            let addresses = if holder == member {
                Ok(net.member(i))
            } else {
                let a = net.member(i).ipv4.expect("IPv4 always").container;
                Err(format!(
                    "containers {holder:?} and {member:?} of zone {zone:?} derive the same \
                     address {a} from their names; {holder:?} keeps it and {member:?} gets an \
                     address by DHCP from the bridge (slower to start, not stable) until one of \
                     them is renamed"
                ))
            };
            plan.members.insert(member.to_owned(), addresses);
        }
        plan
    }

    /// How zone `name`'s bridge is addressed.
    pub fn zone(&self, name: &str) -> ZoneAssignment {
        self.zones
            .get(name)
            .cloned()
            .unwrap_or(ZoneAssignment::Pool)
    }

    /// How `entry` is addressed when it is a zone member: its derived
    /// addresses, or DHCP from the bridge (with the collision, if any).
    pub fn member(&self, entry: &Entry) -> Assignment {
        match self.members.get(&entry.name) {
            Some(Ok(a)) if entry.network.mode == NetworkMode::Zone => Assignment::Static(a.clone()),
            Some(Err(why)) => Assignment::Pool {
                collision: Some(why.clone()),
            },
            _ => Assignment::Pool { collision: None },
        }
    }

    /// The zones' problems: (zone file, message), by zone name.
    pub fn errors(&self) -> impl Iterator<Item = EntryError> + '_ {
        self.errors
            .iter()
            .map(|(file, why)| EntryError::file(Path::new(file), why.clone()))
    }
}

/// systemd-nspawn's `--set-credential=ID:VALUE` takes C escapes: write `text`
/// so it unescapes to itself.
pub fn escape_credential(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostNetwork {
        HostNetwork {
            ipv4_pool: DEFAULT_IPV4_POOL,
            ipv6_prefix: Some("fd12:3456:789a::/48".parse().unwrap()),
            zone_pool: DEFAULT_ZONE_POOL,
        }
    }

    #[test]
    fn slots_are_stable_and_in_the_pool() {
        let h = host();
        // Fixed values: changing the hash or the layout changes every
        // container's address, which must never happen by accident.
        // Cross-checked with Python's hashlib.
        assert_eq!(name_hash("web"), 0x6b8d_7c5e);
        let s = slot("web", h.ipv4_pool);
        assert_eq!(s, 15454);
        assert_eq!(h.ipv4_pair(s).host_cidr(), "10.108.241.121/30");
        assert_eq!(h.ipv4_pair(s).container_cidr(), "10.108.241.122/30");
        assert!(s < 16384);
        let p = h.ipv4_pair(s);
        assert!(h.ipv4_pool.contains(&p.host) && h.ipv4_pool.contains(&p.container));
        assert_eq!(u32::from(p.container), u32::from(p.host) + 1);
        assert_eq!(u32::from(p.host) % 4, 1);
        let v6 = h.ipv6_pair(s).unwrap();
        assert_eq!(v6.host.segments()[3], s as u16);
        assert_eq!(v6.host.segments()[7], 1);
        assert_eq!(v6.container.segments()[7], 2);
        assert_eq!(slots("10.0.0.0/14".parse().unwrap()), 65536);
    }

    #[test]
    fn ula_is_fd_and_depends_on_the_machine_id() {
        let a = ula_from_machine_id("0123456789abcdef0123456789abcdef\n").unwrap();
        let b = ula_from_machine_id("0123456789abcdef0123456789abcdee").unwrap();
        assert_eq!(a.prefix_len(), 48);
        assert_eq!(a.network().segments()[0] >> 8, 0xfd);
        assert_ne!(a, b);
        assert_eq!(ula_from_machine_id("uninitialized"), None);
        assert_eq!(ula_from_machine_id(&"0".repeat(32)), None);
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn fixed_pairs() {
        let p = parse_pair::<Ipv4Addr>("10.231.136.1", "10.231.136.2").unwrap();
        assert!(p.is_peer());
        assert_eq!(p.host_cidr(), "10.231.136.1/32");
        let p = parse_pair::<Ipv4Addr>("192.168.7.1/24", "192.168.7.9/24").unwrap();
        assert_eq!(p.prefix_len, 24);
        for (h, l, needle) in [
            ("10.0.0.1/24", "10.0.1.2/24", "not in the same /24"),
            ("10.0.0.1/24", "10.0.0.2", "same prefix length"),
            ("10.0.0.1", "10.0.0.1", "both 10.0.0.1"),
            ("10.0.0.1/31", "10.0.0.0/31", "no room"),
            ("fd00::1", "10.0.0.2", "not an IPv4 address"),
            ("10.0.0.1/33", "10.0.0.2/33", "invalid prefix length"),
        ] {
            let e = parse_pair::<Ipv4Addr>(h, l).unwrap_err();
            assert!(e.contains(needle), "{h} {l}: {e}");
        }
        let p = parse_pair::<Ipv6Addr>("fd00:1::1", "fd00:1::2").unwrap();
        assert_eq!(p.prefix_len, 128);
    }

    #[test]
    fn collisions_keep_the_first_name() {
        let h = host();
        // Find two names with the same slot.
        let mut seen = HashMap::new();
        let mut pair = None;
        for i in 0..100_000 {
            let n = format!("c{i}");
            if let Some(prev) = seen.insert(slot(&n, h.ipv4_pool), n.clone()) {
                pair = Some((prev, n));
                break;
            }
        }
        let (a, b) = pair.expect("a collision among 100,000 names in 16,384 slots");
        let mut names = [a.as_str(), b.as_str()];
        names.sort();
        let claims = Claims::new(h.ipv4_pool, names);
        assert_eq!(claims.taken_by(names[0]), None);
        assert_eq!(claims.taken_by(names[1]), Some(names[0]));
        let found = collisions(&h, names);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, names[1]);
        assert!(found[0]
            .1
            .contains(&format!("{:?} and {:?}", names[0], names[1])));
        let mut e = Entry::new(names[1], "/nix/store/x");
        assert!(matches!(
            assign(&e, Ok(&h), &claims).unwrap(),
            Assignment::Pool { collision: Some(_) }
        ));
        e.name = names[0].to_owned();
        assert!(matches!(
            assign(&e, Ok(&h), &claims).unwrap(),
            Assignment::Static(Addresses {
                origin: Origin::Derived,
                ..
            })
        ));
    }

    #[test]
    fn assignment_rules() {
        let h = host();
        let claims = Claims::new(h.ipv4_pool, ["web"]);
        let mut e = Entry::new("web", "/nix/store/x");
        let Assignment::Static(a) = assign(&e, Ok(&h), &claims).unwrap() else {
            panic!()
        };
        assert!(a.origin == Origin::Derived && a.ipv4.is_some() && a.ipv6.is_some());
        // A bad host file: no derivation.
        assert_eq!(
            assign(&e, Err(()), &claims).unwrap(),
            Assignment::Pool { collision: None }
        );
        // Fixed addresses inside the pool are refused, outside accepted.
        e.network.host_address = Some("10.108.0.1".into());
        e.network.local_address = Some("10.108.0.2".into());
        assert!(assign(&e, Ok(&h), &claims)
            .unwrap_err()
            .contains("lies in the pool"));
        e.network.host_address = Some("10.231.136.1".into());
        e.network.local_address = Some("10.231.136.2".into());
        let Assignment::Static(a) = assign(&e, Ok(&h), &claims).unwrap() else {
            panic!()
        };
        assert!(a.origin == Origin::Given && a.ipv6.is_none());
        // network.host's Address takes the host side over; the container
        // gets an address in its subnet, whatever the host file and claims.
        let mut e = Entry::new("web", "/nix/store/x");
        e.network.host = Some(
            crate::settings::Settings::default()
                .single("Network", &[("Address", &["10.77.0.1/24"])]),
        );
        let want = Assignment::Static(Addresses {
            ipv4: Some(parse_pair("10.77.0.1/24", "10.77.0.72/24").unwrap()),
            ipv6: None,
            origin: Origin::HostSubnet {
                dhcp_offset: Some(72),
            },
        });
        assert_eq!(assign(&e, Ok(&h), &claims).unwrap(), want);
        assert_eq!(assign(&e, Err(()), &claims).unwrap(), want);
        // Two of them: DHCP, as before.
        e.network.host = Some(
            crate::settings::Settings::default()
                .single("Network", &[("Address", &["10.77.0.1/24", "10.78.0.1/24"])]),
        );
        assert_eq!(
            assign(&e, Ok(&h), &claims).unwrap(),
            Assignment::Pool { collision: None }
        );
        let mut z = Entry::new("z", "/nix/store/x");
        z.network.mode = NetworkMode::Zone;
        assert_eq!(assign(&z, Ok(&h), &claims).unwrap(), Assignment::NotVeth);
    }

    #[test]
    fn host_subnet_pairs() {
        // (host side, name, (container, DHCP pool offset))
        type Case<'a> = (&'a str, &'a str, Option<(&'a str, Option<u32>)>);
        let cases: &[Case] = &[
            // Fixed values: hash("ab") = 0x18e48e7b; 1 + 0x18e48e7b % 253 =
            // 214, past the host's .1: 215.
            ("10.231.8.1/24", "ab", Some(("10.231.8.215", Some(215)))),
            ("10.231.9.1/24", "ab", Some(("10.231.9.215", Some(215)))),
            ("10.77.0.1/24", "web", Some(("10.77.0.72", Some(72)))),
            // The host side elsewhere in the subnet: skipped, not a gap.
            ("10.231.8.200/24", "ab", Some(("10.231.8.215", Some(215)))),
            ("10.231.8.214/24", "ab", Some(("10.231.8.215", Some(215)))),
            ("10.231.8.215/24", "ab", Some(("10.231.8.214", Some(214)))),
            ("10.231.8.254/24", "ab", Some(("10.231.8.214", Some(214)))),
            // /30: the other usable address, whatever the name.
            ("192.168.5.1/30", "ab", Some(("192.168.5.2", Some(2)))),
            ("192.168.5.1/30", "web", Some(("192.168.5.2", Some(2)))),
            ("192.168.5.2/30", "ab", Some(("192.168.5.1", Some(1)))),
            // A host side on the network or broadcast address leaves both.
            ("192.168.5.0/30", "ab", Some(("192.168.5.2", Some(2)))),
            ("192.168.5.3/30", "web", Some(("192.168.5.1", Some(1)))),
            // /31 (RFC 3021): the other address; no DHCP server.
            ("192.168.5.0/31", "ab", Some(("192.168.5.1", None))),
            ("192.168.5.1/31", "ab", Some(("192.168.5.0", None))),
            // /32: no room.
            ("192.168.5.1/32", "ab", None),
        ];
        for (host, name, want) in cases {
            let net: Ipv4Net = host.parse().unwrap();
            let got = host_subnet_pair(name, net).map(|(p, off)| {
                assert_eq!((p.host, p.prefix_len), (net.addr(), net.prefix_len()));
                (p.container.to_string(), off)
            });
            let want = want.map(|(c, off)| (c.to_owned(), off));
            assert_eq!(got, want, "{host} {name}");
        }
        // Many names, several prefixes: in the subnet, never the host side,
        // the network or the broadcast address; the pool offset is the
        // container's host number.
        for host in [
            "10.0.0.1/8",
            "172.16.4.9/22",
            "10.1.2.129/25",
            "10.1.2.6/29",
        ] {
            let net: Ipv4Net = host.parse().unwrap();
            for i in 0..500 {
                let (p, off) = host_subnet_pair(&format!("c{i}"), net).unwrap();
                assert!(net.contains(&p.container), "{host}: {}", p.container);
                assert!(
                    ![net.addr(), net.network(), net.broadcast()].contains(&p.container),
                    "{host}: {}",
                    p.container
                );
                assert_eq!(off, Some(u32::from(p.container) - u32::from(net.network())));
            }
        }
    }

    #[test]
    fn host_given_addresses() {
        let given = |json: &str| {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            let s = crate::settings::Settings::from_json(&v, "network.host").unwrap();
            host_given_ipv4(&s).map(|n| n.to_string())
        };
        let one = Some("10.231.8.1/24".to_owned());
        for (json, want) in [
            (r#"{"Network": {"Address": "10.231.8.1/24"}}"#, one.clone()),
            (
                r#"{"Network": {"Address": ["10.231.8.1/24", "fd42::1/64"]}}"#,
                one.clone(),
            ),
            (
                r#"{"Network": {"Address": ["10.0.0.1/24", "", "10.231.8.1/24"]}}"#,
                one.clone(),
            ),
            (
                r#"{"Address": [{"Address": "10.231.8.1/24"}]}"#,
                one.clone(),
            ),
            (
                r#"{"Address": [{"Address": "10.231.8.1/24", "RouteMetric": 10}]}"#,
                one.clone(),
            ),
            (r#"{"Address": {"Address": "10.231.8.1/24"}}"#, one.clone()),
            (
                r#"{"Network": {"Address": "10.231.8.1/24"}, "Address": [{"Address": "fd42::1/128", "Peer": "fd42::2/128"}]}"#,
                one.clone(),
            ),
            (
                r#"{"Network": {"Address": "10.231.8.1/24", "DHCPServer": true}}"#,
                one.clone(),
            ),
            (
                r#"{"Network": {"Address": "10.231.8.1/24", "DHCPServer": "yes"}, "DHCPServer": {"DNS": "9.9.9.9"}}"#,
                one.clone(),
            ),
            // Cannot be read, or not one IPv4 address: DHCP, as before.
            (
                r#"{"Network": {"Address": ["10.0.0.1/24", "10.231.8.1/24"]}}"#,
                None,
            ),
            (
                r#"{"Network": {"Address": "10.231.8.1/24"}, "Address": [{"Address": "10.231.9.1/24"}]}"#,
                None,
            ),
            (r#"{"Network": {"Address": "0.0.0.0/28"}}"#, None),
            (r#"{"Network": {"Address": "10.231.8.1"}}"#, None),
            (r#"{"Network": {"Address": "10.231.8.300/24"}}"#, None),
            (r#"{"Network": {"Address": null}}"#, None),
            (r#"{"Network": {"Address": "fd42::1/64"}}"#, None),
            (r#"{"Network": [{"Address": "10.231.8.1/24"}]}"#, None),
            (
                r#"{"Address": [{"Address": "10.231.8.1/32", "Peer": "10.231.8.2/32"}]}"#,
                None,
            ),
            (
                r#"{"Address": [{"Address": "10.231.8.1/24", "Scope": "link"}]}"#,
                None,
            ),
            // The admin's DHCP server settings win.
            (
                r#"{"Network": {"Address": "10.231.8.1/24", "DHCPServer": false}}"#,
                None,
            ),
            (
                r#"{"Network": {"Address": "10.231.8.1/24", "DHCPServer": null}}"#,
                None,
            ),
            (
                r#"{"Network": {"Address": "10.231.8.1/24"}, "DHCPServer": {"PoolOffset": 100, "PoolSize": 20}}"#,
                None,
            ),
            (
                r#"{"Network": {"Address": "10.231.8.1/24"}, "DHCPServer": {"ServerAddress": "10.231.8.1/24"}}"#,
                None,
            ),
            (
                r#"{"Network": {"Address": "10.231.8.1/24"}, "DHCPServerStaticLease": [{"MACAddress": "02:00:00:00:00:01", "Address": "10.231.8.9"}]}"#,
                None,
            ),
        ] {
            assert_eq!(given(json), want, "{json}");
        }
    }

    fn parse(network: &str) -> Result<Entry, String> {
        let json = format!(
            r#"{{"version": 1, "name": "web", "system": "/nix/store/x", "network": {network}}}"#
        );
        crate::registry::parse_entry(
            Path::new("/etc/nixos-nspawn/containers/web.json"),
            json.as_bytes(),
        )
        .map_err(|errs| {
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    #[test]
    fn registry_fields_for_fixed_pairs() {
        let e = parse(
            r#"{"mode": "veth", "hostAddress": "10.231.136.1", "localAddress": "10.231.136.2"}"#,
        )
        .unwrap();
        assert_eq!(e.network.host_address.as_deref(), Some("10.231.136.1"));
        // Canonical JSON keeps them, and omits them when unset.
        assert!(e.to_json().contains(r#""localAddress": "10.231.136.2""#));
        assert!(!Entry::new("x", "/y").to_json().contains("hostAddress"));
        for (network, needle) in [
            (
                r#"{"hostAddress": "10.0.0.1"}"#,
                "network.localAddress: is required with network.hostAddress",
            ),
            (
                r#"{"localAddress6": "fd00::2"}"#,
                "network.hostAddress6: is required with network.localAddress6",
            ),
            (
                r#"{"hostAddress": "10.0.0.1", "localAddress": "fd00::2"}"#,
                "network.hostAddress: \"fd00::2\" is not an IPv4 address",
            ),
            (
                r#"{"hostAddress6": "fd00::1/64", "localAddress6": "fd01::2/64"}"#,
                "not in the same /64 subnet",
            ),
            (
                r#"{"mode": "zone", "zone": "lan", "hostAddress": "10.0.0.1", "localAddress": "10.0.0.2"}"#,
                "apply to the ve- link of mode \"veth\" only",
            ),
            (
                r#"{"hostAddress": "10.0.0.1", "localAddress": "10.0.0.2", "host": {"Network": {"Address": null}}}"#,
                "use one or the other",
            ),
            (
                r#"{"hostAddress": 10}"#,
                "network.hostAddress: expected a string",
            ),
        ] {
            let e = parse(network).unwrap_err();
            assert!(e.contains(needle), "{network}: {e}");
            assert!(
                e.starts_with("/etc/nixos-nspawn/containers/web.json: network."),
                "{e}"
            );
        }
    }

    #[test]
    fn host_settings_file() {
        let file = Path::new(HOST_NETWORK_FILE);
        let parse = |t: &str| crate::registry::parse_host_network(file, t.as_bytes());
        assert_eq!(
            parse(r#"{"version": 1}"#).unwrap(),
            (DEFAULT_IPV4_POOL, Ipv6Setting::Derived, DEFAULT_ZONE_POOL)
        );
        assert_eq!(
            parse(r#"{"version": 1, "ipv4Pool": "172.30.0.0/15", "ipv6Prefix": false}"#).unwrap(),
            (
                "172.30.0.0/15".parse().unwrap(),
                Ipv6Setting::Off,
                DEFAULT_ZONE_POOL
            )
        );
        assert_eq!(
            parse(r#"{"version": 1, "zonePool": "172.20.0.0/14"}"#)
                .unwrap()
                .2,
            "172.20.0.0/14".parse::<Ipv4Net>().unwrap()
        );
        assert_eq!(
            parse(r#"{"version": 1, "ipv6Prefix": "fd42:1:2:3::/40"}"#)
                .unwrap()
                .1,
            Ipv6Setting::Prefix("fd42:1::/48".parse().unwrap())
        );
        for (text, needle) in [
            (
                r#"{"version": 1, "ipv4Pool": "10.0.0.0/13"}"#,
                "ipv4Pool: \"10.0.0.0/13\": the pool's prefix length must be /14 to /28",
            ),
            (
                r#"{"version": 1, "ipv4Pool": "10.0.0.1/16"}"#,
                "not a network address",
            ),
            (
                r#"{"version": 1, "ipv4Pool": "fd00::/16"}"#,
                "not an IPv4 CIDR",
            ),
            (
                r#"{"version": 1, "ipv6Prefix": "fd00::/56"}"#,
                "/48 or shorter",
            ),
            (
                r#"{"version": 1, "ipv6Prefix": true}"#,
                "expected an IPv6 CIDR, false or null",
            ),
            (r#"{"version": 2}"#, "not a supported schema version"),
            (r#"{"version": 1, "pool": 1}"#, "pool: unknown field"),
            (
                r#"{"version": 1, "zonePool": "10.108.0.0/12"}"#,
                "network.json: zonePool: \"10.108.0.0/12\" is not a network address",
            ),
            (
                r#"{"version": 1, "zonePool": "10.96.0.0/12"}"#,
                "zonePool: \"10.96.0.0/12\" overlaps the pool of veth addresses 10.108.0.0/16",
            ),
            (
                r#"{"version": 1, "zonePool": "10.0.0.0/22"}"#,
                "zonePool: \"10.0.0.0/22\": the zone pool's prefix length must be /8 to /20",
            ),
            (
                r#"{"version": 1, "ipv4Pool": "10.113.0.0/16"}"#,
                "ipv4Pool: 10.113.0.0/16 overlaps the default zone pool 10.112.0.0/12",
            ),
        ] {
            let errs = parse(text).unwrap_err();
            let text = errs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            assert!(text.contains(needle), "{text}");
            assert!(
                text.starts_with("/etc/nixos-nspawn/network.json: "),
                "{text}"
            );
        }
    }

    #[test]
    fn host_settings_are_read_under_the_root() {
        let (_d, root) = crate::testing::temp_root();
        // No file, no machine ID: the default pool, no IPv6.
        let h = load_host_network(&root).unwrap();
        assert_eq!((h.ipv4_pool, h.ipv6_prefix), (DEFAULT_IPV4_POOL, None));
        std::fs::create_dir_all(root.join("/etc/nixos-nspawn")).unwrap();
        std::fs::write(
            root.join(MACHINE_ID_FILE),
            "0123456789abcdef0123456789abcdef\n",
        )
        .unwrap();
        let h = load_host_network(&root).unwrap();
        assert_eq!(
            h.ipv6_prefix,
            ula_from_machine_id("0123456789abcdef0123456789abcdef")
        );
        std::fs::write(
            root.join(HOST_NETWORK_FILE),
            r#"{"version": 1, "ipv4Pool": 7}"#,
        )
        .unwrap();
        let errs = load_host_network(&root).unwrap_err();
        assert!(errs
            .last()
            .unwrap()
            .to_string()
            .contains("no addresses are derived"));
    }

    fn zone(name: &str, extra: &str) -> Zone {
        let json = format!(r#"{{"version": 1, "name": "{name}"{extra}}}"#);
        crate::registry::parse_zone(&crate::paths::zone_file(name), json.as_bytes())
            .map_err(|e| format!("{e:?}"))
            .unwrap()
    }

    #[test]
    fn zone_subnets_and_members_are_derived() {
        let h = host();
        // Fixed values: changing them moves every zone member.
        assert_eq!(zone_slots(h.zone_pool), 256);
        let lan = zone_net(&h, name_hash("lan") % 256);
        assert_eq!(name_hash("lan") % 256, 46);
        assert_eq!(lan.ipv4.to_string(), "10.114.224.0/20");
        assert_eq!(lan.bridge4().to_string(), "10.114.224.1");
        assert_eq!(lan.ipv6.unwrap().to_string(), "fd12:3456:789a:802e::/64");
        assert_eq!(lan.member_slots(), 2046);
        assert_eq!(lan.dhcp_pool(), (2048, 2047));
        let plan = ZonePlan::new(Ok(&h), [], [("web", "lan"), ("db", "lan")]);
        assert_eq!(plan.zone("lan"), ZoneAssignment::Static(lan));
        let mut web = Entry::new("web", "/nix/store/x");
        web.network.mode = NetworkMode::Zone;
        web.network.zone = Some("lan".into());
        let Assignment::Static(a) = plan.member(&web) else {
            panic!("{:?}", plan.member(&web))
        };
        let v4 = a.ipv4.unwrap();
        assert_eq!(v4.host, lan.bridge4());
        assert_eq!(v4.prefix_len, 20);
        // In the lower half, never the bridge, the network or the DHCP pool.
        let n = u32::from(v4.container) - u32::from(lan.ipv4.network());
        assert_eq!(n, 2 + name_hash("web") % 2046);
        assert!((2..2048).contains(&n));
        let v6 = a.ipv6.unwrap();
        assert_eq!(u128::from(v6.container) & 0xffff_ffff, u128::from(n));
        assert!(lan.ipv6.unwrap().contains(&v6.container));
        // Zone /64s never meet a veth container's (IDs below slots()).
        assert!(lan.ipv6.unwrap().network().segments()[3] as u32 >= slots(h.ipv4_pool));
        // A veth-sized pool above 0x8000 blocks leaves no room: no zone IPv6.
        let big = HostNetwork {
            ipv4_pool: "10.0.0.0/14".parse().unwrap(),
            ..host()
        };
        assert_eq!(zone_net(&big, 3).ipv6, None);
        // Without valid host settings: DHCP everywhere.
        let plan = ZonePlan::new(Err(()), [], [("web", "lan")]);
        assert_eq!(plan.zone("lan"), ZoneAssignment::Pool);
        assert_eq!(plan.member(&web), Assignment::Pool { collision: None });
    }

    #[test]
    fn zone_collisions_keep_the_first_name() {
        let h = host();
        let find = |space: u32, hash: &dyn Fn(&str) -> u32| {
            let mut seen = HashMap::new();
            for i in 0..10_000 {
                let n = format!("z{i}");
                if let Some(prev) = seen.insert(hash(&n) % space, n.clone()) {
                    let mut p = [prev, n];
                    p.sort();
                    return p;
                }
            }
            panic!("no collision");
        };
        let [a, b] = find(256, &name_hash);
        let plan = ZonePlan::new(Ok(&h), [], [("m", b.as_str()), ("n", a.as_str())]);
        assert!(matches!(plan.zone(&a), ZoneAssignment::Static(_)));
        assert_eq!(plan.zone(&b), ZoneAssignment::Pool);
        let errs: Vec<String> = plan.errors().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with(&format!(
                "/etc/nixos-nspawn/zones/{b}.json: zones {a:?} and {b:?} derive the same subnet"
            )),
            "{errs:?}"
        );
        let mut m = Entry::new("m", "/nix/store/x");
        m.network.mode = NetworkMode::Zone;
        m.network.zone = Some(b.clone());
        assert_eq!(plan.member(&m), Assignment::Pool { collision: None });
        // The later zone with its own subnet keeps working.
        let own = zone(&b, r#", "ipv4Subnet": "192.168.50.0/24""#);
        let plan = ZonePlan::new(Ok(&h), [&own], [("m", b.as_str()), ("n", a.as_str())]);
        let ZoneAssignment::Static(net) = plan.zone(&b) else {
            panic!()
        };
        assert_eq!(
            (net.ipv4.to_string(), net.ipv6),
            ("192.168.50.0/24".into(), None)
        );
        assert_eq!(net.dhcp_pool(), (128, 127));
        assert_eq!(plan.errors().count(), 0);

        // Two members of one zone with the same slot: the first keeps it.
        let lan = zone_net(&h, name_hash("lan") % 256);
        let [x, y] = find(lan.member_slots(), &name_hash);
        let plan = ZonePlan::new(Ok(&h), [], [(y.as_str(), "lan"), (x.as_str(), "lan")]);
        let mut e = Entry::new(&x, "/nix/store/x");
        e.network.mode = NetworkMode::Zone;
        e.network.zone = Some("lan".into());
        assert!(matches!(plan.member(&e), Assignment::Static(_)));
        e.name = y.clone();
        let Assignment::Pool {
            collision: Some(why),
        } = plan.member(&e)
        else {
            panic!()
        };
        assert!(
            why.starts_with(&format!(
                "containers {x:?} and {y:?} of zone \"lan\" derive the same address 10.114."
            )),
            "{why}"
        );
        // The same two names in different zones do not collide.
        let plan = ZonePlan::new(Ok(&h), [], [(y.as_str(), "lan"), (x.as_str(), "dmz")]);
        assert!(matches!(plan.member(&e), Assignment::Static(_)));
    }

    #[test]
    fn zone_overrides() {
        let h = host();
        // A subnet of its own, outside both pools.
        let z = zone(
            "lan",
            r#", "ipv4Subnet": "10.50.0.0/16", "ipv6Subnet": "fd00:50::/64""#,
        );
        let plan = ZonePlan::new(Ok(&h), [&z], []);
        assert_eq!(
            plan.zone("lan"),
            ZoneAssignment::Static(ZoneNet {
                ipv4: "10.50.0.0/16".parse().unwrap(),
                ipv6: Some("fd00:50::/64".parse().unwrap()),
            })
        );
        // Inside a pool: refused, DHCP, an error naming file, field, value.
        for (extra, needle) in [
            (
                r#", "ipv4Subnet": "10.108.4.0/24""#,
                "lan.json: ipv4Subnet 10.108.4.0/24 overlaps the pool of derived addresses 10.108.0.0/16",
            ),
            (
                r#", "ipv4Subnet": "10.0.0.0/8""#,
                "ipv4Subnet 10.0.0.0/8 overlaps the pool of derived addresses 10.108.0.0/16",
            ),
            (
                r#", "ipv4Subnet": "10.113.0.0/24""#,
                "overlaps the pool of derived addresses 10.112.0.0/12",
            ),
        ] {
            let z = zone("lan", extra);
            let plan = ZonePlan::new(Ok(&h), [&z], []);
            assert_eq!(plan.zone("lan"), ZoneAssignment::Pool, "{extra}");
            let errs: Vec<String> = plan.errors().map(|e| e.to_string()).collect();
            assert!(errs.len() == 1 && errs[0].contains(needle), "{errs:?}");
        }
        let z = zone("lan", r#", "ipv6Subnet": "fd12:3456:789a:1::/64""#);
        let plan = ZonePlan::new(Ok(&h), [&z], []);
        let ZoneAssignment::Static(net) = plan.zone("lan") else {
            panic!()
        };
        assert_eq!(net.ipv6, None);
        assert!(plan
            .errors()
            .next()
            .unwrap()
            .to_string()
            .contains("ipv6Subnet fd12:3456:789a:1::/64 lies in the prefix"));
        // network.Network.Address takes the bridge over: systemd's defaults.
        let z = zone(
            "lan",
            r#", "network": {"Network": {"Address": "10.10.0.1/24"}}"#,
        );
        let plan = ZonePlan::new(Ok(&h), [&z], [("web", "lan")]);
        assert_eq!(plan.zone("lan"), ZoneAssignment::Pool);
    }

    #[test]
    fn zone_file_fields() {
        let parse = |extra: &str| {
            let json = format!(r#"{{"version": 1, "name": "lan"{extra}}}"#);
            crate::registry::parse_zone(&crate::paths::zone_file("lan"), json.as_bytes()).map_err(
                |errs| {
                    errs.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            )
        };
        let z = parse(r#", "ipv4Subnet": "192.168.9.0/24", "ipv6Subnet": "fd00:9::/64""#).unwrap();
        assert_eq!(z.ipv4_subnet, Some("192.168.9.0/24".parse().unwrap()));
        // Serialised with the file's field names.
        let json = serde_json::to_string(&z).unwrap();
        assert!(json.contains(r#""ipv4Subnet":"192.168.9.0/24""#), "{json}");
        assert!(!serde_json::to_string(&Zone::undeclared("x"))
            .unwrap()
            .contains("Subnet"));
        for (extra, needle) in [
            (
                r#", "ipv4Subnet": "192.168.9.1/24""#,
                "ipv4Subnet: \"192.168.9.1/24\" is not a network address",
            ),
            (
                r#", "ipv4Subnet": "192.168.9.0/28""#,
                "ipv4Subnet: \"192.168.9.0/28\": the subnet's prefix length must be /8 to /26",
            ),
            (
                r#", "ipv4Subnet": "lan""#,
                "ipv4Subnet: \"lan\" is not an IPv4 CIDR",
            ),
            (r#", "ipv4Subnet": 24"#, "ipv4Subnet: expected a string"),
            (
                r#", "ipv6Subnet": "fd00:9::/56""#,
                "ipv6Subnet: \"fd00:9::/56\": the subnet must be a /64",
            ),
            (
                r#", "ipv6Subnet": "fd00:9::1/64""#,
                "ipv6Subnet: \"fd00:9::1/64\" is not a network address",
            ),
            (
                r#", "ipv6Subnet": "x""#,
                "ipv6Subnet: \"x\" is not an IPv6 CIDR",
            ),
            (
                r#", "ipv4Subnet": "192.168.9.0/24", "network": {"Network": {"Address": "192.168.9.1/24"}}"#,
                "ipv4Subnet: network also sets the bridge's addresses",
            ),
        ] {
            let e = parse(extra).unwrap_err();
            assert!(e.starts_with("/etc/nixos-nspawn/zones/lan.json: "), "{e}");
            assert!(e.contains(needle), "{extra}: {e}");
        }
    }

    #[test]
    fn credential_escaping() {
        assert_eq!(escape_credential("a\nb\\c"), "a\\nb\\\\c");
    }
}
