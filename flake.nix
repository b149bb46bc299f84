{
  description = "Declarative and imperative NixOS containers on systemd-nspawn and systemd-networkd (NixOS RFC 108)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
      nixLib = import ./nix/lib.nix;
    in
    {
      packages = forAllSystems (_system: pkgs: rec {
        nixos-nspawn = pkgs.callPackage ./nix/package.nix { };
        default = nixos-nspawn;
      });

      overlays.default = final: _prev: {
        nixos-nspawn = final.callPackage ./nix/package.nix { };
      };

      nixosModules = {
        # The host: nixos.containers.{instances,zones,...}.
        hypervisor = ./nix/modules/hypervisor.nix;
        default = self.nixosModules.hypervisor;
        # The in-container profile (imported automatically for containers built by
        # the host module, lib.mkContainer and `nixos-nspawn create --config`).
        container = ./nix/modules/container.nix;
      };

      lib = {
        # mkContainer { nixpkgs, name, system, modules ? [ ], specialArgs ? { } }
        inherit (nixLib) mkContainer evalContainer registry;
      };

      # `nixos-nspawn create --flake github:…#example example`
      nixosContainers = forAllSystems (system: _pkgs: {
        example = nixLib.mkContainer {
          inherit nixpkgs system;
          name = "example";
          modules = [ ./nix/examples/example.nix ];
        };
      });

      checks = forAllSystems (system: pkgs:
        let
          package = self.packages.${system}.default;
          contract = import ./nix/tests/contract.nix;
          moduleEval = import ./nix/checks/module-eval.nix { nixpkgsLib = "${nixpkgs}/lib"; };
          moduleFailures = builtins.filter (r: !r.ok) moduleEval.results;
        in
        import ./nix/tests { inherit pkgs self nixpkgs; }
        // {
          inherit package;

          # The host module with the NixOS of this flake's nixpkgs: a host per
          # firewall variant with a container of every network mode, from config
          # and from path; evaluating the check evaluates them all.
          module-matrix = import ./nix/checks/nixos-matrix.nix {
            inherit nixpkgs pkgs system;
            hypervisor = self.nixosModules.hypervisor;
          };

          # The registry contract, checked by the Rust parser inside the sandbox
          # (no nix-instantiate there: the JSON is computed at evaluation time).
          contract =
            assert lib.assertMsg (contract.selfCheck == [ ])
              "nix/tests/contract.nix self-check:\n${lib.concatStringsSep "\n" contract.selfCheck}";
            assert lib.assertMsg (moduleFailures == [ ])
              "nix/checks/module-eval.nix:\n${lib.concatMapStringsSep "\n" (r: "${r.name}: ${r.detail}") moduleFailures}";
            package.overrideAttrs (old: {
              pname = "nixos-nspawn-contract";
              NIXOS_NSPAWN_CONTRACT_JSON = pkgs.writeText "contract.json" (builtins.toJSON contract);
              NIXOS_NSPAWN_MODULE_FILES_JSON = pkgs.writeText "module-files.json" (builtins.toJSON moduleEval.files);
              cargoTestFlags = [ "--package" "nixos-nspawn-core" "--test" "nix_contract" ];
              doCheck = true;
              installPhase = "touch $out";
              doInstallCheck = false;
              dontFixup = true;
            });

          clippy = package.overrideAttrs (old: {
            pname = "nixos-nspawn-clippy";
            nativeBuildInputs = old.nativeBuildInputs ++ [ pkgs.clippy ];
            buildPhase = ''
              runHook preBuild
              cargo clippy --workspace --all-targets --offline -- -D warnings
              runHook postBuild
            '';
            doCheck = false;
            installPhase = "touch $out";
            dontFixup = true;
          });

          # rustfmt on every source file (cargo fmt would need the dependencies).
          fmt = pkgs.runCommand "nixos-nspawn-fmt"
            { nativeBuildInputs = [ pkgs.rustfmt pkgs.findutils ]; }
            ''
              cd ${package.src}
              find . -name '*.rs' -not -path './target/*' -print0 \
                | xargs -0 rustfmt --check --edition 2021
              touch $out
            '';
        });

      devShells = forAllSystems (system: pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${system}.default ];
          packages = [ pkgs.clippy pkgs.rustfmt pkgs.rust-analyzer pkgs.nix ];
          # nix/checks/run evaluates the NixOS modules with this lib as well as with
          # its own minilib, and checks that both agree.
          NIXPKGS_LIB = "${nixpkgs}/lib";
        };
      });
    };
}
