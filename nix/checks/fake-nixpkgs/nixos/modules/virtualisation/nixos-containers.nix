# nixos/modules/virtualisation/nixos-containers.nix: boot.isContainer and
# NixOS's classic containers (containers.<name>, container@<name>.service),
# whose configuration is evaluated with the container's nixpkgs' eval-config.nix
# as NixOS does (here: the stand-in's, when nixpkgs is the stand-in).
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  nullStr = description: mkOption { type = types.nullOr types.str; default = null; inherit description; };
  strs = description: mkOption { type = types.listOf types.str; default = [ ]; inherit description; };

  bindMount = { name, ... }: {
    options = {
      mountPoint = mkOption { type = types.str; description = "Mount point in the container."; };
      hostPath = nullStr "Path on the host.";
      isReadOnly = mkOption { type = types.bool; default = true; description = "Whether the mount is read-only."; };
    };
    config.mountPoint = lib.mkDefault name;
  };
  forwardPort = {
    options = {
      protocol = mkOption { type = types.str; default = "tcp"; description = "tcp or udp."; };
      hostPort = mkOption { type = types.port; description = "Port on the host."; };
      containerPort = mkOption { type = types.nullOr types.port; default = null; description = "Port in the container (default: hostPort)."; };
    };
  };

  containerModule = { config, options, name, ... }: {
    options = {
      config = mkOption {
        description = "The container's NixOS configuration.";
        type = lib.mkOptionType {
          name = "Toplevel NixOS config";
          merge = _loc: defs: (import "${toString config.nixpkgs}/nixos/lib/eval-config.nix" {
            modules = [
              {
                boot.isContainer = true;
                networking.hostName = lib.mkDefault name;
                networking.useDHCP = false;
                nixpkgs.hostPlatform = lib.mkDefault pkgs.stdenv.hostPlatform;
              }
            ] ++ map (d: d.value) defs;
            prefix = [ "containers" name ];
            inherit (config) specialArgs;
            system = null;
          }).config;
        };
      };
      path = mkOption { type = types.path; description = "The container's built system."; };
      nixpkgs = mkOption { type = types.path; default = pkgs.path; description = "The nixpkgs the container's configuration is evaluated with."; };
      specialArgs = mkOption { type = types.attrsOf types.unspecified; default = { }; description = "Special arguments of the container's modules."; };
      additionalCapabilities = strs "Capabilities the container gets.";
      ephemeral = mkOption { type = types.bool; default = false; description = "Whether the container's state is temporary."; };
      enableTun = mkOption { type = types.bool; default = false; description = "Whether /dev/net/tun is available."; };
      privateNetwork = mkOption { type = types.bool; default = false; description = "Whether the container has a network of its own."; };
      privateUsers = mkOption {
        type = types.either types.ints.u32 (types.enum [ "no" "identity" "pick" ]);
        default = "no";
        description = "The container's user namespace (--private-users).";
      };
      interfaces = strs "Host interfaces moved into the container.";
      macvlans = strs "Host interfaces the container gets a MACVLAN of.";
      autoStart = mkOption { type = types.bool; default = false; description = "Whether the container starts at boot."; };
      restartIfChanged = mkOption { type = types.bool; default = true; description = "Whether a switch restarts the changed container."; };
      timeoutStartSec = mkOption { type = types.str; default = "1min"; description = "Time for the container to start."; };
      bindMounts = mkOption { type = types.attrsOf (types.submodule bindMount); default = { }; description = "Bind mounts."; };
      tmpfs = strs "tmpfs mounts.";
      extraFlags = strs "Extra systemd-nspawn arguments.";
      hostBridge = nullStr "Bridge the container's interface is added to.";
      hostAddress = nullStr "The host's IPv4 address on the container link.";
      hostAddress6 = nullStr "The host's IPv6 address on the container link.";
      localAddress = nullStr "The container's IPv4 address.";
      localAddress6 = nullStr "The container's IPv6 address.";
      forwardPorts = mkOption { type = types.listOf (types.submodule forwardPort); default = [ ]; description = "Ports forwarded from the host."; };
    };
    config.path = lib.mkIf options.config.isDefined config.config.system.build.toplevel;
  };
in
{
  options.boot = {
    isContainer = lib.mkOption {
      type = lib.types.bool;
      default = config.boot.isNspawnContainer;
      description = "Whether this NixOS machine is a lightweight container running in another system.";
    };
    isNspawnContainer = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Whether the machine runs in an nspawn container.";
    };
    enableContainers = lib.mkOption {
      type = lib.types.bool;
      default = config.containers != { };
      description = "Whether classic NixOS containers (containers.*) can run here.";
    };
  };

  options.containers = mkOption {
    default = { };
    description = "NixOS's classic declarative containers.";
    type = types.attrsOf (types.submodule containerModule);
  };

  config = lib.mkIf (config.boot.enableContainers && config.containers != { }) {
    systemd.services = lib.mapAttrs' (name: c: lib.nameValuePair "container@${name}" {
      wantedBy = lib.optional c.autoStart "machines.target";
      restartIfChanged = c.restartIfChanged;
      environment.SYSTEM_PATH = toString c.path;
    }) config.containers;
  };
}
