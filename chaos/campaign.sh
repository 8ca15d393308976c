#!/usr/bin/env bash
# A real-process campaign: N randomized drills in one full lab (kill -9,
# SIGSTOP, walls between a daemon and AWS, health-check inversions, model
# faults), load through every router, the invariants checked from outside
# (tests/campaign.rs says which). Prints a table of the drills.
#
#   chaos/campaign.sh [N] [first seed]      # default 10 drills from seed 1
#
# Needs the lab installed (chaos/lab.sh install). Every drill takes about a
# minute. CI runs 2 of them as part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export CAMPAIGN_DRILLS=${1:-10} CAMPAIGN_SEED=${2:-1}
if [[ -z ${FAILOVERD_LAB_VENV:-} && -x chaos/.venv/bin/python ]]; then
  export FAILOVERD_LAB_VENV=$PWD/chaos/.venv
fi
# cargo test, not nextest: nextest's 8-minute backstop (.config/nextest.toml)
# would stop a long campaign; the test bounds every wait itself.
exec cargo test --test campaign -- --nocapture
