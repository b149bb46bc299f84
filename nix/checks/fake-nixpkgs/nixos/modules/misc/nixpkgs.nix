# nixos/modules/misc/nixpkgs.nix: the `pkgs` module argument from nixpkgs.pkgs
# (extended with nixpkgs.overlays) or from importing this nixpkgs with
# nixpkgs.config, nixpkgs.overlays and the platform options.
{ config, options, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.nixpkgs;
  opt = options.nixpkgs;
  elaborate = lib.systems.elaborate;

  isConfig = x: builtins.isAttrs x || lib.isFunction x;
  callIfFunction = f: x: if lib.isFunction f then f x else f;
  # Like nixpkgs: lists are concatenated, other values taken from the later
  # definition, packageOverrides composed.
  mergeConfig = lhs_: rhs_:
    let
      lhs = callIfFunction lhs_ { inherit lib; pkgs = finalPkgs; };
      rhs = callIfFunction rhs_ { inherit lib; pkgs = finalPkgs; };
    in
    lib.zipAttrsWith (_: vs: if builtins.isList (builtins.head vs) then lib.concatLists vs else builtins.head vs) [ lhs rhs ];
  configType = lib.mkOptionType {
    name = "nixpkgs-config";
    description = "nixpkgs config";
    check = isConfig;
    merge = _loc: lib.foldr (def: mergeConfig def.value) { };
  };
  overlayType = lib.mkOptionType {
    name = "nixpkgs-overlay";
    description = "nixpkgs overlay";
    check = lib.isFunction;
    merge = lib.mergeOneOption;
  };

  defaultPkgs =
    if opt.hostPlatform.isDefined then
      import ../../.. { inherit (cfg) config overlays; localSystem = cfg.hostPlatform; }
    else
      import ../../.. { inherit (cfg) config overlays localSystem crossSystem; };
  finalPkgs = if opt.pkgs.isDefined then cfg.pkgs.appendOverlays cfg.overlays else defaultPkgs;
in
{
  options.nixpkgs = {
    pkgs = mkOption {
      type = types.pkgs // { description = "An evaluation of Nixpkgs; the top level attribute set of packages"; };
      description = "The package set the `pkgs` argument is made from (extended with nixpkgs.overlays); the other nixpkgs.* options are then ignored.";
    };
    config = mkOption {
      default = { };
      type = configType;
      description = "Nixpkgs' configuration (allowUnfree, ...). Ignored when nixpkgs.pkgs is set.";
    };
    overlays = mkOption {
      default = [ ];
      type = types.listOf overlayType;
      description = "Overlays applied to the package set.";
    };
    hostPlatform = mkOption {
      type = types.either types.str types.attrs;
      apply = elaborate;
      description = "The platform the system runs on.";
    };
    buildPlatform = mkOption {
      type = types.either types.str types.attrs;
      default = cfg.hostPlatform;
      apply = p: let e = elaborate p; in if lib.systems.equals e cfg.hostPlatform then cfg.hostPlatform else e;
      description = "The platform the system is built on.";
    };
    localSystem = mkOption {
      type = types.attrs;
      default = { inherit (cfg) system; };
      apply = elaborate;
      description = "Legacy: the platform the system is built on.";
    };
    crossSystem = mkOption {
      type = types.nullOr types.attrs;
      default = null;
      description = "Legacy: the platform the system is built for.";
    };
    system = mkOption {
      type = types.str;
      default =
        if opt.hostPlatform.isDefined then throw "nixpkgs.system is not meant to be read; use pkgs.stdenv.hostPlatform."
        else throw "Neither nixpkgs.hostPlatform nor the legacy option nixpkgs.system has been set.";
      description = "Legacy: the Nix system type.";
    };
  };

  config = {
    _module.args.pkgs = lib.mkOverride 100 finalPkgs;
    assertions = [
      {
        assertion = opt.pkgs.isDefined -> cfg.config == { };
        message = ''
          Your system configures nixpkgs with an externally created instance.
          `nixpkgs.config` options should be passed when creating the instance instead.
          Defined in:
          ${lib.concatMapStringsSep "\n" (f: "  - ${f}") opt.config.files}
        '';
      }
    ];
  };
}
