# The in-container profile: imported into every container's NixOS configuration
# (declarative ones by the host module, imperative ones by lib.mkContainer and
# nix/eval-container.nix).
#
# - boot.isContainer: no kernel, no stage 1, no boot loader; the container is
#   started with <profile>/init by systemd-nspawn.
# - systemd-networkd inside, `host0` configured like systemd's
#   80-container-host0.network (DHCP from the host), systemd-resolved; the
#   addresses the host assigned (derived from the container name, or fixed with
#   hostAddress/localAddress) arrive as the credential nixos-nspawn.host0, which
#   nixos-nspawn-host0.service installs as a drop-in for that network before
#   networkd starts, so host0 has them without waiting for DHCP.
# - hostname = container name.
# - `nixosContainer.*`: the container's own settings (the same options as
#   nixos.containers.instances.<name>). They are written into the system as
#   $out/nixos-nspawn/entry.json, a complete registry entry (schema v1) that
#   `nixos-nspawn create/update` start from.
{ config, lib, options, pkgs, ... }:
let
  inherit (lib) mkDefault mkIf mkOption mkOverride types;
  cfg = config.nixosContainer;
  registry = import ../lib/registry-entry.nix;

  labels = lib.splitString "." cfg.name;

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

      networking.hostName = mkIf (cfg.name != null) (mkDefault (lib.head labels));
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

      # The host's addresses for host0 (crates/core/src/addressing.rs), before
      # networkd starts: the credential is a drop-in for "20-host0" above (so
      # containerNetworkConfig still applies). networkd reads it as
      # systemd-network, hence 0644 rather than the credential's 0400.
      systemd.services.nixos-nspawn-host0 = {
        description = "Addresses of host0 from the host (nixos-nspawn)";
        wantedBy = [ "sysinit.target" ];
        before = [ "systemd-networkd.service" "network-pre.target" ];
        wants = [ "network-pre.target" ];
        unitConfig = {
          DefaultDependencies = false;
          ConditionCredential = "nixos-nspawn.host0";
        };
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          LoadCredential = "nixos-nspawn.host0:nixos-nspawn.host0";
          ExecStart = "${pkgs.coreutils}/bin/install -D -m 0644 %d/nixos-nspawn.host0 /run/systemd/network/20-host0.network.d/50-nixos-nspawn.conf";
        };
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
