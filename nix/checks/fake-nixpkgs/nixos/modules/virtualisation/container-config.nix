# nixos/modules/virtualisation/container-config.nix (the definitions that matter here)
{ config, lib, ... }:
{
  config = lib.mkIf config.boot.isContainer {
    networking.useHostResolvConf = lib.mkDefault true;
    # The store is the host's; nix talks to the host's daemon.
    environment.variables.NIX_REMOTE = "daemon";
  };
}
