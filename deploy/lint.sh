#!/usr/bin/env bash
# lint.sh: the deploy templates' checks, as CI runs them (.ci/run).
#
#   1. render deploy/cloudformation (deploy/render.sh) into a temp folder;
#   2. cfn-lint (pinned, installed by deploy/tools.sh) on every rendered
#      template, with failoverd's policy-as-code rules (deploy/lint/rules):
#      encryption at rest, no wildcard in the daemon's policy, deletion
#      protection on the tables, billing alarms only in us-east-1, a
#      workflow that a region without a replica can leave out;
#   3. every fixture in deploy/lint/fixtures and every mutant of the real
#      templates (deploy/lint/check.py) must FAIL with the rule it breaks.
#
# Needs python3 (for the tools' venv) and bash; no AWS account.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$("$ROOT/deploy/tools.sh" | tail -n 1)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$ROOT/deploy/render.sh" --out "$tmp/templates"
"$BIN/python" "$ROOT/deploy/lint/check.py" --templates "$tmp/templates" \
  --fixtures "$ROOT/deploy/lint/fixtures" --rules "$ROOT/deploy/lint/rules"
