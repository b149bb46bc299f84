# nixos/modules/config/shells-environment.nix (the option read here)
{ lib, ... }:
{
  options.environment.variables = lib.mkOption {
    default = { };
    type = lib.types.attrsOf (lib.types.either lib.types.str (lib.types.listOf lib.types.str));
    apply = lib.mapAttrs (_: v: if builtins.isList v then lib.concatStringsSep ":" v else v);
    description = "Environment variables of every session.";
  };
}
