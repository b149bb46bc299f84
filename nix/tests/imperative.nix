# Imperative containers: create from a built system, update (reload), generations
# and rollback, an update whose settings need a restart, refusal to touch
# declarative containers, a failed create that leaves nothing behind, and remove
# with --delete-state.
{ pkgs, self, nixpkgs }:
let
  common = import ./common.nix { inherit pkgs self nixpkgs; };
  system = marker: extra: common.mkSystem "imp" [ (common.containerConfig marker extra) ];
  v1 = system "v1" { nixosContainer.bindMounts = [ "/srv/imp:/data" ]; };
  v2 = system "v2" { nixosContainer.bindMounts = [ "/srv/imp:/data" ]; };
  # The container's own settings changed: a dynamic update must restart it.
  v3 = system "v3" { nixosContainer.bindMounts = [ "/srv/imp:/data" "/srv/more:/more:ro" ]; };
in
pkgs.testers.runNixOSTest {
  name = "nixos-nspawn-imperative";

  nodes.host = { ... }: {
    imports = [ common.host ];
    # The systems are built outside the VM (it has no network or nixpkgs).
    system.extraDependencies = [ v1 v2 v3 ];
    nixos.containers.instances.decl = {
      autoStart = false;
      config = common.containerConfig "decl" { };
    };
  };

  testScript = common.helpers + ''
    v1, v2, v3 = "${v1}", "${v2}", "${v3}"

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

    with subtest("declarative containers are refused"):
        host.fail(f"nixos-nspawn update decl --system {v1}")
        host.fail("nixos-nspawn remove decl")
        host.succeed("test -L /etc/nixos-nspawn/containers/decl.json")

    with subtest("a failed create leaves nothing behind"):
        host.fail("nixos-nspawn create broken --system /nix/store/00000000000000000000000000000000-missing")
        host.fail("test -e /etc/nixos-nspawn/containers/broken.json")
        host.fail("test -e /nix/var/nix/profiles/per-nspawn/broken/system")
        host.fail("systemctl is-active systemd-nspawn@broken.service")

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
