# Configurations that must not evaluate, and what the error must say. nix/checks/run
# evaluates each `cases.<name>.value` in a process of its own (an infinite
# recursion cannot be caught inside an evaluation) and checks that it fails with
# every text of `cases.<name>.expect` in its messages, with nixpkgs' lib and with
# the minilib alike:
#
#   nix-instantiate --eval --strict nix/checks/module-errors.nix -A cases.NAME.value
{ nixpkgsLib ? null }:
let
  c = import ./common.nix { inherit nixpkgsLib; };
  inherit (c) lib sys evalHost toplevelOf;
  inherit (lib) mkIf mkOverride;

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
      expect = [ "Failed assertions" "nixos.containers.zones.lan.address: a zone has the options hostNetworkConfig and netdevConfig" "nixos.containers.zones.lan.hostNetworkConfig.address = …" ];
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
    failed-assertion = {
      description = "a failed assertion stops the host's system";
      expect = [ "Failed assertions" "nixos.containers.instances.web" "are both set" ];
      value = hostSystem [ (web { path = sys "web"; zone = "lan"; bridge = "br0"; }) ];
    };
    systemd-nspawn-shadows-container = {
      description = "systemd.nspawn.<name> next to a declarative container of that name";
      expect = [ "Failed assertions" "systemd.nspawn.web is also defined" "nixos.containers.instances.web.extraNspawn" ];
      value = hostSystem [ (web { path = sys "web"; }) { systemd.nspawn.web.execConfig.Boot = true; } ];
    };
    container-name-label-too-long = {
      description = "a container name whose label is longer than a host name may be";
      expect = [ "Failed assertions" "has a label of 64 characters" "at most 63" ];
      value = hostSystem [ { nixos.containers.instances.${lib.concatStrings (lib.genList (_: "a") 64)}.config = { }; } ];
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
}
