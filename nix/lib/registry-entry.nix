# nixos-nspawn registry, schema version 1: option values -> JSON-ready attribute sets.
#
# This file is the Nix half of the contract with the Rust registry parser
# (crates/core/src/registry.rs, DESIGN.md "Registry entry, schema version 1").
# It uses builtins only, so plain `nix-instantiate --eval --strict --json` can
# evaluate it without nixpkgs; the NixOS modules, lib.mkContainer and the contract
# checks all go through it.
#
#   entry     : option values (as the module options are named) -> registry entry
#   zone      : zone options -> zone file
#   toSettings: the "settings" form, accepting NixOS-style names as a convenience
#   validate / validateZone : the parser's rules, as a list of { field; option; message; }
#   policy    : combinations the parser accepts but that cannot work (module assertions)
#
# The parser also accepts an optional `source` field ({ config | expression | flake,
# platform, nixArgs }: what `nixos-nspawn create/update` built an imperative
# container from). Only the CLI writes it; `entry` never emits it and nothing here
# needs to check it (declarative entries have none).
let
  inherit (builtins)
    all any attrNames concatLists concatStringsSep elem elemAt filter foldl' genList
    head isAttrs isBool isFloat isInt isList isPath isString length listToAttrs map
    match removeAttrs replaceStrings stringLength substring tail toJSON typeOf;

  schemaVersion = 1;

  shortOptions = import ./short-options.nix;

  # ------------------------------------------------------------------ helpers
  optional = cond: x: if cond then [ x ] else [ ];
  optionals = cond: xs: if cond then xs else [ ];
  toList = x: if isList x then x else [ x ];
  imap0 = f: xs: genList (i: f i (elemAt xs i)) (length xs);
  splitOn = sep: s: filter isString (builtins.split sep s);
  hasPrefix = pre: s: substring 0 (stringLength pre) s == pre;
  hasSuffix = suf: s:
    let n = stringLength s; m = stringLength suf;
    in n >= m && substring (n - m) m s == suf;
  matches = re: s: match re s != null;
  show = v: if isString v then toJSON v else if v == null then "null" else toJSON v;
  isScalar = v: isString v || isInt v || isBool v || isFloat v || isPath v;

  err = field: message: { inherit field message; };

  # ------------------------------------------------------------------ value checks
  # Mirrors unit::check_value: nothing systemd would mangle in a unit file.
  checkValue = s:
    if matches ".*[[:cntrl:]].*" s then
      "${show s} contains a line break or control character, which cannot be written to a unit file"
    else if matches "[[:space:]].*|.*[[:space:]]" s then
      "${show s} has leading or trailing whitespace, which systemd would strip"
    else if hasSuffix "\\" s then
      "${show s} ends with a backslash, which systemd reads as a line continuation"
    else null;

  checkAbsPath = p:
    let v = checkValue p; in
    if v != null then v
    else if !hasPrefix "/" p then "${show p} is not an absolute path"
    else if stringLength p > 4096 then "is longer than PATH_MAX (4096)"
    else if stringLength p > 1 && (hasSuffix "/" p || matches ".*//.*" p) then
      "${show p} is not normalised (empty component)"
    else if any (c: c == "." || c == "..") (splitOn "/" p) then
      "${show p} contains '.' or '..' components"
    else null;

  checkBindPath = p:
    let a = checkAbsPath p; in
    if a != null then a
    else if matches ".*[[:space:]\\\\\"'].*" p then
      "${show p} contains whitespace, a quote or a backslash, which bind mount paths may not contain"
    else null;

  checkMachineName = n:
    if n == "" then "must not be empty"
    else if stringLength n > 64 then "is ${toString (stringLength n)} characters long; machine names have at most 64"
    else if any (l: l == "") (splitOn "\\." n) then "has an empty label (leading, trailing or double dot)"
    else if !all (matches "[A-Za-z0-9-]+") (splitOn "\\." n) then
      "contains a character other than ASCII letters, digits, '-' and '.'"
    else if any (l: hasPrefix "-" l || hasSuffix "-" l) (splitOn "\\." n) then
      "has a label that starts or ends with '-'"
    else if any (l: stringLength l > 63) (splitOn "\\." n) then
      let l = head (filter (l: stringLength l > 63) (splitOn "\\." n)); in
      "has a label of ${toString (stringLength l)} characters; each label (the parts between dots) has at most 63, as in a host name (the first label becomes the container's host name)"
    else null;

  checkIfname = n:
    if n == "" then "must not be empty"
    else if stringLength n > 15 then "is ${toString (stringLength n)} bytes long; interface names have at most 15"
    else if n == "." || n == ".." then "is not a valid interface name"
    else if !matches "[A-Za-z0-9_.-]+" n then
      "contains a character other than ASCII letters, digits, '-', '_' and '.'"
    else null;

  checkZoneName = z:
    if stringLength z > 12 then
      "is ${toString (stringLength z)} characters long; the bridge vz-${z} would exceed the 15-byte interface name limit (zones have at most 12)"
    else checkIfname z;

  checkCredentialId = id:
    if id == "" then "must not be empty"
    else if stringLength id > 255 then "is longer than 255 bytes"
    else if id == "." || id == ".." then "is not a valid credential id"
    else if !matches "[A-Za-z0-9_.@-]+" id then
      "contains a character other than ASCII letters, digits, '-', '_', '.' and '@'"
    else null;

  timeUnits = "us|usec|ms|msec|s|sec|second|seconds|m|min|minute|minutes|h|hr|hour|hours|d|day|days|w|week|weeks|M|month|months|y|year|years";
  checkTimespan = s:
    if s == "infinity" || matches "([0-9]+\\.?[0-9]*|\\.[0-9]+)[[:space:]]*(${timeUnits})?([[:space:]]+([0-9]+\\.?[0-9]*|\\.[0-9]+)[[:space:]]*(${timeUnits})?)*" s
    then null
    else "${show s} is not a systemd time span (e.g. \"90s\", \"5min\", \"infinity\")";

  checkSyscallFilter = s:
    if s == "" then "must not be empty (use null for no filter)"
    else if !matches "[A-Za-z0-9_@~: -]+" s then "${show s} contains a character other than syscall names and @groups"
    else null;

  isPort = p: isInt p && p >= 1 && p <= 65535;

  # A string-valued field: not a string, or a bad string.
  stringErrors = field: v: check:
    if !isString v then [ (err field "expected a string, found ${show v}") ]
    else
      let e = checkValue v; in
      if e != null then [ (err field e) ]
      else let c = check v; in optional (c != null) (err field c);

  # ------------------------------------------------------------------ bind mounts
  bindOptions = [ "rbind" "norbind" "idmap" "noidmap" "rootidmap" ];

  # "host[:container[:opt,opt]]" -> { host; container; readOnly; options; } or { error; }
  parseBind = s:
    let
      parts = splitOn ":" s;
      n = length parts;
      host = head parts;
      container = if n >= 2 && elemAt parts 1 != "" then elemAt parts 1 else host;
      opts = if n >= 3 then splitOn "," (elemAt parts 2) else [ ];
      badOpt = filter (o: !(elem o ([ "ro" "rw" ] ++ bindOptions))) opts;
      hostErr = checkBindPath host;
      contErr = checkBindPath container;
      # ro/rw: the last one wins, as in the parser
      readOnly = foldl' (acc: o: if o == "ro" then true else if o == "rw" then false else acc) false opts;
    in
    if n > 3 then { error = "${show s} has more than three ':'-separated parts; expected host[:container[:options]]"; }
    else if hostErr != null then { error = "${show s}: host path ${hostErr}"; }
    else if contErr != null then { error = "${show s}: container path ${contErr}"; }
    else if badOpt != [ ] then
      { error = "${show s}: unknown option ${show (head badOpt)}; expected ro, rw, ${concatStringsSep ", " bindOptions}"; }
    else {
      inherit host container readOnly;
      options = filter (o: elem o bindOptions) opts;
    };

  formatBind = b:
    let opts = optional b.readOnly "ro" ++ b.options; in
    "${b.host}:${b.container}" + (if opts == [ ] then "" else ":" + concatStringsSep "," opts);

  # ------------------------------------------------------------------ settings form
  # NixOS-style attribute names accepted as a convenience, translated to the
  # section names systemd uses. Capitalised names pass through unchanged.
  sectionAliases = {
    matchConfig = "Match";
    linkConfig = "Link";
    networkConfig = "Network";
    dhcpV4Config = "DHCPv4";
    dhcpV6Config = "DHCPv6";
    dhcpPrefixDelegationConfig = "DHCPPrefixDelegation";
    dhcpServerConfig = "DHCPServer";
    ipv6AcceptRAConfig = "IPv6AcceptRA";
    ipv6SendRAConfig = "IPv6SendRA";
    bridgeConfig = "Bridge";
    netdevConfig = "NetDev";
    execConfig = "Exec";
    filesConfig = "Files";
    unitConfig = "Unit";
    serviceConfig = "Service";
  };
  # Lists of repeated sections. Entries may also be written in the older
  # NixOS style `{ routeConfig = { ... }; }`.
  listAliases = {
    addresses = "Address";
    routes = "Route";
    routingPolicyRules = "RoutingPolicyRule";
    ipv6Prefixes = "IPv6Prefix";
    ipv6RoutePrefixes = "IPv6RoutePrefix";
    dhcpServerStaticLeases = "DHCPServerStaticLease";
    bridgeFDBs = "BridgeFDB";
  };
  # Single keys, appended to what the section already lists.
  keyAliases = {
    address = { section = "Network"; key = "Address"; };
    gateway = { section = "Network"; key = "Gateway"; };
    dns = { section = "Network"; key = "DNS"; };
    ntp = { section = "Network"; key = "NTP"; };
    domains = { section = "Network"; key = "Domains"; };
    vlan = { section = "Network"; key = "VLAN"; };
    macvlan = { section = "Network"; key = "MACVLAN"; };
    name = { section = "Match"; key = "Name"; };
  };

  isCapitalised = n: matches "[A-Z].*" n;

  unwrapLegacy = e:
    let ns = if isAttrs e then attrNames e else [ ]; in
    if length ns == 1 && matches "[a-z][A-Za-z0-9]*Config" (head ns) && isAttrs e.${head ns}
    then e.${head ns} else e;

  # Translate user input to the settings form. Pure renaming and merging:
  # problems are left in place for `settingsErrors` to report.
  toSettings = input:
    if input == null then null
    else if !isAttrs input then input
    else
      let
        names = attrNames input;
        sectionName = n: sectionAliases.${n} or n;
        plain = filter (n: !(listAliases ? ${n}) && !(keyAliases ? ${n})) names;
        # 1. sections given as attribute sets or lists, under either name
        step1 = foldl'
          (acc: n:
            let s = sectionName n; v = input.${n}; prev = acc.${s} or null; in
            acc // {
              ${s} =
                if prev == null then v
                else if isAttrs prev && isAttrs v then prev // v
                else if isList prev && isList v then prev ++ v
                else v; # mixed forms: reported by translationErrors
            })
          { }
          plain;
        # 2. repeated sections from list aliases
        step2 = foldl'
          (acc: n:
            let s = listAliases.${n}; prev = acc.${s} or [ ]; in
            acc // { ${s} = (if isList prev then prev else [ ]) ++ map unwrapLegacy (toList input.${n}); })
          step1
          (filter (n: listAliases ? ${n}) names);
        # 3. single keys appended to their section
        step3 = foldl'
          (acc: n:
            let
              a = keyAliases.${n};
              sec = acc.${a.section} or { };
              secAttrs = if isAttrs sec then sec else { };
              prev = secAttrs.${a.key} or null;
              merged = (if prev == null then [ ] else toList prev) ++ toList input.${n};
            in
            acc // { ${a.section} = secAttrs // { ${a.key} = merged; }; })
          step2
          (filter (n: keyAliases ? ${n}) names);
        # list aliases may wrap entries ({ routeConfig = ...; }) in plain lists too
        result = builtins.mapAttrs (_: v: if isList v then map unwrapLegacy v else v) step3;
      in
      if result == { } then null else result;

  # Problems in the user's input that translation cannot express.
  translationErrors = field: input:
    if input == null || !isAttrs input then [ ]
    else
      let
        names = attrNames input;
        unknown = filter
          (n: !isCapitalised n && !(sectionAliases ? ${n}) && !(listAliases ? ${n}) && !(keyAliases ? ${n}))
          names;
        targets = map
          (n: {
            section = sectionAliases.${n} or listAliases.${n} or keyAliases.${n}.section or n;
            repeated = listAliases ? ${n} || (!(keyAliases ? ${n}) && isList input.${n});
          })
          names;
        mixed = filter
          (s: any (t: t.section == s && t.repeated) targets && any (t: t.section == s && !t.repeated) targets)
          (map (t: t.section) targets);
      in
      map
        (n: err "${field}.${n}"
          (if n == "extraConfig" then
            "extraConfig is not supported; write the sections as attribute sets, e.g. { Network.IPv6PrivacyExtensions = true; }"
          else
            "unknown section ${show n}: use systemd's section names (Network, DHCPServer, Route, ...) or the NixOS-style names listed in docs/nixos.md (networkConfig, address, routes, ...)"))
        unknown
      ++ map (s: err "${field}.${s}" "is given both as one section (an attribute set) and as repeated sections (a list)") (uniq mixed);

  uniq = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];

  checkName = n:
    if matches "[A-Za-z][A-Za-z0-9_-]{0,63}" n then null else "${show n} is not a valid section or key name";

  scalarErrors = field: v:
    if isString v then let e = checkValue v; in optional (e != null) (err field e)
    else if isInt v || isBool v || isFloat v || isPath v then [ ]
    else [ (err field "expected a string, number or boolean, found ${show v}") ];

  valuesErrors = field: v:
    if isList v then concatLists (imap0 (i: x: scalarErrors "${field}[${toString i}]" x) v)
    else scalarErrors field v;

  keysErrors = path: allowNull: keys:
    concatLists (map
      (k:
        let kpath = "${path}.${k}"; v = keys.${k}; n = checkName k; in
        if n != null then [ (err kpath n) ]
        else if v == null then optional (!allowNull) (err kpath "expected a string, number or boolean, found null")
        else valuesErrors kpath v)
      (attrNames keys));

  # Keys whose values are addresses, as the parser checks them (rough shape only here).
  addressKeys = [
    { section = "Network"; key = "Address"; }
    { section = "Network"; key = "Gateway"; }
    { section = "Network"; key = "DNS"; }
    { section = "Address"; key = "Address"; }
    { section = "Address"; key = "Peer"; }
    { section = "Route"; key = "Destination"; }
    { section = "Route"; key = "Gateway"; }
    { section = "IPv6Prefix"; key = "Prefix"; }
    { section = "DHCPServerStaticLease"; key = "Address"; }
  ];
  octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
  looksLikeAddress = v:
    v == "" || v == "_dhcp4" || v == "_ipv6ra"
    || matches "${octet}\\.${octet}\\.${octet}\\.${octet}(/(3[0-2]|[12]?[0-9]))?" v
    || matches "[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?" v;
  addressErrors = section: spath: keys:
    concatLists (map
      (a:
        let v = keys.${a.key} or null; vs = if v == null then [ ] else toList v; in
        optionals (a.section == section && v != null)
          (concatLists (imap0
            (i: x: optional (isString x && !looksLikeAddress x)
              (err (if length vs > 1 then "${spath}.${a.key}[${toString i}]" else "${spath}.${a.key}")
                "${show x} is not an IP address or prefix like 10.0.0.1/24"))
            vs)))
      addressKeys);

  settingsErrors = network: path: s:
    if s == null then [ ]
    else if !isAttrs s then [ (err path "expected an object of sections, found ${show s}") ]
    else concatLists (map
      (sec:
        let spath = "${path}.${sec}"; body = s.${sec}; n = checkName sec; in
        if n != null then [ (err spath n) ]
        else if isAttrs body then
          keysErrors spath true body ++ optionals network (addressErrors sec spath body)
        else if isList body then
          concatLists (imap0
            (i: item:
              let ipath = "${spath}[${toString i}]"; in
              if !isAttrs item then [ (err ipath "expected an object of keys, found ${show item}") ]
              else keysErrors ipath false item ++ optionals network (addressErrors sec ipath item))
            body)
        else [ (err spath "expected an object of keys or a list of them, found ${show body}") ])
      (attrNames s));

  # ------------------------------------------------------------------ entries
  modes = [ "veth" "zone" "bridge" "host" "none" ];
  strategies = [ "none" "reload" "restart" "dynamic" ];

  networkModeOf = o:
    if (o.networkMode or null) != null then o.networkMode
    else if (o.zone or null) != null then "zone"
    else if (o.bridge or null) != null then "bridge"
    else "veth";

  emptyToNull = s: if s == null || s == { } then null else s;

  # Option values (named as the module options are) -> registry entry.
  # `name`, `system` and `declarative` come from the caller. The classic short
  # options (interfaces, macvlans, enableTun, allowedDevices, tmpfs,
  # additionalCapabilities, extraFlags) are folded into the other fields first
  # (nix/lib/short-options.nix).
  entry = o0:
    let
      o = shortOptions.expand toSettings o0;
      activation = o.activation or { };
      autoStart =
        if (activation.autoStart or null) != null then activation.autoStart
        else o.autoStart or true;
      mode = networkModeOf o;
    in
    {
      version = schemaVersion;
      inherit (o) name system;
      declarative = o.declarative or false;
      inherit autoStart;
      ephemeral = o.ephemeral or false;
      userNamespacing = o.userNamespacing or false;
      timeoutStartSec = o.timeoutStartSec or "90s";
      systemCallFilter = o.systemCallFilter or null;
      sharedNix = o.sharedNix or true;
      mountDaemonSocket = o.mountDaemonSocket or false;
      bindMounts = o.bindMounts or [ ];
      forwardPorts = map
        (p: {
          protocol = p.protocol or "tcp";
          hostPort = p.hostPort;
          containerPort = p.containerPort or null;
        })
        (o.forwardPorts or [ ]);
      credentials = map (c: { inherit (c) id path; }) (o.credentials or [ ]);
      network = {
        inherit mode;
        zone = o.zone or null;
        bridge = o.bridge or null;
        host = emptyToNull (toSettings (o.hostNetworkConfig or null));
      }
      # Fixed addresses, only when given (the parser's canonical JSON omits them).
      // listToAttrs (map (n: { name = n; value = o.${n}; })
        (filter (n: (o.${n} or null) != null) fixedAddressNames));
      activation = {
        strategy = activation.strategy or "dynamic";
        reloadScript = activation.reloadScript or null;
      };
      extraNspawn = emptyToNull (toSettings (o.extraNspawn or null));
      extraService = emptyToNull (toSettings (o.extraService or null));
    };

  fixedAddressNames = [ "hostAddress" "localAddress" "hostAddress6" "localAddress6" ];

  # network.hostAddress + localAddress (and the …6 pair): both or neither, mode
  # veth only, not with host-side addresses in network.host. (The address syntax
  # and the pair's subnet are checked by the parser, crates/core/src/addressing.rs.)
  fixedPairErrors = net: mode: h: l:
    let
      hv = net.${h} or null;
      lv = net.${l} or null;
      hostSetsAddress = net.host != null && isAttrs net.host
        && ((isAttrs (net.host.Network or null) && net.host.Network ? Address) || net.host ? Address);
    in
    if hv == null && lv == null then [ ]
    else if lv == null then [ (err "network.${l}" "is required with network.${h}") ]
    else if hv == null then [ (err "network.${h}" "is required with network.${l}") ]
    else stringErrors "network.${h}" hv (_: null) ++ stringErrors "network.${l}" lv (_: null)
      ++ optional (mode != "veth")
        (err "network.${h}" "fixed addresses apply to the ve- link of mode \"veth\" only, but network.mode is ${show mode}")
      ++ optional hostSetsAddress
        (err "network.${h}" "network.host also sets the host side's addresses (Network.Address or [Address]); use one or the other");

  # The parser's rules for one entry. Every error names the JSON field as the
  # parser does, and the module option it comes from.
  validate = e:
    let
      net = e.network;
      mode = net.mode;
      binds = map parseBind e.bindMounts;
      bindErrs = concatLists (imap0
        (i: s:
          let f = "bindMounts[${toString i}]"; in
          if !isString s then [ (err f "expected a string, found ${show s}") ]
          else let v = checkValue s; in
          if v != null then [ (err f v) ]
          else let b = elemAt binds i; in optional (b ? error) (err f b.error))
        e.bindMounts);
      goodBinds = imap0 (i: b: b // { index = i; }) binds;
      dupBindErrs = concatLists (imap0
        (i: b:
          let earlier = filter (c: !(c ? error) && !(b ? error) && c.index < i && c.container == b.container) goodBinds; in
          optional (earlier != [ ])
            (err "bindMounts[${toString i}]" "mounts over ${show b.container} again (already bindMounts[${toString (head earlier).index}])"))
        goodBinds);
      portErrs = concatLists (imap0
        (i: p:
          let f = "forwardPorts[${toString i}]"; in
          optional (!elem p.protocol [ "tcp" "udp" ]) (err "${f}.protocol" "${show p.protocol} is not one of \"tcp\", \"udp\"")
          ++ optional (!isPort p.hostPort) (err "${f}.hostPort" "${show p.hostPort} is not a port number (1-65535)")
          ++ optional (p.containerPort != null && !isPort p.containerPort)
            (err "${f}.containerPort" "${show p.containerPort} is not a port number (1-65535)")
          ++ optional
            (any (q: q.protocol == p.protocol && q.hostPort == p.hostPort) (genList (j: elemAt e.forwardPorts j) i))
            (err f "forwards ${p.protocol} host port ${toString p.hostPort} twice"))
        e.forwardPorts);
      credErrs = concatLists (imap0
        (i: c:
          let f = "credentials[${toString i}]"; in
          stringErrors "${f}.id" c.id (id: let x = checkCredentialId id; in if x == null then null else "${show id} ${x}")
          ++ optional (isString c.id && any (d: d.id == c.id) (genList (j: elemAt e.credentials j) i))
            (err "${f}.id" "${show c.id} is given twice")
          ++ stringErrors "${f}.path" c.path
            (p: if hasPrefix "/" p then checkAbsPath p
                else let x = checkCredentialId p; in
                if x == null then null else "${show p} is neither an absolute path nor a credential name: it ${x}"))
        e.credentials);
      zoneErrs =
        if net.zone == null then optional (mode == "zone") (err "network.zone" "is required when network.mode is \"zone\"")
        else if mode == "zone" then stringErrors "network.zone" net.zone (z: let x = checkZoneName z; in if x == null then null else "${show z} ${x}")
        else [ (err "network.zone" "${show net.zone} is set but network.mode is ${show mode}, not \"zone\"") ];
      bridgeErrs =
        if net.bridge == null then optional (mode == "bridge") (err "network.bridge" "is required when network.mode is \"bridge\"")
        else if mode == "bridge" then stringErrors "network.bridge" net.bridge (b: let x = checkIfname b; in if x == null then null else "${show b} ${x}")
        else [ (err "network.bridge" "${show net.bridge} is set but network.mode is ${show mode}, not \"bridge\"") ];
    in
    map withOption (
      optional (e.version != schemaVersion) (err "version" "${show e.version} is not a supported schema version")
      ++ stringErrors "name" e.name (n: let x = checkMachineName n; in if x == null then null else "${show n} ${x}")
      ++ stringErrors "system" e.system checkAbsPath
      ++ stringErrors "timeoutStartSec" e.timeoutStartSec checkTimespan
      ++ optionals (e.systemCallFilter != null) (stringErrors "systemCallFilter" e.systemCallFilter checkSyscallFilter)
      ++ bindErrs ++ dupBindErrs ++ portErrs
      ++ optional (e.forwardPorts != [ ] && elem mode [ "host" "none" ])
        (err "forwardPorts" "port forwarding needs a private network with an interface, but network.mode is ${show mode}")
      ++ credErrs
      ++ optional (!elem mode modes) (err "network.mode" "${show mode} is not one of ${concatStringsSep ", " (map show modes)}")
      ++ zoneErrs ++ bridgeErrs
      ++ fixedPairErrors net mode "hostAddress" "localAddress"
      ++ fixedPairErrors net mode "hostAddress6" "localAddress6"
      ++ settingsErrors true "network.host" net.host
      ++ optional (net.host != null && mode != "veth")
        (err "network.host" ("host-side settings apply to the ve- link of mode \"veth\" only, but network.mode is ${show mode}"
          + (if mode == "zone" then " (configure the zone in its zone file)" else "")))
      ++ optional (!elem e.activation.strategy strategies)
        (err "activation.strategy" "${show e.activation.strategy} is not one of ${concatStringsSep ", " (map show strategies)}")
      ++ optionals (e.activation.reloadScript != null) (stringErrors "activation.reloadScript" e.activation.reloadScript checkAbsPath)
      ++ settingsErrors false "extraNspawn" e.extraNspawn
      ++ settingsErrors false "extraService" e.extraService
    );

  # Which module option a registry field comes from, for assertion messages.
  optionOfField = field:
    let
      table = [
        { prefix = "network.zone"; option = "zone"; }
        { prefix = "network.bridge"; option = "bridge"; }
        { prefix = "network.host"; option = "hostNetworkConfig"; }
        { prefix = "network.mode"; option = "networkMode"; }
        { prefix = "network.hostAddress6"; option = "hostAddress6"; }
        { prefix = "network.localAddress6"; option = "localAddress6"; }
        { prefix = "network.hostAddress"; option = "hostAddress"; }
        { prefix = "network.localAddress"; option = "localAddress"; }
        { prefix = "system"; option = "path"; }
        { prefix = "bindMounts"; option = "bindMounts"; }
        { prefix = "forwardPorts"; option = "forwardPorts"; }
        { prefix = "credentials"; option = "credentials"; }
        { prefix = "extraNspawn"; option = "extraNspawn"; }
        { prefix = "extraService"; option = "extraService"; }
      ];
      hit = filter (t: hasPrefix t.prefix field) table;
    in
    if hit != [ ] then (head hit).option else field;

  withOption = e: e // { option = optionOfField e.field; };

  # Accepted by the parser, but cannot work; the module turns these into assertions.
  policy = e:
    let s = e.activation.strategy; in
    optional (!e.sharedNix && elem s [ "reload" "dynamic" ]) {
      field = "activation.strategy";
      option = "activation.strategy";
      message = "strategy ${show s} reloads a running container in place, but with sharedNix = false only the closure of the system it was started with is mounted, so a new system cannot be activated: set sharedNix = true, or activation.strategy = \"restart\" (or \"none\")";
    }
    ++ optional (e.activation.reloadScript != null && elem s [ "restart" "none" ]) {
      field = "activation.reloadScript";
      option = "activation.reloadScript";
      warning = true;
      message = "reloadScript is set but activation.strategy is ${show s}, which never reloads";
    };

  # Evaluated module options (nixosContainer.* or an instance) -> the attrs `entry`
  # takes. A reload script given as a Nix path or derivation becomes its store path.
  optionNames = [
    "autoStart" "ephemeral" "userNamespacing" "timeoutStartSec" "systemCallFilter" "sharedNix"
    "mountDaemonSocket" "bindMounts" "forwardPorts" "credentials" "zone" "bridge" "networkMode"
    "hostNetworkConfig" "extraNspawn" "extraService"
  ] ++ fixedAddressNames ++ shortOptions.names;
  fromOptions = cfg: extra:
    listToAttrs (map (n: { name = n; value = cfg.${n}; }) (filter (n: cfg ? ${n}) optionNames))
    // {
      forwardPorts = map (p: { inherit (p) protocol hostPort containerPort; }) (cfg.forwardPorts or [ ]);
      credentials = map (c: { inherit (c) id path; }) (cfg.credentials or [ ]);
      allowedDevices = map (d: { inherit (d) node modifier; }) (cfg.allowedDevices or [ ]);
      activation = {
        strategy = cfg.activation.strategy or "dynamic";
        reloadScript =
          let s = cfg.activation.reloadScript or null; in
          if s == null then null else "${s}";
        autoStart = cfg.activation.autoStart or null;
      };
    }
    // extra;

  # ------------------------------------------------------------------ zones
  zone = o: {
    version = schemaVersion;
    inherit (o) name;
    network = emptyToNull (toSettings (o.hostNetworkConfig or null));
    netdev = emptyToNull (toSettings (o.netdevConfig or null));
  };

  validateZone = z:
    map (e: e // { option = if hasPrefix "network" e.field then "hostNetworkConfig" else if hasPrefix "netdev" e.field then "netdevConfig" else e.field; }) (
      optional (z.version != schemaVersion) (err "version" "${show z.version} is not a supported schema version")
      ++ stringErrors "name" z.name (n: let x = checkZoneName n; in if x == null then null else "${show n} ${x}")
      ++ settingsErrors true "network" z.network
      ++ settingsErrors false "netdev" z.netdev
    );

  # ------------------------------------------------------------------ files
  containerFile = name: "nixos-nspawn/containers/${name}.json";
  zoneFile = name: "nixos-nspawn/zones/${name}.json";
in
{
  inherit schemaVersion entry zone fromOptions optionNames toSettings translationErrors validate validateZone policy
    parseBind formatBind networkModeOf optionOfField containerFile zoneFile;
  # What the classic short options cannot express: { errors; warnings; }, each
  # { option; message; } (nix/lib/short-options.nix).
  shortOptionProblems = shortOptions.problems;
  checks = {
    inherit checkValue checkAbsPath checkBindPath checkMachineName checkIfname checkZoneName
      checkCredentialId checkTimespan checkSyscallFilter;
  };
  # Every problem with one set of option values: translation, parser rules, policy.
  # Returns { errors = [ { field; option; message; } ]; warnings = [ ... ]; }.
  diagnose = o:
    let
      e = entry o;
      trans = map withOption (
        translationErrors "network.host" (o.hostNetworkConfig or null)
        ++ translationErrors "extraNspawn" (o.extraNspawn or null)
        ++ translationErrors "extraService" (o.extraService or null));
      pol = policy e;
      mode = e.network.mode;
      bothZoneAndBridge = e.network.zone != null && e.network.bridge != null;
      # Clearer words for the usual mistakes than the parser's field-by-field view.
      friendly = x:
        if bothZoneAndBridge && x.field == "network.bridge" then
          x // { message = "zone (${show e.network.zone}) and bridge (${show e.network.bridge}) are both set: a container joins either a zone (the bridge vz-ZONE that nixos-nspawn manages) or an existing bridge, not both"; }
        else if x.field == "network.host" && mode == "zone" then
          x // { message = "hostNetworkConfig configures the host side of a container's own link (ve-NAME, mode \"veth\"), but this container is in zone ${show e.network.zone}: configure the zone's bridge vz-${e.network.zone} in the zone's settings (nixos.containers.zones.${e.network.zone}.hostNetworkConfig on the host)"; }
        else if x.field == "network.host" && mode == "bridge" then
          x // { message = "hostNetworkConfig configures the host side of a container's own link (ve-NAME, mode \"veth\"), but this container is attached to the bridge ${show e.network.bridge}: configure that bridge in the host's own network configuration"; }
        else if x.field == "network.host" then
          x // { message = "hostNetworkConfig configures the host side of a container's own link (ve-NAME), but network mode ${show mode} has no such link"; }
        else x;
    in
    {
      errors = trans ++ map friendly (validate e) ++ filter (p: !(p.warning or false)) pol;
      warnings = filter (p: p.warning or false) pol;
    };
  diagnoseZone = o:
    let z = zone o; in
    {
      errors =
        map (e: e // { option = if hasPrefix "network" e.field then "hostNetworkConfig" else "netdevConfig"; })
          (translationErrors "network" (o.hostNetworkConfig or null) ++ translationErrors "netdev" (o.netdevConfig or null))
        ++ validateZone z;
      warnings = [ ];
    };
}
