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
#   invalid / invalidZones: entries from option values the parser must reject,
#     with an error naming `field` (the parser is the one validator: Nix does not
#     repeat its checks; the modules run it at build time, system.checks).
#   selfCheck: problems of the Nix side itself (a valid case it rejects, schema v1
#     keys); must be empty.
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
    # the flags of nspawn-flags.json with a .nspawn setting or service property beyond
    # the classic module's own; -U is --private-users=pick
    s-newflags = {
      options = {
        extraFlags = [ "-U --volatile=overlay --bind-user=alice --ambient-capability=CAP_NET_RAW,CAP_SYS_NICE"
          "--uuid=0123456789abcdef0123456789abcdef --rlimit=RLIMIT_NOFILE=4096 --rlimit" "NPROC=512"
          "--property=CPUQuota=50% --property MemoryMax=1G" ];
        extraService.Service.TasksMax = 100;
      };
      expect = e: e.extraNspawn == {
          Exec = { AmbientCapability = [ "CAP_NET_RAW" "CAP_SYS_NICE" ]; MachineID = [ "0123456789abcdef0123456789abcdef" ];
            LimitNOFILE = [ "4096" ]; LimitNPROC = [ "512" ]; };
          Files = { Volatile = [ "overlay" ]; BindUser = [ "alice" ]; };
        }
        && e.extraService == { Service = { TasksMax = 100; CPUQuota = [ "50%" ]; MemoryMax = [ "1G" ]; }; }
        && e.userNamespacing;
    };
  };
  shortEntries = builtins.mapAttrs (name: c: registry.entry (c.options // { inherit name; system = sys name; })) shortCases;

  containers = builtins.mapAttrs
    (name: o: registry.entry (o // { inherit name; system = sys name; }))
    valid
    // shortEntries;

  validZones = {
    backend = { hostNetworkConfig = { address = [ "10.42.0.1/24" ]; Network.DHCPServer = false; }; };
    lan = { hostNetworkConfig = null; netdevConfig = { NetDev.MACAddress = "02:00:00:00:01:01"; Bridge = { STP = true; }; }; };
    abcdefghijkl = { hostNetworkConfig = { ipv6Prefixes = [ { Prefix = "fd43::/64"; } ]; networkConfig.IPv6SendRA = true; }; };
  };
  zones = builtins.mapAttrs (name: o: registry.zone (o // { inherit name; })) validZones;

  # Each case: option values the parser rejects, and the field it must name.
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
      { inherit (c) name field; entry = e; })
    invalidCases;

  invalidZoneCases = [
    { name = "thirteenchars"; field = "name"; options = { }; }
    { name = "badaddr"; field = "network.Network.Address"; options = { hostNetworkConfig.Network.Address = "10.0.0.300.1"; }; }
    { name = "nullrepeat"; field = "netdev.Bridge[0].STP"; options = { netdevConfig.Bridge = [ { STP = null; } ]; }; }
  ];
  invalidZones = map
    (c:
      let o = c.options // { inherit (c) name; }; in
      { inherit (c) name field; zone = registry.zone o; })
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
      validZones));
in
{
  inherit containers zones selfCheck;
  inherit invalid invalidZones;
  shortOptionCases = builtins.attrNames shortCases;
}
