# minilib: option declarations and the helpers for merging definitions and
# showing them in messages (the names of nixpkgs' lib.options).
lib:
let
  inherit (builtins) length head tail all isFunction isList isAttrs isString isBool isInt
    isFloat isPath foldl' concatLists concatStringsSep filter map attrNames toJSON tryEval
    typeOf elemAt;
  inherit (lib.strings) escapeNixIdentifier concatMapStrings;

  hint = "To let one of them win, give it another priority (lib.mkForce, lib.mkDefault, lib.mkOverride N).";

  # A bounded one-line rendering of a value for messages.
  render = depth: v:
    if isString v then toJSON v
    else if isInt v || isFloat v then toString v
    else if isBool v then (if v then "true" else "false")
    else if v == null then "null"
    else if isPath v then toString v
    else if isFunction v then "<function>"
    else if isList v then
      (if depth == 0 then "[ ... ]" else "[ " + concatMapStrings (x: render (depth - 1) x + " ") v + "]")
    else if isAttrs v then
      (if (v.type or null) == "derivation" then "<derivation ${v.name or "?"}>"
       else if depth == 0 then "{ ... }"
       else "{ " + concatMapStrings (n: "${escapeNixIdentifier n} = ${render (depth - 1) v.${n}}; ") (attrNames v) + "}")
    else "<${typeOf v}>";
in
rec {
  isOption = x: isAttrs x && (x._type or null) == "option";

  # Exactly the arguments nixpkgs' mkOption takes; others are an error.
  mkOption =
    { default ? null, defaultText ? null, example ? null, description ? null
    , relatedPackages ? null, type ? null, apply ? null, internal ? null, visible ? null
    , readOnly ? null }@attrs:
    attrs // { _type = "option"; };

  mkEnableOption = name: mkOption {
    type = lib.types.bool;
    default = false;
    example = true;
    description = "Whether to enable ${name}.";
  };

  mkPackageOption = pkgs: name: { default ? [ name ], example ? null, extraDescription ? "", nullable ? false, pkgsText ? "pkgs" }:
    let path = lib.lists.toList default; in
    mkOption {
      type = if nullable then lib.types.nullOr lib.types.package else lib.types.package;
      default = if default == null then null else lib.attrsets.attrByPath path (throw "${concatStringsSep "." path} is not in pkgs") pkgs;
      description = "The ${name} package to use.${extraDescription}";
    };

  literalExpression = text: { _type = "literalExpression"; inherit text; };
  literalMD = text: { _type = "literalMD"; inherit text; };
  mdDoc = x: x;

  showOption = parts:
    concatStringsSep "." (map (p:
      if p == "*" || builtins.match "<.*>" p != null then p else escapeNixIdentifier p) parts);
  showFiles = files: concatStringsSep " and " (map (f: "`${f}'") files);
  showDefs = defs: concatMapStrings (def:
    let shown = tryEval (render 3 def.value); in
    "\n- In `${def.file}'" + (if shown.success then ": ${shown.value}" else "")) defs;
  showOptionWithDefLocs = opt: "${showOption opt.loc}, with values defined in:\n${concatMapStrings (f: "  - ${f}\n") opt.files}";

  getValues = map (d: d.value);
  getFiles = map (d: d.file);

  # Merge functions: (loc: defs: value), defs = [ { file; value; } ].
  mergeEqualOption = loc: defs:
    if defs == [ ] then abort "mergeEqualOption: no definitions"
    else if length defs == 1 then (head defs).value
    else
      (foldl' (first: d:
        if d.value != first.value then
          throw "The definitions of the option `${showOption loc}' differ (conflicting definition values):${showDefs [ first d ]}\n${hint}"
        else first) (head defs) (tail defs)).value;

  mergeUniqueOption = { message, merge ? loc: defs: (head defs).value }: loc: defs:
    if length defs == 1 then merge loc defs
    else throw "The option `${showOption loc}' takes a single definition, but it is defined multiple times.${if message == "" then "" else "\n${message}"}\nDefinitions:${showDefs defs}\n${hint}";

  mergeOneOption = mergeUniqueOption { message = ""; };

  mergeDefaultOption = loc: defs:
    let vs = getValues defs; in
    if length vs == 1 then head vs
    else if all isFunction vs then x: mergeDefaultOption loc (map (d: d // { value = d.value x; }) defs)
    else if all isList vs then concatLists vs
    else if all isAttrs vs then foldl' (a: b: a // b) { } vs
    else if all isBool vs then builtins.any (x: x) vs
    else if all isString vs then concatStringsSep "" vs
    else if all isInt vs && all (x: x == head vs) vs then head vs
    else throw "The definitions of `${showOption loc}' cannot be merged (its type does not say how, and they are of different kinds):${showDefs defs}";

  mergeAttrsOption = loc: defs: foldl' (a: d: a // d.value) { } defs;
  mergeListOption = loc: defs: concatLists (getValues defs);

  unknownModule = "<unknown-file>";
}
