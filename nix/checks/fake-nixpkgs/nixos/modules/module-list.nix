# The stand-in NixOS modules: each declares, under the same file name as in
# nixpkgs, the options nixos-nspawn's modules (nix/modules/*.nix) read or set,
# with nixpkgs' names, types, defaults (including defaults computed from other
# options) and the definitions nixpkgs' own modules make to them.
[
  ./misc/assertions.nix
  ./misc/nixpkgs.nix
  ./misc/version.nix
  ./config/shells-environment.nix
  ./config/system-path.nix
  ./config/sysctl.nix
  ./system/etc/etc.nix
  ./system/activation/top-level.nix
  ./system/boot/systemd.nix
  ./system/boot/networkd.nix
  ./system/boot/resolved.nix
  ./system/boot/loader/grub.nix
  ./system/boot/systemd/nspawn.nix
  ./tasks/filesystems.nix
  ./tasks/network-interfaces.nix
  ./services/networking/dhcpcd.nix
  ./services/networking/networkmanager.nix
  ./services/networking/firewalld.nix
  ./services/networking/firewall.nix
  ./services/networking/firewall-iptables.nix
  ./services/networking/firewall-nftables.nix
  ./services/networking/nftables.nix
  ./virtualisation/nixos-containers.nix
  ./virtualisation/container-config.nix
]
