# Evaluates the host module (nix/modules/hypervisor.nix) and the container profile
# (nix/modules/container.nix) with nixpkgs' lib alone: lib.evalModules plus the
# stand-in option declarations of stubs.nix / container-stubs.nix. Container
# instances given as `config` are evaluated through fake-nixpkgs/, whose
# eval-config.nix uses the same stand-ins instead of NixOS.
#
#   nix-instantiate --eval --strict --json nix/checks/module-eval.nix \
#     --arg nixpkgsLib /path/to/nixpkgs/lib
#
# gives { results = [ { name; ok; detail; } ]; files = { containers; zones; }; }:
# `files` are the registry entries and zone files the module puts in /etc (parsed),
# for the Rust parser to accept (crates/core/tests/nix_contract.rs, nix/checks/run).
{ nixpkgsLib }:
let
  lib = import nixpkgsLib;
  inherit (lib) filter hasInfix hasPrefix attrNames mapAttrs' nameValuePair removePrefix;

  sys = n: "/nix/store/11111111111111111111111111111111-nixos-system-${n}-25.05";
  fakeNixpkgs = toString ./fake-nixpkgs;
  fakePackage = "/nix/store/00000000000000000000000000000000-nixos-nspawn-0.1.0";

  evalHost = modules: (lib.evalModules {
    modules = [ ../modules/hypervisor.nix ./stubs.nix ] ++ modules;
  }).config;
  evalContainer = modules: (lib.evalModules {
    modules = [ ../modules/container.nix ./container-stubs.nix ] ++ modules;
  }).config;

  failed = cfg: map (a: a.message) (filter (a: !a.assertion) cfg.assertions);
  etcUnder = cfg: dir:
    lib.mapAttrs' (n: v: nameValuePair (lib.removeSuffix ".json" (removePrefix "${dir}/" n)) (builtins.fromJSON v.text))
      (lib.filterAttrs (n: _: hasPrefix "${dir}/" n) cfg.environment.etc);
  containersOf = cfg: etcUnder cfg "nixos-nspawn/containers";
  zonesOf = cfg: etcUnder cfg "nixos-nspawn/zones";

  test = name: ok: detail: { inherit name ok; detail = if ok then "" else detail; };
  show = builtins.toJSON;

  # A container given as a NixOS configuration, evaluated through fake-nixpkgs.
  viaConfig = config: {
    nixpkgs = fakeNixpkgs;
    specialArgs.checkLib = lib;
    inherit config;
  };

  goodInstances = {
    web = {
      path = sys "web";
      forwardPorts = [ { hostPort = 8080; containerPort = 80; } ];
      bindMounts = [ "/srv/www:/var/www:ro" ];
      credentials = [ { id = "db"; path = "/run/secrets/db"; } ];
      hostNetworkConfig = { address = [ "10.231.136.1/28" ]; networkConfig.DHCPServer = false; };
      extraNspawn.execConfig.Capability = [ "CAP_NET_ADMIN" ];
    };
    db = { path = sys "db"; zone = "lan"; autoStart = false; sharedNix = false; };
    bridged = { path = sys "bridged"; bridge = "br0"; activation.strategy = "reload"; };
    hostnet = { path = sys "hostnet"; networkMode = "host"; activation.strategy = "none"; };
    isolated = { path = sys "isolated"; networkMode = "none"; };
    # classic containers.<name>.bindMounts form
    legacy = {
      path = sys "legacy";
      bindMounts = { "/home" = { hostPath = "/home/alice"; isReadOnly = false; }; "/srv" = { }; };
    };
    # settings from both places: instance options and nixosContainer.* in config
    mixed = viaConfig {
      nixosContainer.bindMounts = [ "/from-config" ];
      nixosContainer.sharedNix = false;
      nixosContainer.timeoutStartSec = "3min";
    } // {
      bindMounts = [ "/from-instance:/inst:ro" ];
      containerNetworkConfig = { address = [ "10.42.0.9/24" ]; networkConfig.DHCP = "no"; };
      zone = "lan";
      autoStart = false;
    };
    plainconfig = viaConfig { };
  };
  good = evalHost [ {
    nixos.containers.instances = goodInstances;
    nixos.containers.zones.lan = {
      hostNetworkConfig.address = [ "10.42.0.1/24" ];
      netdevConfig = { };
    };
  } ];
  goodEntries = containersOf good;

  # One instance per case, and a text its assertion message must contain.
  badCases = [
    { name = "zone and bridge"; instance = { zone = "lan"; bridge = "br0"; }; expect = "are both set"; }
    { name = "reload without sharedNix"; instance = { sharedNix = false; activation.strategy = "reload"; }; expect = "with sharedNix = false"; }
    { name = "dynamic without sharedNix (explicit)"; instance = { sharedNix = false; activation.strategy = "dynamic"; }; expect = "sharedNix = true, or activation.strategy = \"restart\""; }
    { name = "hostNetworkConfig in a zone"; instance = { zone = "lan"; hostNetworkConfig.Network.DHCPServer = false; }; expect = "nixos.containers.zones.lan.hostNetworkConfig"; }
    { name = "hostNetworkConfig on a bridge"; instance = { bridge = "br0"; hostNetworkConfig.address = [ "10.0.0.1/24" ]; }; expect = "attached to the bridge"; }
    { name = "zone name longer than 12"; instance = { zone = "thirteenchars"; }; expect = "zones have at most 12"; }
    { name = "invalid container name"; instanceName = "web_1"; instance = { }; expect = "the container name \"web_1\" contains"; }
    { name = "container name too long"; instanceName = lib.concatStrings (lib.genList (_: "a") 65); instance = { }; expect = "machine names have at most 64"; }
    { name = "bind mount with a space"; instance = { bindMounts = [ "/srv/my data:/data" ]; }; expect = ".bindMounts: \"/srv/my data:/data\""; }
    { name = "port forward with host network"; instance = { networkMode = "host"; forwardPorts = [ { hostPort = 80; } ]; }; expect = "port forwarding needs a private network"; }
    { name = "unknown settings section"; instance = { hostNetworkConfig.networkconfig.DHCPServer = false; }; expect = "unknown section \"networkconfig\""; }
    { name = "bad address"; instance = { hostNetworkConfig.address = [ "10.0.0.1/24" "not-an-ip" ]; }; expect = "\"not-an-ip\" is not an IP address"; }
    { name = "credential id"; instance = { credentials = [ { id = "a/b"; path = "/run/x"; } ]; }; expect = ".credentials: \"a/b\" contains"; }
    { name = "timeout"; instance = { timeoutStartSec = "soon"; }; expect = "is not a systemd time span"; }
    { name = "networkMode host with zone"; instance = { networkMode = "host"; zone = "lan"; }; expect = "is set but network.mode is \"host\""; }
    { name = "config and path"; instance = { path = sys "x"; config.services.foo = 1; }; expect = "config and path are both set"; }
    { name = "missing bridge"; instance = { networkMode = "bridge"; }; expect = "is required when network.mode is \"bridge\""; }
  ];
  badResults = map
    (c:
      let
        iname = c.instanceName or "bad";
        cfg = evalHost [ { nixos.containers.instances.${iname} = { path = sys "bad"; } // c.instance; } ];
        msgs = failed cfg;
      in
      test "assertion: ${c.name}" (lib.any (hasInfix c.expect) msgs)
        "expected a failed assertion containing ${show c.expect}, got ${show msgs}")
    badCases;

  badZone = evalHost [ { nixos.containers.zones.thirteenchars = { }; } ];
  badZoneAddr = evalHost [ { nixos.containers.zones.lan.hostNetworkConfig.Network.Address = "10.0.0.300/24"; } ];

  warned = evalHost [ { nixos.containers.instances.w = { path = sys "w"; activation = { strategy = "restart"; reloadScript = "/nix/store/22222222222222222222222222222222-reload"; }; }; } ];

  nft = evalHost [ { networking.nftables.enable = true; nixos.containers.instances.web.path = sys "web"; } ];
  nm = evalHost [ { networking.networkmanager.enable = true; } ];
  networkdHost = evalHost [ { networking.useNetworkd = true; } ];
  noFirewall = evalHost [ { networking.firewall.enable = false; } ];
  disabled = evalHost [ { nixos.containers.enable = false; nixos.containers.instances.web.path = sys "web"; } ];
  noApply = evalHost [ { nixos.containers.enableAutostartService = false; } ];

  # The container profile on its own (an imperative container).
  imp = evalContainer [ {
    nixosContainer = {
      name = "imp.example.org";
      zone = "lan";
      bindMounts = { "/home" = { hostPath = "/home/alice"; isReadOnly = false; }; };
      forwardPorts = [ { hostPort = 2222; containerPort = 22; } ];
      containerNetworkConfig = { address = [ "10.42.0.7/24" ]; networkConfig.DHCP = "no"; };
      activation.reloadScript = "/nix/store/33333333333333333333333333333333-reload";
    };
  } ];
  impEntry = imp.system.build.nixosNspawnEntry;
  impBad = evalContainer [ { nixosContainer = { name = "bad"; zone = "lan"; bridge = "br0"; }; } ];
  unnamed = evalContainer [ { } ];
  impDefaults = evalContainer [ { nixosContainer = { name = "d"; sharedNix = false; }; } ];

  mixed = goodEntries.mixed or { };

  # lib.mkContainer with a nixpkgs given as a path (the `--config` route of the CLI).
  built = (import ../lib.nix).mkContainer {
    nixpkgs = fakeNixpkgs;
    name = "built";
    system = "x86_64-linux";
    specialArgs.checkLib = lib;
    modules = [ { nixosContainer.forwardPorts = [ { hostPort = 80; } ]; } ];
  };

  results = [
    (test "good config: no failed assertions" (failed good == [ ]) "failed assertions: ${show (failed good)}")
    (test "good config: no warnings" (good.warnings == [ ]) "warnings: ${show good.warnings}")
    (test "good config: one registry entry per instance"
      (attrNames goodEntries == attrNames goodInstances) "entries: ${show (attrNames goodEntries)}")
    (test "good config: zone file" (attrNames (zonesOf good) == [ "lan" ]
      && (zonesOf good).lan == { version = 1; name = "lan"; network.Network.Address = [ "10.42.0.1/24" ]; netdev = null; })
      "zones: ${show (zonesOf good)}")
    (test "entries are declarative, with the instance's system"
      (lib.all (n: goodEntries.${n}.declarative && (goodInstances.${n}.path or null == null || goodEntries.${n}.system == sys n)) (attrNames goodEntries))
      (show goodEntries))
    (test "network modes" (
      goodEntries.web.network.mode == "veth" && goodEntries.db.network == { mode = "zone"; zone = "lan"; bridge = null; host = null; }
      && goodEntries.bridged.network.mode == "bridge" && goodEntries.hostnet.network.mode == "host"
      && goodEntries.isolated.network.mode == "none") (show (lib.mapAttrs (_: e: e.network) goodEntries)))
    (test "hostNetworkConfig translated to sections"
      (goodEntries.web.network.host == { Network = { Address = [ "10.231.136.1/28" ]; DHCPServer = false; }; })
      (show goodEntries.web.network.host))
    (test "strategy defaults to restart without sharedNix"
      (goodEntries.db.activation.strategy == "restart" && goodEntries.web.activation.strategy == "dynamic")
      (show [ goodEntries.db.activation goodEntries.web.activation ]))
    (test "classic bindMounts form converted (read-only by default)"
      (goodEntries.legacy.bindMounts == [ "/home/alice:/home" "/srv:/srv:ro" ]) (show goodEntries.legacy.bindMounts))
    (test "instance and container settings are both used"
      (mixed != { }
        && lib.sort (a: b: a < b) mixed.bindMounts == [ "/from-config" "/from-instance:/inst:ro" ]
        && mixed.network.zone == "lan" && mixed.autoStart == false && mixed.sharedNix == false
        && mixed.timeoutStartSec == "3min" && mixed.activation.strategy == "restart"
        && hasPrefix "/nix/store/" mixed.system && hasInfix "nixos-system-mixed" mixed.system)
      (show mixed))
    (test "containerNetworkConfig of an instance reaches the container's host0" (
      let n = good.nixos.containers.evaluated.mixed.config.systemd.network.networks."20-host0"; in
      n.address == [ "10.42.0.9/24" ] && n.networkConfig.DHCP == "no" && n.matchConfig.Name == "host0"
      && good.nixos.containers.evaluated.mixed.config.networking.hostName == "mixed"
      && good.nixos.containers.evaluated.web.config == null)
      (show good.nixos.containers.evaluated.mixed.config.systemd.network.networks))
    (test "container from config with defaults" (goodEntries.plainconfig.network.mode == "veth" && goodEntries.plainconfig.autoStart)
      (show (goodEntries.plainconfig or null)))
    (test "generator registered"
      (good.systemd.generators == { nixos-nspawn-generator = "${fakePackage}/lib/systemd/system-generators/nixos-nspawn-generator"; })
      (show good.systemd.generators))
    (test "apply service after every switch" (
      let s = good.systemd.services.nixos-nspawn-apply; in
      s.serviceConfig.ExecStart == "${fakePackage}/bin/nixos-nspawn apply"
      && s.serviceConfig.Type == "oneshot" && s.serviceConfig.RemainAfterExit
      && s.wantedBy == [ "multi-user.target" ]
      && lib.length s.restartTriggers == lib.length (attrNames goodInstances) + 1 + 1)
      (show good.systemd.services))
    (test "switch does not restart running containers itself"
      (good.systemd.services."systemd-nspawn@".restartIfChanged == false) (show good.systemd.services."systemd-nspawn@"))
    (test "apply service can be turned off" (!(noApply.systemd.services ? nixos-nspawn-apply)) (show noApply.systemd.services))
    (test "networkd enabled, wait-online off with scripted networking"
      (good.systemd.network.enable && !good.systemd.network.wait-online.enable && networkdHost.systemd.network.wait-online.enable)
      (show [ good.systemd.network networkdHost.systemd.network ]))
    (test "machines.target wanted" (lib.elem "machines.target" good.systemd.targets.multi-user.wants) (show good.systemd.targets))
    (test "ipv4 forwarding" (good.boot.kernel.sysctl."net.ipv4.conf.all.forwarding" == true) (show good.boot.kernel.sysctl))
    (test "inotify instances for many containers" (good.boot.kernel.sysctl."fs.inotify.max_user_instances" == 8192) (show good.boot.kernel.sysctl))
    (test "iptables firewall opens DHCP on ve-+/vz-+"
      (lib.elem 67 good.networking.firewall.interfaces."ve-+".allowedUDPPorts && lib.elem 67 good.networking.firewall.interfaces."vz-+".allowedUDPPorts)
      (show good.networking.firewall.interfaces))
    (test "nftables firewall rules"
      (hasInfix ''iifname { "ve-*", "vz-*" } udp dport { 53, 67,'' nft.networking.firewall.extraInputRules && nft.networking.firewall.interfaces == { })
      nft.networking.firewall.extraInputRules)
    (test "no firewall rules without a firewall" (noFirewall.networking.firewall.interfaces == { }) (show noFirewall.networking.firewall))
    (test "dhcpcd and NetworkManager leave container links alone"
      (lib.elem "ve-*" good.networking.dhcpcd.denyInterfaces && lib.elem "interface-name:vz-*" nm.networking.networkmanager.unmanaged
        && good.networking.networkmanager.unmanaged == [ ])
      (show [ good.networking.dhcpcd nm.networking.networkmanager ]))
    (test "enable = false sets nothing" (disabled.environment.etc == { } && disabled.systemd.generators == { }) (show disabled.environment.etc))
    (test "zone name longer than 12 is refused"
      (lib.any (hasInfix "nixos.containers.zones.thirteenchars: the zone name") (failed badZone)) (show (failed badZone)))
    (test "bad zone address is refused"
      (lib.any (hasInfix "nixos.containers.zones.lan.hostNetworkConfig") (failed badZoneAddr)) (show (failed badZoneAddr)))
    (test "reloadScript without reloads warns"
      (failed warned == [ ] && lib.any (hasInfix "never reloads") warned.warnings) (show warned.warnings))

    (test "container profile: container, networkd, resolved" (
      imp.boot.isContainer && imp.boot.isNspawnContainer && imp.networking.useNetworkd && !imp.networking.useDHCP
      && !imp.networking.useHostResolvConf && imp.services.resolved.enable && imp.systemd.network.enable)
      (show [ imp.boot imp.networking imp.services ]))
    (test "container profile: hostname from the name" (imp.networking.hostName == "imp" && imp.networking.domain == "example.org")
      (show imp.networking))
    (test "container profile: host0 defaults merged with containerNetworkConfig" (
      let n = imp.systemd.network.networks."20-host0"; in
      n.matchConfig.Name == "host0" && n.matchConfig.Virtualization == "container"
      && n.networkConfig.DHCP == "no" && n.networkConfig.LLDP == true && n.address == [ "10.42.0.7/24" ])
      (show imp.systemd.network.networks))
    (test "container profile: own nix-daemon yields to the host's socket"
      (imp.systemd.sockets.nix-daemon.unitConfig.ConditionPathExists == "!/nix/var/nix/daemon-socket/socket") (show imp.systemd.sockets))
    (test "container profile: registry entry of an imperative container" (
      impEntry.name == "imp.example.org" && !impEntry.declarative && impEntry.network.mode == "zone"
      && impEntry.bindMounts == [ "/home/alice:/home" ] && impEntry.forwardPorts == [ { protocol = "tcp"; hostPort = 2222; containerPort = 22; } ]
      && impEntry.activation.reloadScript == "/nix/store/33333333333333333333333333333333-reload"
      && hasInfix "nixos-nspawn/entry.json" imp.system.systemBuilderCommands && failed imp == [ ])
      (show [ impEntry (failed imp) ]))
    (test "container profile: strategy default follows sharedNix"
      (impDefaults.system.build.nixosNspawnEntry.activation.strategy == "restart") (show impDefaults.system.build.nixosNspawnEntry.activation))
    (test "container profile: imperative settings are checked"
      (lib.any (hasInfix "nixosContainer.bridge") (failed impBad)) (show (failed impBad)))
    (test "container profile: nothing written without a name"
      (unnamed.system.systemBuilderCommands == "" && failed unnamed == [ ] && unnamed.networking.hostName == "nixos")
      (show unnamed.system.systemBuilderCommands))
    (test "lib.mkContainer: a container system with its entry" (
      hasInfix "nixos-system-built" built.outPath && built.config.nixosContainer.name == "built"
      && built.nixosContainer.forwardPorts == [ { protocol = "tcp"; hostPort = 80; containerPort = null; } ]
      && hasInfix "nixos-nspawn/entry.json" built.config.system.systemBuilderCommands)
      (show built.outPath))
  ] ++ badResults;
in
{
  inherit results;
  files = {
    containers = goodEntries // { "imp.example.org" = impEntry // { system = sys "imp"; }; };
    zones = zonesOf good;
  };
}
