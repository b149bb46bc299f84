# Configurations that must not evaluate, and what the error must say. nix/checks/run
# evaluates each `cases.<name>.value` in a process of its own (an infinite
# recursion cannot be caught inside an evaluation) and checks that it fails with
# every text of `cases.<name>.expect` in its messages, with nixpkgs' lib and with
# the minilib alike:
#
#   nix-instantiate --eval --strict nix/checks/module-errors.nix -A cases.NAME.value
#
# `buildCases`: configurations that evaluate but must not build, because the
# registry parser refuses what they generate (system.checks, `nixos-nspawn
# check-registry`). They evaluate together, to { name = { description; expect;
# scripts; }; }; nix/checks/run runs each case's check scripts with the
# cargo-built CLI and checks that one fails with every text of `expect`.
{ nixpkgsLib ? null }:
let
  c = import ./common.nix { inherit nixpkgsLib; };
  inherit (c) lib sys evalHost toplevelOf hostChecks checkScriptsOf;
  inherit (lib) mkIf mkOverride;

  # A host with one instance `name` (built from `path` unless given `config`).
  instanceChecks = name: settings: hostChecks (evalHost [ { nixos.containers.instances.${name} = { path = sys name; } // settings; } ]);
  zoneChecks = name: settings: hostChecks (evalHost [ { nixos.containers.zones.${name} = settings; } ]);
  # An imperative container checked by its own profile (nixosContainer.package).
  checkPackage = (import c.fakeNixpkgs { }).callPackage ../package.nix { };
  containerChecks = name: settings: checkScriptsOf checkPackage
    (c.evalContainer { inherit name; modules = [ { nixosContainer = { package = checkPackage; } // settings; } ]; }).config;
  a64 = lib.concatStrings (lib.genList (_: "a") 64);
  build = description: expect: scripts: { inherit description expect scripts; };

  hostSystem = modules: toplevelOf (evalHost modules);
  web = settings: { nixos.containers.instances.web = settings; };
  webConfig = config: web { inherit config; };
in
{
  cases = {
    container-config-type-error = {
      description = "a type error in a container's configuration names the option under the instance's config";
      expect = [ "nixos.containers.instances.web.config.services.resolved.enable" "is not of type" "boolean" ];
      value = hostSystem [ (webConfig { services.resolved.enable = "yes"; }) ];
    };
    container-config-unknown-option = {
      description = "an undeclared option in a container's configuration names the option under the instance's config";
      expect = [ "nixos.containers.instances.web.config.services.nonexistent" "does not exist" ];
      value = hostSystem [ (webConfig { services.nonexistent.enable = true; }) ];
    };
    container-config-conflict = {
      description = "conflicting definitions in a container's configuration";
      expect = [ "nixos.containers.instances.web.config.networking.useNetworkd" "conflicting definition values" ];
      value = hostSystem [ (webConfig { imports = [ { networking.useNetworkd = false; } ]; networking.useNetworkd = true; }) ];
    };
    instance-option-type-error = {
      description = "a wrongly typed instance option";
      expect = [ "nixos.containers.instances.web.autoStart" "is not of type" ];
      value = hostSystem [ (web { path = sys "web"; autoStart = "yes"; }) ];
    };
    instance-unknown-option = {
      description = "a misspelt instance option";
      expect = [ "nixos.containers.instances.web.autostart" "does not exist" ];
      value = hostSystem [ (web { path = sys "web"; autostart = true; }) ];
    };
    instance-port-out-of-range = {
      description = "a port outside 0-65535";
      expect = [ "nixos.containers.instances.web.forwardPorts" "hostPort" "is not of type" ];
      value = hostSystem [ (web { path = sys "web"; forwardPorts = [ { hostPort = 70000; } ]; }) ];
    };
    short-option-interface-name = {
      description = "an interface name with a space (nspawn would read two interfaces)";
      expect = [ "nixos.containers.instances.web.interfaces" "is not of type" ];
      value = hostSystem [ (web { path = sys "web"; interfaces = [ "eth1 eth2" ]; }) ];
    };
    short-option-device-modifier = {
      description = "a device access modifier other than r, w, m";
      expect = [ "nixos.containers.instances.web.allowedDevices" "modifier" "is not of type" ];
      value = hostSystem [ (web { path = sys "web"; allowedDevices = [ { node = "/dev/fuse"; modifier = "rx"; } ]; }) ];
    };
    # Names of python-nixos-nspawn and the classic module (nix/lib/renamed-options.nix):
    # a copied configuration fails with what to write instead.
    python-zone-shape = {
      description = "python-nixos-nspawn's zones.<zone> = { systemd.network.networks settings }";
      expect = [ "Failed assertions" "nixos.containers.zones.lan.address: a zone has the options hostNetworkConfig and ipv4Subnet and ipv6Subnet and netdevConfig" "nixos.containers.zones.lan.hostNetworkConfig.address = …" ];
      value = hostSystem [ { nixos.containers.zones.lan = { address = [ "10.42.0.1/24" ]; networkConfig.DHCPServer = true; }; } ];
    };
    python-declarative = {
      description = "python-nixos-nspawn's declarative option on an instance";
      expect = [ "Failed assertions" "nixos.containers.instances.web.declarative: python-nixos-nspawn's declarative option is gone" "remove it" ];
      value = hostSystem [ (web { path = sys "web"; declarative = true; }) ];
    };
    classic-private-network = {
      description = "the classic privateNetwork = false";
      expect = [ "Failed assertions" "nixos.containers.instances.web.privateNetwork: privateNetwork is an option of the classic containers.<name> module; write networkMode = \"host\";" ];
      value = hostSystem [ (web { path = sys "web"; privateNetwork = false; }) ];
    };
    classic-host-bridge-in-config = {
      description = "the classic hostBridge, set in the container's own nixosContainer.*";
      expect = [ "Failed assertions" "nixos.containers.instances.web.hostBridge" "write bridge = \"br0\";" ];
      value = hostSystem [ (webConfig { nixosContainer.hostBridge = "br0"; }) ];
    };
    classic-private-users-imperative = {
      description = "the classic privateUsers in an imperative container";
      expect = [ "Failed assertions" "nixosContainer.privateUsers" "write userNamespacing = true;" ];
      value = toplevelOf (c.evalContainer { name = "imp"; modules = [ { nixosContainer.privateUsers = "pick"; } ]; }).config;
    };
    host-conflicting-definitions = {
      description = "two definitions of one option that disagree";
      expect = [ "networking.firewall.enable" "conflicting definition values" ];
      value = hostSystem [ { networking.firewall.enable = true; } { networking.firewall.enable = false; } ];
    };
    sysctl-same-priority = {
      description = "a sysctl defined twice at one priority (NixOS allows one definition)";
      expect = [ "boot.kernel.sysctl" "net.ipv4.conf.all.forwarding" "defined multiple times" ];
      value = hostSystem [ { boot.kernel.sysctl."net.ipv4.conf.all.forwarding" = mkOverride 900 false; } ];
    };
    read-only-option = {
      description = "setting a read-only option";
      expect = [ "nixos.containers.evaluated" "read-only" ];
      value = (evalHost [ { nixos.containers.evaluated = { }; } ]).nixos.containers.evaluated;
    };
    systemd-nspawn-shadows-container = {
      description = "systemd.nspawn.<name> next to a declarative container of that name";
      expect = [ "Failed assertions" "systemd.nspawn.web is also defined" "nixos.containers.instances.web.extraNspawn" ];
      value = hostSystem [ (web { path = sys "web"; }) { systemd.nspawn.web.execConfig.Boot = true; } ];
    };
    nixpkgs-config-with-host-pkgs = {
      description = "nixpkgs.pkgs and nixpkgs.config together (NixOS's assertion, which containers that set nixpkgs.config avoid)";
      expect = [ "Failed assertions" "externally created instance" ];
      value = hostSystem [ { nixpkgs.pkgs = import c.fakeNixpkgs { }; nixpkgs.config.allowBroken = true; } ];
    };
    misspelt-mkOption-argument = {
      description = "a declaration with an argument mkOption does not take";
      expect = [ "mkOption" "unexpected argument 'defualt'" ];
      value = (evalHost [ { options.my.option = lib.mkOption { type = lib.types.int; defualt = 1; }; } ]).my.option;
    };
    failed-assertion = {
      description = "a failed assertion stops the host's system";
      expect = [ "Failed assertions" "nixos.containers.instances.web" "config and path are both set" ];
      value = hostSystem [ (web { path = sys "web"; config.services.foo = 1; }) ];
    };
    firewall-shape-from-config = {
      description = "a networking.firewall definition whose attribute names depend on the backend (the mistake of issue 10)";
      expect = [ "infinite recursion" ];
      value = hostSystem [
        ({ config, ... }: {
          networking.firewall = mkIf config.networking.firewall.enable (
            if config.networking.firewall.backend == "nftables" then { extraInputRules = "accept"; }
            else { interfaces.eth0.allowedTCPPorts = [ 22 ]; });
        })
      ];
    };
  };

  buildCases = {
    zone-and-bridge = build "zone and bridge both set" [ "nixos.containers.instances.web: registry field network.bridge" "is set but network.mode is \"zone\"" ]
      (instanceChecks "web" { zone = "lan"; bridge = "br0"; });
    host-settings-in-a-zone = build "hostNetworkConfig of a container in a zone" [ "nixos.containers.instances.web: registry field network.host" "configure the zone in its zone file" ]
      (instanceChecks "web" { zone = "lan"; hostNetworkConfig.Network.DHCPServer = false; });
    host-settings-on-a-bridge = build "hostNetworkConfig of a container on a bridge" [ "nixos.containers.instances.web: registry field network.host" "network.mode is \"bridge\"" ]
      (instanceChecks "web" { bridge = "br0"; hostNetworkConfig.address = [ "10.0.0.1/24" ]; });
    zone-name-too-long = build "a zone name longer than 12" [ "nixos.containers.instances.web: registry field network.zone" "zones have at most 12" ]
      (instanceChecks "web" { zone = "thirteenchars"; });
    invalid-container-name = build "a container name with '_'" [ "nixos.containers.instances.web_1: registry field name" "\"web_1\" contains" ]
      (instanceChecks "web_1" { });
    container-name-too-long = build "a container name of 65 characters" [ "registry field name" "machine names have at most 64" ]
      (instanceChecks (a64 + "a") { });
    container-name-label-too-long = build "a container name whose label is longer than a host name may be" [ "nixos.containers.instances.${a64}: registry field name" "has a label of 64 characters" "at most 63" ]
      (instanceChecks a64 { });
    container-name-label-too-long-config = build "the same, built from config (the container's hostName is not a type error)" [ "nixos.containers.instances.${a64}: registry field name" "has a label of 64 characters" ]
      (instanceChecks a64 { path = null; config = { }; });
    bind-mount-with-space = build "a bind mount with a space" [ "nixos.containers.instances.web: registry field bindMounts[0]" "\"/srv/my data:/data\"" ]
      (instanceChecks "web" { bindMounts = [ "/srv/my data:/data" ]; });
    port-with-host-network = build "a port forward with the host's network" [ "nixos.containers.instances.web: registry field forwardPorts" "port forwarding needs a private network" ]
      (instanceChecks "web" { networkMode = "host"; forwardPorts = [ { hostPort = 80; } ]; });
    bad-address = build "a host-side address that is none" [ "nixos.containers.instances.web: registry field network.host.Network.Address[1]" "not-an-ip" ]
      (instanceChecks "web" { hostNetworkConfig.address = [ "10.0.0.1/24" "not-an-ip" ]; });
    credential-id = build "a credential id with '/'" [ "nixos.containers.instances.web: registry field credentials[0].id" "\"a/b\"" ]
      (instanceChecks "web" { credentials = [ { id = "a/b"; path = "/run/x"; } ]; });
    timeout = build "a start timeout that is no time span" [ "nixos.containers.instances.web: registry field timeoutStartSec" "is not a systemd time span" ]
      (instanceChecks "web" { timeoutStartSec = "soon"; });
    host-network-with-zone = build "networkMode host and a zone" [ "nixos.containers.instances.web: registry field network.zone" "is set but network.mode is \"host\"" ]
      (instanceChecks "web" { networkMode = "host"; zone = "lan"; });
    missing-bridge = build "networkMode bridge without a bridge" [ "nixos.containers.instances.web: registry field network.bridge" "is required when network.mode is \"bridge\"" ]
      (instanceChecks "web" { networkMode = "bridge"; });
    zone-file-name = build "a zone whose name is longer than 12" [ "nixos.containers.zones.thirteenchars: registry field name" "at most 12" ]
      (zoneChecks "thirteenchars" { });
    zone-file-address = build "a zone address that is none" [ "nixos.containers.zones.lan: registry field network.Network.Address" "10.0.0.300/24" ]
      (zoneChecks "lan" { hostNetworkConfig.Network.Address = "10.0.0.300/24"; });
    container-profile-zone-and-bridge = build "an imperative container's own check (nixosContainer.package)" [ "nixosContainer: registry field network.bridge" "is set but network.mode is \"zone\"" ]
      (containerChecks "bad" { zone = "lan"; bridge = "br0"; });
    container-profile-label-too-long = build "an imperative container's 64-character label" [ "nixosContainer: registry field name" "has a label of 64 characters" ]
      (containerChecks a64 { });
  };
}
