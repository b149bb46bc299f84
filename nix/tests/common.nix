# Shared parts of the NixOS VM tests (nix/tests/*.nix, run by `nix flake check`).
{ pkgs, self, nixpkgs }:
let
  inherit (pkgs) lib;
in
{
  # A test host with the module and room for a few containers.
  host = { ... }: {
    imports = [ self.nixosModules.hypervisor ];
    virtualisation.memorySize = 2048;
    virtualisation.diskSize = 4096;
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

  # Python helpers prepended to every test script.
  helpers = ''
    import json
    import shlex


    def leader(machine, name):
        return machine.succeed(f"machinectl show {name} --property=Leader --value").strip()


    def in_container(machine, name, cmd):
        """Run cmd as root inside the running container (all its namespaces)."""
        return machine.succeed(
            f"nsenter --target {leader(machine, name)} --mount --uts --ipc --net --pid -- "
            f"/run/current-system/sw/bin/sh -lc {shlex.quote(cmd)}"
        )


    def container_fails(machine, name, cmd):
        machine.fail(
            f"nsenter --target {leader(machine, name)} --mount --uts --ipc --net --pid -- "
            f"/run/current-system/sw/bin/sh -lc {shlex.quote(cmd)}"
        )


    def wait_booted(machine, name):
        """Wait until the container's systemd has finished booting."""
        machine.wait_for_unit(f"systemd-nspawn@{name}.service")
        machine.wait_until_succeeds(
            f"nsenter --target $(machinectl show {name} --property=Leader --value) --mount --pid -- "
            "/run/current-system/sw/bin/systemctl is-system-running | grep -Eqx 'running|degraded'",
            timeout=300,
        )


    def marker(machine, name):
        return in_container(machine, name, "cat /etc/marker").strip()
  '';
}
