# nixos/modules/misc/version.nix (the options read here)
{ lib, ... }:
let inherit (lib) mkOption types; in
{
  options.system = {
    nixos.release = mkOption { readOnly = true; type = types.str; default = lib.trivial.release; description = "The NixOS release."; };
    nixos.distroId = mkOption { internal = true; type = types.str; default = "nixos"; description = "The distribution id."; };
    nixos.distroName = mkOption { internal = true; type = types.str; default = "NixOS"; description = "The distribution name."; };
    stateVersion = mkOption {
      type = types.str;
      default = lib.trivial.release;
      description = "The NixOS release the stateful data of this system was created with.";
    };
  };
}
