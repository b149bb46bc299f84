# Shared by the module checks (module-eval.nix, module-matrix.nix,
# module-errors.nix): the library under test and evaluations of the host module
# and the container profile through the stand-in nixpkgs (fake-nixpkgs/: its
# nixos/lib/eval-config.nix with stand-ins of the NixOS modules that declare the
# options nixos-nspawn reads and sets, as nixpkgs 25.11 declares them).
#
# nixpkgsLib: nixpkgs' lib/ directory, or null for the one fake-nixpkgs/lib
# selects (NIXOS_NSPAWN_CHECK_LIB, else nix/checks/minilib). Containers are always
# evaluated with the latter (they import the stand-in nixpkgs' eval-config.nix,
# as the host module imports nixpkgs'), so nix/checks/run sets both to one lib.
{ nixpkgsLib ? null }:
let
  lib = if nixpkgsLib == null then import ./fake-nixpkgs/lib else import nixpkgsLib;
  inherit (lib) filter hasPrefix removePrefix nameValuePair;
in
rec {
  inherit lib;
  fakeNixpkgs = ./fake-nixpkgs;
  evalConfigDir = toString ./fake-nixpkgs/nixos/lib;
  evalConfig = import ./fake-nixpkgs/nixos/lib/eval-config.nix;

  sys = n: "/nix/store/11111111111111111111111111111111-nixos-system-${n}-25.05";

  # A host as hardware-configuration.nix and configuration.nix would give it.
  hostBase = {
    nixpkgs.hostPlatform = "x86_64-linux";
    system.stateVersion = "25.05";
    fileSystems."/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };
    boot.loader.grub.devices = [ "/dev/vda" ];
  };
  networkdHost = { networking.useNetworkd = true; };

  evalHostWith = modules: evalConfig {
    system = null;
    inherit lib;
    modules = [ ../modules/hypervisor.nix hostBase ] ++ modules;
  };
  evalHost = modules: (evalHostWith modules).config;

  # An imperative container, as lib.mkContainer builds it for the CLI.
  mkContainer = args: (import ../lib.nix).mkContainer ({
    nixpkgs = fakeNixpkgs;
    system = "x86_64-linux";
  } // args);

  # The same evaluation without building it (its config, also with failed assertions).
  evalContainer = args: (import ../lib.nix).evalContainer ({
    nixpkgs = fakeNixpkgs;
    system = "x86_64-linux";
  } // args);

  # The container profile alone, without a name (lib.mkContainer always names it).
  evalUnnamed = modules: (evalConfig {
    system = "x86_64-linux";
    modules = [ ../modules/container.nix ] ++ modules;
  }).config;

  failed = cfg: map (a: a.message) (filter (a: !a.assertion) cfg.assertions);
  etcUnder = cfg: dir:
    lib.mapAttrs' (n: v: nameValuePair (lib.removeSuffix ".json" (removePrefix "${dir}/" n)) (builtins.fromJSON v.text))
      (lib.filterAttrs (n: _: hasPrefix "${dir}/" n && lib.hasSuffix ".json" n) cfg.environment.etc);
  containersOf = cfg: etcUnder cfg "nixos-nspawn/containers";
  zonesOf = cfg: etcUnder cfg "nixos-nspawn/zones";

  # Forces the host's system: the stand-in top-level depends on every /etc file
  # (registry entries, so every container's system), unit and package, and
  # fails on failed assertions, as NixOS's does.
  toplevelOf = cfg: cfg.system.build.toplevel.outPath;

  # The scripts of a configuration's system.checks (the fake runCommand keeps
  # them as buildCommand, as nixpkgs' does), with `package`'s bin/ replaced by
  # $NIXOS_NSPAWN_CHECK_BIN: nix/checks/run runs them with the cargo-built CLI.
  checkScriptsOf = package: cfg: map
    (d: builtins.replaceStrings [ "${package}/bin/" ] [ "$NIXOS_NSPAWN_CHECK_BIN/" ] d.buildCommand)
    cfg.system.checks;
  hostChecks = cfg: checkScriptsOf cfg.nixos.containers.package cfg;

  test = name: ok: detail: { inherit name ok; detail = if ok then "" else detail; };
  show = builtins.toJSON;
  # A check that an evaluation succeeds, with the error's text when it does not
  # (only errors raised with `throw`/`assert` can be caught here; nix/checks/run
  # evaluates what can also end in infinite recursion in its own process).
  evaluates = name: value:
    let r = builtins.tryEval (builtins.deepSeq value value); in
    test name r.success "the evaluation failed (run the expression with nix-instantiate to see the error)";
}
