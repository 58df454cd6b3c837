#!/usr/bin/env bash
# The training-side cost of checkpoints: `duet train` with no checkpoints, with a synchronous
# save every step, and with an asynchronous one (snapshot taken by the writer thread while the
# next step computes). Reports per variant the median wall time of the run, the extra time
# over no checkpoints, async extra / sync extra, and how long training was blocked per async
# save (its log). Run: bench/checkpoint_stall.sh [runs] [extra duet args...]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}; shift $(( $# > 0 ? 1 : 0 ))
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=(--train.steps 12 --train.eval_batches 1 --train.log_every 100 --runtime.trace false --run.dir "$out" "$@")
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
time_run() {  # name extra-args...
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  build/apps/duet train "${args[@]}" --run.name "$name" "$@" > "$out/$name.log"
  t1=$(date +%s.%N)
  python3 -c "print($t1-$t0)"
}
declare -A T
for v in none sync async; do
  ts=()
  for r in $(seq "$runs"); do
    case $v in
      none) ts+=("$(time_run "$v$r" --checkpoint.every 0)") ;;
      sync) ts+=("$(time_run "$v$r" --checkpoint.every 1 --checkpoint.async false)") ;;
      async) ts+=("$(time_run "$v$r" --checkpoint.every 1 --checkpoint.async true)") ;;
    esac
  done
  T[$v]=$(printf '%s\n' "${ts[@]}" | median)
  printf '%-6s median %.3f s  [%s]\n' "$v" "${T[$v]}" "${ts[*]}"
done
waited=$(grep -ho 'training waited [0-9.]*' "$out"/async*.log | awk '{print $3}' | median)
save=$(grep -ho 'saved to [^ ]* in [0-9.]*' "$out"/sync*.log | awk '{print $NF}' | median)
python3 - "${T[none]}" "${T[sync]}" "${T[async]}" "$waited" "$save" <<'PY'
import sys
none, sync, asyn, waited, save = map(float, sys.argv[1:])
print(f"extra wall time for 12 saves: sync {sync-none:.3f} s, async {asyn-none:.3f} s -> async/sync {(asyn-none)/(sync-none):.2f}")
print(f"per save: synchronous save {save*1e3:.1f} ms; async: training blocked {waited*1e3:.2f} ms -> {waited/save:.3f} of a synchronous save")
PY
