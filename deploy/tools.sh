#!/usr/bin/env bash
# tools.sh: install the deploy checks' tools into deploy/.tools (gitignored),
# pinned, idempotent. CI calls it from .ci/run; nothing is installed
# system-wide.
#
#   deploy/tools.sh          cfn-lint (deploy/requirements.txt) into deploy/.tools/venv
#
# Prints the path of the venv's bin folder on the last line.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=$ROOT/deploy/.tools
VENV=$TOOLS/venv
REQ=$ROOT/deploy/requirements.txt

want=$(grep -E '^cfn-lint==' "$REQ")
have=""
if [ -x "$VENV/bin/cfn-lint" ]; then
  have=$("$VENV/bin/python" -m pip freeze 2>/dev/null | grep -E '^cfn-lint==' || true)
fi
if [ "$have" != "$want" ]; then
  command -v python3 >/dev/null || { echo "tools.sh: python3 with venv is needed" >&2; exit 1; }
  echo "tools.sh: installing $want into $VENV" >&2
  mkdir -p "$TOOLS"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
fi
echo "tools.sh: $("$VENV/bin/cfn-lint" --version)" >&2
echo "$VENV/bin"
