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
    # the classic short options, from the instance and from the container's own
    # nixosContainer.* (interfaces)
    shortopts = viaConfig { nixosContainer.interfaces = [ "eth1" ]; } // {
      macvlans = [ "eth2" ];
      enableTun = true;
      allowedDevices = [ { node = "/dev/fuse"; modifier = "rwm"; } ];
      bindMounts = [ "/dev/fuse" ];
      tmpfs = [ "/var/tmp" ];
      additionalCapabilities = [ "CAP_SYS_TIME" ];
      extraFlags = [ "--drop-capability=CAP_SYS_CHROOT" "--setenv" "A=1" ];
    };
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

  # One instance per case, and a text its assertion message must contain (what
  # only Nix can tell; what the registry parser refuses fails the build instead:
  # module-errors.nix's buildCases).
  badCases = [
    { name = "reload without sharedNix"; instance = { sharedNix = false; activation.strategy = "reload"; }; expect = "with sharedNix = false"; }
    { name = "dynamic without sharedNix (explicit)"; instance = { sharedNix = false; activation.strategy = "dynamic"; }; expect = "sharedNix = true, or activation.strategy = \"restart\""; }
    { name = "unknown settings section"; instance = { hostNetworkConfig.networkconfig.DHCPServer = false; }; expect = "unknown section \"networkconfig\""; }
    { name = "config and path"; instance = { path = sys "x"; config.services.foo = 1; }; expect = "config and path are both set"; }
    { name = "extraFlags flag without an equivalent"; instance = { extraFlags = [ "--console=passive" ]; }; expect = "nixos.containers.instances.bad.extraFlags: --console=passive has no nixos-nspawn equivalent"; }
    { name = "extraFlags bad --port"; instance = { extraFlags = [ "--port=80:eighty" ]; }; expect = "nixos.containers.instances.bad.extraFlags: the --port value \"80:eighty\""; }
    { name = "extraFlags --rlimit of no resource"; instance = { extraFlags = [ "--rlimit=FOO=1" ]; }; expect = "nixos.containers.instances.bad.extraFlags: --rlimit=FOO=1 is not --rlimit=NAME=LIMIT"; }
    { name = "extraFlags --property without a value"; instance = { extraFlags = [ "--property" "CPUQuota" ]; }; expect = "nixos.containers.instances.bad.extraFlags: --property=CPUQuota is not --property=NAME=VALUE"; }
    { name = "extraFlags flag nixos-nspawn sets"; instance = { extraFlags = [ "--network-zone" "lan" ]; }; expect = "nixos.containers.instances.bad.extraFlags: --network-zone=lan has no nixos-nspawn equivalent"; }
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

  ownSubnet = evalHost [ { nixos.containers.zones.own = { ipv4Subnet = "192.168.50.0/24"; ipv6Subnet = "fd00:50::/64"; }; } ];
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
  checkPackage = (import c.fakeNixpkgs { }).callPackage ../package.nix { };
  impBuilt = mkContainer {
    name = "imp.example.org";
    modules = [ {
      nixosContainer = {
        zone = "lan";
        bindMounts = { "/home" = { hostPath = "/home/alice"; isReadOnly = false; }; };
        forwardPorts = [ { hostPort = 2222; containerPort = 22; } ];
        containerNetworkConfig = { address = [ "10.42.0.7/24" ]; networkConfig.DHCP = "no"; };
        activation.reloadScript = "/nix/store/33333333333333333333333333333333-reload";
        package = checkPackage;
      };
    } ];
  };
  imp = impBuilt.config;
  impEntry = imp.system.build.nixosNspawnEntry;
  impLongLabel = (evalContainer { name = lib.concatStrings (lib.genList (_: "a") 64); }).config;
  unnamed = evalUnnamed [ ];
  impBadFlag = (evalContainer { name = "badflag"; modules = [ { nixosContainer.extraFlags = [ "--as-pid2" ]; } ]; }).config;
  flagNote = evalHost [ networkdHost { nixos.containers.instances.w = { path = sys "w"; extraFlags = [ "--link-journal=host" ]; }; } ];
  pythonAutoStart = evalHost [ networkdHost { nixos.containers.instances.w = { path = sys "w"; activation.autoStart = false; }; } ];
  impDefaults = (evalContainer { name = "d"; modules = [ { nixosContainer.sharedNix = false; } ]; }).config;

  built = mkContainer {
    name = "built";
    modules = [ { nixosContainer.forwardPorts = [ { hostPort = 80; } ]; } ];
  };

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
    (test "zone ipv4Subnet/ipv6Subnet reach the zone file"
      ((zonesOf ownSubnet).own == { version = 1; name = "own"; network = null; netdev = null; ipv4Subnet = "192.168.50.0/24"; ipv6Subnet = "fd00:50::/64"; })
      "zones: ${show (zonesOf ownSubnet)}")
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
    (test "classic short options: the entry has their settings, from the instance and from the container's config" (
      let e = goodEntries.shortopts; in
      e.extraNspawn == {
        Exec = { Capability = [ "CAP_SYS_TIME" "CAP_NET_ADMIN" ]; DropCapability = [ "CAP_SYS_CHROOT" ]; Environment = [ "A=1" ]; };
        Files.TemporaryFileSystem = [ "/var/tmp" ];
        Network = { Interface = [ "eth1" ]; MACVLAN = [ "eth2" ]; };
      }
      && e.extraService == {
        Unit = { Wants = [ "sys-subsystem-net-devices-eth1.device" ]; After = [ "sys-subsystem-net-devices-eth1.device" ]; };
        Service.DeviceAllow = [ "/dev/fuse rwm" "/dev/net/tun rwm" ];
      }
      && e.bindMounts == [ "/dev/fuse" ]
      && evaluated.shortopts.config.nixosContainer.enableTun
      && evaluated.shortopts.config.nixosContainer.allowedDevices == [ { node = "/dev/fuse"; modifier = "rwm"; } ])
      (show (goodEntries.shortopts or null)))
    (test "classic short options: an imperative container's flag without an equivalent is an assertion naming it"
      (lib.any (hasInfix "nixosContainer.extraFlags: --as-pid2 has no nixos-nspawn equivalent") (failed impBadFlag))
      (show (failed impBadFlag)))
    (test "classic short options: a dropped flag is a warning naming it"
      (failed flagNote == [ ] && lib.any (hasInfix "nixos.containers.instances.w.extraFlags: --link-journal=host dropped") flagNote.warnings)
      (show flagNote.warnings))
    (test "python-nixos-nspawn's activation.autoStart still works, with a warning naming autoStart"
      (failed pythonAutoStart == [ ] && !(containersOf pythonAutoStart).w.autoStart
        && pythonAutoStart.warnings == [ "nixos.containers.instances.w.activation.autoStart: activation.autoStart is python-nixos-nspawn's name; it still works (and wins over autoStart), but write autoStart = false; instead" ])
      (show pythonAutoStart.warnings))
    (test "migration: the classic-style configuration evaluates without failed assertions or warnings, to the hand-written one's entry"
      (failed (migrationEval migrationClassic) == [ ] && (migrationEval migrationClassic).warnings == [ ]
        && migration.classic == migration.handwritten)
      (show [ (failed (migrationEval migrationClassic)) (migrationEval migrationClassic).warnings ]))
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
    (test "container profile: a 64-character label is not a type error of networking.hostName (the registry check refuses it, module-errors.nix)"
      (impLongLabel.networking.hostName == "nixos") (show impLongLabel.networking.hostName))
    (test "container profile: nothing written without a name"
      (unnamed.system.systemBuilderCommands == "" && failed unnamed == [ ] && unnamed.networking.hostName == "nixos")
      (show unnamed.system.systemBuilderCommands))
    (test "lib.mkContainer: a container system with its entry" (
      hasInfix "nixos-system-built" built.outPath && built.config.nixosContainer.name == "built"
      && built.nixosContainer.forwardPorts == [ { protocol = "tcp"; hostPort = 80; containerPort = null; } ]
      && hasInfix "nixos-nspawn/entry.json" built.config.system.systemBuilderCommands)
      (show built.outPath))
  ] ++ badResults;
  # docs/migration.md, "Option mapping": a classic containers.<name> configuration,
  # copied with the classic option names, and its hand-written nixos-nspawn
  # equivalent (the table's right column) must give the same registry entry, so the
  # same rendered container (crates/core/tests/nix_contract.rs renders both).
  migrationEval = instance: evalHost [ networkdHost { nixos.containers.instances.web = { path = sys "web"; } // instance; } ];
  migrationEntry = instance: (containersOf (migrationEval instance)).web;
  migrationClassic = {
      autoStart = true;
      timeoutStartSec = "1min";
      ephemeral = false;
      privateNetwork = true;
      hostAddress = "10.231.136.1";
      localAddress = "10.231.136.2";
      hostAddress6 = "fc00::1";
      localAddress6 = "fc00::2";
      forwardPorts = [ { protocol = "tcp"; hostPort = 2222; containerPort = 22; } ];
      bindMounts = { "/home" = { hostPath = "/home/alice"; isReadOnly = false; }; "/srv" = { }; };
      interfaces = [ "eth1" "br-lan" ];
      macvlans = [ "eth2" ];
      enableTun = true;
      allowedDevices = [ { node = "/dev/fuse"; modifier = "rwm"; } ];
      tmpfs = [ "/var/tmp" ];
      additionalCapabilities = [ "CAP_SYS_TIME" ];
      extraFlags = [ "--drop-capability=CAP_SYS_CHROOT" "--setenv=TZ=UTC" "--bind-ro=/srv/data:/data" "--system-call-filter=~@swap" ];
  };
  migration = {
    classic = migrationEntry migrationClassic;
    handwritten = migrationEntry {
      autoStart = true;
      timeoutStartSec = "1min";
      hostAddress = "10.231.136.1";
      localAddress = "10.231.136.2";
      hostAddress6 = "fc00::1";
      localAddress6 = "fc00::2";
      forwardPorts = [ { hostPort = 2222; containerPort = 22; } ];
      bindMounts = [ "/home/alice:/home" "/srv:/srv:ro" "/srv/data:/data:ro" ];
      systemCallFilter = "~@swap";
      extraNspawn = {
        Exec = {
          Capability = [ "CAP_SYS_TIME" "CAP_NET_ADMIN" ];
          DropCapability = [ "CAP_SYS_CHROOT" ];
          Environment = [ "TZ=UTC" ];
        };
        Files.TemporaryFileSystem = [ "/var/tmp" ];
        Network = { Interface = [ "eth1" "br-lan" ]; MACVLAN = [ "eth2" ]; };
      };
      extraService = {
        Unit = {
          Wants = [ "sys-subsystem-net-devices-eth1.device" "sys-subsystem-net-devices-br\\x2dlan.device" ];
          After = [ "sys-subsystem-net-devices-eth1.device" "sys-subsystem-net-devices-br\\x2dlan.device" ];
        };
        Service.DeviceAllow = [ "/dev/fuse rwm" "/dev/net/tun rwm" ];
      };
    };
  };
in
{
  inherit results migration;
  # The system.checks of the good host and of the imperative container (run by
  # nix/checks/run with the cargo-built CLI; they must pass).
  checkScripts = c.hostChecks good ++ c.checkScriptsOf checkPackage imp;
  files = {
    containers = goodEntries // { "imp.example.org" = impEntry // { system = sys "imp"; }; };
    zones = zonesOf good;
  };
}
