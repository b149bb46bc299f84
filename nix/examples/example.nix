# The flake's nixosContainers.<system>.example: a web server in an imperative
# container.
#
#   sudo nixos-nspawn create example --flake github:nixos-nspawn/nixos-nspawn#example
#   curl http://HOST:8181/   # the host's LAN address, from the host or another machine
{ pkgs, ... }:
{
  system.stateVersion = "25.05";

  services.nginx = {
    enable = true;
    virtualHosts.localhost = {
      default = true;
      root = pkgs.writeTextDir "index.html" "hello from a nixos-nspawn container\n";
    };
  };
  networking.firewall.allowedTCPPorts = [ 80 ];

  # Settings of the container itself; `nixos-nspawn create` starts from them.
  nixosContainer = {
    forwardPorts = [ { hostPort = 8181; containerPort = 80; } ];
    activation.strategy = "dynamic";
  };
}
