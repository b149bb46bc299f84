# The flake's `module-matrix` check: module-matrix.nix's hosts (a firewall variant
# each, with a container of every network mode from `config` and from `path`)
# evaluated with the flake's own nixpkgs, i.e. real NixOS instead of the
# stand-ins. Evaluating the check evaluates every host's system and every
# container's system (their .drv paths); nothing is built. nix/checks/run
# evaluates it with the stand-in nixpkgs as the flake's input.
{ nixpkgs, pkgs, system, hypervisor }:
let
  inherit (pkgs) lib;
  variants = {
    iptables = { };
    nftables = { networking.nftables.enable = true; };
    firewall-off = { networking.firewall.enable = false; };
    module-off = { nixos.containers.enable = false; };
  };
  modes = {
    veth = { };
    zone = { zone = "lan"; };
    bridge = { bridge = "br0"; };
    host = { networkMode = "host"; };
    none = { networkMode = "none"; };
  };
  instance = mode: kind:
    modes.${mode} // (
      if kind == "config" then { config.system.stateVersion = lib.trivial.release; }
      else { path = "/nix/store/11111111111111111111111111111111-nixos-system-${mode}-path-25.11"; });
  host = variant: import "${toString nixpkgs}/nixos/lib/eval-config.nix" {
    system = null;
    modules = [
      hypervisor
      variants.${variant}
      {
        nixpkgs.hostPlatform = system;
        system.stateVersion = lib.trivial.release;
        fileSystems."/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };
        boot.loader.grub.enable = false;
        nixos.containers.zones.lan.hostNetworkConfig.address = [ "10.42.0.1/24" ];
        nixos.containers.instances = lib.listToAttrs (lib.concatMap
          (mode: map (kind: lib.nameValuePair "${mode}-${kind}" (instance mode kind)) [ "config" "path" ])
          (lib.attrNames modes));
      }
    ];
  };
  systems = lib.mapAttrs (v: _: (host v).config.system.build.toplevel) variants;
in
pkgs.writeText "nixos-nspawn-module-matrix" (lib.concatStrings (lib.mapAttrsToList
  (v: toplevel: "${v} ${builtins.unsafeDiscardStringContext toplevel.drvPath}\n")
  systems))
