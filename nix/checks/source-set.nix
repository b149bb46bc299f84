# The files nix/package.nix builds from: its `src` filter (lib.cleanSourceWith,
# evaluated with the lib under test) applied to the repository as builtins.path
# applies it (a directory the filter refuses is not entered), without copying
# anything into the store. nix/checks/run copies exactly these files to a
# directory of its own and builds the workspace's tests there, so a file the
# tests read that the package leaves out fails the check, not the Nix build.
#
#   nix-instantiate --eval --strict --json nix/checks/source-set.nix
{ nixpkgsLib ? null }:
let
  lib = if nixpkgsLib == null then import ./fake-nixpkgs/lib else import nixpkgsLib;
  package = import ../package.nix {
    inherit lib;
    rustPlatform.buildRustPackage = attrs: attrs;
  };
  src = package.src;
  root = toString src.origSrc;
  walk = dir: lib.concatLists (lib.mapAttrsToList
    (name: type:
      let path = "${dir}/${name}"; in
      if !(src.filter path type) then [ ]
      else if type == "directory" then walk path
      else [ (lib.removePrefix "${root}/" path) ])
    (builtins.readDir dir));
in
{
  inherit root;
  files = walk root;
  inherit (package) cargoBuildFlags cargoTestFlags;
  license = package.meta.license.spdxId;
}
