# The flake's `module-matrix` check: module-matrix.nix's hosts (a firewall variant
# each, with a container of every network mode from `config` and from `path`)
# evaluated with the flake's own nixpkgs, i.e. real NixOS instead of the
# stand-ins. Evaluating the check evaluates every host's system and every
# container's system (their .drv paths); nothing is built. nix/checks/run
# evaluates it with the stand-in nixpkgs as the flake's input.
{ nixpkgs, pkgs, system, hypervisor }:
let
  inherit (pkgs) lib;
  cases = import ./matrix-cases.nix;
  instance = kind: name:
    if kind == "config" then { config.system.stateVersion = lib.trivial.release; }
    else { path = "/nix/store/11111111111111111111111111111111-nixos-system-${name}-25.11"; };
  host = variant: import "${toString nixpkgs}/nixos/lib/eval-config.nix" {
    system = null;
    modules = [
      hypervisor
      cases.variants.${variant}
      {
        nixpkgs.hostPlatform = system;
        system.stateVersion = lib.trivial.release;
        fileSystems."/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };
        boot.loader.grub.enable = false;
        nixos.containers.zones = cases.zones;
        nixos.containers.instances = cases.instances instance;
      }
    ];
  };
  systems = lib.mapAttrs (v: _: (host v).config.system.build.toplevel) cases.variants;
in
pkgs.writeText "nixos-nspawn-module-matrix" (lib.concatStrings (lib.mapAttrsToList
  (v: toplevel: "${v} ${builtins.unsafeDiscardStringContext toplevel.drvPath}\n")
  systems))
