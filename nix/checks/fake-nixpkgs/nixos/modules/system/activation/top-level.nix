# nixos/modules/system/activation/top-level.nix: system.build.toplevel, which
# (like NixOS's) fails on failed assertions, shows the warnings, and depends on
# everything that goes into the system, so evaluating it evaluates the system.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  checked =
    if failed != [ ] then throw "\nFailed assertions:\n${lib.concatMapStrings (m: "- ${m}\n") failed}"
    else lib.foldr (w: x: builtins.trace "evaluation warning: ${w}" x) true config.warnings;
  contents = builtins.toJSON {
    etc = config.system.build.etc;
    units = config.system.build.units;
    packages = map toString config.environment.systemPackages;
    builder = config.system.systemBuilderCommands;
    extra = config.system.extraDependencies;
    # As NixOS's passedChecks: the checks are build inputs of the toplevel.
    checks = map toString config.system.checks;
  };
in
{
  options.system = {
    build = mkOption {
      default = { };
      type = types.submoduleWith {
        modules = [ { freeformType = types.lazyAttrsOf types.unspecified; } ];
      };
      description = "Attribute set of derivations used to set up the system.";
    };
    systemBuilderCommands = mkOption {
      type = types.lines;
      internal = true;
      default = "";
      description = "Commands run at the end of building the system's toplevel.";
    };
    extraDependencies = mkOption {
      type = types.listOf types.pathInStore;
      default = [ ];
      description = "Paths the system depends on without using them.";
    };
    checks = mkOption {
      type = types.listOf types.package;
      default = [ ];
      description = "Derivations the system's build depends on, to validate the configuration; not part of the system.";
    };
    name = mkOption {
      type = types.str;
      default = if config.networking.hostName == "" then "unnamed" else config.networking.hostName;
      description = "Name of the system (part of the toplevel's name).";
    };
  };

  config.system.build.toplevel =
    assert checked;
    pkgs.runCommand "nixos-system-${config.system.name}-${config.system.nixos.release}" { } contents;
}
