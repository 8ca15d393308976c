#!/usr/bin/env bash
# The local three-region lab: no AWS account needed, everything on 127.0.0.1.
#
#   chaos/lab.sh install   what the tests need, idempotently: chaos/.venv with the
#                          pinned moto, and promtool and headless Chromium
#                          (chaos/tools.sh)
#   chaos/lab.sh up        install, build, start moto + model server, provision
#                          three regions (deploy/cloudformation, through moto's
#                          CloudFormation), start three daemons, wait until
#                          ready, then run the drill
#   chaos/lab.sh up --second REGION
#                          the same, with a second daemon in REGION (repeat the
#                          option for more regions): instance `b`, its own
#                          admin and router ports, named REGION-b below
#                          (docs/instances.md)
#   chaos/lab.sh drill     invert the active region's health check, print the
#                          failover timeline, restore it, fail back, print again;
#                          writes each failover's report (HTML with the timeline
#                          SVG, JSON with every event and figure) under
#                          $RUN/reports/
#   chaos/lab.sh drill --throttle-route53 45
#                          the same after Route 53 has answered Throttling to
#                          every call for 45 s (inverting 6 s after it recovers)
#   chaos/lab.sh down      stop everything `up` started (by PID), leave nothing
#   chaos/lab.sh status    what is running and where its logs are
#   chaos/lab.sh test      install everything the suite needs (the lab's
#                          virtualenv, and promtool and headless Chromium
#                          through chaos/tools.sh), then run the whole suite
#
# State lives in chaos/.run (PIDs, ports, logs, rendered config). Every server
# binds 127.0.0.1:0 and reports the port it got (moto and the model server in
# NAME.port, each daemon in REGION.bound.json via --bound-file); the lab reads
# the reports, it never guesses a free port.
# FAILOVERD_LAB_CONSISTENCY=eventual runs one replica per region with the lab's
# lagged last-writer-wins replicator (no automatic failover there: no drill).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${FAILOVERD_LAB_VENV:-$ROOT/chaos/.venv}
RUN=${FAILOVERD_LAB_RUN:-$ROOT/chaos/.run}
REGIONS=(us-east-1 us-west-2 eu-west-1)
WAIT_SECS=${FAILOVERD_LAB_WAIT:-60}

say() { printf 'lab: %s\n' "$*"; }
die() { printf 'lab: error: %s\n' "$*" >&2; exit 1; }

install_venv() {
  local want have=""
  want=$(grep -E '^moto==' "$ROOT/chaos/requirements.txt")
  if [ -x "$VENV/bin/moto_server" ]; then
    have=$("$VENV/bin/python" -m pip freeze 2>/dev/null | grep -E '^moto==' || true)
  fi
  if [ "$have" = "$want" ]; then
    say "virtualenv $VENV has $have"
    return 0
  fi
  command -v python3 >/dev/null || die "python3 is needed to install the lab (apt-get install python3 python3-venv)"
  say "installing $want into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/chaos/requirements.txt"
  say "installed $("$VENV/bin/python" -m pip freeze | grep -E '^moto==')"
}

# wait_report NAME FILE: wait until process NAME (started with `start`) has
# written FILE, at most WAIT_SECS; die naming its log if it exits first.
wait_report() {
  local name=$1 file=$2 deadline=$((SECONDS + WAIT_SECS))
  until [ -s "$file" ]; do
    alive "$name" || die "$name exited before reporting its port in $file; see $RUN/$name.log:
$(tail -n 20 "$RUN/$name.log" 2>/dev/null)"
    [ $SECONDS -lt $deadline ] || die "$name did not report its port in $file within ${WAIT_SECS}s (see $RUN/$name.log)"
    sleep 0.1
  done
}

# bound_port FILE KEY: the port of KEY (admin or router) in a daemon's --bound-file.
bound_port() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]].rsplit(":", 1)[1])' "$1" "$2"
}

# wait_http URL WHAT: poll until URL answers 2xx, at most WAIT_SECS.
wait_http() {
  local url=$1 what=$2 deadline=$((SECONDS + WAIT_SECS))
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || die "$what did not answer at $url within ${WAIT_SECS}s (see $RUN/*.log)"
    sleep 0.2
  done
}

# start NAME CMD...: run in the background, record its PID.
start() {
  local name=$1; shift
  "$@" >"$RUN/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

lab_env() {
  # Dummy credentials for moto; the daemons use the SDK's default chain.
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=
  export AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
  export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
  local moto model
  moto=$(cat "$RUN/moto.port"); model=$(cat "$RUN/model.port")
  export FAILOVERD__ENDPOINTS__DYNAMODB=http://127.0.0.1:$moto
  export FAILOVERD__ENDPOINTS__S3=http://127.0.0.1:$moto
  export FAILOVERD__ENDPOINTS__ROUTE53=http://127.0.0.1:$moto
  export FAILOVERD__ENDPOINTS__SFN=http://127.0.0.1:$moto
  export FAILOVERD__ENDPOINTS__SAGEMAKER=http://127.0.0.1:$moto
  export FAILOVERD__ENDPOINTS__CLOUDWATCH=http://127.0.0.1:$moto
  export FAILOVERD__ENDPOINTS__APPLICATION_AUTOSCALING=http://127.0.0.1:$moto
  export FAILOVERD__ENDPOINTS__SERVICE_QUOTAS=http://127.0.0.1:$moto
  export FAILOVERD__ENDPOINTS__IAM=http://127.0.0.1:$moto
  export FAILOVERD__ENDPOINTS__SAGEMAKER_RUNTIME=http://127.0.0.1:$model
  # The operator CLI records who acts from STS GetCallerIdentity; the SDK's
  # own per-service endpoint variable sends it to moto.
  export AWS_ENDPOINT_URL_STS=http://127.0.0.1:$moto
}

# The daemons `up` started: each region's, then the second ones (REGION-b).
daemons() {
  printf '%s\n' "${REGIONS[@]}"
  [ -f "$RUN/seconds" ] && sed 's/$/-b/' "$RUN/seconds"
  return 0
}

up() {
  local seconds=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --second)
        local want=${2:?--second REGION} ok=""
        for r in "${REGIONS[@]}"; do [ "$r" = "$want" ] && ok=1; done
        [ -n "$ok" ] || die "--second takes one of ${REGIONS[*]}, not $want"
        seconds+=("$want"); shift 2 ;;
      *) die "up: unknown option $1 (--second REGION)" ;;
    esac
  done
  install_venv
  [ ! -f "$RUN/moto.pid" ] || { alive moto && die "the lab is already up (chaos/lab.sh down first)"; }
  say "building"
  (cd "$ROOT" && cargo build --quiet --bins)
  rm -rf "$RUN"; mkdir -p "$RUN"
  [ ${#seconds[@]} -eq 0 ] || printf '%s\n' "${seconds[@]}" >"$RUN/seconds"
  local bin=$ROOT/target/debug

  # moto binds port 0 itself (chaos/lab/moto_server.py: moto_server -p 0
  # would not say which port it got) and writes it to moto.port.
  start moto "$VENV/bin/python" "$ROOT/chaos/lab/moto_server.py" --port-file "$RUN/moto.port"
  wait_report moto "$RUN/moto.port"
  local moto; moto=$(cat "$RUN/moto.port")
  wait_http "http://127.0.0.1:$moto/moto-api/" "moto"
  # Step Functions really executes only with this switch (lost on restart).
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$moto/moto-api/config" \
    -H 'Content-Type: application/json' -d '{"stepfunctions":{"execute_state_machine":true}}'
  say "moto on 127.0.0.1:$moto (Step Functions interpreter on)"

  start model "$bin/failoverd-lab" model-server --port-file "$RUN/model.port" --s3-endpoint "http://127.0.0.1:$moto"
  wait_report model "$RUN/model.port"
  say "model server on 127.0.0.1:$(cat "$RUN/model.port")"

  lab_env
  local consistency=${FAILOVERD_LAB_CONSISTENCY:-strong}
  (cd "$ROOT" && "$bin/failoverd-lab" provision --config regions/lab/us-east-1.toml \
      --consistency "$consistency" --out "$RUN/regions" >"$RUN/provision.log" 2>&1) \
    || die "provisioning failed: $(tail -n 5 "$RUN/provision.log")"
  say "provisioned 3 regions: deploy/cloudformation stacks through moto's CloudFormation (region.yaml x3, iam.yaml), tables via the adapter (no GlobalTable in moto), $consistency consistency"
  if [ "$consistency" = eventual ]; then
    start replicate "$bin/failoverd-lab" replicate --config "$RUN/regions/us-east-1.toml" --lag 300ms
  fi

  # Daemons bind 127.0.0.1:0 for both listeners and report what they got.
  local r
  for r in "${REGIONS[@]}"; do
    (cd "$RUN" && FAILOVERD__LISTEN__ADMIN=127.0.0.1:0 FAILOVERD__LISTEN__ROUTER=127.0.0.1:0 \
      start "$r" "$bin/failoverd" run --config "$RUN/regions/$r.toml" --log-format json \
        --bound-file "$RUN/$r.bound.json")
  done
  # Second daemons: the same region file, instance `b`.
  for r in ${seconds[@]+"${seconds[@]}"}; do
    (cd "$RUN" && FAILOVERD__INSTANCE=b FAILOVERD__LISTEN__ADMIN=127.0.0.1:0 FAILOVERD__LISTEN__ROUTER=127.0.0.1:0 \
      start "$r-b" "$bin/failoverd" run --config "$RUN/regions/$r.toml" --log-format json \
        --bound-file "$RUN/$r-b.bound.json")
  done
  local names; mapfile -t names < <(daemons)
  for r in "${names[@]}"; do
    wait_report "$r" "$RUN/$r.bound.json"
    bound_port "$RUN/$r.bound.json" admin >"$RUN/$r.admin"
    bound_port "$RUN/$r.bound.json" router >"$RUN/$r.router"
  done
  for r in "${names[@]}"; do
    wait_http "http://127.0.0.1:$(cat "$RUN/$r.admin")/readyz" "daemon $r"
  done
  status
  if [ "${FAILOVERD_LAB_NO_DRILL:-}" = 1 ] || [ "$consistency" = eventual ]; then
    say "no drill (FAILOVERD_LAB_NO_DRILL=1 or eventual mode); chaos/lab.sh down to stop"
  else
    drill
  fi
}

# json_field EXPR: evaluate a Python expression on `failoverd status --output json` as `s`.
json_field() {
  "$ROOT/target/debug/failoverd" status --config "$RUN/regions/us-west-2.toml" --output json 2>/dev/null \
    | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)" 2>/dev/null || true
}

# wait_until DESC EXPR: poll until the Python expression on the status is True.
wait_until() {
  local desc=$1 expr=$2 deadline=$((SECONDS + ${3:-120}))
  until [ "$(json_field "$expr")" = "True" ]; do
    [ $SECONDS -lt $deadline ] || die "drill: timed out waiting for $desc"
    sleep 0.5
  done
}

drill() {
  [ -f "$RUN/moto.port" ] || die "the lab is not up (chaos/lab.sh up)"
  lab_env
  local bin=$ROOT/target/debug cfg=$RUN/regions/us-west-2.toml active epoch t0 t1 throttle=""
  if [ "${1:-}" = --throttle-route53 ]; then
    throttle=${2:?--throttle-route53 SECONDS}
    [[ $throttle =~ ^[0-9]+$ ]] || die "--throttle-route53 takes whole seconds"
  fi
  wait_until "the control record" "s['record'] is not None and s['record']['phase'] == 'steady'" 60
  active=$(json_field "s['record']['active']"); epoch=$(json_field "s['record']['epoch']")
  if [ -n "$throttle" ]; then
    # Route 53 answers Throttling to every call for $throttle s (the lab's
    # moto launcher does it; moto has no such fault), then recovers; the
    # inversion comes 6 s after the recovery.
    say "drill: Route 53 throttles every call for ${throttle} s, then recovers; inverting 6 s later"
    curl -fsS -X POST "http://127.0.0.1:$(cat "$RUN/moto.port")/_lab/route53-throttle?seconds=$throttle" >/dev/null \
      || die "cannot throttle the lab's Route 53"
    sleep $((throttle + 6))
  fi
  say "drill: $active is active at epoch $epoch; inverting its Route 53 health check"
  t0=$("$bin/failoverd-lab" invert --config "$cfg" --region "$active")
  wait_until "the failover away from $active" "s['record']['active'] != '$active' and s['record']['phase'] == 'steady' and s['record']['epoch'] == $((epoch + 1))"
  "$bin/failoverd-lab" timeline --config "$cfg" --since "$t0" --epoch $((epoch + 1)) \
    --label "the inversion of $active's health check" --report-dir "$RUN/reports" || true
  say "drill: now active: $(json_field "s['record']['active']"); restoring $active's check"
  "$bin/failoverd-lab" invert --config "$cfg" --region "$active" --revert >/dev/null
  wait_until "$active to be up by quorum" "s['tally']['regions'].get('$active') == 'up'" 60
  say "drill: failing back with: failoverd failback --yes"
  t1=$(python3 -c 'import time; print(int(time.time()*1000))')
  "$bin/failoverd" failback --config "$cfg" --yes --reason "lab drill: $active recovered" \
    || die "failback was refused"
  wait_until "the failback to $active" "s['record']['active'] == '$active' and s['record']['phase'] == 'steady'"
  "$bin/failoverd-lab" timeline --config "$cfg" --since "$t1" --epoch $((epoch + 2)) \
    --label "the failback command" --report-dir "$RUN/reports" || true
  say "drill: done; $active is active again. Reports (open the HTML in any browser):"
  ls -1 "$RUN"/reports/drill-epoch-*.html "$RUN"/reports/drill-epoch-*.json 2>/dev/null | sed 's/^/lab:   /' || true
  say "status page of each daemon: $(for r in "${REGIONS[@]}"; do printf 'http://127.0.0.1:%s/ ' "$(cat "$RUN/$r.admin")"; done)"
  say "full status:"
  "$bin/failoverd" status --config "$cfg" --events 0 || true
}

status() {
  [ -d "$RUN" ] || { say "the lab is down"; return 0; }
  local n names; mapfile -t names < <(daemons)
  for n in moto model replicate "${names[@]}"; do
    if alive "$n"; then
      local extra=""
      [ -f "$RUN/$n.admin" ] && extra=" admin=http://127.0.0.1:$(cat "$RUN/$n.admin") router=127.0.0.1:$(cat "$RUN/$n.router")"
      [ -f "$RUN/$n.port" ] && extra=" port=$(cat "$RUN/$n.port")"
      say "$(printf '%-10s' "$n") pid $(cat "$RUN/$n.pid")$extra log $RUN/$n.log"
    elif [ -f "$RUN/$n.pid" ]; then
      say "$(printf '%-10s' "$n") NOT RUNNING (log $RUN/$n.log)"
    fi
  done
}

down() {
  [ -d "$RUN" ] || { say "nothing to stop"; return 0; }
  local f pid name left=0 names; mapfile -t names < <(daemons)
  # Daemons first (they drain), then the model server, then moto.
  for name in "${names[@]}" replicate model moto; do
    f=$RUN/$name.pid
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      local deadline=$((SECONDS + 15))
      while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then
        say "$name (pid $pid) ignored SIGTERM for 15s; killing"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
      fi
    fi
    if kill -0 "$pid" 2>/dev/null; then
      say "$name (pid $pid) is still running"; left=1
    else
      rm -f "$f"
    fi
  done
  [ $left -eq 0 ] || die "some processes could not be stopped"
  say "stopped; logs kept in $RUN"
}

# install: everything the test suite needs. The operator-facing tests judge
# the metrics with promtool and the status page in headless Chromium
# (chaos/tools.sh, Debian's packages); `up` needs only the virtualenv.
install() {
  install_venv
  "$ROOT/chaos/tools.sh"
}

run_tests() {
  install
  cd "$ROOT"
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast "$@"
  else
    cargo test --no-fail-fast "$@"
  fi
}

case "${1:-}" in
  install) install ;;
  up) shift; up "$@" ;;
  down) down ;;
  status) status ;;
  drill) shift; drill "$@" ;;
  test) shift; run_tests "$@" ;;
  *) sed -n '2,18p' "$0"; exit 2 ;;
esac
