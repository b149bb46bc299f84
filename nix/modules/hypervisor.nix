# The host module: declarative NixOS containers on systemd-nspawn + networkd.
#
# nixos.containers.instances.<name> becomes a registry entry
# /etc/nixos-nspawn/containers/<name>.json (schema v1, a store symlink),
# nixos.containers.zones.<zone> a zone file /etc/nixos-nspawn/zones/<zone>.json.
# The nixos-nspawn generator turns the registry into systemd-nspawn@<name>.service
# drop-ins, .nspawn files and networkd files at boot and on every daemon-reload;
# nixos-nspawn-apply.service runs `nixos-nspawn apply` after every switch, which
# starts, reloads, restarts or stops containers as their activation strategy says.
{ config, options, lib, pkgs, ... }:
let
  inherit (lib) mkDefault mkIf mkOption types literalExpression;
  cfg = config.nixos.containers;
  registry = import ../lib/registry-entry.nix;
  renamed = import ../lib/renamed-options.nix;

  # The options of a zone (nixos.containers.zones.<name>); any other attribute is
  # python-nixos-nspawn's form, refused with a hint that names these.
  zoneOptions = {
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
      ipv4Subnet = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "192.168.50.0/24";
        description = ''
          The zone's IPv4 subnet (`/8` to `/26`, outside the derived pools) instead
          of the one derived from its name: the bridge takes its first address,
          members the lower half, DHCP the upper half (docs/networking.md).
        '';
      };
      ipv6Subnet = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "fd00:50::/64";
        description = ''
          The zone's IPv6 `/64` instead of the one derived from the host's ULA prefix.
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
        description = ''
          The nixpkgs whose NixOS modules, lib and packages evaluate the container's
          `config`. When this is not set, the container uses the host's package set
          (`nixpkgs.pkgs = lib.mkDefault pkgs` inside the container, as classic
          containers can): the host's overlays and `nixpkgs.config` (allowUnfree,
          ...) apply, and nixpkgs is evaluated once for the host and all its
          containers. A container whose configuration sets `nixpkgs.config` gets its
          own evaluation of nixpkgs with that configuration instead (NixOS does not
          allow `nixpkgs.config` next to `nixpkgs.pkgs`); `nixpkgs.overlays` of a
          container are applied on top of the host's package set.
        '';
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
      # python-nixos-nspawn's option, refused with a hint (renamed-options.nix).
      declarative = mkOption {
        type = types.nullOr types.anything;
        default = null;
        visible = false;
        description = "python-nixos-nspawn's declarative; refused with a hint.";
      };
      configIsSet = mkOption {
        type = types.bool;
        internal = true;
        readOnly = true;
        default = options.config.highestPrio < optionDefaultPriority;
        description = "Whether config was given (for the config/path assertion).";
      };
      nixpkgsIsSet = mkOption {
        type = types.bool;
        internal = true;
        readOnly = true;
        default = options.nixpkgs.highestPrio < optionDefaultPriority;
        description = "Whether nixpkgs was given (otherwise the container uses the host's package set).";
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

  # The host's package set for containers that do not bring their own nixpkgs,
  # unless the container's configuration sets nixpkgs.config (which NixOS only
  # accepts without nixpkgs.pkgs).
  # (`config =`: whether a module has options must not depend on `options`.)
  hostPkgsModule = { options, ... }: {
    config = lib.optionalAttrs (options.nixpkgs ? pkgs) {
      nixpkgs.pkgs = mkIf (options.nixpkgs.config.highestPrio >= optionDefaultPriority) (mkDefault pkgs);
    };
  };

  # As nixpkgs' own container module does: the nixpkgs path is passed as a string
  # (toString), so a nixpkgs outside the store is not copied into it, and option
  # paths in messages start at the instance's `config`.
  evalInstance = name: inst:
    import "${toString inst.nixpkgs}/nixos/lib/eval-config.nix" {
      system = null;
      prefix = [ "nixos" "containers" "instances" name "config" ];
      inherit (inst) specialArgs;
      modules = [ containerModule platformModule ]
        ++ lib.optional (!inst.nixpkgsIsSet) hostPkgsModule
        ++ [ (forwardModule name inst) inst.config ];
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
        options = if inst.path != null then null else evaluated.options;
        entry = registry.entry values;
        diagnosis = registry.diagnose values;
        shortProblems = registry.shortOptionProblems values;
        # Names of python-nixos-nspawn and the classic module, on the instance or
        # in the container's nixosContainer.* (declarative is set there by us).
        renamedHints = lib.unique (renamed.instance inst
          ++ lib.optionals (inst.path == null) (renamed.instance (removeAttrs evaluated.config.nixosContainer [ "declarative" ])));
      })
    cfg.instances;

  # Each problem `problems name value` gives for the members of `set`, as
  # assertions (or warnings) naming the option: nixos.containers.KIND.NAME.OPTION.
  problemAssertions = kind: problems: set: lib.concatLists (lib.mapAttrsToList
    (name: x: map
      (e: {
        assertion = false;
        message = "nixos.containers.${kind}.${lib.strings.escapeNixIdentifier name}.${e.option}: ${e.message}";
      })
      (problems name x))
    set);
  problemWarnings = kind: problems: set: lib.concatLists (lib.mapAttrsToList
    (name: x: map (w: "nixos.containers.${kind}.${name}.${w.option}: ${w.message}") (problems name x))
    set);

  renamedAssertions =
    problemAssertions "instances" (_: i: lib.filter (h: !(h.warning or false)) i.renamedHints) instances
    ++ problemAssertions "zones" (renamed.zone (lib.attrNames zoneOptions)) cfg.zones;
  renamedWarnings = problemWarnings "instances" (_: i: lib.filter (h: h.warning or false) i.renamedHints) instances;

  # The classic short options' problems (an extraFlags flag without a
  # nixos-nspawn equivalent), with the option's path.
  shortOptionAssertions = problemAssertions "instances" (_: i: i.shortProblems.errors) instances;
  shortOptionWarnings = problemWarnings "instances" (_: i: i.shortProblems.warnings) instances;

  zones = lib.mapAttrs
    (name: z:
      let
        values = { inherit name; inherit (z) hostNetworkConfig netdevConfig; };
        # The zone's own subnets (checked by the generator, docs/networking.md).
        subnets = lib.filterAttrs (_: v: v != null) { inherit (z) ipv4Subnet ipv6Subnet; };
      in
      { file = registry.zone values // subnets; diagnosis = registry.diagnoseZone values; })
    cfg.zones;

  entryText = i: builtins.toJSON i.entry + "\n";
  zoneText = z: builtins.toJSON z.file + "\n";
  entryFiles = lib.mapAttrs' (name: i: lib.nameValuePair (registry.containerFile name) {
    text = entryText i;
  }) instances;
  # sharedNix = false: the closure of the system next to its entry (one store
  # path a line), so the generator binds exactly it from the first start on.
  # A `path` that is not a store path of this evaluation (no string context,
  # e.g. a profile link) gets it from the bootstrap helper at start instead.
  closureFiles = lib.mapAttrs' (name: i: lib.nameValuePair "nixos-nspawn/containers/${name}.closure" {
    source = "${pkgs.closureInfo { rootPaths = [ i.system ]; }}/store-paths";
  }) (lib.filterAttrs (_: i: !(i.entry.sharedNix or true)
    && (i.config != null || builtins.hasContext i.system)) instances);
  zoneFiles = lib.mapAttrs' (name: z: lib.nameValuePair (registry.zoneFile name) {
    text = zoneText z;
  }) zones;

  # The registry parser (the one validator) on every generated entry and zone
  # file, at build time: a failure names nixos.containers.instances.NAME (or
  # zones.ZONE), the registry field and what is wrong with it.
  registryCheck = pkgs.runCommandLocal "nixos-nspawn-registry-check" { } (registry.checkScript {
    inherit (cfg) package;
    options = "host";
    containers = lib.mapAttrs (_: entryText) instances;
    zones = lib.mapAttrs (_: zoneText) zones;
  });

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
          message = "${prefix}.${e.option}: ${e.message}";
        })
        i.diagnosis.errors)
    instances);

  # NixOS writes systemd.nspawn.<name> to /etc/systemd/nspawn/<name>.nspawn, and
  # systemd-nspawn reads the first <name>.nspawn it finds in /etc, /run, /var/lib:
  # the /run/systemd/nspawn/<name>.nspawn that the generator writes (store bind
  # mount, network, ...) would be ignored. Merging is not possible without
  # overriding NixOS's file, so both places cannot be used for one container.
  nspawnDefinitions = config.systemd.nspawn or { };
  nspawnAssertions = map
    (name:
      let q = lib.strings.escapeNixIdentifier name; in
      {
        assertion = !(nspawnDefinitions ? ${name});
        message = "nixos.containers.instances.${q}: systemd.nspawn.${q} is also defined (in ${lib.concatStringsSep ", " (options.systemd.nspawn.files or [ ])}). NixOS writes it to /etc/systemd/nspawn/${name}.nspawn, which systemd-nspawn reads instead of the /run/systemd/nspawn/${name}.nspawn that nixos-nspawn generates, so the container would lose its /nix/store bind mount and its network settings. Move those settings to nixos.containers.instances.${q}.extraNspawn (same sections: Exec, Files, Network; e.g. extraNspawn.Files.Bind = [ ... ]) and remove systemd.nspawn.${q}.";
      })
    (lib.attrNames cfg.instances);

  zoneAssertions = problemAssertions "zones" (_: z: z.diagnosis.errors) zones;

  instanceWarnings = problemWarnings "instances" (_: i: i.diagnosis.warnings) instances;

  # nixpkgs before 25.05 has no networking.firewall.backend; its firewall is
  # nftables-based exactly when networking.nftables is enabled.
  firewallBackend =
    config.networking.firewall.backend or (if config.networking.nftables.enable then "nftables" else "iptables");

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
        toolPaths = lib.genAttrs [ "systemctl" "machinectl" "networkctl" "busctl" "systemd-run" ]
          (t: "/run/current-system/systemd/bin/${t}")
        // lib.genAttrs [ "nix" "nix-build" "nix-store" "nix-instantiate" ]
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
        # python-nixos-nspawn's zones took systemd.network.networks settings
        # directly: accepted here only to be refused with a hint (renamed-options.nix).
        freeformType = types.attrsOf types.anything;
        options = zoneOptions;
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
      default = lib.mapAttrs (_: i: { inherit (i) config options system entry; }) instances;
      defaultText = literalExpression "{ <name> = { config; options; system; entry; }; }";
      description = ''
        Per instance, for inspection (`nix repl`) and tests: the container's
        evaluated NixOS `config` and `options` (null when `path` is used), its
        `system` and the registry `entry` written to /etc.
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
    assertions = instanceAssertions ++ zoneAssertions ++ nspawnAssertions ++ shortOptionAssertions ++ renamedAssertions;
    warnings = instanceWarnings ++ shortOptionWarnings ++ renamedWarnings
      ++ lib.optional (cfg.openFirewall && config.networking.firewall.enable && firewallBackend == "firewalld")
        "nixos.containers.openFirewall: the firewall backend is firewalld, for which nixos-nspawn opens nothing; allow DHCP (67/udp), DNS (53) and LLMNR (5355) from the interfaces ve-* and vz-* in a firewalld zone yourself, or set nixos.containers.openFirewall = false to silence this.";

    environment.etc = entryFiles // zoneFiles // closureFiles;
    system.checks = lib.optional (instances != { } || zones != { }) registryCheck;
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
    # Where networkd is here only for the container links, it must leave the
    # routing policy rules and routes of the host's own networking alone
    # (wg-quick, Tailscale, NetworkManager's VPNs add them; networkd would
    # remove them as foreign whenever it starts or reconfigures a link).
    systemd.network.config.networkConfig = mkIf (!config.networking.useNetworkd) {
      ManageForeignRoutingPolicyRules = mkDefault false;
      ManageForeignRoutes = mkDefault false;
    };

    # DNS for containers on hosts without systemd-resolved: networkd's DHCP
    # server hands out the DNS servers of the uplink it manages, else those of
    # /run/systemd/resolve/resolv.conf, which only resolved writes. Without
    # resolved, keep that file at the host's own servers (uplink-dns.sh says
    # why and how), refreshed whenever /etc/resolv.conf changes and before
    # every container start (networkd reads it when it configures the
    # container's link).
    systemd.services.nixos-nspawn-uplink-dns = mkIf (!config.services.resolved.enable) {
      description = "Give nixos-nspawn containers the host's DNS servers";
      wantedBy = [ "multi-user.target" ];
      before = [ "machines.target" ];
      path = [ pkgs.coreutils pkgs.gnugrep ];
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${pkgs.runtimeShell} ${./uplink-dns.sh}";
      };
    };
    systemd.paths.nixos-nspawn-uplink-dns = mkIf (!config.services.resolved.enable) {
      description = "Watch the host's resolv.conf for nixos-nspawn containers";
      wantedBy = [ "multi-user.target" ];
      pathConfig.PathChanged = "/etc/resolv.conf";
    };

    systemd.targets.multi-user.wants = [ "machines.target" ];

    # Running containers are reconciled by nixos-nspawn-apply.service as their
    # activation strategy says; switch-to-configuration must not restart all of
    # them because the systemd-nspawn@.service template changed (a systemd update).
    systemd.services."systemd-nspawn@" = {
      restartIfChanged = false;
      # A oneshot without RemainAfterExit: pulled in again by every start.
      wants = lib.optional (!config.services.resolved.enable) "nixos-nspawn-uplink-dns.service";
      after = lib.optional (!config.services.resolved.enable) "nixos-nspawn-uplink-dns.service";
    };

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

    # NixOS's network-interfaces.nix defines this too, with mkDefault (false unless
    # an interface has proxyARP), and sysctl values take one definition at the
    # winning priority: 900 is above that default and below a plain definition.
    boot.kernel.sysctl."net.ipv4.conf.all.forwarding" = mkIf cfg.ipForwarding (lib.mkOverride 900 true);
    # Every container's inotify instances count against root's limit (128 by
    # default: ~15 containers), with or without user namespaces; see
    # dist/sysctl.d/60-nixos-nspawn.conf. Weaker than mkDefault, so modules that
    # raise it further (X11 sets 524288 with mkDefault) win without a conflict.
    boot.kernel.sysctl."fs.inotify.max_user_instances" = lib.mkOverride 1100 8192;

    # Other network managers must leave container links alone (vd-/vp-: the
    # veth pair that keeps a netdev zone's bridge, see render.rs zone_files).
    networking.dhcpcd.denyInterfaces = [ "ve-*" "vb-*" "vz-*" "vd-*" "vp-*" ];
    networking.networkmanager.unmanaged = mkIf config.networking.networkmanager.enable
      [ "interface-name:ve-*" "interface-name:vb-*" "interface-name:vz-*" "interface-name:vd-*" "interface-name:vp-*" ];

    # Both definitions exist whatever the backend, each under its own mkIf: the
    # attribute names of a definition must not depend on `config` (the module
    # system needs them to find the definitions of networking.firewall.backend
    # itself, which would recurse forever).
    networking.firewall = mkIf (cfg.openFirewall && config.networking.firewall.enable) {
      extraInputRules = mkIf (firewallBackend == "nftables") ''
        iifname { "ve-*", "vz-*" } udp dport { ${lib.concatMapStringsSep ", " toString firewallUDP} } accept comment "nixos-nspawn containers"
        iifname { "ve-*", "vz-*" } tcp dport { ${lib.concatMapStringsSep ", " toString firewallTCP} } accept comment "nixos-nspawn containers"
      '';
      # iptables' interface wildcard is "+".
      interfaces = mkIf (firewallBackend == "iptables") {
        "ve-+" = { allowedUDPPorts = firewallUDP; allowedTCPPorts = firewallTCP; };
        "vz-+" = { allowedUDPPorts = firewallUDP; allowedTCPPorts = firewallTCP; };
      };
    };
  };
}
