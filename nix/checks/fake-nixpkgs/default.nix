# A stand-in for nixpkgs' package set (`import <nixpkgs> { ... }`), for evaluating
# NixOS modules without nixpkgs: what the modules under test and the stand-in
# NixOS modules use, with the same names and argument conventions. Packages are
# fake derivations ({ type = "derivation"; name; outPath; }) whose store paths
# are hashes of what they were made from, so a change shows as a new path.
# Overlays, `config` and `appendOverlays` behave as in nixpkgs, so it can be
# checked which package set a configuration ends up with.
{ config ? { }
, overlays ? [ ]
, localSystem ? { system = builtins.currentSystem or "x86_64-linux"; }
, crossSystem ? null
, system ? null
}:
let
  lib = import ./lib;
  inherit (builtins) hashString substring toJSON isFunction;

  hostPlatform = lib.systems.elaborate (if system != null then { inherit system; } else localSystem);

  fakeDrv = name: seed: {
    type = "derivation";
    inherit name;
    outPath = "${builtins.storeDir}/${substring 0 32 (hashString "sha256" "${name}\n${seed}")}-${name}";
    drvPath = "${builtins.storeDir}/${substring 0 32 (hashString "sha256" "drv:${name}\n${seed}")}-${name}.drv";
    outputs = [ "out" ];
  };
  package = pname: fakeDrv "${pname}-1.0" pname // { inherit pname; version = "1.0"; meta.mainProgram = pname; };

  nixpkgsConfig = {
    allowUnfree = false;
    allowBroken = false;
  } // (if isFunction config then config { inherit lib; pkgs = { }; } else config);

  base = self: {
    _type = "pkgs";
    inherit lib;
    # A path value, as in nixpkgs: interpolating it ("${pkgs.path}") copies it to
    # the store; toString does not.
    path = ./.;
    config = nixpkgsConfig;
    stdenv = { inherit hostPlatform; buildPlatform = hostPlatform; targetPlatform = hostPlatform; };
    buildPackages = self;

    callPackage = fn: args:
      let f = if isFunction fn then fn else import fn; in
      f (builtins.intersectAttrs (lib.trivial.functionArgs f) self // args);

    writeText = name: text: fakeDrv name text;
    writeTextFile = { name, text, executable ? false, destination ? "", ... }: fakeDrv name "${text}${destination}";
    writeScript = name: text: fakeDrv name text;
    writeShellScript = name: text: fakeDrv name text;
    writeTextDir = path: text: fakeDrv (baseNameOf path) "${path}\n${text}";
    # With its script as `buildCommand`, as nixpkgs' runCommand derivations have
    # it: nix/checks/run runs the scripts of system.checks with the cargo-built CLI.
    runCommand = name: env: script: fakeDrv name "${toJSON (builtins.attrNames env)}\n${script}" // { buildCommand = script; };
    runCommandLocal = self.runCommand;
    symlinkJoin = { name, paths, ... }: fakeDrv name (toJSON (map toString paths));
    # nixpkgs' closureInfo { rootPaths }: $out/store-paths lists the closure.
    closureInfo = { rootPaths }: fakeDrv "closure-info" (toJSON (map toString rootPaths));

    # buildRustPackage keeps its arguments, so checks can look at src and flags.
    rustPlatform.buildRustPackage = attrs:
      fakeDrv "${attrs.pname}-${attrs.version}" (toJSON (builtins.attrNames attrs))
      // { inherit (attrs) pname version; passthru = attrs; meta = attrs.meta or { }; };

    # The shell of scripts that run on the built system (bash, as in nixpkgs).
    runtimeShell = "${self.bash}/bin/bash";
    runtimeShellPackage = self.bash;

    systemd = package "systemd";
    bash = package "bash";
    busybox = package "busybox";
    curl = package "curl";
    dnsutils = package "dnsutils";
    gnugrep = package "gnugrep";
    iputils = package "iputils";
    nginx = package "nginx";
    dnsmasq = package "dnsmasq";
    nix = package "nix";
    coreutils = package "coreutils";
    iptables = package "iptables";
    nftables = package "nftables";
    nixos-firewall-tool = package "nixos-firewall-tool";
    iproute2 = package "iproute2";
    jq = package "jq";
    hello = package "hello";

    appendOverlays = extra: if extra == [ ] then self else mkPkgs (overlays ++ extra);
    extend = overlay: self.appendOverlays [ overlay ];
  };

  mkPkgs = ovs: lib.fix (builtins.foldl' (acc: ov: lib.extends ov acc) base ovs);
in
assert crossSystem == null || crossSystem == localSystem;
mkPkgs overlays
