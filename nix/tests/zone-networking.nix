# Zones: containers in zone "lan" share the bridge vz-lan, configured by
# nixos.containers.zones.lan (static host address, networkd's DHCP server); they
# reach each other and the host. A zone with netdevConfig exists as a bridge
# before any container uses it; a zone used but not declared gets systemd's
# defaults.
{ pkgs, self, nixpkgs }:
let
  common = import ./common.nix { inherit pkgs self nixpkgs; };
  member = name: address: {
    zone = "lan";
    config = common.containerConfig name {
      networking.firewall.allowPing = true;
      environment.systemPackages = [ pkgs.iputils ];
    };
    containerNetworkConfig = {
      address = [ address ];
      networkConfig.DHCP = "no";
    };
  };
in
pkgs.testers.runNixOSTest {
  name = "nixos-nspawn-zone-networking";

  nodes.host = { ... }: {
    imports = [ common.host ];
    nixos.containers.zones = {
      lan.hostNetworkConfig = {
        address = [ "10.42.0.1/24" ];
        dhcpServerConfig = { PoolOffset = 100; PoolSize = 20; };
      };
      # created by networkd, used by nobody yet
      idle = {
        hostNetworkConfig.address = [ "10.43.0.1/24" ];
        netdevConfig = { };
      };
    };
    nixos.containers.instances = {
      alpha = member "alpha" "10.42.0.2/24";
      beta = member "beta" "10.42.0.3/24";
      # DHCP in the zone
      gamma = {
        zone = "lan";
        config = common.containerConfig "gamma" { environment.systemPackages = [ pkgs.iputils ]; };
      };
      # a zone nobody declared: systemd's defaults (a DHCP-served /24)
      delta = {
        zone = "adhoc";
        config = common.containerConfig "delta" { };
      };
    };
  };

  testScript = common.helpers + ''
    import json

    host.start()
    host.wait_for_unit("multi-user.target")
    for n in ["alpha", "beta", "gamma", "delta"]:
        wait_booted(host, n)

    with subtest("the zone file is in /etc and the bridge exists with the host address"):
        zone = json.loads(host.succeed("cat /etc/nixos-nspawn/zones/lan.json"))
        assert zone["name"] == "lan" and zone["network"]["Network"]["Address"] == ["10.42.0.1/24"], zone
        host.wait_until_succeeds("ip -4 addr show dev vz-lan | grep -q 10.42.0.1/24")
        host.succeed("ip -o link show master vz-lan | grep -q vb-alpha")
        host.succeed("ip -o link show master vz-lan | grep -q vb-beta")

    with subtest("containers in the zone reach each other and the host"):
        in_container(host, "alpha", "ip -4 addr show dev host0 | grep -q 10.42.0.2/24")
        host.wait_until_succeeds(
            f"nsenter --target {leader(host, 'alpha')} --net -- ping -c1 -W2 10.42.0.3"
        )
        host.wait_until_succeeds(
            f"nsenter --target {leader(host, 'beta')} --net -- ping -c1 -W2 10.42.0.2"
        )
        host.wait_until_succeeds("ping -c1 -W2 10.42.0.2")
        host.wait_until_succeeds(
            f"nsenter --target {leader(host, 'alpha')} --net -- ping -c1 -W2 10.42.0.1"
        )

    with subtest("networkd's DHCP server on the zone hands out the configured pool"):
        host.wait_until_succeeds(
            f"nsenter --target {leader(host, 'gamma')} --net -- ip -4 addr show dev host0 | grep -Eq 'inet 10\\.42\\.0\\.1[0-1][0-9]/24'"
        )
        host.wait_until_succeeds(
            f"nsenter --target {leader(host, 'gamma')} --net -- ping -c1 -W2 10.42.0.2"
        )

    with subtest("a zone with netdevConfig exists without containers, with its address"):
        # no container ever joins vz-idle: its only port is networkd's vd-idle
        # (whose veth peer is down), so it has no carrier, and
        # ConfigureWithoutCarrier= (the zone default) configures it anyway
        host.succeed("test -e /run/systemd/network/20-nixos-nspawn-vz-idle.netdev")
        host.succeed("grep -qx 'ConfigureWithoutCarrier=yes' /run/systemd/network/20-nixos-nspawn-vz-idle.network")
        host.wait_until_succeeds("ip -4 addr show dev vz-idle | grep -q 10.43.0.1/24")
        ports = host.succeed("ip -o link show master vz-idle")
        assert "vd-idle" in ports and "vb-" not in ports, ports
        assert "NO-CARRIER" in host.succeed("ip -o link show dev vz-idle")

    with subtest("an undeclared zone gets systemd's defaults"):
        host.fail("test -e /etc/nixos-nspawn/zones/adhoc.json")
        host.wait_until_succeeds("ip -4 addr show dev vz-adhoc | grep -q inet")
        host.wait_until_succeeds(
            f"nsenter --target {leader(host, 'delta')} --net -- ip -4 addr show dev host0 | grep -q inet"
        )

    with subtest("a zone bridge without netdevConfig goes away with its last container"):
        host.succeed("systemctl stop systemd-nspawn@delta.service")
        host.wait_until_fails("ip link show vz-adhoc")
  '';
}
