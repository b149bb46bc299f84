# What the host module and the container profile do for the host's own
# networking and for Nix inside, evaluated with the lib under test (nixpkgsLib:
# nix/checks/minilib or nixpkgs' lib/) through the stand-in nixpkgs
# (fake-nixpkgs/, shaped like nixpkgs 25.11; nix/checks/common.nix):
#
#   NIXOS_NSPAWN_CHECK_LIB=/path/to/lib nix-instantiate --eval --strict --json \
#     nix/checks/host-networking-eval.nix --arg nixpkgsLib /path/to/lib
#
# gives { results = [ { name; ok; detail; } ]; } (nix/checks/run prints them).
# modulesDir (default ../modules) is there to check another copy of the modules.
{ nixpkgsLib, modulesDir ? ../modules }:
let
  common = import ./common.nix { inherit nixpkgsLib; };
  inherit (common) lib;

  host = modules: (common.evalConfig {
    system = null;
    inherit lib;
    modules = [ (modulesDir + "/hypervisor.nix") common.hostBase ] ++ modules;
  }).config;
  container = modules: (common.evalConfig {
    system = null;
    inherit lib;
    modules = [
      (modulesDir + "/container.nix")
      { nixosContainer.name = "c"; nixpkgs.hostPlatform = "x86_64-linux"; }
    ] ++ modules;
  }).config;

  test = name: ok: detail: { inherit name ok; detail = if ok then "" else detail; };
  show = builtins.toJSON;

  scripted = host [ ];
  networkd = host [ { networking.useNetworkd = true; } ];
  withResolved = host [ { services.resolved.enable = true; } ];
  nm = host [ { networking.networkmanager.enable = true; } ];
  # nixpkgs' networkd.nix turns resolved on (mkDefault) wherever networkd is
  # enabled, so on every host with the module; a host without resolved is one
  # that turns it off.
  noResolved = host [ { services.resolved.enable = false; } ];
  nmNoResolved = host [ { networking.networkmanager.enable = true; services.resolved.enable = false; } ];

  foreign = cfg: cfg.systemd.network.config.networkConfig;
  dnsService = cfg: cfg.systemd.services.nixos-nspawn-uplink-dns or null;
  dnsPath = cfg: cfg.systemd.paths.nixos-nspawn-uplink-dns or null;
  nspawnTemplate = cfg: cfg.systemd.services."systemd-nspawn@";

  plain = container [ ];
  # userNamespacing defaults to true; the cases without a user namespace say so.
  daemon = container [ { nixosContainer = { mountDaemonSocket = true; userNamespacing = false; }; } ];
  daemonUserns = container [ { nixosContainer.mountDaemonSocket = true; } ];
  ownNix = container [ { nix.enable = true; nixosContainer.userNamespacing = false; } ];
  ownNixUserns = container [ { nix.enable = true; } ];
  failed = cfg: map (a: a.message) (builtins.filter (a: !a.assertion) cfg.assertions);
  socketUnit = cfg: cfg.systemd.sockets.nix-daemon.unitConfig or { };
  daemonUnit = cfg: cfg.systemd.services.nix-daemon.unitConfig or { };
  mentions = needle: builtins.any (w: lib.hasInfix needle w);
in
{
  results = [
    # networkd is on for the container links only: it must keep its hands off
    # the rules and routes of the host's own networking (wg-quick, Tailscale).
    (test "scripted networking: networkd keeps foreign routing policy rules and routes"
      ((foreign scripted).ManageForeignRoutingPolicyRules or null == false
        && (foreign scripted).ManageForeignRoutes or null == false)
      "systemd.network.config.networkConfig = ${show (foreign scripted)}")
    (test "NetworkManager: networkd keeps foreign routing policy rules and routes"
      ((foreign nm).ManageForeignRoutingPolicyRules or null == false && (foreign nm).ManageForeignRoutes or null == false)
      "systemd.network.config.networkConfig = ${show (foreign nm)}")
    (test "networkd host: networkd's own defaults for foreign rules and routes"
      (!(foreign networkd ? ManageForeignRoutingPolicyRules) && !(foreign networkd ? ManageForeignRoutes))
      "systemd.network.config.networkConfig = ${show (foreign networkd)}")

    # DNS for containers without resolved: the file networkd's DHCP server reads
    # is kept at the host's resolvers, before every container start.
    (test "resolved disabled: nixos-nspawn-uplink-dns keeps networkd's DHCP-server DNS file at the host's resolvers"
      (dnsService noResolved != null
        && lib.hasInfix "uplink-dns.sh" (dnsService noResolved).serviceConfig.ExecStart
        && (dnsPath noResolved).pathConfig.PathChanged or null == "/etc/resolv.conf"
        && builtins.elem "nixos-nspawn-uplink-dns.service" (nspawnTemplate noResolved).wants
        && builtins.elem "nixos-nspawn-uplink-dns.service" (nspawnTemplate noResolved).after)
      "service ${show (if dnsService noResolved == null then null else (dnsService noResolved).serviceConfig or null)}, path ${show (if dnsPath noResolved == null then null else (dnsPath noResolved).pathConfig)}, systemd-nspawn@ wants ${show (nspawnTemplate noResolved).wants} after ${show (nspawnTemplate noResolved).after}")
    (test "NetworkManager with resolved disabled: the same"
      (dnsService nmNoResolved != null && dnsPath nmNoResolved != null)
      "no nixos-nspawn-uplink-dns service/path")
    (test "resolved runs (by default: nixpkgs' networkd.nix enables it with networkd; scripted, NetworkManager, networkd hosts, or enabled explicitly): resolved writes that file, no uplink-dns"
      (builtins.all (c: c.services.resolved.enable && dnsService c == null && dnsPath c == null
          && !(builtins.elem "nixos-nspawn-uplink-dns.service" (nspawnTemplate c).wants))
        [ scripted nm networkd withResolved ])
      "resolved: ${show (map (c: c.services.resolved.enable) [ scripted nm networkd withResolved ])}, uplink-dns: ${show (map (c: dnsService c != null) [ scripted nm networkd withResolved ])}")

    # Nix inside: the host's daemon only on request; the container's own daemon
    # socket decided by the mount, not by a socket file that survives restarts.
    (test "container: nix-daemon socket and service skipped only where the host's socket directory is bound"
      ((socketUnit plain).ConditionPathIsMountPoint or null == "!/nix/var/nix/daemon-socket"
        && (daemonUnit plain).ConditionPathIsMountPoint or null == "!/nix/var/nix/daemon-socket"
        && !((socketUnit plain) ? ConditionPathExists))
      "nix-daemon.socket [Unit] ${show (socketUnit plain)}, nix-daemon.service [Unit] ${show (daemonUnit plain)}")
    (test "container: no Nix by default (the store is read-only, the host's daemon is not bound)"
      (!plain.nix.enable && daemon.nix.enable)
      "nix.enable: default ${show plain.nix.enable}, with mountDaemonSocket ${show daemon.nix.enable}")
    (test "container: mountDaemonSocket without userNamespacing warns that the container's root is a trusted Nix user"
      (mentions "trusted user" daemon.warnings && !(mentions "trusted user" daemonUserns.warnings))
      "warnings: ${show daemon.warnings} / with userNamespacing ${show daemonUserns.warnings}")
    (test "container: nix.enable without the host's daemon is refused (its own daemon could write and collect the host's store)"
      (mentions "garbage collection" (failed ownNix) && failed plain == [ ] && failed daemon == [ ]
        && failed ownNixUserns == [ ] && mentions "cannot use the host's store" ownNixUserns.warnings)
      "assertions: ${show (failed ownNix)}; with userNamespacing: ${show (failed ownNixUserns)}, warnings ${show ownNixUserns.warnings}")
  ];
}
