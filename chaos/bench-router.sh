#!/usr/bin/env bash
# Router benchmarks on loopback. Not pass/fail tests: they print figures.
#
#   chaos/bench-router.sh side     # side by side (issue 20): wrk -t1 -c16, 1 KiB POSTs
#                                  # (../shared/bench/post1k.lua's request), one upstream
#                                  # (the lab's model server), in alternating rounds:
#                                  #   direct     the model server, no hop (the ceiling)
#                                  #   nginx      Debian's nginx, one worker, upstream
#                                  #              keep-alive, no signing (the floor for
#                                  #              two HTTP hops)
#                                  #   failoverd  failoverd's router (SigV4-signed)
#                                  #   seed       the seed's TypeScript router
#                                  #              (../shared/bench/seed-ts-router)
#                                  #   before     with BENCH_BASELINE_DIR: failoverd from
#                                  #              that directory (an older build), same run
#                                  #   onethread  failoverd with router.threads = 1 (as
#                                  #              nginx's one worker)
#                                  #   nginx2     nginx with two workers (as failoverd's
#                                  #              default, a thread per core here)
#                                  # Prints, per round and target, req/s, p50, p99, the CPU
#                                  # per request of the proxy process (utime + stime of every
#                                  # thread, from /proc/<pid>/stat; nginx: master + worker),
#                                  # its stime part, its voluntary context switches per
#                                  # request (wake-ups), and the model server's CPU per
#                                  # request; then a summary with ratios against nginx's
#                                  # figures of the same round.
#   chaos/bench-router.sh wrk      # the same as `side`
#   chaos/bench-router.sh perf     # profile failoverd's router under the same wrk load:
#                                  # `perf stat` of the daemon, then `perf record -g`
#                                  # (call graphs) and the top of `perf report`
#   chaos/bench-router.sh sdk      # the SDK benchmark (benches/router.rs; the default):
#                                  # the same SageMaker runtime SDK client straight at the
#                                  # model server and through a daemon's router, closed
#                                  # loop and open loop, added latency, RSS
#
# `side` and `perf` install wrk and nginx from Debian when missing (apt-get,
# as root or with sudo; nothing installed by hand survives a new machine),
# copy the seed router to a temporary directory and `npm install` it there
# when node is present, and use release builds (`cargo build --release`
# unless BENCH_BIN_DIR is set). Everything listens on 127.0.0.1 only; every
# server started here is stopped on exit (by PID), and every wait is bounded.
#
# Settings (environment):
#   WRK_CONNECTIONS=16 WRK_SECONDS=8 WRK_ROUNDS=3   (side, perf)
#   BENCH_BIN_DIR=dir       failoverd and failoverd-lab from dir instead of target/release
#   BENCH_BASELINE_DIR=dir  also run failoverd from dir as target `before` (the model
#                           server stays the one from BENCH_BIN_DIR), for before/after
#                           figures from the same run
#   BENCH_TARGETS="direct nginx failoverd seed before"   which targets, in round order
#                           (also `component`: failoverd with a model on an inference component)
#                           (each round starts one further along the list)
#   SEED_ROUTER_DIR=dir     an npm-installed seed router to use as is (default: copy
#                           ../shared/bench/seed-ts-router and npm install it)
#   BENCH_WRK_OUT=dir       side mode: keep each round's wrk output (its latency
#                           distribution) as dir/<target>.<round>.txt
#   PERF_OUT=file           perf mode: where perf.data goes (default /tmp/failoverd-perf.data)
#   BENCH_CONCURRENCY=16 BENCH_SECONDS=5 BENCH_RATE=1000 BENCH_ROUNDS=5
#   BENCH_SLICE_MS=500 BENCH_DAEMON_WORKERS=n               (sdk mode)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-sdk}

case $mode in
  sdk) exec nice -n 10 cargo bench --bench router ;;
  side | wrk | perf) ;;
  *) echo "usage: $0 [sdk|side|perf]" >&2; exit 2 ;;
esac

# --- tools -----------------------------------------------------------------

nginx_bin() { command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true; }

# wrk and nginx from Debian, when missing. The packages' maintainer scripts
# would start nginx as a service (port 80, all interfaces); a policy-rc.d
# that refuses service starts is put in place for the install if the host
# has none, and removed after.
install_tools() {
  local need=()
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
  [[ $mode == perf || -n $(nginx_bin) ]] || need+=(nginx)
  [[ $mode != perf ]] || command -v perf >/dev/null 2>&1 || need+=(linux-perf)
  [[ ${#need[@]} -gt 0 ]] || return 0
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "missing ${need[*]}; run as root, or: sudo apt-get install ${need[*]}" >&2
      exit 1
    fi
  fi
  local policy=/usr/sbin/policy-rc.d made_policy=
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Debian 12 has nginx-light (the proxy without extra modules); later
  # releases only `nginx`. A failing mirror is tried three times, 10 s apart.
  local ok= pkgs
  for attempt in 1 2 3; do
    if timeout 300 "${sudo[@]}" apt-get update -qq >/dev/null; then
      for pkgs in "${need[*]/nginx/nginx-light}" "${need[*]}"; do
        # shellcheck disable=SC2086
        if timeout 600 "${sudo[@]}" apt-get install -y -qq --no-install-recommends $pkgs >/dev/null; then
          ok=1
          break 2
        fi
      done
    fi
    [[ $attempt -lt 3 ]] && { echo "apt-get failed (try $attempt of 3); again in 10 s" >&2; sleep 10; }
  done
  [[ -z $made_policy ]] || "${sudo[@]}" rm -f "$policy"
  [[ -n $ok ]] || { echo "apt-get could not install ${need[*]} (3 tries)" >&2; exit 1; }
}
install_tools

bin=${BENCH_BIN_DIR:-}
if [[ -z $bin ]]; then
  nice -n 10 cargo build --release --bins
  bin=target/release
fi
baseline=${BENCH_BASELINE_DIR:-}
conns=${WRK_CONNECTIONS:-16}
secs=${WRK_SECONDS:-8}
rounds=${WRK_ROUNDS:-3}
hz=$(getconf CLK_TCK)

tmp=$(mktemp -d /tmp/failoverd-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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
# The TCP port process $1 listens on.
listen_port() { ss -Hltnp 2>/dev/null | grep "pid=$1," | awk '{print $4}' | sed 's/.*://' | head -1; }

# --- servers ---------------------------------------------------------------

FAILOVERD_LOG=warn "$bin/failoverd-lab" model-server --port-file "$tmp/model.port" 2>"$tmp/model.log" &
model_pid=$!
pids+=("$model_pid")
model_port=$(await "the model server" cat "$tmp/model.port")

# A daemon (binary $1, name $2) whose router calls the model server; the
# AWS endpoints it does not need point at a closed port. Sets started_pid
# and started_addr (its router's address).
start_daemon() {
  local exe=$1 name=$2 config=${3:-regions/lab/us-east-1.toml} dead=http://127.0.0.1:9
  # $4: more VAR=value settings for the daemon's environment.
  # shellcheck disable=SC2086
  env -i ${4:-} PATH="$PATH" AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=testing \
    AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 FAILOVERD_LOG=warn \
    FAILOVERD__ENDPOINTS__SAGEMAKER_RUNTIME="http://127.0.0.1:$model_port" \
    FAILOVERD__ENDPOINTS__DYNAMODB=$dead FAILOVERD__ENDPOINTS__S3=$dead \
    FAILOVERD__ENDPOINTS__ROUTE53=$dead FAILOVERD__ENDPOINTS__SFN=$dead \
    FAILOVERD__ENDPOINTS__SAGEMAKER=$dead \
    FAILOVERD__LISTEN__ROUTER=127.0.0.1:0 FAILOVERD__LISTEN__ADMIN=127.0.0.1:0 \
    "$exe" run --log-format json --bound-file "$tmp/$name.bound.json" \
    --config "$config" >"$tmp/$name.out" 2>"$tmp/$name.log" </dev/null &
  started_pid=$!
  pids+=("$started_pid")
  # The daemon binds port 0 and reports what it bound in its bound file.
  started_addr=$(await "$name's router" sh -c "grep -o '\"router\":\"[0-9.:]*\"' '$tmp/$name.bound.json' 2>/dev/null | cut -d'\"' -f4")
}

# nginx cannot listen on port 0 (it would not say which port it got), so
# the OS picks one: python binds 127.0.0.1:0, prints the port and closes
# it, and nginx binds that. Another process may take the port in between:
# then nginx fails with EADDRINUSE and we pick again (5 tries). Sets
# nginx_pid (the master) and nginx_port.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
start_nginx() {
  local nginx workers=${1:-1} dir=$tmp/nginx${1:-} port pid
  nginx=$(nginx_bin)
  mkdir -p "$dir"
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    cat >"$dir/nginx.conf" <<EOF
# One worker (unless told), upstream keep-alive, no access log: the plain reverse proxy.
worker_processes $workers;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  client_max_body_size 8m;
  upstream model {
    server 127.0.0.1:$model_port;
    keepalive 32;
  }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://model;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
    : >"$dir/error.log"
    "$nginx" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >/dev/null 2>>"$dir/error.log" &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      if [[ $(listen_port "$pid") == "$port" ]]; then
        nginx_pid=$pid nginx_port=$port
        return
      fi
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if grep -q "Address already in use" "$dir/error.log"; then continue; fi
    echo "nginx did not start:" >&2
    cat "$dir/error.log" >&2
    exit 1
  done
  echo "nginx: no free port after 5 tries" >&2
  exit 1
}

# The seed router: SEED_ROUTER_DIR as is, or a copy of ../shared/bench's,
# npm-installed here (bounded). Prints its directory, or nothing.
# (Called in $(...): it starts no process that outlives it.)
seed_router_dir() {
  if [[ -n ${SEED_ROUTER_DIR:-} ]]; then
    [[ -d $SEED_ROUTER_DIR/node_modules ]] && echo "$SEED_ROUTER_DIR"
    return 0
  fi
  local src=../shared/bench/seed-ts-router
  [[ -d $src ]] && command -v node >/dev/null && command -v npm >/dev/null || return 0
  cp -r "$src" "$tmp/seed"
  chmod -R u+w "$tmp/seed"
  if (cd "$tmp/seed" && timeout 300 npm install --no-audit --no-fund --loglevel=error) >"$tmp/npm.log" 2>&1; then
    echo "$tmp/seed"
  else
    echo "(npm install of the seed router failed: $(tail -1 "$tmp/npm.log"))" >&2
  fi
}

cat >"$tmp/post1k.lua" <<'EOF'
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["X-Traffic-Class"] = "standard"
EOF

# wrk against URL $1 for $2 seconds, bounded.
run_wrk() { timeout $(($2 + 30)) wrk -t1 -c"$conns" -d"$2s" --latency -s "$tmp/post1k.lua" "$1"; }

start_daemon "$bin/failoverd" failoverd
daemon_pid=$started_pid router_addr=$started_addr

if [[ $mode == perf ]]; then
  url=http://$router_addr/endpoints/default/invocations
  out=${PERF_OUT:-/tmp/failoverd-perf.data}
  run_wrk "$url" 3 >/dev/null
  echo "perf stat of failoverd (pid $daemon_pid) under wrk -t1 -c$conns -d${secs}s ($bin):"
  run_wrk "$url" "$secs" >"$tmp/wrk.out" &
  wrk_pid=$!
  perf stat -p "$daemon_pid" -e task-clock,context-switches,cpu-migrations,page-faults -- sleep "$((secs - 1))" 2>&1 | sed '/^$/d'
  wait "$wrk_pid"
  reqs=$(awk '/requests in/ {print $1}' "$tmp/wrk.out")
  echo "  wrk: $reqs requests, $(awk '/Requests\/sec/ {print $2}' "$tmp/wrk.out") req/s (perf stat covered $((secs - 1)) s of $secs)"
  run_wrk "$url" "$secs" >"$tmp/wrk.out" &
  wrk_pid=$!
  perf record -g -F 2999 -o "$out" -p "$daemon_pid" -- sleep "$((secs - 1))" 2>"$tmp/perf.log" >/dev/null
  wait "$wrk_pid"
  echo "perf record -g: $out (perf report -i $out); the top, self time:"
  perf report -i "$out" --no-children --percent-limit 0.7 --stdio -g none 2>/dev/null \
    | grep -v '^#' | sed '/^$/d' | head -60
  exit 0
fi

# --- side by side ----------------------------------------------------------

declare -A url proc
targets=()
for t in ${BENCH_TARGETS:-direct nginx failoverd seed before}; do
  case $t in
    direct)
      url[direct]=http://127.0.0.1:$model_port/endpoints/lab-provisioned/invocations
      proc[direct]=""
      ;;
    nginx)
      start_nginx
      url[nginx]=http://127.0.0.1:$nginx_port/endpoints/lab-provisioned/invocations
      proc[nginx]="nginx:$nginx_pid"
      ;;
    nginx2)
      start_nginx 2
      url[nginx2]=http://127.0.0.1:$nginx_port/endpoints/lab-provisioned/invocations
      proc[nginx2]="nginx:$nginx_pid"
      ;;
    onethread)
      start_daemon "$bin/failoverd" onethread "" FAILOVERD__ROUTER__THREADS=1
      url[onethread]=http://$started_addr/endpoints/default/invocations
      proc[onethread]=$started_pid
      ;;
    failoverd)
      url[failoverd]=http://$router_addr/endpoints/default/invocations
      proc[failoverd]=$daemon_pid
      ;;
    component)
      # The same binary, with one more model served as an inference
      # component of an endpoint of its own (bench-gpu) in every lab region: the router
      # maps it and writes X-Amzn-SageMaker-Inference-Component (the model
      # server was told of no components, so it takes the header).
      mkdir -p "$tmp/regions"
      cp regions/lab/*.toml "$tmp/regions/"
      {
        printf '\n[[models]]\nname = "bench-ic"\n'
        for r in us-east-1 us-west-2 eu-west-1; do
          printf '[models.regions.%s]\nendpoint = "bench-gpu"\ninference_component = "bench-ic-%s"\n' "$r" "$r"
        done
      } >>"$tmp/regions/base.toml"
      start_daemon "$bin/failoverd" component "$tmp/regions/us-east-1.toml"
      url[component]=http://$started_addr/endpoints/bench-ic/invocations
      proc[component]=$started_pid
      ;;
    before)
      [[ -n $baseline ]] || continue
      start_daemon "$baseline/failoverd" before
      url[before]=http://$started_addr/endpoints/default/invocations
      proc[before]=$started_pid
      ;;
    seed)
      seed_dir=$(seed_router_dir)
      if [[ -z $seed_dir ]]; then
        echo "(no seed router: needs node and npm, or SEED_ROUTER_DIR with node_modules)" >&2
        continue
      fi
      (cd "$seed_dir" && PORT=0 UPSTREAM="http://127.0.0.1:$model_port" BATCH_THRESHOLD=100000000 \
        exec node server.mjs) >"$tmp/seed.log" 2>&1 &
      seed_pid=$!
      pids+=("$seed_pid")
      seed_port=$(await "the seed router" listen_port "$seed_pid")
      url[seed]=http://127.0.0.1:$seed_port/endpoints/default/invocations
      proc[seed]=$seed_pid
      ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
  targets+=("$t")
done

# Clock ticks (utime + stime, all threads) of the processes of a target:
# a PID, or nginx:PID for nginx's master and its workers; then the stime
# part of them.
ticks() {
  local spec=$1 list=() total=0 sys=0 p f
  case $spec in
    "") echo 0 0; return ;;
    nginx:*) list=("${spec#nginx:}"); while read -r p; do list+=("$p"); done < <(pgrep -P "${spec#nginx:}") ;;
    *) list=("$spec") ;;
  esac
  for p in "${list[@]}"; do
    # Fields after the command name: state is field 3, utime 14, stime 15.
    read -r -a f < <(sed 's/.*) //' "/proc/$p/stat")
    total=$((total + f[11] + f[12]))
    sys=$((sys + f[12]))
  done
  echo "$total $sys"
}
# Voluntary context switches (a thread slept: epoll, futex) of every thread
# of a target's processes: its wake-ups.
wakeups() {
  local spec=$1 list=() total=0 p n
  case $spec in
    "") echo 0; return ;;
    nginx:*) list=("${spec#nginx:}"); while read -r p; do list+=("$p"); done < <(pgrep -P "${spec#nginx:}") ;;
    *) list=("$spec") ;;
  esac
  for p in "${list[@]}"; do
    n=$(cat /proc/"$p"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s + 0}')
    total=$((total + n))
  done
  echo "$total"
}
# A wrk latency (950.00us, 1.23ms, 1.20s) in ms.
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) ; else if (v ~ /s$/) n *= 1000; else if (v ~ /m$/) n *= 60000; printf "%.3f", n }'; }

# Warm every target (connections, the daemon's clients, node's JIT).
for t in "${targets[@]}"; do run_wrk "${url[$t]}" 2 >/dev/null; done

echo "wrk -t1 -c$conns -d${secs}s, 1 KiB POST, $rounds alternating rounds, $(nproc) CPUs, bin=$bin${baseline:+, before=$baseline}"
echo "CPU per request: the proxy's process time / requests (nginx: master + worker); model: the model server's"
echo "proxy_sys: the kernel's part of it; wakeups: the proxy's voluntary context switches (all threads) per request"
printf '  %-5s %-9s %9s %9s %9s %10s %9s %8s %10s %7s\n' round target req/s p50_ms p99_ms proxy_us proxy_sys wakeups model_us non2xx
declare -A rps p50 p99 cpu mcpu wake sys
n=${#targets[@]}
for r in $(seq "$rounds"); do
  for i in $(seq 0 $((n - 1))); do
    t=${targets[$(((i + r - 1) % n))]}
    read -r before_p before_s < <(ticks "${proc[$t]}")
    read -r before_m _ < <(ticks "$model_pid")
    before_w=$(wakeups "${proc[$t]}")
    out=$(run_wrk "${url[$t]}" "$secs")
    after_w=$(wakeups "${proc[$t]}")
    read -r after_p after_s < <(ticks "${proc[$t]}")
    read -r after_m _ < <(ticks "$model_pid")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    k="$t,$r"
    [[ -z ${BENCH_WRK_OUT:-} ]] || printf '%s\n' "$out" >"$BENCH_WRK_OUT/$t.$r.txt"
    rps[$k]=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50[$k]=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
    p99[$k]=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
    cpu[$k]=$(awk -v d=$((after_p - before_p)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
    mcpu[$k]=$(awk -v d=$((after_m - before_m)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
    wake[$k]=$(awk -v d=$((after_w - before_w)) -v n="$reqs" 'BEGIN {printf "%.2f", d / n}')
    sys[$k]=$(awk -v d=$((after_s - before_s)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    errs=$(awk '/Socket errors/ {print $0}' <<<"$out")
    if [[ -z ${proc[$t]} ]]; then shown=- shown_s=- shown_w=-; else shown=${cpu[$k]} shown_s=${sys[$k]} shown_w=${wake[$k]}; fi
    printf '  %-5s %-9s %9.0f %9s %9s %10s %9s %8s %10s %7s %s\n' "$r" "$t" "${rps[$k]}" "${p50[$k]}" "${p99[$k]}" \
      "$shown" "$shown_s" "$shown_w" "${mcpu[$k]}" "${non2xx:-0}" "${errs:+($errs)}"
  done
done

echo "summary (mean over rounds; p50 and p99 as min-max; ratios against nginx's figure of the same round, min-max):"
printf '  %-9s %9s %15s %15s %9s %9s %8s %9s %14s %14s\n' target req/s p50_ms p99_ms proxy_us proxy_sys wakeups model_us "req/s÷nginx" "cpu÷nginx"
for t in "${targets[@]}"; do
  line=$(for r in $(seq "$rounds"); do
    k="$t,$r"; kn="nginx,$r"
    echo "${rps[$k]} ${p50[$k]} ${p99[$k]} ${cpu[$k]} ${mcpu[$k]} ${rps[$kn]:-0} ${cpu[$kn]:-0} ${wake[$k]} ${sys[$k]}"
  done | awk -v proxied="${proc[$t]}" '
    function lo(a, b) { return a < b ? a : b } function hi(a, b) { return a > b ? a : b }
    NR == 1 { p50l = p50h = $2; p99l = p99h = $3; rl = 1e9; rh = 0; cl = 1e9; ch = 0 }
    { s += $1; c += $4; m += $5; w += $8; y += $9
      p50l = lo(p50l, $2); p50h = hi(p50h, $2); p99l = lo(p99l, $3); p99h = hi(p99h, $3)
      if ($6 > 0) { rl = lo(rl, $1 / $6); rh = hi(rh, $1 / $6) }
      if ($7 > 0) { cl = lo(cl, $4 / $7); ch = hi(ch, $4 / $7) } }
    END {
      rr = rh > 0 ? sprintf("%.2f-%.2f", rl, rh) : "-"
      cr = (ch > 0 && proxied != "") ? sprintf("%.2f-%.2f", cl, ch) : "-"
      cpu = proxied != "" ? sprintf("%.1f", c / NR) : "-"
      wk = proxied != "" ? sprintf("%.2f", w / NR) : "-"
      sy = proxied != "" ? sprintf("%.1f", y / NR) : "-"
      printf "%9.0f %15s %15s %9s %9s %8s %9.1f %14s %14s", s / NR, sprintf("%.2f-%.2f", p50l, p50h),
        sprintf("%.2f-%.2f", p99l, p99h), cpu, sy, wk, m / NR, rr, cr }')
  printf '  %-9s %s\n' "$t" "$line"
done
echo "failoverd RSS: $(awk '/VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$daemon_pid/status")"
