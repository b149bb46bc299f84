//! The conversion, table by table (docs/migration.md): `.conf` files as
//! `nixos-container create` and the classic module write them, and what
//! each becomes. Every converted entry must also pass the registry parser.

use serde_json::{json, Value};

use nixos_nspawn_core::paths;
use nixos_nspawn_core::registry::{self, Entry};

use super::{convert, Conf, Converted};

const SYS: &str = "/nix/store/22222222222222222222222222222222-nixos-system-x";
const IMPERATIVE: &str = "PRIVATE_NETWORK=1\nHOST_ADDRESS=10.233.1.1\nLOCAL_ADDRESS=10.233.1.2\nHOST_BRIDGE=\nHOST_PORT=\nAUTO_START=0\n";
const BRIDGED: &str = "PRIVATE_NETWORK=1\nHOST_ADDRESS=10.233.2.1\nLOCAL_ADDRESS=10.233.2.2\nHOST_BRIDGE=br0\nHOST_PORT=tcp:8080:80,udp:53\nAUTO_START=1\nFLAKE=github:example/config\n";
const DECLARATIVE: &str = "SYSTEM_PATH=/nix/store/11111111111111111111111111111111-nixos-system-classic-declarative-25.05\n\nCOPY_RESOLV_CONF=1\nPRIVATE_NETWORK=1\nHOST_PORT=tcp:2222:22\nHOST_ADDRESS=10.231.136.1\nLOCAL_ADDRESS=10.231.136.2\nHOST_ADDRESS6=fc00::1\nLOCAL_ADDRESS6=fc00::2\nLOCAL_MAC_ADDRESS=de:b7:73:01:10:90\n\nPRIVATE_USERS=pick\nINTERFACES=\"\"\nMACVLANS=\"eth1\"\nAUTO_START=1\nEXTRA_NSPAWN_FLAGS=\" --bind=/home/alice:/home --bind-ro=/srv --capability=CAP_NET_ADMIN --tmpfs=/var/tmp\"\n";
const HOSTIF: &str = "COPY_RESOLV_CONF=0\nPRIVATE_USERS=65536\nINTERFACES=\"eth2 eth3\"\nMACVLANS=\"\"\nEXTRA_NSPAWN_FLAGS=\" --bind-ro=/data:/data --drop-capability=CAP_SYS_CHROOT --ephemeral\"\n";
const ODD: &str = "PRIVATE_NETWORK=1\nLOCAL_ADDRESS=10.0.0.2/24\nLOCAL_ADDRESS6=fd00::2\nHOST_PORT=tcp:x,80\nNETWORK_NAMESPACE_PATH=/run/netns/x\nEXTRA_NSPAWN_FLAGS=\"--link-journal=host --kill-signal SIGTERM --port 81 --read-only --system-call-filter=@a --system-call-filter=~@b --private-users=pick\"\nWEIRD='quoted value'\nWEIRD=second\n";

fn conv(name: &str, text: &str, system: Option<&str>) -> Converted {
    convert(name, &Conf::parse(text), system)
}

/// The entry as the registry has it (canonical JSON: a one-element list of
/// settings values is written as the value), after the parser accepted it.
fn parsed(c: &Converted) -> Value {
    let e: Entry = registry::parse_entry(
        &paths::registry_file(&c.entry.name),
        c.entry.to_json().as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{}: {e:?}\n{}", c.entry.name, c.entry.to_json()));
    assert_eq!(e, c.entry, "the parser reads back what the conversion made");
    serde_json::to_value(&e).unwrap()
}

/// One case: the container's name, its `.conf` file, the system the classic
/// profile points at, and JSON pointers into the entry with their values.
type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a [(&'a str, Value)]);

#[test]
fn conf_files_to_entries() {
    let table: &[Case] = &[
        // nixos-container create NAME --host-address … --local-address …:
        // the fixed point-to-point pair of the registry
        ("classic-imperative", IMPERATIVE, Some(SYS), &[
            ("/network/mode", json!("veth")),
            ("/network/hostAddress", json!("10.233.1.1")),
            ("/network/localAddress", json!("10.233.1.2")),
            ("/network/host", Value::Null),
            ("/autoStart", json!(false)),
            ("/timeoutStartSec", json!("1min")),
            ("/mountDaemonSocket", json!(true)),
            ("/sharedNix", json!(true)),
            ("/userNamespacing", json!(false)),
            ("/declarative", json!(false)),
            ("/system", json!(SYS)),
            ("/activation", json!({"strategy": "dynamic", "reloadScript": null})),
        ]),
        // --bridge br0 --port tcp:8080:80,udp:53 --auto-start --flake …
        ("classic-bridged", BRIDGED, Some(SYS), &[
            ("/network/mode", json!("bridge")),
            ("/network/bridge", json!("br0")),
            ("/network/host", Value::Null),
            ("/autoStart", json!(true)),
            ("/forwardPorts", json!([{"protocol": "tcp", "hostPort": 8080, "containerPort": 80}, {"protocol": "udp", "hostPort": 53, "containerPort": null}])),
        ]),
        // the classic module's file of a declarative container
        ("classic-declarative", DECLARATIVE, None, &[
            ("/system", json!("/nix/store/11111111111111111111111111111111-nixos-system-classic-declarative-25.05")),
            ("/userNamespacing", json!(true)),
            ("/network/hostAddress", json!("10.231.136.1")),
            ("/network/localAddress", json!("10.231.136.2")),
            ("/network/hostAddress6", json!("fc00::1")),
            ("/network/localAddress6", json!("fc00::2")),
            ("/bindMounts", json!(["/home/alice:/home", "/srv:/srv:ro"])),
            ("/extraNspawn", json!({"Exec": {"Capability": "CAP_NET_ADMIN"}, "Files": {"TemporaryFileSystem": "/var/tmp"}, "Network": {"MACVLAN": "eth1"}})),
            ("/forwardPorts/0/hostPort", json!(2222)),
        ]),
        // host network, moved interfaces, a numeric user range
        ("classic-hostif", HOSTIF, Some(SYS), &[
            ("/network/mode", json!("none")),
            ("/ephemeral", json!(true)),
            ("/userNamespacing", json!(false)),
            ("/extraNspawn", json!({"Network": {"Interface": ["eth2", "eth3"]}, "Exec": {"DropCapability": "CAP_SYS_CHROOT", "PrivateUsers": "65536"}})),
            ("/bindMounts", json!(["/data:/data:ro"])),
        ]),
        // only local addresses: routes in the settings form, not a fixed pair
        ("odd", ODD, Some(SYS), &[
            ("/network/host", json!({"Network": {"Address": null, "DHCPServer": false}, "Route": [{"Destination": "10.0.0.2/24"}, {"Destination": "fd00::2/128"}]})),
            ("/systemCallFilter", json!("@a ~@b")),
            ("/userNamespacing", json!(true)),
            ("/forwardPorts", json!([{"protocol": "tcp", "hostPort": 80, "containerPort": null}, {"protocol": "tcp", "hostPort": 81, "containerPort": null}])),
            ("/extraNspawn", json!({"Files": {"ReadOnly": true}})),
        ]),
        // addresses with different prefixes: no fixed pair, the settings form
        ("prefixes", "PRIVATE_NETWORK=1\nHOST_ADDRESS=10.0.0.1/24\nLOCAL_ADDRESS=10.0.0.2\n", Some(SYS), &[
            ("/network/host", json!({"Network": {"Address": null, "DHCPServer": false}, "Address": [{"Address": "10.0.0.1/24", "Peer": "10.0.0.2/32"}]})),
        ]),
        // one subnet, both with its prefix: the fixed pair keeps it
        ("subnet", "PRIVATE_NETWORK=1\nHOST_ADDRESS=10.0.5.1/24\nLOCAL_ADDRESS=10.0.5.2/24\n", Some(SYS), &[
            ("/network/hostAddress", json!("10.0.5.1/24")),
            ("/network/localAddress", json!("10.0.5.2/24")),
        ]),
        // only a host address: the settings form
        ("hostonly", "PRIVATE_NETWORK=1\nHOST_ADDRESS6=fc00::1\n", Some(SYS), &[
            ("/network/host/Address", json!([{"Address": "fc00::1/128"}])),
        ]),
        // -p VALUE is a port too, and a port needs an interface
        ("p", "PRIVATE_NETWORK=1\nEXTRA_NSPAWN_FLAGS=\"-p 8080:80\"\n", Some(SYS), &[
            ("/forwardPorts/0/containerPort", json!(80)),
            ("/network/mode", json!("veth")),
            ("/network/host", Value::Null),
        ]),
        // capability lists split on commas; --setenv, -E and --tmpfs values kept whole
        (
            "caps",
            "EXTRA_NSPAWN_FLAGS=\"--capability=CAP_NET_ADMIN,CAP_SYS_TIME -E A=1,2 --tmpfs=/a,b\"\n",
            Some(SYS),
            &[(
                "/extraNspawn",
                json!({"Exec": {"Capability": ["CAP_NET_ADMIN", "CAP_SYS_TIME"], "Environment": "A=1,2"}, "Files": {"TemporaryFileSystem": "/a,b"}}),
            )],
        ),
        // no PRIVATE_NETWORK: the host's network
        ("hostnet", "AUTO_START=1\n", Some(SYS), &[
            ("/network/mode", json!("host")),
            ("/autoStart", json!(true)),
        ]),
    ];
    for (name, text, system, want) in table {
        let c = conv(name, text, *system);
        let got = parsed(&c);
        for (pointer, value) in *want {
            assert_eq!(
                got.pointer(pointer),
                Some(value),
                "{name}: {pointer} in {got:#}"
            );
        }
        if *name != "odd" {
            assert!(c.unsupported.is_empty(), "{name}: {:?}", c.unsupported);
        }
    }
}

#[test]
fn container_side_and_notes() {
    let c = conv("classic-declarative", DECLARATIVE, None);
    assert_eq!(
        c.container,
        Some(json!({
            "addresses": [{"Address": "10.231.136.2/32", "Peer": "10.231.136.1/32"}, {"Address": "fc00::2/128", "Peer": "fc00::1/128"}],
            "gateway": ["10.231.136.1", "fc00::1"],
            "networkConfig": {"DHCP": "no"},
            "linkConfig": {"MACAddress": "de:b7:73:01:10:90"},
        }))
    );
    assert!(c
        .notes
        .iter()
        .any(|n| n.starts_with("COPY_RESOLV_CONF=1 dropped")));
    let c = conv("classic-bridged", BRIDGED, Some(SYS));
    assert!(c.notes[0].starts_with("FLAKE=github:example/config"));
    assert_eq!(
        c.container, None,
        "a bridge: no static addresses on a ve- link"
    );
    let c = conv("classic-hostif", HOSTIF, Some(SYS));
    assert!(c
        .notes
        .iter()
        .any(|n| n.starts_with("PRIVATE_USERS=65536 kept")));
    assert!(c
        .notes
        .last()
        .unwrap()
        .contains("/nix/var/nix/profiles/per-container/classic-hostif"));
}

#[test]
fn what_cannot_be_carried_over() {
    let c = conv("odd", ODD, Some(SYS));
    assert_eq!(c.unsupported.len(), 3, "{:#?}", c.unsupported);
    assert!(c.unsupported[0].starts_with("NETWORK_NAMESPACE_PATH=/run/netns/x"));
    assert!(
        c.unsupported[1].starts_with("HOST_PORT entry \"tcp:x\""),
        "{}",
        c.unsupported[1]
    );
    assert!(c.unsupported[2].contains("--kill-signal=SIGTERM has no nixos-nspawn equivalent"));
    assert!(c
        .notes
        .iter()
        .any(|n| n == "WEIRD=second is not a setting the classic module writes; it was ignored"));
    assert!(c.notes.iter().any(|n| n.contains("LinkJournal=try-guest")));

    // A bind mount the registry cannot hold, and a port out of range.
    let c = conv(
        "bad",
        "PRIVATE_NETWORK=1\nHOST_PORT=70000\nEXTRA_NSPAWN_FLAGS=\"--bind=relative:/x --bind=/ok\"\n",
        Some(SYS),
    );
    assert_eq!(c.unsupported.len(), 2, "{:#?}", c.unsupported);
    assert!(
        c.unsupported[0].contains("\"70000\" is not a port number"),
        "{}",
        c.unsupported[0]
    );
    assert!(
        c.unsupported[1].contains("\"relative:/x\""),
        "{}",
        c.unsupported[1]
    );
    assert_eq!(parsed(&c).pointer("/bindMounts"), Some(&json!(["/ok:/ok"])));
}

#[test]
fn no_system() {
    let c = conv("nosys", "PRIVATE_NETWORK=1\n", None);
    assert_eq!(c.entry.system, "");
    let c = conv("sys", "SYSTEM_PATH=/nix/store/x-system\n", Some(SYS));
    assert_eq!(
        c.entry.system, SYS,
        "the profile's system wins over SYSTEM_PATH"
    );
}

/// One flag case: `EXTRA_NSPAWN_FLAGS`, JSON pointers into the entry with their
/// values, and the start of the one note or refusal the flags give (if any).
type FlagCase<'a> = (&'a str, &'a [(&'a str, Value)], Option<&'a str>);

/// Every flag of nix/lib/nspawn-flags.json (every spelling), and what it becomes.
#[test]
fn every_flag_of_the_table() {
    let table: &[FlagCase] = &[
        ("--bind=/a:/b:norbind --bind-ro /c", &[("/bindMounts", json!(["/a:/b:norbind", "/c:/c:ro"]))], None),
        ("--bind-user=alice", &[("/extraNspawn", json!({"Files": {"BindUser": "alice"}}))], None),
        ("--capability=CAP_A,CAP_B --drop-capability CAP_SYS_CHROOT --ambient-capability=CAP_NET_RAW,CAP_SYS_NICE", &[
            ("/extraNspawn/Exec", json!({"Capability": ["CAP_A", "CAP_B"], "DropCapability": "CAP_SYS_CHROOT", "AmbientCapability": ["CAP_NET_RAW", "CAP_SYS_NICE"]})),
        ], None),
        ("--tmpfs=/x:mode=0755", &[("/extraNspawn", json!({"Files": {"TemporaryFileSystem": "/x:mode=0755"}}))], None),
        ("--system-call-filter=@a --system-call-filter ~@b", &[("/systemCallFilter", json!("@a ~@b"))], None),
        ("--private-users=pick", &[("/userNamespacing", json!(true)), ("/extraNspawn", Value::Null)], None),
        ("--private-users 65536:65536", &[("/userNamespacing", json!(false)), ("/extraNspawn", json!({"Exec": {"PrivateUsers": "65536:65536"}}))], None),
        // -U: --private-users=pick (the registry's userNamespacing also sets PrivateUsersOwnership=auto)
        ("-U", &[("/userNamespacing", json!(true)), ("/extraNspawn", Value::Null)], None),
        ("--private-users-ownership=chown", &[("/extraNspawn", json!({"Files": {"PrivateUsersOwnership": "chown"}}))], None),
        ("--network-veth-extra=ve-a:vb --network-interface=eth1 --network-macvlan eth2 --network-ipvlan=eth3", &[
            ("/extraNspawn", json!({"Network": {"VirtualEthernetExtra": "ve-a:vb", "Interface": "eth1", "MACVLAN": "eth2", "IPVLAN": "eth3"}})),
        ], None),
        ("--port 81 -p udp:82:83 --port=tcp:84", &[
            ("/forwardPorts", json!([
                {"protocol": "tcp", "hostPort": 81, "containerPort": null},
                {"protocol": "udp", "hostPort": 82, "containerPort": 83},
                {"protocol": "tcp", "hostPort": 84, "containerPort": null},
            ])),
            ("/network/mode", json!("veth")),
        ], None),
        ("--setenv=A=1 -E B=2,3", &[("/extraNspawn", json!({"Exec": {"Environment": ["A=1", "B=2,3"]}}))], None),
        ("--resolv-conf=off --timezone off --personality=x86 --hostname=h --uuid=0123456789abcdef0123456789abcdef --no-new-privileges=yes", &[
            ("/extraNspawn", json!({"Exec": {"ResolvConf": "off", "Timezone": "off", "Personality": "x86", "Hostname": "h", "MachineID": "0123456789abcdef0123456789abcdef", "NoNewPrivileges": "yes"}})),
        ], None),
        ("--overlay=/a:/b --overlay-ro /c:/d --inaccessible=/e", &[
            ("/extraNspawn", json!({"Files": {"Overlay": "/a:/b", "OverlayReadOnly": "/c:/d", "Inaccessible": "/e"}})),
        ], None),
        // RLIMIT_NAME, LimitNAME and NAME, as nspawn reads them
        ("--rlimit=RLIMIT_NOFILE=1024 --rlimit LimitNPROC=50 --rlimit=CORE=0:infinity", &[
            ("/extraNspawn", json!({"Exec": {"LimitNOFILE": "1024", "LimitNPROC": "50", "LimitCORE": "0:infinity"}})),
        ], None),
        ("--rlimit=FOO=1", &[("/extraNspawn", Value::Null)], Some("EXTRA_NSPAWN_FLAGS: --rlimit=FOO=1 is not --rlimit=NAME=LIMIT")),
        // the scope's properties are the service's: systemd-nspawn@.service runs it with --keep-unit
        ("--property=CPUQuota=50% --property MemoryMax=1G", &[
            ("/extraService", json!({"Service": {"CPUQuota": "50%", "MemoryMax": "1G"}})),
        ], None),
        ("--property=CPUQuota", &[("/extraService", Value::Null)], Some("EXTRA_NSPAWN_FLAGS: --property=CPUQuota is not --property=NAME=VALUE")),
        ("--read-only", &[("/extraNspawn", json!({"Files": {"ReadOnly": true}}))], None),
        ("--volatile", &[("/extraNspawn", json!({"Files": {"Volatile": "yes"}}))], None),
        ("--volatile=state", &[("/extraNspawn", json!({"Files": {"Volatile": "state"}}))], None),
        ("--ephemeral", &[("/ephemeral", json!(true))], None),
        ("-x", &[("/ephemeral", json!(true))], None),
        ("--private-network", &[("/network/mode", json!("none")), ("/extraNspawn", Value::Null)], None),
        ("--link-journal=host", &[("/extraNspawn", Value::Null)], Some("EXTRA_NSPAWN_FLAGS: --link-journal=host dropped: nixos-nspawn always uses LinkJournal=try-guest")),
        // value flags nixos-nspawn sets itself: refused, their value not taken for a flag
        ("--network-bridge br0", &[], Some("EXTRA_NSPAWN_FLAGS: --network-bridge=br0 has no nixos-nspawn equivalent")),
        ("--network-zone z", &[], Some("EXTRA_NSPAWN_FLAGS: --network-zone=z has no nixos-nspawn equivalent")),
        ("--kill-signal SIGTERM", &[], Some("EXTRA_NSPAWN_FLAGS: --kill-signal=SIGTERM has no nixos-nspawn equivalent")),
        ("--console=passive", &[], Some("EXTRA_NSPAWN_FLAGS: --console=passive has no nixos-nspawn equivalent")),
    ];
    let mut covered = std::collections::BTreeSet::new();
    for (flags, want, message) in table {
        for w in flags.split_whitespace() {
            covered.insert(w.split_once('=').map_or(w, |(f, _)| f));
        }
        let c = conv(
            "flags",
            &format!("PRIVATE_NETWORK=1\nEXTRA_NSPAWN_FLAGS=\"{flags}\"\n"),
            Some(SYS),
        );
        let got = parsed(&c);
        for (pointer, value) in *want {
            assert_eq!(
                got.pointer(pointer),
                Some(value),
                "{flags}: {pointer} in {got:#}"
            );
        }
        let flag_notes: Vec<&String> = c
            .notes
            .iter()
            .chain(&c.unsupported)
            .filter(|n| n.starts_with("EXTRA_NSPAWN_FLAGS"))
            .collect();
        match message {
            Some(m) => assert!(
                flag_notes.len() == 1 && flag_notes[0].starts_with(m),
                "{flags}: {flag_notes:#?}"
            ),
            None => assert!(
                flag_notes.is_empty() && c.unsupported.is_empty(),
                "{flags}: {flag_notes:#?} {:#?}",
                c.unsupported
            ),
        }
    }
    // nix/lib/nspawn-flags.nix reads the same table: it must make the same of every case.
    let cases: Vec<&str> = table.iter().map(|(flags, _, _)| *flags).collect();
    if let Some(from_nix) = nix_flag_effects(&cases) {
        for (flags, nix) in cases.iter().zip(from_nix) {
            assert_eq!(
                rust_flag_effects(flags),
                nix,
                "{flags}: Rust and Nix differ"
            );
        }
    } else {
        eprintln!(
            "skipped: nix-instantiate is not on PATH, nix/lib/nspawn-flags.nix was not compared"
        );
    }
    let missing: Vec<&str> = super::flags::spellings()
        .into_iter()
        .filter(|f| !covered.contains(f))
        .collect();
    assert!(
        missing.is_empty(),
        "flags of the table without a case: {missing:?}"
    );
}

/// What each flag of `flags` amounts to, as nix/lib/nspawn-flags.nix's
/// flagEffect gives it: only the fields it sets.
fn rust_flag_effects(flags: &str) -> Value {
    let conf = Conf::parse(&format!("EXTRA_NSPAWN_FLAGS=\"{flags}\"\n"));
    let items = |v: &[(String, String, Vec<Value>)]| -> Value {
        v.iter()
            .map(|(s, k, v)| json!({"s": s, "k": k, "v": v}))
            .collect()
    };
    let effects = conf.extra_flags().into_iter().map(|(flag, value)| {
        let mut fx = super::flags::Effects::default();
        super::flags::effect(&mut fx, &flag, value.as_deref());
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: Value, set: bool| {
            if set {
                m.insert(k.into(), v);
            }
        };
        put("binds", json!(fx.binds), !fx.binds.is_empty());
        put("nspawn", items(&fx.nspawn), !fx.nspawn.is_empty());
        put("service", items(&fx.service), !fx.service.is_empty());
        put("syscalls", json!(fx.syscalls), !fx.syscalls.is_empty());
        put(
            "privateUsers",
            json!(fx.private_users),
            !fx.private_users.is_empty(),
        );
        put("ports", json!(fx.ports), !fx.ports.is_empty());
        put("ephemeral", json!(true), fx.ephemeral);
        put("notes", json!(fx.notes), !fx.notes.is_empty());
        put(
            "unsupported",
            json!(fx.unsupported),
            !fx.unsupported.is_empty(),
        );
        Value::Object(m)
    });
    Value::Array(effects.collect())
}

/// nix/lib/nspawn-flags.nix's `map flagEffect (flagPairs WORDS)` of each case,
/// or `None` when Nix is not installed (the package's build sandbox).
fn nix_flag_effects(cases: &[&str]) -> Option<Vec<Value>> {
    let lib =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../nix/lib/nspawn-flags.nix");
    let words: Vec<Vec<&str>> = cases
        .iter()
        .map(|c| c.split_whitespace().collect())
        .collect();
    let expr = format!(
        "{{ cases }}: let c = import {}; in map (ws: map c.flagEffect (c.flagPairs ws)) (builtins.fromJSON cases)",
        lib.display()
    );
    let cases = json!(words).to_string();
    let value = nixos_nspawn_core::testing::nix_eval(
        &["-E", &expr, "--argstr", "cases", &cases],
        &[],
        std::path::Path::new("."),
    )?;
    Some(serde_json::from_value(value).expect("a list of effects"))
}
