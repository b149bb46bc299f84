# minilib: string functions (a subset of nixpkgs' lib.strings, same names and meaning).
lib:
let
  inherit (builtins) stringLength substring concatStringsSep filter isString split match
    genList length elemAt head replaceStrings toString isList isAttrs typeOf;
in
rec {
  inherit (builtins) stringLength substring concatStringsSep replaceStrings toString match split;
  concatStrings = concatStringsSep "";
  concatMapStrings = f: list: concatStrings (map f list);
  concatMapStringsSep = sep: f: list: concatStringsSep sep (map f list);
  concatImapStringsSep = sep: f: list: concatStringsSep sep (lib.lists.imap1 f list);
  concatLines = list: concatMapStrings (s: s + "\n") list;
  intersperse = sep: list:
    if list == [ ] then [ ] else builtins.tail (lib.lists.concatMap (x: [ sep x ]) list);
  optionalString = cond: s: if cond then s else "";
  hasPrefix = pref: str: substring 0 (stringLength pref) str == pref;
  hasSuffix = suffix: content:
    let lc = stringLength content; ls = stringLength suffix; in
    lc >= ls && substring (lc - ls) lc content == suffix;
  hasInfix = infix: content:
    let li = stringLength infix; lc = stringLength content;
        go = i: i + li <= lc && (substring i li content == infix || go (i + 1));
    in go 0;
  removePrefix = prefix: str:
    if hasPrefix prefix str then substring (stringLength prefix) (stringLength str) str else str;
  removeSuffix = suffix: str:
    if hasSuffix suffix str then substring 0 (stringLength str - stringLength suffix) str else str;
  stringToCharacters = s: genList (p: substring p 1 s) (stringLength s);
  stringAsChars = f: s: concatMapStrings f (stringToCharacters s);
  escapeRegex = s: replaceStrings
    (stringToCharacters "\\[{()^$?*+|.") (map (c: "\\" + c) (stringToCharacters "\\[{()^$?*+|.")) s;
  # Splits at every occurrence of sep (a plain string, not a regex).
  splitString = sep: s: filter isString (split (escapeRegex sep) s);
  toUpper = replaceStrings lowerChars upperChars;
  toLower = replaceStrings upperChars lowerChars;
  lowerChars = stringToCharacters "abcdefghijklmnopqrstuvwxyz";
  upperChars = stringToCharacters "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  trim = s:
    let m = match "[[:space:]]*(.*[^[:space:]])[[:space:]]*" s; in if m == null then "" else head m;
  fixedWidthString = width: filler: str:
    let n = width - stringLength str; in
    if n <= 0 then str else concatStrings (genList (_: filler) n) + str;
  fixedWidthNumber = width: n: fixedWidthString width "0" (toString n);
  escape = list: replaceStrings list (map (c: "\\${c}") list);
  escapeShellArg = arg:
    let s = toString arg; in
    if match "[[:alnum:],._+:@%/-]+" s != null then s
    else "'${replaceStrings [ "'" ] [ "'\\''" ] s}'";
  escapeShellArgs = concatMapStringsSep " " escapeShellArg;
  escapeNixString = s: escape [ "$" ] (builtins.toJSON s);
  isValidNixIdentifier = s: match "[a-zA-Z_][a-zA-Z0-9_'-]*" s != null
    && !(builtins.elem s [ "assert" "else" "if" "in" "inherit" "let" "or" "rec" "then" "with" ]);
  escapeNixIdentifier = s: if isValidNixIdentifier s then s else escapeNixString s;
  isStringLike = x: isString x || builtins.isPath x || (isAttrs x && (x ? outPath || x ? __toString));
  isStorePath = x:
    if isStringLike x then
      let s = toString x; in
      hasPrefix builtins.storeDir s && builtins.match "${builtins.storeDir}/[^/]+" s != null
    else false;
  isConvertibleWithToString = x:
    isStringLike x || builtins.elem (typeOf x) [ "null" "int" "float" "bool" ]
    || (isList x && builtins.all isConvertibleWithToString x);
  versionOlder = v1: v2: builtins.compareVersions v2 v1 == 1;
  versionAtLeast = v1: v2: !(versionOlder v1 v2);
  toInt = s:
    let m = match "[[:space:]]*(-?[0-9]+)[[:space:]]*" s; in
    if m == null then throw "Could not convert ${s} to int." else builtins.fromJSON (head m);
  fileContents = file: removeSuffix "\n" (builtins.readFile file);
  sanitizeDerivationName = s:
    let r = replaceStrings [ " " ] [ "-" ] s; in
    concatStrings (filter isString (split "[^[:alnum:]+._?=-]+" r));
  makeSearchPath = subDir: paths: concatStringsSep ":" (map (p: "${toString p}/${subDir}") (filter (x: x != null) paths));
  makeBinPath = makeSearchPath "bin";
  addContextFrom = a: b: substring 0 0 a + b;
}
