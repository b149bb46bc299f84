# minilib: a small, self-contained implementation of the parts of nixpkgs' `lib`
# that nixos-nspawn's NixOS modules and their checks use, above all the module
# system (evalModules, option types, mkIf/mkMerge/mkOverride/mkOrder), so the
# module checks run where nixpkgs is not available (CI without network).
#
#   import ./nix/checks/minilib      # like `import <nixpkgs/lib>`
#
# It is written for these checks; nix/checks/run evaluates every check with it
# and, when NIXPKGS_LIB points at nixpkgs' lib/, with nixpkgs' lib as well, and
# the two must agree. See README.md for what it covers and what it does not.
let
  lib = (import ./trivial.nix lib)
    // (import ./lists.nix lib)
    // (import ./strings.nix lib)
    // (import ./attrsets.nix lib)
    // (import ./options.nix lib)
    // modulesFns
    // sources
    // misc.asserts
    // {
      inherit (lib.types) mkOptionType isType isOptionType;
      trivial = import ./trivial.nix lib;
      lists = import ./lists.nix lib;
      strings = import ./strings.nix lib;
      attrsets = import ./attrsets.nix lib;
      options = import ./options.nix lib;
      modules = modulesFns;
      types = import ./types.nix lib;
      inherit sources;
      inherit (misc) asserts licenses platforms systems generators;
      fixedPoints = { inherit (lib) fix extends composeExtensions composeManyExtensions; };
      isMinilib = true;
    };
  modulesFns = import ./modules.nix lib;
  sources = import ./sources.nix lib;
  misc = import ./misc.nix lib;
in
lib
