# nixos/modules/services/networking/firewall-iptables.nix: the iptables firewall
# (networking.firewall.backend = "iptables"), its extraCommands, and a
# firewall.service whose script contains the rules for every interface.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.networking.firewall;
  rules = lib.concatStrings (lib.mapAttrsToList
    (iface: p:
      let dev = lib.optionalString (iface != "default") "-i ${iface} "; in
      lib.concatMapStrings (port: "ip46tables -A nixos-fw ${dev}-p tcp --dport ${toString port} -j nixos-fw-accept\n") p.allowedTCPPorts
      + lib.concatMapStrings (port: "ip46tables -A nixos-fw ${dev}-p udp --dport ${toString port} -j nixos-fw-accept\n") p.allowedUDPPorts)
    cfg.allInterfaces);
in
{
  options.networking.firewall = {
    extraCommands = mkOption { type = types.lines; default = ""; description = "iptables commands run when the firewall starts."; };
    extraStopCommands = mkOption { type = types.lines; default = ""; description = "iptables commands run when the firewall stops."; };
  };

  config = lib.mkIf (cfg.enable && cfg.backend == "iptables") {
    assertions = [
      { assertion = cfg.pingLimit == null || lib.hasPrefix "--" cfg.pingLimit; message = "nftables syntax like \"2/second\" cannot be used in networking.firewall.pingLimit with iptables"; }
    ];
    systemd.services.firewall = {
      description = "Firewall";
      wantedBy = [ "sysinit.target" ];
      script = lib.concatMapStrings (i: "ip46tables -A nixos-fw -i ${i} -j nixos-fw-accept\n") cfg.trustedInterfaces
        + rules + cfg.extraCommands;
      serviceConfig.Type = "oneshot";
    };
  };
}
