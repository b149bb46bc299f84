# nixos/modules/system/boot/systemd/nspawn.nix: systemd.nspawn.<name> becomes
# /etc/systemd/nspawn/<name>.nspawn; every system wants machines.target.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  units = import ../../../../lib/systemd-units.nix { inherit lib; };
  cfg = config.systemd.nspawn;

  execSection = units.sectionOf "Exec" [
    "Boot" "ProcessTwo" "Parameters" "Environment" "User" "WorkingDirectory" "PivotRoot" "Capability"
    "DropCapability" "NoNewPrivileges" "KillSignal" "Personality" "MachineID" "PrivateUsers"
    "NotifyReady" "SystemCallFilter" "LimitCPU" "LimitFSIZE" "LimitDATA" "LimitSTACK" "LimitCORE"
    "LimitRSS" "LimitNOFILE" "LimitAS" "LimitNPROC" "LimitMEMLOCK" "LimitLOCKS" "LimitSIGPENDING"
    "LimitMSGQUEUE" "LimitNICE" "LimitRTPRIO" "LimitRTTIME" "OOMScoreAdjust" "CPUAffinity"
    "Hostname" "ResolvConf" "Timezone" "LinkJournal" "Ephemeral" "AmbientCapability"
  ];
  filesSection = units.sectionOf "Files" [
    "ReadOnly" "Volatile" "Bind" "BindReadOnly" "TemporaryFileSystem" "Overlay" "OverlayReadOnly"
    "PrivateUsersChown" "BindUser" "Inaccessible" "PrivateUsersOwnership"
  ];
  networkSection = units.sectionOf "Network" [
    "Private" "VirtualEthernet" "VirtualEthernetExtra" "Interface" "MACVLAN" "IPVLAN" "Bridge" "Zone" "Port"
  ];
in
{
  options.systemd.nspawn = mkOption {
    default = { };
    description = "Definition of systemd-nspawn configurations.";
    type = types.attrsOf (types.submodule {
      options = {
        enable = units.sharedOptions.enable;
        execConfig = mkOption { default = { }; type = execSection; description = "The [Exec] section."; };
        filesConfig = mkOption { default = { }; type = filesSection; description = "The [Files] section."; };
        networkConfig = mkOption { default = { }; type = networkSection; description = "The [Network] section."; };
      };
    });
  };

  config = lib.mkMerge [
    (lib.mkIf (cfg != { }) {
      environment.etc = lib.mapAttrs'
        (name: def: lib.nameValuePair "systemd/nspawn/${name}.nspawn" {
          source = pkgs.writeText "nspawn-inst" (units.renderUnit {
            Exec = def.execConfig;
            Files = def.filesConfig;
            Network = def.networkConfig;
          });
        })
        cfg;
    })
    { systemd.targets.multi-user.wants = [ "machines.target" ]; }
  ];
}
