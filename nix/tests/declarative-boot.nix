# Declarative containers start at boot, run the configured system with networkd on
# host0 (networked from the start), keep their state across host reboots; those
# without autoStart stay stopped until started; the CLI sees them but does not
# change them.
{ pkgs, common }:
common.runTest "declarative-boot" {
  nodes.host = { ... }: {
    imports = [ common.host ];
    nixos.containers.instances = {
      web.config = common.containerConfig "web-v1" {
        # Needs the network while the container boots: with networkd configuring
        # both ends before the guest starts, the uplink is there.
        systemd.services.boot-probe = {
          wantedBy = [ "multi-user.target" ];
          wants = [ "network-online.target" ];
          after = [ "network-online.target" ];
          # RemainAfterExit: `systemctl is-active` below asks whether it succeeded,
          # not whether it is still running.
          serviceConfig = { Type = "oneshot"; RemainAfterExit = true; };
          script = ''
            ip -4 route show default > /var/lib/boot-probe
            test -s /var/lib/boot-probe
          '';
          path = [ pkgs.iproute2 ];
        };
      };
      manual = {
        autoStart = false;
        config = common.containerConfig "manual" { };
      };
    };
  };

  testScript = common.helpers + ''
    import json

    host.start()
    host.wait_for_unit("multi-user.target")
    wait_booted(host, "web")

    with subtest("the registry entry is a store symlink with schema v1"):
        host.succeed("test -L /etc/nixos-nspawn/containers/web.json")
        host.succeed("readlink -f /etc/nixos-nspawn/containers/web.json | grep -q '^/nix/store/'")
        entry = json.loads(host.succeed("cat /etc/nixos-nspawn/containers/web.json"))
        assert entry["version"] == 1, entry
        assert entry["declarative"] is True, entry
        assert entry["name"] == "web", entry
        assert entry["network"]["mode"] == "veth", entry

    with subtest("the generator wrote the unit drop-in, the .nspawn file and the host-side network"):
        host.succeed("test -e /etc/systemd/system-generators/nixos-nspawn-generator")
        host.succeed("test -e /run/systemd/generator/systemd-nspawn@web.service.d/50-nixos-nspawn.conf")
        host.succeed("test -e /run/systemd/nspawn/web.nspawn")
        host.succeed("ls /run/systemd/network | grep -q 've-web'")

    with subtest("the container runs its system, named after the instance"):
        assert marker(host, "web") == "web-v1"
        assert in_container(host, "web", "hostname").strip() == "web"
        in_container(host, "web", "test -L /nix/var/nix/profiles/system")
        host.succeed("test -L /nix/var/nix/profiles/per-nspawn/web/system")

    with subtest("host0 is configured by networkd, the uplink was there during boot"):
        host.wait_until_succeeds("ip -4 addr show dev ve-web | grep -q inet")
        host.wait_until_succeeds(
            f"nsenter --target {leader(host, 'web')} --net -- ip -4 addr show dev host0 | grep -q inet"
        )
        in_container(host, "web", "systemctl is-active boot-probe.service")
        in_container(host, "web", "test -s /var/lib/boot-probe")
        host.wait_until_succeeds("ping -c1 -W2 web")

    with subtest("containers without autoStart stay stopped until started"):
        host.fail("systemctl is-active systemd-nspawn@manual.service")
        host.succeed("systemctl start systemd-nspawn@manual.service")
        wait_booted(host, "manual")
        assert marker(host, "manual") == "manual"
        host.succeed("machinectl poweroff manual")
        host.wait_until_fails("systemctl is-active systemd-nspawn@manual.service")

    with subtest("the CLI lists declarative containers and refuses to change them"):
        listing = host.succeed("nixos-nspawn list --json")
        assert "web" in listing and "manual" in listing, listing
        expect_exit(host, "nixos-nspawn remove web", 4,
                    "not removing web: it is a declarative container",
                    "change nixos.containers.instances.web in the host's NixOS configuration")
        host.succeed("test -L /etc/nixos-nspawn/containers/web.json")
        host.succeed("systemctl is-active systemd-nspawn@web.service")

    with subtest("state survives a reboot of the host"):
        in_container(host, "web", "echo kept > /var/lib/kept")
        host.shutdown()
        host.start()
        host.wait_for_unit("multi-user.target")
        wait_booted(host, "web")
        assert in_container(host, "web", "cat /var/lib/kept").strip() == "kept"
        host.succeed("test -f /var/lib/machines/web/var/lib/kept")
        host.fail("systemctl is-active systemd-nspawn@manual.service")
  '';
}
