# Port forwarding: a client reaches a web server in a veth container through the
# host's forwarded TCP port; the container reaches the client through the host's
# NAT (its uplink), including from a service that runs while it boots.
{ pkgs, self, nixpkgs }:
let
  common = import ./common.nix { inherit pkgs self nixpkgs; };
  page = pkgs.writeTextDir "index.html" "hello from the container\n";
  clientPage = pkgs.writeTextDir "index.html" "hello from the client\n";
in
pkgs.testers.runNixOSTest {
  name = "nixos-nspawn-port-forward";

  nodes.client = { ... }: {
    networking.firewall.allowedTCPPorts = [ 80 ];
    services.nginx = {
      enable = true;
      virtualHosts.default = { default = true; root = clientPage; };
    };
    environment.systemPackages = [ pkgs.curl ];
  };

  nodes.host = { nodes, ... }: {
    imports = [ common.host ];
    environment.systemPackages = [ pkgs.curl ];
    nixos.containers.instances.web = {
      forwardPorts = [
        { hostPort = 8080; containerPort = 80; }
        { protocol = "udp"; hostPort = 5353; containerPort = 53; }
      ];
      config = common.containerConfig "web" {
        networking.firewall.allowedTCPPorts = [ 80 ];
        services.nginx = {
          enable = true;
          virtualHosts.default = { default = true; root = page; };
        };
        # Runs while the container boots and needs the uplink.
        systemd.services.fetch-at-boot = {
          wantedBy = [ "multi-user.target" ];
          wants = [ "network-online.target" ];
          after = [ "network-online.target" ];
          serviceConfig = { Type = "oneshot"; RemainAfterExit = true; };
          # network-online.target inside means host0 has its lease; the path
          # through the host's NAT may still be settling ("no route to host",
          # which --retry-connrefused does not retry): retry every error, and
          # never wait on one connection attempt for long.
          script = ''
            ${pkgs.curl}/bin/curl --fail --silent --show-error \
              --connect-timeout 5 --max-time 20 \
              --retry 30 --retry-delay 2 --retry-all-errors \
              http://${nodes.client.networking.primaryIPAddress}/ > /var/lib/fetched
          '';
        };
      };
    };
  };

  testScript = common.helpers + ''
    import json

    curl = "curl --fail --silent --show-error --connect-timeout 5 --max-time 10"

    start_all()
    client.wait_for_unit("nginx.service")
    host.wait_for_unit("multi-user.target")
    wait_booted(host, "web")
    in_container(host, "web", "systemctl is-active nginx.service")
    # nspawn forwards the port to the container's address: wait for it
    # (leased by the host's networkd) on both ends of the link.
    web_ip = wait_ipv4(host, "web")
    host.wait_until_succeeds("ip -4 -o addr show dev ve-web | grep -q inet")
    host.wait_until_succeeds(f"{curl} http://{web_ip}/ | grep -q 'hello from the container'")

    with subtest("the registry entry carries the forwards"):
        entry = json.loads(host.succeed("cat /etc/nixos-nspawn/containers/web.json"))
        assert {"protocol": "tcp", "hostPort": 8080, "containerPort": 80} in entry["forwardPorts"], entry
        host.succeed("grep -q '^Port=tcp:8080:80$' /run/systemd/nspawn/web.nspawn")
        host.succeed("grep -q '^Port=udp:5353:53$' /run/systemd/nspawn/web.nspawn")

    with subtest("a client reaches the container through the host's port"):
        client.wait_until_succeeds(f"{curl} http://host:8080/ | grep -q 'hello from the container'")
        client.fail(f"{curl} http://host:8081/")

    with subtest("the container had its uplink while booting"):
        in_container(host, "web", "systemctl is-active fetch-at-boot.service")
        assert "hello from the client" in in_container(host, "web", "cat /var/lib/fetched")

    with subtest("the forward survives a container restart"):
        host.succeed("systemctl restart systemd-nspawn@web.service")
        wait_booted(host, "web")
        wait_ipv4(host, "web")
        client.wait_until_succeeds(f"{curl} http://host:8080/ | grep -q 'hello from the container'")
  '';
}
