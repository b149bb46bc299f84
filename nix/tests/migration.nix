# Migration from the classic NixOS containers (docs/migration.md):
#  - imperative: a container made by `nixos-container create` is imported with
#    `nixos-nspawn import-classic --move-state`, keeps its root file system,
#    system and addresses;
#  - declarative: `containers.legacy` becomes `nixos.containers.instances.legacy`
#    with the option mapping of the docs, its state directory moved to
#    /var/lib/machines, and keeps its state, bind mount and addresses.
{ pkgs, self, nixpkgs }:
let
  common = import ./common.nix { inherit pkgs self nixpkgs; };
  inherit (pkgs) lib;

  # The imperative container's system: built with the container profile, so it
  # configures host0 itself once it no longer runs under the classic init (which
  # renames host0 to eth0 and sets the addresses from the .conf file).
  oldSystem = common.mkSystem "old" [
    (common.containerConfig "old" {
      nixosContainer.containerNetworkConfig = {
        addresses = [ { Address = "10.233.5.2/32"; Peer = "10.233.5.1/32"; } ];
        gateway = [ "10.233.5.1" ];
        networkConfig.DHCP = "no";
      };
    })
  ];

  legacyConfig = common.containerConfig "legacy" { };
in
pkgs.testers.runNixOSTest {
  name = "nixos-nspawn-migration";

  nodes.host = { ... }: {
    imports = [ common.host ];
    virtualisation.memorySize = 3072;
    system.extraDependencies = [ oldSystem ];
    boot.enableContainers = true;
    # The classic container starts at boot with /srv/legacy bound: the source
    # must exist before container@legacy.service (tmpfiles runs in sysinit).
    systemd.tmpfiles.rules = [
      "d /srv/legacy 0755 root root -"
      "f /srv/legacy/file 0644 root root - shared"
      "d /var/lib/machines 0700 root root -"
    ];

    # Before: a classic declarative container.
    containers.legacy = {
      autoStart = true;
      privateNetwork = true;
      hostAddress = "10.231.136.1";
      localAddress = "10.231.136.2";
      bindMounts."/data" = { hostPath = "/srv/legacy"; isReadOnly = false; };
      config = legacyConfig;
    };

    # After: the same container on nixos-nspawn (docs/migration.md, option mapping).
    specialisation.migrated.configuration = {
      containers = lib.mkForce { };
      nixos.containers.instances.legacy = {
        config = legacyConfig;
        # the classic attribute-set form is accepted (read-only unless isReadOnly = false)
        bindMounts."/data" = { hostPath = "/srv/legacy"; isReadOnly = false; };
        # hostAddress/localAddress: a point-to-point pair, as the classic module set it up
        hostNetworkConfig = {
          Network = { Address = null; DHCPServer = false; };
          addresses = [ { Address = "10.231.136.1/32"; Peer = "10.231.136.2/32"; } ];
        };
        containerNetworkConfig = {
          addresses = [ { Address = "10.231.136.2/32"; Peer = "10.231.136.1/32"; } ];
          gateway = [ "10.231.136.1" ];
          networkConfig.DHCP = "no";
        };
      };
    };
  };

  testScript = common.helpers + ''
    import json

    old_system = "${oldSystem}"

    host.start()
    host.wait_for_unit("multi-user.target")
    base = host.succeed("readlink -f /run/current-system").strip()

    with subtest("imperative: a classic container with state"):
        host.succeed(
            f"nixos-container create old --system-path {old_system} "
            "--host-address 10.233.5.1 --local-address 10.233.5.2"
        )
        host.succeed("nixos-container start old")
        host.wait_until_succeeds("nixos-container run old -- true")
        host.succeed("nixos-container run old -- sh -c 'echo kept > /var/lib/kept'")
        host.wait_until_succeeds("ping -c1 -W2 10.233.5.2")
        host.succeed("nixos-container stop old")

    with subtest("imperative: import"):
        host.succeed("nixos-nspawn import-classic old --move-state")
        entry = json.loads(host.succeed("cat /etc/nixos-nspawn/containers/old.json"))
        assert entry["declarative"] is False, entry
        assert entry["system"] == old_system, entry
        assert entry["network"]["mode"] == "veth", entry
        assert entry["autoStart"] is False, entry
        # the registry's fixed point-to-point pair (ve-old: Address=10.233.5.1/32 Peer=10.233.5.2/32)
        assert entry["network"]["hostAddress"] == "10.233.5.1", entry
        assert entry["network"]["localAddress"] == "10.233.5.2", entry
        assert entry["network"]["host"] is None, entry
        host.succeed("test -d /var/lib/machines/old")
        host.fail("test -e /var/lib/nixos-containers/old")
        host.fail("test -e /etc/nixos-containers/old.conf")
        assert "old" not in host.succeed("nixos-container list")
        assert host.succeed("readlink -f /nix/var/nix/profiles/per-nspawn/old/system").strip() == old_system

    with subtest("imperative: the imported container boots with its state and addresses"):
        host.succeed("systemctl start systemd-nspawn@old.service")
        wait_booted(host, "old")
        assert in_container(host, "old", "cat /var/lib/kept").strip() == "kept"
        assert marker(host, "old") == "old"
        host.wait_until_succeeds("ping -c1 -W2 10.233.5.2")
        # the classic container is gone: nothing to import a second time
        expect_exit(host, "nixos-nspawn import-classic old", 3, "there is no classic container old")

    with subtest("declarative: the classic container runs"):
        host.wait_for_unit("container@legacy.service")
        host.wait_until_succeeds("nixos-container run legacy -- true")
        host.succeed("nixos-container run legacy -- sh -c 'echo kept > /var/lib/kept'")
        host.succeed("nixos-container run legacy -- cat /data/file")
        host.wait_until_succeeds("ping -c1 -W2 10.231.136.2")

    with subtest("declarative: move the state and switch"):
        host.succeed("systemctl stop container@legacy.service")
        host.succeed("mv /var/lib/nixos-containers/legacy /var/lib/machines/legacy")
        host.succeed(f"{base}/specialisation/migrated/bin/switch-to-configuration test")
        wait_booted(host, "legacy")
        host.fail("systemctl is-active container@legacy.service")

    with subtest("declarative: same state, bind mount and addresses"):
        assert in_container(host, "legacy", "cat /var/lib/kept").strip() == "kept"
        assert marker(host, "legacy") == "legacy"
        assert in_container(host, "legacy", "cat /data/file").strip() == "shared"
        in_container(host, "legacy", "echo written > /data/from-container")
        host.succeed("grep -q written /srv/legacy/from-container")
        host.wait_until_succeeds("ping -c1 -W2 10.231.136.2")
        in_container(host, "legacy", "ip -4 addr show dev host0 | grep -q 10.231.136.2")
  '';
}
