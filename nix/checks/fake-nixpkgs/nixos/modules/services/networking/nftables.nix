# nixos/modules/services/networking/nftables.nix
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.networking.nftables;
in
{
  options.networking.nftables = {
    enable = mkOption { type = types.bool; default = false; description = "Whether to enable nftables (and use the nftables based firewall)."; };
    ruleset = mkOption { type = types.lines; default = ""; description = "The ruleset."; };
    rulesetFile = mkOption { type = types.nullOr types.path; default = null; description = "A file with the ruleset."; };
    tables = mkOption {
      default = { };
      description = "Tables added to the ruleset.";
      type = types.attrsOf (types.submodule ({ name, ... }: {
        options = {
          enable = mkOption { type = types.bool; default = true; description = "Whether this table is used."; };
          name = mkOption { type = types.str; description = "Table name."; };
          content = mkOption { type = types.lines; description = "The table content."; };
          family = mkOption { type = types.enum [ "ip" "ip6" "inet" "arp" "bridge" "netdev" ]; description = "Table family."; };
        };
        config.name = lib.mkDefault name;
      }));
    };
  };

  config = lib.mkIf cfg.enable {
    networking.networkmanager.firewallBackend = lib.mkDefault "nftables";
    systemd.services.nftables = {
      description = "nftables firewall";
      wantedBy = [ "multi-user.target" ];
      reloadIfChanged = true;
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = pkgs.writeText "nftables-rules" (lib.concatStrings (lib.mapAttrsToList
          (_: t: "table ${t.family} ${t.name} {\n${t.content}}\n")
          (lib.filterAttrs (_: t: t.enable) cfg.tables)) + cfg.ruleset);
      };
    };
  };
}
