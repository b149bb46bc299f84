# minilib: option types (the names and meaning of nixpkgs' lib.types).
#
# A type is { _type = "option-type"; name; description; check; merge; emptyValue;
# getSubOptions; getSubModules; substSubModules; typeMerge; functor; nestedTypes; }:
#   check v      : whether one definition value has the type (the head of it:
#                  nested values are checked when they are merged);
#   merge loc ds : the value of several checked definitions [ { file; value; } ];
#   emptyValue   : { value = ...; } when the type has a value without definitions;
#   functor      : { name; payload; binOp; type; } for merging two declarations
#                  of one option (typeMerge other.functor -> merged type or null).
lib:
let
  inherit (builtins)
    all any attrNames concatLists elem filter foldl' head isAttrs isBool isFloat isFunction
    isInt isList isPath isString length map mapAttrs match substring tail toString typeOf;
  inherit (lib.options) mergeEqualOption mergeOneOption mergeUniqueOption mergeDefaultOption
    showOption showFiles showDefs getFiles getValues;
  inherit (lib.attrsets) zipAttrsWith filterAttrs isDerivation toDerivation optionalAttrs;
  inherit (lib.lists) imap1 last toList;
  inherit (lib.strings) isStringLike isStorePath concatMapStringsSep removeSuffix;
  modules = lib.modules;

  # Two functors merge when they are of the same type and their payloads combine.
  defaultTypeMerge = f: f':
    if f.name != f'.name then null
    else if f.payload == null && f'.payload == null then f.type
    else if f.payload != null && f'.payload != null then
      (let p = f.binOp f.payload f'.payload; in if p == null then null else f.type p)
    else null;

  simpleFunctor = name: { inherit name; type = types.${name} or null; payload = null; binOp = _: _: null; };
  elemFunctor = name: ctor: elemType: {
    inherit name;
    type = p: ctor p.elemType;
    payload = { inherit elemType; };
    binOp = a: b:
      let e = a.elemType.typeMerge b.elemType.functor; in if e == null then null else { elemType = e; };
  };

  mkOptionType =
    { name
    , description ? null
    , descriptionClass ? null
    , check ? (_: true)
    , merge ? mergeDefaultOption
    , emptyValue ? { }
    , getSubOptions ? (_: { })
    , getSubModules ? null
    , substSubModules ? (_: null)
    , typeMerge ? null
    , functor ? simpleFunctor name
    , deprecationMessage ? null
    , nestedTypes ? { }
    }:
    {
      _type = "option-type";
      inherit name check merge emptyValue getSubOptions getSubModules substSubModules
        functor deprecationMessage nestedTypes descriptionClass;
      typeMerge = if typeMerge != null then typeMerge else defaultTypeMerge functor;
      description = if description == null then name else description;
    };

  paren = t: if elem (t.descriptionClass or null) [ "noun" "composite" ] then t.description else "(${t.description})";

  intBetween = lowest: highest: name:
    addCheck types.int (x: x >= lowest && x <= highest) // {
      inherit name;
      description = "integer between ${toString lowest} and ${toString highest} (both inclusive)";
    };

  addCheck = elemType: check: elemType // { check = x: elemType.check x && check x; };

  pathWith = { inStore ? null, absolute ? null }:
    mkOptionType {
      name = "path";
      description =
        (if absolute == null then "" else if absolute then "absolute " else "relative ")
        + "path"
        + (if inStore == null then "" else if inStore then " in the Nix store" else " not in the Nix store");
      descriptionClass = "noun";
      check = x:
        let
          s = toString x;
          isAbsolute = substring 0 1 s == "/";
          inStoreNow = lib.strings.hasPrefix (builtins.storeDir + "/") (builtins.unsafeDiscardStringContext s);
        in
        (if inStore == null || inStore then isStringLike x else isString x)
        && (inStore == null || inStore == inStoreNow)
        && (absolute == null || absolute == isAbsolute);
      merge = mergeEqualOption;
      functor = simpleFunctor "path" // {
        type = pathWith;
        payload = { inherit inStore absolute; };
        binOp = a: b: if a == b then a else null;
      };
    };

  attrsWith = { elemType, lazy ? false, placeholder ? "name" }:
    mkOptionType {
      name = if lazy then "lazyAttrsOf" else "attrsOf";
      description = (if lazy then "lazy attribute set" else "attribute set") + " of ${paren elemType}";
      descriptionClass = "composite";
      check = isAttrs;
      merge = loc: defs:
        let
          perName = zipAttrsWith
            (n: ds: modules.mergeDefinitions (loc ++ [ n ]) elemType ds)
            (map (d: mapAttrs (_: v: { inherit (d) file; value = v; }) d.value) defs);
        in
        if lazy then
          mapAttrs (_: m: m.optionalValue.value or elemType.emptyValue.value or m.mergedValue) perName
        else
          mapAttrs (_: m: m.optionalValue.value) (filterAttrs (_: m: m.optionalValue ? value) perName);
      emptyValue = { value = { }; };
      getSubOptions = prefix: elemType.getSubOptions (prefix ++ [ "<${placeholder}>" ]);
      getSubModules = elemType.getSubModules;
      substSubModules = m: attrsWith { elemType = elemType.substSubModules m; inherit lazy placeholder; };
      functor = {
        name = "attrsWith";
        type = p: attrsWith p;
        payload = { inherit elemType lazy placeholder; };
        binOp = a: b:
          let e = a.elemType.typeMerge b.elemType.functor; in
          if e == null || a.lazy != b.lazy then null
          else { elemType = e; inherit (a) lazy; placeholder = if a.placeholder == "name" then b.placeholder else a.placeholder; };
      };
      nestedTypes.elemType = elemType;
    };

  # A type made of one element type by `ctor` (listOf, nullOr, functionTo):
  # what each of them has alike, and its own `fields`.
  elemWrapper = name: ctor: elemType: fields:
    mkOptionType ({
      inherit name;
      getSubModules = elemType.getSubModules;
      substSubModules = m: ctor (elemType.substSubModules m);
      functor = elemFunctor name ctor elemType;
      nestedTypes.elemType = elemType;
    } // fields);

  listOf = elemType:
    elemWrapper "listOf" listOf elemType {
      description = "list of ${paren elemType}";
      descriptionClass = "composite";
      check = isList;
      merge = loc: defs:
        map (m: m.optionalValue.value)
          (filter (m: m.optionalValue ? value)
            (concatLists (imap1
              (n: d: imap1
                (i: v: modules.mergeDefinitions
                  (loc ++ [ "[definition ${toString n}-entry ${toString i}]" ])
                  elemType
                  [ { inherit (d) file; value = v; } ])
                d.value)
              defs)));
      emptyValue = { value = [ ]; };
      getSubOptions = prefix: elemType.getSubOptions (prefix ++ [ "*" ]);
    };

  unique = { message }: type:
    mkOptionType {
      name = "unique";
      inherit (type) description descriptionClass check emptyValue getSubOptions getSubModules;
      merge = mergeUniqueOption { inherit message; inherit (type) merge; };
      substSubModules = m: unique { inherit message; } (type.substSubModules m);
      functor = elemFunctor "unique" (unique { inherit message; }) type;
      nestedTypes.elemType = type;
    };

  nullOr = elemType:
    elemWrapper "nullOr" nullOr elemType {
      description = "null or ${paren elemType}";
      descriptionClass = "conjunction";
      check = x: x == null || elemType.check x;
      merge = loc: defs:
        let nulls = filter (d: d.value == null) defs; in
        if nulls == [ ] then elemType.merge loc defs
        else if length nulls == length defs then null
        else throw "The option `${showOption loc}' has definitions that are null and others that are not, in ${showFiles (getFiles defs)}.";
      emptyValue = { value = null; };
      getSubOptions = elemType.getSubOptions;
    };

  functionTo = elemType:
    elemWrapper "functionTo" functionTo elemType {
      description = "function that evaluates to a(n) ${paren elemType}";
      descriptionClass = "composite";
      check = lib.trivial.isFunction;
      merge = loc: defs: {
        __functionArgs = zipAttrsWith (_: all (x: x)) (map (d: lib.trivial.functionArgs d.value) defs);
        __functor = _: callerArgs:
          (modules.mergeDefinitions (loc ++ [ "<function body>" ]) elemType
            (map (d: { inherit (d) file; value = d.value callerArgs; }) defs)).mergedValue;
      };
      getSubOptions = prefix: elemType.getSubOptions (prefix ++ [ "<function body>" ]);
    };

  submoduleWith =
    { modules
    , specialArgs ? { }
    , shorthandOnlyDefinesConfig ? false
    , description ? null
    , class ? null
    }@attrs:
    let
      asModules = defs: map
        ({ value, file }:
          if isAttrs value && shorthandOnlyDefinesConfig then { _file = file; config = value; }
          else { _file = file; imports = [ value ]; })
        defs;
      base = lib.modules.evalModules {
        inherit class specialArgs;
        modules = [ { _module.args.name = lib.modules.mkOptionDefault "‹name›"; } ] ++ modules;
      };
      freeformType = base._module.freeformType;
    in
    mkOptionType {
      name = "submodule";
      description = if description != null then description else "submodule";
      descriptionClass = "noun";
      check = x: isAttrs x || isFunction x || types.path.check x;
      merge = loc: defs:
        (base.extendModules {
          modules = [ { _module.args.name = last loc; } ] ++ asModules defs;
          prefix = loc;
        }).config;
      emptyValue = { value = base.config; };
      getSubOptions = prefix: (base.extendModules { inherit prefix; }).options;
      getSubModules = modules;
      substSubModules = m: submoduleWith (attrs // { modules = m; });
      nestedTypes = optionalAttrs (freeformType != null) { inherit freeformType; };
      functor = {
        name = "submodule";
        type = submoduleWith;
        payload = { inherit modules class specialArgs shorthandOnlyDefinesConfig description; };
        binOp = a: b:
          let
            pick = what: x: y:
              if x == null then y else if y == null || x == y then x
              else throw "A submodule option is declared more than once with different ${what}.";
            clash = builtins.intersectAttrs a.specialArgs b.specialArgs;
          in
          {
            class = pick "classes" a.class b.class;
            modules = a.modules ++ b.modules;
            specialArgs =
              if clash == { } then a.specialArgs // b.specialArgs
              else throw "A submodule option is declared more than once with the same specialArgs ${toString (attrNames clash)}.";
            shorthandOnlyDefinesConfig = pick "shorthandOnlyDefinesConfig" a.shorthandOnlyDefinesConfig b.shorthandOnlyDefinesConfig;
            description = pick "descriptions" a.description b.description;
          };
      };
    };

  deferredModuleWith = { staticModules ? [ ] }@attrs:
    mkOptionType {
      name = "deferredModule";
      description = "module";
      descriptionClass = "noun";
      check = x: isAttrs x || isFunction x || types.path.check x;
      merge = loc: defs: {
        imports = staticModules ++ map
          (d: lib.modules.setDefaultModuleLocation "${d.file}, via option ${showOption loc}" d.value)
          defs;
      };
      getSubOptions = prefix: { };
      getSubModules = staticModules;
      substSubModules = m: deferredModuleWith (attrs // { staticModules = m; });
      functor = {
        name = "deferredModuleWith";
        type = deferredModuleWith;
        payload = { inherit staticModules; };
        binOp = a: b: { staticModules = a.staticModules ++ b.staticModules; };
      };
    };

  enum = values:
    let
      show = v:
        if isString v then ''"${v}"'' else if isInt v then toString v
        else if isBool v then (if v then "true" else "false") else "<${typeOf v}>";
    in
    mkOptionType {
      name = "enum";
      description =
        if values == [ ] then "impossible (empty enum)"
        else if length values == 1 then "value ${show (head values)} (singular enum)"
        else "one of ${concatMapStringsSep ", " show values}";
      descriptionClass = if length values < 2 then "noun" else "conjunction";
      check = x: elem x values;
      merge = mergeEqualOption;
      functor = {
        name = "enum";
        type = p: enum p.values;
        payload = { inherit values; };
        binOp = a: b: { values = lib.lists.unique (a.values ++ b.values); };
      };
    };

  either = t1: t2:
    mkOptionType {
      name = "either";
      description = "${paren t1} or ${paren t2}";
      descriptionClass = "conjunction";
      check = x: t1.check x || t2.check x;
      merge = loc: defs:
        let vs = getValues defs; in
        if all t1.check vs then t1.merge loc defs
        else if all t2.check vs then t2.merge loc defs
        else mergeOneOption loc defs;
      functor = {
        name = "either";
        type = p: either p.left p.right;
        payload = { left = t1; right = t2; };
        binOp = a: b:
          let l = a.left.typeMerge b.left.functor; r = a.right.typeMerge b.right.functor; in
          if l == null || r == null then null else { left = l; right = r; };
      };
      nestedTypes = { left = t1; right = t2; };
    };

  coercedTo = coercedType: coerceFunc: finalType:
    mkOptionType {
      name = "coercedTo";
      description = "${paren finalType} or ${paren coercedType} convertible to it";
      check = x: (coercedType.check x && finalType.check (coerceFunc x)) || finalType.check x;
      merge = loc: defs:
        finalType.merge loc (map (d: d // { value = if coercedType.check d.value then coerceFunc d.value else d.value; }) defs);
      emptyValue = finalType.emptyValue;
      getSubOptions = finalType.getSubOptions;
      getSubModules = finalType.getSubModules;
      substSubModules = m: coercedTo coercedType coerceFunc (finalType.substSubModules m);
      typeMerge = _: null;
      functor = simpleFunctor "coercedTo" // { payload = { inherit coercedType coerceFunc finalType; }; };
      nestedTypes = { inherit coercedType finalType; };
    };

  separatedString = sep:
    mkOptionType {
      name = "separatedString";
      description = if sep == "" then "Concatenated string" else "strings concatenated with ${builtins.toJSON sep}";
      descriptionClass = "noun";
      check = isString;
      merge = loc: defs: builtins.concatStringsSep sep (getValues defs);
      functor = {
        name = "separatedString";
        type = separatedString;
        payload = sep;
        binOp = a: b: if a == b then a else null;
      };
    };

  anything = mkOptionType {
    name = "anything";
    description = "anything";
    descriptionClass = "noun";
    check = _: true;
    merge = loc: defs:
      let
        kind = v: if isAttrs v && isStringLike v then "stringCoercibleSet" else typeOf v;
        common = foldl'
          (k: d: if kind d.value == k then k
            else throw "The option `${showOption loc}' has definitions of different kinds (conflicting types) in ${showFiles (getFiles defs)}")
          (kind (head defs).value)
          defs;
      in
      if common == "set" then (types.attrsOf anything).merge loc defs
      else if common == "stringCoercibleSet" then mergeOneOption loc defs
      else if common == "lambda" then
        (arg: anything.merge (loc ++ [ "<function body>" ]) (map (d: { inherit (d) file; value = d.value arg; }) defs))
      else mergeEqualOption loc defs;
  };

  types = {
    inherit mkOptionType addCheck pathWith attrsWith listOf unique nullOr functionTo
      submoduleWith deferredModuleWith enum either coercedTo separatedString anything;
    isType = type: x: (x._type or "") == type;
    isOptionType = x: (x._type or "") == "option-type";

    raw = mkOptionType { name = "raw"; description = "raw value"; descriptionClass = "noun"; merge = mergeOneOption; };
    unspecified = mkOptionType { name = "unspecified"; description = "unspecified value"; descriptionClass = "noun"; };
    bool = mkOptionType { name = "bool"; description = "boolean"; descriptionClass = "noun"; check = isBool; merge = mergeEqualOption; };
    boolByOr = mkOptionType {
      name = "boolByOr"; description = "boolean (merged using or)"; descriptionClass = "noun";
      check = isBool; merge = loc: defs: any (d: d.value) defs;
    };
    int = mkOptionType { name = "int"; description = "signed integer"; descriptionClass = "noun"; check = isInt; merge = mergeEqualOption; };
    ints = {
      between = lowest: highest: intBetween lowest highest "intBetween";
      unsigned = addCheck types.int (x: x >= 0) // { name = "unsignedInt"; description = "unsigned integer, meaning >=0"; };
      positive = addCheck types.int (x: x > 0) // { name = "positiveInt"; description = "positive integer, meaning >0"; };
      u8 = intBetween 0 255 "unsignedInt8";
      u16 = intBetween 0 65535 "unsignedInt16";
      u32 = intBetween 0 4294967295 "unsignedInt32";
      s8 = intBetween (-128) 127 "signedInt8";
      s16 = intBetween (-32768) 32767 "signedInt16";
      s32 = intBetween (-2147483648) 2147483647 "signedInt32";
    };
    port = types.ints.u16;
    float = mkOptionType { name = "float"; description = "floating point number"; descriptionClass = "noun"; check = isFloat; merge = mergeEqualOption; };
    number = types.either types.int types.float;
    str = mkOptionType { name = "str"; description = "string"; descriptionClass = "noun"; check = isString; merge = mergeEqualOption; };
    nonEmptyStr = mkOptionType {
      name = "nonEmptyStr"; description = "non-empty string"; descriptionClass = "noun";
      check = x: isString x && match "[ \t\n]*" x == null; merge = mergeEqualOption;
    };
    singleLineStr =
      let base = types.strMatching "[^\n\r]*\n?"; in
      base // {
        name = "singleLineStr";
        description = "(optionally newline-terminated) single-line string";
        merge = loc: defs: removeSuffix "\n" (base.merge loc defs);
      };
    strMatching = pattern: mkOptionType {
      name = "strMatching ${builtins.toJSON pattern}";
      description = "string matching the pattern ${pattern}";
      descriptionClass = "noun";
      check = x: isString x && match pattern x != null;
      merge = mergeEqualOption;
      functor = simpleFunctor "strMatching" // {
        type = p: types.strMatching p.pattern;
        payload = { inherit pattern; };
        binOp = a: b: if a == b then a else null;
      };
    };
    string = separatedString "" // { name = "string"; };
    lines = separatedString "\n";
    commas = separatedString ",";
    envVar = separatedString ":";
    attrs = mkOptionType {
      name = "attrs"; description = "attribute set";
      check = isAttrs; merge = loc: foldl' (acc: d: acc // d.value) { }; emptyValue = { value = { }; };
    };
    package = mkOptionType {
      name = "package";
      descriptionClass = "noun";
      check = x: isDerivation x || isStorePath x;
      merge = loc: defs:
        let v = mergeOneOption loc defs; in
        if isPath v || (isString v && !builtins.hasContext v) then toDerivation v else v;
    };
    shellPackage = types.package // { check = x: isDerivation x && x ? shellPath; };
    pkgs = addCheck
      (unique { message = "A Nixpkgs pkgs set can not be merged with another pkgs set."; } types.attrs // {
        name = "pkgs"; descriptionClass = "noun"; description = "Nixpkgs package set";
      })
      (x: (x._type or null) == "pkgs");
    path = pathWith { absolute = true; };
    pathInStore = pathWith { inStore = true; };
    externalPath = pathWith { absolute = true; inStore = false; };
    nonEmptyListOf = elemType:
      let l = addCheck (listOf elemType) (x: x != [ ]); in
      l // {
        description = "non-empty ${l.description}";
        emptyValue = { };
        substSubModules = m: types.nonEmptyListOf (elemType.substSubModules m);
      };
    attrsOf = elemType: attrsWith { inherit elemType; };
    lazyAttrsOf = elemType: attrsWith { inherit elemType; lazy = true; };
    uniq = unique { message = ""; };
    submodule = ms: submoduleWith { shorthandOnlyDefinesConfig = true; modules = toList ms; };
    deferredModule = deferredModuleWith { };
    optionType = mkOptionType {
      name = "optionType";
      description = "optionType";
      descriptionClass = "noun";
      check = x: (x._type or null) == "option-type";
      merge = loc: defs:
        if length defs == 1 then (head defs).value
        else
          (lib.modules.mergeOptionDecls loc
            (map ({ value, file }: { inherit file; options = lib.options.mkOption { type = value; }; }) defs)).type;
    };
    oneOf = ts:
      if ts == [ ] then throw "types.oneOf needs at least one type"
      else foldl' either (head ts) (tail ts);
  };
in
types
