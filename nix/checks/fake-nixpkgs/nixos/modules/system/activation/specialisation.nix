# nixos/modules/system/activation/specialisation.nix: specialisation.<name>, each
# a whole system again (extendModules, without specialisations of its own),
# linked into the parent's toplevel under specialisation/<name>.
{ config, lib, extendModules, ... }:
let
  inherit (lib) mkOption types;
in
{
  options.specialisation = mkOption {
    default = { };
    description = "Additional configurations, built into specialisation/<name> of the system.";
    type = types.attrsOf (types.submodule {
      options.inheritParentConfig = mkOption { type = types.bool; default = true; description = "Whether the parent's configuration is included."; };
      options.configuration = mkOption {
        default = { };
        visible = "shallow";
        description = "The specialisation's configuration (NixOS modules).";
        inherit (extendModules { modules = [ { specialisation = lib.mkOverride 0 { }; } ]; }) type;
      };
    });
  };
  # inheritParentConfig = false (NixOS's noUserModules) is not modelled here.
  config.assertions = lib.mapAttrsToList (n: s: {
    assertion = s.inheritParentConfig;
    message = "fake-nixpkgs: specialisation.${n}.inheritParentConfig = false is not modelled by the stand-in nixpkgs";
  }) config.specialisation;
  config.system.systemBuilderCommands = lib.mkIf (config.specialisation != { }) (
    "mkdir $out/specialisation\n"
    + lib.concatStrings (lib.mapAttrsToList
      (n: s: "ln -s ${s.configuration.system.build.toplevel} $out/specialisation/${n}\n")
      config.specialisation));
}
