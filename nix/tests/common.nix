# Shared parts of the NixOS VM tests (nix/tests/*.nix, run by `nix flake check`).
{ pkgs, self, nixpkgs }:
let
  inherit (pkgs) lib;
in
{
  # The VM test `nixos-nspawn-NAME` (nixpkgs' runNixOSTest) of `test`.
  runTest = name: test: pkgs.testers.runNixOSTest ({ name = "nixos-nspawn-${name}"; } // test);

  # A test host with the module and room for a few containers. Sizes are
  # defaults (mkDefault) so a test can raise them without a conflicting
  # definition; every NixOS guest is a full systemd, so the host gets two vCPUs.
  host = { ... }: {
    imports = [ self.nixosModules.hypervisor ];
    virtualisation.memorySize = lib.mkDefault 2048;
    virtualisation.cores = lib.mkDefault 2;
    virtualisation.diskSize = lib.mkDefault 4096;
    environment.systemPackages = [ pkgs.jq ];
  };

  # A small container configuration with /etc/marker, plus `extra`.
  containerConfig = marker: extra: {
    imports = [ extra ];
    system.stateVersion = lib.trivial.release;
    documentation.enable = false;
    environment.etc.marker.text = marker;
  };

  # An imperative container's system, as `nixos-nspawn create --flake` would build it.
  mkSystem = name: modules: self.lib.mkContainer {
    inherit nixpkgs name modules;
    system = pkgs.stdenv.hostPlatform.system;
  };

  # Python helpers prepended to every test script. Each script imports what it
  # uses itself (nixpkgs' driver lints every script with pyflakes: an unused
  # import fails the build).
  helpers = ''
    import shlex


    def leader(machine, name):
        return machine.succeed(f"machinectl show {name} --property=Leader --value").strip()


    def nsenter(machine, name, cmd):
        """The command line that runs cmd as root inside the running container."""
        return (
            f"nsenter --target {leader(machine, name)} --mount --uts --ipc --net --pid -- "
            f"/run/current-system/sw/bin/sh -lc {shlex.quote(cmd)}"
        )


    def in_container(machine, name, cmd):
        """Run cmd as root inside the running container (all its namespaces)."""
        return machine.succeed(nsenter(machine, name, cmd))


    def container_fails(machine, name, cmd):
        machine.fail(nsenter(machine, name, cmd))


    def wait_booted(machine, name):
        """Wait until the container's systemd has finished booting."""
        machine.wait_for_unit(f"systemd-nspawn@{name}.service")
        machine.wait_until_succeeds(
            f"nsenter --target $(machinectl show {name} --property=Leader --value) --mount --pid -- "
            "/run/current-system/sw/bin/systemctl is-system-running | grep -Eqx 'running|degraded'",
            timeout=300,
        )


    def wait_ipv4(machine, name):
        """Wait for a global IPv4 address on the container's host0; returns it."""
        machine.wait_until_succeeds(
            f"nsenter --target $(machinectl show {name} --property=Leader --value) --net -- "
            "ip -4 -o addr show dev host0 scope global | grep -q inet",
            timeout=120,
        )
        out = machine.succeed(
            f"nsenter --target {leader(machine, name)} --net -- ip -4 -o addr show dev host0 scope global"
        )
        return out.split()[3].split("/")[0]


    def marker(machine, name):
        return in_container(machine, name, "cat /etc/marker").strip()


    def run(machine, cmd):
        """Run cmd (stderr merged into stdout); returns (exit status, output)."""
        return machine.execute(f"{cmd} 2>&1")


    def expect_exit(machine, cmd, status, *needles):
        """cmd must exit with status and print every needle."""
        got, out = run(machine, cmd)
        assert got == status, f"{cmd}: exit {got}, expected {status}:\n{out}"
        for needle in needles:
            assert needle in out, f"{cmd}: {needle!r} not in its output:\n{out}"
        return out
  '';
}
