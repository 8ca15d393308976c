#!/usr/bin/env bash
# check.sh: build the Debian package (from the debug build: CI keeps one
# profile), list it, install it into a temp root and check it as installed:
#   - the files a regional host needs are where the unit and docs say;
#   - every conffile is an /etc file of the package;
#   - the packaged binary runs and accepts the packaged example config;
#   - systemd-analyze verify + security on the unit as installed, with
#     ExecStart's program being the packaged binary (systemd/verify.sh --root).
#
#   deploy/deb/check.sh [--profile debug|release]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
profile=debug
case "${1:-}" in
  "") ;;
  --profile) profile=${2:?--profile needs debug or release} ;;
  *) echo "usage: deploy/deb/check.sh [--profile debug|release]" >&2; exit 2 ;;
esac

deb=$(python3 "$ROOT/deploy/deb/build.py" --profile "$profile" | tail -n 1)
echo "== $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --info "$deb"
echo "== contents"
dpkg-deb --contents "$deb"

root=$(mktemp -d); trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$root/DEBIAN"

fail() { echo "deb check: FAIL: $*" >&2; exit 1; }
for f in usr/bin/failoverd usr/lib/systemd/system/failoverd@.service etc/failoverd/failoverd.env \
         etc/failoverd/regions/base.toml usr/share/doc/failoverd/README.md usr/share/doc/failoverd/copyright; do
  [ -e "$root/$f" ] || fail "the package has no /$f"
done
[ -x "$root/usr/bin/failoverd" ] || fail "/usr/bin/failoverd is not executable"
[ ! -e "$root/lib" ] || fail "the package ships files under /lib (units belong in /usr/lib/systemd/system)"
synopsis=$(sed -n 's/^Description: //p' "$root/DEBIAN/control")
[ "${#synopsis}" -lt 80 ] || fail "the synopsis is ${#synopsis} characters (Debian policy: under 80): $synopsis"
grep -q '^License: ' "$root/usr/share/doc/failoverd/copyright" || fail "the copyright file names no license"
echo "deb check: unit under /usr/lib, synopsis ${#synopsis} characters, copyright $(sed -n 's/^License: //p' "$root/usr/share/doc/failoverd/copyright" | head -n 1)"
while read -r c; do
  [ -n "$c" ] || continue
  case $c in /etc/*) ;; *) fail "conffile $c is not under /etc" ;; esac
  [ -f "$root$c" ] || fail "conffile $c is not in the package"
done <"$root/DEBIAN/conffiles"
for f in "$root"/etc/failoverd/regions/*.toml; do
  grep -qx "/etc/failoverd/regions/$(basename "$f")" "$root/DEBIAN/conffiles" \
    || fail "/etc/failoverd/regions/$(basename "$f") ships but is not a conffile (an upgrade would overwrite local edits)"
done
echo "deb check: $(wc -l <"$root/DEBIAN/conffiles") conffiles, all under /etc/failoverd"

"$root/usr/bin/failoverd" --version
for f in "$root"/etc/failoverd/regions/*.toml; do
  [ "$(basename "$f")" = base.toml ] && continue
  "$root/usr/bin/failoverd" check-config --config "$f" >/dev/null \
    || fail "the packaged example $(basename "$f") does not pass check-config"
done
echo "deb check: the packaged binary accepts every packaged region file"

bash "$ROOT/systemd/verify.sh" --root "$root"
echo "deb check: OK"
