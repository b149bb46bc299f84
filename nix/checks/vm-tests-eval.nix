# The VM tests of nix/tests/ as nixpkgs' test framework would take them, with
# nixpkgs' lib alone (no nixpkgs, no NixOS, no build):
#
#   nix-instantiate --eval --strict --json nix/checks/vm-tests-eval.nix \
#     --arg nixpkgsLib /path/to/nixpkgs/lib -A tests          # all, without nodes
#   ... -A nodes.vm-activation                                # one test's nodes
#
# `pkgs.testers.runNixOSTest` is a stand-in that evaluates the test module
# against the test-level options of nixpkgs' nixos/lib/testing/ (an unknown
# attribute is an error, as there) and then every node the way the framework
# does (the node's module, `defaults`, the framework's own node settings, with
# `nodes` as an argument) against the option declarations of stubs.nix and
# vm-stubs.nix, which are shaped like nixpkgs': a conflict, a type error or a
# misspelt option fails here as it would fail `nix flake check`. Every
# specialisation is evaluated too, and every container configuration the host
# module evaluates (through vm-nixpkgs/, with container-stubs.nix +
# vm-stubs.nix).
#
#   tests.<test> = { name; nodes = [ names ]; testScript; lintBuiltins; }
#     lintBuiltins: the names nixpkgs' driver gives pyflakes (PYFLAKES_BUILTINS):
#     the machine names, pythonized as nixpkgs' driver.nix does, "machine" when
#     there is exactly one, and the driver's test_symbols() (driverSymbols).
#   nodes.<test>.<node> = { forced; failedAssertions; containers; specialisations; }
#
# testsDir (default ../tests) is there to check another copy of the tests.
{ nixpkgsLib, testsDir ? ../tests }:
let
  lib = import nixpkgsLib;
  inherit (lib) mkOption types;
  vmStubs = import ./vm-stubs.nix { inherit lib; };
  inherit (vmStubs) fakePath;
  vmNixpkgs = toString ./vm-nixpkgs;

  # The symbols of nixpkgs' test driver (nixos/lib/test-driver/src/test_driver/
  # driver.py, Driver.test_symbols(), as generate-driver-symbols writes them for
  # pyflakes).
  driverSymbols = [
    "start_all" "test_script" "machines" "machines_qemu" "machines_nspawn" "vlans" "driver" "log" "os"
    "create_machine" "subtest" "run_tests" "join_all" "retry" "serial_stdout_off" "serial_stdout_on"
    "polling_condition" "BaseMachine" "QemuMachine" "NspawnMachine" "t" "debug" "dump_machine_ssh"
  ];

  # nixos/lib/testing/driver.nix: pythonizeName
  pythonizeName = name:
    let
      head = lib.substring 0 1 name;
      tail = lib.substring 1 (-1) name;
    in
    (if builtins.match "[A-z_]" head == null then "_" else head)
    + lib.stringAsChars (c: if builtins.match "[A-z0-9_]" c == null then "_" else c) tail;

  # The host module's stand-ins, then ours for what VM nodes set on top.
  hostBase = [ ./stubs.nix ];
  basePkgs = (lib.evalModules { modules = hostBase; })._module.args.pkgs;

  pkgs = vmStubs.extendPkgs basePkgs // {
    path = vmNixpkgs;
    testers.runNixOSTest = runNixOSTest;
  };

  self = {
    nixosModules.hypervisor = ../modules/hypervisor.nix;
    packages.x86_64-linux.default = fakePath "nixos-nspawn";
    lib.mkContainer = { name, system, nixpkgs, modules }:
      assert builtins.isList modules && system == "x86_64-linux";
      fakePath "nixos-system-${name}-${builtins.hashString "sha256" (builtins.toJSON (map (m: builtins.attrNames m) modules))}";
  };
  nixpkgs = { inherit lib; outPath = vmNixpkgs; };

  # Test-level options (nixos/lib/testing/*.nix) the tests may set.
  testOptions = {
    options = {
      name = mkOption { type = types.str; description = "Test name."; };
      nodes = mkOption { type = types.lazyAttrsOf types.deferredModule; default = { }; description = "Nodes."; };
      containers = mkOption { type = types.lazyAttrsOf types.deferredModule; default = { }; description = "nspawn nodes."; };
      defaults = mkOption { type = types.deferredModule; default = { }; description = "Modules for every node."; };
      extraBaseModules = mkOption { type = types.deferredModule; default = { }; description = "Base modules."; };
      testScript = mkOption { type = types.either types.str (types.functionTo types.str); description = "The Python test script."; };
      globalTimeout = mkOption { type = types.int; default = 3600; description = "Seconds."; };
      enableOCR = mkOption { type = types.bool; default = false; description = "OCR."; };
      skipLint = mkOption { type = types.bool; default = false; description = "Skip pyflakes."; };
      skipTypeCheck = mkOption { type = types.bool; default = false; description = "Skip mypy."; };
      extraPythonPackages = mkOption { type = types.functionTo (types.listOf types.package); default = _: [ ]; description = "Python packages."; };
      meta = mkOption { type = types.lazyAttrsOf types.raw; default = { }; description = "Meta."; };
      passthru = mkOption { type = types.lazyAttrsOf types.raw; default = { }; description = "Passthru."; };
      interactive = mkOption { type = types.deferredModule; default = { }; description = "Interactive overrides."; };
    };
  };

  # Each node as the framework evaluates it: nodes.nix gives it its name as
  # host name and `nodes` as an argument; network.nix numbers the nodes in name
  # order on VLAN 1 (192.168.1.N).
  evalNodes = test:
    let
      names = builtins.attrNames test.nodes;
      index = name: lib.lists.findFirstIndex (n: n == name) null names;
      frameworkModule = name: { lib, ... }: {
        networking.hostName = lib.mkDefault name;
        networking.primaryIPAddress = lib.mkDefault "192.168.1.${toString (index name + 1)}";
      };
      # Containers of the host module are evaluated through vm-nixpkgs/.
      instanceStandIns = {
        options.nixos.containers.instances = mkOption {
          type = types.attrsOf (types.submodule {
            config = {
              nixpkgs = lib.mkDefault vmNixpkgs;
              specialArgs.checkLib = lib;
            };
          });
        };
      };
      evaluated = lib.mapAttrs
        (name: module: lib.evalModules {
          modules = vmStubs.host hostBase ++ [
            { _module.args.pkgs = lib.mkForce pkgs; _module.args.nodes = configs; }
            instanceStandIns
            (frameworkModule name)
            test.defaults
            module
          ];
        })
        test.nodes;
      configs = lib.mapAttrs (_: e: e.config) evaluated;
      # What lint-vm-scripts checks the test script against: the oneshot
      # services without RemainAfterExit, the shell scripts of services, ...
      services = where: cfg: lib.mapAttrsToList
        (name: sv: {
          inherit where name;
          oneshot = (sv.serviceConfig.Type or null) == "oneshot";
          remainAfterExit = builtins.elem (sv.serviceConfig.RemainAfterExit or false) [ true "yes" "true" ];
          script = sv.script or "";
        })
        (cfg.systemd.services or { });
      containerConfigs = cfg: lib.filterAttrs (_: c: c != null)
        (lib.mapAttrs (_: c: c.config) (cfg.nixos.containers.evaluated or { }));
      facts = cfg: {
        cores = cfg.virtualisation.cores;
        memorySize = cfg.virtualisation.memorySize;
        instances = lib.mapAttrs (_: i: { inherit (i) autoStart; }) (cfg.nixos.containers.instances or { });
        services = services "node" cfg
          ++ lib.concatLists (lib.mapAttrsToList (n: c: services "container ${n}" c) (containerConfigs cfg));
        tmpfiles = cfg.systemd.tmpfiles.rules;
        classicContainers = lib.mapAttrs
          (_: c: { inherit (c) autoStart; bindSources = lib.filter (p: p != null) (lib.mapAttrsToList (_: b: b.hostPath) c.bindMounts); })
          (cfg.containers or { });
      };
      report = cfg: {
        inherit (cfg._vmCheck) failedAssertions;
        forced = cfg._vmCheck.options;
        facts = facts cfg;
        containers = lib.mapAttrs
          (_: c: if c.config == null then null else {
            inherit (c.config._vmCheck) failedAssertions;
            forced = c.config._vmCheck.options;
            entry = c.entry;
          })
          (cfg.nixos.containers.evaluated or { });
      };
    in
    {
      inherit configs;
      reports = lib.mapAttrs
        (_: e: report e.config // {
          specialisations = lib.mapAttrs (_: s: report s.configuration) (e.config.specialisation or { });
        })
        evaluated;
    };

  runNixOSTest = module:
    let
      cfg = (lib.evalModules { modules = [ testOptions module ]; }).config;
      names = builtins.attrNames cfg.nodes;
      nodes = evalNodes cfg;
    in
    {
      inherit (cfg) name skipLint skipTypeCheck;
      nodes = names;
      testScript =
        if lib.isFunction cfg.testScript
        then cfg.testScript { nodes = nodes.configs; }
        else cfg.testScript;
      lintBuiltins = map pythonizeName names
        ++ lib.optional (builtins.length names == 1 && !(builtins.elem "machine" names)) "machine"
        ++ driverSymbols;
      evalNodes = nodes.reports;
    };

  tests = import testsDir { inherit pkgs self nixpkgs; };
in
{
  inherit driverSymbols;
  tests = lib.mapAttrs (_: t: { inherit (t) name nodes testScript lintBuiltins skipLint skipTypeCheck; }) tests;
  nodes = lib.mapAttrs (_: t: t.evalNodes) tests;
}
