#!/usr/bin/env bash
# Validate every state machine under deploy/statemachines with the npm
# package asl-validator (pinned), after substituting the deploy-time
# placeholders the way CloudFormation's DefinitionSubstitutions does.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=$ROOT/deploy/.tools
VERSION=4.0.0
if [ ! -x "$TOOLS/node_modules/.bin/asl-validator" ]; then
  mkdir -p "$TOOLS"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS" "asl-validator@$VERSION" >/dev/null
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
status=0
for f in "$ROOT"/deploy/statemachines/*.asl.json; do
  out=$tmp/$(basename "$f")
  sed -e 's/\${AWS::Partition}/aws/g' -e 's/\${ControlTable}/failoverd-control/g' -e 's/\${ControlTableRegion}/us-east-1/g' "$f" >"$out"
  if grep -q '\${' "$out"; then
    echo "$f: unsubstituted placeholder: $(grep -o '\${[A-Za-z]*}' "$out" | sort -u | tr '\n' ' ')"; status=1; continue
  fi
  if "$TOOLS/node_modules/.bin/asl-validator" --json-path "$out"; then
    echo "$f: valid"
  else
    echo "$f: INVALID"; status=1
  fi
done
exit $status
