# The host module: declarative NixOS containers on systemd-nspawn + networkd.
#
# nixos.containers.instances.<name> becomes a registry entry
# /etc/nixos-nspawn/containers/<name>.json (schema v1, a store symlink),
# nixos.containers.zones.<zone> a zone file /etc/nixos-nspawn/zones/<zone>.json.
# The nixos-nspawn generator turns the registry into systemd-nspawn@<name>.service
# drop-ins, .nspawn files and networkd files at boot and on every daemon-reload;
# nixos-nspawn-apply.service runs `nixos-nspawn apply` after every switch, which
# starts, reloads, restarts or stops containers as their activation strategy says.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkDefault mkIf mkOption types literalExpression;
  cfg = config.nixos.containers;
  registry = import ../lib/registry-entry.nix;
  containerModule = ./container.nix;

  sharedOptionNames = registry.optionNames ++ [ "containerNetworkConfig" ];
  optionDefaultPriority = 1500; # lib.mkOptionDefault

  instanceModule = { name, config, options, ... }: {
    options = import ./options.nix { inherit lib; cfg = config; } // {
      config = mkOption {
        type = types.deferredModule;
        default = { };
        example = literalExpression ''
          { pkgs, ... }: {
            services.nginx.enable = true;
            networking.firewall.allowedTCPPorts = [ 80 ];
            system.stateVersion = "25.05";
          }
        '';
        description = ''
          The container's NixOS configuration. It is evaluated with the container
          profile (boot.isContainer, networkd, host0 defaults, hostname = name) and
          may itself set `nixosContainer.*` (the same settings as this instance's
          options), so a configuration written for an imperative container can be
          used here unchanged.
        '';
      };
      nixpkgs = mkOption {
        type = types.path;
        default = pkgs.path;
        defaultText = literalExpression "pkgs.path";
        description = "The nixpkgs whose NixOS evaluates the container's config.";
      };
      specialArgs = mkOption {
        type = types.attrsOf types.unspecified;
        default = { };
        description = "Extra arguments passed to the modules of the container's config.";
      };
      path = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = "/nix/var/nix/profiles/per-container/web/system";
        description = ''
          Instead of `config`: an already built system (a NixOS toplevel built
          with boot.isContainer, ideally with nixos-nspawn's container profile).
          The instance's options are then the only source of its settings.
        '';
      };
      configIsSet = mkOption {
        type = types.bool;
        internal = true;
        readOnly = true;
        default = options.config.highestPrio < optionDefaultPriority;
        description = "Whether config was given (for the config/path assertion).";
      };
      # Priorities of the shared options, for forwarding them into the container.
      priorities = mkOption {
        type = types.attrsOf types.int;
        internal = true;
        readOnly = true;
        default =
          lib.genAttrs sharedOptionNames (n: options.${n}.highestPrio)
          // lib.mapAttrs' (n: o: lib.nameValuePair "activation.${n}" o.highestPrio) {
            inherit (options.activation) strategy reloadScript autoStart;
          };
        description = "Definition priorities of the shared options.";
      };
    };
  };

  # Options set on the instance are forwarded into the container's nixosContainer.*
  # with the priority they were given, so both places can be used and the container's
  # view of its own settings matches the registry entry.
  forwardModule = name: inst: {
    nixosContainer =
      lib.genAttrs sharedOptionNames
        (n: mkIf (inst.priorities.${n} < optionDefaultPriority) (lib.mkOverride inst.priorities.${n} inst.${n}))
      // {
        activation = lib.genAttrs [ "strategy" "reloadScript" "autoStart" ] (n:
          let p = inst.priorities."activation.${n}"; in
          mkIf (p < optionDefaultPriority) (lib.mkOverride p inst.activation.${n}));
        inherit name;
        declarative = true;
      };
  };

  platformModule = { options, ... }: {
    nixpkgs =
      if options.nixpkgs ? hostPlatform
      then { hostPlatform = mkDefault pkgs.stdenv.hostPlatform; }
      else { localSystem = mkDefault pkgs.stdenv.hostPlatform; };
  };

  evalInstance = name: inst:
    import "${inst.nixpkgs}/nixos/lib/eval-config.nix" {
      system = null;
      inherit (inst) specialArgs;
      modules = [ containerModule platformModule (forwardModule name inst) inst.config ];
    };

  instances = lib.mapAttrs
    (name: inst:
      let
        evaluated = evalInstance name inst;
        settings = if inst.path != null then inst else evaluated.config.nixosContainer;
        system = if inst.path != null then "${inst.path}" else "${evaluated.config.system.build.toplevel}";
        values = registry.fromOptions settings { inherit name system; declarative = true; };
      in
      {
        inherit values system;
        config = if inst.path != null then null else evaluated.config;
        entry = registry.entry values;
        diagnosis = registry.diagnose values;
      })
    cfg.instances;

  zones = lib.mapAttrs
    (name: z:
      let values = { inherit name; inherit (z) hostNetworkConfig netdevConfig; }; in
      { file = registry.zone values; diagnosis = registry.diagnoseZone values; })
    cfg.zones;

  entryFiles = lib.mapAttrs' (name: i: lib.nameValuePair (registry.containerFile name) {
    text = builtins.toJSON i.entry + "\n";
  }) instances;
  zoneFiles = lib.mapAttrs' (name: z: lib.nameValuePair (registry.zoneFile name) {
    text = builtins.toJSON z.file + "\n";
  }) zones;

  instanceAssertions = lib.concatLists (lib.mapAttrsToList
    (name: i:
      let
        inst = cfg.instances.${name};
        prefix = "nixos.containers.instances.${lib.strings.escapeNixIdentifier name}";
      in
      [
        {
          assertion = !(inst.path != null && inst.configIsSet);
          message = "${prefix}: config and path are both set; give the container's NixOS configuration (config) or an already built system (path), not both.";
        }
      ]
      ++ map
        (e: {
          assertion = false;
          message =
            if e.field == "name" then "${prefix}: the container name ${e.message}"
            else "${prefix}.${e.option}: ${e.message}";
        })
        i.diagnosis.errors)
    instances);

  zoneAssertions = lib.concatLists (lib.mapAttrsToList
    (name: z: map
      (e: {
        assertion = false;
        message =
          let prefix = "nixos.containers.zones.${lib.strings.escapeNixIdentifier name}"; in
          if e.field == "name" then "${prefix}: the zone name ${e.message}" else "${prefix}.${e.option}: ${e.message}";
      })
      z.diagnosis.errors)
    zones);

  instanceWarnings = lib.concatLists (lib.mapAttrsToList
    (name: i: map (w: "nixos.containers.instances.${name}.${w.option}: ${w.message}") i.diagnosis.warnings)
    instances);

  nftables =
    (config.networking.firewall.backend or (if config.networking.nftables.enable then "nftables" else "iptables"))
    == "nftables";

  # What the host offers on the container links: DHCPv4 (networkd's DHCPServer),
  # DNS and LLMNR if the host answers them, DHCPv6.
  firewallUDP = [ 53 67 68 546 547 5355 ];
  firewallTCP = [ 53 5355 ];
in
{
  options.nixos.containers = {
    enable = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether to set the host up for nixos-nspawn containers (on by default
        once this module is imported): the package, the generator, networkd,
        the registry entries and the apply service.
      '';
    };

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ../package.nix {
        # NixOS has no /usr: the running system's systemd and unit directory.
        systemdNspawn = "/run/current-system/systemd/bin/systemd-nspawn";
        systemdUnitDir = "/etc/systemd/system";
        # Tools of the running system, whatever PATH a unit or generator has.
        toolPaths = lib.genAttrs [ "systemctl" "machinectl" "networkctl" "busctl" ]
          (t: "/run/current-system/systemd/bin/${t}")
        // lib.genAttrs [ "nix" "nix-build" "nix-store" ]
          (t: "/run/current-system/sw/bin/${t}")
        // { cp = "/run/current-system/sw/bin/cp"; };
      };
      defaultText = literalExpression ''
        pkgs.callPackage <nixos-nspawn>/nix/package.nix {
          systemdNspawn = "/run/current-system/systemd/bin/systemd-nspawn";
          systemdUnitDir = "/etc/systemd/system";
        }
      '';
      description = ''
        The nixos-nspawn package (CLI, generator and helpers). The default fixes
        the paths the generated units use to NixOS's; the flake's `packages` and
        the overlay build it for other distributions (`systemd-nspawn` by name,
        units in /usr/lib/systemd/system).
      '';
    };

    instances = mkOption {
      type = types.attrsOf (types.submodule instanceModule);
      default = { };
      example = literalExpression ''
        {
          web = {
            config = { services.nginx.enable = true; system.stateVersion = "25.05"; };
            forwardPorts = [ { hostPort = 8080; containerPort = 80; } ];
            bindMounts = [ "/srv/www:/var/www:ro" ];
          };
        }
      '';
      description = ''
        Declarative containers. Each becomes
        /etc/nixos-nspawn/containers/<name>.json and runs as
        systemd-nspawn@<name>.service; its state lives in /var/lib/machines/<name>.
      '';
    };

    zones = mkOption {
      type = types.attrsOf (types.submodule {
        options = {
          hostNetworkConfig = mkOption {
            type = types.nullOr (types.attrsOf types.anything);
            default = null;
            example = literalExpression ''{ address = [ "10.42.0.1/24" ]; Network.DHCPServer = false; }'';
            description = ''
              Settings for the zone's bridge `vz-ZONE` on the host, merged over the
              defaults of systemd's 80-container-vz.network (same form as an
              instance's hostNetworkConfig).
            '';
          };
          netdevConfig = mkOption {
            type = types.nullOr (types.attrsOf types.anything);
            default = null;
            example = literalExpression ''{ }'';
            description = ''
              When not null, networkd creates the bridge `vz-ZONE` itself (merged over
              `NetDev.Name = "vz-ZONE"; NetDev.Kind = "bridge";`), so it exists
              while no container of the zone runs. When null, systemd-nspawn creates
              it with the first container of the zone.
            '';
          };
        };
      });
      default = { };
      example = literalExpression ''{ lan.hostNetworkConfig.address = [ "10.42.0.1/24" ]; }'';
      description = ''
        Host-side configuration of network zones (at most 12 characters per
        name). A zone used by a container but not declared here gets
        systemd's defaults (DHCP, NAT, link-local addresses).
      '';
    };

    enableAutostartService = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether to run `nixos-nspawn apply` from nixos-nspawn-apply.service at
        boot and after every switch that changes a registry entry or the package:
        it starts autostart containers that are not running and reloads,
        restarts or stops changed containers as their activation strategy says.
        When false, containers still start at boot (machines.target), but
        changes reach running containers only when you run `nixos-nspawn apply`.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Allow DHCP, DHCPv6, DNS and LLMNR from container links (`ve-*`, `vz-*`)
        to the host in the NixOS firewall.
      '';
    };

    evaluated = mkOption {
      type = types.attrsOf types.unspecified;
      readOnly = true;
      internal = true;
      default = lib.mapAttrs (_: i: { inherit (i) config system entry; }) instances;
      defaultText = literalExpression "{ <name> = { config; system; entry; }; }";
      description = ''
        Per instance, for inspection (`nix repl`) and tests: the container's
        evaluated NixOS `config` (null when `path` is used), its `system` and the
        registry `entry` written to /etc.
      '';
    };

    ipForwarding = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Enable IPv4 forwarding (net.ipv4.conf.all.forwarding), which the NAT
        that networkd sets up for container links (IPMasquerade=) needs to give
        containers an uplink. IPv6 forwarding is left alone: enabling it globally
        stops the kernel from accepting router advertisements on interfaces not
        managed by networkd.
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = instanceAssertions ++ zoneAssertions;
    warnings = instanceWarnings;

    environment.etc = entryFiles // zoneFiles;
    environment.systemPackages = [ cfg.package ];

    # /etc/systemd/system-generators/nixos-nspawn-generator; the generator finds its
    # helpers next to its own (resolved) executable in the package's bin/.
    systemd.generators.nixos-nspawn-generator =
      "${cfg.package}/lib/systemd/system-generators/nixos-nspawn-generator";

    # networkd configures the host side of container links (the generator writes
    # the files under /run/systemd/network). It only touches links matched by a
    # .network file, so hosts using scripted networking or NetworkManager keep it.
    systemd.network.enable = true;
    # With scripted networking no uplink is managed by networkd, and
    # systemd-networkd-wait-online would wait for links that never come.
    systemd.network.wait-online.enable = mkIf (!config.networking.useNetworkd) (mkDefault false);

    systemd.targets.multi-user.wants = [ "machines.target" ];

    # Running containers are reconciled by nixos-nspawn-apply.service as their
    # activation strategy says; switch-to-configuration must not restart all of
    # them because the systemd-nspawn@.service template changed (a systemd update).
    systemd.services."systemd-nspawn@".restartIfChanged = false;

    systemd.services.nixos-nspawn-apply = mkIf cfg.enableAutostartService {
      description = "Apply nixos-nspawn container changes";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network.target" ];
      after = [ "network.target" "systemd-networkd.service" "machines.target" ];
      # Re-run after a switch whenever a registry entry, a zone or the tool changes.
      restartTriggers =
        map (f: config.environment.etc.${f}.source) (lib.attrNames (entryFiles // zoneFiles))
        ++ [ cfg.package ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${cfg.package}/bin/nixos-nspawn apply";
      };
    };

    boot.kernel.sysctl."net.ipv4.conf.all.forwarding" = mkIf cfg.ipForwarding (mkDefault true);
    # Every container's inotify instances count against root's limit (128 by
    # default: ~15 containers), with or without user namespaces; see
    # dist/sysctl.d/60-nixos-nspawn.conf. Weaker than mkDefault, so modules that
    # raise it further (X11 sets 524288 with mkDefault) win without a conflict.
    boot.kernel.sysctl."fs.inotify.max_user_instances" = lib.mkOverride 1100 8192;

    # Other network managers must leave container links alone.
    networking.dhcpcd.denyInterfaces = [ "ve-*" "vb-*" "vz-*" ];
    networking.networkmanager.unmanaged = mkIf config.networking.networkmanager.enable
      [ "interface-name:ve-*" "interface-name:vb-*" "interface-name:vz-*" ];

    networking.firewall = mkIf (cfg.openFirewall && config.networking.firewall.enable) (
      if nftables then {
        extraInputRules = ''
          iifname { "ve-*", "vz-*" } udp dport { ${lib.concatMapStringsSep ", " toString firewallUDP} } accept comment "nixos-nspawn containers"
          iifname { "ve-*", "vz-*" } tcp dport { ${lib.concatMapStringsSep ", " toString firewallTCP} } accept comment "nixos-nspawn containers"
        '';
      } else {
        # iptables' interface wildcard is "+".
        interfaces."ve-+" = { allowedUDPPorts = firewallUDP; allowedTCPPorts = firewallTCP; };
        interfaces."vz-+" = { allowedUDPPorts = firewallUDP; allowedTCPPorts = firewallTCP; };
      });
  };
}
