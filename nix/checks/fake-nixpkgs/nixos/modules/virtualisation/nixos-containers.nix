# nixos/modules/virtualisation/nixos-containers.nix (the options read here)
{ config, lib, ... }:
{
  options.boot = {
    isContainer = lib.mkOption {
      type = lib.types.bool;
      default = config.boot.isNspawnContainer;
      description = "Whether this NixOS machine is a lightweight container running in another system.";
    };
    isNspawnContainer = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Whether the machine runs in an nspawn container.";
    };
  };
}
