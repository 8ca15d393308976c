#!/usr/bin/env bash
# Router benchmark on loopback: 1 KiB payloads through the same SageMaker
# runtime SDK client, straight at the lab's model server and through a real
# failoverd daemon's router. Prints throughput, latency p50/p90/p99, the
# router's added latency and the daemon's RSS. Not a pass/fail test.
#
#   chaos/bench-router.sh                      # 16 callers, 5 s per phase
#   BENCH_CONCURRENCY=64 BENCH_SECONDS=10 chaos/bench-router.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench router
