# nixos/modules/system/etc/etc.nix: environment.etc.<name>, `source` made from
# `text` (pkgs.writeText, at the priority of the text's definition).
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  enabled = lib.filter (f: f.enable) (lib.attrValues config.environment.etc);
in
{
  options.environment.etc = mkOption {
    default = { };
    description = "Files linked into /etc.";
    type = types.attrsOf (types.submodule ({ name, config, options, ... }: {
      options = {
        enable = mkOption { type = types.bool; default = true; description = "Whether this file is generated."; };
        target = mkOption { type = types.str; description = "Name of the link, relative to /etc."; };
        text = mkOption { default = null; type = types.nullOr types.lines; description = "Text of the file."; };
        source = mkOption { type = types.path; description = "Path of the source file."; };
        mode = mkOption { type = types.str; default = "symlink"; description = "`symlink`, or the mode of a copy."; };
        uid = mkOption { default = 0; type = types.int; description = "UID of a copied file."; };
        gid = mkOption { default = 0; type = types.int; description = "GID of a copied file."; };
        user = mkOption { default = "+${toString config.uid}"; type = types.str; description = "Owner of a copied file."; };
        group = mkOption { default = "+${toString config.gid}"; type = types.str; description = "Group of a copied file."; };
      };
      config = {
        target = lib.mkDefault name;
        source = lib.mkIf (config.text != null)
          (lib.mkDerivedConfig options.text (pkgs.writeText ("etc-" + lib.replaceStrings [ "/" ] [ "-" ] name)));
      };
    }));
  };

  config.system.build.etc = pkgs.runCommandLocal "etc" { } (lib.concatMapStrings
    (f: "${toString f.source} ${f.target} ${f.mode} ${f.user} ${f.group}\n")
    enabled);
}
