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
  hostNameOk = builtins.match "[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?" (lib.head labels) != null;

  values = registry.fromOptions cfg {
    inherit (cfg) name declarative;
    # The system's own store path, filled in when the system is built.
    system = builtins.placeholder "out";
  };
  entry = registry.entry values;
  diagnosis = registry.diagnose values;
  shortProblems = registry.shortOptionProblems values;
  renamedHints = (import ../lib/renamed-options.nix).instance (removeAttrs cfg [ "declarative" ]);

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
    package = mkOption {
      type = types.nullOr types.package;
      default = null;
      description = ''
        A nixos-nspawn package whose registry parser checks this container's
        entry.json when the system is built (system.checks), naming the
        registry field of each problem. null: no check at build time;
        `nixos-nspawn create` and `update` check the entry with the same parser
        when they read it. Declarative containers are checked by the host
        module instead.
      '';
    };
  };

  config = lib.mkMerge [
    {
      boot.isContainer = true;

      # Only a name NixOS accepts as a host name (one DNS label, at most 63
      # characters): a name the registry would refuse anyway is reported by the
      # registry parser (the host module's build-time check, the one below, or
      # nixos-nspawn create), not by a type error of networking.hostName.
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

      # Nix inside. The store is the host's, bound read-only, so the only Nix
      # that can build or add paths here is the host's daemon, whose socket
      # directory (and database) mountDaemonSocket binds in. That is off by
      # default: without a user namespace the container's root is root to the
      # host's nix-daemon, a trusted user, which is as good as root on the host
      # (trusted users may turn the build sandbox off or open host paths to
      # builds). A daemon of the container's own is worse (asserted below).
      # So by default the container has no Nix at all (rather than a `nix`
      # that fails with "cannot connect to socket"), and with
      # mountDaemonSocket it has the host's. docs/nixos.md, "Nix inside".
      nix.enable = mkDefault cfg.mountDaemonSocket;

      # The container's own daemon (nix.enable without mountDaemonSocket) must
      # not listen where the host's socket directory is bound. Decided by the
      # mount, not by the socket file: the own daemon's socket file stays in
      # the container's /var/lib/machines tree across restarts, so a
      # "no socket file yet" condition would skip the socket from the second
      # boot on.
      systemd.sockets.nix-daemon.unitConfig.ConditionPathIsMountPoint = "!/nix/var/nix/daemon-socket";
      systemd.services.nix-daemon.unitConfig.ConditionPathIsMountPoint = "!/nix/var/nix/daemon-socket";

      # The entry as Nix sees it (system = this system's placeholder), for tools and tests.
      system.build.nixosNspawnEntry = entry;

      system.systemBuilderCommands = mkIf (cfg.name != null) ''
        mkdir -p "$out/nixos-nspawn"
        printf '%s\n' ${lib.escapeShellArg (builtins.toJSON entry)} > "$out/nixos-nspawn/entry.json"
      '';

      # The registry parser on entry.json (system = this check's own store path).
      system.checks = lib.optional (!cfg.declarative && cfg.name != null && cfg.package != null)
        (pkgs.runCommandLocal "nixos-nspawn-entry-check" { } (registry.checkScript {
          inherit (cfg) package;
          options = "container";
          containers.${cfg.name} = builtins.toJSON entry + "\n";
        }));

      # Declarative containers are checked by the host module, with option paths
      # in the messages; imperative ones here (what only Nix can tell; the
      # parser's rules at build time, above).
      assertions = lib.optionals (!cfg.declarative && cfg.name != null) (map
        (e: {
          assertion = false;
          message = "nixosContainer.${e.option} (registry field ${e.field}): ${e.message}";
        })
        diagnosis.errors)
      ++ lib.optionals (!cfg.declarative) (map
        (e: { assertion = false; message = "nixosContainer.${e.option}: ${e.message}"; })
        shortProblems.errors)
      ++ lib.optionals (!cfg.declarative) (map
        (h: { assertion = false; message = "nixosContainer.${h.option}: ${h.message}"; })
        (lib.filter (h: !(h.warning or false)) renamedHints))
      ++ [
        {
          # nix-daemon remounts a read-only /nix/store writable in a mount
          # namespace of its own (it does so for NixOS's store bind), which a
          # container's root without a user namespace may: the container's own
          # daemon would write into the host's store, with a database that
          # knows none of the host's paths (to its garbage collector they are
          # all garbage).
          assertion = !(config.nix.enable && !cfg.mountDaemonSocket && !cfg.userNamespacing);
          message = "nix.enable without nixosContainer.mountDaemonSocket: the container would run a nix-daemon of its own on the host's store (bound read-only, but its root can remount it writable) with an empty database of its own, whose garbage collection would delete the host's store paths. Set nixosContainer.mountDaemonSocket = true to use the host's daemon (with userNamespacing, as an untrusted Nix user), or leave nix.enable at its default (false).";
        }
      ];
      warnings = lib.optionals (!cfg.declarative && cfg.name != null)
        (map (w: "nixosContainer.${w.option}: ${w.message}") diagnosis.warnings)
        ++ lib.optionals (!cfg.declarative) (map (w: "nixosContainer.${w.option}: ${w.message}") shortProblems.warnings)
        ++ lib.optionals (!cfg.declarative)
          (map (h: "nixosContainer.${h.option}: ${h.message}") (lib.filter (h: h.warning or false) renamedHints))
        ++ lib.optional (cfg.mountDaemonSocket && !cfg.userNamespacing)
          "nixosContainer.mountDaemonSocket without userNamespacing: the container's root is root to the host's nix-daemon (a trusted user, which can disable the build sandbox and read host files through builds), i.e. root on the host. Set userNamespacing = true to make it an untrusted Nix user."
        ++ lib.optional (config.nix.enable && !cfg.mountDaemonSocket && cfg.userNamespacing)
          "nix.enable without nixosContainer.mountDaemonSocket: the container's own nix-daemon cannot use the host's store (bound read-only, and the user namespace keeps it so) and has an empty database of its own, so builds and most store operations fail inside. Set mountDaemonSocket = true to use the host's daemon.";
    }

    # Newer nixpkgs separate nspawn-specific container settings from isContainer.
    (lib.optionalAttrs ((options.boot or { }) ? isNspawnContainer) {
      boot.isNspawnContainer = true;
    })
  ];
}
