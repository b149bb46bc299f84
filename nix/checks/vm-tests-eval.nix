# The VM tests of nix/tests/ as nixpkgs' test framework would take them, with
# the lib under test (nixpkgsLib: nix/checks/minilib or nixpkgs' lib/) and the
# stand-in nixpkgs (fake-nixpkgs/; no nixpkgs, no NixOS, no build):
#
#   NIXOS_NSPAWN_CHECK_LIB=/path/to/lib nix-instantiate --eval --strict --json \
#     nix/checks/vm-tests-eval.nix --arg nixpkgsLib /path/to/lib -A tests   # all, without nodes
#   ... -A nodes.vm-activation                                              # one test's nodes
#
# (The containers are evaluated by the stand-in nixpkgs' eval-config.nix, as the
# host module imports nixpkgs'; it takes the lib NIXOS_NSPAWN_CHECK_LIB names,
# else the minilib, so give both the same lib, as nix/checks/run does.)
#
# `pkgs` is the stand-in package set, and `pkgs.testers.runNixOSTest` a stand-in
# that evaluates the test module against the test-level options of nixpkgs'
# nixos/lib/testing/ (an unknown attribute is an error, as there) and then every
# node the way the framework does (the node's module, `defaults`, the
# framework's own node settings and qemu-vm's options, with `nodes` as an
# argument and the test's pkgs as nixpkgs.pkgs) through the stand-in nixpkgs'
# eval-config.nix, whose option declarations are shaped like nixpkgs 25.11's:
# a conflict, a type error or a misspelt option fails here as it would fail
# `nix flake check`. Every specialisation is evaluated too, every container
# configuration the host module evaluates, every classic container, and the
# imperative containers' systems (the flake's real lib.mkContainer).
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
  fakeNixpkgs = toString ./fake-nixpkgs;
  evalConfig = import ./fake-nixpkgs/nixos/lib/eval-config.nix;

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

  # The test's package set: the stand-in nixpkgs' (its lib is the one
  # NIXOS_NSPAWN_CHECK_LIB names), with the test framework.
  pkgs = import ./fake-nixpkgs { localSystem.system = "x86_64-linux"; } // {
    testers.runNixOSTest = runNixOSTest;
  };

  # The flake's outputs the tests use: its module and its lib (mkContainer
  # evaluates the imperative containers' systems through the stand-in nixpkgs).
  self = {
    nixosModules.hypervisor = ../modules/hypervisor.nix;
    packages.x86_64-linux.default = fakePath "nixos-nspawn";
    lib = import ../lib.nix;
  };
  # A nixpkgs flake input without nixosSystem: lib.mkContainer imports its
  # nixos/lib/eval-config.nix.
  nixpkgs = { inherit lib; outPath = fakeNixpkgs; };

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
      # nixos/lib/testing/nodes.nix, network.nix: the test's pkgs, the host name,
      # the address, `nodes`.
      frameworkModule = name: { lib, ... }: {
        nixpkgs.pkgs = pkgs;
        networking.hostName = lib.mkDefault name;
        networking.primaryIPAddress = lib.mkDefault "192.168.1.${toString (index name + 1)}";
        _module.args.nodes = configs;
      };
      # The host module's containers get the checks' _vmCheck as well (their
      # `config` is a deferred module: this definition is merged into it).
      checkedInstances = {
        options.nixos.containers.instances = mkOption {
          type = types.attrsOf (types.submodule { config.config = vmStubs.check; });
        };
      };
      # (only on nodes that import the host module: declaring the option
      # elsewhere would make it exist there)
      evaluated = lib.mapAttrs
        (name: module:
          let
            node = evalConfig {
              system = null;
              inherit lib;
              modules = [
                vmStubs.check
                vmStubs.qemuVm
                (frameworkModule name)
                test.defaults
                module
              ];
            };
          in
          if node.options ? nixos && node.options.nixos ? containers
          then node.extendModules { modules = [ checkedInstances ]; }
          else node)
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
