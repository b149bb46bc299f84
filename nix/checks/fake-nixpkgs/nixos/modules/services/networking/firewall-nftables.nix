# nixos/modules/services/networking/firewall-nftables.nix: the nftables firewall
# (networking.firewall.backend = "nftables"): the table nixos-fw, with the
# per-interface ports and extraInputRules in its input-allow chain.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.networking.firewall;
  set = ports: lib.concatStringsSep ", " (map toString ports);
  allowRules = lib.concatStrings (lib.mapAttrsToList
    (iface: p:
      let dev = lib.optionalString (iface != "default") "iifname ${iface} "; in
      lib.optionalString (p.allowedTCPPorts != [ ]) "${dev}tcp dport { ${set p.allowedTCPPorts} } accept\n"
      + lib.optionalString (p.allowedUDPPorts != [ ]) "${dev}udp dport { ${set p.allowedUDPPorts} } accept\n")
    cfg.allInterfaces);
in
{
  options.networking.firewall = {
    extraInputRules = mkOption { type = types.lines; default = ""; description = "nftables rules appended to the input-allow chain."; };
    extraForwardRules = mkOption { type = types.lines; default = ""; description = "nftables rules appended to the forward-allow chain."; };
    extraReversePathFilterRules = mkOption { type = types.lines; default = ""; description = "nftables rules appended to the rpfilter-allow chain."; };
  };

  config = lib.mkIf (cfg.enable && cfg.backend == "nftables") {
    assertions = [
      { assertion = cfg.extraCommands == ""; message = "extraCommands is incompatible with the nftables based firewall: ${cfg.extraCommands}"; }
      { assertion = cfg.extraStopCommands == ""; message = "extraStopCommands is incompatible with the nftables based firewall: ${cfg.extraStopCommands}"; }
      { assertion = cfg.pingLimit == null || !(lib.hasPrefix "--" cfg.pingLimit); message = "nftables syntax like \"2/second\" should be used in networking.firewall.pingLimit"; }
      { assertion = config.networking.nftables.rulesetFile == null; message = "networking.nftables.rulesetFile conflicts with the firewall"; }
    ];
    environment.systemPackages = [ pkgs.nixos-firewall-tool ];
    networking.nftables.tables."nixos-fw" = {
      family = "inet";
      content = ''
        chain input-allow {
          ${lib.concatMapStrings (i: "iifname \"${i}\" accept\n") cfg.trustedInterfaces}
          ${allowRules}
          ${cfg.extraInputRules}
        }
        chain forward-allow {
          ${cfg.extraForwardRules}
        }
      '';
    };
  };
}
