# nixos/modules/misc/documentation.nix (the option the tests set)
{ lib, ... }:
{
  options.documentation.enable = lib.mkOption {
    type = lib.types.bool;
    default = true;
    description = "Whether to install documentation of the system's packages.";
  };
}
