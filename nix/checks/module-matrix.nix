# The host module on hosts shaped like nixpkgs 25.11's declarations: one host per
# `variant` (firewall with the iptables backend, with the nftables backend, no
# firewall, module disabled), each with a container of every network mode
# (veth, zone, bridge, host, none) given as a NixOS configuration (`config`) and
# as a built system (`path`). nix/checks/run evaluates each variant in a process
# of its own, so that one ending in an evaluation error (such as the infinite
# recursion of a definition whose attribute names depend on `config`) fails its
# own checks only:
#
#   nix-instantiate --eval --strict --json nix/checks/module-matrix.nix --argstr variant iptables -A results
#
# `names` (which needs no evaluation of the module) lists the checks `results` has.
{ nixpkgsLib ? null, variant }:
let
  c = import ./common.nix { inherit nixpkgsLib; };
  inherit (c) lib sys evalHost failed containersOf test show evaluates toplevelOf;
  inherit (lib) hasInfix attrNames;

  cases = import ./matrix-cases.nix;
  kinds = {
    config = name: { config = { pkgs, ... }: { environment.etc.marker.text = name; }; };
    path = name: { path = sys name; };
  };
  instances = cases.instances (kind: kinds.${kind});
  instanceNames = attrNames instances;
  modeOf = n: lib.head (lib.splitString "-" n);
  kindOf = n: lib.last (lib.splitString "-" n);

  enabled = variant != "module-off";
  host = evalHost [
    cases.variants.${variant}
    {
      nixos.containers.instances = instances;
      nixos.containers.zones = cases.zones;
    }
  ];
  entries = containersOf host;
  fw = host.networking.firewall;
  nftRules = host.networking.nftables.tables."nixos-fw".content or "";
  iptablesScript = host.systemd.services.firewall.script or "";
  udpRule = ''iifname { "ve-*", "vz-*" } udp dport { 53, 67, 68, 546, 547, 5355 } accept'';

  prefix = "matrix ${variant}: ";
  hostChecks = [
    (evaluates "${prefix}the host's system evaluates" (toplevelOf host))
    (test "${prefix}no failed assertions" (failed host == [ ]) (show (failed host)))
    (if variant == "iptables" then
      test "${prefix}DHCP/DNS open on ve-+/vz-+ (iptables), no nftables rules"
        (fw.backend == "iptables" && lib.elem 67 fw.interfaces."ve-+".allowedUDPPorts && lib.elem 53 fw.interfaces."vz-+".allowedTCPPorts
          && fw.extraInputRules == "" && hasInfix "-i ve-+ -p udp --dport 67 " iptablesScript)
        (show [ fw.interfaces fw.extraInputRules iptablesScript ])
    else if variant == "nftables" then
      test "${prefix}DHCP/DNS open on ve-*/vz-* (nftables input-allow chain), no iptables interfaces"
        (fw.backend == "nftables" && hasInfix udpRule fw.extraInputRules && hasInfix udpRule nftRules
          && fw.interfaces == { } && !(host.systemd.services ? firewall))
        (show [ fw.extraInputRules fw.interfaces ])
    else
      test "${prefix}nothing opened in the firewall"
        (fw.interfaces == { } && fw.extraInputRules == "") (show [ fw.interfaces fw.extraInputRules ]))
    (test "${prefix}${if enabled then "one registry entry per container" else "no registry entries"}"
      (attrNames entries == (if enabled then lib.sort (a: b: a < b) instanceNames else [ ]))
      (show (attrNames entries)))
  ];
  instanceChecks = map
    (n:
      let
        e = entries.${n} or null;
        ev = host.nixos.containers.evaluated.${n};
        ok =
          if !enabled then e == null
          else e != null && e.network.mode == modeOf n && e.declarative
            && (if kindOf n == "path" then e.system == sys n
                else hasInfix "-nixos-system-${n}-" e.system && ev.config.environment.etc.marker.text == n
                  && ev.config.networking.hostName == n && ev.config.boot.isContainer);
      in
      test "${prefix}${modeOf n} network, ${kindOf n} instance" ok (show e))
    instanceNames;
in
{
  names = map (r: r.name) (hostChecks ++ instanceChecks);
  results = hostChecks ++ instanceChecks;
  variants = attrNames cases.variants;
}
