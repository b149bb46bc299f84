# minilib: list functions (a subset of nixpkgs' lib.lists, same names and meaning).
lib:
let
  inherit (builtins) length elemAt genList filter foldl' head tail concatLists isList;
in
rec {
  inherit (builtins) head tail length elemAt filter concatLists genList elem map all any sort partition;
  foldl' = builtins.foldl';
  foldl = op: nul: list: foldl' op nul list;
  foldr = op: nul: list:
    let n = length list; go = i: if i == n then nul else op (elemAt list i) (go (i + 1)); in go 0;
  fold = foldr;
  imap0 = f: list: genList (i: f i (elemAt list i)) (length list);
  imap1 = f: list: genList (i: f (i + 1) (elemAt list i)) (length list);
  concatMap = f: list: concatLists (map f list);
  flatten = x: if isList x then concatMap flatten x else [ x ];
  remove = e: filter (x: x != e);
  findFirst = pred: default: list:
    let found = filter pred list; in if found == [ ] then default else head found;
  # The index of the first element for which pred holds, else default.
  findFirstIndex = pred: default: list:
    let n = length list; go = i: if i == n then default else if pred (elemAt list i) then i else go (i + 1); in go 0;
  findSingle = pred: default: multiple: list:
    let found = filter pred list; n = length found; in
    if n == 0 then default else if n == 1 then head found else multiple;
  count = pred: foldl' (c: x: if pred x then c + 1 else c) 0;
  optional = cond: x: if cond then [ x ] else [ ];
  optionals = cond: xs: if cond then xs else [ ];
  toList = x: if isList x then x else [ x ];
  singleton = x: [ x ];
  forEach = xs: f: map f xs;
  range = first: last: if first > last then [ ] else genList (n: first + n) (last - first + 1);
  replicate = n: x: genList (_: x) n;
  reverseList = xs: let n = length xs; in genList (i: elemAt xs (n - 1 - i)) n;
  take = n: xs: sublist 0 n xs;
  drop = n: xs: sublist n (length xs) xs;
  sublist = start: count: list:
    let len = length list; in
    genList (n: elemAt list (n + start))
      (if start >= len then 0 else if start + count > len then len - start else count);
  last = list: assert list != [ ]; elemAt list (length list - 1);
  init = list: assert list != [ ]; take (length list - 1) list;
  unique = foldl' (acc: e: if builtins.elem e acc then acc else acc ++ [ e ]) [ ];
  uniqueStrings = list: builtins.attrNames (builtins.listToAttrs (map (n: { name = n; value = null; }) list));
  intersectLists = e: filter (x: builtins.elem x e);
  subtractLists = e: filter (x: !(builtins.elem x e));
  mutuallyExclusive = a: b: length a == 0 || !(builtins.any (x: builtins.elem x a) b);
  zipListsWith = f: fst: snd:
    genList (n: f (elemAt fst n) (elemAt snd n)) (lib.min (length fst) (length snd));
  zipLists = zipListsWith (fst: snd: { inherit fst snd; });
  groupBy' = op: nul: pred: lst:
    foldl' (r: e: let key = pred e; in r // { ${key} = op (r.${key} or nul) e; }) { } lst;
  groupBy = pred: foldl' (r: e: let key = pred e; in r // { ${key} = (r.${key} or [ ]) ++ [ e ]; }) { };
  sortOn = f: builtins.sort (a: b: f a < f b);
  naturalSort = builtins.sort builtins.lessThan;
  ifilter0 = ipred: list: map (x: x.v) (filter (x: ipred x.i x.v) (imap0 (i: v: { inherit i v; }) list));
  commonPrefix = a: b:
    let n = lib.min (length a) (length b);
        go = i: if i < n && elemAt a i == elemAt b i then go (i + 1) else i;
    in take (go 0) a;
  allUnique = list: length (unique list) == length list;
}
