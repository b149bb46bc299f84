# NixOS VM tests, one per behaviour; wired into the flake's `checks`.
{ pkgs, self, nixpkgs }:
let
  test = file: import file { inherit pkgs self nixpkgs; };
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
