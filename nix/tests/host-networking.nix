# A host with scripted networking (the test framework's default: no networkd
# uplink) and systemd-resolved turned off, whose DNS server is another machine that knows a
# name nobody else does:
#  - containers get the host's DNS server in their DHCP lease (through
#    nixos-nspawn-uplink-dns.service and networkd's DHCP server), resolve the
#    LAN-only name, and get a changed server on their next start;
#  - networkd, there only for the container links, leaves the host's own
#    routing policy rules and routes alone (ManageForeign*=no).
{ pkgs, common }:
common.runTest "host-networking" {
  # The LAN's DNS server: answers lan-only.test, forwards nothing.
  nodes.dns = { ... }: {
    networking.firewall.allowedUDPPorts = [ 53 ];
    networking.firewall.allowedTCPPorts = [ 53 ];
    services.dnsmasq = {
      enable = true;
      resolveLocalQueries = false;
      settings = {
        interface = "eth1";
        bind-interfaces = true;
        no-resolv = true;
        address = "/lan-only.test/192.0.2.99";
      };
    };
  };

  nodes.host = { nodes, ... }: {
    imports = [ common.host ];
    # nixpkgs' networkd.nix turns resolved on (mkDefault) wherever networkd is
    # enabled, which the module does: this host is one that turned it off.
    services.resolved.enable = false;
    networking.nameservers = [ nodes.dns.networking.primaryIPAddress ];
    nixos.containers.instances.web.config = common.containerConfig "web" { };
  };

  testScript = { nodes, ... }: common.helpers + ''
    dns_ip = "${nodes.dns.networking.primaryIPAddress}"
    resolved_file = "/run/systemd/resolve/resolv.conf"

    start_all()
    dns.wait_for_unit("dnsmasq.service")
    host.wait_for_unit("multi-user.target")
    wait_booted(host, "web")
    wait_ipv4(host, "web")

    with subtest("the host runs no resolved; its resolvers are where networkd's DHCP server reads them"):
        host.fail("systemctl is-active systemd-resolved.service")
        host.succeed(f"grep -qx 'nameserver {dns_ip}' /etc/resolv.conf")
        host.wait_until_succeeds(f"grep -qx 'nameserver {dns_ip}' {resolved_file}")
        host.succeed(f"head -n 1 {resolved_file} | grep -q 'nixos-nspawn-uplink-dns'")

    with subtest("the container's lease carries the host's DNS server, and LAN names resolve"):
        host.wait_until_succeeds(nsenter(host, "web", f"resolvectl dns host0 | grep -qw {dns_ip}"), timeout=60)
        out = in_container(host, "web", "getent hosts lan-only.test")
        assert "192.0.2.99" in out, out
        # the answer came from the LAN server, not from resolved's fallback servers
        assert "lan-only.test" in in_container(host, "web", "resolvectl query lan-only.test")

    with subtest("a change of the host's resolvers reaches the next container start"):
        host.succeed("printf 'nameserver 192.0.2.53\\n' | resolvconf -a nixos-nspawn-test -m 0")
        host.wait_until_succeeds(f"grep -qx 'nameserver 192.0.2.53' {resolved_file}")
        host.succeed("systemctl restart systemd-nspawn@web.service")
        wait_booted(host, "web")
        wait_ipv4(host, "web")
        host.wait_until_succeeds(nsenter(host, "web", "resolvectl dns host0 | grep -qw 192.0.2.53"), timeout=60)
        host.succeed("resolvconf -d nixos-nspawn-test")

    with subtest("networkd leaves the host's own routing policy rules and routes alone"):
        host.succeed("grep -Eqx 'ManageForeignRoutingPolicyRules=(false|no)' /etc/systemd/networkd.conf")
        host.succeed("grep -Eqx 'ManageForeignRoutes=(false|no)' /etc/systemd/networkd.conf")
        host.succeed("ip rule add priority 1234 from 192.0.2.123 lookup 1234")
        host.succeed("ip route add blackhole 203.0.113.0/24 table 1234")
        # networkd starts afresh and configures a container link
        host.succeed("systemctl restart systemd-networkd.service")
        host.succeed("systemctl restart systemd-nspawn@web.service")
        wait_booted(host, "web")
        wait_ipv4(host, "web")
        host.succeed("networkctl reload")
        host.succeed("ip rule show | grep -q 'from 192.0.2.123 lookup 1234'")
        host.succeed("ip route show table 1234 | grep -q 'blackhole 203.0.113.0/24'")
  '';
}
