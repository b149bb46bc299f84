# nixos/modules/services/networking/dnsmasq.nix (the options the tests set)
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.services.dnsmasq;
  atom = types.oneOf [ types.bool types.int types.str ];
in
{
  options.services.dnsmasq = {
    enable = mkOption { type = types.bool; default = false; description = "Whether to run dnsmasq."; };
    resolveLocalQueries = mkOption { type = types.bool; default = true; description = "Whether the host's own queries go to this dnsmasq (127.0.0.1 in resolv.conf)."; };
    settings = mkOption {
      type = types.submodule {
        freeformType = types.attrsOf (types.either atom (types.listOf types.str));
        options.server = mkOption { type = types.listOf types.str; default = [ ]; description = "Upstream servers."; };
      };
      default = { };
      description = "dnsmasq.conf, as an attribute set.";
    };
  };
  config = lib.mkIf cfg.enable {
    networking.nameservers = lib.optional cfg.resolveLocalQueries "127.0.0.1";
    systemd.services.dnsmasq = {
      description = "Dnsmasq Daemon";
      wantedBy = [ "multi-user.target" ];
      serviceConfig.ExecStart = "${pkgs.dnsmasq}/bin/dnsmasq -k -C ${pkgs.writeText "dnsmasq.conf" (builtins.toJSON cfg.settings)}";
    };
  };
}
