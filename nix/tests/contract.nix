# The Nix side of the registry contract (schema v1), evaluated without nixpkgs:
#
#   nix-instantiate --eval --strict --json nix/tests/contract.nix
#
# gives { containers, zones, invalid, invalidZones, selfCheck }:
#   containers.<name> / zones.<name>: what nix/lib/registry-entry.nix produces for
#     representative option values (every network mode, ports, bind mounts,
#     credentials, extraNspawn/extraService, every activation strategy, NixOS-style
#     settings names). The Rust parser must accept every one
#     (crates/core/tests/nix_contract.rs; nix/checks/run writes them to a tree).
#   invalid / invalidZones: entries the Nix side rejects; the Rust parser must
#     reject them too, with an error naming `field`.
#   selfCheck: problems of the Nix side itself (a valid case it rejects, an invalid
#     case it accepts, or one it rejects for another field); must be empty.
let
  registry = import ../lib/registry-entry.nix;
  sys = n: "/nix/store/00000000000000000000000000000000-nixos-system-${n}-25.05";

  # Option values as a user would write them, named as the module options are.
  valid = {
    web = {
      declarative = true;
      bindMounts = [ "/srv/www:/var/www:ro" "/var/lib/web-cache" "/srv/data:/data:ro,norbind" "/srv/id:/id:idmap" ];
      forwardPorts = [
        { hostPort = 8080; containerPort = 80; }
        { protocol = "udp"; hostPort = 5353; }
        { protocol = "tcp"; hostPort = 8443; containerPort = 443; }
      ];
      credentials = [
        { id = "db-password"; path = "/run/secrets/db"; }
        { id = "tls.key"; path = "host-credential-name"; }
      ];
      # NixOS-style names, translated to sections
      hostNetworkConfig = {
        address = [ "" "10.231.136.1/28" "fd42::1/64" ];
        networkConfig.DHCPServer = false;
        Network.LLDP = null;
        ipv6Prefixes = [ { ipv6PrefixConfig = { Prefix = "fd42::/64"; Assign = true; }; } ];
        routes = [ { Destination = "10.99.0.0/16"; Gateway = "10.231.136.2"; } ];
        dhcpServerStaticLeases = [ { MACAddress = "02:00:00:00:00:01"; Address = "10.231.136.5"; } ];
      };
      extraNspawn = {
        execConfig.Capability = [ "CAP_NET_ADMIN" "CAP_SYS_TIME" ];
        Files.TemporaryFileSystem = "/tmp";
        Network.Interface = null;
      };
      extraService = {
        serviceConfig = { MemoryMax = "2G"; CPUWeight = 50; };
        Unit.Documentation = "https://example.org/web";
      };
      activation.strategy = "dynamic";
      timeoutStartSec = "5min 30s";
      systemCallFilter = "@system-service ~@mount";
    };
    # zone, restart strategy, closure-only store, not started at boot
    db = {
      declarative = true;
      zone = "backend";
      autoStart = false;
      sharedNix = false;
      activation.strategy = "restart";
      forwardPorts = [ { hostPort = 5432; } ];
      timeoutStartSec = "infinity";
    };
    # existing bridge, reload with a custom script, user namespacing
    bridged = {
      bridge = "br0";
      userNamespacing = true;
      ephemeral = true;
      activation = { strategy = "reload"; reloadScript = "/nix/store/00000000000000000000000000000000-reload.sh"; };
      bindMounts = [ "/srv/shared:/shared:rw,rootidmap" ];
    };
    # host network, never touched by apply, daemon socket, python-nixos-nspawn's alias
    hostnet = {
      networkMode = "host";
      mountDaemonSocket = true;
      activation = { strategy = "none"; autoStart = false; };
      timeoutStartSec = "90";
    };
    # private network without interfaces
    isolated = { networkMode = "none"; activation.strategy = "restart"; };
    # all defaults, and a name at the 64-character limit with dots
    "a.very-long.container-name.that-is-exactly-sixty-four-characters" = { };
    # an explicit veth mode with settings in systemd's own names only
    plain = {
      networkMode = "veth";
      hostNetworkConfig = { Network = { Address = "10.0.5.1/24"; IPMasquerade = "ipv4"; }; DHCPServer = { PoolOffset = 10; PoolSize = 20; }; };
    };
    # fixed addresses instead of the derived ones: a point-to-point IPv4 pair,
    # an IPv6 subnet pair
    fixed = {
      hostAddress = "10.231.136.1";
      localAddress = "10.231.136.2";
      hostAddress6 = "fc00:1::1/64";
      localAddress6 = "fc00:1::2/64";
      hostNetworkConfig.Network.IPMasquerade = "ipv4";
    };
  };

  # The classic module's short options, one container each (nix/lib/short-options.nix).
  # tests/golden/short-options/input holds exactly these entries (checked by
  # crates/core/tests/nix_contract.rs), so the golden test shows the files they
  # become. `expect`: the fields the option must have set.
  shortCases = {
    s-interfaces = {
      options = { interfaces = [ "eth1" "br-lan" ]; networkMode = "none"; };
      expect = e: e.extraNspawn == { Network.Interface = [ "eth1" "br-lan" ]; }
        && e.extraService == { Unit = {
          Wants = [ "sys-subsystem-net-devices-eth1.device" "sys-subsystem-net-devices-br\\x2dlan.device" ];
          After = [ "sys-subsystem-net-devices-eth1.device" "sys-subsystem-net-devices-br\\x2dlan.device" ];
        }; };
    };
    s-macvlans = {
      options = { macvlans = [ "eth2" ]; };
      expect = e: e.extraNspawn == { Network.MACVLAN = [ "eth2" ]; } && e.extraService == null;
    };
    s-tun = {
      options = { enableTun = true; };
      expect = e: e.extraNspawn == { Exec.Capability = [ "CAP_NET_ADMIN" ]; }
        && e.extraService == { Service.DeviceAllow = [ "/dev/net/tun rwm" ]; };
    };
    s-devices = {
      options = {
        allowedDevices = [ { node = "/dev/fuse"; modifier = "rwm"; } { node = "char-usb_device"; modifier = "rw"; } ];
        bindMounts = [ "/dev/fuse" ];
      };
      expect = e: e.extraService == { Service.DeviceAllow = [ "/dev/fuse rwm" "char-usb_device rw" ]; }
        && e.bindMounts == [ "/dev/fuse" ];
    };
    s-tmpfs = {
      options = { tmpfs = [ "/var/tmp" "/scratch:size=64M,mode=1777" ]; };
      expect = e: e.extraNspawn == { Files.TemporaryFileSystem = [ "/var/tmp" "/scratch:size=64M,mode=1777" ]; };
    };
    # the user's own extraNspawn keys come first, the option's are added
    s-capabilities = {
      options = { additionalCapabilities = [ "CAP_NET_ADMIN" "CAP_MKNOD" ]; extraNspawn.execConfig.Capability = "CAP_SYS_TIME"; };
      expect = e: e.extraNspawn == { Exec.Capability = [ "CAP_SYS_TIME" "CAP_NET_ADMIN" "CAP_MKNOD" ]; };
    };
    # split into words as the classic start script does (`--setenv FOO=bar` over two
    # elements); each flag to its setting or field
    s-flags = {
      options = {
        extraFlags = [ "--drop-capability=CAP_SYS_CHROOT --bind-ro=/srv/data:/data" "--setenv" "FOO=bar" "--port=udp:5353" "--private-users=pick" "--system-call-filter=~@mount" ];
        systemCallFilter = "@system-service";
        userNamespacing = false;
      };
      expect = e: e.extraNspawn == { Exec = { DropCapability = [ "CAP_SYS_CHROOT" ]; Environment = [ "FOO=bar" ]; }; }
        && e.bindMounts == [ "/srv/data:/data:ro" ]
        && e.forwardPorts == [ { protocol = "udp"; hostPort = 5353; containerPort = null; } ]
        && e.userNamespacing && e.systemCallFilter == "@system-service ~@mount";
    };
  };
  shortEntries = builtins.mapAttrs (name: c: registry.entry (c.options // { inherit name; system = sys name; })) shortCases;

  # Classic NixOS containers' .conf files, converted as docs/migration.md says
  # (nix/lib/classic.nix, the reference for `nixos-nspawn import-classic`).
  classic = import ../lib/classic.nix;
  classicCases = {
    # written by `nixos-container create old --host-address … --local-address …`
    classic-imperative = {
      system = sys "classic-imperative";
      text = "PRIVATE_NETWORK=1\nHOST_ADDRESS=10.233.1.1\nLOCAL_ADDRESS=10.233.1.2\nHOST_BRIDGE=\nHOST_PORT=\nAUTO_START=0\n";
      expect = e: e.network.mode == "veth" && !e.autoStart && e.timeoutStartSec == "1min" && e.mountDaemonSocket
        && e.network.host == { Network = { Address = null; DHCPServer = false; }; Address = [ { Address = "10.233.1.1/32"; Peer = "10.233.1.2/32"; } ]; };
    };
    # `nixos-container create … --bridge br0 --port tcp:8080:80,udp:53 --auto-start --flake …`
    classic-bridged = {
      system = sys "classic-bridged";
      text = "PRIVATE_NETWORK=1\nHOST_ADDRESS=10.233.2.1\nLOCAL_ADDRESS=10.233.2.2\nHOST_BRIDGE=br0\nHOST_PORT=tcp:8080:80,udp:53\nAUTO_START=1\nFLAKE=github:example/config\n";
      expect = e: e.network == { mode = "bridge"; bridge = "br0"; zone = null; host = null; } && e.autoStart
        && e.forwardPorts == [ { protocol = "tcp"; hostPort = 8080; containerPort = 80; } { protocol = "udp"; hostPort = 53; containerPort = null; } ];
    };
    # written by the classic module for a declarative container (SYSTEM_PATH, bind mounts
    # and extraFlags in EXTRA_NSPAWN_FLAGS)
    classic-declarative = {
      system = null;
      text = ''
        SYSTEM_PATH=${sys "classic-declarative"}

        COPY_RESOLV_CONF=1
        PRIVATE_NETWORK=1
        HOST_PORT=tcp:2222:22
        HOST_ADDRESS=10.231.136.1
        LOCAL_ADDRESS=10.231.136.2
        HOST_ADDRESS6=fc00::1
        LOCAL_ADDRESS6=fc00::2
        LOCAL_MAC_ADDRESS=de:b7:73:01:10:90

        PRIVATE_USERS=pick
        INTERFACES=""
        MACVLANS="eth1"
        AUTO_START=1
        EXTRA_NSPAWN_FLAGS=" --bind=/home/alice:/home --bind-ro=/srv --capability=CAP_NET_ADMIN --tmpfs=/var/tmp"
      '';
      expect = e: e.system == sys "classic-declarative" && e.userNamespacing && e.autoStart
        && e.bindMounts == [ "/home/alice:/home" "/srv:/srv:ro" ]
        && e.extraNspawn == { Exec.Capability = [ "CAP_NET_ADMIN" ]; Files.TemporaryFileSystem = [ "/var/tmp" ]; Network.MACVLAN = [ "eth1" ]; }
        && builtins.length e.network.host.Address == 2;
    };
    # host network, moved interface (a private network without veth), numeric user range
    classic-hostif = {
      system = sys "classic-hostif";
      text = "COPY_RESOLV_CONF=0\nPRIVATE_USERS=65536\nINTERFACES=\"eth2 eth3\"\nMACVLANS=\"\"\nEXTRA_NSPAWN_FLAGS=\" --bind-ro=/data:/data --drop-capability=CAP_SYS_CHROOT --ephemeral\"\n";
      expect = e: e.network.mode == "none" && e.ephemeral && !e.userNamespacing
        && e.extraNspawn == { Network.Interface = [ "eth2" "eth3" ]; Exec = { DropCapability = [ "CAP_SYS_CHROOT" ]; PrivateUsers = [ "65536" ]; }; }
        && e.bindMounts == [ "/data:/data:ro" ];
    };
  };
  classicResults = builtins.mapAttrs
    (name: c: classic.fromConf { inherit name; inherit (c) text system; })
    classicCases;

  containers = builtins.mapAttrs
    (name: o: registry.entry (o // { inherit name; system = sys name; }))
    valid
    // builtins.mapAttrs (_: r: r.entry) classicResults
    // shortEntries;

  validZones = {
    backend = { hostNetworkConfig = { address = [ "10.42.0.1/24" ]; Network.DHCPServer = false; }; };
    lan = { hostNetworkConfig = null; netdevConfig = { NetDev.MACAddress = "02:00:00:00:01:01"; Bridge = { STP = true; }; }; };
    abcdefghijkl = { hostNetworkConfig = { ipv6Prefixes = [ { Prefix = "fd43::/64"; } ]; networkConfig.IPv6SendRA = true; }; };
  };
  zones = builtins.mapAttrs (name: o: registry.zone (o // { inherit name; })) validZones;

  # Each case: option values the Nix side rejects, and the field the parser must name.
  invalidCases = [
    { name = "longzone"; field = "network.zone"; options = { zone = "thirteenchars"; }; }
    { name = "zonebridge"; field = "network.bridge"; options = { zone = "z"; bridge = "br0"; }; }
    { name = "hostinzone"; field = "network.host"; options = { zone = "z"; hostNetworkConfig.Network.DHCPServer = false; }; }
    { name = "bad_name"; field = "name"; options = { }; }
    # 64 characters: a valid machine name length, but a label longer than a host name may be
    { name = "a123456789b123456789c123456789d123456789e123456789f123456789g123"; field = "name"; options = { }; }
    { name = "spacebind"; field = "bindMounts[0]"; options = { bindMounts = [ "/srv/my data:/data" ]; }; }
    { name = "relbind"; field = "bindMounts[1]"; options = { bindMounts = [ "/ok" "srv:/data" ]; }; }
    { name = "badbindopt"; field = "bindMounts[0]"; options = { bindMounts = [ "/a:/b:readonly" ]; }; }
    { name = "dupbind"; field = "bindMounts[1]"; options = { bindMounts = [ "/a:/x" "/b:/x:ro" ]; }; }
    { name = "port0"; field = "forwardPorts[0].hostPort"; options = { forwardPorts = [ { hostPort = 0; } ]; }; }
    { name = "bigport"; field = "forwardPorts[0].containerPort"; options = { forwardPorts = [ { hostPort = 80; containerPort = 70000; } ]; }; }
    { name = "dupport"; field = "forwardPorts[1]"; options = { forwardPorts = [ { hostPort = 80; } { hostPort = 80; containerPort = 8080; } ]; }; }
    { name = "porthost"; field = "forwardPorts"; options = { networkMode = "host"; forwardPorts = [ { hostPort = 80; } ]; }; }
    { name = "credcolon"; field = "credentials[0].id"; options = { credentials = [ { id = "a:b"; path = "/run/x"; } ]; }; }
    { name = "credrel"; field = "credentials[0].path"; options = { credentials = [ { id = "a"; path = "run/x"; } ]; }; }
    { name = "relreload"; field = "activation.reloadScript"; options = { activation.reloadScript = "reload.sh"; }; }
    { name = "badtimeout"; field = "timeoutStartSec"; options = { timeoutStartSec = "soon"; }; }
    { name = "newline"; field = "extraNspawn.Exec.Environment"; options = { extraNspawn.Exec.Environment = "A=1\nB=2"; }; }
    { name = "badsection"; field = "extraService.Service]"; options = { extraService."Service]" = { }; }; }
    { name = "badaddress"; field = "network.host.Network.Address[1]"; options = { hostNetworkConfig.address = [ "10.0.0.1/24" "not-an-address" ]; }; }
    { name = "nobridge"; field = "network.bridge"; options = { networkMode = "bridge"; }; }
    { name = "longbridge"; field = "network.bridge"; options = { bridge = "a-very-long-bridge0"; }; }
    { name = "badfilter"; field = "systemCallFilter"; options = { systemCallFilter = "read;write"; }; }
    { name = "halfpair"; field = "network.localAddress"; options = { hostAddress = "10.231.136.1"; }; }
    { name = "pairinzone"; field = "network.hostAddress6"; options = { zone = "z"; hostAddress6 = "fc00::1"; localAddress6 = "fc00::2"; }; }
    { name = "pairandhost"; field = "network.hostAddress"; options = { hostAddress = "10.0.0.1"; localAddress = "10.0.0.2"; hostNetworkConfig.address = [ "10.0.0.1/24" ]; }; }
  ];
  invalid = map
    (c:
      let e = registry.entry (c.options // { inherit (c) name; system = sys c.name; }); in
      { inherit (c) name field; entry = e; nixErrors = (registry.diagnose (c.options // { inherit (c) name; system = sys c.name; })).errors; })
    invalidCases;

  invalidZoneCases = [
    { name = "thirteenchars"; field = "name"; options = { }; }
    { name = "badaddr"; field = "network.Network.Address"; options = { hostNetworkConfig.Network.Address = "10.0.0.300.1"; }; }
    { name = "nullrepeat"; field = "netdev.Bridge[0].STP"; options = { netdevConfig.Bridge = [ { STP = null; } ]; }; }
  ];
  invalidZones = map
    (c:
      let o = c.options // { inherit (c) name; }; in
      { inherit (c) name field; zone = registry.zone o; nixErrors = (registry.diagnoseZone o).errors; })
    invalidZoneCases;

  # The exact key sets of schema v1: the parser refuses unknown keys.
  keys = {
    entry = [ "activation" "autoStart" "bindMounts" "credentials" "declarative" "ephemeral" "extraNspawn"
      "extraService" "forwardPorts" "mountDaemonSocket" "name" "network" "sharedNix" "system"
      "systemCallFilter" "timeoutStartSec" "userNamespacing" "version" ];
    network = [ "bridge" "host" "mode" "zone" ];
    # present only when set (the parser's canonical JSON omits them too)
    networkOptional = [ "hostAddress" "hostAddress6" "localAddress" "localAddress6" ];
    activation = [ "reloadScript" "strategy" ];
    forwardPort = [ "containerPort" "hostPort" "protocol" ];
    credential = [ "id" "path" ];
    zone = [ "name" "netdev" "network" "version" ];
  };
  keyProblems = what: expected: attrs:
    if builtins.attrNames attrs == expected then [ ]
    else [ "${what}: keys ${builtins.toJSON (builtins.attrNames attrs)}, schema v1 has ${builtins.toJSON expected}" ];
  entryKeyProblems = name: e:
    keyProblems "container ${name}" keys.entry e
    ++ keyProblems "container ${name}: network" keys.network
      (removeAttrs e.network keys.networkOptional)
    ++ keyProblems "container ${name}: activation" keys.activation e.activation
    ++ builtins.concatMap (keyProblems "container ${name}: forwardPorts[]" keys.forwardPort) e.forwardPorts
    ++ builtins.concatMap (keyProblems "container ${name}: credentials[]" keys.credential) e.credentials;

  selfCheck =
    builtins.concatLists (builtins.attrValues (builtins.mapAttrs
      (name: r:
        (if classicCases.${name}.expect r.entry then [ ] else [ "classic ${name}: unexpected entry ${builtins.toJSON r.entry}" ])
        ++ map (u: "classic ${name}: unsupported: ${u}") r.unsupported
        ++ map (e: "classic ${name} rejected by Nix: ${e.field}: ${e.message}") (registry.diagnose r.options).errors)
      classicResults))
    ++ (let u = classic.fromConf { name = "netns"; system = sys "netns"; text = "NETWORK_NAMESPACE_PATH=/run/netns/x\nEXTRA_NSPAWN_FLAGS=\"--foo=1\"\n"; }; in
        if builtins.length u.unsupported == 2 then [ ] else [ "classic: unsupported settings not reported: ${builtins.toJSON u.unsupported}" ])
    ++ builtins.concatLists (builtins.attrValues (builtins.mapAttrs
      (name: c:
        (if c.expect shortEntries.${name} then [ ] else [ "short option case ${name}: unexpected entry ${builtins.toJSON shortEntries.${name}}" ])
        ++ map (e: "short option case ${name} rejected by Nix: ${e.field}: ${e.message}")
          (registry.diagnose (c.options // { inherit name; system = sys name; })).errors
        ++ map (e: "short option case ${name}: ${e.message}") (registry.shortOptionProblems c.options).errors)
      shortCases))
    ++ (let p = registry.shortOptionProblems { extraFlags = [ "--console=passive" "--port=tcp:x" ]; }; in
        if builtins.length p.errors == 2 && builtins.all (e: e.option == "extraFlags") p.errors then [ ]
        else [ "short options: unsupported extraFlags not reported: ${builtins.toJSON p}" ])
    ++ builtins.concatLists (builtins.attrValues (builtins.mapAttrs entryKeyProblems containers))
    ++ builtins.concatLists (builtins.attrValues (builtins.mapAttrs (n: z: keyProblems "zone ${n}" keys.zone z) zones))
    ++ builtins.concatLists (builtins.attrValues (builtins.mapAttrs
      (name: o:
        map (e: "valid container ${name} rejected by Nix: ${e.field}: ${e.message}")
          (registry.diagnose (o // { inherit name; system = sys name; })).errors)
      valid))
    ++ builtins.concatLists (builtins.attrValues (builtins.mapAttrs
      (name: o: map (e: "valid zone ${name} rejected by Nix: ${e.field}: ${e.message}")
        (registry.diagnoseZone (o // { inherit name; })).errors)
      validZones))
    ++ builtins.concatMap
      (c: if builtins.any (e: e.field == c.field) c.nixErrors then [ ]
          else [ "invalid case ${c.name}: Nix does not report field ${c.field} (reports: ${builtins.toJSON (map (e: e.field) c.nixErrors)})" ])
      (invalid ++ invalidZones);
in
{
  inherit containers zones selfCheck;
  shortOptionCases = builtins.attrNames shortCases;
  invalid = map (c: { inherit (c) name field entry; }) invalid;
  invalidZones = map (c: { inherit (c) name field zone; }) invalidZones;
}
