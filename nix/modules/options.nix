# The per-container options shared by declarative instances
# (nixos.containers.instances.<name>, hypervisor.nix) and imperative containers
# (nixosContainer.*, container.nix). Each maps to one field of the registry
# entry (schema v1, see DESIGN.md and nix/lib/registry-entry.nix).
#
# `cfg` is the evaluated set these options live in (used for defaults that depend
# on other options).
{ lib, cfg }:
let
  inherit (lib) mkOption types literalExpression;
  renamed = import ../lib/renamed-options.nix;

  settingsType = types.nullOr (types.attrsOf types.anything);

  # A Linux interface name (at most 15 bytes; no whitespace or '/'), for
  # interfaces and macvlans: a space would make nspawn read two interfaces.
  ifname = types.strMatching "[A-Za-z0-9_.-]{1,15}";
  settingsText = kind: ''
    Given in the "settings" form: an attribute set of sections, each an
    attribute set of keys (`{ Network.DHCPServer = false; }`) or a list of them
    for repeated sections (`{ Route = [ { Gateway = "10.0.0.1"; } ]; }`).
    Values are strings, numbers, booleans (written `yes`/`no`) or lists of them;
    `null` removes a key from the defaults. Sections are merged over the
    ${kind} key by key. NixOS-style names (`networkConfig`, `address`,
    `routes`, `ipv6Prefixes`, ...) are accepted and translated.
  '';

  # The classic `containers.<name>.bindMounts` form, accepted and converted:
  # { "/mnt" = { hostPath = "/srv"; isReadOnly = false; }; }, where mountPoint
  # defaults to the attribute name, hostPath to the mount point and isReadOnly to
  # true (the classic module's defaults).
  classicBindMount = types.attrsOf (types.attrsOf types.anything);
  fromClassicBindMounts = attrs:
    lib.mapAttrsToList
      (name: b:
        let
          unknown = lib.subtractLists [ "mountPoint" "hostPath" "isReadOnly" ] (lib.attrNames b);
          mountPoint = b.mountPoint or name;
          hostPath = if (b.hostPath or null) == null then mountPoint else b.hostPath;
        in
        if unknown != [ ] then
          throw "bindMounts.${name}: unknown attribute ${lib.head unknown}; the classic form has mountPoint, hostPath and isReadOnly"
        else "${hostPath}:${mountPoint}${lib.optionalString (b.isReadOnly or true) ":ro"}")
      attrs;
in
{
  autoStart = mkOption {
    type = types.bool;
    default = true;
    description = "Whether the container starts at boot (pulled in by machines.target).";
  };

  ephemeral = mkOption {
    type = types.bool;
    default = false;
    description = ''
      Run the container from a snapshot of its root directory that is discarded
      when it stops (`Ephemeral=` of systemd.nspawn(5)).
    '';
  };

  userNamespacing = mkOption {
    type = types.bool;
    default = true;
    description = ''
      Run the container in its own user namespace with an automatically picked
      UID/GID range (`PrivateUsers=pick`, `PrivateUsersOwnership=auto`): root in
      the container is an unprivileged user on the host. On by default for new
      containers; containers migrated from the classic module keep what they had
      (off unless they used `privateUsers = "pick"`). A registry entry without
      the field means off (schema v1).
    '';
  };

  timeoutStartSec = mkOption {
    type = types.str;
    default = "90s";
    example = "5min";
    description = "How long the container may take to boot (`TimeoutStartSec=` of its service).";
  };

  systemCallFilter = mkOption {
    type = types.nullOr types.str;
    default = null;
    example = "@system-service ~@mount";
    description = "`SystemCallFilter=` of systemd.nspawn(5): system call names and @groups, `~` to deny.";
  };

  sharedNix = mkOption {
    type = types.bool;
    default = true;
    description = ''
      Mount the host's whole /nix/store read-only into the container. When
      false, only the closure of the container's system is mounted; such a
      container cannot be reloaded into a new system, only restarted.
    '';
  };

  mountDaemonSocket = mkOption {
    type = types.bool;
    default = false;
    description = ''
      Mount the host's Nix database and daemon socket into the container, so
      `nix` inside uses the host's daemon. The container's own nix-daemon is
      disabled.
    '';
  };

  bindMounts = mkOption {
    type = types.coercedTo classicBindMount fromClassicBindMounts (types.listOf types.str);
    default = [ ];
    example = [ "/srv/www:/var/www:ro" "/var/lib/shared" ];
    description = ''
      Host paths bound into the container, as `HOST[:CONTAINER[:OPTIONS]]`;
      CONTAINER defaults to HOST, OPTIONS is a comma-separated list of `ro`,
      `rw`, `rbind`, `norbind`, `idmap`, `noidmap`, `rootidmap`. Mounts are
      read-write unless `ro` is given. Paths may not contain whitespace, `:`,
      quotes or backslashes. The classic module's attribute-set form
      (`{ "/home" = { hostPath = "/home/alice"; isReadOnly = false; }; }`) is
      accepted too and keeps its read-only default.
    '';
  };

  forwardPorts = mkOption {
    type = types.listOf (types.submodule {
      options = {
        protocol = mkOption { type = types.enum [ "tcp" "udp" ]; default = "tcp"; description = "Protocol."; };
        hostPort = mkOption { type = types.port; description = "Port on the host."; };
        containerPort = mkOption {
          type = types.nullOr types.port;
          default = null;
          description = "Port in the container; the host port when null.";
        };
      };
    });
    default = [ ];
    example = [ { hostPort = 8080; containerPort = 80; } ];
    description = ''
      Ports forwarded from the host to the container (`Port=` of
      systemd.nspawn(5); IPv4 only, needs a private network: mode veth, zone or
      bridge).
    '';
  };

  credentials = mkOption {
    type = types.listOf (types.submodule {
      options = {
        id = mkOption { type = types.str; description = "Name of the credential inside the container."; };
        path = mkOption {
          type = types.str;
          description = "Absolute path on the host, or the name of a credential of the host's service manager.";
        };
      };
    });
    default = [ ];
    example = [ { id = "db-password"; path = "/run/secrets/db"; } ];
    description = ''
      Credentials passed to the container's service manager
      (`--load-credential=` of systemd-nspawn(1)); services inside use them
      with `LoadCredential=ID`.
    '';
  };

  zone = mkOption {
    type = types.nullOr types.str;
    default = null;
    example = "lan";
    description = ''
      Put the container on the shared bridge `vz-ZONE` (at most 12
      characters). The host side of a zone is configured with
      `nixos.containers.zones.<zone>` on the host.
    '';
  };

  bridge = mkOption {
    type = types.nullOr types.str;
    default = null;
    example = "br0";
    description = "Attach the container's link to this existing host bridge.";
  };

  networkMode = mkOption {
    type = types.nullOr (types.enum [ "veth" "zone" "bridge" "host" "none" ]);
    default = null;
    description = ''
      Network mode. `null` derives it: `zone` when zone is set, `bridge` when
      bridge is set, else `veth` (a private link `ve-NAME`, DHCP and NAT from the
      host). `host` shares the host's network; `none` gives a private network
      without interfaces.
    '';
  };

  hostNetworkConfig = mkOption {
    type = settingsType;
    default = null;
    example = literalExpression ''{ address = [ "10.231.136.1/28" ]; Network.DHCPServer = false; }'';
    description = ''
      Settings for the host side of the container's link `ve-NAME` (mode
      veth only; zones are configured in `nixos.containers.zones`). When they
      give the host side exactly one IPv4 address, the container gets an
      address in that subnet derived from its name, before its network starts
      (docs/networking.md), unless they also set DHCP server settings.
    '' + settingsText "defaults of systemd's 80-container-ve.network";
  };

  hostAddress = mkOption {
    type = types.nullOr types.str;
    default = null;
    example = "10.231.136.1";
    description = ''
      Fixed IPv4 address of the host side of the container's link `ve-NAME`,
      with `localAddress` (mode veth). By default both sides get addresses
      derived from the container name (docs/networking.md), configured before
      the container boots. Without a prefix the pair is point-to-point (so
      several containers may share one `hostAddress`, as with the classic
      `containers.<name>.hostAddress`); with one (`10.231.136.1/24`) both must be
      in that subnet. Fixed addresses must lie outside the derived pool.
    '';
  };

  localAddress = mkOption {
    type = types.nullOr types.str;
    default = null;
    example = "10.231.136.2";
    description = "The container's side of `hostAddress` (its `host0`).";
  };

  hostAddress6 = mkOption {
    type = types.nullOr types.str;
    default = null;
    example = "fc00::1";
    description = "As `hostAddress`, for IPv6 (with `localAddress6`).";
  };

  localAddress6 = mkOption {
    type = types.nullOr types.str;
    default = null;
    example = "fc00::2";
    description = "The container's side of `hostAddress6`.";
  };

  containerNetworkConfig = mkOption {
    type = types.deferredModule;
    default = { };
    example = literalExpression ''{ address = [ "10.231.136.2/28" ]; networkConfig.DHCP = "no"; }'';
    description = ''
      Configuration of the container's `host0` link, in the form of NixOS's
      `systemd.network.networks.<name>` (merged into
      `systemd.network.networks."20-host0"` inside the container, over
      defaults that match systemd's 80-container-host0.network).
    '';
  };

  activation = {
    strategy = mkOption {
      type = types.enum [ "none" "reload" "restart" "dynamic" ];
      default = if cfg.sharedNix then "dynamic" else "restart";
      defaultText = literalExpression ''if sharedNix then "dynamic" else "restart"'';
      description = ''
        What `nixos-nspawn apply` does to the running container when its
        registry entry changes: `reload` runs switch-to-configuration inside,
        `restart` reboots it, `dynamic` reloads when only the system changed and
        restarts when anything else did, `none` leaves it alone.
      '';
    };
    reloadScript = mkOption {
      type = types.nullOr types.path;
      default = null;
      description = "Run this (inside the container) instead of switch-to-configuration test on reload.";
    };
    autoStart = mkOption {
      type = types.nullOr types.bool;
      default = null;
      visible = false;
      description = "Alias of autoStart (python-nixos-nspawn's name); wins when set.";
    };
  };

  # The classic module's short options (nixpkgs' nixos-containers.nix), with
  # its names, types and defaults and their classic meaning; folded into the
  # registry entry's extraNspawn, extraService and other fields by
  # nix/lib/short-options.nix.
  interfaces = mkOption {
    type = types.listOf ifname;
    default = [ ];
    example = [ "eth1" "eth2" ];
    description = ''
      Host interfaces moved into the container (`Interface=` of
      systemd.nspawn(5), the classic `containers.<name>.interfaces`). The
      container's service wants and is ordered after
      `sys-subsystem-net-devices-IF.device`, so it starts once the interface
      exists. Moving an interface implies a private network; with no veth
      link wanted set `networkMode = "none"`.
    '';
  };

  macvlans = mkOption {
    type = types.listOf ifname;
    default = [ ];
    example = [ "eth1" ];
    description = ''
      Host interfaces from which a MACVLAN interface is created and moved into
      the container (`MACVLAN=` of systemd.nspawn(5)); it is `mv-IF` inside.
    '';
  };

  enableTun = mkOption {
    type = types.bool;
    default = false;
    description = ''
      Let the container create and configure tunnel interfaces: grants
      `CAP_NET_ADMIN` and allows `/dev/net/tun` (`DeviceAllow=/dev/net/tun rwm`;
      systemd-nspawn creates the node in every container), as the classic
      option does.
    '';
  };

  allowedDevices = mkOption {
    type = types.listOf (types.submodule {
      options = {
        node = mkOption {
          type = types.strMatching "(/|char-|block-)[^[:space:][:cntrl:]]+";
          example = "/dev/net/tun";
          description = "Path of the device node, or `char-NAME`/`block-NAME` (systemd.resource-control(5)).";
        };
        modifier = mkOption {
          type = types.strMatching "[rwm]+";
          example = "rw";
          description = "Access: a combination of `r` (read), `w` (write) and `m` (mknod).";
        };
      };
    });
    default = [ ];
    example = [ { node = "/dev/fuse"; modifier = "rwm"; } ];
    description = ''
      Device nodes the container may access (`DeviceAllow=` of its service, whose
      `DevicePolicy=` is `closed`). As with the classic option the node is not
      created inside: bind it in with `bindMounts` (`"/dev/fuse"`) unless the
      container makes it itself.
    '';
  };

  tmpfs = mkOption {
    type = types.listOf types.str;
    default = [ ];
    example = [ "/var" ];
    description = ''
      tmpfs file systems mounted in the container, as `PATH[:OPTIONS]`
      (`TemporaryFileSystem=` of systemd.nspawn(5), `--tmpfs=`).
    '';
  };

  additionalCapabilities = mkOption {
    type = types.listOf types.str;
    default = [ ];
    example = [ "CAP_NET_ADMIN" "CAP_MKNOD" ];
    description = "Capabilities granted to the container in addition to nspawn's default set (`Capability=` of systemd.nspawn(5)).";
  };

  extraFlags = mkOption {
    type = types.listOf types.str;
    default = [ ];
    example = [ "--drop-capability=CAP_SYS_CHROOT" ];
    description = ''
      systemd-nspawn flags, as the classic option takes them (split into
      words, `--flag=VALUE` or `--flag VALUE`). nixos-nspawn starts containers
      from a generated `.nspawn` file, so each flag becomes its setting there
      or the option that has it, as the flag table nix/lib/nspawn-flags.json
      says (`--bind`/`--bind-ro`: bindMounts, `--port`: forwardPorts,
      `--property=NAME=VALUE`: extraService, `--capability`: Capability=, …;
      docs/migration.md has the table). Any other flag fails the evaluation
      with a message naming it; write its `.nspawn` setting in `extraNspawn`.
    '';
  };

  extraNspawn = mkOption {
    type = settingsType;
    default = null;
    example = literalExpression ''{ Exec.Capability = [ "CAP_NET_ADMIN" ]; Network.MACVLAN = "eth1"; }'';
    description = ''
      Extra settings for the container's `.nspawn` file (sections Exec, Files,
      Network of systemd.nspawn(5)).
    '' + settingsText "settings nixos-nspawn generates";
  };

  extraService = mkOption {
    type = settingsType;
    default = null;
    example = literalExpression ''{ Service.MemoryMax = "2G"; }'';
    description = ''
      Extra settings for the drop-in of `systemd-nspawn@NAME.service`
      (sections Unit, Service).
    '' + settingsText "drop-in nixos-nspawn generates";
  };
}
# The classic module's names that nixos-nspawn spells differently, hidden: a
# copied configuration fails with an assertion saying what to write instead
# (nix/lib/renamed-options.nix), not with "does not exist".
// lib.genAttrs renamed.hiddenNames (n: mkOption {
  type = types.nullOr types.anything;
  default = null;
  visible = false;
  description = "The classic module's ${n}; refused with a hint (nix/lib/renamed-options.nix).";
})
