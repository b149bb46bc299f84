# The `lib` of the stand-in nixpkgs: the library under test. nix/checks/run sets
# NIXOS_NSPAWN_CHECK_LIB to nixpkgs' lib/ (NIXPKGS_LIB) or to nix/checks/minilib;
# unset (and in pure evaluation, e.g. the flake's checks) it is the minilib.
let chosen = builtins.getEnv "NIXOS_NSPAWN_CHECK_LIB"; in
import (if chosen != "" then /. + chosen else ../../minilib)
