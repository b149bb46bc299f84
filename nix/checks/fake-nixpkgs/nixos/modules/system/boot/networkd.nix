# nixos/modules/system/boot/networkd.nix: systemd.network.{enable, wait-online,
# links, netdevs, networks, config}. The [Match] keys and the values of the
# [Network] keys nixos-nspawn sets are checked as nixpkgs checks them, and so are
# the keys and values of networkd.conf's [Network] section (`config`); the other
# sections take any key (nixpkgs checks their keys too). As in nixpkgs, an
# enabled networkd turns systemd-resolved on (mkDefault).
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  units = import ../../../lib/systemd-units.nix { inherit lib; };
  inherit (units) unitOption;
  cfg = config.systemd.network;

  boolValues = [ true false "yes" "no" "on" "off" "1" "0" "true" "false" ];
  # attrsOf unitOption whose listed keys only take the listed values.
  # (As nixpkgs' checkUnitConfig: a value under mkOverride/mkDefault is checked
  # for what it contains; one under mkIf is not checked.)
  valuesOneOf = section: allowed:
    types.addCheck (types.attrsOf unitOption) (attrs0:
      let
        attrs = lib.mapAttrs (_: v: if (v._type or null) == "override" then v.content else v) attrs0;
        checkable = k: attrs ? ${k} && !((attrs.${k}._type or null) == "if" || (attrs.${k}._type or null) == "merge");
      in
      lib.all
        (k: !(checkable k) || builtins.elem attrs.${k} allowed.${k}
          || builtins.trace "In the [${section}] section, ${k} has the value ${builtins.toJSON attrs.${k}}; allowed: ${builtins.toJSON allowed.${k}}" false)
        (builtins.attrNames allowed));

  matchSection = units.sectionOf "Match" [
    "MACAddress" "PermanentMACAddress" "Path" "Driver" "Type" "Kind" "Property" "Name"
    "WLANInterfaceType" "SSID" "BSSID" "Host" "Virtualization" "KernelCommandLine"
    "KernelVersion" "Credential" "Architecture" "Firmware"
  ];
  networkSection = valuesOneOf "Network" {
    DHCP = [ "yes" "no" "ipv4" "ipv6" ];
    LinkLocalAddressing = [ "yes" "no" "ipv4" "ipv6" "fallback" "ipv4-fallback" ];
    LLDP = boolValues ++ [ "routers-only" ];
    EmitLLDP = boolValues ++ [ "nearest-bridge" "non-tpmr-bridge" "customer-bridge" ];
    DHCPServer = boolValues;
    IPMasquerade = [ "ipv4" "ipv6" "both" "no" ];
  };
  # networkd.conf's [Network] (nixpkgs' check.global.sectionNetwork): these keys
  # only, the ManageForeign* and forwarding keys booleans.
  globalNetworkSection = types.addCheck
    (valuesOneOf "Network" (lib.genAttrs [
      "SpeedMeter" "ManageForeignRoutingPolicyRules" "ManageForeignRoutes" "ManageForeignNextHops"
      "IPv4Forwarding" "IPv6Forwarding"
    ] (_: boolValues) // { IPv6PrivacyExtensions = boolValues ++ [ "prefer-public" "kernel" ]; }))
    (units.sectionOf "Network" [
      "SpeedMeter" "SpeedMeterIntervalSec" "ManageForeignRoutingPolicyRules" "ManageForeignRoutes"
      "ManageForeignNextHops" "RouteTable" "IPv4Forwarding" "IPv6Forwarding" "IPv6PrivacyExtensions"
      "UseDomains"
    ]).check;
  globalDHCPSection = name: units.sectionOf name [ "ClientIdentifier" "DUIDType" "DUIDRawData" ];

  # systemd.network.config: networkd.conf (the options, then nixpkgs' own
  # definitions: IPv6PrivacyExtensions, RouteTable= from routeTables).
  networkdConfig = { config, ... }: {
    options = {
      networkConfig = mkOption { default = { }; type = globalNetworkSection; description = "The [Network] section of networkd.conf."; };
      dhcpV4Config = mkOption { default = { }; type = globalDHCPSection "DHCPv4"; description = "The [DHCPv4] section of networkd.conf."; };
      dhcpV6Config = mkOption { default = { }; type = globalDHCPSection "DHCPv6"; description = "The [DHCPv6] section of networkd.conf."; };
      routeTables = mkOption { default = { }; type = types.attrsOf types.int; description = "Route table names and numbers."; };
      addRouteTablesToIPRoute2 = mkOption { default = true; type = types.bool; description = "Whether routeTables also go to /etc/iproute2/rt_tables."; };
    };
    config.networkConfig = {
      IPv6PrivacyExtensions = lib.mkOptionDefault true;
    } // lib.optionalAttrs (config.routeTables != { }) {
      RouteTable = lib.mapAttrsToList (n: v: "${n}:${toString v}") config.routeTables;
    };
  };

  section = name: mkOption { default = { }; type = types.attrsOf unitOption; description = "The [${name}] section."; };
  list = what: mkOption { default = [ ]; type = types.listOf types.str; description = what; };

  addressKeys = [
    "Address" "Peer" "Broadcast" "Label" "PreferredLifetime" "Scope" "RouteMetric" "HomeAddress"
    "DuplicateAddressDetection" "ManageTemporaryAddress" "AddPrefixRoute" "AutoJoin" "NetLabel" "NFTSet"
  ];

  common = {
    enable = mkOption { default = true; type = types.bool; description = "Whether networkd uses this file."; };
    matchConfig = mkOption { default = { }; type = matchSection; description = "The [Match] section."; };
    extraConfig = mkOption { default = ""; type = types.lines; description = "Extra text appended to the file."; };
  };

  networkOptions = common // {
    name = mkOption { type = types.nullOr types.str; default = null; description = "Interface name to match (Name= of [Match])."; };
    networkConfig = mkOption { default = { }; type = networkSection; description = "The [Network] section."; };
    linkConfig = section "Link";
    dhcpV4Config = section "DHCPv4";
    dhcpV6Config = section "DHCPv6";
    dhcpPrefixDelegationConfig = section "DHCPPrefixDelegation";
    ipv6AcceptRAConfig = section "IPv6AcceptRA";
    dhcpServerConfig = section "DHCPServer";
    ipv6SendRAConfig = section "IPv6SendRA";
    ipv6Prefixes = mkOption { default = [ ]; type = types.listOf (types.attrsOf unitOption); description = "[IPv6Prefix] sections."; };
    dhcpServerStaticLeases = mkOption { default = [ ]; type = types.listOf (types.attrsOf unitOption); description = "[DHCPServerStaticLease] sections."; };
    addresses = mkOption { default = [ ]; type = types.listOf (units.sectionOf "Address" addressKeys); description = "[Address] sections."; };
    routes = mkOption { default = [ ]; type = types.listOf (types.attrsOf unitOption); description = "[Route] sections."; };
    routingPolicyRules = mkOption { default = [ ]; type = types.listOf (types.attrsOf unitOption); description = "[RoutingPolicyRule] sections."; };
    DHCP = mkOption { type = types.nullOr types.str; default = null; description = "DHCP= of [Network]."; };
    domains = mkOption { type = types.nullOr (types.listOf types.str); default = null; description = "Domains= of [Network]."; };
    address = list "Address= of [Network].";
    gateway = list "Gateway= of [Network].";
    dns = list "DNS= of [Network].";
    ntp = list "NTP= of [Network].";
    bridge = list "Bridge= of [Network].";
    bond = list "Bond= of [Network].";
    vrf = list "VRF= of [Network].";
    vlan = list "VLAN= of [Network].";
    macvlan = list "MACVLAN= of [Network].";
    macvtap = list "MACVTAP= of [Network].";
    vxlan = list "VXLAN= of [Network].";
    tunnel = list "Tunnel= of [Network].";
    xfrm = list "Xfrm= of [Network].";
  };

  renderNetwork = n:
    units.renderUnit (lib.filterAttrs (_: v: v != { }) {
      Match = n.matchConfig // lib.optionalAttrs (n.name != null) { Name = n.name; };
      Link = n.linkConfig;
      Network = n.networkConfig
        // lib.optionalAttrs (n.DHCP != null) { inherit (n) DHCP; }
        // lib.optionalAttrs (n.domains != null) { Domains = n.domains; }
        // lib.filterAttrs (_: v: v != [ ]) {
          Address = n.address; Gateway = n.gateway; DNS = n.dns; NTP = n.ntp; Bridge = n.bridge;
          Bond = n.bond; VRF = n.vrf; VLAN = n.vlan; MACVLAN = n.macvlan; MACVTAP = n.macvtap;
          VXLAN = n.vxlan; Tunnel = n.tunnel; Xfrm = n.xfrm;
        };
      DHCPv4 = n.dhcpV4Config;
      DHCPv6 = n.dhcpV6Config;
      DHCPServer = n.dhcpServerConfig;
      IPv6AcceptRA = n.ipv6AcceptRAConfig;
      IPv6SendRA = n.ipv6SendRAConfig;
    })
    + lib.concatMapStrings (a: "\n" + units.renderSection "Address" a) n.addresses
    + lib.concatMapStrings (r: "\n" + units.renderSection "Route" r) n.routes
    + lib.concatMapStrings (r: "\n" + units.renderSection "IPv6Prefix" r) n.ipv6Prefixes
    + lib.concatMapStrings (r: "\n" + units.renderSection "DHCPServerStaticLease" r) n.dhcpServerStaticLeases
    + n.extraConfig;
in
{
  options.systemd.network = {
    enable = mkOption { default = false; type = types.bool; description = "Whether to enable systemd-networkd."; };
    links = mkOption {
      default = { };
      type = types.attrsOf (types.submodule { options = common // { linkConfig = section "Link"; }; });
      description = ".link files.";
    };
    netdevs = mkOption {
      default = { };
      type = types.attrsOf (types.submodule { options = common // { netdevConfig = section "NetDev"; bridgeConfig = section "Bridge"; }; });
      description = ".netdev files.";
    };
    networks = mkOption {
      default = { };
      type = types.attrsOf (types.submodule { options = networkOptions; });
      description = ".network files.";
    };
    config = mkOption {
      default = { };
      type = types.submodule [ networkdConfig ];
      description = "networkd.conf (global settings).";
    };
    wait-online = {
      enable = mkOption { type = types.bool; default = true; description = "Whether systemd-networkd-wait-online runs."; };
      anyInterface = mkOption { type = types.bool; default = config.networking.useDHCP; description = "Whether one online interface is enough."; };
      ignoredInterfaces = mkOption { type = types.listOf types.str; default = [ ]; description = "Interfaces not waited for."; };
      timeout = mkOption { type = types.int; default = 120; description = "Seconds to wait."; };
      extraArgs = mkOption { type = types.listOf types.str; default = [ ]; description = "Extra arguments."; };
    };
  };

  config = lib.mkIf cfg.enable {
    environment.etc = lib.mapAttrs'
      (name: n: lib.nameValuePair "systemd/network/${name}.network" { text = renderNetwork n; })
      (lib.filterAttrs (_: n: n.enable) cfg.networks)
    // {
      "systemd/networkd.conf".text = units.renderUnit (lib.filterAttrs (_: v: v != { }) {
        Network = cfg.config.networkConfig;
        DHCPv4 = cfg.config.dhcpV4Config;
        DHCPv6 = cfg.config.dhcpV6Config;
      });
    };
    services.resolved.enable = lib.mkDefault true;
    systemd.services.systemd-networkd = {
      wantedBy = [ "multi-user.target" ];
      restartTriggers = map (n: toString n) (lib.attrNames cfg.networks);
    };
    systemd.services.systemd-networkd-wait-online = lib.mkIf cfg.wait-online.enable {
      wantedBy = [ "network-online.target" ];
      serviceConfig.ExecStart = [ "" "${config.systemd.package}/lib/systemd/systemd-networkd-wait-online${lib.optionalString cfg.wait-online.anyInterface " --any"}" ];
    };
  };
}
