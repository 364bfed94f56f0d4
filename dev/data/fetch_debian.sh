#!/usr/bin/env bash
# fetch_debian.sh PACKAGES_FILE CACHE_DIR
#
# Downloads the Debian packages named in PACKAGES_FILE with `apt-get download` (nothing is
# installed) and unpacks each with `dpkg-deb -x`, keeping only its regular *.py files:
#   CACHE_DIR/debs/NAME_VERSION_ARCH.deb     the downloaded packages (reused on later runs)
#   CACHE_DIR/root/NAME/...                  the package's .py files, at their install paths
#   CACHE_DIR/packages.tsv                   name, version, deb file, sha256 of the deb
# PACKAGES_FILE: one package per line, `name` or `name=version`; '#' starts a comment.
# A cached .deb is used as it is (delete CACHE_DIR/debs to fetch the archive's newest ones).
set -euo pipefail

die() { echo "fetch_debian: error: $*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: fetch_debian.sh PACKAGES_FILE CACHE_DIR"
list=$1
cache=$2
[ -r "$list" ] || die "package list not found: $list"
for tool in apt-get dpkg-deb sha256sum; do
  command -v "$tool" >/dev/null || die "needs $tool (Debian)"
done
mkdir -p "$cache/debs" "$cache/root"
cache=$(cd "$cache" && pwd)

# The package specs, without comments and blank lines.
mapfile -t specs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$list" | grep -v '^$')
[ ${#specs[@]} -gt 0 ] || die "no packages in $list"

# The cached .deb of a spec, if any (and of the pinned version, if one is given).
cached_deb() {
  local name=${1%%=*} want='' deb
  [[ $1 == *=* ]] && want=${1#*=}
  for deb in "$cache/debs/${name}"_*.deb; do
    [ -f "$deb" ] || continue
    [ "$(dpkg-deb -f "$deb" Package)" = "$name" ] || continue
    if [ -z "$want" ] || [ "$(dpkg-deb -f "$deb" Version)" = "$want" ]; then echo "$deb"; return; fi
  done
}

missing=()
for spec in "${specs[@]}"; do
  [ -n "$(cached_deb "$spec")" ] || missing+=("$spec")
done

# Download what is missing, in one apt-get call. On a bare machine (apt has no package lists)
# run `apt-get update` first; if the download fails (stale lists), update once and retry.
# Both need root.
update() {
  [ "$(id -u)" -eq 0 ] || die "apt-get download failed or apt has no package lists; run 'apt-get update' as root and retry"
  echo "fetch_debian: running apt-get update" >&2
  apt-get -q update >&2 || die "apt-get update failed"
}
if [ ${#missing[@]} -gt 0 ]; then
  apt_opts=(-q)
  [ "$(id -u)" -eq 0 ] && apt_opts+=(-o APT::Sandbox::User=root) # root: no _apt sandbox warning
  download() { (cd "$cache/debs" && apt-get "${apt_opts[@]}" download "${missing[@]}") >&2; }
  compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || update
  echo "fetch_debian: downloading ${#missing[@]} package(s)" >&2
  if ! download; then
    update
    download || die "apt-get download failed for some of: ${missing[*]}"
  fi
fi

# Unpack each package (again only if its .deb changed) and write the table.
tsv="$cache/packages.tsv.tmp"
printf 'name\tversion\tdeb\tsha256\n' >"$tsv"
for spec in "${specs[@]}"; do
  name=${spec%%=*}
  deb=$(cached_deb "$spec")
  [ -n "$deb" ] || die "no .deb for $spec after downloading"
  version=$(dpkg-deb -f "$deb" Version)
  sum=$(sha256sum "$deb" | cut -d' ' -f1)
  dest="$cache/root/$name"
  if [ "$(cat "$dest.sha256" 2>/dev/null)" != "$sum" ]; then
    rm -rf "$dest" "$dest.sha256" "$dest.tmp"
    dpkg-deb -x "$deb" "$dest.tmp"
    # Keep regular .py files only (no symlinks: they would duplicate or dangle).
    find "$dest.tmp" \( -type l -o \( -type f ! -name '*.py' \) \) -delete
    find "$dest.tmp" -depth -type d -empty -delete
    mkdir -p "$dest.tmp"
    mv "$dest.tmp" "$dest"
    echo "$sum" >"$dest.sha256"
  fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$version" "$(basename "$deb")" "$sum" >>"$tsv"
done
mv "$tsv" "$cache/packages.tsv"
echo "fetch_debian: ${#specs[@]} package(s) ready in $cache" >&2
