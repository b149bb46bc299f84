# systemd-nspawn command-line flags -> what they become in a registry entry:
# the table behind the module's `extraFlags` option (nix/lib/short-options.nix).
# `nixos-nspawn import-classic` maps a classic .conf file's EXTRA_NSPAWN_FLAGS
# with the Rust twin of this table (crates/cli/src/classic/convert.rs); the
# contract test feeds what this one produces to the Rust parser. Builtins only.
#
#   flagPairs [ TOKEN ]  -> [ { flag; value; } ]  (`--flag VALUE` and `--flag=VALUE`)
#   flagEffect { flag; value; } -> { binds; nspawn = [ { s; k; v; } ]; syscalls;
#                                    privateUsers; ports; ephemeral; notes; unsupported; }
#   parsePort "[PROTOCOL:]HOSTPORT[:CONTAINERPORT]" -> { protocol; hostPort; containerPort; } or { error; }
let
  inherit (builtins)
    concatStringsSep elemAt filter foldl' head isString length match split tail;

  splitOn = sep: s: filter isString (split sep s);

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

in
{
  inherit flagPairs flagEffect parsePort;
}
