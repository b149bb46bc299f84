# minilib: small general-purpose functions (the part of nixpkgs' lib.trivial the
# modules and the checks use). Written for nixos-nspawn's checks; see README.md.
lib:
let
  inherit (builtins) isFunction functionArgs isAttrs;
in
rec {
  id = x: x;
  const = x: _: x;
  flip = f: a: b: f b a;
  pipe = builtins.foldl' (x: f: f x);
  concat = a: b: a ++ b;
  "or" = a: b: a || b;
  "and" = a: b: a && b;
  max = a: b: if a > b then a else b;
  min = a: b: if a < b then a else b;
  mod = a: b: a - b * (a / b);
  boolToString = b: if b then "true" else "false";
  mergeAttrs = a: b: a // b;
  fix = f: let x = f x; in x;
  extends = overlay: f: final: let prev = f final; in prev // overlay final prev;
  composeExtensions = f: g: final: prev:
    let fApplied = f final prev; in fApplied // g final (prev // fApplied);
  composeManyExtensions = builtins.foldl' composeExtensions (_: _: { });
  isFunction = f: builtins.isFunction f || (isAttrs f && f ? __functor);
  # Arguments of a function, also of a functor carrying __functionArgs.
  functionArgs = f:
    if f ? __functor then f.__functionArgs or (functionArgs (f.__functor f))
    else builtins.functionArgs f;
  setFunctionArgs = f: args: { __functor = _: f; __functionArgs = args; };
  mirrorFunctionArgs = f: g: setFunctionArgs g (functionArgs f);
  toFunction = v: if isFunction v then v else _: v;
  warn = msg: builtins.trace "warning: ${msg}";
  warnIf = cond: msg: if cond then warn msg else x: x;
  warnIfNot = cond: warnIf (!cond);
  throwIf = cond: msg: if cond then throw msg else x: x;
  throwIfNot = cond: throwIf (!cond);
  info = msg: builtins.trace "INFO: ${msg}";
  seq = builtins.seq;
  deepSeq = builtins.deepSeq;
  release = "25.11";
  oldestSupportedRelease = 2411;
  codeName = "minilib";
  version = release;
  isInOldestRelease = _: false;
  importJSON = path: builtins.fromJSON (builtins.readFile path);
  importTOML = path: builtins.fromTOML (builtins.readFile path);
  inPureEvalMode = !(builtins ? currentSystem);
  defaultTo = d: x: if x == null then d else x;
}
