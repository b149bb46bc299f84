# nixos/modules/system/boot/systemd/tmpfiles.nix (the option the tests set)
{ config, lib, ... }:
{
  options.systemd.tmpfiles.rules = lib.mkOption {
    type = lib.types.listOf lib.types.str;
    default = [ ];
    description = "tmpfiles.d(5) lines, written to /etc/tmpfiles.d/00-nixos.conf.";
  };
  config.environment.etc."tmpfiles.d/00-nixos.conf".text =
    lib.concatMapStrings (r: r + "\n") config.systemd.tmpfiles.rules;
}
