# What a NixOS VM test's node has beyond a NixOS system, for vm-tests-eval.nix:
# the NixOS options themselves come from the stand-in nixpkgs (fake-nixpkgs/,
# shaped like nixpkgs 25.11); here are only
#
#  - `qemuVm`: the options of nixpkgs' nixos/modules/virtualisation/qemu-vm.nix
#    (and disk-size-option.nix) that the tests set, which nixpkgs' test framework
#    imports into every node, and its networking.primaryIPAddress
#    (nixos/lib/testing/network.nix), with nixpkgs' names, types and defaults;
#  - `check`: the root option `_vmCheck`, added to every NixOS configuration the
#    checks evaluate (nodes, specialisations, containers). Evaluating it forces
#    the value of every option that has a definition (beyond its default; the
#    system's toplevel among them, which fails on failed assertions as NixOS's
#    does), which is where the module
#    system reports conflicts and type errors, and gives the failed assertions.
#    The same option is added to the elements of the stand-in's attrsOf/listOf
#    submodule options the tests define (by declaring those options a second
#    time with a submodule the module system merges into the stand-in's), so
#    forcing reaches the values inside them too.
#
# Written from the nixpkgs declarations, not copied.
{ lib }:
let
  inherit (lib) mkOption types;

  fakePath = name: "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";

  # ---- checking: force what is defined ---------------------------------------

  # Forcing the value of an option of type `t`, where module-system errors
  # (conflicts, type errors) surface: through lists, attribute sets and
  # nullOr down to the leaves (their merge checks each element when it is
  # forced); a submodule that carries _vmCheck forces what is defined in it (a
  # full deepSeq would demand options nobody defined, which nixpkgs never
  # evaluates either); opaque values (packages, modules, functions,
  # `unspecified` like specialArgs) only to weak head normal form.
  count = f: xs: builtins.foldl' (n: x: builtins.seq (f x) (n + 1)) 0 xs;
  force = t: v:
    let name = t.name or ""; elem = t.nestedTypes.elemType or null; in
    if builtins.isAttrs v && v ? _vmCheck then builtins.seq v._vmCheck 1
    else if name == "submodule" then builtins.seq (builtins.attrNames v) 1
    else if builtins.elem name [ "attrsOf" "lazyAttrsOf" ] && elem != null then count (force elem) (builtins.attrValues v)
    else if name == "listOf" && elem != null then count (force elem) v
    else if name == "nullOr" && elem != null then (if v == null then 1 else force elem v)
    else if builtins.elem name [ "str" "int" "bool" "enum" "lines" "port" "strMatching" "either" "oneOf" "separatedString" "singleLineStr" ]
      || lib.hasPrefix "ints." name || lib.hasPrefix "signedInt" name || lib.hasPrefix "unsignedInt" name
      || lib.hasPrefix "intBetween" name || name == "positiveInt" || name == "systemd option"
    then builtins.deepSeq v 1
    else builtins.seq v 1;

  # Options with a definition other than their default (a default alone is
  # not forced: nixpkgs has defaults that throw when read, such as
  # networking.fqdn without a domain, which NixOS only reads when asked for).
  definedOptions = options:
    # (highestPrio first: it does not evaluate the definitions' values)
    builtins.filter (o: (o.highestPrio or 9999) < 1500 && (o.definitionsWithLocations or [ ]) != [ ])
      (lib.collect lib.isOption (removeAttrs options [ "_module" "_vmCheck" ]));

  checkOption = { options, config, ... }: {
    options._vmCheck = mkOption {
      internal = true;
      readOnly = true;
      description = "Forces every defined option (vm-stubs.nix); for the checks only.";
      default =
        let
          defined = definedOptions options;
          forced = count (o: force o.type o.value) defined;
        in
        builtins.seq forced {
          options = forced;
          failedAssertions = map (a: a.message)
            (builtins.filter (a: !a.assertion) (config.assertions or [ ]));
        };
    };
  };

  # The stand-in's submodule options whose elements get _vmCheck too (path ->
  # how the option is shaped), and below them their own such options.
  attrsOfChecked = extra: mkOption { type = types.attrsOf (types.submodule [ checkOption extra ]); };
  listOfChecked = mkOption { type = types.listOf (types.submodule checkOption); };
  submoduleChecked = mkOption { type = types.submodule checkOption; };
  checkedSubmodules = {
    options = {
      systemd.services = attrsOfChecked { };
      systemd.sockets = attrsOfChecked { };
      systemd.targets = attrsOfChecked { };
      systemd.paths = attrsOfChecked { };
      systemd.nspawn = attrsOfChecked { };
      systemd.network.config = submoduleChecked;
      systemd.network.links = attrsOfChecked { };
      systemd.network.netdevs = attrsOfChecked { };
      systemd.network.networks = attrsOfChecked { };
      environment.etc = attrsOfChecked { };
      networking.firewall.interfaces = attrsOfChecked { };
      # (the firewall copies the values of `interfaces` here)
      networking.firewall.allInterfaces = attrsOfChecked { };
      networking.nftables.tables = attrsOfChecked { };
      services.nginx.virtualHosts = attrsOfChecked { options.locations = attrsOfChecked { }; };
      services.dnsmasq.settings = submoduleChecked;
      specialisation = attrsOfChecked { };
      # classic containers: their configuration is a whole NixOS system, checked as well
      containers = attrsOfChecked {
        options.bindMounts = attrsOfChecked { };
        options.forwardPorts = listOfChecked;
        config.config = check;
      };
    };
  };

  # Added to every NixOS configuration the checks evaluate.
  check = { imports = [ checkOption checkedSubmodules ]; };

  # ---- the test framework's node options ----------------------------------------

  # nixos/modules/virtualisation/qemu-vm.nix, disk-size-option.nix;
  # nixos/lib/testing/network.nix (primaryIPAddress).
  qemuVm = { config, ... }: {
    options.virtualisation = {
      memorySize = mkOption { type = types.ints.positive; default = 1024; description = "The VM's memory in MiB."; };
      cores = mkOption { type = types.ints.positive; default = 1; description = "The VM's vCPUs."; };
      msize = mkOption { type = types.ints.positive; default = 16384; description = "9p msize."; };
      diskSizeAutoSupported = mkOption { type = types.bool; default = true; internal = true; description = "Whether diskSize may be \"auto\"."; };
      diskSize = mkOption {
        type = types.either (types.enum [ "auto" ]) types.ints.positive;
        default = if config.virtualisation.diskSizeAutoSupported then "auto" else 1024;
        description = "The VM's disk size in MiB.";
      };
      emptyDiskImages = mkOption { type = types.listOf types.ints.positive; default = [ ]; description = "Sizes of extra empty disks."; };
      additionalPaths = mkOption { type = types.listOf types.path; default = [ ]; description = "Paths added to the VM's store."; };
      vlans = mkOption { type = types.listOf types.ints.unsigned; default = [ 1 ]; description = "VLANs the VM is connected to."; };
      graphics = mkOption { type = types.bool; default = true; description = "Whether the VM has a display."; };
      writableStore = mkOption { type = types.bool; default = true; description = "Whether the VM's store is writable."; };
      useNixStoreImage = mkOption { type = types.bool; default = false; description = "Whether the store is an image."; };
      qemu.options = mkOption { type = types.listOf types.str; default = [ ]; description = "Extra QEMU options."; };
    };
    options.networking.primaryIPAddress = mkOption { type = types.str; default = ""; internal = true; description = "The node's address on the first VLAN."; };
    config = {
      # qemu-vm.nix: its disk image has a fixed size; the root file system and
      # the boot loader's disk are the VM's (at mkVMOverride, priority 10)
      virtualisation.diskSizeAutoSupported = false;
      fileSystems."/" = lib.mkOverride 10 { device = "/dev/vda"; fsType = "ext4"; };
      boot.loader.grub.devices = lib.mkOverride 10 [ "/dev/vda" ];
    };
  };
in
{
  inherit fakePath check qemuVm;
}
