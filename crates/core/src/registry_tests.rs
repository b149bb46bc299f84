use super::*;
use crate::Root;
use serde_json::json;

const FILE: &str = "/etc/nixos-nspawn/containers/web.json";

fn full() -> Value {
    json!({
        "version": 1,
        "name": "web",
        "declarative": true,
        "system": "/nix/store/0000-nixos-system-web",
        "autoStart": true,
        "ephemeral": false,
        "userNamespacing": false,
        "timeoutStartSec": "90s",
        "systemCallFilter": null,
        "sharedNix": true,
        "mountDaemonSocket": false,
        "bindMounts": ["/srv/web:/var/www:ro"],
        "forwardPorts": [{ "protocol": "tcp", "hostPort": 8080, "containerPort": 80 }],
        "credentials": [{ "id": "db-password", "path": "/run/secrets/db" }],
        "network": { "mode": "veth", "zone": null, "bridge": null, "host": null },
        "activation": { "strategy": "dynamic", "reloadScript": null },
        "extraNspawn": null,
        "extraService": null
    })
}

fn parse(v: &Value) -> Result<Entry, Vec<EntryError>> {
    parse_entry(Path::new(FILE), v.to_string().as_bytes())
}

/// Set a JSON pointer in a copy of the full example.
fn with(pointer: &str, value: Value) -> Value {
    let mut v = full();
    *v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer}")) = value;
    v
}

#[test]
fn design_example_parses_and_round_trips() {
    let e = parse(&full()).unwrap();
    assert_eq!(e.name, "web");
    assert_eq!(e.bind_mounts[0].host, "/srv/web");
    assert_eq!(e.bind_mounts[0].container, "/var/www");
    assert!(e.bind_mounts[0].read_only);
    assert_eq!(e.forward_ports[0].nspawn_value(), "tcp:8080:80");
    // What we write is exactly what we read.
    assert_eq!(serde_json::to_value(&e).unwrap(), full());
    assert_eq!(
        parse_entry(Path::new(FILE), e.to_json().as_bytes()).unwrap(),
        e
    );
}

#[test]
fn minimal_entry_gets_defaults() {
    let e = parse(&json!({ "version": 1, "name": "web", "system": "/nix/store/x" })).unwrap();
    let mut expected = Entry::new("web", "/nix/store/x");
    expected.declarative = false;
    assert_eq!(e, expected);
}

/// Every bad input: (what, document, expected error lines).
#[test]
fn bad_inputs_name_file_field_and_value() {
    let f = FILE;
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        ("unknown key", with("/network/mode", json!("veth")).as_object().cloned().map(|mut m| { m.insert("colour".into(), json!("red")); Value::Object(m) }).unwrap(),
            vec![format!("{f}: colour: unknown field; expected one of: activation, autoStart, bindMounts, credentials, declarative, ephemeral, extraNspawn, extraService, forwardPorts, mountDaemonSocket, name, network, sharedNix, source, system, systemCallFilter, timeoutStartSec, userNamespacing, version")]),
        ("wrong type", with("/autoStart", json!("yes")),
            vec![format!("{f}: autoStart: expected true or false, found \"yes\"")]),
        ("name mismatch", with("/name", json!("db")),
            vec![format!("{f}: name: \"db\" does not match the file name (expected \"web\")")]),
        ("invalid name", with("/name", json!("we b")),
            vec![format!("{f}: name: \"we b\" contains ' '; only ASCII letters, digits, '-' and '.' are allowed")]),
        ("relative system", with("/system", json!("nix/store/x")),
            vec![format!("{f}: system: \"nix/store/x\" is not an absolute path")]),
        ("dotdot system", with("/system", json!("/nix/store/../etc")),
            vec![format!("{f}: system: \"/nix/store/../etc\" contains '.' or '..' components")]),
        ("newline", with("/system", json!("/nix/store/x\n[Service]")),
            vec![format!("{f}: system: \"/nix/store/x\\n[Service]\" contains a line break ('\\n'), which cannot be written to a unit file")]),
        ("nul", with("/timeoutStartSec", json!("9\u{0}0s")),
            vec![format!("{f}: timeoutStartSec: \"9\\00s\" contains a NUL byte ('\\0'), which cannot be written to a unit file")]),
        ("port 0", with("/forwardPorts/0/hostPort", json!(0)),
            vec![format!("{f}: forwardPorts[0].hostPort: 0 is not a port number (1-65535)")]),
        ("port 70000", with("/forwardPorts/0/containerPort", json!(70000)),
            vec![format!("{f}: forwardPorts[0].containerPort: 70000 is not a port number (1-65535)")]),
        ("protocol", with("/forwardPorts/0/protocol", json!("sctp")),
            vec![format!("{f}: forwardPorts[0].protocol: \"sctp\" is not one of \"tcp\", \"udp\"")]),
        ("bad cidr", with("/network/host", json!({ "Network": { "Address": "10.0.0.300/24" } })),
            vec![format!("{f}: network.host.Network.Address: \"10.0.0.300/24\" is not an IP address or CIDR like 10.0.0.1/24")]),
        ("bad prefix", with("/network/host", json!({ "IPv6Prefix": [{ "Prefix": "fd00::/129" }] })),
            vec![format!("{f}: network.host.IPv6Prefix[0].Prefix: \"fd00::/129\" is not a CIDR prefix like fd00::/64")]),
        ("zone without mode", with("/network/zone", json!("lan")),
            vec![format!("{f}: network.zone: \"lan\" is set but network.mode is \"veth\", not \"zone\"")]),
        ("zone mode without zone", with("/network/mode", json!("zone")),
            vec![format!("{f}: network.zone: is required when network.mode is \"zone\"")]),
        ("bind relative", with("/bindMounts/0", json!("srv:/srv")),
            vec![format!("{f}: bindMounts[0]: \"srv:/srv\": host path \"srv\" is not an absolute path")]),
        ("bind option", with("/bindMounts/0", json!("/srv:/srv:rx")),
            vec![format!("{f}: bindMounts[0]: \"/srv:/srv:rx\": unknown option \"rx\"; expected ro, rw, rbind, norbind, idmap, noidmap, rootidmap")]),
        ("credential id", with("/credentials/0/id", json!("a:b")),
            vec![format!("{f}: credentials[0].id: \"a:b\" contains ':'; only ASCII letters, digits, '-', '_', '.' and '@' are allowed")]),
        ("strategy", with("/activation/strategy", json!("sometimes")),
            vec![format!("{f}: activation.strategy: \"sometimes\" is not one of \"none\", \"reload\", \"restart\", \"dynamic\"")]),
        ("timespan", with("/timeoutStartSec", json!("soon")),
            vec![format!("{f}: timeoutStartSec: \"soon\" is not a systemd time span (e.g. \"90s\", \"5min\", \"infinity\")")]),
        ("timespan too long", with("/timeoutStartSec", json!("99999999999999999999999y")),
            vec![format!("{f}: timeoutStartSec: \"99999999999999999999999y\" is longer than systemd can count (at most about 584,000 years; use \"infinity\")")]),
        ("ExecStart without reset", with("/extraService", json!({"Service": {"ExecStart": "/bin/true"}})),
            vec![format!("{f}: extraService.Service.ExecStart: \"/bin/true\" would be a second ExecStart= of the service, which systemd refuses; reset the generated one first: [\"\", \"/bin/true\"]")]),
        ("version", with("/version", json!(2)),
            vec![format!("{f}: version: 2 is not a supported schema version (this nixos-nspawn reads version 1)")]),
        ("ports with host network", with("/network/mode", json!("host")),
            vec![format!("{f}: forwardPorts: port forwarding needs a private network with an interface, but network.mode is \"host\"")]),
        ("settings value type", with("/extraNspawn", json!({ "Exec": { "Environment": { "A": "b" } } })),
            vec![format!("{f}: extraNspawn.Exec.Environment: expected a string, number or boolean, found {{\"A\":\"b\"}}")]),
        // Issue 11: values that re-target the project's own mounts or networking.
        ("bind over /", with("/bindMounts/0", json!("/srv:/")),
            vec![format!("{f}: bindMounts[0]: \"/srv:/\": container path \"/\" is the container's root file system; bind elsewhere")]),
        ("bind over the store", with("/bindMounts/0", json!("/srv/evil:/nix/store")),
            vec![format!("{f}: bindMounts[0]: \"/srv/evil:/nix/store\": container path \"/nix/store\" is where nixos-nspawn mounts the Nix store; bind elsewhere")]),
        ("bind below the store", with("/bindMounts/0", json!("/srv/evil:/nix/store/abc-bash:ro")),
            vec![format!("{f}: bindMounts[0]: \"/srv/evil:/nix/store/abc-bash:ro\": container path \"/nix/store/abc-bash\" lies below /nix/store, where nixos-nspawn mounts the Nix store; bind elsewhere")]),
        ("bind over the profile", with("/bindMounts/0", json!("/srv/p:/nix/var/nix/profiles")),
            vec![format!("{f}: bindMounts[0]: \"/srv/p:/nix/var/nix/profiles\": container path \"/nix/var/nix/profiles\" is where nixos-nspawn mounts the container's profile (it boots from it); bind elsewhere")]),
        ("bind below the profile", with("/bindMounts/0", json!("/srv/p:/nix/var/nix/profiles/system")),
            vec![format!("{f}: bindMounts[0]: \"/srv/p:/nix/var/nix/profiles/system\": container path \"/nix/var/nix/profiles/system\" lies below /nix/var/nix/profiles, where nixos-nspawn mounts the container's profile (it boots from it); bind elsewhere")]),
        ("bind source in another container", with("/bindMounts/0", json!("/var/lib/machines/evil/share/data:/data")),
            vec![format!("{f}: bindMounts[0]: \"/var/lib/machines/evil/share/data:/data\": host path \"/var/lib/machines/evil/share/data\" lies inside /var/lib/machines, where the containers' root file systems are: a container can plant links there, which the host would follow; bind a directory outside it")]),
        ("bind source: all machines", with("/bindMounts/0", json!("/var/lib/machines:/m:ro")),
            vec![format!("{f}: bindMounts[0]: \"/var/lib/machines:/m:ro\": host path \"/var/lib/machines\" lies inside /var/lib/machines, where the containers' root file systems are: a container can plant links there, which the host would follow; bind a directory outside it")]),
        ("bind source: a profile", with("/bindMounts/0", json!("/nix/var/nix/profiles/per-nspawn/db:/p:ro")),
            vec![format!("{f}: bindMounts[0]: \"/nix/var/nix/profiles/per-nspawn/db:/p:ro\": host path \"/nix/var/nix/profiles/per-nspawn/db\" lies inside /nix/var/nix/profiles/per-nspawn, where the containers' profiles are: a container can plant links there, which the host would follow; bind a directory outside it")]),
        ("bind over the daemon socket", with("/mountDaemonSocket", json!(true)).as_object().cloned().map(|mut m| { m.insert("bindMounts".into(), json!(["/srv/x:/nix/var/nix/daemon-socket"])); Value::Object(m) }).unwrap(),
            vec![format!("{f}: bindMounts[0]: \"/srv/x:/nix/var/nix/daemon-socket\": container path \"/nix/var/nix/daemon-socket\" is (or lies below) /nix/var/nix/daemon-socket, which mountDaemonSocket mounts itself: bind elsewhere")]),
        ("network.host [Match]", with("/network/host", json!({ "Match": { "Name": "eth0" }, "Network": { "DHCPServer": true } })),
            vec![format!("{f}: network.host.Match: the [Match] section decides which link these settings configure (nixos-nspawn matches its own link by name); it cannot be set here")]),
        ("network.host [Match] repeated", with("/network/host", json!({ "Match": [{ "Name": "eth0" }] })),
            vec![format!("{f}: network.host.Match: the [Match] section decides which link these settings configure (nixos-nspawn matches its own link by name); it cannot be set here")]),
        ("unknown nspawn section", with("/extraNspawn", json!({ "Service": { "ExecStart": "/bin/sh" }, "Files": { "Bind": "/srv" } })),
            vec![format!("{f}: extraNspawn.Service: \"Service\" is not a section of .nspawn files (systemd.nspawn(5): Exec, Files, Network); nspawn would ignore it")]),
        ("several at once", with("/ephemeral", json!(1)).as_object().cloned().map(|mut m| { m.insert("system".into(), json!(5)); Value::Object(m) }).unwrap(),
            vec![
                format!("{f}: system: expected a string, found 5"),
                format!("{f}: ephemeral: expected true or false, found 1"),
            ]),
    ];
    for (what, doc, expected) in cases {
        let errors = parse(&doc).expect_err(what);
        let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(got, expected, "{what}");
    }
}

#[test]
fn whole_file_problems() {
    let p = Path::new(FILE);
    let msg = |r: Result<Entry, Vec<EntryError>>| r.unwrap_err()[0].to_string();
    assert_eq!(msg(parse_entry(p, b"")), format!("{FILE}: is empty"));
    assert_eq!(
        msg(parse_entry(p, b"\xff\xfe")),
        format!("{FILE}: is not valid UTF-8 (at byte 0)")
    );
    assert!(msg(parse_entry(p, b"{\"version\": 1,"))
        .starts_with(&format!("{FILE}: is not valid JSON: EOF")));
    assert_eq!(
        msg(parse_entry(p, b"[1]")),
        format!("{FILE}: (top level): expected an object, found [1]")
    );
    let long = format!("{{\"version\": 1, \"name\": \"{}\"}}", "x".repeat(500));
    let errs = parse_entry(p, long.as_bytes()).unwrap_err();
    assert!(
        errs.iter().all(|e| e.to_string().len() < 300),
        "values are shortened in messages"
    );
}

#[test]
fn duplicate_keys_are_refused_with_their_path() {
    let p = Path::new(FILE);
    let msg = |text: &str| {
        parse_entry(p, text.as_bytes())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        msg(r#"{"version": 1, "name": "web", "system": "/nix/store/a", "system": "/nix/store/b"}"#),
        vec![format!("{FILE}: system: is given twice (line 1, column 64); a key may appear only once in an object")]
    );
    assert_eq!(
        msg("{\"version\": 1, \"name\": \"web\", \"system\": \"/nix/store/a\",\n \"network\": {\"host\": {\"Network\": {\"DHCPServer\": true, \"DHCPServer\": false}}}}"),
        vec![format!("{FILE}: network.host.Network.DHCPServer: is given twice (line 2, column 66); a key may appear only once in an object")]
    );
    assert_eq!(
        msg(r#"{"version": 1, "name": "web", "system": "/nix/store/a", "forwardPorts": [{"hostPort": 1}, {"hostPort": 2, "hostPort": 3}]}"#),
        vec![format!("{FILE}: forwardPorts[1].hostPort: is given twice (line 1, column 116); a key may appear only once in an object")]
    );
    // Nothing else changes: the same values as serde_json's own parser.
    let text = full().to_string();
    assert_eq!(
        strict_json::from_str(&text).ok().unwrap(),
        serde_json::from_str::<Value>(&text).unwrap()
    );
    for odd in ["[1, 2.5, -3, 1e400, null]", "\"x\"", "{\"a\": {\"b\": []}}"] {
        let ours = strict_json::from_str(odd).ok();
        assert_eq!(ours, serde_json::from_str::<Value>(odd).ok(), "{odd}");
    }
    assert!(
        strict_json::from_str("{} x").is_err(),
        "trailing characters"
    );
    // The same key in different objects is fine.
    parse_entry(
        p,
        br#"{"version": 1, "name": "web", "system": "/nix/store/a", "extraNspawn": {"Exec": {"Boot": false}, "Network": {"Boot": 1}}}"#,
    )
    .unwrap();
}

#[test]
fn zones_cannot_rename_their_link() {
    let p = Path::new("/etc/nixos-nspawn/zones/lan.json");
    let errs: Vec<String> = parse_zone(
        p,
        br#"{"version":1,"name":"lan","network":{"Match":{"Name":"eth0"}},"netdev":{"NetDev":{"Name":"eth0"}}}"#,
    )
    .unwrap_err()
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(errs, vec![
        "/etc/nixos-nspawn/zones/lan.json: network.Match: the [Match] section decides which link these settings configure (nixos-nspawn matches its own link by name); it cannot be set here".to_string(),
        "/etc/nixos-nspawn/zones/lan.json: netdev.NetDev: the bridge's name is the zone's (vz-ZONE): [NetDev] Name= cannot be set, and [NetDev] cannot be repeated".to_string(),
    ]);
    // Other [NetDev] keys and [Bridge] settings stay allowed.
    parse_zone(
        p,
        br#"{"version":1,"name":"lan","network":null,"netdev":{"NetDev":{"MTUBytes":1400},"Bridge":{"STP":true}}}"#,
    )
    .unwrap();
}

#[test]
fn bind_mount_forms() {
    let b = BindMount::parse("/srv").unwrap();
    assert_eq!(
        (b.host.as_str(), b.container.as_str(), b.read_only),
        ("/srv", "/srv", false)
    );
    let b = BindMount::parse("/a::ro,norbind").unwrap();
    assert_eq!(b.container, "/a");
    assert_eq!(b.to_string(), "/a:/a:ro,norbind");
    assert!(BindMount::parse("/a b:/c").is_err());
    assert!(BindMount::parse("/a:/b:ro:x").is_err());
    assert!(BindMount::parse("/a\\:/b").is_err());
}

#[test]
fn timespans() {
    for ok in ["90s", "90", "5min 30s", "1.5h", "infinity", "2min"] {
        assert!(check_timespan(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "s",
        "5 parsecs",
        "-1s",
        "infinite",
        "1e3",
        "12.34.56",
        "5x",
    ] {
        assert!(check_timespan(bad).is_err(), "{bad}");
    }
    // Values as systemd's parse_sec() computes them (microseconds).
    let us = |s: &str| parse_timespan(s).unwrap();
    assert_eq!(us("90s"), Some(90_000_000));
    assert_eq!(us("90"), Some(90_000_000));
    assert_eq!(us("5min 30s"), Some(330_000_000));
    assert_eq!(us("5min30s"), Some(330_000_000));
    assert_eq!(us("1.5h"), Some(5_400_000_000));
    assert_eq!(us(".5s"), Some(500_000));
    assert_eq!(us("2 ms"), Some(2_000));
    assert_eq!(us("1M"), Some(2_629_800_000_000));
    assert_eq!(us("1y"), Some(31_557_600_000_000));
    assert_eq!(us("0"), Some(0));
    assert_eq!(us("infinity"), None);
    // Issue 12: systemd ignores these (ERANGE); they must be refused.
    for huge in [
        "99999999999999999999999y",
        "600000y",
        "18446744073709551615us",
        "9223372036854775807s",
    ] {
        let e = parse_timespan(huge).unwrap_err();
        assert!(e.contains("longer than systemd can count"), "{huge}: {e}");
    }
    // The largest year count that still fits.
    assert!(parse_timespan("584000y").is_ok());
}

#[test]
fn zones() {
    let p = Path::new("/etc/nixos-nspawn/zones/lan.json");
    let z = parse_zone(p, br#"{"version":1,"name":"lan","network":{"Network":{"Address":"10.1.0.1/24"}},"netdev":null}"#).unwrap();
    assert_eq!(z.name, "lan");
    let errs = parse_zone(
        p,
        br#"{"version":1,"name":"lan","network":{"Network":{"Address":"nope"}},"extra":1}"#,
    )
    .unwrap_err();
    let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(got, vec![
        "/etc/nixos-nspawn/zones/lan.json: network.Network.Address: \"nope\" is not an IP address or CIDR like 10.0.0.1/24".to_string(),
        "/etc/nixos-nspawn/zones/lan.json: extra: unknown field; expected one of: ipv4Subnet, ipv6Subnet, name, netdev, network, version".to_string(),
    ]);
    let p = Path::new("/etc/nixos-nspawn/zones/waytoolongzone.json");
    assert!(parse_zone(p, br#"{"version":1,"name":"waytoolongzone"}"#).is_err());
}

#[test]
fn load_collects_good_and_bad() {
    let (d, root) = crate::testing::temp_root();
    let dir = root.registry_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("web.json"), full().to_string()).unwrap();
    std::fs::write(dir.join("bad.json"), "{").unwrap();
    std::fs::write(dir.join(".web.json.tmp"), "{").unwrap(); // atomic-write leftover
    std::fs::write(dir.join("README"), "not json").unwrap();
    std::fs::create_dir(dir.join("dir.json")).unwrap();
    std::fs::write(
        dir.join("big.json"),
        vec![b' '; (MAX_FILE_SIZE + 1) as usize],
    )
    .unwrap();
    let reg = load(&root);
    assert_eq!(reg.containers.len(), 1);
    assert_eq!(reg.containers[0].name, "web");
    let errs: Vec<String> = reg.errors.iter().map(ToString::to_string).collect();
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs[0].starts_with("/etc/nixos-nspawn/containers/bad.json: is not valid JSON"),
        "{errs:?}"
    );
    assert_eq!(errs[1], format!("/etc/nixos-nspawn/containers/big.json: is {} bytes; registry files have at most {MAX_FILE_SIZE}", MAX_FILE_SIZE + 1));
    assert_eq!(
        errs[2],
        "/etc/nixos-nspawn/containers/dir.json: is not a regular file"
    );
    // A missing registry is an empty one, not an error.
    let empty = load(&Root::new(d.path().join("nothing")));
    assert!(empty.containers.is_empty() && empty.errors.is_empty());
}

/// [`parse_timespan`] against systemd's own parser (`systemd-analyze
/// timespan`), where it is installed: the same verdict and the same value.
#[test]
fn timespans_agree_with_systemd() {
    let have = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        eprintln!("skipped: no systemd-analyze");
        return;
    }
    let samples = [
        "90s",
        "90",
        "0",
        "5min 30s",
        "5min30s",
        "1.5h",
        ".5s",
        "12.34 .56",
        "12.34s.56",
        "2 ms",
        "1M",
        "1m",
        "3 weeks 2d",
        "1y 1M 1w 1d 1h 1min 1s 1ms 1us",
        "1.000001s",
        "0.0000001s",
        "584000y",
        "600000y",
        "99999999999999999999999y",
        "9223372036854775807s",
        "9223372036854775807us",
        "18446744073709551614us",
        "12.34.56",
        "5x",
        "s",
        "1e3",
        "infinity",
        "5 parsecs",
        "-1s",
        "1 hr",
        "2hours",
        "7 day",
    ];
    for t in samples {
        let out = std::process::Command::new("systemd-analyze")
            .args(["timespan", t])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let theirs: Option<Option<u64>> = if out.status.success() {
            let v = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("\u{3bc}s: "))
                .unwrap_or_else(|| panic!("{t}: {text}"));
            // systemd prints infinity as u64::MAX microseconds.
            Some(match v.parse::<u64>().unwrap() {
                u64::MAX => None,
                n => Some(n),
            })
        } else {
            None
        };
        assert_eq!(parse_timespan(t).ok(), theirs, "{t:?}");
    }
}
#[test]
fn build_source_round_trips_and_is_optional() {
    // Absent: not written back (entries without it keep their exact bytes).
    let e = parse(&full()).unwrap();
    assert!(e.source.is_none());
    assert!(!e.to_json().contains("source"));
    for (kind, value) in [
        (SourceKind::Config, "/etc/containers/web.nix"),
        (
            SourceKind::Expression,
            "services.nginx.enable = true;\n\tnetworking.firewall.enable = false;",
        ),
        (
            SourceKind::Flake,
            "/srv/flake#nixosContainers.x86_64-linux.web",
        ),
    ] {
        let mut v = full();
        v["source"] = json!({ kind.key(): value, "platform": "aarch64-linux", "nixArgs": ["--option", "substitute", "false", "--impure"] });
        let e = parse(&v).unwrap();
        let s = e.source.clone().unwrap();
        assert_eq!((s.kind, s.value.as_str()), (kind, value));
        assert_eq!(s.platform.as_deref(), Some("aarch64-linux"));
        assert_eq!(s.nix_args.len(), 4);
        assert_eq!(serde_json::to_value(&e).unwrap(), v, "written as read");
        assert_eq!(
            parse_entry(Path::new(FILE), e.to_json().as_bytes()).unwrap(),
            e
        );
    }
}

#[test]
fn bad_build_sources() {
    let f = FILE;
    let msgs = |source: Value| -> Vec<String> {
        let mut v = full();
        v["source"] = source;
        parse(&v)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(
        msgs(json!({})),
        vec![format!(
            "{f}: source: needs one of config, expression or flake"
        )]
    );
    assert_eq!(
        msgs(json!({"config": "/a.nix", "flake": ".#web"})),
        vec![format!(
            "{f}: source: has more than one of config, expression and flake"
        )]
    );
    assert_eq!(
        msgs(json!({"config": "web.nix"})),
        vec![format!(
            "{f}: source.config: \"web.nix\" is not an absolute path"
        )]
    );
    assert_eq!(
        msgs(json!({"expression": "a = 1;\u{1b}[2J"})),
        vec![format!("{f}: source.expression: contains the control character '\\u{{1b}}', which a Nix expression does not need")]
    );
    assert_eq!(
        msgs(json!({"flake": "a b"})),
        vec![format!(
            "{f}: source.flake: \"a b\" is not a flake reference (empty or with whitespace)"
        )]
    );
    assert_eq!(
        msgs(json!({"flake": ".#web", "nixArgs": ["--option\nx", 3]})),
        vec![
            format!("{f}: source.nixArgs[0]: \"--option\\nx\" contains a line break"),
            format!("{f}: source.nixArgs[1]: expected a string, found 3"),
        ]
    );
    assert_eq!(
        msgs(json!({"flake": ".#web", "colour": 1})),
        vec![format!("{f}: source.colour: unknown field; expected one of: config, expression, flake, nixArgs, platform")]
    );
}
