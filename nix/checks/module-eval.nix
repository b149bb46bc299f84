# Evaluates the host module (nix/modules/hypervisor.nix) and the container profile
# (nix/modules/container.nix) through the stand-in nixpkgs of common.nix, with
# nixpkgs' lib or the minilib (see common.nix, nix/checks/run):
#
#   nix-instantiate --eval --strict --json nix/checks/module-eval.nix [--arg nixpkgsLib /path/to/nixpkgs/lib]
#
# gives { results = [ { name; ok; detail; } ]; files = { containers; zones; }; }:
# `files` are the registry entries and zone files the module puts in /etc (parsed),
# for the Rust parser to accept (crates/core/tests/nix_contract.rs, nix/checks/run).
# What can end in an evaluation error of its own (infinite recursion, a type error)
# is checked in separate processes: module-matrix.nix and module-errors.nix.
{ nixpkgsLib ? null }:
let
  c = import ./common.nix { inherit nixpkgsLib; };
  inherit (c) lib sys evalHost evalHostWith failed containersOf zonesOf test show evaluates networkdHost
    evalConfigDir fakeNixpkgs mkContainer evalContainer evalUnnamed toplevelOf;
  inherit (lib) filter hasInfix hasPrefix attrNames;

  # A container given as a NixOS configuration (the host's nixpkgs and pkgs).
  viaConfig = config: { inherit config; };

  goodInstances = {
    web = {
      path = sys "web";
      forwardPorts = [ { hostPort = 8080; containerPort = 80; } ];
      bindMounts = [ "/srv/www:/var/www:ro" ];
      credentials = [ { id = "db"; path = "/run/secrets/db"; } ];
      hostNetworkConfig = { address = [ "10.231.136.1/28" ]; networkConfig.DHCPServer = false; };
      extraNspawn.execConfig.Capability = [ "CAP_NET_ADMIN" ];
    };
    db = { path = sys "db"; zone = "lan"; autoStart = false; sharedNix = false; userNamespacing = false; };
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
    # the host's package set: overlays and nixpkgs.config
    usespkgs = viaConfig ({ pkgs, ... }: {
      environment.etc.marker.text = pkgs.nixosNspawnCheckMarker;
      system.build.checkPkgs = pkgs;
    });
    # its own nixpkgs.config: its own package set
    ownconfig = viaConfig ({ pkgs, ... }: {
      nixpkgs.config.allowBroken = true;
      system.build.checkPkgs = pkgs;
    });
    # its own nixpkgs: its own evaluation
    ownnixpkgs = viaConfig ({ pkgs, ... }: { system.build.checkPkgs = pkgs; }) // { nixpkgs = fakeNixpkgs; };
    # a host name of 63 characters (the most NixOS accepts)
    a123456789b123456789c123456789d123456789e123456789f123456789g12 = viaConfig { };
  };
  hostModule = { pkgs, ... }: {
    nixpkgs.overlays = [ (final: prev: { nixosNspawnCheckMarker = "from the host's overlay"; }) ];
    nixpkgs.config.allowUnfree = true;
    nixos.containers.instances = goodInstances;
    nixos.containers.zones.lan = {
      hostNetworkConfig.address = [ "10.42.0.1/24" ];
      netdevConfig = { };
    };
    system.build.checkPkgs = pkgs;
  };
  goodEval = evalHostWith [ networkdHost hostModule ];
  good = goodEval.config;
  goodEntries = containersOf good;
  evaluated = good.nixos.containers.evaluated;
  package = good.nixos.containers.package;

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
    { name = "container name with a 64-character label"; instanceName = lib.concatStrings (lib.genList (_: "a") 64); instance = { }; expect = "has a label of 64 characters"; }
    { name = "container name with a 64-character label, built from config"; instanceName = lib.concatStrings (lib.genList (_: "b") 64); instance = { path = null; config = { }; }; expect = "has a label of 64 characters"; }
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
  warned = evalHost [ networkdHost { nixos.containers.instances.w = { path = sys "w"; activation = { strategy = "restart"; reloadScript = "/nix/store/22222222222222222222222222222222-reload"; }; }; } ];
  scripted = evalHost [ { nixos.containers.instances.web.path = sys "web"; } ];
  scriptedNoDHCP = evalHost [ { networking.useDHCP = false; nixos.containers.instances.web.path = sys "web"; } ];
  nm = evalHost [ { networking.networkmanager.enable = true; } ];
  disabled = evalHost [ { nixos.containers.enable = false; nixos.containers.instances.web.path = sys "web"; } ];
  noApply = evalHost [ { nixos.containers.enableAutostartService = false; } ];
  noForwarding = evalHost [ { boot.kernel.sysctl."net.ipv4.conf.all.forwarding" = false; } ];
  shadowed = evalHost [ {
    nixos.containers.instances.web.path = sys "web";
    systemd.nspawn.web.filesConfig.Bind = [ "/srv" ];
  } ];
  firewalld = evalHost [ { services.firewalld.enable = true; } ];

  # The container profile on its own (an imperative container, as lib.mkContainer builds it).
  impBuilt = mkContainer {
    name = "imp.example.org";
    modules = [ {
      nixosContainer = {
        zone = "lan";
        bindMounts = { "/home" = { hostPath = "/home/alice"; isReadOnly = false; }; };
        forwardPorts = [ { hostPort = 2222; containerPort = 22; } ];
        containerNetworkConfig = { address = [ "10.42.0.7/24" ]; networkConfig.DHCP = "no"; };
        activation.reloadScript = "/nix/store/33333333333333333333333333333333-reload";
      };
    } ];
  };
  imp = impBuilt.config;
  impEntry = imp.system.build.nixosNspawnEntry;
  impBad = (evalContainer { name = "bad"; modules = [ { nixosContainer = { zone = "lan"; bridge = "br0"; }; } ]; }).config;
  impLongLabel = (evalContainer { name = lib.concatStrings (lib.genList (_: "a") 64); }).config;
  unnamed = evalUnnamed [ ];
  impDefaults = (evalContainer { name = "d"; modules = [ { nixosContainer.sharedNix = false; } ]; }).config;

  built = mkContainer {
    name = "built";
    modules = [ { nixosContainer.forwardPorts = [ { hostPort = 80; } ]; } ];
  };

  classicEntry = ((import ../lib/classic.nix).fromConf {
    name = "old";
    system = sys "old";
    text = "PRIVATE_NETWORK=1\nHOST_ADDRESS=10.0.0.1\nLOCAL_ADDRESS=10.0.0.2\n";
  }).entry;
  classicPick = ((import ../lib/classic.nix).fromConf {
    name = "oldpick";
    system = sys "oldpick";
    text = "PRIVATE_USERS=pick\n";
  }).entry;

  mixed = goodEntries.mixed or { };
  hostPkgs = good.system.build.checkPkgs;

  results = [
    (evaluates "good config: the host's system evaluates (every entry, unit and container)" (toplevelOf good))
    (test "good config: no failed assertions" (failed good == [ ]) "failed assertions: ${show (failed good)}")
    (test "good config: no warnings (networkd host)" (good.warnings == [ ]) "warnings: ${show good.warnings}")
    (test "good config: one registry entry per instance"
      (attrNames goodEntries == attrNames goodInstances) "entries: ${show (attrNames goodEntries)}")
    (test "good config: zone file" (attrNames (zonesOf good) == [ "lan" ]
      && (zonesOf good).lan == { version = 1; name = "lan"; network.Network.Address = [ "10.42.0.1/24" ]; netdev = null; })
      "zones: ${show (zonesOf good)}")
    (test "entries are declarative, with the instance's system"
      (lib.all (n: goodEntries.${n}.declarative && ((goodInstances.${n}.path or null) == null || goodEntries.${n}.system == sys n)) (attrNames goodEntries))
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
    (test "userNamespacing is on by default for new containers, off where set"
      (goodEntries.web.userNamespacing && goodEntries.plainconfig.userNamespacing && !goodEntries.db.userNamespacing
        && impEntry.userNamespacing)
      (show (lib.mapAttrs (_: e: e.userNamespacing) goodEntries)))
    (test "containers migrated from the classic module keep userNamespacing off (on only with PRIVATE_USERS=pick)"
      (!classicEntry.userNamespacing && classicPick.userNamespacing) (show [ classicEntry.userNamespacing classicPick.userNamespacing ]))
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
      let n = evaluated.mixed.config.systemd.network.networks."20-host0"; in
      n.address == [ "10.42.0.9/24" ] && n.networkConfig.DHCP == "no" && n.matchConfig.Name == "host0"
      && evaluated.mixed.config.networking.hostName == "mixed"
      && evaluated.web.config == null)
      (show evaluated.mixed.config.systemd.network.networks))
    (test "container from config with defaults" (goodEntries.plainconfig.network.mode == "veth" && goodEntries.plainconfig.autoStart)
      (show (goodEntries.plainconfig or null)))
    (test "a container without its own nixpkgs uses the host's package set (overlays, allowUnfree; the same evaluation)"
      (evaluated.usespkgs.config.environment.etc.marker.text == "from the host's overlay"
        && evaluated.usespkgs.config.system.build.checkPkgs.config.allowUnfree
        && evaluated.usespkgs.config.system.build.checkPkgs == hostPkgs
        && evaluated.plainconfig.options.nixpkgs.pkgs.isDefined)
      (show [ evaluated.usespkgs.config.environment.etc.marker.text evaluated.usespkgs.config.system.build.checkPkgs.config ]))
    (test "a container that sets nixpkgs.config gets its own package set with that config (no nixpkgs.pkgs assertion)"
      (!(evaluated.ownconfig.options.nixpkgs.pkgs.isDefined)
        && evaluated.ownconfig.config.system.build.checkPkgs.config.allowBroken
        && !evaluated.ownconfig.config.system.build.checkPkgs.config.allowUnfree
        && failed evaluated.ownconfig.config == [ ])
      (show [ evaluated.ownconfig.config.system.build.checkPkgs.config (failed evaluated.ownconfig.config) ]))
    (test "a container with its own nixpkgs evaluates it itself"
      (!(evaluated.ownnixpkgs.options.nixpkgs.pkgs.isDefined)
        && !(evaluated.ownnixpkgs.config.system.build.checkPkgs ? nixosNspawnCheckMarker))
      (show (evaluated.ownnixpkgs.config.system.build.checkPkgs ? nixosNspawnCheckMarker)))
    (test "containers import eval-config.nix from nixpkgs in place (toString), not from a copy in the store"
      (lib.all (n: evaluated.${n}.config == null || evaluated.${n}.config.system.build.nixosNspawnEvalConfigDir == evalConfigDir) (attrNames evaluated)
        && built.config.system.build.nixosNspawnEvalConfigDir == evalConfigDir)
      (show [ evalConfigDir evaluated.plainconfig.config.system.build.nixosNspawnEvalConfigDir built.config.system.build.nixosNspawnEvalConfigDir ]))
    (test "a container name with a 63-character first label is the container's host name"
      (evaluated.a123456789b123456789c123456789d123456789e123456789f123456789g12.config.networking.hostName
        == "a123456789b123456789c123456789d123456789e123456789f123456789g12")
      "host name: ${evaluated.a123456789b123456789c123456789d123456789e123456789f123456789g12.config.networking.hostName}")
    (test "generator registered"
      (good.systemd.generators == { nixos-nspawn-generator = "${package}/lib/systemd/system-generators/nixos-nspawn-generator"; })
      (show good.systemd.generators))
    (test "the package is built from package.nix with NixOS's paths"
      (package.pname == "nixos-nspawn" && package.passthru.NIXOS_NSPAWN_SYSTEMD_NSPAWN == "/run/current-system/systemd/bin/systemd-nspawn"
        && lib.elem package good.environment.systemPackages)
      (show (builtins.removeAttrs package.passthru [ "src" "meta" ])))
    (test "apply service after every switch" (
      let s = good.systemd.services.nixos-nspawn-apply; in
      s.serviceConfig.ExecStart == "${package}/bin/nixos-nspawn apply"
      && s.serviceConfig.Type == "oneshot" && s.serviceConfig.RemainAfterExit
      && s.wantedBy == [ "multi-user.target" ]
      && lib.length s.restartTriggers == lib.length (attrNames goodInstances) + 1 + 1)
      (show good.systemd.services.nixos-nspawn-apply))
    (test "switch does not restart running containers itself"
      (good.systemd.services."systemd-nspawn@".restartIfChanged == false) (show good.systemd.services."systemd-nspawn@".restartIfChanged))
    (test "apply service can be turned off" (!(noApply.systemd.services ? nixos-nspawn-apply)) (show (attrNames noApply.systemd.services)))
    (test "networkd enabled, wait-online off with scripted networking"
      (good.systemd.network.enable && good.systemd.network.wait-online.enable
        && scripted.systemd.network.enable && !scripted.systemd.network.wait-online.enable)
      (show [ good.systemd.network.wait-online scripted.systemd.network.wait-online ]))
    (test "scripted host with DHCP: nixpkgs' networkd-next-to-dhcpcd warning and no other"
      (lib.length scripted.warnings == 1 && hasInfix "can cause both networkd and dhcpcd" (lib.head scripted.warnings)
        && scriptedNoDHCP.warnings == [ ])
      (show [ scripted.warnings scriptedNoDHCP.warnings ]))
    (test "sharedNix = false: the closure of the built system next to its entry (closureInfo's store-paths), for no other container"
      (let
        closures = filter (lib.hasSuffix ".closure") (attrNames good.environment.etc);
        mixedClosure = good.environment.etc."nixos-nspawn/containers/mixed.closure".source or "";
      in lib.elem "nixos-nspawn/containers/mixed.closure" closures
        && lib.hasSuffix "/store-paths" (toString mixedClosure) && hasInfix "closure-info" (toString mixedClosure)
        && !(lib.elem "nixos-nspawn/containers/web.closure" closures))
      (show (filter (lib.hasSuffix ".closure") (attrNames good.environment.etc))))
    (test "machines.target wanted" (lib.elem "machines.target" good.systemd.targets.multi-user.wants) (show good.systemd.targets.multi-user.wants))
    (test "IPv4 forwarding on, above NixOS's default, below a definition of the user"
      (good.boot.kernel.sysctl."net.ipv4.conf.all.forwarding" == true
        && noForwarding.boot.kernel.sysctl."net.ipv4.conf.all.forwarding" == false
        && hasInfix "net.ipv4.conf.all.forwarding=1" good.environment.etc."sysctl.d/60-nixos.conf".text)
      (show [ good.boot.kernel.sysctl noForwarding.boot.kernel.sysctl ]))
    (test "inotify instances for many containers" (good.boot.kernel.sysctl."fs.inotify.max_user_instances" == 8192) (show good.boot.kernel.sysctl))
    (test "dhcpcd and NetworkManager leave container links alone"
      (lib.elem "ve-*" good.networking.dhcpcd.denyInterfaces && lib.elem "interface-name:vz-*" nm.networking.networkmanager.unmanaged
        && good.networking.networkmanager.unmanaged == [ ])
      (show [ good.networking.dhcpcd nm.networking.networkmanager ]))
    (test "enable = false sets nothing"
      (!(lib.any (hasPrefix "nixos-nspawn/") (attrNames disabled.environment.etc)) && disabled.systemd.generators == { })
      (show (attrNames disabled.environment.etc)))
    (test "systemd.nspawn.<name> of a declarative container is refused, pointing at extraNspawn"
      (lib.any (m: hasInfix "systemd.nspawn.web is also defined" m && hasInfix "nixos.containers.instances.web.extraNspawn" m) (failed shadowed)
        && failed good == [ ])
      (show (failed shadowed)))
    (test "firewalld backend: nothing opened, a warning says what to do"
      (lib.any (hasInfix "firewalld") firewalld.warnings && firewalld.networking.firewall.interfaces == { }
        && firewalld.networking.firewall.extraInputRules == "")
      (show firewalld.warnings))
    (test "zone name longer than 12 is refused"
      (lib.any (hasInfix "nixos.containers.zones.thirteenchars: the zone name") (failed badZone)) (show (failed badZone)))
    (test "bad zone address is refused"
      (lib.any (hasInfix "nixos.containers.zones.lan.hostNetworkConfig") (failed badZoneAddr)) (show (failed badZoneAddr)))
    (test "reloadScript without reloads warns"
      (failed warned == [ ] && lib.any (hasInfix "never reloads") warned.warnings) (show warned.warnings))

    (evaluates "container profile: an imperative container's system evaluates" impBuilt.outPath)
    (test "container profile: container, networkd, resolved" (
      imp.boot.isContainer && imp.boot.isNspawnContainer && imp.networking.useNetworkd && !imp.networking.useDHCP
      && !imp.networking.useHostResolvConf && imp.services.resolved.enable && imp.systemd.network.enable)
      (show [ imp.boot imp.networking.useNetworkd imp.networking.useDHCP imp.networking.useHostResolvConf imp.services ]))
    (test "container profile: hostname from the name" (imp.networking.hostName == "imp" && imp.networking.domain == "example.org")
      (show [ imp.networking.hostName imp.networking.domain ]))
    (test "container profile: host0 defaults merged with containerNetworkConfig" (
      let n = imp.systemd.network.networks."20-host0"; in
      n.matchConfig.Name == "host0" && n.matchConfig.Virtualization == "container"
      && n.networkConfig.DHCP == "no" && n.networkConfig.LLDP == true && n.address == [ "10.42.0.7/24" ])
      (show imp.systemd.network.networks))
    (test "container profile: own nix-daemon yields to the host's socket directory (by mount, not by a socket file)"
      (imp.systemd.sockets.nix-daemon.unitConfig.ConditionPathIsMountPoint or null == "!/nix/var/nix/daemon-socket"
        && imp.systemd.services.nix-daemon.unitConfig.ConditionPathIsMountPoint or null == "!/nix/var/nix/daemon-socket"
        && !(imp.systemd.sockets.nix-daemon.unitConfig ? ConditionPathExists))
      (show { socket = imp.systemd.sockets.nix-daemon.unitConfig; service = imp.systemd.services.nix-daemon.unitConfig; }))
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
    (test "container profile: a 64-character label is refused by an assertion, not a type error of networking.hostName"
      (lib.any (hasInfix "label of 64 characters") (failed impLongLabel) && impLongLabel.networking.hostName == "nixos")
      (show (failed impLongLabel)))
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
