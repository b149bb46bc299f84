# minilib: the remaining small parts of nixpkgs' lib the project's Nix files use:
# asserts, licenses and platforms (as package metadata), systems (the platform
# attributes NixOS modules read), and a printer for values.
lib:
let
  inherit (builtins) isString;
in
{
  asserts = rec {
    assertMsg = pred: msg: pred || throw msg;
    assertOneOf = name: val: xs:
      assertMsg (builtins.elem val xs) "${name} must be one of ${builtins.toJSON xs}, but is: ${builtins.toJSON val}";
  };

  licenses = {
    mit = { spdxId = "MIT"; shortName = "mit"; fullName = "MIT License"; free = true; redistributable = true; };
    asl20 = { spdxId = "Apache-2.0"; shortName = "asl20"; fullName = "Apache License 2.0"; free = true; redistributable = true; };
    gpl3Plus = { spdxId = "GPL-3.0-or-later"; shortName = "gpl3Plus"; fullName = "GNU General Public License v3.0 or later"; free = true; redistributable = true; };
  };

  platforms = {
    linux = [ "aarch64-linux" "armv6l-linux" "armv7l-linux" "i686-linux" "loongarch64-linux" "powerpc64le-linux" "riscv64-linux" "x86_64-linux" ];
    x86_64 = [ "x86_64-linux" "x86_64-darwin" ];
    all = lib.platforms.linux;
  };

  systems = rec {
    # The platform attributes the modules here read (system, isLinux, the parsed
    # cpu/kernel names); not nixpkgs' full elaboration.
    elaborate = p:
      let
        attrs = if isString p then { system = p; } else p;
        system = attrs.system or (throw "lib.systems.elaborate: no `system' in ${builtins.toJSON (builtins.attrNames attrs)}");
        parts = lib.strings.splitString "-" system;
        cpu = builtins.head parts;
        kernel = lib.lists.last parts;
      in
      attrs // {
        inherit system;
        config = attrs.config or "${cpu}-unknown-${kernel}-gnu";
        isLinux = kernel == "linux";
        isDarwin = kernel == "darwin";
        is64bit = builtins.elem cpu [ "x86_64" "aarch64" "riscv64" "powerpc64le" "loongarch64" ];
        isx86_64 = cpu == "x86_64";
        isAarch64 = cpu == "aarch64";
        parsed = { cpu.name = cpu; kernel.name = kernel; };
      };
    equals = a: b: a.system == b.system;
    flakeExposed = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
  };

  generators = {
    toPretty = _: v: builtins.toJSON v;
  };
}
