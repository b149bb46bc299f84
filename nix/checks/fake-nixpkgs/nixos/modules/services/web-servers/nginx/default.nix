# nixos/modules/services/web-servers/nginx/default.nix (the options the tests set)
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.services.nginx;
  nullOr = t: description: mkOption { type = types.nullOr t; default = null; inherit description; };
  location = {
    options = {
      root = nullOr types.path "The location's root directory.";
      alias = nullOr types.path "Alias directory.";
      index = nullOr types.str "Index files.";
      proxyPass = nullOr types.str "The upstream URL.";
      return = nullOr (types.oneOf [ types.str types.int ]) "The return directive.";
      tryFiles = nullOr types.str "The try_files directive.";
      extraConfig = mkOption { type = types.lines; default = ""; description = "Extra lines of the location block."; };
    };
  };
  vhost = { name, ... }: {
    options = {
      serverName = mkOption { type = types.nullOr types.str; default = null; description = "The server name (default: the attribute name)."; };
      serverAliases = mkOption { type = types.listOf types.str; default = [ ]; description = "Other server names."; };
      default = mkOption { type = types.bool; default = false; description = "Whether this is the default server."; };
      root = nullOr types.path "The document root.";
      locations = mkOption { type = types.attrsOf (types.submodule location); default = { }; description = "Location blocks."; };
      forceSSL = mkOption { type = types.bool; default = false; description = "Redirect HTTP to HTTPS."; };
      enableACME = mkOption { type = types.bool; default = false; description = "Get a certificate from ACME."; };
      extraConfig = mkOption { type = types.lines; default = ""; description = "Extra lines of the server block."; };
    };
  };
in
{
  options.services.nginx = {
    enable = mkOption { type = types.bool; default = false; description = "Whether to enable nginx."; };
    virtualHosts = mkOption { type = types.attrsOf (types.submodule vhost); default = { }; description = "Virtual hosts."; };
  };
  config = lib.mkIf cfg.enable {
    systemd.services.nginx = {
      description = "Nginx Web Server";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      serviceConfig.ExecStart = "${pkgs.nginx}/bin/nginx -c ${pkgs.writeText "nginx.conf" (builtins.toJSON (lib.mapAttrs (n: v: {
        inherit (v) serverAliases default root forceSSL enableACME extraConfig;
        serverName = if v.serverName != null then v.serverName else n;
        locations = lib.mapAttrs (_: l: { inherit (l) root alias index proxyPass return tryFiles extraConfig; }) v.locations;
      }) cfg.virtualHosts))}";
    };
  };
}
