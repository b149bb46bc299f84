# Stand-ins for the NixOS options nix/modules/container.nix sets, for evaluating the
# container profile with nixpkgs' lib alone (see module-eval.nix).
{ lib, config, ... }:
let
  inherit (lib) mkOption types;
  any = mkOption { type = types.attrsOf types.anything; default = { }; };
  bool = default: mkOption { type = types.bool; inherit default; };
in
{
  options = {
    assertions = mkOption {
      type = types.listOf (types.submodule {
        options.assertion = mkOption { type = types.bool; };
        options.message = mkOption { type = types.str; };
      });
      default = [ ];
    };
    warnings = mkOption { type = types.listOf types.str; default = [ ]; };
    boot.isContainer = bool false;
    boot.isNspawnContainer = bool false;
    networking.hostName = mkOption { type = types.str; default = "nixos"; };
    networking.domain = mkOption { type = types.nullOr types.str; default = null; };
    networking.useNetworkd = bool false;
    networking.useDHCP = bool true;
    networking.useHostResolvConf = bool false;
    services.resolved.enable = bool false;
    systemd.network.enable = bool false;
    systemd.network.networks = mkOption {
      default = { };
      type = types.attrsOf (types.submodule {
        options.matchConfig = any;
        options.networkConfig = any;
        options.dhcpV4Config = any;
        options.address = mkOption { type = types.listOf types.str; default = [ ]; };
        options.routes = mkOption { type = types.listOf types.anything; default = [ ]; };
        options.linkConfig = any;
      });
    };
    systemd.sockets = any;
    systemd.services = any;
    nixpkgs.hostPlatform = mkOption { type = types.anything; };
    system.systemBuilderCommands = mkOption { type = types.lines; default = ""; };
    system.build = mkOption { type = types.lazyAttrsOf types.unspecified; default = { }; };
  };
  # as nixpkgs' container-config.nix does
  config.networking.useHostResolvConf = lib.mkDefault config.boot.isContainer;
  config.system.build.toplevel = {
    type = "derivation";
    name = "nixos-system-${config.networking.hostName}";
    outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" config.system.systemBuilderCommands)}-nixos-system-${config.networking.hostName}";
  };
}
