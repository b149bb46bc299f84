# nixos-nspawn-uplink-dns: give containers the host's DNS servers on hosts
# whose uplink systemd-networkd does not manage (scripted networking,
# NetworkManager) and that do not run systemd-resolved.
#
# networkd's DHCP server puts into its leases the DNS servers of the uplink
# link when networkd manages that link; when it manages none, it reads the
# "nameserver" lines of /run/systemd/resolve/resolv.conf, which systemd-resolved
# writes (its list of uplink servers) -- and without resolved nobody does, so
# containers fall back to resolved's built-in public servers. This writes that
# file from the host's own resolv.conf: the servers the host itself uses,
# whatever put them there (static networking.nameservers, dhcpcd, NetworkManager
# through resolvconf). networkd reads it whenever it (re)configures a
# container link, i.e. when a container starts; loopback addresses (a local
# caching resolver) are skipped by networkd, as containers cannot reach them.
#
# A file that this script did not write (resolved's own) is never touched.
#
#   sh uplink-dns.sh [SOURCE [DEST]]   (default /etc/resolv.conf, /run/systemd/resolve/resolv.conf)
set -eu

src="${1:-/etc/resolv.conf}"
dest="${2:-/run/systemd/resolve/resolv.conf}"
header="# Written by nixos-nspawn-uplink-dns from $src for networkd's DHCP server (container leases)."

if [ -e "$dest" ] || [ -L "$dest" ]; then
  if [ -L "$dest" ] || [ ! -f "$dest" ] || [ "$(head -n 1 "$dest")" != "$header" ]; then
    echo "nixos-nspawn-uplink-dns: $dest was not written by it (systemd-resolved's?); leaving it alone" >&2
    exit 0
  fi
fi

dir="$(dirname "$dest")"
mkdir -p "$dir"
tmp="$dir/.nixos-nspawn-uplink-dns.$$"
trap 'rm -f "$tmp"' EXIT
{
  printf '%s\n' "$header"
  if [ -r "$src" ]; then
    grep -E '^[[:space:]]*nameserver[[:space:]]' "$src" || true
  fi
} >"$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$dest"
trap - EXIT
servers="$(grep -c '^[[:space:]]*nameserver' "$dest" || true)"
echo "nixos-nspawn-uplink-dns: $servers nameserver line(s) from $src in $dest"
