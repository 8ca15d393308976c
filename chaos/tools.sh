#!/usr/bin/env bash
# tools.sh: install the operator-facing checks' tools from Debian's packages,
# idempotently. `chaos/lab.sh test` (the README's test command) calls it.
#
#   chaos/tools.sh     promtool (package `prometheus`), headless Chromium
#                      (package `chromium`) and libfaketime (package
#                      `faketime`: tests/lab_clock.rs steps a daemon's wall
#                      clock with it)
#
# Why Debian's packages: the machines reach Debian's archive but no vendor
# download site, and a browser or Prometheus build fetched by an installer
# would fail offline. Prints the versions it found on stderr.
set -euo pipefail

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v faketime >/dev/null 2>&1 || need+=(faketime)
if [ ${#need[@]} -gt 0 ]; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "tools.sh: missing ${need[*]}; run as root, or: sudo apt-get install ${need[*]} fonts-dejavu-core" >&2
      exit 1
    fi
  fi
  echo "tools.sh: installing ${need[*]} from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  # --no-install-recommends: the server's recommends (node exporter, web
  # assets) are not needed for promtool; the browser needs only itself and
  # its fonts. A mirror that fails once is tried again (three times, 10 s
  # apart) before the install gives up.
  for attempt in 1 2 3; do
    if "${sudo[@]}" apt-get update -qq >/dev/null \
      && "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" fonts-dejavu-core >/dev/null; then
      break
    fi
    [ "$attempt" -lt 3 ] || { echo "tools.sh: apt-get could not install ${need[*]} (3 tries)" >&2; exit 1; }
    echo "tools.sh: apt-get failed (try $attempt of 3); again in 10 s" >&2
    sleep 10
  done
  # The Debian prometheus package starts a server as a service where systemd
  # runs; none of the tests needs it, and nothing listens as a side effect
  # in CI containers (no systemd there).
fi
echo "tools.sh: $(promtool --version 2>&1 | head -n 1)" >&2
echo "tools.sh: $(chromium --version 2>/dev/null | head -n 1)" >&2
echo "tools.sh: faketime $(dpkg-query -W -f='${Version}' faketime 2>/dev/null || echo '(version unknown)')" >&2
