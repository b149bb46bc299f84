# The classic module's short options (nixpkgs'
# nixos/modules/virtualisation/nixos-containers.nix: containers.<name>.interfaces,
# macvlans, enableTun, allowedDevices, tmpfs, additionalCapabilities, extraFlags)
# -> what they contribute to a registry entry. Builtins only, like
# registry-entry.nix, whose `entry` applies `expand` to its option values first.
#
#   expand o   : the option values with the short options folded into the fields
#                the registry has (extraNspawn, extraService, bindMounts,
#                forwardPorts, ephemeral, systemCallFilter, userNamespacing) and
#                the short option names removed
#   problems o : { errors = [ { option; message; } ]; warnings = [ ... ]; } for
#                what the short options cannot express (module assertions)
#
# Classic meaning, and where it goes:
#   interfaces = [ IF ]             --network-interface=IF; the unit wants and is
#                                   ordered after sys-subsystem-net-devices-IF.device
#                                   -> Network.Interface=IF, Unit.Wants=/After=
#   macvlans = [ IF ]               --network-macvlan=IF -> Network.MACVLAN=IF
#   enableTun = true                CAP_NET_ADMIN and DeviceAllow=/dev/net/tun rwm
#                                   (nspawn creates /dev/net/tun in every container)
#   allowedDevices = [ { node; modifier; } ]
#                                   DeviceAllow=NODE MODIFIER of the service
#   tmpfs = [ PATH ]                --tmpfs=PATH -> Files.TemporaryFileSystem=PATH
#   additionalCapabilities = [ CAP ] --capability= -> Exec.Capability=CAP
#   extraFlags = [ FLAG ]           raw systemd-nspawn flags, word-split as the
#                                   classic start script does; each becomes its
#                                   .nspawn setting or registry field through the
#                                   flag table of nspawn-flags.nix; a flag without
#                                   one is an error naming it.
let
  inherit (builtins)
    attrNames concatLists concatStringsSep elem filter foldl' isAttrs isList isString length
    map match removeAttrs replaceStrings split substring stringLength;

  classic = import ./nspawn-flags.nix;

  names = [ "interfaces" "macvlans" "enableTun" "allowedDevices" "tmpfs" "additionalCapabilities" "extraFlags" ];

  optional = cond: x: if cond then [ x ] else [ ];
  toList = x: if isList x then x else [ x ];
  words = s: filter (w: isString w && w != "") (split "[[:space:]]+" s);

  # systemd's unit name escaping of a path (systemd-escape --path), for the
  # characters an interface name may have: `-` and a leading `.`.
  escapeIfname = i:
    let e = replaceStrings [ "-" ] [ "\\x2d" ] i; in
    if substring 0 1 e == "." then "\\x2e" + substring 1 (stringLength e - 1) e else e;
  deviceUnit = i: "sys-subsystem-net-devices-${escapeIfname i}.device";

  # extraFlags as the classic start script passes them: joined with spaces into
  # EXTRA_NSPAWN_FLAGS and split into words again.
  flagEffects = o: map classic.flagEffect (classic.flagPairs (words (concatStringsSep " " (o.extraFlags or [ ]))));
  collect = effects: attr: concatLists (map (e: e.${attr} or [ ]) effects);

  # What every short option adds: settings items { s; k; v; } for the .nspawn
  # file and the service drop-in, and the other fields.
  contributions = o:
    let
      tun = o.enableTun or false;
      ifaces = o.interfaces or [ ];
      devices = map (d: "${d.node} ${d.modifier}") (o.allowedDevices or [ ])
        ++ optional tun "/dev/net/tun rwm";
      effects = flagEffects o;
      ports = map classic.parsePort (collect effects "ports");
      privateUsers = collect effects "privateUsers";
      pu = if privateUsers == [ ] then null else builtins.elemAt privateUsers (length privateUsers - 1);
    in
    {
      nspawn =
        [
          { s = "Exec"; k = "Capability"; v = (o.additionalCapabilities or [ ]) ++ optional tun "CAP_NET_ADMIN"; }
          { s = "Files"; k = "TemporaryFileSystem"; v = o.tmpfs or [ ]; }
          { s = "Network"; k = "Interface"; v = ifaces; }
          { s = "Network"; k = "MACVLAN"; v = o.macvlans or [ ]; }
        ]
        ++ collect effects "nspawn"
        ++ optional (pu != null && pu != "pick" && pu != "no") { s = "Exec"; k = "PrivateUsers"; v = [ pu ]; };
      service = [
        { s = "Unit"; k = "Wants"; v = map deviceUnit ifaces; }
        { s = "Unit"; k = "After"; v = map deviceUnit ifaces; }
        { s = "Service"; k = "DeviceAllow"; v = devices; }
      ] ++ collect effects "service";
      binds = collect effects "binds";
      ports = filter (p: !(p ? error)) ports;
      portErrors = map (p: p.error) (filter (p: p ? error) ports);
      syscalls = collect effects "syscalls";
      ephemeral = builtins.any (e: e.ephemeral or false) effects;
      privateUsers = pu;
      notes = collect effects "notes";
      unsupported = collect effects "unsupported";
    };

  # Items appended to a settings value (the user's own keys first, as given;
  # a null there, which removes a generated key, is replaced).
  addItems = base: items:
    let
      start = if isAttrs base then base else { };
      result = foldl'
        (acc: i:
          let
            sec = acc.${i.s} or { };
            prev = if isAttrs sec then sec.${i.k} or null else null;
          in
          if i.v == [ ] || !isAttrs sec then acc
          else acc // { ${i.s} = sec // { ${i.k} = (if prev == null then [ ] else toList prev) ++ i.v; }; })
        start
        items;
    in
    if !isAttrs base && base != null then base # not settings: the parser reports it
    else if result == { } then base
    else result;

  expand = toSettings: o:
    if !(builtins.any (n: o ? ${n}) names) then o
    else
      let c = contributions o; in
      removeAttrs o names // {
        extraNspawn = addItems (toSettings (o.extraNspawn or null)) c.nspawn;
        extraService = addItems (toSettings (o.extraService or null)) c.service;
        bindMounts = (o.bindMounts or [ ]) ++ c.binds;
        forwardPorts = (o.forwardPorts or [ ]) ++ c.ports;
        ephemeral = (o.ephemeral or false) || c.ephemeral;
        systemCallFilter =
          let all = optional ((o.systemCallFilter or null) != null) o.systemCallFilter ++ c.syscalls; in
          if all == [ ] then null else concatStringsSep " " all;
      }
      // (if c.privateUsers == null then { } else { userNamespacing = c.privateUsers == "pick"; });

  # The classic flag table words its messages for .conf files; here they name the option.
  reword = m: replaceStrings [ "EXTRA_NSPAWN_FLAGS: " "HOST_PORT entry" ] [ "" "the --port value" ] m;

  problems = o:
    let c = contributions o; in
    {
      errors = map
        (m: {
          option = "extraFlags";
          message = "${reword m}. Flags that nixos-nspawn sets itself (--directory, --machine, --boot, --keep-unit, --settings, --network-veth, --network-zone, --network-bridge, ...) have options of their own: see docs/migration.md (\"extraFlags\").";
        })
        (c.unsupported ++ c.portErrors);
      warnings = map (m: { option = "extraFlags"; message = reword m; }) c.notes;
    };
in
{
  inherit names expand problems deviceUnit;
}
