# nixos/modules/config/system-path.nix (the option read here)
{ lib, ... }:
{
  options.environment.systemPackages = lib.mkOption {
    type = lib.types.listOf lib.types.package;
    default = [ ];
    description = "Packages installed in the system profile.";
  };
}
