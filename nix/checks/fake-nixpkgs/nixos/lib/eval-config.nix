# A stand-in for nixpkgs' nixos/lib/eval-config.nix with its arguments: evaluates
# a NixOS configuration with the stand-in modules of ../modules/module-list.nix
# (the options nixos-nspawn's modules read and set, declared as nixpkgs declares
# them) instead of NixOS's.
evalConfigArgs@
{ system ? builtins.currentSystem or null
, pkgs ? null
, baseModules ? import ../modules/module-list.nix
, extraArgs ? { }
, specialArgs ? { }
, modules
, modulesLocation ? null
, check ? true
, prefix ? [ ]
, lib ? import ../../lib
, extraModules ? [ ]
}:
let
  pkgsModule = {
    _file = toString ./eval-config.nix;
    key = toString ./eval-config.nix;
    config = lib.mkMerge (
      lib.optional (system != null) { nixpkgs.system = lib.mkDefault system; }
      ++ lib.optional (pkgs != null) { _module.args.pkgs = lib.mkForce pkgs; });
  };
  argsModule = {
    _file = toString ./eval-config.nix;
    key = "${toString ./eval-config.nix}#args";
    config._module.args = extraArgs;
    config._module.check = lib.mkDefault check;
    # For the checks: the directory this file was imported from. It is the
    # repository's copy unless the importer copied the stand-in nixpkgs into the
    # store ("${nixpkgs}/..." instead of toString).
    config.system.build.nixosNspawnEvalConfigDir = toString ./.;
  };
in
lib.evalModules {
  inherit prefix;
  class = "nixos";
  modules = baseModules ++ extraModules ++ [ pkgsModule argsModule ] ++ modules;
  specialArgs = { modulesPath = toString ../modules; } // specialArgs;
}
