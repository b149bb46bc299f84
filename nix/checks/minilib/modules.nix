# minilib: the module system (evalModules and the definition properties).
#
# Written for nixos-nspawn's checks, to the documented behaviour of nixpkgs'
# module system (NixOS manual, "Writing NixOS Modules", and lib.evalModules'
# reference): the same entry points, the same representation of properties
# (`_type = "if" | "merge" | "override" | "order"`) so modules written for
# nixpkgs work unchanged, and the same order of evaluation where it matters:
#
#  - the shape of the configuration (which attribute names a module defines at
#    each level) is computed from the definitions alone, with mkIf/mkOverride
#    pushed down into attribute sets without evaluating their conditions, so a
#    definition whose attribute names depend on `config` recurses exactly as it
#    does with nixpkgs' lib;
#  - conditions are evaluated when an option's value is merged; priorities
#    (mkOverride) pick the definitions that count, mkOrder sorts them, the type
#    checks and merges them; option defaults are definitions of priority 1500;
#  - forcing the result's `config` checks that every definition has an option.
lib:
let
  inherit (builtins)
    all any attrNames concatLists concatMap elem filter foldl' functionArgs genericClosure
    head isAttrs isBool isFunction isList isString length map mapAttrs removeAttrs seq tail
    toString typeOf;
  inherit (lib.attrsets) zipAttrs zipAttrsWith mapAttrsToList mapAttrsRecursiveCond
    recursiveUpdate setAttrByPath optionalAttrs;
  inherit (lib.lists) imap1 reverseList optional last sort;
  inherit (lib.options) isOption mkOption showOption showDefs showFiles;
  types = lib.types;

  defaultOverridePriority = 100;
  defaultOrderPriority = 1000;

  propertyOf = v: if isAttrs v then v._type or null else null;

  # ------------------------------------------------------------------ properties
  mkIf = condition: content: { _type = "if"; inherit condition content; };
  mkMerge = contents: { _type = "merge"; inherit contents; };
  mkOverride = priority: content: { _type = "override"; inherit priority content; };
  mkOrder = priority: content: { _type = "order"; inherit priority content; };
  mkAssert = assertion: message: content:
    mkIf (if assertion then true else throw "\nFailed assertion: ${message}") content;

  # mkMerge/mkIf/mkOverride around an attribute set become properties of each of
  # its attributes (the mkIf condition is not evaluated): a list of plain sets.
  pushDown = cfg:
    let
      p = propertyOf cfg;
      wrapEach = wrap: c: if isAttrs c then mapAttrs (_: wrap) c else c;
    in
    if p == "merge" then concatMap pushDown cfg.contents
    else if p == "if" then map (wrapEach (mkIf cfg.condition)) (pushDown cfg.content)
    else if p == "override" then map (wrapEach (mkOverride cfg.priority)) (pushDown cfg.content)
    else [ cfg ];

  # mkMerge and mkIf of one definition value, conditions evaluated: the list of
  # values that remain.
  discharge = v:
    let p = propertyOf v; in
    if p == "merge" then concatMap discharge v.contents
    else if p == "if" then
      (if !isBool v.condition then throw "mkIf was given a condition that is not a Boolean (a ${typeOf v.condition})"
       else if v.condition then discharge v.content else [ ])
    else [ v ];

  priorityOf = d: if propertyOf d.value == "override" then d.value.priority else defaultOverridePriority;
  stripOverride = d: if propertyOf d.value == "override" then d // { value = d.value.content; } else d;

  # Keep the definitions of the highest priority (lowest number).
  filterOverrides' = defs:
    let highestPrio = foldl' (p: d: let q = priorityOf d; in if q < p then q else p) 9999 defs; in
    {
      inherit highestPrio;
      values = map stripOverride (filter (d: priorityOf d == highestPrio) defs);
    };
  filterOverrides = defs: (filterOverrides' defs).values;

  sortProperties = defs:
    let
      unwrap = d: if propertyOf d.value == "order" then d // { value = d.value.content; order = d.value.priority; } else d;
    in
    sort (a: b: (a.order or defaultOrderPriority) < (b.order or defaultOrderPriority)) (map unwrap defs);

  # ------------------------------------------------------------------ one option
  # The definitions of one value of type `type` at `loc`, merged.
  mergeDefinitions = loc: type: defs: rec {
    defsFinal' =
      let
        plain = concatMap
          (d: map (value: { inherit (d) file; inherit value; })
            (builtins.addErrorContext "while evaluating definitions from `${d.file}':" (discharge d.value)))
          defs;
        chosen = filterOverrides' plain;
      in
      {
        inherit (chosen) highestPrio;
        values =
          if any (d: propertyOf d.value == "order") chosen.values then sortProperties chosen.values
          else chosen.values;
      };
    defsFinal = defsFinal'.values;
    isDefined = defsFinal != [ ];
    mergedValue =
      if isDefined then
        (if all (d: type.check d.value) defsFinal then type.merge loc defsFinal
         else
           throw "The option `${showOption loc}' has a definition that is not of type `${type.description}':${showDefs (filter (d: !(type.check d.value)) defsFinal)}")
      else if type.emptyValue ? value then type.emptyValue.value
      else throw "The option `${showOption loc}' has no value: it has neither a default nor a definition. Define it.";
    optionalValue = if isDefined then { value = mergedValue; } else { };
  };

  # An option's declaration and definitions -> the option with its value.
  evalOptionValue = loc: opt: defs:
    let
      defs' =
        optional (opt ? default) { file = head opt.declarations; value = mkOverride 1500 opt.default; }
        ++ defs;
      res =
        if (opt.readOnly or false) && length defs' > 1 then
          throw "The option `${showOption loc}' is read-only, but it has more than one definition (a default counts as one):${showDefs (map (d: d // { value = (mergeDefinitions loc opt.type [ d ]).mergedValue; }) defs')}"
        else mergeDefinitions loc opt.type defs';
      value = if opt ? apply then opt.apply res.mergedValue else res.mergedValue;
    in
    opt // {
      value = builtins.addErrorContext "while evaluating the option `${showOption loc}':" value;
      inherit (res.defsFinal') highestPrio;
      definitions = map (d: d.value) res.defsFinal;
      files = map (d: d.file) res.defsFinal;
      definitionsWithLocations = res.defsFinal;
      inherit (res) isDefined;
      __toString = _: showOption loc;
    };

  # Several declarations of one option -> one (types merged where they can be).
  mergeOptionDecls = loc: decls:
    let
      merged = foldl'
        (acc: d:
          let
            o = d.options;
            again = throw "The option `${showOption loc}' is declared again in `${d.file}'; it is already declared in ${showFiles acc.declarations} (only submodule options can be declared twice).";
            both = k: o ? ${k} && acc ? ${k};
            typePart =
              if o ? type && acc ? type then
                (let t = acc.type.typeMerge o.type.functor; in if t == null then again else { type = t; })
              else { };
            subs = o.type.getSubModules or null;
          in
          if both "default" || both "example" || both "description" || both "apply" then again
          else
            o // acc // {
              declarations = acc.declarations ++ [ d.file ];
              options = (if subs != null then map (setDefaultModuleLocation d.file) subs else [ ]) ++ acc.options;
            } // typePart)
        { inherit loc; declarations = [ ]; options = [ ]; }
        decls;
    in
    if (merged.type.getSubModules or null) == null then merged // { type = merged.type or types.unspecified; }
    else merged // { type = merged.type.substSubModules merged.options; options = [ ]; };

  # ------------------------------------------------------------------ one level
  # decls: [ { file; options; } ]  the declarations below `prefix`
  # defs:  [ { file; config; } ]   the definitions below `prefix`, properties pushed down
  # -> { options; unmatched = [ { file; prefix; value; } ]; }
  mergeLevel = prefix: decls: defs:
    let
      declsByName = zipAttrs (map
        (d:
          if !isAttrs d.options then
            throw "The option declaration at `${showOption prefix}' in `${d.file}' is a ${typeOf d.options}, not an attribute set of options. Did you mean to define it outside of `options'?"
          else mapAttrs (_: o: { inherit (d) file; options = o; }) d.options)
        decls);

      checkedDefs = map
        (d:
          if isAttrs d.config then d
          else throw "In module `${d.file}', the definition of `${showOption prefix}' is a ${typeOf d.config}, but an attribute set is expected there: `${showOption prefix}' is not an option, only a set of options.")
        defs;

      pushedByName = zipAttrsWith (_: concatLists) (map
        (d: mapAttrs (_: v: map (c: { inherit (d) file; config = c; }) (pushDown v)) d.config)
        checkedDefs);
      rawByName = zipAttrs (map
        (d: mapAttrs (_: v: { inherit (d) file; value = v; }) d.config)
        checkedDefs);

      asSubmoduleDecl = d:
        if isOption d.options then d
        else d // {
          options = mkOption {
            type = types.submoduleWith { modules = [ { options = d.options; } ]; shorthandOnlyDefinesConfig = null; };
          };
        };

      results = mapAttrs
        (name: ds:
          let
            loc = prefix ++ [ name ];
            optionDecls = filter
              (d:
                if !(isAttrs d.options && d.options ? _type) then false
                else if d.options._type == "option" then true
                else throw "In module ${d.file}: expected an option declaration at `${showOption loc}' but found a value of type ${d.options._type}${if d.options._type == "option-type" then " (wrap the type in lib.mkOption { type = ...; })" else ""}.")
              ds;
          in
          if length optionDecls == length ds then
            { option = evalOptionValue loc (mergeOptionDecls loc ds) (rawByName.${name} or [ ]); unmatched = [ ]; }
          else if optionDecls != [ ] then
            (if all (d: (d.options.type.name or null) == "submodule") optionDecls then
              { option = evalOptionValue loc (mergeOptionDecls loc (map asSubmoduleDecl ds)) (rawByName.${name} or [ ]); unmatched = [ ]; }
             else
               throw "The option `${showOption loc}' in module `${(head optionDecls).file}' would be a parent of other options, but its type `${(head optionDecls).options.type.description or "<no description>"}' does not support nested options.")
          else
            let sub = mergeLevel loc ds (pushedByName.${name} or [ ]); in
            { option = sub.options; inherit (sub) unmatched; })
        declsByName;

      unmatchedByName =
        mapAttrs (_: r: r.unmatched) results
        // removeAttrs rawByName (attrNames results);
    in
    {
      options = mapAttrs (_: r: r.option) results;
      unmatched =
        if defs == [ ] then [ ]
        else concatLists (mapAttrsToList
          (name: ds: map (d: d // { prefix = [ name ] ++ (d.prefix or [ ]); }) ds)
          unmatchedByName);
    };

  # ------------------------------------------------------------------ modules
  setDefaultModuleLocation = file: m: { _file = file; imports = [ m ]; };

  # A module value -> { file; key; class; disabled; imports; options; config; }
  canonical = file: key: m:
    let
      extras = cfg:
        let
          withFreeform = if m ? freeformType then mkMerge [ cfg { _module.freeformType = m.freeformType; } ] else cfg;
        in
        if m ? meta then mkMerge [ withFreeform { meta = m.meta; } ] else withFreeform;
      common = {
        file = toString (m._file or file);
        key = toString (m.key or key);
        class = m._class or null;
        disabled = m.disabledModules or [ ];
      };
    in
    if !isAttrs m then throw "The module ${file} (${key}) is a ${typeOf m}, not a module (an attribute set, a function or a path)."
    else if m ? config || m ? options then
      let
        unexpected = attrNames (removeAttrs m [ "_class" "_file" "key" "disabledModules" "imports" "options" "config" "meta" "freeformType" ]);
      in
      if unexpected != [ ] then
        throw "Module `${key}' has an unsupported attribute `${head unexpected}'. A module with a top-level `config' or `options' must put all its definitions into `config' (here: ${toString unexpected}), or none of them."
      else common // {
        imports = m.imports or [ ];
        options = m.options or { };
        config = extras (m.config or { });
      }
    else common // {
      imports = (m.require or [ ]) ++ (m.imports or [ ]);
      options = { };
      config = extras (removeAttrs m [ "_class" "_file" "key" "disabledModules" "require" "imports" "freeformType" ]);
    };

  # Call a module function with the arguments it names, lazily: explicit ones
  # from `args`, the rest from config._module.args.
  applyModuleArgs = key: f: args:
    f (args // mapAttrs
      (n: _:
        builtins.addErrorContext "while evaluating the module argument `${n}' in \"${key}\":"
          (args.${n} or args.config._module.args.${n}))
      (lib.trivial.functionArgs f));

  loadModule = args: file: key: m:
    if lib.trivial.isFunction m then canonical file key (applyModuleArgs key m args)
    else if isAttrs m && (m._type or "module") != "module" then
      (if m._type == "if" || m._type == "override" then loadModule args file key { config = m; }
       else throw "The module at ${file} is a value of type `${m._type}', not a module.")
    else if isAttrs m then canonical file key m
    else if isList m then throw "A module in ${file} is a list: imports are modules, not lists of them.${showDefs [ { inherit file; value = m; } ]}"
    else
      let path = toString m; imported = import m; in
      canonical path path (if lib.trivial.isFunction imported then applyModuleArgs path imported args else imported);

  collectModules = class: modulesPath: modules: args:
    let
      walk = parentFile: parentKey: ms: imap1
        (n: m:
          let
            mod = loadModule args parentFile "${parentKey}:anon-${toString n}" m;
            checked =
              if class != null && mod.class != null && mod.class != class then
                throw "The module `${mod.file}' (class ${mod.class}) cannot be imported into an evaluation of class ${class}."
              else mod;
          in
          { inherit (checked) key; module = checked; children = walk checked.file checked.key checked.imports; })
        ms;
      tree = walk "<unknown-file>" "" modules;
      disabledKeys = concatMap
        (x: map (d: if isString d && builtins.substring 0 1 d != "/" then "${toString modulesPath}/${d}" else if isAttrs d && d ? key then d.key else toString d) x.module.disabled)
        (genericClosure { startSet = tree; operator = x: x.children; });
      enabled = filter (x: !(elem x.key disabledKeys));
    in
    map (x: x.module) (genericClosure { startSet = enabled tree; operator = x: enabled x.children; });

  evalModules =
    evalArgs@{ modules, prefix ? [ ], specialArgs ? { }, class ? null, args ? { }, check ? true }:
    let
      legacyModules =
        optional (evalArgs ? args) { config._module.args = args; }
        ++ optional (evalArgs ? check) { config._module.check = mkOverride 1000 check; };
      regularModules = modules ++ legacyModules;

      internalModule = {
        _file = "minilib/modules.nix";
        key = "minilib/modules.nix";
        options._module = {
          args = mkOption {
            type = types.lazyAttrsOf types.raw;
            description = "Arguments passed to every module (besides lib, config, options and specialArgs).";
          };
          check = mkOption {
            type = types.bool;
            internal = true;
            default = true;
            description = "Whether every definition must have a declared option.";
          };
          freeformType = mkOption {
            type = types.nullOr types.optionType;
            internal = true;
            default = null;
            description = "The type that merges definitions without an option, or null (they are an error).";
          };
          specialArgs = mkOption {
            readOnly = true;
            internal = true;
            description = "The specialArgs of this evaluation.";
          };
        };
        config._module = {
          args = { inherit extendModules; moduleType = type; };
          inherit specialArgs;
        };
      };

      moduleArgs = {
        inherit lib options specialArgs;
        _class = class;
        _prefix = prefix;
        config = builtins.addErrorContext "if you get an infinite recursion here, you probably reference `config' in `imports'." config;
      } // specialArgs;

      collected = reverseList (collectModules class (specialArgs.modulesPath or "") (regularModules ++ [ internalModule ]) moduleArgs);

      merged = mergeLevel prefix
        (map (m: { inherit (m) file options; }) collected)
        (concatMap (m: map (c: { inherit (m) file; config = c; }) (pushDown m.config)) collected);

      options = merged.options;

      declaredConfig = mapAttrsRecursiveCond (v: !isOption v) (_: v: v.value) options;
      freeformType = declaredConfig._module.freeformType;
      config =
        if freeformType == null then declaredConfig
        else
          let
            defs = map (d: { inherit (d) file; value = setAttrByPath d.prefix d.value; }) merged.unmatched;
          in
          recursiveUpdate (if defs == [ ] then { } else freeformType.merge prefix defs) declaredConfig;

      checkUnmatched =
        if config._module.check && config._module.freeformType == null && merged.unmatched != [ ] then
          let
            first = head merged.unmatched;
            name = showOption (prefix ++ first.prefix);
            noOptions = attrNames options == [ "_module" ];
          in
          throw ("The option `${name}' does not exist: no module declares it. Its definition:${showDefs [ first ]}"
            + (if noOptions then "\n\nThere are no options declared here at all; did you declare your options under `config' instead of `options'?" else ""))
        else null;
      checked = seq checkUnmatched;

      extendModules = extendArgs@{ modules ? [ ], specialArgs ? { }, prefix ? [ ] }:
        evalModules (evalArgs // {
          modules = regularModules ++ modules;
          specialArgs = (evalArgs.specialArgs or { }) // specialArgs;
          prefix = extendArgs.prefix or evalArgs.prefix or [ ];
        });

      type = types.submoduleWith { inherit modules specialArgs class; };
    in
    {
      _type = "configuration";
      options = checked options;
      config = checked (removeAttrs config [ "_module" ]);
      _module = checked config._module;
      inherit extendModules type class;
    };
in
{
  inherit evalModules mergeDefinitions evalOptionValue mergeOptionDecls pushDown discharge
    filterOverrides filterOverrides' sortProperties setDefaultModuleLocation collectModules
    mkIf mkMerge mkOverride mkOrder mkAssert defaultOverridePriority defaultOrderPriority;
  pushDownProperties = pushDown;
  dischargeProperties = discharge;
  mkOptionDefault = mkOverride 1500;
  mkDefault = mkOverride 1000;
  mkImageMediaOverride = mkOverride 60;
  mkForce = mkOverride 50;
  mkVMOverride = mkOverride 10;
  mkBefore = mkOrder 500;
  mkAfter = mkOrder 1500;
  mkDerivedConfig = opt: f: mkOverride (opt.highestPrio or defaultOverridePriority) (f opt.value);
  mkAliasDefinitions = opt: mkIf opt.isDefined (mkMerge opt.definitions);
  mkAliasAndWrapDefinitions = wrap: opt: mkIf opt.isDefined (wrap (mkMerge opt.definitions));
  mkAliasAndWrapDefsWithPriority = wrap: opt:
    mkIf opt.isDefined (wrap (mkMerge (map (mkOverride (opt.highestPrio or defaultOverridePriority)) opt.definitions)));
  importApply = modulePath: staticArgs: lib.setDefaultModuleLocation modulePath (import modulePath staticArgs);
  # { name = { highestPrio; value; } } of an attrsOf option's definitions.
  mergeAttrDefinitionsWithPrio = opt:
    mapAttrs
      (k: ds:
        let m = mergeDefinitions (opt.loc ++ [ k ]) opt.type.nestedTypes.elemType ds; in
        { value = m.mergedValue; inherit (m.defsFinal') highestPrio; })
      (zipAttrs (concatMap
        (d: concatMap (c: mapAttrsToList (k: v: { ${k} = d // { value = v; }; }) c) (pushDown d.value))
        opt.definitionsWithLocations));
}
