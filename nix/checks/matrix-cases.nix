# The module matrix's cases, one home for both of its evaluations:
# module-matrix.nix (the stand-in nixpkgs, run by nix/checks/run) and
# nixos-matrix.nix (the flake's `module-matrix` check, real nixpkgs). A host per
# firewall variant, each with a container of every network mode, given as a
# NixOS configuration (`config`) and as a built system (`path`). Builtins only.
rec {
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
  kinds = [ "config" "path" ];
  # nixos.containers.instances: MODE-KIND = the mode's settings // kind NAME.
  instances = kind: builtins.listToAttrs (builtins.concatMap
    (mode: map (k: { name = "${mode}-${k}"; value = modes.${mode} // kind k "${mode}-${k}"; }) kinds)
    (builtins.attrNames modes));
  zones.lan.hostNetworkConfig.address = [ "10.42.0.1/24" ];
}
