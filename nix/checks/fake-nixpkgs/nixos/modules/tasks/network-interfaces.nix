# nixos/modules/tasks/network-interfaces.nix: the host name (one DNS label of at
# most 63 characters), domain, DHCP and networkd switches, and the definitions
# nixpkgs makes there (a default for IPv4 forwarding, /etc/hostname, the warning
# about networkd next to scripted DHCP).
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types mkDefault;
  cfg = config.networking;
in
{
  options.networking = {
    hostName = mkOption {
      default = config.system.nixos.distroId;
      type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
      description = "The name of the machine: one DNS label (no domain), at most 63 characters.";
    };
    fqdn = mkOption {
      type = types.str;
      default =
        if cfg.hostName != "" && cfg.domain != null then "${cfg.hostName}.${cfg.domain}"
        else throw "The FQDN is required but cannot be determined from `networking.hostName` and `networking.domain`.";
      description = "The fully qualified domain name.";
    };
    fqdnOrHostName = mkOption {
      readOnly = true;
      type = types.str;
      default = if cfg.domain != null then cfg.fqdn else cfg.hostName;
      description = "The FQDN if there is a domain, else the host name.";
    };
    domain = mkOption { default = null; type = types.nullOr types.str; description = "The domain."; };
    hostId = mkOption { default = null; type = types.nullOr types.str; description = "The 32-bit host ID (8 hex digits)."; };
    enableIPv6 = mkOption { default = true; type = types.bool; description = "Whether to enable IPv6."; };
    nameservers = mkOption { type = types.listOf types.str; default = [ ]; description = "Name servers."; };
    search = mkOption { type = types.listOf types.str; default = [ ]; description = "Search domains."; };
    useHostResolvConf = mkOption { type = types.bool; default = false; description = "In containers, whether to use the host's resolv.conf."; };
    useDHCP = mkOption { type = types.bool; default = true; description = "Whether to use DHCP on all interfaces without static addresses."; };
    useNetworkd = mkOption { default = false; type = types.bool; description = "Whether networkd configures the network (instead of scripts)."; };
  };

  config = {
    warnings = lib.optional (config.systemd.network.enable && cfg.useDHCP && !cfg.useNetworkd) ''
      The combination of `systemd.network.enable = true`, `networking.useDHCP = true` and `networking.useNetworkd = false` can cause both networkd and dhcpcd to manage the same interfaces. This can lead to loss of networking. It is recommended you choose only one of networkd (by also enabling `networking.useNetworkd`) or scripting (by disabling `systemd.network.enable`)
    '';
    assertions = [
      {
        assertion = cfg.hostId == null || builtins.match "[0-9a-fA-F]{8}" cfg.hostId != null;
        message = "Invalid value given to the networking.hostId option.";
      }
    ];
    boot.kernel.sysctl = {
      # no interface with proxyARP here
      "net.ipv4.conf.all.forwarding" = mkDefault false;
      "net.ipv6.conf.all.disable_ipv6" = mkDefault (!cfg.enableIPv6);
    };
    environment.etc.hostname = lib.mkIf (cfg.hostName != "") { text = cfg.hostName + "\n"; };
    systemd.services.domainname = lib.mkIf (cfg.domain != null) {
      wantedBy = [ "sysinit.target" ];
      serviceConfig.ExecStart = ''${pkgs.coreutils}/bin/domainname "${cfg.domain}"'';
    };
    # networkd's own defaults for all interfaces when DHCP is on (network-interfaces-systemd.nix)
    systemd.network.networks = lib.mkIf (cfg.useNetworkd && cfg.useDHCP) {
      "99-ethernet-default-dhcp" = { matchConfig.Type = "ether"; DHCP = "yes"; };
    };
    systemd.network.enable = lib.mkIf cfg.useNetworkd true;
  };
}
