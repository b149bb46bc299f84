# NixOS VM tests, one per behaviour; wired into the flake's `checks`.
{ pkgs, self, nixpkgs }:
let
  common = import ./common.nix { inherit pkgs self nixpkgs; };
  # A test file is a function of the arguments it names, out of these (as
  # callPackage passes them).
  test = file:
    let f = import file; in
    f (builtins.intersectAttrs (builtins.functionArgs f) { inherit pkgs self nixpkgs common; });
in
{
  vm-declarative-boot = test ./declarative-boot.nix;
  vm-activation = test ./activation.nix;
  vm-imperative = test ./imperative.nix;
  vm-zone-networking = test ./zone-networking.nix;
  vm-port-forward = test ./port-forward.nix;
  vm-migration = test ./migration.nix;
  vm-host-networking = test ./host-networking.nix;
  vm-nix-inside = test ./nix-inside.nix;
}
