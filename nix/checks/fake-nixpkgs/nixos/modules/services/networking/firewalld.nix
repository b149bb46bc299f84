# nixos/modules/services/networking/firewalld (the option the firewall's backend reads)
{ lib, ... }:
{
  options.services.firewalld.enable = lib.mkOption {
    type = lib.types.bool;
    default = false;
    description = "Whether to enable firewalld.";
  };
}
