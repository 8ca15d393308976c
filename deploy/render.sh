#!/usr/bin/env bash
# render.sh: turn deploy/cloudformation/*.yaml into deployable templates.
#
#   deploy/render.sh [--out DIR]          (default DIR: deploy/.build)
#
# A template line of the form
#
#   <indent>#failoverd-render: include <path>
#
# (inside a YAML block scalar) is replaced by the lines of <path>, relative to
# the template's folder, each prefixed with <indent>. That is how region.yaml
# carries deploy/statemachines/failover.asl.json without a second copy of the
# definition: whatever the definition file holds when you render is what is
# deployed. Every other line is copied as is; templates without the marker
# are copied unchanged, so DIR holds every template, ready for
# `aws cloudformation deploy --template-file DIR/<name>.yaml`.
#
# Bash and coreutils only, on purpose: the lab's provisioning runs this same
# script (so the lab deploys exactly what an operator deploys), and it must run
# on an operator's laptop without Python or a Rust toolchain.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$ROOT/deploy/cloudformation
OUT=$ROOT/deploy/.build

while [ $# -gt 0 ]; do
  case $1 in
    --out) OUT=${2:?--out needs a folder}; shift 2 ;;
    --src) SRC=${2:?--src needs a folder}; shift 2 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "render.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

mkdir -p "$OUT"
marker='^([[:space:]]*)#failoverd-render: include (.+)$'
rendered=0
count=0
for tpl in "$SRC"/*.yaml; do
  name=$(basename "$tpl")
  tmp=$OUT/.$name.tmp
  : >"$tmp"
  while IFS= read -r line || [ -n "$line" ]; do
    if [[ $line =~ $marker ]]; then
      indent=${BASH_REMATCH[1]}
      inc=${BASH_REMATCH[2]}
      [[ $inc = /* ]] || inc=$(dirname "$tpl")/$inc
      if [ ! -f "$inc" ]; then
        echo "render.sh: $name: included file $inc does not exist" >&2
        rm -f "$tmp"; exit 1
      fi
      n=0
      while IFS= read -r inner || [ -n "$inner" ]; do
        # Blank lines stay blank (YAML block scalars allow them unindented).
        if [ -n "$inner" ]; then printf '%s%s\n' "$indent" "$inner"; else printf '\n'; fi
        n=$((n + 1))
      done <"$inc" >>"$tmp"
      if [ $n -eq 0 ]; then
        echo "render.sh: $name: included file $inc is empty" >&2
        rm -f "$tmp"; exit 1
      fi
      rendered=$((rendered + 1))
    else
      printf '%s\n' "$line" >>"$tmp"
    fi
  done <"$tpl"
  mv "$tmp" "$OUT/$name"
  count=$((count + 1))
done
[ $count -gt 0 ] || { echo "render.sh: no templates in $SRC" >&2; exit 1; }
echo "render.sh: $count templates into $OUT ($rendered include(s))"
