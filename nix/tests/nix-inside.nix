# Nix inside containers (docs/nixos.md, "Nix inside"):
#  - a default container has no Nix (no `nix`, no nix-daemon units): the store
#    is the host's, read-only, and the host's daemon is not bound in;
#  - with mountDaemonSocket, `nix-build` inside builds through the host's
#    daemon (the result is in the host's store), also after restarts, and the
#    container's own nix-daemon socket stays off where the host's is bound;
#  - a container's own nix-daemon socket (nix.enable, user-namespaced, without
#    the host's daemon) listens again after any number of restarts, although
#    its socket file stays in the container's tree.
{ pkgs, common }:
common.runTest "nix-inside" {
  nodes.host = { ... }: {
    imports = [ common.host ];
    # the builder of the derivation built inside (a store path the host has)
    system.extraDependencies = [ pkgs.busybox ];
    nixos.containers.instances = {
      plain.config = common.containerConfig "plain" { };
      builder = {
        mountDaemonSocket = true;
        config = common.containerConfig "builder" { };
      };
      own = {
        userNamespacing = true;
        config = common.containerConfig "own" { nix.enable = true; };
      };
    };
  };

  testScript = common.helpers + ''
    busybox = "${pkgs.busybox}"
    derivation = (
        "derivation { name = \"built-inside-NAME\"; system = builtins.currentSystem; "
        f"builder = \"''${{builtins.storePath \"{busybox}\"}}/bin/busybox\"; "
        "args = [ \"sh\" \"-c\" \"echo built > $out\" ]; }"
    )


    def restart(name):
        before = leader(host, name)
        host.succeed(f"systemctl restart systemd-nspawn@{name}.service")
        wait_booted(host, name)
        assert leader(host, name) != before, f"{name} was not restarted"


    def build_inside(name, tag):
        expr = derivation.replace("NAME", tag)
        in_container(host, name, f"printf '%s\\n' {shlex.quote(expr)} > /root/built.nix")
        out = in_container(host, name, "nix-build --no-out-link /root/built.nix").strip().splitlines()[-1]
        assert out.startswith("/nix/store/") and out.endswith(f"-built-inside-{tag}"), out
        assert host.succeed(f"cat {out}").strip() == "built", out
        return out


    host.start()
    host.wait_for_unit("multi-user.target")
    for n in ["plain", "builder", "own"]:
        wait_booted(host, n)

    with subtest("a default container has no Nix"):
        container_fails(host, "plain", "command -v nix")
        container_fails(host, "plain", "command -v nix-build")
        container_fails(host, "plain", "systemctl cat nix-daemon.socket")
        host.fail("test -e /var/lib/machines/plain/nix/var/nix/daemon-socket/socket")

    with subtest("with mountDaemonSocket, nix inside builds through the host's daemon"):
        in_container(host, "builder", "findmnt /nix/var/nix/daemon-socket")
        assert in_container(host, "builder", "systemctl show -P ConditionResult nix-daemon.socket").strip() == "no"
        build_inside("builder", "first")
        for i in range(2):
            restart("builder")
            assert in_container(host, "builder", "systemctl show -P ConditionResult nix-daemon.socket").strip() == "no"
            build_inside("builder", f"restart{i}")

    with subtest("the container's own daemon socket listens after every restart"):
        assert in_container(host, "own", "systemctl is-active nix-daemon.socket").strip() == "active"
        # its socket file is in the container's tree and survives the restart
        host.succeed("test -S /var/lib/machines/own/nix/var/nix/daemon-socket/socket")
        for _ in range(2):
            restart("own")
            host.succeed("test -S /var/lib/machines/own/nix/var/nix/daemon-socket/socket")
            assert in_container(host, "own", "systemctl is-active nix-daemon.socket").strip() == "active"
  '';
}
