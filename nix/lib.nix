# The flake's `lib` output.
#
#   mkContainer { nixpkgs, name, system, modules ? [ ], specialArgs ? { } }
#     The NixOS system (toplevel derivation) of an imperative container, for
#     `nixos-nspawn create --flake REF#ATTR` (which builds
#     nixosContainers.<system>.<ATTR>). `nixpkgs` is a nixpkgs flake input or a
#     path to a nixpkgs checkout. The result also carries `config` and `options`
#     of the evaluation, for `nix repl`.
#
#   registry
#     nix/lib/registry-entry.nix: option values -> registry entries (schema v1).
#
let
  registry = import ./lib/registry-entry.nix;
  containerModule = ./modules/container.nix;

  evalContainer =
    { nixpkgs, name, system, modules ? [ ], specialArgs ? { } }:
    let
      nameModule = { nixosContainer.name = name; };
      args = {
        inherit system specialArgs;
        modules = [ containerModule nameModule ] ++ modules;
      };
    in
    if nixpkgs ? lib && nixpkgs.lib ? nixosSystem
    then nixpkgs.lib.nixosSystem args
    # toString: a nixpkgs checkout given as a path is not copied into the store.
    else import "${toString nixpkgs}/nixos/lib/eval-config.nix" args;

  mkContainer = args:
    let
      evaluated = evalContainer args;
      toplevel = evaluated.config.system.build.toplevel;
    in
    toplevel // {
      inherit (evaluated) config options;
      inherit (evaluated.config) nixosContainer;
    };
in
{
  inherit registry evalContainer mkContainer containerModule;
}
