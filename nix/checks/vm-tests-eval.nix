# Instantiates the VM tests of nix/tests/ with stand-ins for pkgs and the flake
# (runNixOSTest returns its argument): checks that every test has a name, nodes
# and a test script whose interpolations resolve. The nodes are NixOS modules and
# are not evaluated here (that needs nixpkgs; `nix flake check` runs the tests).
{ nixpkgsLib }:
let
  lib = import nixpkgsLib;
  fakePath = name: "/nix/store/44444444444444444444444444444444-${name}";
  pkgs = {
    inherit lib;
    testers.runNixOSTest = test: test;
    stdenv.hostPlatform.system = "x86_64-linux";
    writeTextDir = name: _text: fakePath name;
    curl = fakePath "curl";
    iputils = fakePath "iputils";
    iproute2 = fakePath "iproute2";
    jq = fakePath "jq";
  };
  self = {
    nixosModules.hypervisor = ../modules/hypervisor.nix;
    packages.x86_64-linux.default = fakePath "nixos-nspawn";
    lib.mkContainer = { name, system, nixpkgs, modules }:
      assert builtins.isList modules && system == "x86_64-linux";
      fakePath "nixos-system-${name}-${builtins.hashString "sha256" (builtins.toJSON (map (m: builtins.attrNames m) modules))}";
  };
  nixpkgs = { inherit lib; outPath = "/nonexistent/nixpkgs"; };
  tests = import ../tests { inherit pkgs self nixpkgs; };
in
lib.mapAttrs
  (_: t: {
    inherit (t) name;
    nodes = builtins.attrNames t.nodes;
    script = builtins.isString t.testScript && builtins.stringLength t.testScript > 200;
    testScript = t.testScript;
  })
  tests
