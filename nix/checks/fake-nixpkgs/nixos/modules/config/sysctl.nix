# nixos/modules/config/sysctl.nix: boot.kernel.sysctl is a submodule with a
# freeform type whose values allow one definition each (at the winning
# priority); two definitions of one key at the same priority are an error even
# when they agree.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  sysctlOption = lib.mkOptionType {
    name = "sysctl option value";
    check = v:
      let atom = x: builtins.isBool x || builtins.isString x || builtins.isInt x || x == null; in
      atom v || ((v._type or "") == "override" && atom v.content);
    merge = loc: defs: lib.mergeOneOption loc (lib.modules.filterOverrides defs);
  };
  highest = types.nullOr types.ints.unsigned // {
    merge = _loc: defs:
      builtins.foldl' (a: d: if d.value == null then null else lib.max a d.value) 0 (lib.modules.filterOverrides defs);
  };
in
{
  options.boot.kernel.sysctl = mkOption {
    type = types.submodule {
      freeformType = types.attrsOf sysctlOption;
      options."net.core.rmem_max" = mkOption { type = highest; default = null; description = "Largest receive buffer (the highest definition wins)."; };
      options."net.core.wmem_max" = mkOption { type = highest; default = null; description = "Largest send buffer (the highest definition wins)."; };
    };
    default = { };
    description = "Kernel parameters (sysctl).";
  };

  config = {
    environment.etc."sysctl.d/60-nixos.conf".text = lib.concatStrings (lib.mapAttrsToList
      (n: v: lib.optionalString (v != null) "${n}=${if v == false then "0" else if v == true then "1" else toString v}\n")
      config.boot.kernel.sysctl);
    boot.kernel.sysctl."kernel.kptr_restrict" = lib.mkDefault 1;
  };
}
