# Option names of python-nixos-nspawn and of the classic containers.<name>
# module that nixos-nspawn spells differently. options.nix (and, for zones and
# `declarative`, hypervisor.nix) declares them hidden, so that a configuration
# copied from either fails with a message saying what to write here instead of
# "The option ... does not exist" (what mkRenamedOptionModule and
# mkRemovedOptionModule do for top-level options; they cannot be used inside a
# submodule, which has no `warnings` or `assertions`). Builtins only.
#
#   instance v : v = a container's option values (an instance or nixosContainer.*)
#                -> [ { option; message; warning ? false; } ]
#   zone zoneOptions name z: zoneOptions = the names a zone declares; z = a zone's values (its freeform attributes are python-nixos-nspawn's
#                systemd.network.networks settings) -> [ { option; message; } ]
#   hiddenNames: the classic names options.nix declares hidden (default null)
let
  inherit (builtins) attrNames concatMap filter isBool isInt isString toJSON;

  show = v: if isString v || isBool v || isInt v then toJSON v else "…";

  classic = {
    privateNetwork = v:
      if v == false then "networkMode = \"host\"; (the host's network, the classic default)"
      else "nothing for a private veth link ve-NAME with DHCP and NAT (nixos-nspawn's default), or networkMode = \"none\"; for a private network without interfaces (what privateNetwork = true without addresses gave)";
    hostBridge = v: "bridge = ${show v};";
    localMacAddress = v: "containerNetworkConfig.linkConfig.MACAddress = ${show v};";
    restartIfChanged = v:
      if v == false then "activation.strategy = \"none\";"
      else "activation.strategy = \"restart\"; (or leave the default \"dynamic\", which reloads when only the system changed)";
    copyResolvConf = _: "nothing: containers get DNS servers from the host's DHCP server and run systemd-resolved; with static addresses set containerNetworkConfig.dns = [ … ];";
    privateUsers = v:
      if v == "pick" then "userNamespacing = true;"
      else if v == "no" then "userNamespacing = false;"
      else "userNamespacing = false; extraNspawn.Exec.PrivateUsers = ${show (if isInt v then toString v else v)};";
    extraVeths = _: "extraNspawn.Network.VirtualEthernetExtra = [ \"HOSTIF:CONTAINERIF\" ]; and configure both ends with systemd.network.networks on the host and in config";
    networkNamespace = _: "nothing: systemd.nspawn(5) has no setting to join an existing network namespace, so nixos-nspawn cannot express it; remove the option";
    flake = v: "path = inputs.<flake>.nixosContainers.<system>.<name>; (built with nixos-nspawn's lib.mkContainer), or import the flake's module into config; imperatively `nixos-nspawn create NAME --flake ${if isString v then v else "REF"}#ATTR`";
  };
  hiddenNames = attrNames classic;

  # privateNetwork = true with what made the classic container's link a veth
  # (an address, a port) is what nixos-nspawn does anyway: accepted as it is.
  # (hostBridge is refused on its own.)
  meansVeth = v:
    v.privateNetwork or null == true && (v.networkMode or null) == null
    && ((v.forwardPorts or [ ]) != [ ]
      || builtins.any (n: (v.${n} or null) != null) [ "hostAddress" "localAddress" "hostAddress6" "localAddress6" "localMacAddress" ]);

  instance = v:
    concatMap
      (n: if (v.${n} or null) == null || (n == "privateNetwork" && meansVeth v) then [ ] else [ {
        option = n;
        message = "${n} is an option of the classic containers.<name> module; write ${classic.${n} v.${n}} (docs/migration.md has the table)";
      } ])
      hiddenNames
    ++ (if (v.declarative or null) == null then [ ] else [ {
      option = "declarative";
      message = "python-nixos-nspawn's declarative option is gone: every nixos.containers.instances.<name> is declarative, and containers made with `nixos-nspawn create` are imperative; remove it";
    } ])
    ++ (if ((v.activation or { }).autoStart or null) == null then [ ] else [ {
      option = "activation.autoStart";
      warning = true;
      message = "activation.autoStart is python-nixos-nspawn's name; it still works (and wins over autoStart), but write autoStart = ${show v.activation.autoStart}; instead";
    } ]);

  # zoneOptions: the names a zone declares (hypervisor.nix passes them).
  zone = zoneOptions: name: z:
    map
      (n: {
        option = n;
        message = "a zone has the options ${builtins.concatStringsSep " and " zoneOptions}: the settings of the zone's bridge vz-${name} (python-nixos-nspawn's nixos.containers.zones.<zone> = { systemd.network.networks settings }) are written nixos.containers.zones.${name}.hostNetworkConfig.${n} = …; (the same names: address, networkConfig, ipv6Prefixes, …)";
      })
      (filter (n: !(builtins.elem n zoneOptions) && n != "_module") (attrNames z));
in
{
  inherit instance zone hiddenNames;
}
