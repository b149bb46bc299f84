//! Pure rendering: registry entries and zones in, a list of (destination,
//! contents) out. No I/O here, and nothing that changes between runs: the same
//! registry always renders the same bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::addressing::{
    self, Addresses, Assignment, Claims, HostNetwork, Origin, ZoneAssignment, ZonePlan,
};
use crate::paths;
use crate::registry::{Entry, NetworkMode, Registry, Zone};
use crate::settings::Settings;
use crate::unit::{Dialect, IniFile};
use crate::{EntryError, HEADER_PREFIX};

/// Where a rendered file goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dest {
    /// Relative to the generator's normal output directory.
    Generator(PathBuf),
    /// A logical absolute path under `/run` (resolved under the root).
    Run(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    File(String),
    Symlink(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub dest: Dest,
    pub contents: Contents,
}

/// What the generator's environment contributes to rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Directory holding `nixos-nspawn-bootstrap` and `nixos-nspawn-activate`.
    pub helper_dir: PathBuf,
    /// Passed to the helpers as `NIXOS_NSPAWN_ROOT` when not the host root.
    pub root_env: Option<PathBuf>,
    /// Directory the `.wants/` links point into (only the link name matters
    /// to systemd; the target makes `ls -l` readable).
    pub unit_dir: PathBuf,
    /// The `systemd-nspawn` executable for `ExecStart=` overrides.
    pub nspawn_exe: String,
    /// The host's addressing settings ([`addressing::load_host_network`]), or
    /// the problems of its file: veth containers then get networkd's pool
    /// addresses by DHCP.
    pub host_network: Result<HostNetwork, Vec<EntryError>>,
}

impl Default for Context {
    fn default() -> Self {
        Context {
            helper_dir: PathBuf::from("/usr/lib/nixos-nspawn"),
            root_env: None,
            unit_dir: PathBuf::from("/usr/lib/systemd/system"),
            nspawn_exe: "systemd-nspawn".into(),
            host_network: Ok(HostNetwork {
                ipv4_pool: addressing::DEFAULT_IPV4_POOL,
                ipv6_prefix: None,
                zone_pool: addressing::DEFAULT_ZONE_POOL,
            }),
        }
    }
}

impl Context {
    /// How `entry`'s link is addressed, given the registry's `claims`.
    pub fn assignment(&self, entry: &Entry, claims: &Claims) -> Result<Assignment, String> {
        addressing::assign(entry, self.host_network.as_ref().map_err(drop), claims)
    }

    /// The claims of a registry of these names (sorted or not).
    pub fn claims<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Claims {
        match &self.host_network {
            Ok(h) => Claims::new(h.ipv4_pool, names),
            Err(_) => Claims::default(),
        }
    }
}

pub const DROPIN_NAME: &str = "50-nixos-nspawn.conf";
pub const BOOTSTRAP_EXE: &str = "nixos-nspawn-bootstrap";
pub const ACTIVATE_EXE: &str = "nixos-nspawn-activate";
/// networkd files sort before the distribution's `80-container-v[ez].network`.
const NETWORK_PREFIX: &str = "20-nixos-nspawn-";

fn header(file: &mut IniFile, source: &Path) -> Result<(), String> {
    header_text(file, &source.display().to_string())
}

fn header_text(file: &mut IniFile, source: &str) -> Result<(), String> {
    file.comment(&format!(
        "{}{source}",
        HEADER_PREFIX.trim_start_matches("# ")
    ))
}

/// A new plain file that starts with the header naming `source`.
fn headed_file(source: &str) -> Result<IniFile, String> {
    let mut f = IniFile::new(Dialect::Plain);
    header_text(&mut f, source)?;
    Ok(f)
}

/// The host-side link name networkd matches: nspawn shortens long names to
/// fit 15 bytes but keeps the full `ve-NAME` as an alternative name, and
/// `Name=` matches alternative names too.
pub fn veth_link_name(name: &str) -> String {
    format!("ve-{name}")
}
pub fn zone_link_name(zone: &str) -> String {
    format!("vz-{zone}")
}
/// The port networkd attaches to a zone bridge it creates, one end of a veth
/// pair (zones have at most 12 characters, so these fit the 15-byte limit).
pub fn zone_port_name(zone: &str) -> String {
    format!("vd-{zone}")
}
/// The other end of the port's veth pair, unused and down.
pub fn zone_port_peer_name(zone: &str) -> String {
    format!("vp-{zone}")
}

/// `NETWORK_DIR/<NETWORK_PREFIX><iface>.<kind>`: a host-side networkd file.
fn networkd_path(iface: &str, kind: &str) -> PathBuf {
    Path::new(paths::NETWORK_DIR).join(format!("{NETWORK_PREFIX}{iface}.{kind}"))
}
pub fn veth_network_path(name: &str) -> PathBuf {
    networkd_path(&format!("ve-{name}"), "network")
}
pub fn zone_network_path(zone: &str) -> PathBuf {
    networkd_path(&format!("vz-{zone}"), "network")
}
pub fn zone_netdev_path(zone: &str) -> PathBuf {
    networkd_path(&format!("vz-{zone}"), "netdev")
}
pub fn zone_port_netdev_path(zone: &str) -> PathBuf {
    networkd_path(&format!("vd-{zone}"), "netdev")
}
pub fn zone_port_network_path(zone: &str) -> PathBuf {
    networkd_path(&format!("vd-{zone}"), "network")
}
pub fn nspawn_path(name: &str) -> PathBuf {
    Path::new(paths::NSPAWN_DIR).join(format!("{name}.nspawn"))
}

/// Where defaults written in code go: straight into the file when nothing is
/// merged over them (no intermediate [`Settings`], no copies), or into
/// [`Settings`] when an override has to be merged (the same calls either
/// way, so both paths give the same bytes).
trait Sink {
    /// Start a section; `repeated` for sections that may occur more than
    /// once (`[Address]`, `[IPv6Prefix]`).
    fn section(&mut self, name: &str, repeated: bool) -> Result<(), String>;
    /// `key=value` in the current section; consecutive values of one key
    /// form one list.
    fn set(&mut self, key: &str, value: &str) -> Result<(), String>;
}

impl Sink for IniFile {
    fn section(&mut self, name: &str, _repeated: bool) -> Result<(), String> {
        IniFile::section(self, name)
    }
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        IniFile::set(self, key, value)
    }
}

impl Sink for Settings {
    fn section(&mut self, name: &str, repeated: bool) -> Result<(), String> {
        use crate::settings::SectionBody;
        if repeated {
            if let Some((n, SectionBody::Repeated(list))) = self.sections.last_mut() {
                if n == name {
                    list.push(Vec::new());
                    return Ok(());
                }
            }
            self.sections
                .push((name.to_owned(), SectionBody::Repeated(vec![Vec::new()])));
        } else {
            self.sections
                .push((name.to_owned(), SectionBody::Single(Vec::new())));
        }
        Ok(())
    }
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        use crate::settings::{Scalar, SectionBody};
        let v = Scalar::Str(value.to_owned());
        match self.sections.last_mut().map(|(_, b)| b) {
            Some(SectionBody::Single(entries)) => match entries.last_mut() {
                Some((k, Some(vals))) if k == key => vals.push(v),
                _ => entries.push((key.to_owned(), Some(vec![v]))),
            },
            Some(SectionBody::Repeated(list)) => {
                let entries = list.last_mut().expect("a repeated section was started");
                match entries.last_mut() {
                    Some((k, vals)) if k == key => vals.push(v),
                    _ => entries.push((key.to_owned(), vec![v])),
                }
            }
            None => return Err(format!("{key}= outside of any section")),
        }
        Ok(())
    }
}

/// Write `defaults` into `f`, with `over` merged on top when there is one
/// (`accumulating`: the keys whose values are appended, see
/// [`Settings::merged_appending`]).
fn write_with(
    f: &mut IniFile,
    over: Option<&Settings>,
    accumulating: &[(&str, &str)],
    defaults: impl FnOnce(&mut dyn Sink) -> Result<(), String>,
) -> Result<(), String> {
    match over {
        None => defaults(f),
        Some(over) => {
            let mut s = Settings::default();
            defaults(&mut s)?;
            s.merge_appending(Some(over), accumulating).write_to(f)
        }
    }
}

/// systemd's defaults for the host side of a container link (its
/// 80-container-ve.network and 80-container-vz.network), which `network.host`
/// or a zone file is merged over.
fn link_defaults(
    out: &mut dyn Sink,
    link: &str,
    driver: &str,
    addresses: &[&str],
    dhcp_server: bool,
) -> Result<(), String> {
    out.section("Match", false)?;
    out.set("Name", link)?;
    out.set("Driver", driver)?;
    // A container's link is no reason to hold up network-online.target: a
    // zone bridge without a running container stays no-carrier, and
    // systemd-networkd-wait-online would wait its whole timeout (2 min).
    out.section("Link", false)?;
    out.set("RequiredForOnline", "no")?;
    out.section("Network", false)?;
    for a in addresses {
        out.set("Address", a)?;
    }
    for (k, v) in [
        ("LinkLocalAddressing", "yes"),
        ("DHCPServer", if dhcp_server { "yes" } else { "no" }),
        ("IPMasquerade", "both"),
        ("LLDP", "yes"),
        ("EmitLLDP", "customer-bridge"),
        ("IPv6AcceptRA", "no"),
        ("IPv6SendRA", "yes"),
    ] {
        out.set(k, v)?;
    }
    if driver == "bridge" {
        // A zone's bridge has its address whether or not a container is
        // attached: a bridge without ports has no carrier, and without
        // ConfigureWithoutCarrier= networkd would leave a zone created by
        // its netdev (present from boot) unconfigured until the first
        // container joins, so nothing on the host could use its address.
        out.set("ConfigureWithoutCarrier", "yes")?;
        // The bridge loses carrier whenever its last container stops;
        // without this networkd drops its address and may pick another
        // pool subnet, stranding leases (measured: 5 of 35 restarts).
        out.set("IgnoreCarrierLoss", "yes")?;
    }
    Ok(())
}

/// One side's addresses of a fixed pair: IPv4 subnet addresses go into
/// `[Network] Address=`; point-to-point pairs and every IPv6 address get an
/// `[Address]` section (with `Peer=`, and `DuplicateAddressDetection=none`
/// for IPv6: the other side of a veth link is the only neighbour, and without
/// it the address is usable at once instead of after ~1 s of DAD).
#[derive(Default)]
struct Side {
    network: Vec<String>,
    /// (address, peer, IPv6)
    sections: Vec<(String, Option<String>, bool)>,
}

impl Side {
    fn of(a: &Addresses, host_side: bool) -> Side {
        let mut side = Side::default();
        let mut add = |ours: String, theirs: String, peer: bool, v6: bool| {
            if !peer && !v6 {
                side.network.push(ours);
            } else {
                side.sections.push((ours, peer.then_some(theirs), v6));
            }
        };
        let pick = |h: String, c: String| if host_side { (h, c) } else { (c, h) };
        if let Some(p) = &a.ipv4 {
            let (ours, theirs) = pick(p.host_cidr(), p.container_cidr());
            add(ours, theirs, p.is_peer(), false);
        }
        if let Some(p) = &a.ipv6 {
            let (ours, theirs) = pick(p.host_cidr(), p.container_cidr());
            add(ours, theirs, p.is_peer(), true);
        }
        side
    }

    /// The `[Address]` sections.
    fn write_sections(&self, out: &mut dyn Sink) -> Result<(), String> {
        for (address, peer, v6) in &self.sections {
            out.section("Address", true)?;
            out.set("Address", address)?;
            if let Some(p) = peer {
                out.set("Peer", p)?;
            }
            if *v6 {
                out.set("DuplicateAddressDetection", "none")?;
            }
        }
        Ok(())
    }
}

/// The host side of a veth link: networkd's pool and DHCP by default, or the
/// fixed addresses of `assignment` (derived ones keep the DHCP server, whose
/// pool in a `/30` is exactly the container's address, for guests that ignore
/// the credential, and advertise their IPv6 `/64` for SLAAC; addresses in
/// `network.host`'s subnet leave the host side's addresses to it and keep the
/// DHCP server with a pool of the container's address alone).
fn veth_defaults(out: &mut dyn Sink, name: &str, assignment: &Assignment) -> Result<(), String> {
    let link = veth_link_name(name);
    let Assignment::Static(a) = assignment else {
        return link_defaults(out, &link, "veth", &["0.0.0.0/28"], true);
    };
    if let Origin::HostSubnet { dhcp_offset } = a.origin {
        // network.host has the host side's address (ours would be a second
        // one); the DHCP pool is the container's address alone, so a lease
        // is for the address it already has.
        link_defaults(out, &link, "veth", &[], a.dhcp_server())?;
        if let Some(offset) = dhcp_offset {
            out.section("DHCPServer", false)?;
            out.set("PoolOffset", &offset.to_string())?;
            out.set("PoolSize", "1")?;
        }
        return Ok(());
    }
    let side = Side::of(a, true);
    let network: Vec<&str> = side.network.iter().map(String::as_str).collect();
    let derived = a.origin == Origin::Derived;
    link_defaults(out, &link, "veth", &network, derived)?;
    side.write_sections(out)?;
    if let (true, Some(p)) = (derived, &a.ipv6) {
        let prefix = format!("{}/{}", p.host, p.prefix_len)
            .parse::<ipnet::Ipv6Net>()
            .map(|n| n.trunc().to_string())
            .unwrap_or_else(|_| p.host_cidr());
        out.section("IPv6Prefix", true)?;
        out.set("Prefix", &prefix)?;
    }
    Ok(())
}

/// The container side of fixed addresses, as `host0` network settings: its
/// addresses and the host side as the gateway (after `[Network]` keys of the
/// caller's, if any: `network` is called inside that section).
fn host0_addresses(
    out: &mut dyn Sink,
    a: &Addresses,
    network: impl FnOnce(&mut dyn Sink) -> Result<(), String>,
) -> Result<(), String> {
    let side = Side::of(a, false);
    out.section("Network", false)?;
    network(out)?;
    for address in &side.network {
        out.set("Address", address)?;
    }
    for gw in [
        a.ipv4.map(|p| p.host.to_string()),
        a.ipv6.map(|p| p.host.to_string()),
    ]
    .into_iter()
    .flatten()
    {
        out.set("Gateway", &gw)?;
    }
    side.write_sections(out)
}

/// The credential the container profile installs as a drop-in for its own
/// `host0` network ([`addressing::HOST0_DROPIN_CREDENTIAL`]): the container's
/// addresses and gateways, nothing else, so the guest's own settings for
/// `host0` (DHCP for DNS, …) still apply.
pub fn host0_dropin(entry: &Entry, a: &Addresses) -> Result<String, String> {
    let mut f = IniFile::new(Dialect::Plain);
    header(&mut f, &entry.file())?;
    host0_addresses(&mut f, a, |_| Ok(()))?;
    Ok(f.into_string())
}

/// The credential systemd ≥ 256 guests install natively as a complete
/// `.network` file ([`addressing::HOST0_NETWORK_CREDENTIAL`]): `host0` with the
/// addresses, and DHCP (for DNS) when the host side runs a DHCP server.
pub fn host0_network(entry: &Entry, a: &Addresses) -> Result<String, String> {
    let mut f = IniFile::new(Dialect::Plain);
    header(&mut f, &entry.file())?;
    f.section("Match")?;
    f.set("Name", "host0")?;
    f.set("Virtualization", "container")?;
    host0_addresses(&mut f, a, |out| {
        out.set("DHCP", if a.dhcp_server() { "ipv4" } else { "no" })?;
        out.set("LinkLocalAddressing", "yes")
    })?;
    Ok(f.into_string())
}

/// Which store paths the container sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store<'a> {
    /// `sharedNix`: the whole store, read-only.
    Shared,
    /// Only these paths (the closure of `system`), known to the bootstrap
    /// helper; `&[]` when rendering without that knowledge (generator).
    Closure(&'a [String]),
}

/// Which of nixos-nspawn's own read-only binds are id-mapped in a
/// user-namespaced container (nspawn's `idmap` bind option: host UID/GID `z`
/// is `z` inside, so the store and the profile belong to root there instead
/// of `nobody`). Id-mapped mounts need support from the file system; nspawn
/// refuses to start the container when a bind cannot be id-mapped ("Failed
/// to map ids for bind mount …: Invalid argument"), so the bootstrap helper
/// probes the file systems and turns it off where they cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// `/nix/store` (or the closure's paths).
    pub store: bool,
    /// The profile directory, and the daemon's db and socket.
    pub profiles: bool,
}

impl Default for IdMap {
    /// What the generator renders: both id-mapped.
    fn default() -> Self {
        IdMap {
            store: true,
            profiles: true,
        }
    }
}

/// `.nspawn` keys that nspawn accumulates: `extraNspawn` values for them are
/// added to ours (so `BindReadOnly=` in `extraNspawn` does not drop the store).
pub const NSPAWN_ACCUMULATING: &[(&str, &str)] = &[
    ("Exec", "Environment"),
    ("Exec", "Capability"),
    ("Exec", "DropCapability"),
    ("Exec", "AmbientCapability"),
    ("Exec", "SystemCallFilter"),
    ("Files", "Bind"),
    ("Files", "BindReadOnly"),
    ("Files", "BindUser"),
    ("Files", "TemporaryFileSystem"),
    ("Files", "Inaccessible"),
    ("Files", "Overlay"),
    ("Files", "OverlayReadOnly"),
    ("Network", "Port"),
    ("Network", "Interface"),
    ("Network", "MACVLAN"),
    ("Network", "IPVLAN"),
    ("Network", "VirtualEthernetExtra"),
];

/// The trusted `/run/systemd/nspawn/NAME.nspawn`.
pub fn nspawn_file(entry: &Entry, store: Store) -> Result<String, String> {
    nspawn_file_idmapped(entry, store, IdMap::default())
}

/// [`nspawn_file`] with the id-mapping the host's file systems allow.
pub fn nspawn_file_idmapped(entry: &Entry, store: Store, idmap: IdMap) -> Result<String, String> {
    let mut f = IniFile::new(Dialect::Plain);
    header(&mut f, &entry.file())?;
    let exec = nspawn_exec(entry);
    let files = nspawn_files(entry, store, idmap);
    let network = nspawn_network(entry);
    write_with(
        &mut f,
        entry.extra_nspawn.as_ref(),
        NSPAWN_ACCUMULATING,
        |out| {
            for (section, keys) in [("Exec", &exec), ("Files", &files), ("Network", &network)] {
                out.section(section, false)?;
                for (k, vals) in keys {
                    for v in vals {
                        out.set(k, v)?;
                    }
                }
            }
            Ok(())
        },
    )?;
    Ok(f.into_string())
}

/// Settings of one section: each key with its values, in order.
type Keys = Vec<(&'static str, Vec<String>)>;

/// The `[Exec]` settings of [`nspawn_file`].
fn nspawn_exec(entry: &Entry) -> Keys {
    let mut exec: Keys = vec![
        ("Boot", vec!["no".into()]),
        (
            "Parameters",
            vec![format!("{}/system/init", paths::CONTAINER_PROFILES_DIR)],
        ),
        ("KillSignal", vec!["SIGRTMIN+3".into()]),
        (
            "PrivateUsers",
            vec![if entry.user_namespacing { "pick" } else { "no" }.into()],
        ),
        ("LinkJournal", vec!["try-guest".into()]),
        ("NotifyReady", vec!["yes".into()]),
    ];
    if entry.ephemeral {
        exec.push(("Ephemeral", vec!["yes".into()]));
    }
    if let Some(filter) = &entry.system_call_filter {
        exec.push(("SystemCallFilter", vec![filter.clone()]));
    }
    exec
}

/// The `[Files]` settings of [`nspawn_file`]: the store, the profiles and
/// the bind mounts.
fn nspawn_files(entry: &Entry, store: Store, idmap: IdMap) -> Keys {
    // Our own binds are id-mapped in a user-namespaced container (where the
    // file system allows it), so they belong to root inside, not `nobody`.
    let own = |host: &str, container: &str, idmapped: bool| -> String {
        if entry.user_namespacing && idmapped {
            format!("{host}:{container}:idmap")
        } else if host == container {
            host.to_owned()
        } else {
            format!("{host}:{container}")
        }
    };
    let mut read_only: Vec<String> = Vec::new();
    match store {
        Store::Shared => read_only.push(own("/nix/store", "/nix/store", idmap.store)),
        Store::Closure(paths) => {
            read_only.extend(paths.iter().map(|p| own(p, p, idmap.store)));
        }
    }
    if entry.mount_daemon_socket {
        for p in crate::registry::DAEMON_TARGETS {
            read_only.push(own(p, p, idmap.profiles));
        }
    }
    read_only.push(own(
        &paths::profile_dir(&entry.name).display().to_string(),
        paths::CONTAINER_PROFILES_DIR,
        idmap.profiles,
    ));
    let mut rw: Vec<String> = Vec::new();
    for b in &entry.bind_mounts {
        let mut v = format!("{}:{}", b.host, b.container);
        if !b.options.is_empty() {
            v.push(':');
            v.push_str(&b.options.join(","));
        }
        if b.read_only {
            read_only.push(v);
        } else {
            rw.push(v);
        }
    }
    let mut files: Keys = vec![("BindReadOnly", read_only)];
    if !rw.is_empty() {
        files.push(("Bind", rw));
    }
    if entry.user_namespacing {
        files.push(("PrivateUsersOwnership", vec!["auto".into()]));
    }
    files
}

/// The `[Network]` settings of [`nspawn_file`].
fn nspawn_network(entry: &Entry) -> Keys {
    let mut network: Keys = match entry.network.mode {
        NetworkMode::Veth => vec![
            ("Private", vec!["yes".into()]),
            ("VirtualEthernet", vec!["yes".into()]),
        ],
        NetworkMode::Zone => vec![("Zone", vec![entry.network.zone.clone().unwrap_or_default()])],
        NetworkMode::Bridge => vec![(
            "Bridge",
            vec![entry.network.bridge.clone().unwrap_or_default()],
        )],
        NetworkMode::Host => vec![
            ("Private", vec!["no".into()]),
            ("VirtualEthernet", vec!["no".into()]),
        ],
        NetworkMode::None => vec![
            ("Private", vec!["yes".into()]),
            ("VirtualEthernet", vec!["no".into()]),
        ],
    };
    if !entry.forward_ports.is_empty() {
        network.push((
            "Port",
            entry
                .forward_ports
                .iter()
                .map(|p| p.nspawn_value())
                .collect(),
        ));
    }
    network
}

/// The host side of a veth container: `ve-NAME`, with `network.host` merged.
pub fn veth_network_file(entry: &Entry, assignment: &Assignment) -> Result<String, String> {
    let mut f = IniFile::new(Dialect::Plain);
    header(&mut f, &entry.file())?;
    write_with(&mut f, entry.network.host.as_ref(), &[], |out| {
        veth_defaults(out, &entry.name, assignment)
    })?;
    Ok(f.into_string())
}

/// The files for a zone's bridge: its `.network`, and, when the zone asks
/// networkd to create the bridge, its `.netdev` plus a port `vd-ZONE`
/// (`.netdev` and `.network`): one end of a veth pair whose other end
/// `vp-ZONE` stays unused. The port keeps an idle zone what its netdev
/// promises, a bridge with its address that exists without containers:
/// systemd-nspawn deletes a zone's bridge when the last container leaves it
/// and the bridge has no other port (measured on systemd 252: gone, and back
/// only with the next container or a networkd reload). A veth rather than a
/// dummy: kernels without the dummy driver exist (this CI's has none), none
/// without veth (nspawn needs it).
///
/// With fixed subnets ([`ZoneAssignment::Static`]) the bridge has the first
/// address of each, the DHCP server hands out the upper half of the IPv4
/// subnet only (members' derived addresses are in the lower half) and the
/// `/64` is advertised for SLAAC.
pub fn zone_files(
    zone: &Zone,
    declared: bool,
    assignment: &ZoneAssignment,
) -> Result<Vec<OutputFile>, String> {
    let source = paths::zone_file(&zone.name);
    let source_text = if declared {
        source.display().to_string()
    } else {
        format!("{} (absent: systemd's defaults)", source.display())
    };
    let mut out = Vec::new();
    let mut f = headed_file(&source_text)?;
    write_with(&mut f, zone.network.as_ref(), &[], |out| {
        let link = zone_link_name(&zone.name);
        let ZoneAssignment::Static(net) = assignment else {
            return link_defaults(out, &link, "bridge", &["0.0.0.0/24"], true);
        };
        let v4 = format!("{}/{}", net.bridge4(), net.ipv4.prefix_len());
        link_defaults(out, &link, "bridge", &[&v4], true)?;
        if let Some(a) = net.bridge6() {
            out.section("Address", true)?;
            out.set("Address", &format!("{a}/64"))?;
            out.set("DuplicateAddressDetection", "none")?;
        }
        let (offset, size) = net.dhcp_pool();
        out.section("DHCPServer", false)?;
        out.set("PoolOffset", &offset.to_string())?;
        out.set("PoolSize", &size.to_string())?;
        if let Some(p) = net.ipv6 {
            out.section("IPv6Prefix", true)?;
            out.set("Prefix", &p.to_string())?;
        }
        Ok(())
    })?;
    out.push(OutputFile {
        dest: Dest::Run(zone_network_path(&zone.name)),
        contents: Contents::File(f.into_string()),
    });
    if let Some(netdev) = &zone.netdev {
        let mut f = headed_file(&source_text)?;
        Settings::default()
            .single(
                "NetDev",
                &[
                    ("Name", &[&zone_link_name(&zone.name)]),
                    ("Kind", &["bridge"]),
                ],
            )
            .merge(Some(netdev))
            .write_to(&mut f)?;
        out.push(OutputFile {
            dest: Dest::Run(zone_netdev_path(&zone.name)),
            contents: Contents::File(f.into_string()),
        });

        let port = zone_port_name(&zone.name);
        let mut f = headed_file(&source_text)?;
        Settings::default()
            .single("NetDev", &[("Name", &[&port]), ("Kind", &["veth"])])
            .single("Peer", &[("Name", &[&zone_port_peer_name(&zone.name)])])
            .write_to(&mut f)?;
        out.push(OutputFile {
            dest: Dest::Run(zone_port_netdev_path(&zone.name)),
            contents: Contents::File(f.render()),
        });
        let mut f = headed_file(&source_text)?;
        Settings::default()
            .single("Match", &[("Name", &[&port]), ("Kind", &["veth"])])
            .single("Link", &[("RequiredForOnline", &["no"])])
            .single(
                "Network",
                &[
                    ("Bridge", &[&zone_link_name(&zone.name)]),
                    ("ConfigureWithoutCarrier", &["yes"]),
                    ("LinkLocalAddressing", &["no"]),
                    ("IPv6AcceptRA", &["no"]),
                ],
            )
            .write_to(&mut f)?;
        out.push(OutputFile {
            dest: Dest::Run(zone_port_network_path(&zone.name)),
            contents: Contents::File(f.render()),
        });
    }
    Ok(out)
}

/// Everything a container needs under `/run` (its `.nspawn` and, for veth, its
/// host-side network). Zones are rendered separately. The generator and the
/// bootstrap helper both write these through [`crate::output`].
pub fn run_files(
    entry: &Entry,
    store: Store,
    assignment: &Assignment,
) -> Result<Vec<OutputFile>, String> {
    run_files_idmapped(entry, store, assignment, IdMap::default())
}

/// [`run_files`] with the id-mapping the host's file systems allow (the
/// bootstrap helper's probe).
pub fn run_files_idmapped(
    entry: &Entry,
    store: Store,
    assignment: &Assignment,
    idmap: IdMap,
) -> Result<Vec<OutputFile>, String> {
    let mut out = vec![OutputFile {
        dest: Dest::Run(nspawn_path(&entry.name)),
        contents: Contents::File(nspawn_file_idmapped(entry, store, idmap)?),
    }];
    if entry.network.mode == NetworkMode::Veth {
        out.push(OutputFile {
            dest: Dest::Run(veth_network_path(&entry.name)),
            contents: Contents::File(veth_network_file(entry, assignment)?),
        });
    }
    Ok(out)
}

/// The drop-in for `systemd-nspawn@NAME.service`.
pub fn service_dropin(
    entry: &Entry,
    ctx: &Context,
    assignment: &Assignment,
) -> Result<String, String> {
    let mut f = IniFile::new(Dialect::Unit);
    // `null` in extraService removes a generated line (README: a value
    // replaces, null removes); every other key is written after ours, where
    // systemd's own drop-in rules apply (a later single value wins, lists add).
    let keep = |section: &str, key: &str| {
        !entry
            .extra_service
            .as_ref()
            .is_some_and(|x| x.removes(section, key))
    };
    header(&mut f, &entry.file())?;
    f.section("Unit")?;
    if keep("Unit", "Description") {
        f.set("Description", &format!("NixOS container {}", entry.name))?;
    }
    if matches!(entry.network.mode, NetworkMode::Veth | NetworkMode::Zone) {
        // The host side is configured by networkd before the guest boots.
        if keep("Unit", "Wants") {
            f.set("Wants", "systemd-networkd.service")?;
        }
        if keep("Unit", "After") {
            f.set("After", "systemd-networkd.service")?;
        }
    }
    if keep("Unit", "RequiresMountsFor") {
        for b in &entry.bind_mounts {
            f.set("RequiresMountsFor", &b.host)?;
        }
    }
    f.section("Service")?;
    if let Some(root) = ctx
        .root_env
        .as_ref()
        .filter(|_| keep("Service", "Environment"))
    {
        let assignment = format!("{}={}", paths::ROOT_ENV, root.display());
        f.set(
            "Environment",
            &crate::unit::quote_env_assignment(&assignment),
        )?;
    }
    let helper = |exe: &str| ctx.helper_dir.join(exe).display().to_string();
    if keep("Service", "ExecStartPre") {
        f.set_exec("ExecStartPre", &[&helper(BOOTSTRAP_EXE), &entry.name])?;
    }
    if keep("Service", "ExecReload") {
        f.set_exec("ExecReload", &[&helper(ACTIVATE_EXE), &entry.name])?;
    }
    if keep("Service", "TimeoutStartSec") {
        f.set("TimeoutStartSec", &entry.timeout_start_sec)?;
    }
    let addresses = match assignment {
        Assignment::Static(a) => Some(a),
        _ => None,
    };
    if (!entry.credentials.is_empty() || addresses.is_some()) && keep("Service", "ExecStart") {
        // A path that is not absolute names a credential of the service
        // manager: nspawn looks for it in $CREDENTIALS_DIRECTORY, which only
        // holds what the service loads.
        for c in &entry.credentials {
            if !c.path.starts_with('/') {
                f.set("LoadCredential", &format!("{}:{}", c.path, c.path))?;
            }
        }
        // .nspawn files cannot carry credentials: pass them on the command line.
        let machine = format!("--machine={}", entry.name);
        let mut creds: Vec<String> = entry
            .credentials
            .iter()
            .map(|c| format!("--load-credential={}:{}", c.id, c.path))
            .collect();
        if let Some(a) = addresses {
            // The container's addresses, before its networkd starts.
            for (id, text) in [
                (addressing::HOST0_DROPIN_CREDENTIAL, host0_dropin(entry, a)?),
                (
                    addressing::HOST0_NETWORK_CREDENTIAL,
                    host0_network(entry, a)?,
                ),
            ] {
                creds.push(format!(
                    "--set-credential={id}:{}",
                    addressing::escape_credential(&text)
                ));
            }
        }
        let mut argv: Vec<&str> = vec![
            &ctx.nspawn_exe,
            "--quiet",
            "--keep-unit",
            "--link-journal=try-guest",
            "--settings=override",
            &machine,
        ];
        argv.extend(creds.iter().map(String::as_str));
        f.reset("ExecStart")?;
        f.set_exec("ExecStart", &argv)?;
    }
    if let Some(extra) = &entry.extra_service {
        Settings::default().merged(Some(extra)).write_to(&mut f)?;
    }
    Ok(f.into_string())
}

/// Everything for one container except zones: the drop-in, the autostart
/// link and its `/run` files (with the whole store or none of it: the
/// bootstrap helper fills in a closure).
pub fn container_files(entry: &Entry, ctx: &Context) -> Result<Vec<OutputFile>, String> {
    let assignment = ctx.assignment(entry, &ctx.claims([entry.name.as_str()]))?;
    container_files_with_closure(entry, ctx, None, &assignment)
}

/// [`container_files`] with the closure of `system` when it is known (for
/// `sharedNix = false`: the bootstrap helper records it, see
/// [`crate::applied::read_closure`]), so generator and helper render the same bytes.
pub fn container_files_with_closure(
    entry: &Entry,
    ctx: &Context,
    closure: Option<&[String]>,
    assignment: &Assignment,
) -> Result<Vec<OutputFile>, String> {
    let unit = paths::unit_name(&entry.name);
    let mut out = vec![OutputFile {
        dest: Dest::Generator(PathBuf::from(format!("{unit}.d/{DROPIN_NAME}"))),
        contents: Contents::File(service_dropin(entry, ctx, assignment)?),
    }];
    if entry.auto_start {
        out.push(OutputFile {
            dest: Dest::Generator(PathBuf::from(format!("machines.target.wants/{unit}"))),
            contents: Contents::Symlink(ctx.unit_dir.join("systemd-nspawn@.service")),
        });
    }
    let store = if entry.shared_nix {
        Store::Shared
    } else {
        Store::Closure(closure.unwrap_or(&[]))
    };
    out.extend(run_files(entry, store, assignment)?);
    Ok(out)
}

/// One container with its address `assignment` ([`Context::assignment`], or
/// the zone plan's for a zone member): the warning when its derived address
/// block is another's, and its files (with the closure of its system for
/// `sharedNix = false`, when known) or why it cannot be rendered. The
/// generator and [`render_registry`] render each container with it.
pub fn render_container(
    entry: &Entry,
    ctx: &Context,
    assignment: Result<Assignment, String>,
    closure: Option<&[String]>,
) -> (Option<EntryError>, Result<Vec<OutputFile>, EntryError>) {
    let mut warning = None;
    let rendered = assignment.and_then(|a| {
        if let Assignment::Pool {
            collision: Some(why),
        } = &a
        {
            warning = Some(EntryError::file(&entry.file(), why.clone()));
        }
        container_files_with_closure(entry, ctx, closure, &a)
    });
    let rendered =
        rendered.map_err(|e| EntryError::file(&entry.file(), format!("cannot be rendered: {e}")));
    (warning, rendered)
}

/// The result of rendering a whole registry.
#[derive(Debug, Default)]
pub struct Rendered {
    pub files: Vec<OutputFile>,
    /// Registry errors plus containers that could not be rendered.
    pub errors: Vec<EntryError>,
    /// Names of the containers rendered.
    pub containers: Vec<String>,
}

/// The addresses of the zones and their members ([`ZonePlan`]): `members`
/// are (container, zone) of every zone member; every member's zone is used.
pub fn zone_plan<'a>(
    ctx: &Context,
    declared: impl IntoIterator<Item = &'a Zone>,
    members: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> ZonePlan {
    ZonePlan::new(ctx.host_network.as_ref().map_err(drop), declared, members)
}

/// Render every valid container and every zone that is declared or used.
pub fn render_registry(reg: &Registry, ctx: &Context) -> Rendered {
    let mut out = Rendered {
        errors: ctx.host_network.clone().err().unwrap_or_default(),
        ..Rendered::default()
    };
    out.errors.extend(reg.errors.iter().cloned());
    let mut zones: BTreeMap<&str, (Zone, bool)> = reg
        .zones
        .iter()
        .map(|(n, z)| (n.as_str(), (z.clone(), true)))
        .collect();
    let mut any_autostart = false;
    let claims = ctx.claims(reg.claimant_names());
    // Zone members last, once every zone and member is known (as the
    // generator does: it streams the others).
    let (members, others): (Vec<&Entry>, Vec<&Entry>) = reg
        .containers
        .iter()
        .partition(|e| e.network.mode == NetworkMode::Zone);
    let mut render = |entry: &Entry, a: Result<Assignment, String>, out: &mut Rendered| {
        let closure = reg.closures.get(&entry.name).map(Vec::as_slice);
        let (warning, rendered) = render_container(entry, ctx, a, closure);
        out.errors.extend(warning);
        match rendered {
            Ok(files) => {
                out.files.extend(files);
                out.containers.push(entry.name.clone());
                any_autostart |= entry.auto_start;
            }
            Err(e) => out.errors.push(e),
        }
    };
    for entry in others {
        render(entry, ctx.assignment(entry, &claims), &mut out);
    }
    let plan = zone_plan(
        ctx,
        reg.zones.values(),
        members
            .iter()
            .map(|e| (e.name.as_str(), e.network.zone.as_deref().unwrap_or(""))),
    );
    out.errors.extend(plan.errors());
    for entry in members {
        render(entry, Ok(plan.member(entry)), &mut out);
        if let (Some(z), true) = (
            &entry.network.zone,
            out.containers.last() == Some(&entry.name),
        ) {
            zones
                .entry(z.as_str())
                .or_insert_with(|| (Zone::undeclared(z), false));
        }
    }
    out.containers.sort();
    for (name, (zone, declared)) in zones {
        match zone_files(&zone, declared, &plan.zone(name)) {
            Ok(files) => out.files.extend(files),
            Err(e) => out.errors.push(EntryError::file(
                &paths::zone_file(name),
                format!("cannot be rendered: {e}"),
            )),
        }
    }
    if any_autostart {
        // Pull machines.target in even where it is not enabled.
        out.files.push(OutputFile {
            dest: Dest::Generator(PathBuf::from("multi-user.target.wants/machines.target")),
            contents: Contents::Symlink(ctx.unit_dir.join("machines.target")),
        });
    }
    out.files.sort_by(|a, b| a.dest.cmp(&b.dest));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| l.starts_with("BindReadOnly="))
            .collect()
    }

    fn with_host(name: &str, json: &str) -> Entry {
        let mut e = Entry::new(name, "/nix/store/aaaa-system");
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        e.network.host = Some(Settings::from_json(&v, "network.host").unwrap());
        e
    }

    /// The `[Section]`s and `Key=value` lines of a rendered file.
    fn body(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    }

    #[test]
    fn host_subnet_addresses_reach_both_sides() {
        let ctx = Context::default();
        let e = with_host(
            "ab",
            r#"{"Network": {"Address": "10.231.8.1/24"}, "DHCPServer": {"DNS": "9.9.9.9"}}"#,
        );
        let a = ctx.assignment(&e, &ctx.claims(["ab"])).unwrap();
        let Assignment::Static(addrs) = &a else {
            panic!("{a:?}")
        };
        // The host side: the admin's address once, no pool address, the DHCP
        // server's pool the container's address alone, the admin's DNS= kept.
        assert_eq!(
            body(&veth_network_file(&e, &a).unwrap()),
            [
                "[Match]",
                "Name=ve-ab",
                "Driver=veth",
                "[Link]",
                "RequiredForOnline=no",
                "[Network]",
                "LinkLocalAddressing=yes",
                "DHCPServer=yes",
                "IPMasquerade=both",
                "LLDP=yes",
                "EmitLLDP=customer-bridge",
                "IPv6AcceptRA=no",
                "IPv6SendRA=yes",
                "Address=10.231.8.1/24",
                "[DHCPServer]",
                "PoolOffset=215",
                "PoolSize=1",
                "DNS=9.9.9.9",
            ]
        );
        // The guest: the derived address, the host side as its gateway.
        assert_eq!(
            body(&host0_dropin(&e, addrs).unwrap()),
            ["[Network]", "Address=10.231.8.215/24", "Gateway=10.231.8.1"]
        );
        let network = host0_network(&e, addrs).unwrap();
        assert!(
            body(&network).contains(&"DHCP=ipv4") && network.contains("Address=10.231.8.215/24\n"),
            "{network}"
        );
        // Passed as credentials on nspawn's command line.
        let dropin = service_dropin(&e, &ctx, &a).unwrap();
        assert!(
            dropin.contains("--set-credential=nixos-nspawn.host0:")
                && dropin.contains("Address=10.231.8.215/24\\\\nGateway=10.231.8.1"),
            "{dropin}"
        );

        // In an [Address] section, /31: no DHCP server (none can run there),
        // and the guest asks for no lease.
        let e = with_host("p2p", r#"{"Address": [{"Address": "192.168.5.0/31"}]}"#);
        let a = ctx.assignment(&e, &ctx.claims(["p2p"])).unwrap();
        let Assignment::Static(addrs) = &a else {
            panic!("{a:?}")
        };
        let host_side = veth_network_file(&e, &a).unwrap();
        let lines = body(&host_side);
        assert!(lines.contains(&"DHCPServer=no"), "{host_side}");
        assert!(!host_side.contains("PoolOffset") && !host_side.contains("Address=0.0.0.0"));
        assert_eq!(
            lines[lines.len() - 2..],
            ["[Address]", "Address=192.168.5.0/31"]
        );
        assert_eq!(
            body(&host0_dropin(&e, addrs).unwrap()),
            ["[Network]", "Address=192.168.5.1/31", "Gateway=192.168.5.0"]
        );
        assert!(body(&host0_network(&e, addrs).unwrap()).contains(&"DHCP=no"));

        // The admin's own DHCP pool: theirs, and DHCP as before.
        let e = with_host(
            "ab",
            r#"{"Network": {"Address": "10.231.8.1/24"}, "DHCPServer": {"PoolOffset": 100, "PoolSize": 20}}"#,
        );
        let a = ctx.assignment(&e, &ctx.claims(["ab"])).unwrap();
        assert_eq!(a, Assignment::Pool { collision: None });
        let host_side = veth_network_file(&e, &a).unwrap();
        assert!(
            body(&host_side).starts_with(&[
                "[Match]",
                "Name=ve-ab",
                "Driver=veth",
                "[Link]",
                "RequiredForOnline=no",
                "[Network]",
                "Address=10.231.8.1/24",
            ]) && host_side.contains("PoolOffset=100\nPoolSize=20\n"),
            "{host_side}"
        );
        assert!(!service_dropin(&e, &ctx, &a).unwrap().contains("credential"));
    }

    #[test]
    fn own_binds_are_id_mapped_only_with_a_user_namespace_and_support() {
        let mut e = Entry::new("web", "/nix/store/aaaa-system");
        e.mount_daemon_socket = true;
        let plain = nspawn_file(&e, Store::Shared).unwrap();
        assert_eq!(
            files_lines(&plain),
            [
                "BindReadOnly=/nix/store",
                "BindReadOnly=/nix/var/nix/db",
                "BindReadOnly=/nix/var/nix/daemon-socket",
                "BindReadOnly=/nix/var/nix/profiles/per-nspawn/web:/nix/var/nix/profiles",
            ]
        );
        e.user_namespacing = true;
        let mapped = nspawn_file(&e, Store::Shared).unwrap();
        assert_eq!(
            files_lines(&mapped),
            [
                "BindReadOnly=/nix/store:/nix/store:idmap",
                "BindReadOnly=/nix/var/nix/db:/nix/var/nix/db:idmap",
                "BindReadOnly=/nix/var/nix/daemon-socket:/nix/var/nix/daemon-socket:idmap",
                "BindReadOnly=/nix/var/nix/profiles/per-nspawn/web:/nix/var/nix/profiles:idmap",
            ]
        );
        let closure = ["/nix/store/aaaa-system".to_string()];
        let no_store = nspawn_file_idmapped(
            &e,
            Store::Closure(&closure),
            IdMap {
                store: false,
                profiles: true,
            },
        )
        .unwrap();
        assert_eq!(
            files_lines(&no_store),
            [
                "BindReadOnly=/nix/store/aaaa-system",
                "BindReadOnly=/nix/var/nix/db:/nix/var/nix/db:idmap",
                "BindReadOnly=/nix/var/nix/daemon-socket:/nix/var/nix/daemon-socket:idmap",
                "BindReadOnly=/nix/var/nix/profiles/per-nspawn/web:/nix/var/nix/profiles:idmap",
            ]
        );
    }
}
