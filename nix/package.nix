# nixos-nspawn: the CLI, the systemd generator and the two helpers of
# systemd-nspawn@NAME.service, built from the workspace at the repository root.
#
# Layout of $out:
#   bin/nixos-nspawn, bin/nixos-nspawn-generator,
#   bin/nixos-nspawn-bootstrap, bin/nixos-nspawn-activate
#   lib/systemd/system-generators/nixos-nspawn-generator -> ../../../bin/nixos-nspawn-generator
#   lib/systemd/system/*            (units/ of the repository, if any)
#   share/nixos-nspawn/nix/         (eval-container.nix, lib.nix, lib/, modules/:
#                                    what `nixos-nspawn create --config` evaluates)
{ lib
, rustPlatform
  # Fixed at build time for the units the generator writes. The defaults suit a
  # distribution with systemd in /usr; the NixOS module passes NixOS's paths.
, systemdNspawn ? null # ExecStart= of containers with credentials; default: "systemd-nspawn"
, systemdUnitDir ? null # what machines.target.wants/ links point at; default: /usr/lib/systemd/system
  # Absolute paths of the tools the binaries run, by name (systemctl,
  # machinectl, networkctl, busctl, systemd-run, nix, nix-build, nix-store, cp); each unset
  # one is looked up in PATH at run time.
, toolPaths ? { }
}:
let
  root = ../.;
  cargoToml = lib.importTOML ../Cargo.toml;

  # Only what the build and its tests read, so editing docs or Nix tests does not
  # rebuild: the workspace, and of fuzz/ (not a workspace member) what
  # crates/core/tests/{fuzz_regressions,injection}.rs compile in (src/) and
  # replay (the crash reproducers and the corpus). nix/checks/run builds the
  # workspace's tests from exactly this set ("package source set").
  wanted = [
    "Cargo.toml" "Cargo.lock" "crates" "generator" "bench" "tests" "units" "nix"
    "fuzz/src" "fuzz/artifacts-regressions" "fuzz/corpus"
  ];
  unwanted = [ "nix/tests" "nix/checks" ];
  under = dir: rel: rel == dir || lib.hasPrefix (dir + "/") rel;
  src = lib.cleanSourceWith {
    src = lib.cleanSource root;
    name = "nixos-nspawn-source";
    filter = path: type:
      let rel = lib.removePrefix (toString root + "/") (toString path); in
      (lib.any (w: under w rel) wanted
        # the directories that lead to a wanted one (fuzz/ for fuzz/src)
        || (type == "directory" && lib.any (w: lib.hasPrefix (rel + "/") w) wanted))
      && !(lib.any (u: under u rel) unwanted);
  };
in
rustPlatform.buildRustPackage ({
  pname = "nixos-nspawn";
  version = cargoToml.workspace.package.version;
  inherit src;

  cargoLock.lockFile = ../Cargo.lock;

  # The binaries users install; the benchmark and the real-systemd integration
  # suite are workspace members but not part of the package.
  cargoBuildFlags = [
    "--package" "nixos-nspawn"
    "--package" "nixos-nspawn-helpers"
    "--package" "nixos-nspawn-generator"
  ];
  cargoTestFlags = [
    "--package" "nixos-nspawn-core"
    "--package" "nixos-nspawn"
    "--package" "nixos-nspawn-helpers"
    "--package" "nixos-nspawn-generator"
  ];

  # Where the generator points ExecStartPre=/ExecReload= (the helpers are also
  # found next to the generator's resolved executable; this makes it independent
  # of how the generator is linked into /etc/systemd/system-generators).
  NIXOS_NSPAWN_HELPER_DIR = "${placeholder "out"}/bin";
  # The CLI finds the Nix files next to its executable too; this covers copies.
  NIXOS_NSPAWN_NIX_DIR = "${placeholder "out"}/share/nixos-nspawn/nix";
} // lib.optionalAttrs (systemdNspawn != null) {
  NIXOS_NSPAWN_SYSTEMD_NSPAWN = systemdNspawn;
} // lib.optionalAttrs (systemdUnitDir != null) {
  NIXOS_NSPAWN_UNIT_DIR = systemdUnitDir;
} // lib.mapAttrs'
  (tool: path: lib.nameValuePair
    ("NIXOS_NSPAWN_" + lib.toUpper (builtins.replaceStrings [ "-" ] [ "_" ] tool))
    (toString path))
  toolPaths
// {

  postInstall = ''
    mkdir -p "$out/lib/systemd/system-generators"
    ln -s ../../../bin/nixos-nspawn-generator "$out/lib/systemd/system-generators/nixos-nspawn-generator"

    shopt -s nullglob
    units=(units/*.service units/*.target units/*.timer units/*.socket units/*.path)
    if (( ''${#units[@]} )); then
      install -Dm644 -t "$out/lib/systemd/system" "''${units[@]}"
      # Units may name the binaries by their FHS paths.
      sed -i \
        -e "s|/usr/local/bin/nixos-nspawn|$out/bin/nixos-nspawn|g" \
        -e "s|/usr/bin/nixos-nspawn|$out/bin/nixos-nspawn|g" \
        -e "s|/usr/lib/nixos-nspawn/|$out/bin/|g" \
        "$out"/lib/systemd/system/*
    fi
    shopt -u nullglob

    mkdir -p "$out/share/nixos-nspawn/nix"
    cp -r nix/eval-container.nix nix/lib.nix nix/lib nix/modules "$out/share/nixos-nspawn/nix/"
  '';

  meta = {
    description = "Declarative and imperative NixOS containers on systemd-nspawn and systemd-networkd (RFC 108)";
    homepage = cargoToml.workspace.package.repository;
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
    mainProgram = "nixos-nspawn";
  };
})
