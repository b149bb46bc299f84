# nixos/modules/services/networking/dhcpcd.nix (the options read here)
{ config, lib, ... }:
let inherit (lib) mkOption types; in
{
  options.networking.dhcpcd = {
    enable = mkOption {
      type = types.bool;
      default = config.networking.useDHCP && !config.networking.useNetworkd;
      description = "Whether to run dhcpcd.";
    };
    denyInterfaces = mkOption { type = types.listOf types.str; default = [ ]; description = "Interfaces (globs) dhcpcd leaves alone."; };
    allowInterfaces = mkOption { type = types.nullOr (types.listOf types.str); default = null; description = "Interfaces dhcpcd may manage (null: all)."; };
  };
  config = lib.mkIf config.networking.dhcpcd.enable {
    environment.etc."dhcpcd.conf".text = "denyinterfaces ${toString config.networking.dhcpcd.denyInterfaces}\n";
  };
}
