# systemd-nspawn command-line flags -> what they become in a registry entry, as
# the table nspawn-flags.json says (the one table; `nixos-nspawn import-classic`
# reads it too, crates/cli/src/classic/flags.rs). Used by the module's classic
# `extraFlags` option (nix/lib/short-options.nix). Builtins only.
#
#   flagPairs [ TOKEN ]  -> [ { flag; value; } ]  (`--flag VALUE` and `--flag=VALUE`)
#   flagEffect { flag; value; } -> { binds; nspawn = [ { s; k; v; } ]; service = [ { s; k; v; } ];
#                                    syscalls; privateUsers; ports; ephemeral; notes; unsupported; }
#   parsePort "[PROTOCOL:]HOSTPORT[:CONTAINERPORT]" -> { protocol; hostPort; containerPort; } or { error; }
let
  inherit (builtins)
    attrNames concatLists concatStringsSep elem elemAt filter foldl' head isString length listToAttrs
    map match split substring stringLength tail;

  table = builtins.fromJSON (builtins.readFile ./nspawn-flags.json);
  # every spelling -> its table row (aliases included)
  rows = listToAttrs (concatLists (map
    (f: map (name: { inherit name; value = table.flags.${f}; }) ([ f ] ++ table.flags.${f}.aliases or [ ]))
    (attrNames table.flags)));

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

  flagPairs = tokens:
    (foldl'
      (acc: t:
        if acc.pending != null then acc // { pending = null; out = acc.out ++ [ { flag = acc.pending; value = t; } ]; }
        else
          let m = match "(--?[A-Za-z-]+)=(.*)" t; in
          if m != null then acc // { out = acc.out ++ [ { flag = head m; value = elemAt m 1; } ]; }
          else if (rows.${t}.value or false) then acc // { pending = t; }
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

  # "NAME=VALUE" -> { name; value; } or null
  assignment = v: let m = if v == null then null else match "([^=]+)=(.*)" v; in
    if m == null then null else { name = head m; value = elemAt m 1; };
  # --rlimit's NAME: RLIMIT_NAME, LimitNAME or NAME
  rlimitName = n:
    let
      strip = p: if substring 0 (stringLength p) n == p then substring (stringLength p) (stringLength n) n else null;
      bare = if strip "RLIMIT_" != null then strip "RLIMIT_" else if strip "Limit" != null then strip "Limit" else n;
    in
    if elem bare table.rlimits then bare else null;

  invalid = f: row: { unsupported = [ "EXTRA_NSPAWN_FLAGS: ${f.flag}=${f.value} ${row.invalid}" ]; };
  unsupported = f: {
    unsupported = [ "EXTRA_NSPAWN_FLAGS: ${f.flag}${if f.value == null then "" else "=${f.value}"} has no nixos-nspawn equivalent; add it to extraNspawn (systemd.nspawn(5)) by hand if it has a .nspawn setting" ];
  };

  # One flag -> { options contributions; nspawn settings; notes; unsupported }
  flagEffect = f:
    let
      row = rows.${f.flag} or { kind = "unsupported"; };
      kind = row.kind;
      v = if row ? set then row.set else if f.value == null then row.default or null else f.value;
      values = if row ? split then splitOn row.split v else [ v ];
      a = assignment v;
      limit = if a == null then null else rlimitName a.name;
    in
    if kind == "nspawn" then { nspawn = [ { s = row.section; k = row.key; v = values; } ]; }
    else if kind == "service" then (if a == null then invalid f row else { service = [ { s = "Service"; k = a.name; v = [ a.value ]; } ]; })
    else if kind == "rlimit" then (if limit == null then invalid f row else { nspawn = [ { s = "Exec"; k = "Limit${limit}"; v = [ a.value ]; } ]; })
    else if kind == "bind" then { binds = [ (bindOf false v) ]; }
    else if kind == "bindReadOnly" then { binds = [ (bindOf true v) ]; }
    else if kind == "syscalls" then { syscalls = [ v ]; }
    else if kind == "privateUsers" then { privateUsers = [ v ]; }
    else if kind == "port" then { ports = [ v ]; }
    else if kind == "ephemeral" then { ephemeral = true; }
    else if kind == "ignored" then { }
    else if kind == "note" then { notes = [ "EXTRA_NSPAWN_FLAGS: ${f.flag}=${v} ${row.note}" ]; }
    else unsupported f;

in
{
  inherit flagPairs flagEffect parsePort;
}
