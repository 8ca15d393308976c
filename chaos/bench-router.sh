#!/usr/bin/env bash
# Router benchmarks on loopback. Not pass/fail tests: they print figures.
#
#   chaos/bench-router.sh          # the SDK benchmark (benches/router.rs): 1 KiB
#                                  # payloads through the same SageMaker runtime SDK
#                                  # client, straight at the lab's model server and
#                                  # through a real daemon's router: closed loop
#                                  # (BENCH_CONCURRENCY callers) and open loop
#                                  # (BENCH_RATE req/s), added latency, RSS
#   chaos/bench-router.sh wrk      # wrk -t1 -c16, 1 KiB POSTs, alternating rounds:
#                                  # the model server direct (the ceiling),
#                                  # failoverd's router, and the seed's TypeScript
#                                  # router (if SEED_ROUTER_DIR has node_modules)
#
# Release builds (Cargo.toml's [profile.release]); nice'd. Settings (environment):
#   BENCH_CONCURRENCY=16 BENCH_SECONDS=5 BENCH_RATE=1000   (sdk mode)
#   BENCH_ROUNDS=5 BENCH_SLICE_MS=500                       (sdk mode: open-loop rounds;
#                        direct and router alternate in slices of this length)
#   BENCH_DAEMON_WORKERS=n  the daemon's tokio worker threads (sdk mode)
#   WRK_CONNECTIONS=16 WRK_SECONDS=8 WRK_ROUNDS=3           (wrk mode)
#   BENCH_BIN_DIR=dir    use failoverd and failoverd-lab from dir (e.g. an older
#                        build to compare against) instead of target/release
#   SEED_ROUTER_DIR=dir  the seed router, npm-installed (default /tmp/seed-ts-router;
#                        copy ../shared/bench/seed-ts-router there and `npm install`)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-sdk}

if [[ $mode == sdk ]]; then
  exec nice -n 10 cargo bench --bench router
fi
[[ $mode == wrk ]] || { echo "usage: $0 [sdk|wrk]" >&2; exit 2; }

command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
bin=${BENCH_BIN_DIR:-}
if [[ -z $bin ]]; then
  nice -n 10 cargo build --release --bins
  bin=target/release
fi
seed_dir=${SEED_ROUTER_DIR:-/tmp/seed-ts-router}
conns=${WRK_CONNECTIONS:-16}
secs=${WRK_SECONDS:-8}
rounds=${WRK_ROUNDS:-3}

tmp=$(mktemp -d /tmp/failoverd-wrk.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# Wait (up to 30 s) until command "$@" prints something; print it.
await() {
  local what=$1; shift
  for _ in $(seq 300); do
    local out
    out=$("$@" 2>/dev/null || true)
    if [[ -n $out ]]; then echo "$out"; return; fi
    sleep 0.1
  done
  echo "timed out waiting for $what" >&2; exit 1
}
# The TCP port process $1 listens on (every server here binds port 0).
listen_port() { ss -Hltnp 2>/dev/null | grep "pid=$1," | awk '{print $4}' | sed 's/.*://' | head -1; }

FAILOVERD_LOG=warn "$bin/failoverd-lab" model-server --port-file "$tmp/model.port" 2>"$tmp/model.log" &
pids+=($!)
model_port=$(await "the model server" cat "$tmp/model.port")

dead=http://127.0.0.1:9
env -i PATH="$PATH" AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=testing \
  AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 FAILOVERD_LOG=info,aws_config=warn \
  FAILOVERD__ENDPOINTS__SAGEMAKER_RUNTIME="http://127.0.0.1:$model_port" \
  FAILOVERD__ENDPOINTS__DYNAMODB=$dead FAILOVERD__ENDPOINTS__S3=$dead \
  FAILOVERD__ENDPOINTS__ROUTE53=$dead FAILOVERD__ENDPOINTS__SFN=$dead \
  FAILOVERD__ENDPOINTS__SAGEMAKER=$dead \
  FAILOVERD__LISTEN__ROUTER=127.0.0.1:0 FAILOVERD__LISTEN__ADMIN=127.0.0.1:0 \
  "$bin/failoverd" run --log-format json --bound-file "$tmp/bound.json" \
  --config regions/lab/us-east-1.toml 2>"$tmp/daemon.log" </dev/null &
daemon_pid=$!
pids+=($daemon_pid)
# The daemon binds port 0 and reports what it bound in its bound file.
router_addr=$(await "the router" sh -c "grep -o '\"router\":\"[0-9.:]*\"' '$tmp/bound.json' 2>/dev/null | cut -d'\"' -f4")

targets=("direct http://127.0.0.1:$model_port/endpoints/lab-provisioned/invocations"
         "router http://$router_addr/endpoints/default/invocations")
if [[ -d $seed_dir/node_modules ]] && command -v node >/dev/null; then
  (cd "$seed_dir" && PORT=0 UPSTREAM="http://127.0.0.1:$model_port" BATCH_THRESHOLD=100000000 \
    exec node server.mjs) >"$tmp/seed.log" 2>&1 &
  seed_pid=$!
  pids+=($seed_pid)
  seed_port=$(await "the seed router" listen_port "$seed_pid")
  targets+=("seed http://127.0.0.1:$seed_port/endpoints/default/invocations")
else
  echo "(no seed router: $seed_dir/node_modules missing)" >&2
fi

cat >"$tmp/post1k.lua" <<'EOF'
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["X-Traffic-Class"] = "standard"
EOF

# Warm every target (connections, the daemon's clients, node's JIT).
for t in "${targets[@]}"; do
  set -- $t
  wrk -t1 -c"$conns" -d2s -s "$tmp/post1k.lua" "$2" >/dev/null
done

echo "wrk -t1 -c$conns -d${secs}s, 1 KiB POST, $rounds alternating rounds, $(nproc) CPUs ($bin)"
declare -A sum
for r in $(seq "$rounds"); do
  for t in "${targets[@]}"; do
    set -- $t
    out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$tmp/post1k.lua" "$2")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    printf '  round %d  %-7s %9.0f req/s  p50 %8s  p99 %8s  non-2xx %s\n' "$r" "$1" "$rps" "$p50" "$p99" "${non2xx:-0}"
    sum[$1]=$(awk -v a="${sum[$1]:-0}" -v b="$rps" 'BEGIN {print a + b}')
  done
done
echo "mean over rounds:"
for t in "${targets[@]}"; do
  set -- $t
  printf '  %-7s %9.0f req/s\n' "$1" "$(awk -v s="${sum[$1]}" -v n="$rounds" 'BEGIN {print s / n}')"
done
direct=${sum[direct]}
awk -v r="${sum[router]}" -v d="$direct" 'BEGIN {printf "router / direct: %.2f\n", r / d}'
if [[ -n ${sum[seed]:-} ]]; then
  awk -v r="${sum[router]}" -v s="${sum[seed]}" 'BEGIN {printf "router / seed:   %.2f\n", r / s}'
fi
echo "daemon RSS: $(awk '/VmRSS/ {printf "%.1f MiB", $2 / 1024}' /proc/$daemon_pid/status)"
