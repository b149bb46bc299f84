# Imperative containers: create from a built system, update (reload), generations
# and rollback, an update whose settings need a restart, refusal (exit 4) to touch
# declarative containers or to create an existing one, a create that fails before
# writing anything and one that fails to start and is undone (nothing left
# behind either way), and remove with --delete-state.
{ pkgs, self, nixpkgs }:
let
  common = import ./common.nix { inherit pkgs self nixpkgs; };
  system = marker: extra: common.mkSystem "imp" [ (common.containerConfig marker extra) ];
  v1 = system "v1" { nixosContainer.bindMounts = [ "/srv/imp:/data" ]; };
  v2 = system "v2" { nixosContainer.bindMounts = [ "/srv/imp:/data" ]; };
  # The container's own settings changed: a dynamic update must restart it.
  v3 = system "v3" { nixosContainer.bindMounts = [ "/srv/imp:/data" "/srv/more:/more:ro" ]; };
  # Passes every check `create` makes (an executable init and
  # switch-to-configuration) but cannot boot: its init exits at once, so
  # `systemctl start` fails after the entry and the profile were written and
  # create has to undo them.
  unbootable = pkgs.runCommand "unbootable-system" { } ''
    mkdir -p $out/bin
    printf '#!/bin/sh\nexit 1\n' > $out/init
    cp $out/init $out/bin/switch-to-configuration
    chmod +x $out/init $out/bin/switch-to-configuration
  '';
in
pkgs.testers.runNixOSTest {
  name = "nixos-nspawn-imperative";

  nodes.host = { ... }: {
    imports = [ common.host ];
    # The systems are built outside the VM (it has no network or nixpkgs).
    system.extraDependencies = [ v1 v2 v3 unbootable ];
    nixos.containers.instances.decl = {
      autoStart = false;
      config = common.containerConfig "decl" { };
    };
  };

  testScript = common.helpers + ''
    import json

    v1, v2, v3, unbootable = "${v1}", "${v2}", "${v3}", "${unbootable}"
    missing = "/nix/store/00000000000000000000000000000000-missing"


    def nothing_left(name):
        """No trace of container `name`: entry, profile, applied record, state, /run files, unit."""
        for path in [
            f"/etc/nixos-nspawn/containers/{name}.json",
            f"/nix/var/nix/profiles/per-nspawn/{name}",
            f"/run/nixos-nspawn/applied/{name}.json",
            f"/var/lib/machines/{name}",
            f"/run/systemd/nspawn/{name}.nspawn",
            f"/run/systemd/network/20-nixos-nspawn-ve-{name}.network",
        ]:
            host.fail(f"test -e {path} || test -L {path}")
        host.fail(f"systemctl is-active systemd-nspawn@{name}.service")
        assert name not in host.succeed("machinectl list --no-legend"), name

    host.start()
    host.wait_for_unit("multi-user.target")
    host.succeed("mkdir -p /srv/imp /srv/more && echo from-host > /srv/imp/file && echo more > /srv/more/file")

    with subtest("the built system carries its registry entry"):
        template = json.loads(host.succeed(f"cat {v1}/nixos-nspawn/entry.json"))
        assert template["name"] == "imp" and template["system"] == v1, template
        assert template["bindMounts"] == ["/srv/imp:/data"], template

    with subtest("create"):
        host.succeed(f"nixos-nspawn create imp --system {v1}")
        wait_booted(host, "imp")
        host.succeed("test -f /etc/nixos-nspawn/containers/imp.json")
        host.succeed("test ! -L /etc/nixos-nspawn/containers/imp.json")
        entry = json.loads(host.succeed("cat /etc/nixos-nspawn/containers/imp.json"))
        assert entry["declarative"] is False, entry
        assert entry["system"] == v1, entry
        assert "/srv/imp:/data" in entry["bindMounts"], entry
        assert marker(host, "imp") == "v1"
        assert in_container(host, "imp", "cat /data/file").strip() == "from-host"
        assert host.succeed("readlink -f /nix/var/nix/profiles/per-nspawn/imp/system").strip() == v1

    with subtest("update reloads when only the system changed"):
        before = leader(host, "imp")
        host.succeed(f"nixos-nspawn update imp --system {v2}")
        host.wait_until_succeeds("test \"$(nsenter --target $(machinectl show imp -p Leader --value) --mount -- cat /etc/marker)\" = v2")
        assert leader(host, "imp") == before, "the container was restarted"
        assert host.succeed("readlink -f /nix/var/nix/profiles/per-nspawn/imp/system").strip() == v2
        links = host.succeed("ls /nix/var/nix/profiles/per-nspawn/imp | grep -c '^system-[0-9]*-link$'")
        assert int(links) >= 2, links
        generations = host.succeed("nixos-nspawn list-generations imp --json")
        assert v1 in generations and v2 in generations, generations

    with subtest("rollback"):
        host.succeed("nixos-nspawn rollback imp")
        host.wait_until_succeeds("test \"$(nsenter --target $(machinectl show imp -p Leader --value) --mount -- cat /etc/marker)\" = v1")
        assert host.succeed("readlink -f /nix/var/nix/profiles/per-nspawn/imp/system").strip() == v1
        assert json.loads(host.succeed("cat /etc/nixos-nspawn/containers/imp.json"))["system"] == v1

    with subtest("an update that changes settings restarts"):
        before = leader(host, "imp")
        host.succeed(f"nixos-nspawn update imp --system {v3}")
        wait_booted(host, "imp")
        assert leader(host, "imp") != before, "the container was not restarted"
        assert marker(host, "imp") == "v3"
        assert in_container(host, "imp", "cat /more/file").strip() == "more"

    with subtest("the state survives a restart"):
        in_container(host, "imp", "echo kept > /var/lib/kept")
        before = leader(host, "imp")
        host.succeed("machinectl reboot imp")
        host.wait_until_succeeds(f"l=$(machinectl show imp -p Leader --value) && [ -n \"$l\" ] && [ \"$l\" != {before} ]")
        wait_booted(host, "imp")
        assert in_container(host, "imp", "cat /var/lib/kept").strip() == "kept"

    with subtest("declarative containers and existing names are refused (exit 4)"):
        decl_before = host.succeed("readlink /etc/nixos-nspawn/containers/decl.json")
        for cmd, verb in [
            (f"nixos-nspawn update decl --system {v1}", "updating"),
            ("nixos-nspawn rollback decl", "rolling back"),
            ("nixos-nspawn remove decl", "removing"),
        ]:
            expect_exit(host, cmd, 4,
                        f"not {verb} decl: it is a declarative container",
                        "change nixos.containers.instances.decl in the host's NixOS configuration")
        assert host.succeed("readlink /etc/nixos-nspawn/containers/decl.json") == decl_before
        host.fail("test -e /nix/var/nix/profiles/per-nspawn/decl/system")
        imp_entry = host.succeed("cat /etc/nixos-nspawn/containers/imp.json")
        expect_exit(host, f"nixos-nspawn create imp --system {v1}", 4,
                    "container imp already exists", "use nixos-nspawn update imp")
        assert host.succeed("cat /etc/nixos-nspawn/containers/imp.json") == imp_entry

    with subtest("a create that fails before writing leaves nothing behind"):
        expect_exit(host, f"nixos-nspawn create broken --system {missing}", 1,
                    f"--system {missing}", "No such file or directory")
        nothing_left("broken")

    with subtest("a create whose start fails is undone"):
        out = expect_exit(host, f"nixos-nspawn create broken --system {unbootable}", 1,
                          "creating broken failed; everything was rolled back",
                          "starting broken failed")
        # it did get as far as starting: the unit ran and failed
        assert "journalctl -u systemd-nspawn@broken.service" in out, out
        host.succeed("journalctl -u systemd-nspawn@broken.service | grep -q .")
        nothing_left("broken")
        # the name is free again
        host.succeed(f"nixos-nspawn create broken --system {v1} --no-start")
        host.succeed("nixos-nspawn remove broken")
        nothing_left("broken")

    with subtest("remove --delete-state"):
        host.succeed("nixos-nspawn remove imp --delete-state")
        host.wait_until_fails("systemctl is-active systemd-nspawn@imp.service")
        host.fail("test -e /etc/nixos-nspawn/containers/imp.json")
        host.fail("test -e /var/lib/machines/imp")
        host.fail("test -e /nix/var/nix/profiles/per-nspawn/imp/system")
        host.succeed("test -f /srv/imp/file")
        assert "imp" not in host.succeed("machinectl list --no-legend")
  '';
}
