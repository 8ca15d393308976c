#!/usr/bin/env bash
# verify.sh: static checks for failoverd@.service. Needs no running systemd
# (works in containers where PID 1 is not systemd): only systemd-analyze.
#
#   1. systemd-analyze verify on an instance (failoverd@us-east-1.service);
#      any output on stderr counts as failure.
#   2. systemd-analyze security --offline=true on the same instance; fails
#      unless the overall exposure rating is OK or better (OK, SAFE, PERFECT).
#
# Two ways to point it at a unit:
#
#   bash systemd/verify.sh [instance]
#       the unit in this folder. verify checks that every Exec*= command is
#       executable, and /usr/bin/failoverd is usually not installed where this
#       runs: if it is missing, the check runs on a temp copy in which only the
#       program path of ExecStart= is replaced by /bin/true; the arguments
#       (with their %i specifiers) and every other line stay as written.
#
#   bash systemd/verify.sh --root DIR [instance]
#       the unit AS INSTALLED by the Debian package extracted into DIR
#       (dpkg-deb -x): DIR/usr/lib/systemd/system/failoverd@.service. ExecStart's
#       program must exist and be executable at DIR/<program> (so the unit
#       and the package agree on the path), and the check runs the unit with
#       that program path prefixed by DIR: the real binary, everything else
#       as installed. (systemd-analyze --root would also look for
#       sysinit.target and /bin/kill inside DIR, which a package does not ship.)
#
# Default instance: us-east-1.
set -euo pipefail

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "verify.sh: systemd-analyze not found, skipping unit checks"
    exit 0
fi

root=""
if [[ "${1:-}" == "--root" ]]; then
    root=$(cd "${2:?--root needs a folder}" && pwd)
    shift 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
template="$here/failoverd@.service"
[[ -z "$root" ]] || template="$root/usr/lib/systemd/system/failoverd@.service"
instance="${1:-us-east-1}"
unit_name="failoverd@${instance}.service"
binary=/usr/bin/failoverd
stand_in=/bin/true
[[ -f "$template" ]] || { echo "verify: FAIL: no unit at $template" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT

# Plain output: no colours, no pager, no emoji-dependent parsing.
export SYSTEMD_COLORS=0 SYSTEMD_PAGER= SYSTEMD_LESS= LC_ALL=C.UTF-8

echo "systemd-analyze: $(systemd-analyze --version | head -n1)"

# Work on a copy named like the template, in its own directory: the instance
# path below resolves to it (systemd finds the template next to the instance).
n=$(grep -c "^ExecStart=${binary} " "$template" || true)
if [[ "$n" != 1 ]]; then
    echo "verify: FAIL: expected exactly one 'ExecStart=${binary} ...' line in $template, found $n" >&2
    exit 1
fi
if [[ -n "$root" ]]; then
    if [[ ! -x "$root$binary" ]]; then
        echo "verify: FAIL: the unit runs $binary but the package installs no executable there ($root$binary)" >&2
        exit 1
    fi
    sed "s#^ExecStart=${binary} #ExecStart=${root}${binary} #" "$template" >"$tmp/failoverd@.service"
    echo "verify: checking the unit as installed under $root (ExecStart's program: the packaged $binary)"
elif [[ -x "$binary" ]]; then
    cp -- "$template" "$tmp/failoverd@.service"
    echo "verify: $binary is installed, checking the unit unmodified"
else
    sed "s#^ExecStart=${binary} #ExecStart=${stand_in} #" "$template" >"$tmp/failoverd@.service"
    echo "verify: $binary not installed, checking a copy with ExecStart's program replaced by $stand_in"
fi
unit="$tmp/$unit_name"

# 1. verify --------------------------------------------------------------
# systemd-analyze verify reports problems on stderr, and a few (unknown
# directives, bad specifiers) only as warnings with exit status 0, so stderr
# is what decides.
rc=0
systemd-analyze verify --man=no "$unit" >"$tmp/verify.out" 2>"$tmp/verify.err" || rc=$?
if [[ $rc -ne 0 || -s "$tmp/verify.err" ]]; then
    echo "verify: FAIL: systemd-analyze verify $unit_name (exit $rc):" >&2
    cat -- "$tmp/verify.out" "$tmp/verify.err" >&2
    exit 1
fi
echo "verify: OK: systemd-analyze verify $unit_name produced no warnings"

# 2. security ------------------------------------------------------------
rc=0
systemd-analyze security --offline=true --no-pager "$unit" \
    >"$tmp/security.out" 2>"$tmp/security.err" || rc=$?
if [[ $rc -ne 0 || -s "$tmp/security.err" ]]; then
    echo "security: FAIL: systemd-analyze security $unit_name (exit $rc):" >&2
    cat -- "$tmp/security.out" "$tmp/security.err" >&2
    exit 1
fi

# "→ Overall exposure level for failoverd@us-east-1.service: 1.2 OK 🙂"
line=$(grep -a 'Overall exposure level for' "$tmp/security.out" || true)
if [[ "$line" =~ :\ ([0-9]+\.[0-9]+)\ ([A-Z]+) ]]; then
    score=${BASH_REMATCH[1]}
    rating=${BASH_REMATCH[2]}
else
    echo "security: FAIL: cannot find the overall exposure line in:" >&2
    cat -- "$tmp/security.out" >&2
    exit 1
fi

# Ratings from best to worst: PERFECT, SAFE, OK, MEDIUM, EXPOSED, UNSAFE.
case "$rating" in
    PERFECT | SAFE | OK)
        echo "security: OK: exposure $score $rating for $unit_name"
        ;;
    *)
        echo "security: FAIL: exposure $score $rating for $unit_name (need OK or better); findings:" >&2
        grep -a '✗' "$tmp/security.out" >&2 || cat -- "$tmp/security.out" >&2
        exit 1
        ;;
esac
