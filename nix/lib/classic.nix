# The mapping from a classic NixOS container's configuration file
# (/etc/nixos-containers/NAME.conf, or /etc/containers/NAME.conf before
# stateVersion 22.05) to a nixos-nspawn registry entry, as docs/migration.md
# describes it. This is the reference for `nixos-nspawn import-classic` and is
# checked by nix/tests/contract.nix (its results must be accepted by the Rust
# parser). Builtins only.
#
#   fromConf { name; text; system; }
#     name   : the container name (the .conf file's stem)
#     text   : the .conf file's contents
#     system : the system to run: for an imperative container the target of
#              /nix/var/nix/profiles/per-container/NAME/system; null to use
#              SYSTEM_PATH= of the file (declarative containers)
#   -> {
#     options  : option values, named as nixos.containers.instances.<name>.*
#     entry    : the registry entry (declarative = false)
#     container: what the container's own configuration needs instead of the
#                classic init's eth0 setup (nixosContainer.containerNetworkConfig,
#                NixOS systemd.network.networks form), or null
#     notes    : things the user must know or do (shown by the importer)
#     unsupported: settings with no equivalent; the importer refuses unless forced
#   }
let
  inherit (builtins)
    concatLists concatStringsSep elemAt filter foldl' head isString length listToAttrs
    map match split substring stringLength tail;

  registry = import ./registry-entry.nix;

  words = s: filter (w: isString w && w != "") (split "[[:space:]]+" s);
  splitOn = sep: s: filter isString (split sep s);
  hasPrefix = pre: s: substring 0 (stringLength pre) s == pre;
  optional = cond: x: if cond then [ x ] else [ ];
  optionals = cond: xs: if cond then xs else [ ];

  # KEY=VALUE lines; values may be quoted ("…" or '…'), as systemd's
  # EnvironmentFile= reads them.
  parseConf = text:
    let
      lines = filter isString (split "\n" text);
      parsed = map (l: match "[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)" l) lines;
      unquote = v:
        let
          dq = match "\"(.*)\"[[:space:]]*" v;
          sq = match "'(.*)'[[:space:]]*" v;
          plain = match "([^[:space:]]*)[[:space:]]*" v;
        in
        if dq != null then head dq else if sq != null then head sq else if plain != null then head plain else v;
    in
    # The last assignment wins, as with EnvironmentFile= (listToAttrs keeps
    # the first, so feed it the assignments in reverse).
    let assignments = filter (m: m != null) parsed;
        n = length assignments;
    in
    listToAttrs (builtins.genList (i: let m = elemAt assignments (n - 1 - i); in { name = head m; value = unquote (elemAt m 1); }) n);

  withPrefix = default: a: if match ".*/.*" a != null then a else "${a}/${default}";

  # nspawn's --port syntax: [PROTOCOL:]HOSTPORT[:CONTAINERPORT]
  parsePort = s:
    let
      parts = splitOn ":" s;
      proto = if length parts > 0 && (head parts == "tcp" || head parts == "udp") then head parts else null;
      rest = if proto == null then parts else tail parts;
      num = x: if match "[0-9]+" x != null then builtins.fromJSON x else null;
    in
    if rest == [ ] || length rest > 2 || num (head rest) == null
      || (length rest == 2 && num (elemAt rest 1) == null)
    then { error = "HOST_PORT entry ${builtins.toJSON s} is not [tcp:|udp:]HOSTPORT[:CONTAINERPORT]"; }
    else {
      protocol = if proto == null then "tcp" else proto;
      hostPort = num (head rest);
      containerPort = if length rest == 2 then num (elemAt rest 1) else null;
    };

  # systemd-nspawn flags of EXTRA_NSPAWN_FLAGS (the classic declarative module puts
  # bindMounts and extraFlags there) -> options. `--flag VALUE` and `--flag=VALUE`.
  valueFlags = [
    "--bind" "--bind-ro" "--capability" "--drop-capability" "--tmpfs" "--system-call-filter"
    "--private-users" "--private-users-ownership" "--network-veth-extra" "--network-interface"
    "--network-macvlan" "--network-ipvlan" "--port" "-p" "--setenv" "-E" "--resolv-conf" "--timezone"
    "--link-journal" "--overlay" "--overlay-ro" "--inaccessible" "--personality" "--hostname"
    "--no-new-privileges" "--network-bridge" "--network-zone" "--kill-signal"
  ];
  flagPairs = tokens:
    (foldl'
      (acc: t:
        if acc.pending != null then acc // { pending = null; out = acc.out ++ [ { flag = acc.pending; value = t; } ]; }
        else
          let m = match "(--?[A-Za-z-]+)=(.*)" t; in
          if m != null then acc // { out = acc.out ++ [ { flag = head m; value = elemAt m 1; } ]; }
          else if builtins.elem t valueFlags then acc // { pending = t; }
          else acc // { out = acc.out ++ [ { flag = t; value = null; } ]; })
      { pending = null; out = [ ]; }
      tokens).out;

  # nspawn's --bind[-ro]=SRC[:DST[:OPTS]] -> our bind mount string
  bindOf = readOnly: v:
    let
      parts = splitOn ":" v;
      src = head parts;
      dst = if length parts >= 2 && elemAt parts 1 != "" then elemAt parts 1 else src;
      opts = if length parts >= 3 then filter (o: o != "") (splitOn "," (elemAt parts 2)) else [ ];
      all = (if readOnly then [ "ro" ] else [ ]) ++ filter (o: o != "ro") opts;
    in
    "${src}:${dst}" + (if all == [ ] then "" else ":" + concatStringsSep "," all);

  # Flags -> { options contributions; nspawn settings; notes; unsupported }
  flagEffect = f:
    let v = f.value; in
    if f.flag == "--bind" then { binds = [ (bindOf false v) ]; }
    else if f.flag == "--bind-ro" then { binds = [ (bindOf true v) ]; }
    else if f.flag == "--capability" then { nspawn = [ { s = "Exec"; k = "Capability"; v = splitOn "," v; } ]; }
    else if f.flag == "--drop-capability" then { nspawn = [ { s = "Exec"; k = "DropCapability"; v = splitOn "," v; } ]; }
    else if f.flag == "--tmpfs" then { nspawn = [ { s = "Files"; k = "TemporaryFileSystem"; v = [ v ]; } ]; }
    else if f.flag == "--system-call-filter" then { syscalls = [ v ]; }
    else if f.flag == "--private-users" then { privateUsers = [ v ]; }
    else if f.flag == "--private-users-ownership" then { nspawn = [ { s = "Files"; k = "PrivateUsersOwnership"; v = [ v ]; } ]; }
    else if f.flag == "--network-veth-extra" then { nspawn = [ { s = "Network"; k = "VirtualEthernetExtra"; v = [ v ]; } ]; }
    else if f.flag == "--network-interface" then { nspawn = [ { s = "Network"; k = "Interface"; v = [ v ]; } ]; }
    else if f.flag == "--network-macvlan" then { nspawn = [ { s = "Network"; k = "MACVLAN"; v = [ v ]; } ]; }
    else if f.flag == "--network-ipvlan" then { nspawn = [ { s = "Network"; k = "IPVLAN"; v = [ v ]; } ]; }
    else if f.flag == "--port" || f.flag == "-p" then { ports = [ v ]; }
    else if f.flag == "--setenv" || f.flag == "-E" then { nspawn = [ { s = "Exec"; k = "Environment"; v = [ v ]; } ]; }
    else if f.flag == "--resolv-conf" then { nspawn = [ { s = "Exec"; k = "ResolvConf"; v = [ v ]; } ]; }
    else if f.flag == "--timezone" then { nspawn = [ { s = "Exec"; k = "Timezone"; v = [ v ]; } ]; }
    else if f.flag == "--overlay" then { nspawn = [ { s = "Files"; k = "Overlay"; v = [ v ]; } ]; }
    else if f.flag == "--overlay-ro" then { nspawn = [ { s = "Files"; k = "OverlayReadOnly"; v = [ v ]; } ]; }
    else if f.flag == "--inaccessible" then { nspawn = [ { s = "Files"; k = "Inaccessible"; v = [ v ]; } ]; }
    else if f.flag == "--personality" then { nspawn = [ { s = "Exec"; k = "Personality"; v = [ v ]; } ]; }
    else if f.flag == "--hostname" then { nspawn = [ { s = "Exec"; k = "Hostname"; v = [ v ]; } ]; }
    else if f.flag == "--no-new-privileges" then { nspawn = [ { s = "Exec"; k = "NoNewPrivileges"; v = [ v ]; } ]; }
    else if f.flag == "--read-only" then { nspawn = [ { s = "Files"; k = "ReadOnly"; v = [ true ]; } ]; }
    else if f.flag == "--ephemeral" || f.flag == "-x" then { ephemeral = true; }
    else if f.flag == "--private-network" then { }
    else if f.flag == "--link-journal" then { notes = [ "EXTRA_NSPAWN_FLAGS: ${f.flag}=${v} dropped: nixos-nspawn always uses LinkJournal=try-guest" ]; }
    else { unsupported = [ "EXTRA_NSPAWN_FLAGS: ${f.flag}${if v == null then "" else "=${v}"} has no nixos-nspawn equivalent; add it to extraNspawn (systemd.nspawn(5)) by hand if it has a .nspawn setting" ]; };

  fromConf = { name, text, system ? null }:
    let
      conf = parseConf text;
      get = k: conf.${k} or "";
      known = [
        "SYSTEM_PATH" "FLAKE" "COPY_RESOLV_CONF" "PRIVATE_NETWORK" "HOST_BRIDGE" "HOST_PORT"
        "HOST_ADDRESS" "HOST_ADDRESS6" "LOCAL_ADDRESS" "LOCAL_ADDRESS6" "LOCAL_MAC_ADDRESS"
        "NETWORK_NAMESPACE_PATH" "PRIVATE_USERS" "INTERFACES" "MACVLANS" "AUTO_START"
        "EXTRA_NSPAWN_FLAGS"
      ];
      unknownKeys = filter (k: !(builtins.elem k known)) (builtins.attrNames conf);

      effects = map flagEffect (flagPairs (words (get "EXTRA_NSPAWN_FLAGS")));
      collect = attr: concatLists (map (e: e.${attr} or [ ]) effects);

      private = get "PRIVATE_NETWORK" == "1";
      bridge = get "HOST_BRIDGE";
      interfaces = words (get "INTERFACES");
      macvlans = words (get "MACVLANS");
      hostAddr = get "HOST_ADDRESS";
      hostAddr6 = get "HOST_ADDRESS6";
      localAddr = get "LOCAL_ADDRESS";
      localAddr6 = get "LOCAL_ADDRESS6";
      mac = get "LOCAL_MAC_ADDRESS";
      anyAddress = hostAddr != "" || hostAddr6 != "" || localAddr != "" || localAddr6 != "";
      portStrings = filter (p: p != "") (splitOn "," (get "HOST_PORT")) ++ collect "ports";
      ports = map parsePort portStrings;

      # The classic start script: --network-bridge when HOST_BRIDGE is set,
      # --network-veth when an address or a MAC address is set, otherwise only
      # --private-network (no interfaces); moved interfaces imply a private network.
      mode =
        if bridge != "" then "bridge"
        else if private && (anyAddress || mac != "") then "veth"
        else if private && ports != [ ] then "veth"
        else if private || interfaces != [ ] || macvlans != [ ] then "none"
        else "host";

      # Host side of the veth link: the classic postStart put HOST_ADDRESS on ve-NAME
      # and a route to LOCAL_ADDRESS; a point-to-point pair says the same.
      pair = host: local: plen:
        if host != "" && local != "" then [ { Address = withPrefix plen host; Peer = withPrefix plen local; } ]
        else if host != "" then [ { Address = withPrefix plen host; } ]
        else [ ];
      hostRoutes = optionals (hostAddr == "" && localAddr != "") [ { Destination = withPrefix "32" localAddr; } ]
        ++ optionals (hostAddr6 == "" && localAddr6 != "") [ { Destination = withPrefix "128" localAddr6; } ];
      hostNetworkConfig =
        if mode == "veth" && anyAddress then
          { Network = { Address = null; DHCPServer = false; }; }
          // (let a = pair hostAddr localAddr "32" ++ pair hostAddr6 localAddr6 "128"; in if a == [ ] then { } else { Address = a; })
          // (if hostRoutes == [ ] then { } else { Route = hostRoutes; })
        else null;

      # The container side, which the classic init configured on eth0.
      containerPair = local: host: plen:
        optional (local != "") ({ Address = withPrefix plen local; } // (if host != "" then { Peer = withPrefix plen host; } else { }));
      container =
        if mode == "veth" && anyAddress || mac != "" then
          {
            addresses = containerPair localAddr hostAddr "32" ++ containerPair localAddr6 hostAddr6 "128";
            gateway = optional (hostAddr != "") hostAddr ++ optional (hostAddr6 != "") hostAddr6;
            networkConfig.DHCP = "no";
          }
          // (if mac != "" then { linkConfig.MACAddress = mac; } else { })
        else null;

      privateUsers = (if get "PRIVATE_USERS" == "" then [ ] else [ (get "PRIVATE_USERS") ]) ++ collect "privateUsers";
      pu = if privateUsers == [ ] then "no" else builtins.elemAt privateUsers (length privateUsers - 1);

      nspawnItems = collect "nspawn"
        ++ map (i: { s = "Network"; k = "Interface"; v = [ i ]; }) interfaces
        ++ map (i: { s = "Network"; k = "MACVLAN"; v = [ i ]; }) macvlans
        ++ optional (pu != "no" && pu != "pick") { s = "Exec"; k = "PrivateUsers"; v = [ pu ]; };
      extraNspawn = foldl'
        (acc: i: acc // { ${i.s} = (acc.${i.s} or { }) // { ${i.k} = ((acc.${i.s} or { }).${i.k} or [ ]) ++ i.v; }; })
        { }
        nspawnItems;

      systemPath = if system != null then system else get "SYSTEM_PATH";

      options = {
        inherit name;
        system = systemPath;
        declarative = false;
        autoStart = get "AUTO_START" == "1";
        ephemeral = builtins.any (e: e.ephemeral or false) effects;
        userNamespacing = pu == "pick";
        # container@.service's TimeoutStartSec for imperative containers
        timeoutStartSec = "1min";
        systemCallFilter = if collect "syscalls" == [ ] then null else concatStringsSep " " (collect "syscalls");
        # the classic containers always see the whole store and the daemon
        sharedNix = true;
        mountDaemonSocket = true;
        bindMounts = collect "binds";
        forwardPorts = filter (p: !(p ? error)) ports;
        networkMode = mode;
        bridge = if bridge == "" then null else bridge;
        inherit hostNetworkConfig;
        extraNspawn = if extraNspawn == { } then null else extraNspawn;
      };
    in
    {
      inherit options container;
      entry = registry.entry options;
      notes =
        collect "notes"
        ++ optional (get "FLAKE" != "")
          "FLAKE=${get "FLAKE"}: the system was built from nixosConfigurations.<attr> of that flake; to keep updating it from a flake, expose it as nixosContainers.<system>.<attr> = nixos-nspawn.lib.mkContainer { ... } and run `nixos-nspawn update ${name} --flake REF#ATTR`"
        ++ optional (get "COPY_RESOLV_CONF" == "1")
          "COPY_RESOLV_CONF=1 dropped: the container gets DNS servers from the host's DHCP server (networkd) and runs systemd-resolved; with static addresses set DNS in containerNetworkConfig"
        ++ optional (container != null)
          "the classic init configured eth0 from the addresses in the .conf file; nixos-nspawn's containers configure host0 with networkd themselves: rebuild the container with nixos-nspawn's container profile and nixosContainer.containerNetworkConfig = ${builtins.toJSON container}"
        ++ optional (mode == "none" && private)
          "PRIVATE_NETWORK=1 without addresses, bridge or ports gave the container a private network without interfaces (network mode \"none\")"
        ++ optional (mode == "veth")
          "the host side of ve-${name} now also masquerades the container's traffic (IPMasquerade=both, systemd's default); the classic module needed networking.nat for that"
        ++ optional (get "PRIVATE_USERS" != "" && pu != "no" && pu != "pick")
          "PRIVATE_USERS=${pu} kept as extraNspawn Exec.PrivateUsers; the host's /nix bind mounts are not idmapped in that mode"
        ++ map (k: "${k}=${get k} is not a setting the classic module writes; it was ignored") unknownKeys
        ++ [ "the classic profile /nix/var/nix/profiles/per-container/${name} and gcroots /nix/var/nix/gcroots/per-container/${name} are left in place; remove them when the container runs well" ];
      unsupported =
        optional (get "NETWORK_NAMESPACE_PATH" != "")
          "NETWORK_NAMESPACE_PATH=${get "NETWORK_NAMESPACE_PATH"}: joining an existing network namespace has no .nspawn setting; nixos-nspawn cannot express it"
        ++ map (p: p.error) (filter (p: p ? error) ports)
        ++ collect "unsupported";
    };
in
{
  inherit fromConf parseConf parsePort flagPairs flagEffect;
}
