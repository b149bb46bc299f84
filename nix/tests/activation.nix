# Reload vs restart on switch: after `switch-to-configuration test` into a
# specialisation, nixos-nspawn-apply.service reloads a container whose system
# alone changed (same leader, new /etc/marker), restarts one whose settings
# changed (new leader, new bind mount), leaves strategy "none" alone, and always
# reloads/always restarts with the explicit strategies. Switching back reloads
# again; unchanged containers are not touched at all.
{ pkgs, self, nixpkgs }:
let
  common = import ./common.nix { inherit pkgs self nixpkgs; };
  inherit (pkgs) lib;
in
pkgs.testers.runNixOSTest {
  name = "nixos-nspawn-activation";

  nodes.host = { ... }: {
    imports = [ common.host ];
    # six NixOS guests at once
    virtualisation.memorySize = 3072;
    virtualisation.cores = 4;
    nixos.containers.instances = {
      # default strategy "dynamic"
      dyn-system.config = common.containerConfig "v1" { };
      dyn-settings.config = common.containerConfig "v1" { };
      reloaded = { activation.strategy = "reload"; config = common.containerConfig "v1" { }; };
      restarted = { activation.strategy = "restart"; config = common.containerConfig "v1" { }; };
      pinned = { activation.strategy = "none"; config = common.containerConfig "v1" { }; };
      untouched.config = common.containerConfig "same" { };
    };

    specialisation.v2.configuration = {
      nixos.containers.instances = {
        dyn-system.config.environment.etc.marker.text = lib.mkForce "v2";
        dyn-settings = {
          config.environment.etc.marker.text = lib.mkForce "v2";
          bindMounts = [ "/srv/extra:/extra:ro" ];
        };
        reloaded.config.environment.etc.marker.text = lib.mkForce "v2";
        restarted.config.environment.etc.marker.text = lib.mkForce "v2";
        pinned.config.environment.etc.marker.text = lib.mkForce "v2";
      };
    };
  };

  testScript = common.helpers + ''
    names = ["dyn-system", "dyn-settings", "reloaded", "restarted", "pinned", "untouched"]

    host.start()
    host.wait_for_unit("multi-user.target")
    for n in names:
        wait_booted(host, n)
        assert marker(host, n) in ("v1", "same"), n
    host.succeed("mkdir -p /srv/extra && echo extra > /srv/extra/file")

    base = host.succeed("readlink -f /run/current-system").strip()
    before = {n: leader(host, n) for n in names}

    with subtest("switching applies each container's strategy"):
        host.succeed(f"{base}/specialisation/v2/bin/switch-to-configuration test")
        host.succeed("systemctl is-active nixos-nspawn-apply.service")
        for n in names:
            wait_booted(host, n)
        after = {n: leader(host, n) for n in names}

        # dynamic, only the system changed: reload in place
        assert after["dyn-system"] == before["dyn-system"], "dyn-system was restarted"
        host.wait_until_succeeds("test \"$(nsenter --target $(machinectl show dyn-system -p Leader --value) --mount -- cat /etc/marker)\" = v2")

        # dynamic, a bind mount was added: restart
        assert after["dyn-settings"] != before["dyn-settings"], "dyn-settings was not restarted"
        assert marker(host, "dyn-settings") == "v2"
        assert in_container(host, "dyn-settings", "cat /extra/file").strip() == "extra"

        # explicit strategies
        assert after["reloaded"] == before["reloaded"], "reloaded was restarted"
        assert marker(host, "reloaded") == "v2"
        assert after["restarted"] != before["restarted"], "restarted was not restarted"
        assert marker(host, "restarted") == "v2"

        # "none": the registry has the new system, the running container does not
        assert after["pinned"] == before["pinned"]
        assert marker(host, "pinned") == "v1"

        # nothing changed for this one, so nothing was done to it
        assert after["untouched"] == before["untouched"]

    with subtest("apply has nothing left to do"):
        plan = host.succeed("nixos-nspawn apply --dry-run")
        for n in ["dyn-system", "dyn-settings", "reloaded", "restarted", "untouched"]:
            assert f"{n}: reload" not in plan and f"{n}: restart" not in plan, plan

    with subtest("a pinned container picks its new system up when it is restarted"):
        host.succeed("systemctl restart systemd-nspawn@pinned.service")
        wait_booted(host, "pinned")
        assert marker(host, "pinned") == "v2"

    with subtest("switching back reloads again"):
        mid = {n: leader(host, n) for n in names}
        host.succeed(f"{base}/bin/switch-to-configuration test")
        for n in names:
            wait_booted(host, n)
        assert leader(host, "dyn-system") == mid["dyn-system"]
        host.wait_until_succeeds("test \"$(nsenter --target $(machinectl show dyn-system -p Leader --value) --mount -- cat /etc/marker)\" = v1")
        assert marker(host, "reloaded") == "v1"
        assert leader(host, "dyn-settings") != mid["dyn-settings"]
        container_fails(host, "dyn-settings", "test -e /extra/file")
        assert leader(host, "pinned") == mid["pinned"]
        assert marker(host, "pinned") == "v2"
  '';
}
