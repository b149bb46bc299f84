# nixos/modules/services/system/nix-daemon.nix: nix.enable (default true), and
# with it the Nix package, the daemon's socket and service (their unit files
# come from the Nix package; NixOS adds settings).
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.nix;
in
{
  options.nix = {
    enable = mkOption { type = types.bool; default = true; description = "Whether to enable Nix (the daemon and the Nix programs)."; };
    package = mkOption { type = types.package; default = pkgs.nix; description = "The Nix package used throughout the system."; };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];
    systemd.packages = [ cfg.package ];
    systemd.sockets.nix-daemon.wantedBy = [ "sockets.target" ];
    systemd.services.nix-daemon = {
      path = [ cfg.package ];
      unitConfig.RequiresMountsFor = "/nix/store";
      serviceConfig.LimitNOFILE = 1048576;
      stopIfChanged = false;
    };
  };
}
