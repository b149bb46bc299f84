# A stand-in for nixpkgs' nixos/lib/eval-config.nix for the VM-test checks
# (vm-tests-eval.nix): a container's configuration is evaluated with nixpkgs'
# lib (specialArgs.checkLib) against the container profile's stand-ins
# (container-stubs.nix) plus vm-stubs.nix's, instead of NixOS.
{ modules, specialArgs ? { }, system ? null, prefix ? [ ], ... }:
let
  lib = specialArgs.checkLib;
  vmStubs = import ../../../vm-stubs.nix { inherit lib; };
in
lib.evalModules {
  inherit prefix specialArgs;
  modules = vmStubs.container [ ../../../container-stubs.nix ] ++ modules;
}
