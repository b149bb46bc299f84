# nixos/modules/services/networking/networkmanager.nix (the options read here)
{ config, lib, ... }:
let inherit (lib) mkOption types; cfg = config.networking.networkmanager; in
{
  options.networking.networkmanager = {
    enable = mkOption { type = types.bool; default = false; description = "Whether to use NetworkManager."; };
    unmanaged = mkOption { type = types.listOf types.str; default = [ ]; description = "Devices NetworkManager leaves alone."; };
    firewallBackend = mkOption {
      type = types.enum [ "iptables" "nftables" "none" ];
      default = "iptables";
      description = "Which firewall NetworkManager's shared connections use.";
    };
  };
  config = lib.mkIf cfg.enable {
    environment.etc."NetworkManager/NetworkManager.conf".text =
      "[keyfile]\nunmanaged-devices=${lib.concatStringsSep ";" cfg.unmanaged}\n";
  };
}
