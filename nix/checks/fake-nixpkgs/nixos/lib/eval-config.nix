# A stand-in for nixpkgs' nixos/lib/eval-config.nix, used by module-eval.nix as the
# `nixpkgs` of container instances: the container profile is evaluated with
# nixpkgs' lib (passed as specialArgs.checkLib) and the stand-in options of
# container-stubs.nix instead of NixOS.
{ modules, specialArgs ? { }, system ? null, ... }:
specialArgs.checkLib.evalModules {
  inherit specialArgs;
  modules = modules ++ [ ../../../container-stubs.nix ];
}
