# The unit options of nixpkgs' nixos/lib/systemd-unit-options.nix and
# systemd-lib.nix that the stand-ins need, and a renderer for unit files.
{ lib }:
let
  inherit (lib) mkOption types;
  inherit (builtins) isBool isInt isString isPath isList isAttrs all;

  atom = v: isBool v || isInt v || isString v || isPath v || lib.isStringLike v;
in
rec {
  unitNameType = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";

  # A value of a [Section] key: repeatable keys are lists (concatenated), other
  # definitions must agree.
  unitOption = lib.mkOptionType {
    name = "systemd option";
    check = v: atom v || (isList v && all atom v);
    merge = loc: defs:
      let defs' = lib.modules.filterOverrides defs; in
      if isList (builtins.head defs').value then
        lib.concatMap (d:
          if isList d.value then d.value
          else throw "The definitions of the systemd option ${lib.showOption loc} must be all lists or all single values:${lib.options.showDefs defs'}")
          defs'
      else lib.mergeEqualOption loc defs';
  };

  # attrsOf unitOption whose keys must be among `fields` (nixpkgs' assertOnlyFields).
  sectionOf = section: fields:
    types.addCheck (types.attrsOf unitOption) (attrs:
      let unknown = lib.subtractLists fields (builtins.attrNames attrs); in
      unknown == [ ] || builtins.trace "The [${section}] section has unknown key(s) ${builtins.concatStringsSep ", " unknown}" false);

  sharedOptions = {
    enable = mkOption { default = true; type = types.bool; description = "If false, the unit is masked."; };
    overrideStrategy = mkOption {
      default = "asDropinIfExists";
      type = types.enum [ "asDropinIfExists" "asDropin" ];
      description = "Whether the unit overrides a packaged unit as a drop-in.";
    };
    requiredBy = mkOption { default = [ ]; type = types.listOf unitNameType; description = "Units that require this unit."; };
    upheldBy = mkOption { default = [ ]; type = types.listOf unitNameType; description = "Units that uphold this unit."; };
    wantedBy = mkOption { default = [ ]; type = types.listOf unitNameType; description = "Units that want this unit."; };
    aliases = mkOption { default = [ ]; type = types.listOf unitNameType; description = "Aliases of the unit."; };
  };

  dependencyOption = what: mkOption { default = [ ]; type = types.listOf unitNameType; description = what; };

  commonUnitOptions = { name, ... }: {
    options = sharedOptions // {
      name = mkOption { type = types.str; internal = true; description = "Name of the unit (without the suffix)."; };
      description = mkOption { default = ""; type = types.singleLineStr; description = "Description of the unit."; };
      documentation = mkOption { default = [ ]; type = types.listOf types.str; description = "Documentation URIs."; };
      requires = dependencyOption "Units this unit requires.";
      wants = dependencyOption "Units this unit wants.";
      upholds = dependencyOption "Units this unit upholds.";
      after = dependencyOption "Units this unit is ordered after.";
      before = dependencyOption "Units this unit is ordered before.";
      bindsTo = dependencyOption "Units this unit is bound to.";
      partOf = dependencyOption "Units this unit is part of.";
      conflicts = dependencyOption "Units this unit conflicts with.";
      requisite = dependencyOption "Units that must already be active.";
      onFailure = dependencyOption "Units activated when this unit fails.";
      onSuccess = dependencyOption "Units activated when this unit succeeds.";
      unitConfig = mkOption { default = { }; type = types.attrsOf unitOption; description = "The [Unit] section."; };
      startLimitBurst = mkOption { type = types.int; description = "StartLimitBurst=."; };
      startLimitIntervalSec = mkOption { type = types.int; description = "StartLimitIntervalSec=."; };
      restartTriggers = mkOption { default = [ ]; type = types.listOf types.unspecified; description = "Restart the unit on a switch when any of these changes."; };
      reloadTriggers = mkOption { default = [ ]; type = types.listOf unitOption; description = "Reload the unit on a switch when any of these changes."; };
    };
    config.name = lib.mkDefault name;
  };

  serviceOptions = { name, config, ... }: {
    options = {
      environment = mkOption {
        default = { };
        type = with types; attrsOf (nullOr (oneOf [ str path package ]));
        description = "Environment variables of the service.";
      };
      path = mkOption { default = [ ]; type = with types; listOf (oneOf [ package str ]); description = "Packages added to PATH."; };
      serviceConfig = mkOption { default = { }; type = types.attrsOf unitOption; description = "The [Service] section."; };
      script = mkOption { type = types.lines; default = ""; description = "The main process, as shell commands."; };
      scriptArgs = mkOption { type = types.str; default = ""; description = "Arguments of the script."; };
      preStart = mkOption { type = types.lines; default = ""; description = "Shell commands run before the main process."; };
      postStart = mkOption { type = types.lines; default = ""; description = "Shell commands run after the main process started."; };
      reload = mkOption { type = types.lines; default = ""; description = "Shell commands run on reload."; };
      preStop = mkOption { type = types.lines; default = ""; description = "Shell commands run to stop the service."; };
      postStop = mkOption { type = types.lines; default = ""; description = "Shell commands run after the main process exited."; };
      restartIfChanged = mkOption { type = types.bool; default = true; description = "Restart the service on a switch when it changed."; };
      reloadIfChanged = mkOption { type = types.bool; default = false; description = "Reload instead of restarting on a switch."; };
      stopIfChanged = mkOption { type = types.bool; default = true; description = "Stop with the old, start with the new definition."; };
      startAt = mkOption {
        type = with types; either str (listOf str);
        default = [ ];
        apply = v: if builtins.isList v then v else [ v ];
        description = "Start the service at these times (a timer).";
      };
    };
  };

  socketOptions = {
    options = {
      listenStreams = mkOption { default = [ ]; type = types.listOf types.str; description = "ListenStream= entries."; };
      listenDatagrams = mkOption { default = [ ]; type = types.listOf types.str; description = "ListenDatagram= entries."; };
      socketConfig = mkOption { default = { }; type = types.attrsOf unitOption; description = "The [Socket] section."; };
    };
  };

  pathOptions = {
    options.pathConfig = mkOption { default = { }; type = types.attrsOf unitOption; description = "The [Path] section."; };
  };

  # --- rendering (so that evaluating a unit evaluates all of its values)
  renderValue = v:
    if isBool v then (if v then "true" else "false") else toString v;
  renderSection = name: attrs:
    "[${name}]\n" + lib.concatStrings (lib.mapAttrsToList
      (k: v: lib.concatMapStrings (x: "${k}=${renderValue x}\n") (lib.toList v))
      attrs);
  # The [Unit] keys the options set: each from the option named like it with
  # its first letter lowered (Description = description, BindsTo = bindsTo, ...).
  unitKeys = [
    "Description" "Documentation" "Requires" "Wants" "Upholds" "After" "Before"
    "BindsTo" "PartOf" "Conflicts" "Requisite" "OnFailure" "OnSuccess"
  ];
  lowerFirst = s: lib.toLower (builtins.substring 0 1 s) + builtins.substring 1 (builtins.stringLength s) s;
  unitSection = u:
    lib.filterAttrs (_: v: v != [ ] && v != "") (lib.genAttrs unitKeys (k: u.${lowerFirst k}))
    // u.unitConfig;
  renderUnit = sections: lib.concatStringsSep "\n" (lib.mapAttrsToList renderSection sections);
}
