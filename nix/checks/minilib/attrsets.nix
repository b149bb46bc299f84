# minilib: attribute set functions (a subset of nixpkgs' lib.attrsets, same names
# and meaning).
lib:
let
  inherit (builtins) attrNames attrValues listToAttrs mapAttrs filter isAttrs length head
    concatMap foldl' elemAt hasAttr getAttr removeAttrs intersectAttrs catAttrs;
in
rec {
  inherit (builtins) attrNames attrValues listToAttrs mapAttrs hasAttr getAttr removeAttrs
    intersectAttrs catAttrs;
  nameValuePair = name: value: { inherit name value; };
  genAttrs = names: f: listToAttrs (map (n: nameValuePair n (f n)) names);
  mapAttrs' = f: set: listToAttrs (map (n: f n set.${n}) (attrNames set));
  mapAttrsToList = f: set: map (n: f n set.${n}) (attrNames set);
  attrsToList = mapAttrsToList nameValuePair;
  concatMapAttrs = f: set: foldl' (acc: n: acc // f n set.${n}) { } (attrNames set);
  filterAttrs = pred: set:
    listToAttrs (concatMap (n: let v = set.${n}; in if pred n v then [ (nameValuePair n v) ] else [ ]) (attrNames set));
  foldlAttrs = f: init: set: foldl' (acc: n: f acc n set.${n}) init (attrNames set);
  attrByPath = path: default: set:
    if path == [ ] then set
    else let n = head path; in
      if isAttrs set && set ? ${n} then attrByPath (builtins.tail path) default set.${n} else default;
  hasAttrByPath = path: set:
    path == [ ] || (let n = head path; in isAttrs set && set ? ${n} && hasAttrByPath (builtins.tail path) set.${n});
  getAttrFromPath = path: set:
    attrByPath path (throw "cannot find attribute `${builtins.concatStringsSep "." path}'") set;
  setAttrByPath = path: value:
    if path == [ ] then value else { ${head path} = setAttrByPath (builtins.tail path) value; };
  optionalAttrs = cond: set: if cond then set else { };
  getAttrs = names: set: genAttrs names (n: set.${n});
  zipAttrsWithNames = names: f: sets:
    genAttrs names (n: f n (catAttrs n sets));
  zipAttrsWith =
    if builtins ? zipAttrsWith then builtins.zipAttrsWith
    else f: sets: zipAttrsWithNames (lib.lists.unique (concatMap attrNames sets)) f sets;
  zipAttrs = zipAttrsWith (_: values: values);
  mapAttrsRecursive = f: mapAttrsRecursiveCond (_: true) f;
  mapAttrsRecursiveCond = cond: f: set:
    let
      go = path: s: mapAttrs (n: v:
        if isAttrs v && cond v then go (path ++ [ n ]) v else f (path ++ [ n ]) v) s;
    in go [ ] set;
  recursiveUpdateUntil = pred: lhs: rhs:
    let
      go = path: l: r:
        zipAttrsWith (n: values:
          let p = path ++ [ n ]; in
          if length values == 1 then head values
          else
            let a = elemAt values 1; b = head values; in
            if pred p a b then b else go p a b)
          [ r l ];
    in go [ ] lhs rhs;
  recursiveUpdate = recursiveUpdateUntil (_: l: r: !(isAttrs l && isAttrs r));
  isDerivation = x: isAttrs x && (x.type or null) == "derivation";
  toDerivation = path:
    let p = builtins.storePath path; in
    { type = "derivation"; name = builtins.baseNameOf p; outPath = p; outputs = [ "out" ]; out = p; };
  cartesianProduct = attrsOfLists:
    foldl' (acc: n: concatMap (a: map (v: a // { ${n} = v; }) attrsOfLists.${n}) acc) [ { } ]
      (attrNames attrsOfLists);
  collect = pred: v:
    if pred v then [ v ] else if isAttrs v then concatMap (collect pred) (attrValues v) else [ ];
  unionOfDisjoint = a: b:
    let both = intersectAttrs a b; in
    if both == { } then a // b
    else throw "unionOfDisjoint: collision on ${builtins.concatStringsSep ", " (attrNames both)}";
  attrVals = names: set: map (n: set.${n}) names;
  dontRecurseIntoAttrs = set: set // { recurseForDerivations = false; };
  recurseIntoAttrs = set: set // { recurseForDerivations = true; };
}
