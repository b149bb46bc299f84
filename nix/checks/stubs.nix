# Stand-ins for the NixOS options nix/modules/hypervisor.nix sets, so the module can
# be evaluated with nixpkgs' lib alone (lib.evalModules), without nixpkgs or NixOS.
# Types are loose where the real ones would only add checking we do not test here;
# environment.etc computes `source` from `text` as NixOS does (a fake store path).
{ lib, ... }:
let
  inherit (lib) mkOption types;
  any = mkOption { type = types.attrsOf types.anything; default = { }; };
  fakeStorePath = name: text:
    "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" text)}-${name}";
  fakePackage = {
    type = "derivation";
    name = "nixos-nspawn-0.1.0";
    outPath = "/nix/store/00000000000000000000000000000000-nixos-nspawn-0.1.0";
  };
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

    environment.etc = mkOption {
      default = { };
      type = types.attrsOf (types.submodule ({ name, config, ... }: {
        options.text = mkOption { type = types.nullOr types.lines; default = null; };
        options.source = mkOption { type = types.str; };
        config.source = lib.mkIf (config.text != null)
          (lib.mkDefault (fakeStorePath (baseNameOf name) config.text));
      }));
    };
    environment.systemPackages = mkOption { type = types.listOf types.package; default = [ ]; };

    systemd.generators = mkOption { type = types.attrsOf types.str; default = { }; };
    systemd.network.enable = mkOption { type = types.bool; default = false; };
    systemd.network.wait-online.enable = mkOption { type = types.bool; default = true; };
    systemd.targets = any;
    systemd.services = mkOption {
      default = { };
      type = types.attrsOf (types.submodule {
        freeformType = types.attrsOf types.anything;
        options.restartTriggers = mkOption { type = types.listOf types.unspecified; default = [ ]; };
        options.wantedBy = mkOption { type = types.listOf types.str; default = [ ]; };
        options.restartIfChanged = mkOption { type = types.bool; default = true; };
      });
    };

    boot.kernel.sysctl = any;

    networking.useNetworkd = mkOption { type = types.bool; default = false; };
    networking.nftables.enable = mkOption { type = types.bool; default = false; };
    networking.dhcpcd.denyInterfaces = mkOption { type = types.listOf types.str; default = [ ]; };
    networking.networkmanager.enable = mkOption { type = types.bool; default = false; };
    networking.networkmanager.unmanaged = mkOption { type = types.listOf types.str; default = [ ]; };
    networking.firewall.enable = mkOption { type = types.bool; default = true; };
    networking.firewall.extraInputRules = mkOption { type = types.lines; default = ""; };
    networking.firewall.interfaces = any;
  };

  config._module.args.pkgs = {
    path = "/nonexistent/nixpkgs";
    callPackage = _fn: _args: fakePackage;
    stdenv.hostPlatform.system = "x86_64-linux";
  };
}
