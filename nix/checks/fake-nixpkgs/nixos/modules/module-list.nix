# The stand-in NixOS modules: each declares, under the same file name as in
# nixpkgs, the options nixos-nspawn's modules (nix/modules/*.nix) read or set,
# with nixpkgs' names, types, defaults (including defaults computed from other
# options) and the definitions nixpkgs' own modules make to them.
[
  ./misc/assertions.nix
  ./misc/nixpkgs.nix
  ./misc/version.nix
  ./misc/documentation.nix
  ./config/shells-environment.nix
  ./config/system-path.nix
  ./config/sysctl.nix
  ./system/etc/etc.nix
  ./system/activation/top-level.nix
  ./system/activation/specialisation.nix
  ./system/boot/systemd.nix
  ./system/boot/networkd.nix
  ./system/boot/resolved.nix
  ./system/boot/loader/grub.nix
  ./system/boot/systemd/nspawn.nix
  ./system/boot/systemd/tmpfiles.nix
  ./tasks/filesystems.nix
  ./tasks/network-interfaces.nix
  ./services/networking/dhcpcd.nix
  ./services/networking/dnsmasq.nix
  ./services/networking/networkmanager.nix
  ./services/networking/firewalld.nix
  ./services/networking/firewall.nix
  ./services/networking/firewall-iptables.nix
  ./services/networking/firewall-nftables.nix
  ./services/networking/nftables.nix
  ./services/system/nix-daemon.nix
  ./services/web-servers/nginx/default.nix
  ./virtualisation/nixos-containers.nix
  ./virtualisation/container-config.nix
]
