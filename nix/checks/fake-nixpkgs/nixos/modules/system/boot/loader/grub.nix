# nixos/modules/system/boot/loader/grub/grub.nix (the options a host needs)
{ config, lib, ... }:
let inherit (lib) mkOption types; cfg = config.boot.loader.grub; in
{
  options.boot.loader.grub = {
    enable = mkOption { type = types.bool; default = !config.boot.isContainer; description = "Whether to install GRUB."; };
    devices = mkOption { type = types.listOf types.str; default = [ ]; description = "Devices to install GRUB on."; };
  };
  config.assertions = lib.optional cfg.enable {
    assertion = cfg.devices != [ ];
    message = "You must set the option ‘boot.loader.grub.devices’ or 'boot.loader.grub.mirroredBoots' to make the system bootable.";
  };
}
