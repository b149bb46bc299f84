# nixos/modules/system/boot/systemd.nix: services, sockets, targets, paths, generators
# (the unit options of nixos/lib/systemd-unit-options.nix).
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  units = import ../../../lib/systemd-units.nix { inherit lib; };
  cfg = config.systemd;

  rendered = kind: name: u: extra:
    lib.optionalAttrs u.enable {
      "${name}.${kind}" = units.renderUnit ({
        Unit = units.unitSection u // lib.optionalAttrs (u.restartTriggers != [ ]) {
          X-Restart-Triggers = map toString u.restartTriggers;
        };
        Install = lib.filterAttrs (_: v: v != [ ]) { WantedBy = u.wantedBy; RequiredBy = u.requiredBy; };
      } // extra);
    };
in
{
  options.systemd = {
    package = mkOption { type = types.package; default = pkgs.systemd; description = "The systemd package."; };
    packages = mkOption { default = [ ]; type = types.listOf types.package; description = "Packages providing units."; };
    generators = mkOption {
      type = types.attrsOf types.path;
      default = { };
      description = "systemd generators, linked into /etc/systemd/system-generators.";
    };
  } // lib.mapAttrs (_: { kindOptions, description }: mkOption {
    default = { };
    type = types.attrsOf (types.submodule ([ units.commonUnitOptions ] ++ kindOptions));
    inherit description;
  }) {
    services = { kindOptions = [ units.serviceOptions ]; description = "Service units."; };
    sockets = { kindOptions = [ units.socketOptions ]; description = "Socket units."; };
    paths = { kindOptions = [ units.pathOptions ]; description = "Path units."; };
    targets = { kindOptions = [ ]; description = "Target units."; };
  };

  config = {
    system.build.units = lib.foldl' (a: b: a // b) { } (
      lib.mapAttrsToList (n: s: rendered "service" n s {
        Service = s.serviceConfig // lib.filterAttrs (_: v: v != "") {
          ExecStart = if s.script != "" then "${pkgs.writeShellScript "${n}-start" s.script} ${s.scriptArgs}" else "";
        } // lib.optionalAttrs (s.environment != { }) {
          Environment = lib.mapAttrsToList (k: v: "${k}=${toString v}") (lib.filterAttrs (_: v: v != null) s.environment);
        };
        X-NixOS = { RestartIfChanged = s.restartIfChanged; ReloadIfChanged = s.reloadIfChanged; };
      }) cfg.services
      ++ lib.mapAttrsToList (n: s: rendered "socket" n s { Socket = s.socketConfig; }) cfg.sockets
      ++ lib.mapAttrsToList (n: p: rendered "path" n p { Path = p.pathConfig; }) cfg.paths
      ++ lib.mapAttrsToList (n: t: rendered "target" n t { }) cfg.targets
      ++ [ (lib.mapAttrs' (n: p: lib.nameValuePair "generator:${n}" (toString p)) cfg.generators) ]
    );
    environment.systemPackages = [ cfg.package ];
  };
}
