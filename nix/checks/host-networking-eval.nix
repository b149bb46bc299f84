# What the host module and the container profile do for the host's own
# networking and for Nix inside, evaluated with nixpkgs' lib and the stand-ins
# (stubs.nix / container-stubs.nix plus vm-stubs.nix):
#
#   nix-instantiate --eval --strict --json nix/checks/host-networking-eval.nix \
#     --arg nixpkgsLib /path/to/nixpkgs/lib
#
# gives { results = [ { name; ok; detail; } ]; } (nix/checks/run prints them).
# modulesDir (default ../modules) is there to check another copy of the modules.
{ nixpkgsLib, modulesDir ? ../modules }:
let
  lib = import nixpkgsLib;
  vmStubs = import ./vm-stubs.nix { inherit lib; };

  host = modules: (lib.evalModules {
    modules = vmStubs.host [ ./stubs.nix ] ++ [ (vmStubs.hostPkgsModule [ ./stubs.nix ]) (modulesDir + "/hypervisor.nix") ] ++ modules;
  }).config;
  container = modules: (lib.evalModules {
    modules = vmStubs.container [ ./container-stubs.nix ] ++ [
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

  foreign = cfg: cfg.systemd.network.config.networkConfig;
  dnsService = cfg: cfg.systemd.services.nixos-nspawn-uplink-dns or null;
  dnsPath = cfg: cfg.systemd.paths.nixos-nspawn-uplink-dns or null;
  nspawnTemplate = cfg: cfg.systemd.services."systemd-nspawn@";

  plain = container [ ];
  daemon = container [ { nixosContainer.mountDaemonSocket = true; } ];
  daemonUserns = container [ { nixosContainer = { mountDaemonSocket = true; userNamespacing = true; }; } ];
  ownNix = container [ { nix.enable = true; } ];
  ownNixUserns = container [ { nix.enable = true; nixosContainer.userNamespacing = true; } ];
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
    (test "no resolved: nixos-nspawn-uplink-dns keeps networkd's DHCP-server DNS file at the host's resolvers"
      (dnsService scripted != null
        && lib.hasInfix "uplink-dns.sh" (dnsService scripted).serviceConfig.ExecStart
        && (dnsPath scripted).pathConfig.PathChanged or null == "/etc/resolv.conf"
        && builtins.elem "nixos-nspawn-uplink-dns.service" ((nspawnTemplate scripted).wants or [ ])
        && builtins.elem "nixos-nspawn-uplink-dns.service" ((nspawnTemplate scripted).after or [ ]))
      "service ${show (if dnsService scripted == null then null else (dnsService scripted).serviceConfig or null)}, path ${show (if dnsPath scripted == null then null else (dnsPath scripted).pathConfig)}, systemd-nspawn@: ${show (removeAttrs (nspawnTemplate scripted) [ "restartIfChanged" ])}")
    (test "NetworkManager without resolved: the same"
      (dnsService nm != null && dnsPath nm != null)
      "no nixos-nspawn-uplink-dns service/path")
    (test "resolved runs (networkd host, or enabled): resolved writes that file, no uplink-dns"
      (dnsService networkd == null && dnsService withResolved == null && dnsPath withResolved == null
        && !(builtins.elem "nixos-nspawn-uplink-dns.service" ((nspawnTemplate withResolved).wants or [ ])))
      "uplink-dns is configured although resolved runs")

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
