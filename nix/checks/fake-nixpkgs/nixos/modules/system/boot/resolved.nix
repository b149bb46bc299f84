# nixos/modules/system/boot/resolved.nix (the option and assertion that matter here)
{ config, lib, ... }:
{
  options.services.resolved.enable = lib.mkOption {
    default = false;
    type = lib.types.bool;
    description = "Whether to enable systemd-resolved.";
  };
  config = lib.mkIf config.services.resolved.enable {
    assertions = [
      {
        assertion = !config.networking.useHostResolvConf;
        message = "Using host resolv.conf is not supported with systemd-resolved";
      }
    ];
    systemd.services.systemd-resolved.wantedBy = [ "multi-user.target" ];
  };
}
