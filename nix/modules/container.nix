# The in-container profile: imported into every container's NixOS configuration
# (declarative ones by the host module, imperative ones by lib.mkContainer and
# nix/eval-container.nix).
#
# - boot.isContainer: no kernel, no stage 1, no boot loader; the container is
#   started with <profile>/init by systemd-nspawn.
# - systemd-networkd inside, `host0` configured like systemd's
#   80-container-host0.network (DHCP from the host), systemd-resolved.
# - hostname = container name.
# - `nixosContainer.*`: the container's own settings (the same options as
#   nixos.containers.instances.<name>). They are written into the system as
#   $out/nixos-nspawn/entry.json, a complete registry entry (schema v1) that
#   `nixos-nspawn create/update` start from.
{ config, lib, options, ... }:
let
  inherit (lib) mkDefault mkIf mkOption mkOverride types;
  cfg = config.nixosContainer;
  registry = import ../lib/registry-entry.nix;

  labels = lib.splitString "." cfg.name;
  hostNameOk = builtins.match "[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?" (lib.head labels) != null;

  values = registry.fromOptions cfg {
    inherit (cfg) name declarative;
    # The system's own store path, filled in when the system is built.
    system = builtins.placeholder "out";
  };
  entry = registry.entry values;
  diagnosis = registry.diagnose values;

  host0Defaults = {
    matchConfig = {
      Kind = mkDefault "veth";
      Name = mkDefault "host0";
      Virtualization = mkDefault "container";
    };
    networkConfig = {
      DHCP = mkDefault "yes";
      LinkLocalAddressing = mkDefault "yes";
      LLDP = mkDefault true;
      EmitLLDP = mkDefault "customer-bridge";
    };
    dhcpV4Config.UseTimezone = mkDefault true;
  };
in
{
  options.nixosContainer = import ./options.nix { inherit lib cfg; } // {
    name = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = ''
        The container's machine name. Sets the host name (its first label; the
        rest becomes networking.domain). Set by the host module for declarative
        containers, by lib.mkContainer and by `nixos-nspawn create` otherwise.
      '';
    };
    declarative = mkOption {
      type = types.bool;
      default = false;
      internal = true;
      description = "Whether the host module evaluates this container (it then checks the settings itself).";
    };
  };

  config = lib.mkMerge [
    {
      boot.isContainer = true;

      # Only a name NixOS accepts as a host name (one DNS label, at most 63
      # characters): a name the registry would refuse anyway is reported by the
      # checks of the entry (the host module's assertions, or those below), not
      # by a type error of networking.hostName.
      networking.hostName = mkIf (cfg.name != null && hostNameOk) (mkDefault (lib.head labels));
      networking.domain = mkIf (cfg.name != null && lib.length labels > 1)
        (mkDefault (lib.concatStringsSep "." (lib.tail labels)));

      # networkd configures host0 while the container boots, so services that need
      # the network find it up (unlike the classic containers' scripted eth0).
      networking.useNetworkd = mkDefault true;
      networking.useDHCP = mkDefault false;
      # container-config.nix defaults this to true; resolved needs it false.
      networking.useHostResolvConf = mkOverride 900 false;
      services.resolved.enable = mkDefault true;

      systemd.network.enable = true;
      # A function, so that the definition is a full module (a plain attribute set
      # would only define options, and `imports` is needed for the deferred module).
      systemd.network.networks."20-host0" = { ... }: {
        imports = [ host0Defaults cfg.containerNetworkConfig ];
      };

      # With mountDaemonSocket the host's socket is mounted at this path; the
      # container's own daemon must not try to listen there.
      systemd.sockets.nix-daemon.unitConfig.ConditionPathExists = "!/nix/var/nix/daemon-socket/socket";

      # The entry as Nix sees it (system = this system's placeholder), for tools and tests.
      system.build.nixosNspawnEntry = entry;

      system.systemBuilderCommands = mkIf (cfg.name != null) ''
        mkdir -p "$out/nixos-nspawn"
        printf '%s\n' ${lib.escapeShellArg (builtins.toJSON entry)} > "$out/nixos-nspawn/entry.json"
      '';

      # Declarative containers are checked by the host module, with option paths
      # in the messages; imperative ones here.
      assertions = lib.optionals (!cfg.declarative && cfg.name != null) (map
        (e: {
          assertion = false;
          message = "nixosContainer.${e.option} (registry field ${e.field}): ${e.message}";
        })
        diagnosis.errors);
      warnings = lib.optionals (!cfg.declarative && cfg.name != null)
        (map (w: "nixosContainer.${w.option}: ${w.message}") diagnosis.warnings);
    }

    # Newer nixpkgs separate nspawn-specific container settings from isContainer.
    (lib.optionalAttrs ((options.boot or { }) ? isNspawnContainer) {
      boot.isNspawnContainer = true;
    })
  ];
}
