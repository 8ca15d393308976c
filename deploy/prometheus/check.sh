#!/usr/bin/env bash
# check.sh: the alert rules as Prometheus reads them.
#
#   deploy/prometheus/check.sh    promtool check rules alerts.yml, then
#                                 promtool test rules alerts.test.yml
#
# promtool comes from Debian's `prometheus` package (chaos/tools.sh installs
# it). `promtool check metrics` on a real daemon's /metrics, and the check
# that every metric the rules and the Grafana dashboard name exists, run in
# the test suite (tests/metrics_lab.rs): they need a running daemon.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v promtool >/dev/null || { echo "check.sh: promtool not found: run chaos/tools.sh" >&2; exit 1; }
cd "$HERE"
start=$(date +%s%N)
promtool check rules alerts.yml
promtool test rules alerts.test.yml
echo "check.sh: rules checked and unit-tested in $(( ($(date +%s%N) - start) / 1000000 )) ms"
