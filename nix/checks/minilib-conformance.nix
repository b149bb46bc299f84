# Probes of the module system and of the lib functions the modules use, each with
# the value nixpkgs' lib gives (written down here). nix/checks/run checks that the
# minilib gives exactly these values and, with NIXPKGS_LIB, that nixpkgs' lib
# does too (so an expectation written here that nixpkgs' lib does not meet is
# caught as well):
#
#   nix-instantiate --eval --strict --json nix/checks/minilib-conformance.nix --arg nixpkgsLib ./nix/checks/minilib
{ nixpkgsLib }:
let
  lib = import nixpkgsLib;
  inherit (lib) mkOption types mkIf mkMerge mkDefault mkForce mkOverride mkOptionDefault mkBefore mkAfter;

  eval = modules: (lib.evalModules { inherit modules; });
  cfgOf = modules: (eval modules).config;
  fails = x: !(builtins.tryEval (builtins.deepSeq x x)).success;

  intOpt = { options.a = mkOption { type = types.int; default = 1; }; };
  listOpt = { options.l = mkOption { type = types.listOf types.str; default = [ ]; }; };
  strOpt = { options.s = mkOption { type = types.str; }; };

  probes = {
    # --- priorities
    "default when undefined" = { expect = 1; value = (cfgOf [ intOpt ]).a; };
    "definition beats default" = { expect = 2; value = (cfgOf [ intOpt { a = 2; } ]).a; };
    "mkDefault loses to a definition" = { expect = 3; value = (cfgOf [ intOpt { a = mkDefault 2; } { a = 3; } ]).a; };
    "mkForce wins" = { expect = 9; value = (cfgOf [ intOpt { a = mkForce 9; } { a = 3; } ]).a; };
    "mkOverride 900 beats mkDefault" = { expect = 5; value = (cfgOf [ intOpt { a = mkOverride 900 5; } { a = mkDefault 6; } ]).a; };
    "mkOptionDefault vs default: same priority" = { expect = false; value = fails (cfgOf [ intOpt { a = mkOptionDefault 1; } ]).a; };
    "highestPrio of default, plain, mkDefault, mkForce" = {
      expect = [ 1500 100 1000 50 ];
      value = map (m: (eval [ intOpt m ]).options.a.highestPrio) [ { } { a = 2; } { a = mkDefault 2; } { a = mkForce 2; } ];
    };
    "highestPrio without default or definition" = { expect = 9999; value = (eval [ strOpt ]).options.s.highestPrio; };
    "isDefined" = { expect = [ false true ]; value = [ (eval [ strOpt ]).options.s.isDefined (eval [ strOpt { s = "x"; } ]).options.s.isDefined ]; };
    "equal definitions of a str merge" = { expect = "x"; value = (cfgOf [ strOpt { s = "x"; } { s = "x"; } ]).s; };
    "different definitions of a str conflict" = { expect = true; value = fails (cfgOf [ strOpt { s = "x"; } { s = "y"; } ]).s; };
    "a str option without value fails" = { expect = true; value = fails (cfgOf [ strOpt ]).s; };
    # --- conditions and merging
    "mkIf false removes" = { expect = 1; value = (cfgOf [ intOpt { a = mkIf false 7; } ]).a; };
    "mkIf non-bool fails" = { expect = true; value = fails (cfgOf [ intOpt { a = mkIf "yes" 7; } ]).a; };
    "mkMerge with mkIf in a list" = {
      expect = [ "b" "a" ];
      value = (cfgOf [ listOpt { l = mkMerge [ [ "a" ] (mkIf false [ "x" ]) ]; } { l = [ "b" ]; } ]).l;
    };
    "list order of modules" = { expect = [ "3" "2" "1" ]; value = (cfgOf [ listOpt { l = [ "1" ]; } { l = [ "2" ]; } { l = [ "3" ]; } ]).l; };
    "mkBefore and mkAfter" = {
      expect = [ "first" "middle" "last" ];
      value = (cfgOf [ listOpt { l = mkAfter [ "last" ]; } { l = [ "middle" ]; } { l = mkBefore [ "first" ]; } ]).l;
    };
    "lines are joined in order" = {
      expect = "b\na";
      value = (cfgOf [ { options.t = mkOption { type = types.lines; default = ""; }; } { t = "a"; } { t = "b"; } ]).t;
    };
    "mkIf pushed into attribute sets (condition from config)" = {
      expect = { a = 1; b = 5; };
      value = cfgOf [
        intOpt
        { options.b = mkOption { type = types.int; default = 0; }; }
        ({ config, ... }: mkIf (config.a == 1) { b = 5; })
      ];
    };
    "undeclared definition fails when config is used" = { expect = true; value = fails (cfgOf [ intOpt { b = 1; } ]); };
    "type error fails" = { expect = true; value = fails (cfgOf [ intOpt { a = "one"; } ]).a; };
    "readOnly with a default cannot be set" = {
      expect = true;
      value = fails (cfgOf [ { options.r = mkOption { type = types.int; default = 1; readOnly = true; }; } { r = 2; } ]).r;
    };
    "apply" = { expect = 4; value = (cfgOf [ { options.a = mkOption { type = types.int; default = 2; apply = x: x * 2; }; } ]).a; };
    # --- types
    "empty values of listOf, attrsOf, nullOr" = {
      expect = { l = [ ]; a = { }; n = null; };
      value = cfgOf [ {
        options.l = mkOption { type = types.listOf types.int; };
        options.a = mkOption { type = types.attrsOf types.int; };
        options.n = mkOption { type = types.nullOr types.int; };
      } ];
    };
    "attrsOf with mkIf false leaves the attribute out" = {
      expect = { x = 1; };
      value = (cfgOf [ { options.m = mkOption { type = types.attrsOf types.int; default = { }; }; } { m = { x = 1; y = mkIf false 2; }; } ]).m;
    };
    "lazyAttrsOf keeps the attribute" = {
      expect = true;
      value = (cfgOf [ { options.m = mkOption { type = types.lazyAttrsOf types.int; default = { }; }; } { m.y = mkIf false 2; } ]).m ? y;
    };
    "nullOr null and not null fails" = {
      expect = true;
      value = fails (cfgOf [ { options.n = mkOption { type = types.nullOr types.int; }; } { n = null; } { n = 1; } ]).n;
    };
    "port bounds" = { expect = [ true true false false ]; value = map types.port.check [ 0 65535 65536 (-1) ]; };
    "enum" = { expect = [ true false ]; value = map (types.enum [ "a" "b" ]).check [ "a" "c" ]; };
    "strMatching is a whole match" = { expect = [ true false ]; value = map (types.strMatching "[a-z]+").check [ "abc" "abc1" ]; };
    "host name pattern: 63 and 64 characters" = {
      expect = [ true false ];
      value = map (types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$").check
        [ (lib.concatStrings (lib.genList (_: "a") 63)) (lib.concatStrings (lib.genList (_: "a") 64)) ];
    };
    "path" = { expect = [ true false true ]; value = map types.path.check [ "/abs" "rel" /tmp ]; };
    "either picks the matching type" = {
      expect = [ true "x" ];
      value = [
        (cfgOf [ { options.e = mkOption { type = types.either types.bool types.str; }; } { e = true; } ]).e
        (cfgOf [ { options.e = mkOption { type = types.either types.bool types.str; }; } { e = "x"; } ]).e
      ];
    };
    "coercedTo" = {
      expect = [ "2" "1" ];
      value = (cfgOf [
        { options.c = mkOption { type = types.coercedTo (types.listOf types.int) (map toString) (types.listOf types.str); default = [ ]; }; }
        { c = [ 1 ]; } { c = [ "2" ]; }
      ]).c;
    };
    "anything merges attribute sets recursively" = {
      expect = { a = { x = 1; y = 2; }; b = [ 1 ]; };
      value = (cfgOf [ { options.v = mkOption { type = types.anything; }; } { v.a.x = 1; v.b = [ 1 ]; } { v.a.y = 2; v.b = [ 1 ]; } ]).v;
    };
    "anything: different lists conflict" = {
      expect = true;
      value = fails (cfgOf [ { options.v = mkOption { type = types.anything; }; } { v = [ 1 ]; } { v = [ 2 ]; } ]).v;
    };
    "unspecified concatenates lists" = {
      expect = [ 2 1 ];
      value = (cfgOf [ { options.u = mkOption { type = types.unspecified; }; } { u = [ 1 ]; } { u = [ 2 ]; } ]).u;
    };
    "submodule: name, defaults, shorthand" = {
      expect = { one = { n = "one"; v = 1; }; two = { n = "two"; v = 2; }; };
      value = (cfgOf [
        { options.s = mkOption { default = { }; type = types.attrsOf (types.submodule ({ name, ... }: {
            options.n = mkOption { type = types.str; default = name; };
            options.v = mkOption { type = types.int; default = 1; };
          })); }; }
        { s.one = { }; s.two.v = 2; }
      ]).s;
    };
    "submodule shorthand: an `options' attribute is a definition" = {
      expect = true;
      value = fails (cfgOf [
        { options.s = mkOption { type = types.submodule { options.x = mkOption { type = types.int; default = 0; }; }; default = { }; }; }
        { s = { options.y = mkOption { type = types.int; }; }; }
      ]).s;
    };
    "deferredModule is imported into a submodule" = {
      expect = 3;
      value =
        let c = cfgOf [ { options.d = mkOption { type = types.deferredModule; default = { }; }; } { d = { x = 3; }; } ]; in
        (lib.evalModules { modules = [ { options.x = mkOption { type = types.int; }; } c.d ]; }).config.x;
    };
    "freeformType" = {
      expect = { a = 1; free = "x"; };
      value = cfgOf [ { freeformType = types.attrsOf types.str; options.a = mkOption { type = types.int; default = 1; }; } { free = "x"; } ];
    };
    "submodule declared twice merges options" = {
      expect = { x = 1; y = 2; };
      value = (cfgOf [
        { options.s = mkOption { type = types.submodule { options.x = mkOption { type = types.int; default = 1; }; }; default = { }; }; }
        { options.s = mkOption { type = types.submodule { options.y = mkOption { type = types.int; default = 2; }; }; }; }
      ]).s;
    };
    # vm-stubs.nix adds its _vmCheck option to the elements of the stand-in's
    # attrsOf/listOf submodule options by declaring them a second time.
    "attrsOf and listOf submodule declared twice merge options" = {
      expect = { m = { x = 1; y = 2; }; l = [ { x = 1; y = 2; } ]; };
      value = let c = cfgOf [
        { options.a = mkOption { type = types.attrsOf (types.submodule { options.x = mkOption { type = types.int; default = 1; }; }); default = { }; };
          options.b = mkOption { type = types.listOf (types.submodule [ { options.x = mkOption { type = types.int; default = 1; }; } ]); default = [ ]; }; }
        { options.a = mkOption { type = types.attrsOf (types.submodule [ { options.y = mkOption { type = types.int; default = 2; }; } ]); };
          options.b = mkOption { type = types.listOf (types.submodule { options.y = mkOption { type = types.int; default = 2; }; }); }; }
        { a.m = { }; b = [ { } ]; }
      ]; in { inherit (c.a) m; l = c.b; };
    };
    # vm-stubs.nix reads highestPrio of every option, also of those whose
    # default throws when evaluated (networking.fqdn without a domain).
    "highestPrio does not evaluate a default" = {
      expect = [ 1500 100 ];
      value = let o = (eval [
        { options.t = mkOption { type = types.str; default = throw "evaluated"; }; }
        { options.d = mkOption { type = types.str; }; config.d = "x"; }
      ]).options; in [ o.t.highestPrio o.d.highestPrio ];
    };
    "extendModules adds modules to an evaluation" = {
      expect = { a = 1; b = 2; };
      value = let e = eval [ intOpt ]; in
        (e.extendModules { modules = [ { options.b = mkOption { type = types.int; default = 2; }; } ]; }).config;
    };
    "an option declared twice fails" = {
      expect = true;
      value = fails (cfgOf [ intOpt { options.a = mkOption { type = types.int; default = 2; }; } ]).a;
    };
    # --- modules
    "imports, functions, _module.args, specialArgs" = {
      expect = { a = 6; };
      value = (lib.evalModules {
        specialArgs.base = 1;
        modules = [
          { imports = [ intOpt ({ base, two, ... }: { a = base + two + 3; }) ]; }
          { _module.args.two = 2; }
        ];
      }).config;
    };
    "module prefix in option locations" = {
      expect = [ "top" "a" ];
      value = (lib.evalModules { prefix = [ "top" ]; modules = [ intOpt ]; }).options.a.loc;
    };
    "config of a structured module with other attributes fails" = { expect = true; value = fails (cfgOf [ intOpt { config.a = 2; b = 1; } ]); };
    "options.X ? Y from declarations only" = {
      expect = [ true false ];
      value = let o = (eval [ { options.n.x = mkOption { }; } ]).options.n; in [ (o ? x) (o ? y) ];
    };
    "mkDerivedConfig keeps the priority" = {
      expect = { a = 3; b = 6; };
      value = cfgOf [
        intOpt
        { options.b = mkOption { type = types.int; default = 0; }; }
        { a = mkDefault 3; }
        ({ options, ... }: { b = lib.mkDerivedConfig options.a (x: x * 2); })
        { b = mkOverride 1100 100; }
      ];
    };
    # --- lib functions the modules use
    "strings" = {
      expect = {
        split = [ "a" "b" "" "c" ];
        ident = [ "web" "\"web-1.x\"" "\"1a\"" ];
        upper = "NIXOS_NSPAWN_CP";
        prefix = [ true false ];
        infix = true;
        shell = [ "'a b'" "abc" ];
        removed = [ "c" "ab" ];
      };
      value = {
        split = lib.splitString "." "a.b..c";
        ident = map lib.strings.escapeNixIdentifier [ "web" "web-1.x" "1a" ];
        upper = lib.toUpper "nixos_nspawn_cp";
        prefix = [ (lib.hasPrefix "nix/" "nix/tests") (lib.hasPrefix "nix/x" "nix") ];
        infix = lib.hasInfix "b c" "a b c d";
        shell = [ (lib.escapeShellArg "a b") (lib.escapeShellArg "abc") ];
        removed = [ (lib.removePrefix "ab" "abc") (lib.removeSuffix "c" "abc") ];
      };
    };
    "attrsets and lists" = {
      expect = {
        genAttrs = { a = "a!"; b = "b!"; };
        mapAttrs' = { xa = 1; };
        toList = [ "a=1" ];
        filter = { b = 2; };
        recursive = { a = { x = 1; y = 3; }; };
        lists = [ [ 1 2 ] [ 3 ] [ 1 ] 3 [ 2 1 ] ];
        findFirstIndex = [ 1 null 0 ];
      };
      value = {
        genAttrs = lib.genAttrs [ "a" "b" ] (n: "${n}!");
        mapAttrs' = lib.mapAttrs' (n: v: lib.nameValuePair "x${n}" v) { a = 1; };
        toList = lib.mapAttrsToList (n: v: "${n}=${toString v}") { a = 1; };
        filter = lib.filterAttrs (n: v: v > 1) { a = 1; b = 2; };
        recursive = lib.recursiveUpdate { a = { x = 1; y = 2; }; } { a.y = 3; };
        lists = [ (lib.optionals true [ 1 2 ]) (lib.subtractLists [ 1 2 ] [ 1 2 3 ]) (lib.unique [ 1 1 ]) (lib.last [ 1 2 3 ]) (lib.reverseList [ 1 2 ]) ];
        findFirstIndex = [ (lib.lists.findFirstIndex (x: x > 1) null [ 1 2 3 ]) (lib.lists.findFirstIndex (x: x > 5) null [ 1 2 ]) (lib.lists.findFirstIndex (x: x == 1) null [ 1 (throw "not reached") ]) ];
      };
    };
    "cleanSource drops VCS, backups, objects and result links" = {
      expect = [ false false false false true true false true ];
      value = map (x: lib.sources.cleanSourceFilter (lib.elemAt x 0) (lib.elemAt x 1)) [
        [ "/r/.git" "directory" ] [ "/r/a~" "regular" ] [ "/r/x.o" "regular" ] [ "/r/result" "symlink" ]
        [ "/r/result" "regular" ] [ "/r/src" "directory" ] [ "/r/s" "unknown" ] [ "/r/.gitignore" "regular" ]
      ];
    };
    "cleanSourceWith composes filters" = {
      expect = [ true false false ];
      value =
        let s = lib.cleanSourceWith { src = lib.cleanSource /r; filter = p: _: !(lib.hasSuffix ".md" p); }; in
        [ (s.filter "/r/a.rs" "regular") (s.filter "/r/a.md" "regular") (s.filter "/r/.git" "directory") ];
    };
  };
in
{
  names = builtins.attrNames probes;
  results = lib.mapAttrs
    (_: p:
      let r = builtins.tryEval (builtins.deepSeq p.value p.value); in
      {
        inherit (p) expect;
        value = if r.success then r.value else { evaluationFailed = true; };
        ok = r.success && r.value == p.expect;
      })
    probes;
}
