# Stand-ins, shaped like current nixpkgs (25.11 / unstable), for the NixOS options
# the VM tests' nodes set beyond what the host module needs (stubs.nix,
# container-stubs.nix): qemu-vm's virtualisation.*, specialisation, the classic
# containers module, nginx, dnsmasq, systemd units, ... Each has the name, type
# and default (including defaults computed from other options) of its nixpkgs
# declaration, so a definition nixpkgs would reject (two values at one priority
# for an int, a string where a bool goes, an option that does not exist) is
# rejected here too. Written from the nixpkgs declarations, not copied.
#
# Only options that stubs.nix / container-stubs.nix do not declare are added
# (`extend` below), so the two sets never declare one option twice.
#
# `check` is the root option `_vmCheck` (also added to every submodule declared
# here): evaluating it forces the value of every option that has a definition,
# which is where nixpkgs' module system reports conflicts and type errors, and
# reports the failed assertions.
{ lib }:
let
  inherit (lib) mkOption types;

  fakePath = name: "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";

  # ---- checking: force what is defined ---------------------------------------

  # Forcing the value of an option of type `t`, where module-system errors
  # (conflicts, type errors) surface: through lists, attribute sets and
  # nullOr down to the leaves (their merge checks each element when it is
  # forced); a submodule of ours carries _vmCheck, which forces what is
  # defined in it (a full deepSeq would demand options nobody defined, which
  # nixpkgs never evaluates either); opaque values (packages, modules,
  # functions, `unspecified` like specialArgs) only to weak head normal form.
  count = f: xs: builtins.foldl' (n: x: builtins.seq (f x) (n + 1)) 0 xs;
  force = t: v:
    let name = t.name or ""; elem = t.nestedTypes.elemType or null; in
    if builtins.isAttrs v && v ? _vmCheck then builtins.seq v._vmCheck 1
    else if name == "submodule" then builtins.seq (builtins.attrNames v) 1
    else if builtins.elem name [ "attrsOf" "lazyAttrsOf" ] && elem != null then count (force elem) (builtins.attrValues v)
    else if name == "listOf" && elem != null then count (force elem) v
    else if name == "nullOr" && elem != null then (if v == null then 1 else force elem v)
    else if builtins.elem name [ "str" "int" "bool" "enum" "lines" "port" "strMatching" "either" "oneOf" "separatedString" ]
      || lib.hasPrefix "ints." name || lib.hasPrefix "signedInt" name || lib.hasPrefix "unsignedInt" name
      || lib.hasPrefix "intBetween" name || name == "positiveInt" || name == "systemd option"
    then builtins.deepSeq v 1
    else builtins.seq v 1;

  definedOptions = options:
    builtins.filter (o: (o.definitionsWithLocations or [ ]) != [ ])
      (lib.collect lib.isOption (removeAttrs options [ "_module" "_vmCheck" ]));

  checkModule = { options, config, ... }: {
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
  submodule = m: types.submodule [ m checkModule ];

  # ---- nixpkgs' types -----------------------------------------------------------

  # nixos/lib/systemd-unit-options.nix
  unitNameType = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";
  unitOption =
    let atom = types.oneOf [ types.bool types.int types.str types.path ]; in
    types.oneOf [ atom (types.listOf atom) ];
  unitList = mkOption { type = types.listOf unitNameType; default = [ ]; description = "Units."; };
  unitSection = mkOption { type = types.attrsOf unitOption; default = { }; description = "Unit section settings."; };
  bool = default: mkOption { type = types.bool; inherit default; description = "A flag."; };
  str = default: mkOption { type = types.str; inherit default; description = "A string."; };
  strList = mkOption { type = types.listOf types.str; default = [ ]; description = "Strings."; };
  ports = mkOption { type = types.listOf types.port; default = [ ]; description = "Ports."; };

  # systemd.services.<name> (the options the tests and modules use, as declared
  # in nixpkgs; no freeform: a misspelt one does not exist)
  serviceModule = { name, config, ... }: {
    options = {
      enable = bool true;
      description = str "";
      documentation = strList;
      wantedBy = unitList;
      requiredBy = unitList;
      upheldBy = unitList;
      wants = unitList;
      requires = unitList;
      upholds = unitList;
      after = unitList;
      before = unitList;
      bindsTo = unitList;
      partOf = unitList;
      conflicts = unitList;
      onFailure = unitList;
      onSuccess = unitList;
      unitConfig = unitSection;
      serviceConfig = unitSection;
      environment = mkOption {
        type = types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ]));
        default = { };
        description = "Environment variables.";
      };
      path = mkOption {
        type = types.listOf (types.oneOf [ types.package types.str ]);
        default = [ ];
        description = "Packages added to the service's PATH.";
      };
      script = mkOption { type = types.lines; default = ""; description = "Shell commands."; };
      preStart = mkOption { type = types.lines; default = ""; description = "Shell commands."; };
      postStart = mkOption { type = types.lines; default = ""; description = "Shell commands."; };
      preStop = mkOption { type = types.lines; default = ""; description = "Shell commands."; };
      postStop = mkOption { type = types.lines; default = ""; description = "Shell commands."; };
      restartTriggers = mkOption { type = types.listOf types.unspecified; default = [ ]; description = "Triggers."; };
      reloadTriggers = mkOption { type = types.listOf types.unspecified; default = [ ]; description = "Triggers."; };
      restartIfChanged = bool true;
      reloadIfChanged = bool false;
      stopIfChanged = bool true;
      startAt = mkOption { type = types.either types.str (types.listOf types.str); default = [ ]; description = "Calendar events."; };
    };
  };

  # systemd.paths.<name>
  pathModule = { ... }: {
    options = {
      enable = bool true;
      description = str "";
      wantedBy = unitList;
      requiredBy = unitList;
      wants = unitList;
      after = unitList;
      before = unitList;
      unitConfig = unitSection;
      pathConfig = unitSection;
    };
  };

  # environment.etc.<name> (source computed from text, as nixpkgs' etc.nix does)
  etcModule = { name, config, options, ... }: {
    options = {
      enable = bool true;
      target = mkOption { type = types.str; default = name; description = "Path below /etc."; };
      text = mkOption { type = types.nullOr types.lines; default = null; description = "Contents."; };
      source = mkOption { type = types.path; description = "The file."; };
      mode = str "symlink";
      user = str "+0";
      group = str "+0";
      uid = mkOption { type = types.int; default = 0; description = "Owner."; };
      gid = mkOption { type = types.int; default = 0; description = "Group."; };
    };
    config.source = lib.mkIf (config.text != null)
      (lib.mkDerivedConfig options.text (t: fakePath "etc-${baseNameOf name}-${builtins.hashString "sha256" t}"));
  };

  # services.nginx.virtualHosts.<name>.locations.<path>
  nginxLocation = { ... }: {
    options = {
      root = mkOption { type = types.nullOr types.path; default = null; description = "Root."; };
      alias = mkOption { type = types.nullOr types.path; default = null; description = "Alias."; };
      index = mkOption { type = types.nullOr types.str; default = null; description = "Index."; };
      proxyPass = mkOption { type = types.nullOr types.str; default = null; description = "Upstream."; };
      return = mkOption { type = types.nullOr (types.oneOf [ types.str types.int ]); default = null; description = "Return."; };
      tryFiles = mkOption { type = types.nullOr types.str; default = null; description = "try_files."; };
      extraConfig = mkOption { type = types.lines; default = ""; description = "Extra lines."; };
    };
  };
  nginxVhost = { name, ... }: {
    options = {
      serverName = mkOption { type = types.str; default = name; description = "Server name."; };
      serverAliases = strList;
      default = bool false;
      root = mkOption { type = types.nullOr types.path; default = null; description = "Root."; };
      locations = mkOption { type = types.attrsOf (submodule nginxLocation); default = { }; description = "Locations."; };
      forceSSL = bool false;
      enableACME = bool false;
      extraConfig = mkOption { type = types.lines; default = ""; description = "Extra lines."; };
    };
  };

  # containers.<name>.bindMounts.<path> (nixos-containers.nix)
  classicBindMount = { name, ... }: {
    options = {
      mountPoint = mkOption { type = types.str; description = "Mount point in the container."; };
      hostPath = mkOption { type = types.nullOr types.str; default = null; description = "Host path."; };
      isReadOnly = bool true;
    };
    config.mountPoint = lib.mkDefault name;
  };
  classicForwardPort = { ... }: {
    options = {
      protocol = str "tcp";
      hostPort = mkOption { type = types.port; description = "Host port."; };
      containerPort = mkOption { type = types.nullOr types.port; default = null; description = "Container port."; };
    };
  };

  # ---- the declarations, by path ------------------------------------------------

  # Options a test node (a NixOS VM) may set, beyond the host module's.
  hostDecls = { config, pkgs, extendModules, ... }: [
    # nixos/modules/virtualisation/qemu-vm.nix, disk-size-option.nix
    { path = [ "virtualisation" "memorySize" ]; option = mkOption { type = types.ints.positive; default = 1024; description = "MiB of memory."; }; }
    { path = [ "virtualisation" "cores" ]; option = mkOption { type = types.ints.positive; default = 1; description = "vCPUs."; }; }
    { path = [ "virtualisation" "msize" ]; option = mkOption { type = types.ints.positive; default = 16384; description = "9p msize."; }; }
    { path = [ "virtualisation" "diskSizeAutoSupported" ]; option = mkOption { type = types.bool; default = true; internal = true; description = "Whether diskSize may be auto."; }; }
    { path = [ "virtualisation" "diskSize" ]; option = mkOption {
        type = types.either (types.enum [ "auto" ]) types.ints.positive;
        default = if config.virtualisation.diskSizeAutoSupported then "auto" else 1024;
        description = "Disk MiB.";
      }; }
    { path = [ "virtualisation" "emptyDiskImages" ]; option = mkOption { type = types.listOf types.ints.positive; default = [ ]; description = "Extra disks."; }; }
    { path = [ "virtualisation" "additionalPaths" ]; option = mkOption { type = types.listOf types.path; default = [ ]; description = "Paths for the VM's store."; }; }
    { path = [ "virtualisation" "vlans" ]; option = mkOption { type = types.listOf types.ints.unsigned; default = [ 1 ]; description = "VLANs."; }; }
    { path = [ "virtualisation" "graphics" ]; option = bool true; }
    { path = [ "virtualisation" "writableStore" ]; option = bool true; }
    { path = [ "virtualisation" "useNixStoreImage" ]; option = bool false; }
    { path = [ "virtualisation" "qemu" "options" ]; option = strList; }
    { path = [ "networking" "primaryIPAddress" ]; option = mkOption { type = types.str; default = ""; internal = true; description = "The node's address."; }; }

    # nixos/modules/tasks/network-interfaces.nix
    { path = [ "networking" "hostName" ]; option = mkOption {
        type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
        default = "nixos";
        description = "Host name.";
      }; }
    { path = [ "networking" "nameservers" ]; option = strList; }
    { path = [ "networking" "search" ]; option = strList; }
    { path = [ "networking" "useDHCP" ]; option = bool true; }
    # nixos/modules/services/networking/firewall.nix
    { path = [ "networking" "firewall" "allowedTCPPorts" ]; option = ports; }
    { path = [ "networking" "firewall" "allowedUDPPorts" ]; option = ports; }
    { path = [ "networking" "firewall" "allowPing" ]; option = bool true; }
    { path = [ "networking" "firewall" "trustedInterfaces" ]; option = strList; }

    # nixos/modules/system/boot/resolved.nix
    { path = [ "services" "resolved" "enable" ]; option = bool false; }
    # nixos/modules/system/boot/networkd.nix
    { path = [ "systemd" "network" "config" ]; option = mkOption {
        type = submodule {
          options = {
            networkConfig = unitSection;
            dhcpV4Config = unitSection;
            dhcpV6Config = unitSection;
            routeTables = mkOption { type = types.attrsOf types.int; default = { }; description = "Route tables."; };
            addRouteTablesToIPRoute2 = bool true;
          };
        };
        default = { };
        description = "networkd.conf.";
      }; }
    { path = [ "systemd" "paths" ]; option = mkOption { type = types.attrsOf (submodule pathModule); default = { }; description = "Path units."; }; }
    { path = [ "systemd" "tmpfiles" "rules" ]; option = strList; }

    # nixos/modules/system/activation/top-level.nix, specialisation.nix
    { path = [ "system" "extraDependencies" ]; option = mkOption { type = types.listOf types.pathInStore; default = [ ]; description = "Extra closure."; }; }
    { path = [ "system" "stateVersion" ]; option = mkOption { type = types.str; default = lib.trivial.release; description = "State version."; }; }
    { path = [ "specialisation" ]; option = mkOption {
        default = { };
        description = "Specialisations.";
        type = types.attrsOf (submodule (local: {
          options.inheritParentConfig = bool true;
          options.configuration = mkOption {
            default = { };
            description = "The specialisation's configuration.";
            visible = "shallow";
            # as nixpkgs: the whole system again, without specialisations of its own
            inherit (extendModules { modules = [ { specialisation = lib.mkOverride 0 { }; } ]; }) type;
          };
        }));
      }; }

    # nixos/modules/virtualisation/nixos-containers.nix
    { path = [ "boot" "enableContainers" ]; option = mkOption {
        type = types.bool;
        default = config.containers != { };
        description = "Classic containers.";
      }; }
    { path = [ "containers" ]; option = mkOption {
        default = { };
        description = "Classic NixOS containers.";
        type = types.attrsOf (submodule ({ config, name, ... }: {
          options = {
            config = mkOption {
              description = "The container's NixOS configuration.";
              type = lib.mkOptionType {
                name = "Toplevel NixOS config";
                merge = _loc: defs: (import "${toString config.nixpkgs}/nixos/lib/eval-config.nix" {
                  modules = [ { networking.hostName = lib.mkDefault name; boot.isContainer = true; } ] ++ map (d: d.value) defs;
                  prefix = [ "containers" name ];
                  # the stand-in eval-config evaluates with the checks' lib
                  specialArgs = config.specialArgs // { checkLib = lib; };
                  system = null;
                }).config;
              };
            };
            path = mkOption { type = types.path; description = "A built system."; };
            nixpkgs = mkOption { type = types.path; default = pkgs.path; description = "nixpkgs for the container."; };
            specialArgs = mkOption { type = types.attrsOf types.unspecified; default = { }; description = "Special arguments."; };
            additionalCapabilities = strList;
            ephemeral = bool false;
            enableTun = bool false;
            copyResolvConf = bool true;
            privateNetwork = bool false;
            privateUsers = mkOption { type = types.either types.ints.u32 (types.enum [ "no" "identity" "pick" ]); default = "no"; description = "User namespace."; };
            interfaces = strList;
            macvlans = strList;
            autoStart = bool false;
            restartIfChanged = bool true;
            timeoutStartSec = str "1min";
            bindMounts = mkOption { type = types.attrsOf (submodule classicBindMount); default = { }; description = "Bind mounts."; };
            tmpfs = strList;
            extraFlags = strList;
            hostBridge = mkOption { type = types.nullOr types.str; default = null; description = "Bridge."; };
            hostAddress = mkOption { type = types.nullOr types.str; default = null; description = "Host address."; };
            hostAddress6 = mkOption { type = types.nullOr types.str; default = null; description = "Host address."; };
            localAddress = mkOption { type = types.nullOr types.str; default = null; description = "Local address."; };
            localAddress6 = mkOption { type = types.nullOr types.str; default = null; description = "Local address."; };
            forwardPorts = mkOption { type = types.listOf (submodule classicForwardPort); default = [ ]; description = "Ports."; };
          };
        }));
      }; }

    # nixos/modules/services/web-servers/nginx
    { path = [ "services" "nginx" "enable" ]; option = bool false; }
    { path = [ "services" "nginx" "virtualHosts" ]; option = mkOption { type = types.attrsOf (submodule nginxVhost); default = { }; description = "Virtual hosts."; }; }
    # nixos/modules/services/networking/dnsmasq.nix
    { path = [ "services" "dnsmasq" "enable" ]; option = bool false; }
    { path = [ "services" "dnsmasq" "resolveLocalQueries" ]; option = bool true; }
    { path = [ "services" "dnsmasq" "settings" ]; option = mkOption {
        type = submodule {
          freeformType = types.attrsOf (types.oneOf [ types.bool types.int types.str (types.listOf types.str) ]);
          options.server = mkOption { type = types.listOf types.str; default = [ ]; description = "Upstreams."; };
        };
        default = { };
        description = "dnsmasq.conf.";
      }; }
  ];

  # Options a container's NixOS configuration may set, beyond the container
  # profile's (container-stubs.nix); the same nixpkgs declarations.
  containerDecls = { config, ... }: [
    { path = [ "system" "stateVersion" ]; option = mkOption { type = types.str; default = lib.trivial.release; description = "State version."; }; }
    { path = [ "documentation" "enable" ]; option = bool true; }
    { path = [ "environment" "etc" ]; option = mkOption { type = types.attrsOf (submodule etcModule); default = { }; description = "/etc."; }; }
    { path = [ "environment" "systemPackages" ]; option = mkOption { type = types.listOf types.package; default = [ ]; description = "Packages."; }; }
    { path = [ "systemd" "services" ]; option = mkOption { type = types.attrsOf (submodule serviceModule); default = { }; description = "Services."; }; }
    { path = [ "nix" "enable" ]; option = bool true; }
    { path = [ "networking" "firewall" "enable" ]; option = bool true; }
    { path = [ "networking" "firewall" "allowedTCPPorts" ]; option = ports; }
    { path = [ "networking" "firewall" "allowedUDPPorts" ]; option = ports; }
    { path = [ "networking" "firewall" "allowPing" ]; option = bool true; }
    { path = [ "networking" "nameservers" ]; option = strList; }
    { path = [ "services" "nginx" "enable" ]; option = bool false; }
    { path = [ "services" "nginx" "virtualHosts" ]; option = mkOption { type = types.attrsOf (submodule nginxVhost); default = { }; description = "Virtual hosts."; }; }
  ];

  # Sub-options of `attrsOf submodule` options the base stubs declare, added
  # where the base lacks them (nixos/modules/system/boot/networkd.nix: the
  # section lists are freeform attribute sets of section keys).
  containerSubDecls = [
    { path = [ "systemd" "network" "networks" ];
      options = {
        addresses = mkOption { type = types.listOf (types.submodule { freeformType = types.attrsOf unitOption; }); default = [ ]; description = "[Address] sections."; };
        gateway = strList;
        dns = strList;
        ntp = strList;
        domains = mkOption { type = types.nullOr (types.listOf types.str); default = null; description = "Domains."; };
      };
    }
  ];

  # What nixpkgs itself sets that the tests rely on.
  hostBehaviour = { config, lib, ... }: {
    # network-interfaces-systemd.nix: networkd hosts run resolved
    services.resolved.enable = lib.mkIf config.networking.useNetworkd (lib.mkDefault true);
    # qemu-vm.nix
    virtualisation.diskSizeAutoSupported = false;
  };

  # Paths of the options the modules declare.
  declaredPaths = modules:
    let
      options = (lib.evalModules { inherit modules; }).options;
      walk = prefix: attrs:
        lib.concatLists (lib.mapAttrsToList
          (n: v:
            if lib.isOption v then [ (prefix ++ [ n ]) ]
            else if builtins.isAttrs v then walk (prefix ++ [ n ]) v
            else [ ])
          (removeAttrs attrs [ "_module" ]));
    in
    walk [ ] options;

  isPrefix = p: q: lib.take (builtins.length p) q == p;

  # Declares `subDecls`' sub-options the base does not have, by declaring the
  # option a second time with a submodule the module system merges into the
  # base's.
  extendSub = base: subDecls:
    let
      options = (lib.evalModules { modules = base; }).options;
      one = d:
        let
          have = if lib.hasAttrByPath d.path options
            then builtins.attrNames ((lib.getAttrFromPath d.path options).type.getSubOptions [ ])
            else null;
          missing = removeAttrs d.options (if have == null then [ ] else have);
        in
        lib.optional (have != null && missing != { }) {
          options = lib.setAttrByPath d.path (mkOption {
            type = types.attrsOf (types.submodule { options = missing; });
          });
        };
    in
    lib.concatMap one subDecls;

  # `base` (a list of modules) plus the declarations of `decls` it does not
  # already have (neither the path itself nor a prefix of it is an option
  # there; a declaration below one of ours would clash, so that is an error).
  extend = base: decls: behaviour:
    let
      have = declaredPaths base;
      # The declarations are a function of the module arguments (defaults
      # read config); their paths must not be, so they are read with
      # placeholder arguments.
      shape = map (d: d.path) (decls { config = { }; pkgs = { }; extendModules = _: { type = null; }; });
      keep = builtins.filter (p: !(builtins.any (h: isPrefix h p) have)) shape;
      clash = builtins.filter (p: builtins.any (h: isPrefix p h && h != p) have) keep;
    in
    if clash != [ ] then
      throw "vm-stubs.nix: the base stubs declare options below ${lib.concatMapStringsSep ", " (lib.concatStringsSep ".") clash}; declare those leaves here instead"
    else
      base ++ [
        checkModule
        behaviour
        ({ config, pkgs, extendModules, ... }@args: {
          options = lib.foldl' lib.recursiveUpdate { }
            (map (d: lib.setAttrByPath d.path d.option)
              (builtins.filter (d: builtins.elem d.path keep) (decls args)));
        })
      ];
  # The host module's stand-in pkgs (stubs.nix) plus what NixOS test nodes and
  # the module's units use: fake packages (store paths that are never built).
  fakePackage = name: { type = "derivation"; inherit name; outPath = fakePath name; };
  extendPkgs = base: base // {
    inherit lib;
    stdenv = (base.stdenv or { }) // { hostPlatform.system = "x86_64-linux"; };
    writeTextDir = name: _text: fakePath "dir-${name}";
    writeText = name: _text: fakePath name;
    writeShellScript = name: _text: fakePath name;
    runCommand = name: _env: _script: fakePackage name;
    runtimeShell = "${fakePath "bash"}/bin/bash";
  } // lib.genAttrs [ "bash" "busybox" "coreutils" "curl" "dnsutils" "gnugrep" "iproute2" "iputils" "jq" ] fakePackage;
  # stubs.nix's pkgs with those added, for host evaluations.
  hostPkgsModule = base: { _module.args.pkgs = lib.mkForce (extendPkgs (lib.evalModules { modules = base; })._module.args.pkgs); };
in
{
  inherit fakePath checkModule unitOption extendPkgs hostPkgsModule;
  host = base: extend base hostDecls hostBehaviour;
  container = base: extend base containerDecls { } ++ extendSub base containerSubDecls;
}
