# Builds an imperative container's system from a plain configuration file, for
# `nixos-nspawn create/update NAME --config FILE`. The package installs this
# directory as $out/share/nixos-nspawn/nix, so the CLI runs e.g.
#
#   nix-build $out/share/nixos-nspawn/nix/eval-container.nix \
#     --argstr name web --argstr configuration /abs/path/configuration.nix \
#     [--arg nixpkgs /path/to/nixpkgs] [--argstr system x86_64-linux]
#
# The result is the toplevel of a NixOS system built with the container profile
# (nix/modules/container.nix); it contains nixos-nspawn/entry.json, the registry
# entry the configuration's nixosContainer.* options describe.
{ name
, configuration
, nixpkgs ? <nixpkgs>
, system ? builtins.currentSystem
}:
(import ./lib.nix).mkContainer {
  inherit nixpkgs name system;
  modules = [ configuration ];
}
