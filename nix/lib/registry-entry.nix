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
#   diagnose / diagnoseZone: what only Nix can tell (a NixOS-style name it cannot
#               translate) and `policy`: combinations the parser accepts but
#               that cannot work (module assertions and warnings)
#
# It does not repeat the parser's rules: the parser is the one validator, run
# on the generated files at build time (`nixos-nspawn check-registry`, the
# modules' system.checks; see checkScript below).
#
# The parser also accepts an optional `source` field ({ config | expression | flake,
# platform, nixArgs }: what `nixos-nspawn create/update` built an imperative
# container from). Only the CLI writes it; `entry` never emits it and nothing here
# needs to check it (declarative entries have none).
let
  inherit (builtins)
    any attrNames concatStringsSep elem filter foldl' head isAttrs isList length listToAttrs map
    isString match replaceStrings toJSON unsafeDiscardStringContext;

  schemaVersion = 1;

  shortOptions = import ./short-options.nix;

  # ------------------------------------------------------------------ helpers
  optional = cond: x: if cond then [ x ] else [ ];
  toList = x: if isList x then x else [ x ];
  matches = re: s: match re s != null;
  show = v: if isString v then toJSON v else if v == null then "null" else toJSON v;

  err = field: message: { inherit field message; };

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

  # ------------------------------------------------------------------ entries
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

  # ------------------------------------------------------------------ files
  containerFile = name: "nixos-nspawn/containers/${name}.json";
  zoneFile = name: "nixos-nspawn/zones/${name}.json";

  # ------------------------------------------------------------------ the build-time check
  # The script of a check derivation (pkgs.runCommandLocal NAME { } SCRIPT, in
  # system.checks): it writes the generated files (`containers`, `zones`: name ->
  # the file's text) to registry/{containers,zones}/NAME.json and runs the
  # package's own parser on them, `nixos-nspawn check-registry --options OPTIONS`
  # ("host": messages name nixos.containers.instances.NAME / zones.ZONE;
  # "container": nixosContainer), each message with the registry field.
  shellArg = s: "'" + replaceStrings [ "'" ] [ "'\\''" ] s + "'";
  # The files' store paths (the containers' systems) are only text to the
  # parser: without their context the check needs none of them built first.
  checkScript = { package, options, containers ? { }, zones ? { } }:
    let
      write = dir: files: concatStringsSep "" (map
        (n: "printf '%s' ${shellArg (unsafeDiscardStringContext files.${n})} > registry/${dir}/${shellArg "${n}.json"}\n")
        (attrNames files));
    in
    ''
      mkdir -p registry/containers registry/zones
      ${write "containers" containers}${write "zones" zones}${package}/bin/nixos-nspawn check-registry --options ${options} registry
      touch "$out"
    '';
in
{
  inherit schemaVersion entry zone fromOptions optionNames toSettings translationErrors policy
    networkModeOf containerFile zoneFile checkScript;
  # What only Nix can tell about one set of option values: NixOS-style names it
  # cannot translate, and the policy (combinations that cannot work). The rest
  # is the parser's, at build time (checkScript).
  # What the classic short options cannot express: { errors; warnings; }, each
  # { option; message; } (nix/lib/short-options.nix).
  shortOptionProblems = shortOptions.problems;
  # Returns { errors = [ { field; option; message; } ]; warnings = [ ... ]; }.
  diagnose = o:
    let
      e = entry o;
      trans = field: option: input: map (x: x // { inherit option; }) (translationErrors field input);
      pol = policy e;
    in
    {
      errors = trans "network.host" "hostNetworkConfig" (o.hostNetworkConfig or null)
        ++ trans "extraNspawn" "extraNspawn" (o.extraNspawn or null)
        ++ trans "extraService" "extraService" (o.extraService or null)
        ++ filter (p: !(p.warning or false)) pol;
      warnings = filter (p: p.warning or false) pol;
    };
  diagnoseZone = o: {
    errors = map (x: x // { option = "hostNetworkConfig"; }) (translationErrors "network" (o.hostNetworkConfig or null))
      ++ map (x: x // { option = "netdevConfig"; }) (translationErrors "netdev" (o.netdevConfig or null));
    warnings = [ ];
  };
}
