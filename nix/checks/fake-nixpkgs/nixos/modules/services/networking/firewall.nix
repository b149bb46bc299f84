# nixos/modules/services/networking/firewall.nix: the options shared by the
# iptables and nftables firewalls; `backend` defaults from firewalld and
# nftables, so reading it reads networking.nftables.enable.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.networking.firewall;
  # allowed{TCP,UDP}Ports and allowed{TCP,UDP}PortRanges.
  protocolPorts = direction: proto: what: {
    "allowed${proto}Ports" = mkOption {
      type = types.listOf types.port;
      default = [ ];
      apply = ps: lib.unique (builtins.sort builtins.lessThan ps);
      description = "${proto} ports on which ${direction} ${what} are accepted.";
    };
    "allowed${proto}PortRanges" = mkOption { type = types.listOf (types.attrsOf types.port); default = [ ]; description = "${proto} port ranges (${direction})."; };
  };
  ports = direction: protocolPorts direction "TCP" "connections" // protocolPorts direction "UDP" "packets";
  incoming = ports "incoming";
  outgoing = ports "outgoing";
in
{
  options.networking.firewall = {
    enable = mkOption { type = types.bool; default = true; description = "Whether to enable the firewall."; };
    backend = mkOption {
      type = types.enum [ "iptables" "nftables" "firewalld" ];
      default =
        if config.services.firewalld.enable then "firewalld"
        else if config.networking.nftables.enable then "nftables"
        else "iptables";
      description = "Underlying implementation of the firewall.";
    };
    package = mkOption {
      type = types.package;
      default = if config.networking.nftables.enable then pkgs.nftables else pkgs.iptables;
      description = "The package running the firewall.";
    };
    logRefusedConnections = mkOption { type = types.bool; default = false; description = "Log refused connections."; };
    logRefusedPackets = mkOption { type = types.bool; default = false; description = "Log refused packets."; };
    logRefusedUnicastsOnly = mkOption { type = types.bool; default = true; description = "Log only unicast packets."; };
    rejectPackets = mkOption { type = types.bool; default = false; description = "Reject instead of drop."; };
    trustedInterfaces = mkOption { type = types.listOf types.str; default = [ ]; description = "Interfaces whose traffic is accepted."; };
    allowPing = mkOption { type = types.bool; default = true; description = "Answer pings."; };
    pingLimit = mkOption { type = types.nullOr (types.separatedString " "); default = null; description = "Rate limit for pings."; };
    checkReversePath = mkOption {
      type = types.either types.bool (types.enum [ "strict" "loose" ]);
      default = true;
      description = "Reverse path filtering.";
    };
    logReversePathDrops = mkOption { type = types.bool; default = false; description = "Log reverse path drops."; };
    filterOutput = mkOption {
      type = types.submodule {
        options = outgoing // {
          enabled = lib.mkEnableOption "filtering for outgoing traffic";
          interfaces = mkOption { default = { }; type = types.attrsOf (types.submodule [ { options = outgoing; } ]); description = "Per-interface outgoing ports."; };
          trustedInterfaces = mkOption { type = types.listOf types.str; default = [ ]; description = "Interfaces whose outgoing traffic is accepted."; };
          extraRules = mkOption { type = types.lines; default = ""; description = "nftables rules of the output-allow chain."; };
        };
      };
      default = { };
      description = "Filtering of outgoing packets (nftables only).";
    };
    filterForward = mkOption { type = types.bool; default = false; description = "Filter forwarded packets (nftables only)."; };
    connectionTrackingModules = mkOption { type = types.listOf types.str; default = [ ]; description = "Conntrack helpers."; };
    autoLoadConntrackHelpers = mkOption { type = types.bool; default = false; description = "Auto-load conntrack helpers."; };
    extraPackages = mkOption { type = types.listOf types.package; default = [ ]; description = "Packages in the firewall's PATH."; };
    interfaces = mkOption {
      default = { };
      type = types.attrsOf (types.submodule [ { options = incoming; } ]);
      description = "Interface-specific open ports.";
    };
    allInterfaces = mkOption {
      internal = true;
      visible = false;
      default = { default = lib.mapAttrs (name: _: cfg.${name}) incoming; } // cfg.interfaces;
      type = types.attrsOf (types.submodule [ { options = incoming; } ]);
      description = "All open ports.";
    };
  } // incoming;

  config = lib.mkIf cfg.enable {
    assertions = [
      { assertion = cfg.filterForward -> config.networking.nftables.enable; message = "filterForward only works with the nftables based firewall"; }
      { assertion = cfg.filterOutput.enabled -> config.networking.nftables.enable; message = "filterOutput.enabled only works with the nftables based firewall"; }
    ];
    networking.firewall.trustedInterfaces = [ "lo" ];
    networking.firewall.filterOutput.trustedInterfaces = [ "lo" ];
    environment.systemPackages = [ cfg.package ] ++ cfg.extraPackages;
  };
}
