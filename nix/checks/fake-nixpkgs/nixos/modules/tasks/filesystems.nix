# nixos/modules/tasks/filesystems.nix (the option and assertion a host needs)
{ config, lib, ... }:
let inherit (lib) mkOption types; in
{
  options.fileSystems = mkOption {
    default = { };
    description = "The file systems to mount.";
    type = types.attrsOf (types.submodule ({ name, ... }: {
      options = {
        mountPoint = mkOption { type = types.str; description = "Where it is mounted."; };
        device = mkOption { type = types.nullOr types.str; default = null; description = "The device."; };
        fsType = mkOption { type = types.str; default = "auto"; description = "The file system type."; };
        options = mkOption { type = types.listOf types.str; default = [ "defaults" ]; description = "Mount options."; };
      };
      config.mountPoint = lib.mkDefault name;
    }));
  };
  config.assertions = [
    {
      assertion = config.boot.isContainer || config.fileSystems ? "/";
      message = "The ‘fileSystems’ option does not specify your root file system.";
    }
  ];
}
