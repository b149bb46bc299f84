# minilib: source filtering (nixpkgs' lib.sources.cleanSource / cleanSourceWith).
#
# cleanSourceWith returns { _isLibCleanSourceWith; origSrc; filter; name; outPath }
# where `filter path type` is the conjunction of every filter applied so far, in
# the form builtins.path calls it (path: an absolute path string; type:
# "regular", "directory", "symlink" or "unknown"). outPath copies the accepted
# files into the store when it is used.
lib:
let
  inherit (builtins) baseNameOf match;
  inherit (lib.strings) hasPrefix hasSuffix;

  # What cleanSource drops: version control directories, editor backups and
  # swap files, object files and libraries, `result*` links of nix-build, and
  # anything that is not a file, a directory or a link.
  cleanSourceFilter = name: type:
    let base = baseNameOf (toString name); in
    !((type == "directory" && builtins.elem base [ ".git" ".svn" "CVS" ".hg" ".jj" ".pijul" ])
      || hasSuffix "~" base
      || match "^\\.sw[a-z]$" base != null
      || match "^\\..*\\.sw[a-z]$" base != null
      || hasSuffix ".o" base
      || hasSuffix ".so" base
      || (type == "symlink" && hasPrefix "result" base)
      || type == "unknown");

  toSourceAttributes = src:
    if src._isLibCleanSourceWith or false then { inherit (src) origSrc filter name; }
    else { origSrc = src; filter = _: _: true; name = "source"; };

  fromSourceAttributes = { origSrc, filter, name }: {
    _isLibCleanSourceWith = true;
    inherit origSrc filter name;
    outPath = builtins.path { inherit filter name; path = origSrc; };
  };

  cleanSourceWith = { src, filter ? (_: _: true), name ? null }:
    let orig = toSourceAttributes src; in
    fromSourceAttributes {
      inherit (orig) origSrc;
      filter = path: type: filter path type && orig.filter path type;
      name = if name != null then name else orig.name;
    };
in
{
  inherit cleanSourceFilter cleanSourceWith;
  cleanSource = src: cleanSourceWith { filter = cleanSourceFilter; inherit src; };
}
